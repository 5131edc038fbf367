//! `caracal provider add`: a provider definition from command-line flags,
//! with the template's hosts, credential header and catalog filled in.

use anyhow::{anyhow, bail};
use caracal_gateway::catalog::template_catalog;
use caracal_gateway::model::{Action, CatalogEntry, Credential, ProviderDef, Template};
use clap::{Args, ValueEnum};

/// Environment variable read when --credential is absent.
pub const CREDENTIAL_ENV: &str = "CARACAL_PROVIDER_CREDENTIAL";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TemplateArg {
    /// OpenAI-compatible API: host api.openai.com, `authorization: Bearer VALUE`, OpenAI catalog.
    Openai,
    /// Anthropic API: host api.anthropic.com, `x-api-key: VALUE`, `anthropic-version: 2023-06-01`,
    /// Anthropic catalog.
    Anthropic,
    /// Any HTTP API: no default hosts (the base URL's host is used), no catalog (add
    /// --operation entries or --passthrough); --credential needs --credential-header.
    Generic,
}

impl From<TemplateArg> for Template {
    fn from(t: TemplateArg) -> Self {
        match t {
            TemplateArg::Openai => Template::Openai,
            TemplateArg::Anthropic => Template::Anthropic,
            TemplateArg::Generic => Template::Generic,
        }
    }
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Provider name: 1-64 characters of [a-z0-9-] starting with a letter. Agents in
    /// base_url mode call https://GATEWAY/NAME/...
    pub name: String,
    /// What kind of API this is: sets the default hosts, credential header and catalog.
    #[arg(long, value_enum)]
    pub template: TemplateArg,
    /// Where the gateway really sends calls, e.g. https://api.openai.com (no query).
    #[arg(long, value_name = "URL")]
    pub base_url: String,
    /// A host name agents call through HTTPS_PROXY that belongs to this provider
    /// (repeatable; replaces the template's hosts).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// The provider API key the gateway injects (agents never see it). If absent, it
    /// is read from $CARACAL_PROVIDER_CREDENTIAL, which keeps it out of shell history.
    #[arg(long, env = CREDENTIAL_ENV, hide_env_values = true, value_name = "VALUE")]
    pub credential: Option<String>,
    /// Header carrying the credential, overriding the template's; the value is then
    /// sent exactly as given. Required with --credential for --template generic.
    #[arg(long, value_name = "NAME")]
    pub credential_header: Option<String>,
    /// A header added to upstream requests that do not carry it, as 'Name: value'
    /// (repeatable).
    #[arg(long = "default-header", value_name = "'NAME: VALUE'")]
    pub default_headers: Vec<String>,
    /// A header pinned by the operator, as 'Name: value' (repeatable): sent on every
    /// upstream request with this value, whatever the agent sends under that name
    /// (e.g. 'OpenAI-Project: proj_x', 'anthropic-beta: ...').
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub pinned_headers: Vec<String>,
    /// An agent header to let through besides the template's (repeatable; a name, or
    /// a prefix followed by *). The openai and anthropic templates let through only
    /// content negotiation, SDK, tracing and idempotency headers (and openai-beta,
    /// anthropic-version); generic lets all through. Cookies, method overrides and
    /// credential headers are always dropped.
    #[arg(long = "allow-header", value_name = "NAME")]
    pub allow_headers: Vec<String>,
    /// An extra catalog entry, as 'METHOD /path=resource[:action]' (repeatable).
    /// METHOD may be *; path segments may be {name} (one segment) or a final **;
    /// action is read, create, update or delete (default: implied by the method).
    #[arg(long = "operation", value_name = "'METHOD /PATH=RESOURCE[:ACTION]'")]
    pub operations: Vec<String>,
    /// Forward requests matching no catalog entry (as resource `passthrough`)
    /// instead of refusing them.
    #[arg(long)]
    pub passthrough: bool,
    /// Allow a base URL on a private, loopback or link-local address (a local model
    /// server, a mock).
    #[arg(long)]
    pub allow_private_network: bool,
    /// Overwrite an existing provider of the same name.
    #[arg(long)]
    pub replace: bool,
}

