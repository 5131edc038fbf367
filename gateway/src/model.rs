//! Pure domain types shared by the store, the snapshot and the CLI:
//! principals, providers and their catalogs, allowlist entries.

use serde::{Deserialize, Serialize};

crate::wire_enum! {
    /// How a call entered the gateway.
    pub enum Mode as "mode" {
        /// `CONNECT` tunnel (HTTPS_PROXY).
        Proxy => "proxy",
        /// `/<provider>/…` with a bearer token.
        BaseUrl => "base_url",
        /// Absolute-form `http://` request (HTTP_PROXY).
        HttpProxy => "http_proxy",
        /// An operator's command (authority events: issued, delegated, revoked).
        Cli => "cli",
    }
}

crate::wire_enum! {
    /// What became of a call or an authority change, as the ledger records it.
    pub enum Decision as "decision" {
        /// Allowed (and forwarded, for a call).
        Allow => "allow",
        /// Refused by a policy decision.
        Deny => "deny",
        /// Allowed or not decided, but it failed (the provider, the gateway,
        /// or the client that went away).
        Error => "error",
    }
}

/// What kind of actor a principal is; delegation rules depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    Agent,
    User,
    Service,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::User => "user",
            Self::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(Self::Agent),
            "user" => Some(Self::User),
            "service" => Some(Self::Service),
            _ => None,
        }
    }
}

/// An authenticated actor. Its credential is stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: String,
    pub kind: PrincipalKind,
    pub name: String,
    pub email: String,
    pub created_at: String,
}

/// An operation of a provider's API, as policies and mandates name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The action a method implies when a catalog entry does not say.
    pub fn for_method(method: &http::Method) -> Self {
        match *method {
            http::Method::POST => Self::Create,
            http::Method::PUT | http::Method::PATCH => Self::Update,
            http::Method::DELETE => Self::Delete,
            _ => Self::Read,
        }
    }
}

/// One catalog entry: requests with `method` whose path matches `path`
/// are the operation (`resource`, `action`). `path` segments are literal,
/// `{name}` (any one segment) or a final `**` (any remainder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub method: String,
    pub path: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

/// Provider templates: what the credential looks like and which catalog
/// a new provider starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    Openai,
    Anthropic,
    Generic,
}

impl Template {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Generic => "generic",
        }
    }
}

/// A credential the gateway injects into upstream requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Header name, lowercase (e.g. `authorization`, `x-api-key`).
    pub header: String,
    /// Full header value (e.g. `Bearer sk-...`).
    pub value: String,
}

/// A provider as stored: where agents think they are going (`hosts`),
/// where the gateway really sends the call (`base_url`), what it injects,
/// and the catalog of operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderDef {
    pub name: String,
    pub template: Template,
    pub base_url: String,
    pub hosts: Vec<String>,
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// Headers added when the agent did not send them (e.g. `anthropic-version`).
    #[serde(default)]
    pub default_headers: Vec<(String, String)>,
    /// Headers the operator pins: sent with these values whatever the agent
    /// sends under the same names (e.g. `OpenAI-Project`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned_headers: Vec<(String, String)>,
    /// Agent headers let through besides the template's (names, or
    /// prefixes ending in `*`); see `header_policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    pub catalog: Vec<CatalogEntry>,
    /// Requests matching no catalog entry are forwarded as resource
    /// `passthrough` instead of being denied.
    #[serde(default)]
    pub passthrough: bool,
    /// The upstream may be a private, loopback or link-local address.
    #[serde(default)]
    pub allow_private_network: bool,
}

/// How an allowlist pattern is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternType {
    Regex,
    Glob,
}

impl PatternType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regex => "regex",
            Self::Glob => "glob",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "regex" => Some(Self::Regex),
            "glob" => Some(Self::Glob),
            _ => None,
        }
    }
}

/// One allowlist entry of a principal: a URL pattern it may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowlistEntry {
    pub id: String,
    pub principal_id: String,
    pub pattern: String,
    pub pattern_type: PatternType,
    pub created_at: String,
}
