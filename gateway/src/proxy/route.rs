//! Route: the provider a call goes to and the catalog operation it is —
//! what allowlists, mandates and budgets speak about. A path an upstream
//! could read differently is refused before it is classified, and a host
//! that is private, loopback, link-local or metadata in any spelling is
//! refused unless a provider lists exactly it.

use std::sync::Arc;

use http::Method;

use super::call::{Call, Target};
use super::step::{Step, StepLayer};
use crate::catalog::{Operation, PASSTHROUGH_RESOURCE};
use crate::destination::{self, Host};
use crate::error::{Code, Denial};
use crate::model::Action;
use crate::provider::Provider;
use crate::snapshot::Snapshot;

/// The provider of `target`, and the `scheme://host[:port]` of canonical
/// URLs.
pub fn resolve_provider(
    snap: &Snapshot,
    target: &Target,
) -> Result<(Arc<Provider>, String), Denial> {
    match target {
        Target::Provider { name } => {
            let p = snap.provider(name).ok_or_else(|| {
                Denial::new(
                    Code::ProviderUnknown,
                    format!("no provider named {name:?} in this workspace"),
                )
            })?;
            Ok((
                p.clone(),
                format!("https://{}", url_host(&p.canonical_host)),
            ))
        }
        Target::Host { host, https, port } => {
            let (host, p) = provider_of_host(snap, host)?;
            let (scheme, default_port) = if *https { ("https", 443) } else { ("http", 80) };
            let authority = match port {
                Some(port) if *port != default_port => format!("{}:{port}", url_host(&host)),
                _ => url_host(&host),
            };
            Ok((p, format!("{scheme}://{authority}")))
        }
    }
}

/// The normalised form of a host an agent named, and the provider it
/// belongs to (see [`normalise_host`]).
pub fn provider_of_host(snap: &Snapshot, raw: &str) -> Result<(String, Arc<Provider>), Denial> {
    let host = normalise_host(snap, raw)?;
    match snap.provider_for_host(&host) {
        Some(p) => Ok((host, p.clone())),
        None => Err(Denial::new(
            Code::ProviderUnknown,
            format!("host {host} belongs to no provider of this workspace"),
        )),
    }
}

/// A host as it stands in a URL: an IPv6 address in brackets, so that
/// `[2606:4700::1111]:8443` and `2606:4700::1111:8443` stay two URLs.
pub fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Parses a host an agent named and refuses private, loopback, link-local
/// and metadata destinations in every spelling, unless a provider lists
/// that exact host. Returns the normalised host.
pub fn normalise_host(snap: &Snapshot, raw: &str) -> Result<String, Denial> {
    let parsed = destination::parse_host(raw)
        .map_err(|e| Denial::new(Code::BadRequest, format!("invalid host {raw:?}: {e}")))?;
    let (host, forbidden) = match parsed {
        Host::Ip(ip) => (ip.to_string(), destination::classify(ip)),
        Host::Name(n) => {
            let f = destination::classify_name(&n);
            (n, f)
        }
    };
    if let Some(reason) = forbidden {
        if snap.provider_for_host(&host).is_none() {
            return Err(Denial::new(
                Code::DestinationForbidden,
                format!("{raw} is a {reason} destination and no provider is configured for it"),
            ));
        }
    }
    Ok(host)
}

/// The catalog operation of `method path` (no query), or passthrough, or
/// a refusal.
pub fn classify(provider: &Provider, method: &Method, path: &str) -> Result<Operation, Denial> {
    if let Some(op) = provider.catalog.classify(method, path) {
        return Ok(op.clone());
    }
    if provider.def.passthrough {
        return Ok(Operation {
            resource: PASSTHROUGH_RESOURCE.to_string(),
            action: Action::for_method(method),
        });
    }
    Err(Denial::new(
        Code::OperationUnknown,
        format!(
            "{method} {path} matches no operation in provider {}'s catalog",
            provider.name()
        ),
    ))
}

/// Inside a tunnel, the Host (or `:authority`) must be the tunnel's host:
/// no fronting another provider through an open tunnel.
pub fn same_host(tunnel_host: &str, req: &http::Request<impl Sized>) -> Result<(), Denial> {
    let named = req.uri().host().map(str::to_string).or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| strip_port(h).to_string())
    });
    let same = named.as_deref().is_none_or(|h| {
        h.trim_end_matches('.').eq_ignore_ascii_case(tunnel_host) || bracketless(h) == tunnel_host
    });
    if same {
        return Ok(());
    }
    Err(Denial::new(
        Code::HostMismatch,
        format!(
            "request for {} inside a tunnel to {tunnel_host}",
            named.unwrap_or_default()
        ),
    ))
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

/// The route step. A CONNECT only needs its provider (the requests inside
/// the tunnel are routed one by one).
pub struct Route;

impl Step for Route {
    fn check(&self, call: &mut Call) -> Result<(), Denial> {
        let Call { req, ctx } = call;
        if let Some(d) = ctx.misnamed.take() {
            return Err(d);
        }
        if let Some(tunnel) = &ctx.conn.tunnel {
            if req.method() == Method::CONNECT {
                return Err(Denial::new(
                    Code::BadRequest,
                    "CONNECT inside a tunnel is not supported",
                ));
            }
            same_host(&tunnel.host, req)?;
        }
        let target = ctx
            .target
            .take()
            .ok_or_else(|| Denial::new(Code::BadRequest, "the request names no destination"))?;
        if req.method() == Method::CONNECT {
            let Target::Host { host, https, port } = target else {
                return Err(Denial::new(Code::BadRequest, "CONNECT names no host"));
            };
            let (host, provider) = provider_of_host(&ctx.snapshot, &host)?;
            ctx.record.provider = Some(provider.name().to_string());
            ctx.target = Some(Target::Host { host, https, port });
            ctx.provider = Some(provider);
            return Ok(());
        }
        // Canonical URLs carry no query string: allowlists speak about
        // resources, and queries may hold secrets that must not reach the
        // ledger.
        let path = ctx.path.split('?').next().unwrap_or_default();
        crate::path::check(path)
            .map_err(|e| Denial::new(Code::BadRequest, format!("{path:?}: {e}")))?;
        let (provider, scheme_host) = resolve_provider(&ctx.snapshot, &target)?;
        ctx.record.provider = Some(provider.name().to_string());
        ctx.record.url = Some(format!("{scheme_host}{path}"));
        let operation = classify(&provider, req.method(), path)?;
        ctx.record.resource = Some(operation.resource.clone());
        ctx.record.action = Some(operation.action.as_str());
        ctx.provider = Some(provider);
        ctx.operation = Some(operation);
        Ok(())
    }
}

pub fn layer() -> StepLayer<Route> {
    StepLayer::new(Route)
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ipv6_hosts_are_bracketed_in_urls() {
        assert_eq!(super::url_host("2606:4700::1111"), "[2606:4700::1111]");
        assert_eq!(super::url_host("api.openai.com"), "api.openai.com");
        assert_eq!(super::url_host("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn ports_are_stripped_from_host_headers() {
        assert_eq!(strip_port("api.openai.com:443"), "api.openai.com");
        assert_eq!(strip_port("api.openai.com"), "api.openai.com");
        assert_eq!(strip_port("[::1]:443"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }
}
