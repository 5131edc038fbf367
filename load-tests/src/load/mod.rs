//! A closed-loop HTTP load generator (`caracal-load`).
//!
//! A fixed number of workers share one pooled keep-alive client; each
//! sends a request, reads the whole body, records the latency and sends
//! the next. After a warm-up, every request finishing inside the measured
//! window is counted; latency percentiles are exact (nearest rank over
//! every recorded sample) and cover successful (2xx) requests only.
//!
//! The generator reaches a target directly, through an HTTP or HTTPS proxy
//! (`CONNECT` for `https` targets, credentials from the proxy URL), and
//! can trust a given CA file only, which is how the bench scripts talk to
//! the gateway and to its minted leaves.

mod client;
mod config;
mod error;
mod runner;
mod summary;

pub use client::build_client;
pub use config::{header_map, load_body, parse_duration, parse_header, Header, LoadConfig, Method};
pub use error::LoadError;
pub use runner::run;
pub use summary::{percentile, Outcome, Summary, Tally};
