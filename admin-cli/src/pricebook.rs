//! `caracal pricebook`: what calls cost. Lists the effective prices (the
//! templates' built-in list prices and those set here), sets, imports and
//! removes prices: per million tokens for models (with their context
//! window), per request for catalog resources, per use for the tools the
//! provider runs. Import files are JSON (`{"price": [{...}, ...]}`), the
//! same fields as `set`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use caracal_gateway::catalog::valid_resource;
use caracal_gateway::model::ProviderDef;
use caracal_gateway::money::{fmt_amount, parse_amount, Currency, Decimal};
use caracal_gateway::pricing::{
    default_rows, valid_model, valid_tool, PriceKind, PriceRow, PriceSource, Pricebook, ANY_MODEL,
    MAX_CONTEXT_WINDOW,
};
use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum PricebookCmd {
    /// List every effective price: the templates' built-in list prices and
    /// those set or imported (SOURCE says which). Token prices are per million
    /// tokens.
    List {
        /// Only this provider's prices.
        #[arg(long, value_name = "NAME")]
        provider: Option<String>,
        /// Print a JSON array instead of a table (amounts as exact decimal strings).
        #[arg(long)]
        json: bool,
    },
    /// Set the price of a model (per million tokens, and its context window), of
    /// a catalog resource (per request) or of a tool the provider runs (per use).
    /// Replaces a built-in default or an earlier price; running gateways use it
    /// within a second.
    Set(SetArgs),
    /// Set many prices from a JSON file, all of them or none: {"price": [{"provider":
    /// "openai", "model": "gpt-4o", "input": "2.50", "output": "10.00"}, {"provider":
    /// "openai", "resource": "images.generations", "per_request": "0.04"}]}. Fields are
    /// those of `set` (cached_input, cache_write, context_window, tool, per_use,
    /// currency too); amounts and the context window are strings.
    Import {
        /// The JSON file.
        file: PathBuf,
    },
    /// Remove a price that was set or imported; a built-in default for the same
    /// model applies again.
    #[command(group(ArgGroup::new("what").required(true).args(["model", "resource", "tool"])))]
    Remove {
        /// The provider's name.
        #[arg(long, value_name = "NAME")]
        provider: String,
        /// The model id (or `*`).
        #[arg(long)]
        model: Option<String>,
        /// The catalog resource.
        #[arg(long)]
        resource: Option<String>,
        /// The provider-run tool.
        #[arg(long)]
        tool: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["model", "resource", "tool"])))]
pub struct SetArgs {
    /// The provider's name (`caracal provider list`).
    #[arg(long, value_name = "NAME")]
    provider: String,
    /// The model id, e.g. gpt-4o; dated ids (gpt-4o-2024-08-06) take the price
    /// of the longest listed id they extend. `*` prices every model of the
    /// provider that has no price of its own (otherwise such calls are refused).
    #[arg(long, requires_all = ["input", "output"])]
    model: Option<String>,
    /// Price per million input tokens, e.g. 2.50.
    #[arg(
        long,
        value_name = "AMOUNT",
        requires = "model",
        allow_negative_numbers = true
    )]
    input: Option<String>,
    /// Price per million output tokens.
    #[arg(
        long,
        value_name = "AMOUNT",
        requires = "model",
        allow_negative_numbers = true
    )]
    output: Option<String>,
    /// Price per million input tokens read from the prompt cache (default: the
    /// input price).
    #[arg(
        long,
        value_name = "AMOUNT",
        requires = "model",
        allow_negative_numbers = true
    )]
    cached_input: Option<String>,
    /// Price per million input tokens written to the prompt cache (default:
    /// the input price).
    #[arg(
        long,
        value_name = "AMOUNT",
        requires = "model",
        allow_negative_numbers = true
    )]
    cache_write: Option<String>,
    /// The most input tokens the model reads in one call. A budgeted request
    /// that brings in input its body does not carry (a previous response, a
    /// file, an image or a URL, results of provider-run tools) is priced with
    /// this many input tokens, and refused (`input_unbounded`) without it.
    #[arg(long, value_name = "TOKENS", requires = "model")]
    context_window: Option<String>,
    /// A resource of the provider's catalog priced per request, e.g.
    /// images.generations.
    #[arg(long, requires = "per_request")]
    resource: Option<String>,
    /// Price of one request of --resource.
    #[arg(
        long,
        value_name = "AMOUNT",
        requires = "resource",
        allow_negative_numbers = true
    )]
    per_request: Option<String>,
    /// A tool the provider runs, billed per use, named by its `type` without
    /// a version date: web_search, file_search, code_interpreter, web_fetch,
    /// code_execution, mcp. A budgeted request enabling a tool without a
    /// price is refused (`price_unknown`).
    #[arg(long, requires = "per_use")]
    tool: Option<String>,
    /// Price of one use of --tool.
    #[arg(
        long,
        value_name = "AMOUNT",
        requires = "tool",
        allow_negative_numbers = true
    )]
    per_use: Option<String>,
    /// ISO 4217 currency code of the amounts.
    #[arg(long, default_value = "USD")]
    currency: String,
    /// Print the stored price as JSON.
    #[arg(long)]
    json: bool,
}

