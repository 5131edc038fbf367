//! Forwarding an admitted call: rewrite headers (strip what the agent must
//! not send upstream, inject the provider's credentials) and stream the
//! request body up, counted and capped. The end of the stack.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use caracal_config::Limits;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::call::RequestBody;
use super::meter::{Counted, RequestProgress};
use super::upstream::{forbidden_in, Upstream};
use crate::error::{Code, Denial};
use crate::header_policy::{Dropped, HeaderPolicy};
use crate::provider::Provider;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: [&str; 9] = [
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

/// An admitted call on its way to its provider.
pub struct Outbound {
    pub req: Request<RequestBody>,
    /// The path and query to ask the provider for.
    pub path: String,
    pub provider: Arc<Provider>,
    /// Counts the request body as it streams up.
    pub progress: Arc<RequestProgress>,
}

/// The forwarding service: sends an admitted call to its provider with
/// the provider's credentials, and returns the provider's response (its
/// body still streaming), or the refusal of a provider that could not be
/// reached or did not answer in time.
#[derive(Clone)]
pub struct Forward {
    upstream: Arc<Upstream>,
    limits: Arc<Limits>,
}

impl Forward {
    pub fn new(upstream: Upstream, limits: Limits) -> Self {
        Self {
            upstream: Arc::new(upstream),
            limits: Arc::new(limits),
        }
    }
}

impl tower::Service<Outbound> for Forward {
    type Response = Response<Incoming>;
    type Error = Denial;
    type Future = BoxFuture<'static, Result<Response<Incoming>, Denial>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Denial>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, out: Outbound) -> Self::Future {
        let limits = self.limits.clone();
        let Outbound {
            req,
            path,
            provider,
            progress,
        } = out;
        let uri = match provider.upstream_uri(&path) {
            Ok(uri) => uri,
            Err(e) => {
                let d = Denial::new(
                    Code::BadRequest,
                    format!("cannot build the upstream URL: {e}"),
                );
                return Box::pin(std::future::ready(Err(d)));
            }
        };
        // The request is sent from here; its future owns what it needs.
        let client = self.upstream.client(provider.def.allow_private_network);
        let sent = client.request(upstream_request(req, uri, &provider, &progress, &limits));
        Box::pin(answer(sent, limits, provider, progress))
    }
}

/// The request as the provider gets it: the agent's method, body (counted
/// and capped) and headers, rewritten (see [`request_headers`]).
fn upstream_request(
    req: Request<RequestBody>,
    uri: http::Uri,
    provider: &Provider,
    progress: &Arc<RequestProgress>,
    limits: &Limits,
) -> Request<super::respond::Body> {
    let (parts, body) = req.into_parts();
    let body = Counted::new(
        body,
        progress.clone(),
        limits.max_request_body_bytes,
        limits.idle_timeout,
    )
    .boxed_unsync();
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.version_mut() = Version::HTTP_11;
    request_headers(
        &parts.headers,
        upstream_req.headers_mut(),
        &Injected::of(provider),
    );
    upstream_req
}

/// The provider's answer within `upstream_response_timeout`, or why not.
async fn answer(
    sent: hyper_util::client::legacy::ResponseFuture,
    limits: Arc<Limits>,
    provider: Arc<Provider>,
    progress: Arc<RequestProgress>,
) -> Result<Response<Incoming>, Denial> {
    let response = tokio::time::timeout(limits.upstream_response_timeout, sent).await;
    match response {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(if progress.too_large.load(Ordering::Relaxed) {
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
        }),
        Err(_) => Err(Denial::new(
            Code::UpstreamTimeout,
            format!(
                "provider {} sent no response within {:?}",
                provider.name(),
                limits.upstream_response_timeout
            ),
        )),
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

/// Removes hop-by-hop headers (and those `Connection` names).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_listed(headers) {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the gateway puts into an upstream request's headers, besides
/// what it lets through from the agent.
pub struct Injected<'a> {
    pub policy: &'a HeaderPolicy,
    pub credentials: &'a [(HeaderName, HeaderValue)],
    pub pinned: &'a [(HeaderName, HeaderValue)],
    pub defaults: &'a [(HeaderName, HeaderValue)],
}

impl<'a> Injected<'a> {
    pub fn of(provider: &'a Provider) -> Self {
        Injected {
            policy: &provider.header_policy,
            credentials: &provider.credentials,
            pinned: &provider.pinned_headers,
            defaults: &provider.default_headers,
        }
    }
}

/// The upstream request's headers: the agent's that the provider's header
/// policy lets through (`header_policy`), minus hop-by-hop headers, `Host`,
/// `Accept-Encoding` and any `x-caracal-*` control header; plus the
/// provider's credentials and pinned headers (replacing the agent's), and
/// its defaults where the agent sent none. Responses are requested
/// unencoded so their usage can be read.
pub fn request_headers(from: &HeaderMap, to: &mut HeaderMap, with: &Injected<'_>) {
    let listed = connection_listed(from);
    for (name, value) in from {
        let n = name.as_str();
        let hop = HOP_BY_HOP.contains(&n)
            || n == "host"
            || n == "accept-encoding"
            || n.starts_with("x-caracal-")
            || listed.iter().any(|l| l == n);
        if hop {
            continue;
        }
        let judged = if with.credentials.iter().any(|(c, _)| c == name) {
            Err(Dropped::Credential)
        } else {
            with.policy.judge(n)
        };
        match judged {
            Ok(()) => {
                to.append(name.clone(), value.clone());
            }
            Err(why) => {
                metrics::counter!("caracal_gateway_request_headers_dropped_total", "reason" => why.as_str())
                    .increment(1);
            }
        }
    }
    for (name, value) in with.credentials.iter().chain(with.pinned) {
        to.insert(name.clone(), value.clone());
    }
    for (name, value) in with.defaults {
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
    use crate::model::Template;

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
        let policy = HeaderPolicy::new(Template::Anthropic, &[], &["x-pinned".into()]);
        let pinned = [(
            HeaderName::from_static("x-pinned"),
            HeaderValue::from_static("operator"),
        )];
        from.append(
            HeaderName::from_static("x-pinned"),
            HeaderValue::from_static("agent"),
        );
        from.append(
            HeaderName::from_static("cookie"),
            HeaderValue::from_static("c=1"),
        );
        from.append(
            HeaderName::from_static("anthropic-beta"),
            HeaderValue::from_static("context-1m-2025-08-07"),
        );
        let with = Injected {
            policy: &policy,
            credentials: &creds,
            pinned: &pinned,
            defaults: &defaults,
        };
        request_headers(&from, &mut to, &with);
        assert_eq!(
            to.get_all("x-pinned").iter().collect::<Vec<_>>(),
            ["operator"]
        );
        assert!(to.get("cookie").is_none());
        assert!(
            to.get("anthropic-beta").is_none(),
            "the operator's to enable"
        );
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
