//! The data plane: the listener, the request stack (built in one function,
//! [`stack::stack`]) that all three ways in (CONNECT tunnel with TLS
//! interception, base_url, plain HTTP proxy) enter, one file per layer,
//! and the forwarding service at its end.

/// `tokio::io::AsyncWrite` for a stream wrapper `$wrapper<S>` whose writes
/// go to its `inner` stream unchanged (the wrappers differ in reading).
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

pub mod allowlist;
pub mod authenticate;
pub mod budget;
pub mod call;
pub mod concurrency;
pub mod connect;
pub mod entry;
pub mod forward;
mod head_timer;
pub mod limits;
mod listener;
mod malformed;
pub mod mandate;
pub mod meter;
pub mod overload;
pub mod price;
pub mod rate;
pub mod refuse;
pub mod respond;
mod rewind;
pub mod route;
pub mod stack;
pub mod step;
pub mod upstream;

#[cfg(test)]
mod admission_tests;

use std::sync::{Arc, Mutex};

use caracal_certs::LeafMinter;
use caracal_config::Config;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::counters::Counters;
use crate::budget::rate::RateLimiter;
use crate::ledger::EventSink;
use crate::ops::health::Health;
use crate::snapshot::SnapshotCell;

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
    pub counters: Arc<dyn Counters>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Whether the snapshot is confirmed current, where a stale one must
    /// refuse calls (the distributed deployment's `snapshot.max_staleness`).
    pub snapshot_current: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The request stack, built once the rest is in place (tunnels serve
    /// it too), and taken away at shutdown (it holds this `Shared`).
    pub stack: Mutex<Option<stack::Stack>>,
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

    /// Builds the request stack.
    pub fn install_stack(self: &Arc<Self>) {
        *self.stack.lock().unwrap_or_else(|e| e.into_inner()) = Some(stack::stack(self));
    }

    /// The request stack, for a new connection (`None` once shut down).
    pub fn stack(&self) -> Option<stack::Stack> {
        self.stack.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops the stack, and with it the stack's hold on this `Shared`.
    pub fn remove_stack(&self) {
        self.stack.lock().unwrap_or_else(|e| e.into_inner()).take();
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

impl ConnInfo {
    /// A connection nothing is known about (a request that reached the
    /// stack without its connection's information: refused along the way
    /// like any other that names no target).
    pub fn unknown() -> Self {
        ConnInfo {
            peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            tunnel: None,
            slot: None,
        }
    }
}