/// One price as given on the command line or in an import entry, every
/// value still text.
#[derive(Debug, Default)]
struct Entry {
    provider: Option<String>,
    model: Option<String>,
    resource: Option<String>,
    input: Option<String>,
    output: Option<String>,
    cached_input: Option<String>,
    cache_write: Option<String>,
    context_window: Option<String>,
    per_request: Option<String>,
    tool: Option<String>,
    per_use: Option<String>,
    currency: Option<String>,
}

/// The fields of an entry, as import files name them.
const FIELDS: [&str; 12] = [
    "provider",
    "model",
    "resource",
    "tool",
    "input",
    "output",
    "cached_input",
    "cache_write",
    "context_window",
    "per_request",
    "per_use",
    "currency",
];

/// An entry refused: the field at fault (`None` for the entry as a whole).
struct EntryError {
    field: Option<&'static str>,
    message: String,
}

fn field_error(field: &'static str, message: impl Into<String>) -> EntryError {
    EntryError {
        field: Some(field),
        message: message.into(),
    }
}

impl Entry {
    fn slot(&mut self, field: &str) -> Option<&mut Option<String>> {
        Some(match field {
            "provider" => &mut self.provider,
            "model" => &mut self.model,
            "resource" => &mut self.resource,
            "input" => &mut self.input,
            "output" => &mut self.output,
            "cached_input" => &mut self.cached_input,
            "cache_write" => &mut self.cache_write,
            "context_window" => &mut self.context_window,
            "per_request" => &mut self.per_request,
            "tool" => &mut self.tool,
            "per_use" => &mut self.per_use,
            "currency" => &mut self.currency,
            _ => return None,
        })
    }

    /// The row this entry asks for, checked on its own (not yet against
    /// the providers).
    fn to_row(&self, source: PriceSource) -> Result<PriceRow, EntryError> {
        let provider = self
            .provider
            .as_deref()
            .ok_or_else(|| field_error("provider", "missing"))?;
        let currency: Currency = match &self.currency {
            Some(c) => c
                .parse()
                .map_err(|e| field_error("currency", format!("{e}")))?,
            None => Currency::USD,
        };
        let amount = |field: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(|s| parse_amount(s).map_err(|e| field_error(field, e.to_string())))
                .transpose()
        };
        let required = |field: &'static str, v: &Option<String>| {
            amount(field, v)?.ok_or_else(|| field_error(field, "missing"))
        };
        let refuse = |fields: &[(&'static str, &Option<String>)], why: &str| match fields
            .iter()
            .find(|(_, v)| v.is_some())
        {
            Some((f, _)) => Err(field_error(f, why.to_string())),
            None => Ok(()),
        };
        let named = [
            ("model", &self.model),
            ("resource", &self.resource),
            ("tool", &self.tool),
        ];
        let mut given = named.iter().filter(|(_, v)| v.is_some());
        let (what, _) = match (given.next(), given.next()) {
            (Some(first), None) => *first,
            (Some(_), Some((second, _))) => {
                return Err(field_error(
                    second,
                    "give one of a model, a resource or a tool",
                ))
            }
            (None, _) => {
                return Err(EntryError {
                    field: None,
                    message: "give a model, a resource or a tool".into(),
                })
            }
        };
        let tokens = [
            ("input", &self.input),
            ("output", &self.output),
            ("cached_input", &self.cached_input),
            ("cache_write", &self.cache_write),
            ("context_window", &self.context_window),
        ];
        let row = match (what, &self.model, &self.resource, &self.tool) {
            ("model", Some(model), _, _) => {
                if model != ANY_MODEL && !valid_model(model) {
                    return Err(field_error(
                        "model",
                        format!("{model:?} is not a model id (1-128 characters of [A-Za-z0-9._:/@-], or `*`)"),
                    ));
                }
                refuse(
                    &[
                        ("per_request", &self.per_request),
                        ("per_use", &self.per_use),
                    ],
                    "a model is priced per token",
                )?;
                let row = PriceRow::model(
                    provider,
                    model,
                    currency,
                    required("input", &self.input)?,
                    required("output", &self.output)?,
                    amount("cached_input", &self.cached_input)?,
                    amount("cache_write", &self.cache_write)?,
                    source,
                );
                match &self.context_window {
                    None => row,
                    Some(w) => match w.trim().parse::<u64>() {
                        Ok(w) if (1..=MAX_CONTEXT_WINDOW).contains(&w) => {
                            row.with_context_window(w)
                        }
                        _ => {
                            return Err(field_error(
                                "context_window",
                                format!(
                                    "{w:?} is not a number of tokens from 1 to {MAX_CONTEXT_WINDOW}"
                                ),
                            ))
                        }
                    },
                }
            }
            ("resource", _, Some(resource), _) => {
                if !valid_resource(resource) {
                    return Err(field_error(
                        "resource",
                        format!(
                            "{resource:?} is not a resource name (1-128 characters of [a-z0-9._-])"
                        ),
                    ));
                }
                refuse(&tokens, "resources are priced per request, not per token")?;
                refuse(
                    &[("per_use", &self.per_use)],
                    "resources are priced per request",
                )?;
                let per_request = required("per_request", &self.per_request)?;
                PriceRow::resource(provider, resource, currency, per_request, source)
            }
            (_, _, _, Some(tool)) => {
                if !valid_tool(tool) {
                    return Err(field_error(
                        "tool",
                        format!("{tool:?} is not a tool name (1-64 characters of [a-z0-9_], e.g. web_search)"),
                    ));
                }
                refuse(&tokens, "tools are priced per use, not per token")?;
                refuse(
                    &[("per_request", &self.per_request)],
                    "tools are priced per use",
                )?;
                let per_use = required("per_use", &self.per_use)?;
                PriceRow::tool(provider, tool, currency, per_use, source)
            }
            _ => unreachable!("exactly one of model, resource and tool is given"),
        };
        row.validate().map_err(|e| EntryError {
            field: None,
            message: e.to_string(),
        })?;
        Ok(row)
    }
}

