//! Entry: where a request becomes a [`Call`]. It tells the three ways in
//! apart (a request inside a CONNECT tunnel or a CONNECT, an absolute-form
//! plain-proxy request, a base_url request), fixes the snapshot that will
//! decide the call, and reads who claims to call and where to. `/health`
//! is answered here, before any limit, so it answers under overload. On
//! the way back, every refusal of the layers below leaves through
//! [`refuse`].

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;
use tower::{Layer, Service};

use super::call::{Call, Caller, Ctx, Refusal, RequestBody, Target};
use super::refuse::refuse;
use super::respond::Body;
use super::{ConnInfo, Shared};
use crate::authn;
use crate::error::{Code, Denial};
use crate::model::Mode;

#[derive(Clone)]
pub struct EntryLayer {
    shared: Arc<Shared>,
}

pub fn layer(shared: Arc<Shared>) -> EntryLayer {
    EntryLayer { shared }
}

impl<I> Layer<I> for EntryLayer {
    type Service = Entry<I>;

    fn layer(&self, inner: I) -> Self::Service {
        Entry {
            shared: self.shared.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Entry<I> {
    shared: Arc<Shared>,
    inner: I,
}

impl<I> Service<Request<Incoming>> for Entry<I>
where
    I: Service<Call, Response = Response<Body>, Error = Refusal> + Clone + Send + 'static,
    I::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Every layer below is always ready (limits refuse, never wait):
        // this polls them once, for the contract.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let shared = self.shared.clone();
        let conn = req
            .extensions()
            .get::<Arc<ConnInfo>>()
            .cloned()
            .unwrap_or_else(|| Arc::new(ConnInfo::unknown()));
        if conn.tunnel.is_none() && is_health(&req) {
            let resp = shared.health.response();
            return Box::pin(std::future::ready(Ok(resp)));
        }
        let answer = self.inner.call(enter(&shared, conn, req));
        Box::pin(async move {
            Ok(match answer.await {
                Ok(resp) => resp,
                Err(refusal) => refuse(shared.sink.as_ref(), refusal).await,
            })
        })
    }
}

fn is_health(req: &Request<Incoming>) -> bool {
    req.uri().path() == "/health" && !is_absolute_form(req) && req.method() != Method::CONNECT
}

/// HTTP/1 requests whose target is `http://host/...` are proxy requests.
fn is_absolute_form<B>(req: &Request<B>) -> bool {
    req.version() < Version::HTTP_2 && req.uri().scheme().is_some()
}

/// How the request came in.
pub fn mode<B>(conn: &ConnInfo, req: &Request<B>) -> Mode {
    match &conn.tunnel {
        Some(_) => Mode::Proxy,
        None if req.method() == Method::CONNECT => Mode::Proxy,
        None if is_absolute_form(req) => Mode::HttpProxy,
        None => Mode::BaseUrl,
    }
}

/// The call a request makes: its context, with the caller, target and
/// path it names. A request that names no usable target is refused by the
/// route step (after the limits, and after authentication).
fn enter(shared: &Shared, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Call {
    let mode = mode(&conn, &req);
    let snapshot = shared.snapshot.load_full();
    let mut ctx = Ctx::new(mode, req.method(), conn.clone(), snapshot);
    if let Err(d) = name(&conn, &req, &mut ctx) {
        ctx.misnamed = Some(d);
    }
    Call {
        req: req.map(RequestBody::Incoming),
        ctx,
    }
}

/// Fills the caller, the target and the path into `ctx`.
fn name(conn: &ConnInfo, req: &Request<Incoming>, ctx: &mut Ctx) -> Result<(), Denial> {
    let path = path_and_query(req);
    if let Some(tunnel) = &conn.tunnel {
        ctx.record.url = Some(format!("{}{}", tunnel.host, req.uri().path()));
        ctx.caller = Some(Caller::Tunnel {
            principal_id: tunnel.principal_id.clone(),
        });
        ctx.target = Some(Target::Host {
            host: tunnel.host.clone(),
            https: tunnel.https,
            port: Some(tunnel.port),
        });
        ctx.path = path.to_string();
        return Ok(());
    }
    if req.method() == Method::CONNECT {
        ctx.caller = Some(Caller::Presented(authn::from_proxy_headers(req.headers())));
        let authority = match req.uri().authority() {
            Some(a) if a.port_u16().is_some() => a,
            _ => {
                return Err(Denial::new(
                    Code::BadRequest,
                    "CONNECT target must be host:port",
                ))
            }
        };
        ctx.record.url = Some(authority.to_string());
        ctx.target = Some(Target::Host {
            host: authority.host().to_string(),
            https: false,
            port: authority.port_u16(),
        });
        return Ok(());
    }
    if ctx.mode() == Mode::HttpProxy {
        ctx.caller = Some(Caller::Presented(authn::from_proxy_headers(req.headers())));
        let uri = req.uri();
        let Some(host) = uri.host() else {
            return Err(Denial::new(
                Code::BadRequest,
                "absolute-form request without a host",
            ));
        };
        ctx.target = Some(Target::Host {
            host: host.to_string(),
            https: uri.scheme() == Some(&http::uri::Scheme::HTTPS),
            port: uri.port_u16(),
        });
        ctx.path = path.to_string();
        return Ok(());
    }
    // base_url: /<provider>/<path>
    let rest = path.strip_prefix('/').unwrap_or(path);
    let (name, tail) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    ctx.caller = Some(Caller::Presented(authn::from_request_headers(
        req.headers(),
    )));
    if name.is_empty() {
        return Err(Denial::new(
            Code::ProviderUnknown,
            "base_url requests look like /<provider>/<path>; `caracal provider list` shows the providers",
        ));
    }
    ctx.target = Some(Target::Provider {
        name: name.to_string(),
    });
    ctx.path = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    Ok(())
}

fn path_and_query<B>(req: &Request<B>) -> &str {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/")
}
