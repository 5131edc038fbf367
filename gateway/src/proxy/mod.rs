//! The data plane: the listener, the three ways in (CONNECT tunnel with TLS
//! interception, base_url, plain HTTP proxy), the enforcement pipeline,
//! forwarding and metering.

mod connect;
mod forward;
mod listener;
pub mod meter;
pub mod pipeline;
pub mod respond;
mod rewind;
mod service;
pub mod upstream;

use std::sync::Arc;

use caracal_certs::LeafMinter;
use caracal_config::Config;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::SnapshotCell;
use crate::ledger::EventSink;
use crate::ops::health::Health;

pub use listener::accept_loop;
pub use upstream::Upstream;

/// Everything the data path shares across connections.
pub struct Shared {
    pub config: Config,
    pub snapshot: SnapshotCell,
    pub sink: Arc<dyn EventSink>,
    pub minter: LeafMinter,
    pub upstream: Upstream,
    pub health: Health,
    /// Every connection and tunnel task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Budget counters (reserve before forwarding, settle after).
    pub counters: Arc<crate::budget::counters::Counters>,
    pub limiter: Arc<crate::budget::rate::RateLimiter>,
    /// Asks connections to finish their in-flight requests and close.
    pub shutdown: CancellationToken,
    /// Closes connections still open when the drain period ends.
    pub force_close: CancellationToken,
}

impl Shared {
    /// The clock skew mandate decisions tolerate, seconds.
    pub fn clock_skew_secs(&self) -> i64 {
        i64::try_from(self.config.clock_skew.as_secs()).unwrap_or(i64::MAX)
    }
}

/// A CONNECT tunnel's identity, fixed when it was opened.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub principal_id: String,
    pub host: String,
    pub port: u16,
    /// TLS was terminated inside the tunnel.
    pub https: bool,
}

/// What a served connection is.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: std::net::SocketAddr,
    pub tunnel: Option<Tunnel>,
    /// The connection's place under `limits.max_connections`; a tunnel
    /// keeps its CONNECT connection's place until the tunnel closes.
    pub slot: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}