/// The definition the flags describe (validated later by `Provider::new`).
pub fn definition(args: &AddArgs) -> anyhow::Result<ProviderDef> {
    let template = Template::from(args.template);
    let hosts = if !args.hosts.is_empty() {
        args.hosts.clone()
    } else {
        match template {
            Template::Openai => vec!["api.openai.com".into()],
            Template::Anthropic => vec!["api.anthropic.com".into()],
            Template::Generic => base_url_host(&args.base_url).into_iter().collect(),
        }
    };
    let credentials = match (&args.credential, &args.credential_header) {
        (None, Some(_)) => bail!("--credential-header needs --credential (or ${CREDENTIAL_ENV})"),
        (None, None) => Vec::new(),
        (Some(value), Some(header)) => vec![credential(header, value.clone())],
        (Some(value), None) => match template {
            Template::Openai if value.starts_with("Bearer ") => vec![credential("authorization", value.clone())],
            Template::Openai => vec![credential("authorization", format!("Bearer {value}"))],
            Template::Anthropic => vec![credential("x-api-key", value.clone())],
            Template::Generic => bail!("--template generic needs --credential-header to say which header carries the credential"),
        },
    };
    if credentials.iter().any(|c| c.value.trim().is_empty()) {
        bail!("the credential is empty");
    }
    let mut default_headers = args
        .default_headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if template == Template::Anthropic
        && !default_headers
            .iter()
            .any(|(n, _)| n == "anthropic-version")
    {
        default_headers.push(("anthropic-version".into(), "2023-06-01".into()));
    }
    let mut catalog = template_catalog(template);
    for op in &args.operations {
        catalog.push(parse_operation(op)?);
    }
    Ok(ProviderDef {
        name: args.name.clone(),
        template,
        base_url: args.base_url.clone(),
        hosts,
        credentials,
        default_headers,
        pinned_headers: args
            .pinned_headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<anyhow::Result<Vec<_>>>()?,
        allow_headers: args.allow_headers.clone(),
        catalog,
        passthrough: args.passthrough,
        allow_private_network: args.allow_private_network,
    })
}

fn credential(header: &str, value: String) -> Credential {
    Credential {
        header: header.trim().to_ascii_lowercase(),
        value,
    }
}

fn base_url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
}

/// `Name: value` into a lowercase name and a trimmed value.
pub fn parse_header(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        }
        _ => Err(anyhow!(
            "--default-header {s:?} must look like 'Name: value'"
        )),
    }
}

/// `METHOD /path=resource[:action]` into a catalog entry. The method, path
/// and resource are checked by the catalog compiler; this checks the shape.
pub fn parse_operation(s: &str) -> anyhow::Result<CatalogEntry> {
    let bad = |why: &str| {
        anyhow!("--operation {s:?}: {why}; expected 'METHOD /path=resource[:action]', e.g. 'POST /v1/rerank=rerank:create'")
    };
    let (method, rest) = s
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("no space after the method"))?;
    let (path, scope) = rest
        .trim()
        .rsplit_once('=')
        .ok_or_else(|| bad("no '=' before the resource"))?;
    let (resource, action) = match scope.split_once(':') {
        Some((r, a)) => {
            let action = Action::parse(a.trim())
                .ok_or_else(|| bad("the action must be read, create, update or delete"))?;
            (r, Some(action))
        }
        None => (scope, None),
    };
    if method.is_empty() || path.trim().is_empty() || resource.trim().is_empty() {
        return Err(bad("method, path and resource are all required"));
    }
    Ok(CatalogEntry {
        method: method.to_ascii_uppercase(),
        path: path.trim().to_string(),
        resource: resource.trim().to_string(),
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse() {
        let e = parse_operation("post /v1/rerank=rerank:create").unwrap();
        assert_eq!(
            (e.method.as_str(), e.path.as_str(), e.resource.as_str()),
            ("POST", "/v1/rerank", "rerank")
        );
        assert_eq!(e.action, Some(Action::Create));
        let e = parse_operation("* /api/**=things").unwrap();
        assert_eq!((e.method.as_str(), e.action), ("*", None));
        for bad in [
            "POST/v1/x=y",
            "POST /v1/x",
            "POST /v1/x=y:fly",
            "POST /v1/x=",
            " =y",
        ] {
            assert!(parse_operation(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_header("X-Org: acme ").unwrap(),
            ("x-org".into(), "acme".into())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": v").is_err());
    }
}
