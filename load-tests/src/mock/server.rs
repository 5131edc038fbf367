//! Accept loop and per-connection serving (HTTP/1.1 and h2c) with graceful
//! shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{router, State};

/// How long open connections may run on after shutdown is signalled.
const DRAIN: Duration = Duration::from_secs(2);

/// Serves until `shutdown` changes or its sender is dropped, then drains
/// connections for at most [`DRAIN`] and aborts the rest.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::trace!(%peer, "connection accepted");
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(stream, Arc::clone(&state), shutdown.clone()));
                }
                Err(error) => {
                    // Usually out of file descriptors; back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::debug!(open = conns.len(), "aborting connections still open");
        conns.abort_all();
    }
    tracing::info!("mock provider stopped");
}

/// Serves one connection; on shutdown asks it to finish gracefully.
async fn connection(stream: TcpStream, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(router::handle(state, req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with error");
            }
            return;
        }
        _ = shutdown.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
