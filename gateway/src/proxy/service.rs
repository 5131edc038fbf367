//! Request dispatch: decides which way a request came in, builds the
//! caller and target for the pipeline, and turns refusals into responses
//! and ledger rows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response, Version};
use hyper::body::Incoming;

use super::meter::{finish, InFlight};
use super::pipeline::{self, Authority, CallRecord, Caller, MandateArg, Target};
use super::respond::{self, Body};
use super::{connect, forward, ConnInfo, Shared, Tunnel};
use crate::authn;
use crate::error::{Code, Denial};
use crate::ledger::Mode;

/// Entry point of every request on every connection (outer or tunneled).
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let in_flight = InFlight::start();
    let mode = match &conn.tunnel {
        Some(_) => Mode::Proxy,
        None if req.method() == Method::CONNECT => Mode::Proxy,
        None if is_absolute_form(&req) => Mode::HttpProxy,
        None => Mode::BaseUrl,
    };
    let mut rec = CallRecord::new(mode, req.method());
    // Limits come before anything else reads the request.
    if let Err(d) = check_limits(&shared, &req) {
        return Ok(refuse(&shared, &rec, &d, started, mode != Mode::BaseUrl));
    }
    let resp = match &conn.tunnel {
        Some(tunnel) => tunneled(&shared, tunnel, req, &mut rec, started, in_flight).await,
        None if req.method() == Method::CONNECT => {
            connect::open(&shared, &conn, req, &mut rec, started).await
        }
        None if mode == Mode::HttpProxy => {
            absolute(&shared, req, &mut rec, started, in_flight).await
        }
        None => origin(&shared, req, &mut rec, started, in_flight).await,
    };
    Ok(resp)
}

/// HTTP/1 requests whose target is `http://host/...` are proxy requests.
fn is_absolute_form(req: &Request<Incoming>) -> bool {
    req.version() < Version::HTTP_2 && req.uri().scheme().is_some()
}

fn check_limits(shared: &Shared, req: &Request<Incoming>) -> Result<(), Denial> {
    let limits = &shared.config.limits;
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    if header_bytes > limits.max_header_bytes {
        return Err(Denial::new(
            Code::HeadersTooLarge,
            format!("request headers exceed {} bytes", limits.max_header_bytes),
        ));
    }
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_request_body_bytes) {
        return Err(Denial::new(
            Code::BodyTooLarge,
            format!(
                "request body exceeds {} bytes",
                limits.max_request_body_bytes
            ),
        ));
    }
    Ok(())
}

/// Records a refusal (ledger row, metrics) and builds its response.
pub fn refuse(
    shared: &Shared,
    rec: &CallRecord,
    d: &Denial,
    started: Instant,
    proxy: bool,
) -> Response<Body> {
    let decision = if d.code.is_denial() { "deny" } else { "error" };
    let mut event = rec.event(decision, d.code.as_str());
    event.status = Some(d.code.status(proxy).as_u16());
    event.detail = Some(crate::ledger::bounded(d.message.clone()));
    tracing::info!(
        code = %d.code,
        principal = rec.principal_id.as_deref().unwrap_or("-"),
        url = rec.url.as_deref().unwrap_or("-"),
        "refused: {}",
        d.message
    );
    // An authority refusal is also an authority event, next to the call's
    // row, so `ledger query --kind authority` lists denials with issues
    // and revocations.
    let authority = d.code.is_authority().then(|| {
        let mut a = event.clone();
        a.id = uuid::Uuid::now_v7().to_string();
        a.kind = "authority".into();
        a.detail = Some(crate::ledger::bounded(format!(
            "call {} denied: {}",
            event.id, d.message
        )));
        a
    });
    let event_id = http::HeaderValue::from_str(&event.id).ok();
    finish(shared.sink.as_ref(), event, started);
    if let Some(a) = authority {
        shared.sink.emit(a);
    }
    let mut resp = respond::denial(d, proxy);
    if let Some(id) = event_id {
        // The caller can look the refusal up in the ledger.
        resp.headers_mut().insert("x-caracal-event-id", id);
    }
    resp
}

