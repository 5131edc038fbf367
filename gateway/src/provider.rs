//! Providers at run time: a stored [`ProviderDef`] validated into a form
//! the data path can use without further checks. The CLI validates with
//! the same function before storing, so what it accepts the gateway runs.

use http::{HeaderName, HeaderValue, Uri};

use crate::catalog::{CatalogError, CompiledCatalog};
use crate::destination::{self, Host};
use crate::header_policy::HeaderPolicy;
use crate::model::{ProviderDef, Template};
use crate::usage::Dialect;

/// Why a provider definition cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider name {0:?} must be 1-64 characters of [a-z0-9-], starting with a letter")]
    Name(String),
    #[error("base URL {0:?} must be an absolute http:// or https:// URL without query")]
    BaseUrl(String),
    #[error(
        "base URL {url:?} points at {reason}; pass --allow-private-network if that is intended"
    )]
    PrivateUpstream { url: String, reason: String },
    #[error("host {host:?}: {reason}")]
    Host { host: String, reason: String },
    #[error("credential header {0:?} is not a valid header")]
    Credential(String),
    #[error("header {header:?}: {reason}")]
    Header { header: String, reason: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Upstream scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A validated provider.
#[derive(Debug)]
pub struct Provider {
    pub def: ProviderDef,
    pub catalog: CompiledCatalog,
    pub scheme: Scheme,
    /// `host[:port]` of the upstream.
    pub authority: http::uri::Authority,
    /// Path prefix of the base URL, without trailing `/` (may be empty).
    pub base_path: String,
    /// The host used in canonical URLs (allowlists, ledger).
    pub canonical_host: String,
    pub credentials: Vec<(HeaderName, HeaderValue)>,
    pub default_headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers sent with the operator's values whatever the agent sends.
    pub pinned_headers: Vec<(HeaderName, HeaderValue)>,
    /// Which agent headers reach the provider.
    pub header_policy: HeaderPolicy,
    /// The credential values, masked in every response to the agent.
    pub secrets: Option<crate::redact::Secrets>,
}

/// Provider names double as base_url path prefixes (`/openai/v1/...`).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), ProviderError> {
    let bad = || ProviderError::Credential(name.to_string());
    Ok((
        HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| bad())?,
        HeaderValue::from_str(value).map_err(|_| bad())?,
    ))
}

