//! Operating the gateway: readiness, Prometheus metrics and logs.

pub mod health;
pub mod logging;
pub mod metrics;
