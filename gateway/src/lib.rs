//! Caracal gateway: the enforcement data plane AI agents' outbound calls
//! pass through, and the embedded store and ledger behind it.
//!
//! Module map. Pure (no I/O; the clock is a parameter): `model`, `wire`,
//! `money`, `catalog`, `allowlist`, `authn`, `authority`, `budget`,
//! `destination`, `path`, `policy`, `pricing`, `usage`. Around them:
//! `store` (the SQLite system of record), `snapshot` (what decisions read,
//! and its refresh from a snapshot source), `ledger` (events, the sink
//! seam and the embedded writer), `kafka` (the distributed deployment's
//! event sink, spool and topics), `proxy` (the listener and the request
//! stack, one file per layer), `error` (the data path's codes and
//! refusals), `ops` (health, metrics, logs), `runtime` (start/stop).
#![forbid(unsafe_code)]

pub mod allowlist;
pub mod authn;
pub mod authority;
pub mod budget;
pub mod catalog;
pub mod clock;
pub mod conformance;
pub mod destination;
pub mod error;
pub mod header_policy;
pub mod kafka;
pub mod ledger;
pub mod ledger_writer;
pub mod merkle;
pub mod model;
pub mod money;
pub mod ops;
pub mod path;
pub mod policy;
pub mod pricing;
pub mod provider;
pub mod proxy;
pub mod recovery;
pub mod redact;
pub mod runtime;
pub mod shared;
pub mod snapshot;
pub mod store;
pub mod usage;
pub mod wire;

pub use runtime::{start, RunningGateway, StartError};