/// Checks a row against the workspace's providers: the provider exists
/// and a priced resource is in its catalog.
fn check_provider(
    row: &PriceRow,
    providers: &BTreeMap<String, ProviderDef>,
) -> Result<(), EntryError> {
    let Some(def) = providers.get(&row.provider) else {
        return Err(field_error(
            "provider",
            format!(
                "no provider named {:?}; `caracal provider list` shows them",
                row.provider
            ),
        ));
    };
    if row.kind == PriceKind::Resource && !def.catalog.iter().any(|e| e.resource == row.name) {
        let mut known: Vec<&str> = def.catalog.iter().map(|e| e.resource.as_str()).collect();
        known.sort_unstable();
        known.dedup();
        return Err(field_error(
            "resource",
            format!(
                "{:?} is not in the catalog of provider {:?} (it has: {})",
                row.name,
                row.provider,
                if known.is_empty() {
                    "nothing".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    Ok(())
}

pub async fn run(cmd: PricebookCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let opened = ws.store().await?;
    let store: &dyn caracal_gateway::store::Store = &*opened;
    let providers: BTreeMap<String, ProviderDef> = store
        .list_providers()
        .await?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    match cmd {
        PricebookCmd::List { provider, json } => {
            if let Some(p) = &provider {
                if !providers.contains_key(p) {
                    bail!("no provider named {p:?}; `caracal provider list` shows them");
                }
            }
            let templates: Vec<_> = providers
                .values()
                .map(|d| (d.name.clone(), d.template))
                .collect();
            let book = Pricebook::build(store.list_prices().await?, &templates);
            let rows: Vec<&PriceRow> = book
                .rows()
                .iter()
                .filter(|r| provider.as_ref().is_none_or(|p| &r.provider == p))
                .collect();
            if json {
                let views: Vec<PriceView> = rows.iter().map(|r| PriceView::of(r)).collect();
                output::json(io.out, &views)?;
            } else if rows.is_empty() {
                writeln!(
                    io.out,
                    "no prices (generic providers have no built-in prices; \
                     `caracal pricebook set` adds some)"
                )?;
            } else {
                print_rows(io.out, &rows)?;
            }
        }
        PricebookCmd::Set(args) => {
            let entry = Entry {
                provider: Some(args.provider),
                model: args.model,
                resource: args.resource,
                input: args.input,
                output: args.output,
                cached_input: args.cached_input,
                cache_write: args.cache_write,
                context_window: args.context_window,
                per_request: args.per_request,
                tool: args.tool,
                per_use: args.per_use,
                currency: Some(args.currency),
            };
            let flag = |e: EntryError| match e.field {
                Some(f) => anyhow!("--{}: {}", f.replace('_', "-"), e.message),
                None => anyhow!("{}", e.message),
            };
            let row = entry.to_row(PriceSource::Set).map_err(flag)?;
            check_provider(&row, &providers).map_err(flag)?;
            let stored = store.put_prices(&[row]).await?;
            let row = stored
                .first()
                .ok_or_else(|| anyhow!("the store returned no price"))?;
            if args.json {
                output::json(io.out, &PriceView::of(row))?;
            } else {
                writeln!(io.out, "price set: {}", describe(row))?;
            }
        }
        PricebookCmd::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let rows = parse_import(&text, &providers)
                .map_err(|e| anyhow!("{}: nothing imported:\n{e}", file.display()))?;
            let stored = store.put_prices(&rows).await?;
            writeln!(io.out, "imported {} prices:", stored.len())?;
            for row in &stored {
                writeln!(io.out, "  {}", describe(row))?;
            }
        }
        PricebookCmd::Remove {
            provider,
            model,
            resource,
            tool,
        } => {
            let (kind, name) = match (model, resource, tool) {
                (Some(m), None, None) => (PriceKind::Model, m),
                (None, Some(r), None) => (PriceKind::Resource, r),
                (None, None, Some(t)) => (PriceKind::Tool, t),
                _ => bail!("give one of --model, --resource or --tool"),
            };
            store.delete_price(&provider, kind, &name).await?;
            let default = providers.get(&provider).and_then(|d| {
                default_rows(&provider, d.template)
                    .into_iter()
                    .find(|r| r.kind == kind && r.name == name)
            });
            match default {
                Some(d) => writeln!(
                    io.out,
                    "price of {provider} {} {name} removed; the built-in default applies again: {}",
                    kind.as_str(),
                    describe(&d)
                )?,
                None => writeln!(
                    io.out,
                    "price of {provider} {} {name} removed",
                    kind.as_str()
                )?,
            }
        }
    }
    Ok(Exit::Success)
}

/// Reads an import file into rows, checking every entry (shape, amounts,
/// provider, catalog, duplicates). All problems are reported together,
/// one line each, named `price[INDEX].FIELD`.
fn parse_import(
    text: &str,
    providers: &BTreeMap<String, ProviderDef>,
) -> Result<Vec<PriceRow>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("  not a JSON document: {e}"))?;
    let entries = match &doc {
        serde_json::Value::Object(o) if o.len() == 1 => o.get("price").and_then(|p| p.as_array()),
        _ => None,
    }
    .ok_or("  expected {\"price\": [ ... ]}, an object whose only field is an array of prices")?;
    if entries.is_empty() {
        return Err("  the \"price\" array is empty".into());
    }
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    let mut seen: HashMap<(String, PriceKind, String), usize> = HashMap::new();
    for (i, value) in entries.iter().enumerate() {
        let report = |e: EntryError| match e.field {
            Some(f) => format!("  price[{i}].{f}: {}", e.message),
            None => format!("  price[{i}]: {}", e.message),
        };
        let entry = match read_entry(value) {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(report(e));
                continue;
            }
        };
        let row = match entry.to_row(PriceSource::Import) {
            Ok(row) => row,
            Err(e) => {
                problems.push(report(e));
                continue;
            }
        };
        if let Err(e) = check_provider(&row, providers) {
            problems.push(report(e));
            continue;
        }
        let key = (row.provider.clone(), row.kind, row.name.clone());
        if let Some(first) = seen.insert(key, i) {
            problems.push(format!(
                "  price[{i}]: {} is priced already by price[{first}]",
                row.key()
            ));
            continue;
        }
        rows.push(row);
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems.join("\n"))
    }
}

