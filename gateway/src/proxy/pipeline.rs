//! The enforcement pipeline: every step a call passes before it is
//! forwarded, in order, in one place. Each step is a pure function over the
//! snapshot; the first refusal ends the call. All three ways in (CONNECT
//! tunnel, base_url, plain HTTP proxy) run exactly these steps.

use std::sync::Arc;

use crate::authn::Presented;
use crate::cache::Snapshot;
use crate::catalog::{Operation, PASSTHROUGH_RESOURCE};
use crate::destination::{self, Host};
use crate::error::{Code, Denial};
use crate::ledger::{LedgerEvent, Mode};
use crate::model::{Action, Principal};
use crate::provider::Provider;

/// Who is calling, as far as the connection knows.
pub enum Caller {
    /// Credentials presented with this request (or their parse error).
    Presented(Result<Option<Presented>, Denial>),
    /// Authenticated when the CONNECT tunnel was opened.
    Tunnel { principal_id: String },
}

/// Where the call is going, as the agent named it.
pub enum Target<'a> {
    /// A host name or address (CONNECT tunnel, absolute-form request).
    Host {
        host: &'a str,
        https: bool,
        port: Option<u16>,
    },
    /// A provider named by the first path segment (base_url mode).
    Provider { name: &'a str },
}

/// A call that passed every step.
pub struct Admitted {
    pub principal: Arc<Principal>,
    pub provider: Arc<Provider>,
    pub operation: Operation,
    /// The canonical URL allowlists matched.
    pub url: String,
}

/// What the data path knows about a call so far; it becomes the ledger row.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub mode: Mode,
    pub method: String,
    pub principal_id: Option<String>,
    pub provider: Option<String>,
    pub resource: Option<String>,
    pub action: Option<String>,
    pub url: Option<String>,
}

impl CallRecord {
    pub fn new(mode: Mode, method: &http::Method) -> Self {
        Self {
            mode,
            method: method.to_string(),
            principal_id: None,
            provider: None,
            resource: None,
            action: None,
            url: None,
        }
    }

    /// The ledger row for this call with its decision and code.
    pub fn event(&self, decision: &str, code: &str) -> LedgerEvent {
        let mut e = LedgerEvent::new("call", self.mode, decision, code);
        e.principal_id = self.principal_id.clone();
        e.provider = self.provider.clone();
        e.resource = self.resource.clone();
        e.action = self.action.clone();
        e.method = Some(self.method.clone());
        e.url = self.url.clone().map(crate::ledger::bounded);
        e
    }
}

/// Runs the pipeline for one request.
pub fn admit(
    snap: &Snapshot,
    caller: Caller,
    target: Target<'_>,
    method: &http::Method,
    path: &str,
    rec: &mut CallRecord,
) -> Result<Admitted, Denial> {
    // Identity first, so an unauthenticated caller learns nothing else.
    let principal = authenticate(snap, caller)?;
    rec.principal_id = Some(principal.id.clone());
    // Canonical URLs carry no query string: allowlists speak about
    // resources, and queries may hold secrets that must not reach the ledger.
    let path = path.split('?').next().unwrap_or(path);
    // A path an upstream could read differently is refused before it is
    // classified or matched.
    crate::path::check(path)
        .map_err(|e| Denial::new(Code::BadRequest, format!("{path:?}: {e}")))?;
    // The destination must be a configured provider (and never a private
    // address it does not explicitly cover).
    let (provider, scheme_host) = resolve_provider(snap, &target)?;
    rec.provider = Some(provider.name().to_string());
    let url = format!("{scheme_host}{path}");
    rec.url = Some(url.clone());
    // The operation is what policies and mandates speak about.
    let operation = classify(&provider, method, path)?;
    rec.resource = Some(operation.resource.clone());
    rec.action = Some(operation.action.as_str().to_string());
    // Where may this principal go at all?
    snap.allowlists.check(&principal.id, &url)?;
    // Mandate, rate limit and budget reservation slot in here, in that order.
    Ok(Admitted {
        principal,
        provider,
        operation,
        url,
    })
}

/// Step 1: the calling principal.
pub fn authenticate(snap: &Snapshot, caller: Caller) -> Result<Arc<Principal>, Denial> {
    match caller {
        Caller::Presented(Ok(Some(p))) => snap.authenticate(&p),
        Caller::Presented(Ok(None)) => Err(Denial::new(
            Code::Unauthenticated,
            "no credentials: send Proxy-Authorization (proxy) or Authorization: Bearer (base_url) with a principal token",
        )),
        Caller::Presented(Err(d)) => Err(d),
        Caller::Tunnel { principal_id } => snap
            .principal(&principal_id)
            .cloned()
            .ok_or_else(|| Denial::new(Code::Unauthenticated, "the tunnel's principal no longer exists")),
    }
}

/// Step 2: the provider, and the `scheme://host[:port]` of canonical URLs.
pub fn resolve_provider(
    snap: &Snapshot,
    target: &Target<'_>,
) -> Result<(Arc<Provider>, String), Denial> {
    match *target {
        Target::Provider { name } => {
            let p = snap.provider(name).ok_or_else(|| {
                Denial::new(
                    Code::ProviderUnknown,
                    format!("no provider named {name:?} in this workspace"),
                )
            })?;
            Ok((p.clone(), format!("https://{}", p.canonical_host)))
        }
        Target::Host { host, https, port } => {
            let host = normalise_host(snap, host)?;
            let p = snap.provider_for_host(&host).ok_or_else(|| {
                Denial::new(
                    Code::ProviderUnknown,
                    format!("host {host} belongs to no provider of this workspace"),
                )
            })?;
            let (scheme, default_port) = if https { ("https", 443) } else { ("http", 80) };
            let authority = match port {
                Some(port) if port != default_port => format!("{host}:{port}"),
                _ => host,
            };
            Ok((p.clone(), format!("{scheme}://{authority}")))
        }
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

/// Step 3: the catalog operation, or passthrough, or a refusal. `path`
/// excludes the query string.
pub fn classify(
    provider: &Provider,
    method: &http::Method,
    path: &str,
) -> Result<Operation, Denial> {
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
