//! Which of an agent's request headers reach a provider.
//!
//! The provider's credential is the operator's, so is what it bills and
//! what it permits: an agent must not choose the organisation or project
//! the key bills under (`OpenAI-Organization`, `OpenAI-Project`), turn on
//! beta features (`anthropic-beta`), send its own cookies, or ask the
//! upstream to perform another method than the one authorised
//! (`X-HTTP-Method-Override` and kin). So, for every request:
//!
//! 1. **Always dropped**: hop-by-hop headers, `Host`, `Accept-Encoding`
//!    (the gateway asks for identity), `x-caracal-*`, credential headers of
//!    any provider ([`CREDENTIALS`]), and the [`STRIPPED`] list (cookies,
//!    method overrides).
//! 2. **Allowed through** for the `openai` and `anthropic` templates: only
//!    the headers their APIs and SDKs use ([`allowed`]), plus those the
//!    operator lists for the provider (`--allow-header NAME` or `PREFIX*`).
//!    The `generic` template lets every other header through.
//! 3. **Pinned** headers the operator sets (`--header 'OpenAI-Project:
//!    proj_x'`) replace whatever the agent sent under that name.
//!
//! Dropped headers are counted in
//! `caracal_gateway_request_headers_dropped_total{reason}`. Pure.

use crate::model::Template;

/// Credential headers of the providers the gateway knows: never taken
/// from an agent.
pub const CREDENTIALS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "anthropic-api-key",
];

/// Dropped from every agent request whatever the provider.
pub const STRIPPED: [&str; 5] = [
    "cookie",
    "cookie2",
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
];

/// Agent headers every template lets through: content negotiation, SDK
/// telemetry, tracing and idempotency.
const COMMON: [&str; 9] = [
    "content-type",
    "content-length",
    "accept",
    "accept-language",
    "user-agent",
    "idempotency-key",
    "traceparent",
    "tracestate",
    "baggage",
];

/// Prefixes of agent headers every template lets through (the official
/// SDKs' `x-stainless-*` telemetry).
const COMMON_PREFIXES: [&str; 1] = ["x-stainless-"];

/// Why an agent header does not reach the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// On the default strip list (cookies, method overrides).
    Stripped,
    /// A credential header.
    Credential,
    /// Not among the headers the provider's template lets through.
    NotAllowed,
    /// The operator pins this header.
    Pinned,
}

impl Dropped {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Stripped => "stripped",
            Dropped::Credential => "credential",
            Dropped::NotAllowed => "not_allowed",
            Dropped::Pinned => "pinned",
        }
    }
}

/// The agent headers a provider lets through: its template's and the
/// operator's additions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPolicy {
    template: Template,
    /// Lowercase names, or prefixes ending in `*`.
    extra: Vec<String>,
    /// Lowercase names of pinned headers.
    pinned: Vec<String>,
}