fn read_entry(value: &serde_json::Value) -> Result<Entry, EntryError> {
    let object = value.as_object().ok_or_else(|| EntryError {
        field: None,
        message: "expected an object with provider, model or resource, and amounts".into(),
    })?;
    let mut entry = Entry::default();
    for (key, v) in object {
        let Some(field) = FIELDS.iter().copied().find(|f| f == key) else {
            return Err(EntryError {
                field: None,
                message: format!("unknown field {key:?} (fields: {})", FIELDS.join(", ")),
            });
        };
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => {
                return Err(field_error(
                    field,
                    format!(
                        "write amounts as strings, \"{n}\" not {n}: JSON numbers are not exact"
                    ),
                ))
            }
            _ => return Err(field_error(field, "expected a string")),
        };
        if let Some(slot) = entry.slot(field) {
            *slot = Some(text);
        }
    }
    Ok(entry)
}

/// A price for `list --json` and `set --json`: amounts as exact decimal
/// strings, cache prices resolved (the input price when not set), token
/// amounts absent for resources and the per-request amount for models.
#[derive(Serialize)]
struct PriceView<'a> {
    provider: &'a str,
    kind: PriceKind,
    name: &'a str,
    currency: Currency,
    input_per_mtok: Option<String>,
    cached_input_per_mtok: Option<String>,
    cache_write_per_mtok: Option<String>,
    output_per_mtok: Option<String>,
    /// Models: the most input tokens one call reads, if known.
    context_window: Option<u64>,
    per_request: Option<String>,
    /// Tools: the price of one use.
    per_use: Option<String>,
    source: PriceSource,
    updated_at: Option<&'a str>,
}

