//! The listener: accepts TCP connections, tells TLS from plain HTTP by the
//! first byte, and serves HTTP/1.1 or HTTP/2 on each with the configured
//! size and time limits. Slow or silent clients are cut off by timeouts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::{ConnInfo, Shared};

/// Accepts connections until shutdown. At most `max_connections` are
/// served at once; beyond that new connections are closed immediately.
pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, tls: TlsAcceptor) {
    let slots = Arc::new(Semaphore::new(shared.config.limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("caracal_gateway_connections_rejected_total").increment(1);
            continue;
        };
        let task_shared = shared.clone();
        let tls = tls.clone();
        shared
            .tracker
            .spawn(connection(task_shared, tcp, peer, tls, Arc::new(slot)));
    }
}

async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    tls: TlsAcceptor,
    slot: Arc<OwnedSemaphorePermit>,
) {
    let _ = tcp.set_nodelay(true);
    let wait = shared.config.limits.header_read_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    let conn = ConnInfo {
        peer,
        tunnel: None,
        slot: Some(slot),
    };
    if first[0] == 0x16 {
        match tokio::time::timeout(wait, tls.accept(tcp)).await {
            Ok(Ok(stream)) => {
                let alpn = Alpn::of(stream.get_ref().1.alpn_protocol());
                serve_connection(shared, stream, conn, alpn).await
            }
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    } else if shared.config.allow_plaintext {
        serve_connection(shared, tcp, conn, Alpn::Unknown).await;
    } else {
        tracing::debug!(%peer, "plain-text connection refused (gateway.allow_plaintext = false)");
    }
}

/// What a client said it speaks before its first request: the protocol it
/// negotiated by TLS ALPN, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    Http2,
    /// Plain TCP, or TLS without ALPN: told by the first bytes.
    Unknown,
}

impl Alpn {
    pub fn of(protocol: Option<&[u8]>) -> Self {
        match protocol {
            Some(b"h2") => Alpn::Http2,
            Some(b"http/1.1") => Alpn::Http1,
            _ => Alpn::Unknown,
        }
    }
}

/// Sets the HTTP/1 settings on `$b` (hyper's builder or hyper-util's
/// `auto` one: the same setters, different types).
macro_rules! http1_settings {
    ($b:expr, $limits:expr, $clock:expr, $hard_limit:expr) => {
        $b.timer(super::head_timer::HeadTimer($clock.clone()))
            .header_read_timeout($limits.header_read_timeout)
            .max_buf_size($hard_limit)
            .keep_alive(true)
    };
}

/// Sets the HTTP/2 settings on `$b` (as [`http1_settings`]).
macro_rules! http2_settings {
    ($b:expr, $hard_limit:expr) => {
        $b.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from($hard_limit).unwrap_or(u32::MAX))
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
    };
}

/// Serves HTTP/1.1 (with upgrades, for CONNECT) or HTTP/2 on `io` until the
/// client closes or shutdown asks the connection to finish. `alpn` is what
/// the client negotiated: a connection that named its protocol is served
/// in it directly; one that did not is told by its first bytes (hyper-util's
/// `auto`). Knowing it saves memory: `auto` reads the first bytes apart
/// and hands them to HTTP/1 as a read of their own, so the request head
/// arrives in two reads and hyper doubles the connection's read buffer
/// (16 KiB instead of 8 for as long as the connection lives).
pub async fn serve_connection<S>(shared: Arc<Shared>, stream: S, conn: ConnInfo, alpn: Alpn)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.config.limits.clone();
    let Some(stack) = shared.stack() else {
        tracing::debug!("the gateway is shutting down; closing the connection");
        return;
    };
    let conn = Arc::new(conn);
    let activity = Arc::new(Activity::new());
    let svc_activity = activity.clone();
    // Boxed: the stack can open tunnels that serve connections in turn.
    let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| -> Pin<Box<dyn Future<Output = _> + Send>> {
        svc_activity.request_started();
        req.extensions_mut().insert(conn.clone());
        Box::pin(stack.clone().oneshot(req))
    });
    // The header read timeout runs from a head's first byte, not while the
    // connection idles between requests (see `head_timer`).
    let clock = super::head_timer::HeadClock::new();
    // The protocol limits sit at twice the configured limit so that requests
    // over it reach `check_limits` and get a JSON refusal; only absurd
    // ones are cut off by hyper itself (bare 431).
    let hard_limit = (limits.max_header_bytes * 2).max(16 * 1024);
    // hyper's own answers to requests it cannot parse get the JSON shape.
    let io = super::malformed::Malformed::new(TokioIo::new(super::head_timer::Watched::new(
        stream,
        clock.clone(),
    )));
    let shared = &shared;
    let activity = &activity;
    match alpn {
        Alpn::Http1 => {
            let mut builder = hyper::server::conn::http1::Builder::new();
            http1_settings!(builder, limits, clock, hard_limit);
            let connection = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(connection);
            drive(connection, |c| c.graceful_shutdown(), shared, activity).await
        }
        Alpn::Http2 => {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            http2_settings!(builder, hard_limit);
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            drive(connection, |c| c.graceful_shutdown(), shared, activity).await
        }
        Alpn::Unknown => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            http1_settings!(builder.http1(), limits, clock, hard_limit);
            http2_settings!(builder.http2(), hard_limit);
            let connection = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(connection);
            drive(connection, |c| c.graceful_shutdown(), shared, activity).await
        }
    }
}

/// Runs `connection` until it ends, shutdown begins, or the client has
/// started no request for too long: header_read_timeout before the first
/// (so a connection that never authenticates cannot hold a slot, HTTP/2
/// included), idle_timeout after. Closing is graceful either way
/// (`graceful_shutdown`): a response still streaming is not cut off.
async fn drive<C, E>(
    mut connection: Pin<&mut C>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    shared: &Shared,
    activity: &Activity,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let limits = &shared.config.limits;
    loop {
        let idle_limit = if activity.requests() == 0 {
            limits.header_read_timeout
        } else {
            limits.idle_timeout
        };
        let deadline = activity.last() + idle_limit;
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shared.shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => {
                if activity.requests() == 0 {
                    // Nothing was ever asked, so nothing can be cut off;
                    // a silent HTTP/2 peer would not even ack a GOAWAY.
                    return;
                }
                // A request has started: the idle limit is idle_timeout
                // now, even if the deadline slept through was the first
                // request's (otherwise a connection would be closed
                // header_read_timeout after it opened, however busy).
                if activity.last() + limits.idle_timeout <= tokio::time::Instant::now() {
                    break;
                }
            }
        }
    }
    graceful_shutdown(connection.as_mut());
    // A client that ignores the request to finish is cut off when the
    // gateway's drain period ends.
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shared.force_close.cancelled() => {}
    }
}

/// When a connection last started a request, and how many it started.
struct Activity {
    opened: tokio::time::Instant,
    last_ms: AtomicU64,
    requests: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn request_started(&self) {
        let ms = self
            .opened
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn last(&self) -> tokio::time::Instant {
        self.opened + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}
