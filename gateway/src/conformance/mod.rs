//! Conformance suites of the seams: one set of tests per trait that every
//! implementation must pass — the in-process ones of the embedded
//! deployment here, the Redis, Kafka and PostgreSQL ones beside them.
//!
//! Each suite is a module of `pub async fn` cases taking a fresh
//! implementation, and a macro that instantiates every case as a
//! `#[tokio::test]` for one implementation:
//!
//! ```ignore
//! caracal_gateway::counters_conformance!(InProcessCounters::new);
//! ```

pub mod counters;
pub mod event_sink;
pub mod merkle;
pub mod rate;
pub mod recovery;
pub mod snapshot_source;
pub mod store;