/// A request inside a CONNECT tunnel.
async fn tunneled(
    shared: &Arc<Shared>,
    tunnel: &Tunnel,
    req: Request<Incoming>,
    rec: &mut CallRecord,
    started: Instant,
    in_flight: InFlight,
) -> Response<Body> {
    rec.url = Some(format!("{}{}", tunnel.host, req.uri().path()));
    if req.method() == Method::CONNECT {
        let d = Denial::new(Code::BadRequest, "CONNECT inside a tunnel is not supported");
        return refuse(shared, rec, &d, started, true);
    }
    // The Host (or :authority) must be the tunnel's host: no fronting.
    let named = req.uri().host().map(str::to_string).or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| strip_port(h).to_string())
    });
    let same = named
        .as_deref()
        .map(|h| {
            h.trim_end_matches('.').eq_ignore_ascii_case(&tunnel.host)
                || bracketless(h) == tunnel.host
        })
        .unwrap_or(true);
    if !same {
        let d = Denial::new(
            Code::HostMismatch,
            format!(
                "request for {} inside a tunnel to {}",
                named.unwrap_or_default(),
                tunnel.host
            ),
        );
        return refuse(shared, rec, &d, started, true);
    }
    let caller = Caller::Tunnel {
        principal_id: tunnel.principal_id.clone(),
    };
    let target = Target::Host {
        host: &tunnel.host,
        https: tunnel.https,
        port: Some(tunnel.port),
    };
    let path = path_and_query(&req);
    enforce(
        shared, caller, target, path, req, rec, started, in_flight, true,
    )
    .await
}

fn bracketless(h: &str) -> &str {
    h.trim_start_matches('[').trim_end_matches(']')
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// An absolute-form `http://host/path` request (plain HTTP proxy).
async fn absolute(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    rec: &mut CallRecord,
    started: Instant,
    in_flight: InFlight,
) -> Response<Body> {
    let uri = req.uri().clone();
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let Some(host) = uri.host() else {
        let d = Denial::new(Code::BadRequest, "absolute-form request without a host");
        return refuse(shared, rec, &d, started, true);
    };
    let caller = Caller::Presented(authn::from_proxy_headers(req.headers()));
    let target = Target::Host {
        host,
        https,
        port: uri.port_u16(),
    };
    let path = path_and_query(&req);
    enforce(
        shared, caller, target, path, req, rec, started, in_flight, true,
    )
    .await
}

/// Origin-form requests: `/health`, or `/<provider>/…` (base_url mode).
async fn origin(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    rec: &mut CallRecord,
    started: Instant,
    in_flight: InFlight,
) -> Response<Body> {
    let full = path_and_query(&req);
    if req.uri().path() == "/health" {
        return shared.health.response();
    }
    let rest = full.strip_prefix('/').unwrap_or(&full);
    let (name, tail) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if name.is_empty() {
        let d = Denial::new(
            Code::ProviderUnknown,
            "base_url requests look like /<provider>/<path>; `caracal provider list` shows the providers",
        );
        return refuse(shared, rec, &d, started, false);
    }
    let path = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    let name = name.to_string();
    let caller = Caller::Presented(authn::from_request_headers(req.headers()));
    let target = Target::Provider { name: &name };
    enforce(
        shared, caller, target, path, req, rec, started, in_flight, false,
    )
    .await
}

fn path_and_query(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| p.starts_with('/'))
        .unwrap_or_else(|| "/".to_string())
}

/// Runs the pipeline and forwards what it admits.
#[allow(clippy::too_many_arguments)]
async fn enforce(
    shared: &Arc<Shared>,
    caller: Caller,
    target: Target<'_>,
    path: String,
    req: Request<Incoming>,
    rec: &mut CallRecord,
    started: Instant,
    in_flight: InFlight,
    proxy: bool,
) -> Response<Body> {
    // Fail closed: a call the ledger could not record is not forwarded.
    if !shared.sink.accepting() {
        let d = Denial::new(
            Code::NotReady,
            "the ledger cannot record calls right now; try again shortly",
        );
        return refuse(shared, rec, &d, started, proxy);
    }
    // One snapshot decides the whole call: a budgeted call keeps it (its
    // prices) until its charge is settled.
    let authority = Authority {
        mandate: MandateArg::from_headers(req.headers()),
        now: jiff::Timestamp::now().as_second(),
        skew: shared.clock_skew_secs(),
    };
    let snap = shared.snapshot.load_full();
    let decision = pipeline::admit(&snap, caller, target, req.method(), &path, authority, rec);
    match decision {
        Ok(admitted) => {
            let Some(plan) = snap.budgets.get(&admitted.principal.id).cloned() else {
                let billing = forward::Billing {
                    prices: Some(snap.clone()),
                    ..forward::Billing::default()
                };
                return forward::send(
                    shared, rec, admitted, path, req, started, in_flight, proxy, billing,
                )
                .await;
            };
            let (mut parts, body) = req.into_parts();
            match charge(shared, &snap, &plan, &admitted, body).await {
                Ok((bytes, billing)) => {
                    parts
                        .headers
                        .insert(http::header::CONTENT_LENGTH, bytes.len().into());
                    let body = http_body_util::Full::new(bytes);
                    let req = Request::from_parts(parts, body);
                    forward::send(
                        shared, rec, admitted, path, req, started, in_flight, proxy, billing,
                    )
                    .await
                }
                Err(d) => refuse(shared, rec, &d, started, proxy),
            }
        }
        Err(d) => {
            let resp = refuse(shared, rec, &d, started, proxy);
            drain(req).await;
            resp
        }
    }
}

