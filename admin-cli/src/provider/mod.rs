//! `caracal provider`: the workspace's upstream providers. Their catalogs
//! are the resources and actions policies and mandates speak about.

mod add;
mod check;

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{anyhow, bail};
use caracal_gateway::model::{Action, ProviderDef};
use caracal_gateway::provider::Provider;
use clap::Subcommand;
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, mask_secret, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum ProviderCmd {
    /// Add a provider to the workspace: where calls go, the credential the gateway
    /// injects, and the catalog of operations (the template's plus --operation).
    Add(add::AddArgs),
    /// List providers (credentials masked).
    List {
        /// Print a JSON array instead of a table (credentials masked there too).
        #[arg(long)]
        json: bool,
    },
    /// Show one provider with its catalog: method, path, resource, action.
    Show {
        /// Provider name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change which headers reach a provider: pin headers (--header 'Name: value'),
    /// unpin them (--unpin NAME), let more agent headers through (--allow-header) or
    /// fewer (--disallow-header). Running gateways use it within a second.
    Update {
        /// Provider name.
        name: String,
        /// Pin a header, as 'Name: value' (repeatable; replaces a pin of that name).
        #[arg(long = "header", value_name = "'NAME: VALUE'")]
        pin: Vec<String>,
        /// Stop pinning a header (repeatable).
        #[arg(long, value_name = "NAME")]
        unpin: Vec<String>,
        /// Let an agent header (or a prefix followed by *) through (repeatable).
        #[arg(long = "allow-header", value_name = "NAME")]
        allow: Vec<String>,
        /// Stop letting an agent header (or prefix*) through (repeatable).
        #[arg(long = "disallow-header", value_name = "NAME")]
        disallow: Vec<String>,
    },
    /// Remove a provider (running gateways stop routing to it within a second).
    Remove {
        /// Provider name.
        name: String,
    },
    /// Check the definition and make one real request upstream (GET /v1/models for
    /// openai and anthropic, GET / for generic) with the provider's credentials.
    /// Exit 1 if unreachable, on a 5xx, or when the credential is rejected (401/403).
    Test {
        /// Provider name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ProviderCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let opened = ws.store().await?;
    let store: &dyn caracal_gateway::store::Store = &*opened;
    match cmd {
        ProviderCmd::Add(args) => {
            let def = add::definition(&args)?;
            let provider = Provider::new(def).map_err(|e| anyhow!("{e}"))?;
            store.put_provider(&provider.def, args.replace).await?;
            writeln!(
                io.out,
                "provider {} saved in workspace {}",
                provider.def.name, ws.name
            )?;
            print_provider(io.out, &View::new(&provider.def, true))?;
        }
        ProviderCmd::List { json } => {
            let views: Vec<View> = store
                .list_providers()
                .await?
                .iter()
                .map(|d| View::new(d, false))
                .collect();
            if json {
                output::json(io.out, &views)?;
            } else if views.is_empty() {
                writeln!(io.out, "no providers yet; add one with `caracal provider add NAME --template ... --base-url ...`")?;
            } else {
                let mut t = output::table(&[
                    "NAME",
                    "TEMPLATE",
                    "BASE URL",
                    "HOSTS",
                    "CREDENTIAL",
                    "CATALOG ENTRIES",
                ]);
                for v in &views {
                    t.add_row([
                        v.name.clone(),
                        v.template.to_string(),
                        v.base_url.clone(),
                        v.hosts.join(", "),
                        v.credential_text(),
                        v.catalog_entries.to_string(),
                    ]);
                }
                output::print_table(io.out, &t)?;
            }
        }
        ProviderCmd::Show { name, json } => {
            let view = View::new(&store.get_provider(&name).await?, true);
            if json {
                output::json(io.out, &view)?;
            } else {
                print_provider(io.out, &view)?;
            }
        }
        ProviderCmd::Update {
            name,
            pin,
            unpin,
            allow,
            disallow,
        } => {
            if pin.is_empty() && unpin.is_empty() && allow.is_empty() && disallow.is_empty() {
                bail!("nothing to change: give --header, --unpin, --allow-header or --disallow-header");
            }
            let mut def = store.get_provider(&name).await?;
            let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
            for n in &unpin {
                if !def.pinned_headers.iter().any(|(p, _)| same(p, n)) {
                    bail!("--unpin {n}: provider {name} pins no such header");
                }
                def.pinned_headers.retain(|(p, _)| !same(p, n));
            }
            for h in &pin {
                let (n, v) = add::parse_header(h)?;
                def.pinned_headers.retain(|(p, _)| !same(p, &n));
                def.pinned_headers.push((n, v));
            }
            for a in &disallow {
                if !def.allow_headers.iter().any(|x| same(x, a)) {
                    bail!("--disallow-header {a}: provider {name} does not let it through");
                }
                def.allow_headers.retain(|x| !same(x, a));
            }
            for a in allow {
                if !def.allow_headers.iter().any(|x| same(x, &a)) {
                    def.allow_headers.push(a);
                }
            }
            let provider = Provider::new(def).map_err(|e| anyhow!("{e}"))?;
            store.put_provider(&provider.def, true).await?;
            writeln!(io.out, "provider {name} updated")?;
            print_provider(io.out, &View::new(&provider.def, false))?;
        }
        ProviderCmd::Remove { name } => {
            store.remove_provider(&name).await?;
            writeln!(io.out, "provider {name} removed")?;
        }
        ProviderCmd::Test { name, json } => {
            let def = store.get_provider(&name).await?;
            return check::run(def, &ws.config, json, io).await;
        }
    }
    Ok(Exit::Success)
}

/// A provider as shown: credentials masked, the catalog with each entry's
/// effective action, and the resources and actions it yields.
#[derive(Serialize)]
struct View {
    name: String,
    template: &'static str,
    base_url: String,
    hosts: Vec<String>,
    credentials: Vec<Header>,
    default_headers: Vec<Header>,
    pinned_headers: Vec<Header>,
    allow_headers: Vec<String>,
    passthrough: bool,
    allow_private_network: bool,
    catalog_entries: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog: Option<Vec<Entry>>,
    /// Resource name to its actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    operations: Option<BTreeMap<String, Vec<&'static str>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid: Option<String>,
}

#[derive(Serialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct Entry {
    method: String,
    path: String,
    resource: String,
    action: &'static str,
}

impl View {
    fn new(def: &ProviderDef, detail: bool) -> Self {
        let mut view = Self {
            name: def.name.clone(),
            template: def.template.as_str(),
            base_url: def.base_url.clone(),
            hosts: def.hosts.clone(),
            credentials: def
                .credentials
                .iter()
                .map(|c| Header {
                    name: c.header.clone(),
                    value: mask_secret(&c.value),
                })
                .collect(),
            default_headers: def
                .default_headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
            pinned_headers: def
                .pinned_headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
            allow_headers: def.allow_headers.clone(),
            passthrough: def.passthrough,
            allow_private_network: def.allow_private_network,
            catalog_entries: def.catalog.len(),
            catalog: None,
            operations: None,
            invalid: None,
        };
        if detail {
            view.catalog = Some(def.catalog.iter().map(entry).collect());
            match Provider::new(def.clone()) {
                Ok(p) => {
                    let mut ops: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
                    for (resource, action) in p.catalog.operations() {
                        ops.entry(resource).or_default().push(action.as_str());
                    }
                    view.operations = Some(ops);
                }
                Err(e) => view.invalid = Some(e.to_string()),
            }
        }
        view
    }

    fn credential_text(&self) -> String {
        if self.credentials.is_empty() {
            return "none".into();
        }
        let all: Vec<String> = self
            .credentials
            .iter()
            .map(|c| format!("{}: {}", c.name, c.value))
            .collect();
        all.join(", ")
    }
}

fn entry(e: &caracal_gateway::model::CatalogEntry) -> Entry {
    let implied = || {
        http::Method::from_bytes(e.method.to_ascii_uppercase().as_bytes())
            .map(|m| Action::for_method(&m))
            .unwrap_or(Action::Read)
    };
    Entry {
        method: e.method.clone(),
        path: e.path.clone(),
        resource: e.resource.clone(),
        action: e.action.unwrap_or_else(implied).as_str(),
    }
}

fn print_provider(out: &mut dyn Write, v: &View) -> anyhow::Result<()> {
    writeln!(out, "name:            {}", v.name)?;
    writeln!(out, "template:        {}", v.template)?;
    writeln!(out, "base URL:        {}", v.base_url)?;
    writeln!(
        out,
        "hosts:           {}",
        output::or_dash((!v.hosts.is_empty()).then(|| v.hosts.join(", ")))
    )?;
    writeln!(out, "credential:      {}", v.credential_text())?;
    let defaults: Vec<String> = v
        .default_headers
        .iter()
        .map(|h| format!("{}: {}", h.name, h.value))
        .collect();
    writeln!(
        out,
        "default headers: {}",
        output::or_dash((!defaults.is_empty()).then(|| defaults.join(", ")))
    )?;
    let pinned: Vec<String> = v
        .pinned_headers
        .iter()
        .map(|h| format!("{}: {}", h.name, h.value))
        .collect();
    writeln!(
        out,
        "pinned headers:  {}",
        output::or_dash((!pinned.is_empty()).then(|| pinned.join(", ")))
    )?;
    writeln!(
        out,
        "agent headers:   the template's{}",
        if v.allow_headers.is_empty() {
            String::new()
        } else {
            format!(", and {}", v.allow_headers.join(", "))
        }
    )?;
    writeln!(
        out,
        "passthrough:     {}",
        if v.passthrough { "yes" } else { "no" }
    )?;
    writeln!(
        out,
        "private network: {}",
        if v.allow_private_network {
            "allowed"
        } else {
            "refused"
        }
    )?;
    if let Some(why) = &v.invalid {
        writeln!(out, "INVALID:         {why}")?;
    }
    if let Some(catalog) = &v.catalog {
        writeln!(out, "\ncatalog:")?;
        let mut t = output::table(&["METHOD", "PATH", "RESOURCE", "ACTION"]);
        for e in catalog {
            t.add_row([e.method.as_str(), &e.path, &e.resource, e.action]);
        }
        output::print_table(out, &t)?;
    }
    if let Some(ops) = &v.operations {
        writeln!(
            out,
            "\nresources and actions (the scopes policies and mandates can name):"
        )?;
        let mut t = output::table(&["RESOURCE", "ACTIONS"]);
        for (resource, actions) in ops {
            t.add_row([resource.clone(), actions.join(", ")]);
        }
        output::print_table(out, &t)?;
    }
    Ok(())
}