impl<'a> PriceView<'a> {
    fn of(r: &'a PriceRow) -> Self {
        let token = |d: Decimal| (r.kind == PriceKind::Model).then(|| d.to_string());
        Self {
            provider: &r.provider,
            kind: r.kind,
            name: &r.name,
            currency: r.currency,
            input_per_mtok: token(r.input_per_mtok),
            cached_input_per_mtok: token(r.cached_input_per_mtok.unwrap_or(r.input_per_mtok)),
            cache_write_per_mtok: token(r.cache_write_per_mtok.unwrap_or(r.input_per_mtok)),
            output_per_mtok: token(r.output_per_mtok),
            context_window: r.context_window,
            per_request: r
                .per_request
                .filter(|_| r.kind == PriceKind::Resource)
                .map(|d| d.to_string()),
            per_use: r
                .per_request
                .filter(|_| r.kind == PriceKind::Tool)
                .map(|d| d.to_string()),
            source: r.source,
            updated_at: r.updated_at.as_deref(),
        }
    }
}

/// One line for people: what a row prices and at how much.
fn describe(r: &PriceRow) -> String {
    match r.kind {
        PriceKind::Model => format!(
            "{} model {}: input {}, cached input {}, cache write {}, output {} {} per million tokens{}",
            r.provider,
            r.name,
            fmt_amount(r.input_per_mtok),
            fmt_amount(r.cached_input_per_mtok.unwrap_or(r.input_per_mtok)),
            fmt_amount(r.cache_write_per_mtok.unwrap_or(r.input_per_mtok)),
            fmt_amount(r.output_per_mtok),
            r.currency,
            r.context_window
                .map(|w| format!("; context window {w} tokens"))
                .unwrap_or_default()
        ),
        PriceKind::Tool => format!(
            "{} tool {}: {} {} per use",
            r.provider,
            r.name,
            output::or_dash(r.per_request.map(fmt_amount)),
            r.currency
        ),
        PriceKind::Resource => format!(
            "{} resource {}: {} {} per request",
            r.provider,
            r.name,
            output::or_dash(r.per_request.map(fmt_amount)),
            r.currency
        ),
    }
}

fn print_rows(out: &mut dyn Write, rows: &[&PriceRow]) -> anyhow::Result<()> {
    let mut t = output::table(&[
        "PROVIDER",
        "KIND",
        "NAME",
        "CURRENCY",
        "INPUT/MTOK",
        "CACHED/MTOK",
        "CACHE WRITE/MTOK",
        "OUTPUT/MTOK",
        "CONTEXT",
        "PER REQUEST/USE",
        "SOURCE",
        "UPDATED",
    ]);
    for r in rows {
        let token = |d: Decimal| match r.kind {
            PriceKind::Model => fmt_amount(d),
            PriceKind::Resource | PriceKind::Tool => "-".to_string(),
        };
        t.add_row([
            r.provider.as_str(),
            r.kind.as_str(),
            &r.name,
            r.currency.as_str(),
            &token(r.input_per_mtok),
            &token(r.cached_input_per_mtok.unwrap_or(r.input_per_mtok)),
            &token(r.cache_write_per_mtok.unwrap_or(r.input_per_mtok)),
            &token(r.output_per_mtok),
            &output::or_dash(r.context_window.map(|w| w.to_string())),
            &output::or_dash(r.per_request.map(fmt_amount)),
            r.source.as_str(),
            &output::or_dash(r.updated_at.as_deref()),
        ]);
    }
    output::print_table(out, &t)
}