impl HeaderPolicy {
    pub fn new(template: Template, extra: &[String], pinned: &[String]) -> Self {
        Self {
            template,
            extra: extra.iter().map(|e| e.to_ascii_lowercase()).collect(),
            pinned: pinned.iter().map(|p| p.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether the agent header `name` (lowercase, as `http` keeps it)
    /// reaches the provider, and if not, why.
    pub fn judge(&self, name: &str) -> Result<(), Dropped> {
        if CREDENTIALS.contains(&name) {
            return Err(Dropped::Credential);
        }
        if STRIPPED.contains(&name) {
            return Err(Dropped::Stripped);
        }
        if self.pinned.iter().any(|p| p == name) {
            return Err(Dropped::Pinned);
        }
        if self.template == Template::Generic
            || allowed(self.template, name)
            || self.extra.iter().any(|e| matches(e, name))
        {
            Ok(())
        } else {
            Err(Dropped::NotAllowed)
        }
    }
}

/// An operator's `--allow-header` entry: a name, or a prefix ending in `*`.
fn matches(entry: &str, name: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => entry == name,
    }
}

/// Whether a template lets the agent header `name` through by default.
pub fn allowed(template: Template, name: &str) -> bool {
    let own: &[&str] = match template {
        // `OpenAI-Organization` and `OpenAI-Project` choose what the key
        // bills under: not the agent's to choose.
        Template::Openai => &["openai-beta", "x-request-id"],
        // `anthropic-beta` turns on features billed otherwise (long
        // context): the operator pins it if wanted.
        Template::Anthropic => &["anthropic-version", "x-request-id"],
        Template::Generic => return true,
    };
    COMMON.contains(&name)
        || own.contains(&name)
        || COMMON_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Checks an operator's `--allow-header` entry: a header name, or a
/// prefix of one followed by `*`. Naming a header the gateway always drops
/// is refused (it would stay dropped: credentials, cookies, method
/// overrides, `host`, `x-caracal-*`).
pub fn valid_allow_entry(entry: &str) -> Result<(), String> {
    let name = entry.strip_suffix('*').unwrap_or(entry);
    if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!(
            "{entry:?} is not a header name (or a prefix followed by *)"
        ));
    }
    let lower = name.to_ascii_lowercase();
    let exact = !entry.ends_with('*');
    let always = CREDENTIALS.iter().chain(&STRIPPED).chain(&["host"]);
    if (exact && always.clone().any(|d| *d == lower)) || lower.starts_with("x-caracal-") {
        return Err(format!(
            "{entry:?} names a header the gateway always drops (credentials, cookies, \
             method overrides, host, x-caracal-*)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(template: Template) -> HeaderPolicy {
        HeaderPolicy::new(
            template,
            &["x-mock-*".into(), "X-Team".into()],
            &["openai-project".into()],
        )
    }

    #[test]
    fn agents_cannot_choose_what_the_key_bills_under() {
        let p = policy(Template::Openai);
        for name in [
            "content-type",
            "user-agent",
            "openai-beta",
            "x-stainless-lang",
            "traceparent",
        ] {
            assert_eq!(p.judge(name), Ok(()), "{name}");
        }
        for (name, why) in [
            ("openai-organization", Dropped::NotAllowed),
            ("openai-project", Dropped::Pinned),
            ("cookie", Dropped::Stripped),
            ("x-http-method-override", Dropped::Stripped),
            ("x-method-override", Dropped::Stripped),
            ("x-http-method", Dropped::Stripped),
            ("x-api-key", Dropped::Credential),
            ("authorization", Dropped::Credential),
            ("anthropic-beta", Dropped::NotAllowed),
            ("x-something", Dropped::NotAllowed),
        ] {
            assert_eq!(p.judge(name), Err(why), "{name}");
        }
        // The operator's additions: a prefix and a name, any case.
        assert_eq!(p.judge("x-mock-latency-ms"), Ok(()));
        assert_eq!(p.judge("x-team"), Ok(()));
        // They never reopen what is always dropped.
        let wide = HeaderPolicy::new(Template::Openai, &["x-*".into()], &[]);
        assert_eq!(wide.judge("x-api-key"), Err(Dropped::Credential));
        assert_eq!(wide.judge("x-http-method"), Err(Dropped::Stripped));
    }

    #[test]
    fn each_reason_has_its_metric_label() {
        let labels: Vec<&str> = [
            Dropped::Stripped,
            Dropped::Credential,
            Dropped::NotAllowed,
            Dropped::Pinned,
        ]
        .iter()
        .map(|d| d.as_str())
        .collect();
        assert_eq!(labels, ["stripped", "credential", "not_allowed", "pinned"]);
    }

    #[test]
    fn anthropic_betas_are_the_operators_and_generic_lets_the_rest_through() {
        let p = policy(Template::Anthropic);
        assert_eq!(p.judge("anthropic-version"), Ok(()));
        assert_eq!(p.judge("anthropic-beta"), Err(Dropped::NotAllowed));
        let g = policy(Template::Generic);
        assert_eq!(g.judge("x-anything"), Ok(()));
        assert_eq!(g.judge("openai-organization"), Ok(()));
        assert_eq!(g.judge("cookie"), Err(Dropped::Stripped));
        assert_eq!(g.judge("x-goog-api-key"), Err(Dropped::Credential));
    }

    #[test]
    fn allow_entries_cannot_reopen_what_is_always_dropped() {
        for ok in [
            "anthropic-beta",
            "x-mock-*",
            "OpenAI-Organization",
            "x-*",
            "x-api-*",
        ] {
            assert_eq!(valid_allow_entry(ok), Ok(()), "{ok}");
        }
        for bad in [
            "cookie",
            "Cookie",
            "authorization",
            "*",
            "host",
            "x-caracal-mandate",
            "x-caracal-*",
            "",
            "bad header",
        ] {
            assert!(valid_allow_entry(bad).is_err(), "{bad:?}");
        }
    }
}
