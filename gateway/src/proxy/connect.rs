//! `CONNECT host:port` (HTTPS_PROXY mode). The tunnel is opened only for an
//! authenticated principal and a host that belongs to a provider; inside
//! it the gateway terminates TLS with a leaf minted for `host` by the
//! workspace CA, so every request in the tunnel passes the same stack.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{Either, Ready};
use http::{Method, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;

use super::call::{Call, Refusal, Target};
use super::listener::{serve_connection, Alpn};
use super::respond::{self, Body};
use super::rewind::Rewind;
use super::step::Answer;
use super::{ConnInfo, Shared, Tunnel};
use crate::error::{Code, Denial};

/// TLS records start with this byte (handshake).
const TLS_HANDSHAKE: u8 = 0x16;

/// The CONNECT layer: a CONNECT (authenticated, its host routed to a
/// provider by the layers above) opens a tunnel; every other request goes
/// on to be enforced.
#[derive(Clone)]
pub struct ConnectLayer {
    shared: Arc<Shared>,
}

pub fn layer(shared: Arc<Shared>) -> ConnectLayer {
    ConnectLayer { shared }
}

impl<I> tower::Layer<I> for ConnectLayer {
    type Service = Connect<I>;

    fn layer(&self, inner: I) -> Self::Service {
        Connect {
            shared: self.shared.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Connect<I> {
    shared: Arc<Shared>,
    inner: I,
}

impl<I> tower::Service<Call> for Connect<I>
where
    I: tower::Service<Call, Response = Response<Body>, Error = Refusal>,
{
    type Response = Response<Body>;
    type Error = Refusal;
    type Future = Either<I::Future, Ready<Answer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        if call.req.method() != Method::CONNECT {
            return Either::Left(self.inner.call(call));
        }
        Either::Right(futures_util::future::ready(open(&self.shared, call)))
    }
}

/// Answers a CONNECT: 200 and a tunnel served in the background.
fn open(shared: &Arc<Shared>, call: Call) -> Answer {
    let Call { mut req, ctx } = call;
    let (principal, host, port) = match (&ctx.principal, &ctx.target) {
        (Some(p), Some(Target::Host { host, port, .. })) => (p, host.clone(), *port),
        _ => {
            let d = Denial::new(Code::Internal, "a CONNECT reached the tunnel unrouted");
            return Err(Refusal::new(d, Call { req, ctx }));
        }
    };
    tracing::debug!(principal = %principal.id, host, "tunnel opened");
    let tunnel = Tunnel {
        principal_id: principal.id.clone(),
        host,
        port: port.unwrap_or(443),
        https: false,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_shared = shared.clone();
    let outer = ConnInfo {
        peer: ctx.conn.peer,
        tunnel: None,
        slot: ctx.conn.slot.clone(),
    };
    shared.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve_tunnel(task_shared, outer, tunnel, TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Ok(Response::new(respond::empty()))
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
        serve_connection(shared, io, conn, Alpn::Unknown).await;
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
    let alpn = Alpn::of(tls.get_ref().1.alpn_protocol());
    serve_connection(shared, tls, conn, alpn).await;
}