impl Provider {
    pub fn new(def: ProviderDef) -> Result<Self, ProviderError> {
        if !valid_name(&def.name) {
            return Err(ProviderError::Name(def.name));
        }
        let bad_url = || ProviderError::BaseUrl(def.base_url.clone());
        let uri: Uri = def.base_url.parse().map_err(|_| bad_url())?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err(bad_url()),
        };
        let authority = uri.authority().cloned().ok_or_else(bad_url)?;
        if uri.query().is_some() || authority.as_str().contains('@') {
            return Err(bad_url());
        }
        let upstream_host = destination::parse_host(authority.host()).map_err(|_| bad_url())?;
        if !def.allow_private_network {
            let reason = match &upstream_host {
                Host::Ip(ip) => destination::classify(*ip),
                Host::Name(n) => destination::classify_name(n),
            };
            if let Some(reason) = reason {
                return Err(ProviderError::PrivateUpstream {
                    url: def.base_url.clone(),
                    reason: reason.to_string(),
                });
            }
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        let mut hosts = Vec::with_capacity(def.hosts.len());
        for h in &def.hosts {
            let parsed = destination::parse_host(h).map_err(|e| ProviderError::Host {
                host: h.clone(),
                reason: e.to_string(),
            })?;
            hosts.push(match parsed {
                Host::Name(n) => n,
                Host::Ip(ip) => ip.to_string(),
            });
        }
        let canonical_host = hosts
            .first()
            .cloned()
            .unwrap_or_else(|| match &upstream_host {
                Host::Name(n) => n.clone(),
                Host::Ip(ip) => ip.to_string(),
            });
        let credentials: Vec<(HeaderName, HeaderValue)> = def
            .credentials
            .iter()
            .map(|c| header(&c.header, &c.value))
            .collect::<Result<_, _>>()?;
        let default_headers = def
            .default_headers
            .iter()
            .map(|(n, v)| header(n, v))
            .collect::<Result<_, _>>()?;
        let pinned_headers: Vec<(HeaderName, HeaderValue)> = def
            .pinned_headers
            .iter()
            .map(|(n, v)| header(n, v))
            .collect::<Result<_, _>>()?;
        for (name, _) in &pinned_headers {
            let n = name.as_str();
            if n == "host"
                || crate::proxy::forward::HOP_BY_HOP.contains(&n)
                || credentials.iter().any(|(c, _)| c == name)
            {
                return Err(ProviderError::Header {
                    header: n.to_string(),
                    reason: "the gateway sets this header itself; it cannot be pinned".into(),
                });
            }
        }
        for entry in &def.allow_headers {
            crate::header_policy::valid_allow_entry(entry).map_err(|reason| {
                ProviderError::Header {
                    header: entry.clone(),
                    reason,
                }
            })?;
        }
        let pinned_names: Vec<String> = pinned_headers
            .iter()
            .map(|(n, _)| n.as_str().to_string())
            .collect();
        let header_policy = HeaderPolicy::new(def.template, &def.allow_headers, &pinned_names);
        let catalog = CompiledCatalog::compile(&def.catalog)?;
        let secrets =
            crate::redact::Secrets::from_values(credentials.iter().map(|(_, v)| v.as_bytes()));
        let def = ProviderDef { hosts, ..def };
        Ok(Self {
            def,
            catalog,
            scheme,
            authority,
            base_path,
            canonical_host,
            credentials,
            default_headers,
            pinned_headers,
            header_policy,
            secrets,
        })
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The request and response shapes the provider speaks.
    pub fn dialect(&self) -> Dialect {
        match self.def.template {
            Template::Openai => Dialect::OpenAi,
            Template::Anthropic => Dialect::Anthropic,
            Template::Generic => Dialect::Unknown,
        }
    }

    /// The upstream URI for an agent-facing path and query.
    pub fn upstream_uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        Uri::builder()
            .scheme(scheme)
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.base_path, path_and_query))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::template_catalog;
    use crate::model::{Credential, Template};

    fn def(name: &str, base: &str) -> ProviderDef {
        ProviderDef {
            name: name.into(),
            template: Template::Openai,
            base_url: base.into(),
            hosts: vec!["API.OpenAI.com.".into()],
            credentials: vec![Credential {
                header: "Authorization".into(),
                value: "Bearer sk-x".into(),
            }],
            default_headers: vec![],
            pinned_headers: vec![],
            allow_headers: vec![],
            catalog: template_catalog(Template::Openai),
            passthrough: false,
            allow_private_network: false,
        }
    }

    #[test]
    fn validates_and_builds_upstream_uris() {
        let p = Provider::new(def("openai", "https://gw.example/openai/")).unwrap();
        assert_eq!(p.def.hosts, vec!["api.openai.com"]);
        assert_eq!(p.canonical_host, "api.openai.com");
        assert_eq!(
            p.upstream_uri("/v1/models?x=1").unwrap().to_string(),
            "https://gw.example/openai/v1/models?x=1"
        );
        assert_eq!(p.credentials[0].0.as_str(), "authorization");
    }

    #[test]
    fn rejects_bad_definitions() {
        for (name, base) in [
            ("Open AI", "https://x"),
            ("openai", "ftp://x"),
            ("openai", "/relative"),
            ("openai", "https://u:p@x"),
            ("openai", "https://x/?q=1"),
        ] {
            assert!(Provider::new(def(name, base)).is_err(), "{name} {base}");
        }
        let err = Provider::new(def("local", "http://127.0.0.1:9300")).unwrap_err();
        assert!(
            matches!(err, ProviderError::PrivateUpstream { .. }),
            "{err}"
        );
        let mut ok = def("local", "http://127.0.0.1:9300");
        ok.allow_private_network = true;
        assert!(Provider::new(ok).is_ok());
        let mut bad = def("x", "https://x");
        bad.credentials[0].value = "bad\nvalue".into();
        assert!(matches!(
            Provider::new(bad),
            Err(ProviderError::Credential(_))
        ));
    }
}
