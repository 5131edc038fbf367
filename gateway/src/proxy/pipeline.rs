//! The enforcement pipeline: every step a call passes before it is
//! forwarded, in order, in one place. Each step is a pure function over the
//! snapshot; the first refusal ends the call. All three ways in (CONNECT
//! tunnel, base_url, plain HTTP proxy) run exactly these steps.

use std::sync::Arc;

use crate::authn::Presented;
use crate::authority::decide::{self, Call};
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

/// The explicit mandate a request carries in [`MANDATE_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MandateArg<'a> {
    /// No header: the principal's recorded mandates are consulted.
    Absent,
    /// One header: exactly this mandate is judged (no fallback).
    Token(&'a str),
    /// A header that cannot be a token (repeated, not visible ASCII).
    Malformed(&'static str),
}

/// The header that presents one specific mandate (base_url requests and
/// requests inside a CONNECT tunnel). Like every `x-caracal-*` header it
/// never reaches the provider.
pub const MANDATE_HEADER: &str = "x-caracal-mandate";

impl<'a> MandateArg<'a> {
    /// Reads [`MANDATE_HEADER`] from request headers.
    pub fn from_headers(headers: &'a http::HeaderMap) -> Self {
        let mut values = headers.get_all(MANDATE_HEADER).iter();
        let Some(value) = values.next() else {
            return Self::Absent;
        };
        if values.next().is_some() {
            return Self::Malformed("more than one x-caracal-mandate header");
        }
        match value.to_str() {
            Ok(v) => Self::Token(v.trim()),
            Err(_) => Self::Malformed("x-caracal-mandate is not visible ASCII"),
        }
    }
}

/// What the mandate step needs besides the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Authority<'a> {
    pub mandate: MandateArg<'a>,
    /// Unix seconds.
    pub now: i64,
    /// Clock skew tolerated on nbf/exp, seconds.
    pub skew: i64,
}

/// A call that passed every step.
pub struct Admitted {
    pub principal: Arc<Principal>,
    pub provider: Arc<Provider>,
    pub operation: Operation,
    /// The canonical URL allowlists matched.
    pub url: String,
    /// The mandate the call goes ahead under.
    pub mandate_id: String,
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
    /// The mandate decided on (allowed under, or refused for).
    pub mandate_id: Option<String>,
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
            mandate_id: None,
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
        e.mandate_id = self.mandate_id.clone();
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
    authority: Authority<'_>,
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
    // Does a current mandate, under a current policy, cover this call?
    let mandate_id = authorise(snap, &principal, &operation, authority, rec)?;
    // Rate limit and budget reservation slot in here, in that order.
    Ok(Admitted {
        principal,
        provider,
        operation,
        url,
        mandate_id,
    })
}

/// Step 5: the mandate. An explicit one is judged alone; without one, the
/// principal's recorded mandates are (see [`crate::authority::decide`]).
/// Returns the id of the mandate the call goes ahead under.
pub fn authorise(
    snap: &Snapshot,
    principal: &Principal,
    operation: &Operation,
    authority: Authority<'_>,
    rec: &mut CallRecord,
) -> Result<String, Denial> {
    let call = Call {
        principal_id: Some(&principal.id),
        resource: &operation.resource,
        action: operation.action,
    };
    let view = &snap.authority;
    let d = match authority.mandate {
        MandateArg::Malformed(why) => return Err(Denial::new(Code::MandateInvalid, why)),
        MandateArg::Token(token) => {
            decide::decide(Some(token), view, authority.now, authority.skew, &call)
        }
        MandateArg::Absent => decide::decide_held(view, authority.now, authority.skew, &call),
    };
    rec.mandate_id = d.mandate_id().map(str::to_string);
    match (d.allow, rec.mandate_id.clone()) {
        (true, Some(id)) => Ok(id),
        _ => Err(Denial::new(
            Code::from_decision(d.code),
            d.reasons.last().cloned().unwrap_or_default(),
        )),
    }
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
