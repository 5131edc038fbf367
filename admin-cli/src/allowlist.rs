//! `caracal allowlist`: the URL patterns each principal may call, and a
//! dry run of the gateway's exact allowlist decision.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{anyhow, bail};
use caracal_gateway::allowlist::validate_pattern;
use caracal_gateway::destination::{self, Host};
use caracal_gateway::model::{AllowlistEntry, PatternType};
use caracal_gateway::snapshot::Snapshot;
use clap::{ArgGroup, Subcommand, ValueEnum};
use serde::Serialize;

use crate::context::{self, Context};
use crate::output::{self, Exit, Io};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PatternArg {
    /// A regular expression, anchored at both ends whether or not it says so.
    Regex,
    /// A glob: `*` matches any characters including '/'.
    Glob,
}

impl From<PatternArg> for PatternType {
    fn from(p: PatternArg) -> Self {
        match p {
            PatternArg::Regex => Self::Regex,
            PatternArg::Glob => Self::Glob,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AllowlistCmd {
    /// Allow a principal to call URLs matching a pattern. Patterns match
    /// `scheme://host[:port]/path` (no query; the port only when not the default),
    /// e.g. 'https://api.openai.com/*' or '^https://api\.openai\.com/v1/.*$'.
    Create {
        /// The principal's id or name.
        #[arg(long, value_name = "ID")]
        agent_id: String,
        /// The URL pattern.
        #[arg(long)]
        pattern: String,
        /// How the pattern is written.
        #[arg(long, value_enum)]
        pattern_type: PatternArg,
        /// Print the new entry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List allowlist entries, of one principal or of all.
    List {
        /// Only this principal's entries (id or name).
        #[arg(long, value_name = "ID")]
        agent_id: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete an allowlist entry by its id (given as --id or positionally).
    #[command(group(ArgGroup::new("entry").required(true).args(["id", "id_flag"])))]
    Delete {
        /// The entry id (as printed by `allowlist create` and `allowlist list`).
        id: Option<String>,
        /// The entry id.
        #[arg(long = "id", value_name = "ID")]
        id_flag: Option<String>,
    },
    /// Would the gateway let this principal call URL? Runs the gateway's own
    /// allowlist check on the current state. A query string or fragment is
    /// stripped first (patterns see `scheme://host[:port]/path`). Exit 0 on allow,
    /// 1 on deny.
    Test {
        /// The principal's id or name.
        #[arg(long, value_name = "ID")]
        agent_id: String,
        /// The URL the principal would call, e.g. https://api.openai.com/v1/models.
        #[arg(long)]
        url: String,
        /// Print the decision as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Decision {
    principal_id: String,
    url: String,
    allowed: bool,
    /// The matching entry; absent when allowed by the workspace default.
    entry_id: Option<String>,
    pattern: Option<String>,
    code: Option<&'static str>,
    message: Option<String>,
}

pub async fn run(cmd: AllowlistCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let opened = ws.store().await?;
    let store: &dyn caracal_gateway::store::Store = &*opened;
    match cmd {
        AllowlistCmd::Create {
            agent_id,
            pattern,
            pattern_type,
            json,
        } => {
            let principal = context::principal(store, &agent_id).await?;
            let kind = PatternType::from(pattern_type);
            validate_pattern(&pattern, kind)
                .map_err(|e| anyhow!("pattern {pattern:?} rejected: {e}"))?;
            let entry = store.add_allowlist(&principal.id, &pattern, kind).await?;
            if json {
                output::json(io.out, &entry)?;
            } else {
                writeln!(
                    io.out,
                    "allowlist entry {} added for {} ({})",
                    entry.id, principal.name, principal.id
                )?;
            }
        }
        AllowlistCmd::List { agent_id, json } => {
            let only = match &agent_id {
                Some(a) => Some(context::principal(store, a).await?.id),
                None => None,
            };
            let entries = store.list_allowlists(only.as_deref()).await?;
            if json {
                output::json(io.out, &entries)?;
            } else if entries.is_empty() {
                writeln!(io.out, "no allowlist entries")?;
            } else {
                let names = context::principal_names(store).await?;
                print_entries(io.out, &entries, &names)?;
            }
        }
        AllowlistCmd::Delete { id, id_flag } => {
            let id = id.or(id_flag).ok_or_else(|| anyhow!("give the entry id"))?;
            store.delete_allowlist(&id).await?;
            writeln!(io.out, "allowlist entry {id} deleted")?;
        }
        AllowlistCmd::Test {
            agent_id,
            url,
            json,
        } => {
            let principal = context::principal(store, &agent_id).await?;
            let url = canonical_url(&url)?;
            let (snapshot, _warnings) =
                Snapshot::build(store.load_state().await?, ws.config.allowlist_default);
            let entries = store.list_allowlists(Some(&principal.id)).await?;
            let mut d = Decision {
                principal_id: principal.id.clone(),
                url: url.clone(),
                allowed: false,
                entry_id: None,
                pattern: None,
                code: None,
                message: None,
            };
            match snapshot.allowlists.check(&principal.id, &url) {
                Ok(entry_id) => {
                    let entry_id = entry_id.map(str::to_string);
                    d.allowed = true;
                    d.pattern = entry_id
                        .as_ref()
                        .and_then(|id| entries.iter().find(|e| &e.id == id))
                        .map(|e| e.pattern.clone());
                    d.entry_id = entry_id;
                }
                Err(denial) => {
                    d.code = Some(caracal_gateway::error::Code::ResourceNotAllowed.as_str());
                    d.message = Some(denial.0);
                }
            }
            if json {
                output::json(io.out, &d)?;
            } else if d.allowed {
                match (&d.entry_id, &d.pattern) {
                    (Some(id), Some(p)) => {
                        writeln!(io.out, "allow {url}\nmatched entry {id}: {p}")?
                    }
                    _ => writeln!(
                        io.out,
                        "allow {url}\n(no entries for {}; the workspace allows by default)",
                        principal.name
                    )?,
                }
            } else {
                writeln!(
                    io.out,
                    "deny {url}\n{}: {}",
                    d.code.unwrap_or_default(),
                    d.message.as_deref().unwrap_or_default()
                )?;
            }
            return Ok(Exit::from_ok(d.allowed));
        }
    }
    Ok(Exit::Success)
}

fn print_entries(
    out: &mut dyn Write,
    entries: &[AllowlistEntry],
    names: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let mut t = output::table(&["ID", "PRINCIPAL", "TYPE", "PATTERN", "CREATED"]);
    for e in entries {
        let who = names
            .get(&e.principal_id)
            .cloned()
            .unwrap_or_else(|| e.principal_id.clone());
        t.add_row([
            e.id.as_str(),
            &who,
            e.pattern_type.as_str(),
            &e.pattern,
            &e.created_at,
        ]);
    }
    output::print_table(out, &t)
}

/// The URL as the gateway's allowlist check sees it: `scheme://host[:port]/path`,
/// scheme and host normalised, the default port dropped, no query or fragment.
pub fn canonical_url(raw: &str) -> anyhow::Result<String> {
    let bad = || {
        anyhow!("--url {raw:?} must be an absolute http:// or https:// URL, e.g. https://api.openai.com/v1/models")
    };
    let without = raw.split(['?', '#']).next().unwrap_or(raw);
    let uri: http::Uri = without.parse().map_err(|_| bad())?;
    let (scheme, default_port) = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("https") => ("https", 443),
        Some("http") => ("http", 80),
        _ => return Err(bad()),
    };
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') {
        bail!("--url {raw:?} must not contain user information");
    }
    let host = match destination::parse_host(authority.host())
        .map_err(|e| anyhow!("--url {raw:?}: {e}"))?
    {
        Host::Name(n) => n,
        Host::Ip(ip) => ip.to_string(),
    };
    // As the gateway writes it: an IPv6 address in brackets.
    let host = caracal_gateway::proxy::route::url_host(&host);
    let host = match uri.port_u16() {
        Some(p) if p != default_port => format!("{host}:{p}"),
        _ => host,
    };
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    Ok(format!("{scheme}://{host}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_canonicalised_like_the_gateway() {
        let c = |u: &str| canonical_url(u).unwrap();
        assert_eq!(
            c("https://API.OpenAI.com/v1/models?limit=1#x"),
            "https://api.openai.com/v1/models"
        );
        assert_eq!(
            c("https://api.openai.com:443/v1"),
            "https://api.openai.com/v1"
        );
        assert_eq!(c("http://h.example:8080"), "http://h.example:8080/");
        // IPv6 stays bracketed: with a port it cannot read as a longer address.
        assert_eq!(
            c("https://[2606:4700::1111]:8443/v1"),
            "https://[2606:4700::1111]:8443/v1"
        );
        assert_eq!(
            c("https://[2606:4700::1111]/v1"),
            "https://[2606:4700::1111]/v1"
        );
        for bad in [
            "api.openai.com/v1",
            "ftp://x/",
            "https://u:p@x/",
            "/v1/models",
            "https://exa mple/",
        ] {
            assert!(canonical_url(bad).is_err(), "{bad:?} accepted");
        }
    }
}
