//! Caracal gateway: the enforcement data plane AI agents' outbound calls
//! pass through, and the embedded store and ledger behind it.
//!
//! Module map: `model` (pure types), `catalog`, `allowlist`, `authn`,
//! `destination`, `usage`, `pricing` (pure decisions and parsers), `store` (SQL),
//! `cache` (the snapshot and its refresh), `ledger` (events and the
//! writer), `proxy` (listener, CONNECT, forwarding, metering), `ops`
//! (health, metrics, logs), `runtime` (start/stop).
#![forbid(unsafe_code)]

pub mod allowlist;
pub mod authn;
pub mod authority;
pub mod budget;
pub mod cache;
pub mod catalog;
pub mod destination;
pub mod error;
pub mod ledger;
pub mod model;
pub mod money;
pub mod ops;
pub mod path;
pub mod policy;
pub mod pricing;
pub mod provider;
pub mod proxy;
pub mod runtime;
pub mod store;
pub mod usage;

pub use runtime::{start, RunningGateway, StartError};