/// The budget step, for a principal with budgets or rate limits: reads
/// the request body (bounded), prices the call's worst case, takes the
/// rate-limit ticket and the budget reservation (all or nothing), and asks
/// a streamed OpenAI-style response for its usage when the client did not.
/// Returns the body to forward and the charge to settle afterwards.
async fn charge(
    shared: &Arc<Shared>,
    snap: &Arc<crate::cache::Snapshot>,
    plan: &crate::budget::charge::Plan,
    admitted: &pipeline::Admitted,
    body: Incoming,
) -> Result<(bytes::Bytes, forward::Billing), Denial> {
    use crate::budget::charge as budget;
    use crate::usage::request::{self, RequestError};
    use crate::usage::Dialect;

    let limits = &shared.config.limits;
    let bytes = read_body(body, limits.max_request_body_bytes, limits.idle_timeout).await?;
    let dialect = forward::dialect(admitted.provider.def.template);
    let facts = if bytes.is_empty() {
        None
    } else {
        match request::facts(dialect, &bytes) {
            Ok(f) => Some(f),
            // Not JSON (e.g. a multipart upload): priced per request, if at all.
            Err(RequestError::NotJson) => None,
            Err(e) => return Err(Denial::new(Code::BadRequest, e.to_string())),
        }
    };
    let op = &admitted.operation;
    let provider = admitted.provider.name();
    let (basis, estimate, tokens) = budget::price(
        &snap.pricebook,
        provider,
        &op.resource,
        op.action,
        facts.as_ref(),
        plan.max_output_tokens,
    )?;
    let charge = budget::admit(
        plan,
        &admitted.principal.id,
        &shared.counters,
        &shared.limiter,
        snap.clone(),
        basis,
        estimate,
        tokens,
        jiff::Timestamp::now(),
    )?;
    let mut billing = forward::Billing {
        charge: Some(charge),
        ..forward::Billing::default()
    };
    let Some(f) = facts.as_ref() else {
        return Ok((bytes, billing));
    };
    let mut bytes = bytes;
    // A request without an output limit gets the one its reservation
    // assumed, so the worst case reserved is a true bound on its cost.
    if let (Some(_), Some(field)) = (&f.model, output_limit_field(dialect, &op.resource)) {
        if let Ok(Some(capped)) =
            request::cap_output_tokens_given(&bytes, f, field, plan.max_output_tokens)
        {
            bytes = bytes::Bytes::from(capped);
        }
    }
    // A stream the client did not ask usage for gets it, hidden again on
    // the way back.
    if dialect == Dialect::OpenAi {
        if let Ok(Some(rewritten)) = request::add_include_usage_given(&bytes, f) {
            billing.strip_usage_event = true;
            bytes = bytes::Bytes::from(rewritten);
        }
    }
    Ok((bytes, billing))
}

/// The request member that limits output tokens, for resources that
/// generate text.
fn output_limit_field(dialect: crate::usage::Dialect, resource: &str) -> Option<&'static str> {
    use crate::usage::Dialect;
    match (dialect, resource) {
        (Dialect::OpenAi, "chat.completions") => Some("max_completion_tokens"),
        (Dialect::OpenAi, "completions") => Some("max_tokens"),
        (Dialect::OpenAi, "responses") => Some("max_output_tokens"),
        (Dialect::Anthropic, "messages") => Some("max_tokens"),
        _ => None,
    }
}

/// Reads a whole request body of at most `limit` bytes; a client that
/// sends nothing for `idle` is refused.
async fn read_body(
    mut body: Incoming,
    limit: u64,
    idle: std::time::Duration,
) -> Result<bytes::Bytes, Denial> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(Denial::new(
                    Code::BadRequest,
                    format!("the request body stalled for {idle:?}"),
                ))
            }
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => {
                return Err(Denial::new(
                    Code::BadRequest,
                    format!("the request body could not be read: {e}"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(Denial::new(
                    Code::BodyTooLarge,
                    format!("request body exceeds {limit} bytes"),
                ));
            }
            buf.extend_from_slice(data);
        }
    }
}

/// Most of a refused request's body that is read (and dropped) before the
/// refusal is sent, and how long that may take.
const DRAIN_LIMIT: usize = 256 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads what is left of a refused request's body, within bounds. A
/// response sent while the client is still uploading makes HTTP/2 reset
/// the stream, and some clients (curl among them) then report a framing
/// error instead of the refusal.
async fn drain(req: Request<Incoming>) {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while read < DRAIN_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped_from_host_headers() {
        assert_eq!(strip_port("api.openai.com:443"), "api.openai.com");
        assert_eq!(strip_port("api.openai.com"), "api.openai.com");
        assert_eq!(strip_port("[::1]:443"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }
}
