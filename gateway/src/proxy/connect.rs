//! `CONNECT host:port` (HTTPS_PROXY mode). The tunnel is opened only for an
//! authenticated principal and a host that belongs to a provider; inside
//! it the gateway terminates TLS with a leaf minted for `host` by the
//! workspace CA, so every request in the tunnel passes the same pipeline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;

use super::listener::serve_connection;
use super::pipeline::{self, CallRecord, Caller};
use super::respond::{self, Body};
use super::rewind::Rewind;
use super::service::refuse;
use super::{ConnInfo, Shared, Tunnel};
use crate::authn;
use crate::error::{Code, Denial};

/// TLS records start with this byte (handshake).
const TLS_HANDSHAKE: u8 = 0x16;

/// Answers a CONNECT: 200 and a tunnel, or a refusal.
pub async fn open(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    req: Request<Incoming>,
    rec: &mut CallRecord,
    started: Instant,
) -> Response<Body> {
    let authority = match req.uri().authority() {
        Some(a) if a.port_u16().is_some() => a.clone(),
        _ => {
            let d = Denial::new(Code::BadRequest, "CONNECT target must be host:port");
            return refuse(shared, rec, &d, started, true);
        }
    };
    let snapshot = shared.snapshot.load();
    let caller = Caller::Presented(authn::from_proxy_headers(req.headers()));
    let principal = match pipeline::authenticate(&snapshot, caller) {
        Ok(p) => p,
        Err(d) => return refuse(shared, rec, &d, started, true),
    };
    rec.principal_id = Some(principal.id.clone());
    rec.url = Some(authority.to_string());
    let host = match pipeline::normalise_host(&snapshot, authority.host()) {
        Ok(h) => h,
        Err(d) => return refuse(shared, rec, &d, started, true),
    };
    let Some(provider) = snapshot.provider_for_host(&host) else {
        let d = Denial::new(
            Code::ProviderUnknown,
            format!("host {host} belongs to no provider of this workspace"),
        );
        return refuse(shared, rec, &d, started, true);
    };
    tracing::debug!(principal = %principal.id, host, provider = provider.name(), "tunnel opened");
    let tunnel = Tunnel {
        principal_id: principal.id.clone(),
        host,
        port: authority.port_u16().unwrap_or(443),
        https: false,
    };
    let on_upgrade = hyper::upgrade::on(req);
    let task_shared = shared.clone();
    let outer = ConnInfo {
        peer: conn.peer,
        tunnel: None,
        slot: conn.slot.clone(),
    };
    shared.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve_tunnel(task_shared, outer, tunnel, TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(respond::empty())
}

/// Serves the inside of a tunnel: TLS (intercepted) or plain HTTP,
/// decided by the first byte the client sends.
///
/// Returns a boxed future: tunnels serve connections whose requests can open
/// tunnels, and the explicit type breaks that cycle for the compiler.
fn serve_tunnel<S>(
    shared: Arc<Shared>,
    outer: ConnInfo,
    tunnel: Tunnel,
    io: S,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(tunnel_inner(shared, outer, tunnel, io))
}

async fn tunnel_inner<S>(shared: Arc<Shared>, outer: ConnInfo, mut tunnel: Tunnel, mut io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let wait = shared.config.limits.header_read_timeout;
    let mut first = vec![0u8; 1024];
    let n = match tokio::time::timeout(wait, io.read(&mut first)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return,
    };
    first.truncate(n);
    let is_tls = first[0] == TLS_HANDSHAKE;
    let io = Rewind::new(Bytes::from(first), io);
    if !is_tls {
        let conn = ConnInfo {
            tunnel: Some(tunnel),
            ..outer
        };
        serve_connection(shared, TokioIo::new(io), conn).await;
        return;
    }
    let config = match shared.minter.server_config_for(&tunnel.host) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(host = %tunnel.host, error = %e, "cannot mint a certificate");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = match tokio::time::timeout(wait, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(host = %tunnel.host, error = %e, "TLS handshake inside the tunnel failed (does the client trust the workspace CA?)");
            return;
        }
        Err(_) => return,
    };
    tunnel.https = true;
    let conn = ConnInfo {
        tunnel: Some(tunnel),
        ..outer
    };
    serve_connection(shared, TokioIo::new(tls), conn).await;
}
