//! Forwarding an admitted call: rewrite headers (strip what the agent must
//! not send upstream, inject the provider's credentials), stream the
//! request body up and the response body down through the meters.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use http_body_util::BodyExt;

use super::meter::{Counted, InFlight, Metered, Pending, RequestProgress};
use super::pipeline::{Admitted, CallRecord};
use super::respond::Body;
use super::service::refuse;
use super::upstream::forbidden_in;
use super::Shared;
use crate::budget::charge::Charge;
use crate::error::{Code, Denial};
use crate::model::Template;
use crate::usage::{BodyKind, Dialect, UsageObserver};

/// Most a JSON response is buffered (as a copy) to read its usage.
const USAGE_CAP: usize = 4 << 20;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Credentials an agent might send towards a provider; always stripped.
const AGENT_CREDENTIALS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// What budgets add to a forwarded call: its charge, settled with its
/// ledger row, and whether to hide the usage event the gateway asked for.
#[derive(Default)]
pub struct Billing {
    pub charge: Option<Charge>,
    pub strip_usage_event: bool,
    /// Without a charge: the snapshot whose prices record the call's cost
    /// in the ledger afterwards.
    pub prices: Option<Arc<crate::cache::Snapshot>>,
}

/// Sends the call upstream and returns the (streaming) response.
#[allow(clippy::too_many_arguments)]
pub async fn send<B>(
    shared: &Arc<Shared>,
    rec: &CallRecord,
    admitted: Admitted,
    path: String,
    req: Request<B>,
    started: Instant,
    in_flight: InFlight,
    proxy: bool,
    billing: Billing,
) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<super::respond::BoxError>,
{
    let provider = &admitted.provider;
    let uri = match provider.upstream_uri(&path) {
        Ok(uri) => uri,
        Err(e) => {
            let d = Denial::new(
                Code::BadRequest,
                format!("cannot build the upstream URL: {e}"),
            );
            return refuse(shared, rec, &d, started, proxy);
        }
    };
    let (parts, body) = req.into_parts();
    let limits = &shared.config.limits;
    let progress = Arc::new(RequestProgress::default());
    let body = Counted::new(
        body,
        progress.clone(),
        limits.max_request_body_bytes,
        limits.idle_timeout,
    )
    .boxed_unsync();
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.version_mut() = Version::HTTP_11;
    request_headers(
        &parts.headers,
        upstream_req.headers_mut(),
        &provider.credentials,
        &provider.default_headers,
    );

    // From here on the call is owed a ledger row, even if the client goes
    // away before the provider answers.
    let mut pending = Pending::new(
        rec.event("allow", "ok"),
        started,
        progress.clone(),
        shared.sink.clone(),
        in_flight,
    );
    pending.set_charge(billing.charge);
    if let Some(snapshot) = billing.prices {
        pending.set_prices(snapshot, provider.name());
    }
    let client = shared.upstream.client(provider.def.allow_private_network);
    let response = tokio::time::timeout(
        limits.upstream_response_timeout,
        client.request(upstream_req),
    )
    .await;
    let response = match response {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            pending.disarm();
            let d = if progress.too_large.load(Ordering::Relaxed) {
                Denial::new(
                    Code::BodyTooLarge,
                    format!(
                        "request body exceeds {} bytes",
                        limits.max_request_body_bytes
                    ),
                )
            } else if let Some(f) = forbidden_in(&e) {
                Denial::new(Code::DestinationForbidden, f.to_string())
            } else {
                // The cause stays in the log: it can name internal hosts.
                tracing::warn!(
                    provider = provider.name(),
                    error = error_chain(&e),
                    "upstream request failed"
                );
                Denial::new(
                    Code::UpstreamUnavailable,
                    format!("provider {} could not be reached", provider.name()),
                )
            };
            return refuse(shared, rec, &d, started, proxy);
        }
        Err(_) => {
            pending.disarm();
            let d = Denial::new(
                Code::UpstreamTimeout,
                format!(
                    "provider {} sent no response within {:?}",
                    provider.name(),
                    limits.upstream_response_timeout
                ),
            );
            return refuse(shared, rec, &d, started, proxy);
        }
    };

    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let observer = UsageObserver::new(
        BodyKind::from_content_type(content_type),
        dialect(provider.def.template),
        USAGE_CAP,
    );
    pending.set_status(parts.status.as_u16());
    if let Ok(v) = HeaderValue::from_str(pending.id()) {
        parts
            .headers
            .insert(HeaderName::from_static("x-caracal-event-id"), v);
    }
    let mut body = Metered::new(body, observer, pending, limits.upstream_response_timeout);
    if billing.strip_usage_event {
        body = body.strip_usage_event();
        // The length changes when the event is removed.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    Response::from_parts(parts, body.boxed_unsync())
}

pub fn dialect(t: Template) -> Dialect {
    match t {
        Template::Openai => Dialect::OpenAi,
        Template::Anthropic => Dialect::Anthropic,
        Template::Generic => Dialect::Unknown,
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Names listed in `Connection` are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_listed(headers) {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The upstream request's headers: the agent's, minus hop-by-hop headers,
/// `Host`, any credential and any `x-caracal-*` control header; plus the
/// provider's credentials and defaults. Responses are requested unencoded
/// so their usage can be read.
pub fn request_headers(
    from: &HeaderMap,
    to: &mut HeaderMap,
    credentials: &[(HeaderName, HeaderValue)],
    defaults: &[(HeaderName, HeaderValue)],
) {
    let listed = connection_listed(from);
    for (name, value) in from {
        let n = name.as_str();
        let drop = HOP_BY_HOP.contains(&n)
            || AGENT_CREDENTIALS.contains(&n)
            || n == "host"
            || n == "accept-encoding"
            || n.starts_with("x-caracal-")
            || listed.iter().any(|l| l == n)
            || credentials.iter().any(|(c, _)| c == name);
        if !drop {
            to.append(name.clone(), value.clone());
        }
    }
    for (name, value) in credentials {
        to.insert(name.clone(), value.clone());
    }
    for (name, value) in defaults {
        if !to.contains_key(name) {
            to.insert(name.clone(), value.clone());
        }
    }
    to.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_credentials_and_hop_headers_are_replaced() {
        let mut from = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer cct_agent"),
            ("x-api-key", "sk-agent"),
            ("proxy-authorization", "Basic x"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("x-caracal-mandate", "m"),
            ("host", "api.openai.com"),
            ("accept-encoding", "gzip"),
            ("content-type", "application/json"),
            ("anthropic-version", "2023-01-01"),
        ] {
            from.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let creds = [(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("sk-real"),
        )];
        let defaults = [
            (
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static("2023-06-01"),
            ),
            (
                HeaderName::from_static("x-default"),
                HeaderValue::from_static("d"),
            ),
        ];
        let mut to = HeaderMap::new();
        request_headers(&from, &mut to, &creds, &defaults);
        assert_eq!(to.get("x-api-key").unwrap(), "sk-real");
        assert_eq!(to.get_all("x-api-key").iter().count(), 1);
        for gone in [
            "authorization",
            "proxy-authorization",
            "connection",
            "x-secret",
            "x-caracal-mandate",
            "host",
        ] {
            assert!(to.get(gone).is_none(), "{gone} forwarded");
        }
        assert_eq!(
            to.get("anthropic-version").unwrap(),
            "2023-01-01",
            "agent's value kept"
        );
        assert_eq!(to.get("x-default").unwrap(), "d");
        assert_eq!(to.get("accept-encoding").unwrap(), "identity");
        assert_eq!(to.get("content-type").unwrap(), "application/json");
    }
}
