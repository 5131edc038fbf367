//! `caracal policy`: authority policies — which resources and actions a
//! principal may put into mandates, for how long, and whether they may be
//! delegated. Every change is a new version with who made it and why.

use anyhow::{anyhow, bail, Context as _};
use caracal_gateway::authority::Scope;
use caracal_gateway::budget::rate::RateLimit;
use caracal_gateway::budget::window::{Period, WindowSpec, WindowType};
use caracal_gateway::model::Action;
use caracal_gateway::money::{parse_amount, Currency, Decimal, Money};
use caracal_gateway::policy::{
    validate_reason, Budget, Policy, PolicyDefinition, DEFAULT_MAX_OUTPUT_TOKENS,
};
use caracal_gateway::store::{Change, Store};
use clap::{Args, Subcommand};

use crate::context::{self, Context};
use crate::output::{self, Exit, Io};

/// The scope and limits of a policy, as flags.
#[derive(Debug, Args)]
pub struct DefinitionArgs {
    /// A resource the policy covers: a catalog name (chat.completions), a glob
    /// (chat.*) or a regex (re:chat\..*). Repeat for several. Must exist in
    /// the workspace's provider catalogs (`caracal provider show NAME`).
    #[arg(long = "resource", value_name = "R")]
    pub resources: Vec<String>,
    /// An action the policy covers: read, create, update or delete. Repeat for several.
    #[arg(long = "action", value_name = "A", value_parser = parse_action)]
    pub actions: Vec<Action>,
    /// Longest validity of a mandate issued under the policy, e.g. 15m, 1h, 7d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_validity: Option<i64>,
    /// Mandates issued under the policy may be delegated.
    #[arg(long)]
    pub allow_delegation: bool,
    /// Longest delegation chain below a root mandate (default 1 when delegation is allowed).
    #[arg(long, value_name = "N")]
    pub max_delegation_depth: Option<u32>,
    /// Budget: the most the principal may spend per window, e.g. 100.00
    /// (exact decimal). Needs --time-window.
    #[arg(
        long,
        value_name = "AMOUNT",
        value_parser = parse_money_amount,
        allow_negative_numbers = true
    )]
    pub limit: Option<Decimal>,
    /// Currency of --limit (ISO code, default USD); calls priced in another
    /// currency are refused under this budget.
    #[arg(long, value_name = "CODE", value_parser = parse_currency)]
    pub currency: Option<Currency>,
    /// Budget window: hourly, daily, weekly or monthly.
    #[arg(long, value_name = "PERIOD", value_parser = parse_period)]
    pub time_window: Option<Period>,
    /// calendar (resets at the start of each hour/day/ISO week/month in
    /// --timezone; the default) or rolling (the last 1h/24h/7d/30d).
    #[arg(long, value_name = "TYPE", value_parser = parse_window_type)]
    pub window_type: Option<WindowType>,
    /// IANA time zone of calendar windows, e.g. Europe/Berlin (default UTC).
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Output tokens a request without its own maximum is reserved for
    /// (default 4096).
    #[arg(long, value_name = "N")]
    pub max_output_tokens: Option<u64>,
    /// Rate limit: requests per minute (sliding 60 s window).
    #[arg(long, value_name = "N")]
    pub requests_per_minute: Option<u32>,
    /// Rate limit: tokens (input + output) per minute (sliding 60 s window).
    #[arg(long, value_name = "N")]
    pub tokens_per_minute: Option<u64>,
    /// Requests of the principal in flight at once (streams count until they
    /// end); beyond it, 429 rate_limited. Below the workspace's
    /// limits.max_in_flight_per_principal (default 512), which applies without it.
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u32>,
}

fn parse_money_amount(s: &str) -> Result<Decimal, String> {
    parse_amount(s).map_err(|e| e.to_string())
}

fn parse_currency(s: &str) -> Result<Currency, String> {
    s.parse::<Currency>().map_err(|e| e.to_string())
}

fn parse_period(s: &str) -> Result<Period, String> {
    s.parse::<Period>().map_err(|e| e.to_string())
}

fn parse_window_type(s: &str) -> Result<WindowType, String> {
    s.parse::<WindowType>().map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Create a policy for a principal: a scope for mandates (--resource,
    /// --action, --max-validity), a budget (--limit, --time-window, ...), a
    /// rate limit (--requests-per-minute, --tokens-per-minute), an in-flight
    /// limit (--max-in-flight), or several.
    Create {
        /// The principal the policy is for (id or name).
        #[arg(long, visible_alias = "agent-id", value_name = "ID")]
        principal_id: String,
        #[command(flatten)]
        definition: DefinitionArgs,
        /// Why the policy is created (kept in its history).
        #[arg(long, value_name = "TEXT")]
        change_reason: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a policy: a new version replaces the scope or limits given.
    /// A narrower scope also narrows the mandates already issued under it,
    /// on running gateways within a second.
    Update {
        /// The policy id.
        id: String,
        #[command(flatten)]
        definition: DefinitionArgs,
        /// Forbid delegation (the opposite of --allow-delegation).
        #[arg(long, conflicts_with = "allow_delegation")]
        no_delegation: bool,
        /// Why the policy changes (kept in its history).
        #[arg(long, value_name = "TEXT")]
        change_reason: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a policy: no mandate can be issued under it any more, and
    /// running gateways stop honouring those already issued within a second.
    Disable {
        /// The policy id.
        id: String,
        /// Why the policy is disabled (kept in its history).
        #[arg(long, value_name = "TEXT")]
        change_reason: String,
    },
    /// List policies (their current versions).
    List {
        /// Only this principal's policies (id or name).
        #[arg(long, visible_alias = "agent-id", value_name = "ID")]
        principal_id: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a policy's current version.
    Show {
        /// The policy id.
        id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every version of a policy, with who changed it and why.
    History {
        /// The policy id.
        id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn parse_action(s: &str) -> Result<Action, String> {
    Action::parse(s)
        .ok_or_else(|| format!("{s:?} is not an action; use read, create, update or delete"))
}

/// Parses durations like `90s`, `15m`, `1h`, `7d`, `1h30m` into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let d: jiff::Span = s
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 15m, 1h or 7d"))?;
    let secs = d
        .total((jiff::Unit::Second, jiff::civil::date(2000, 1, 1)))
        .map_err(|e| format!("{s:?}: {e}"))?;
    if !(secs.is_finite() && secs >= 1.0 && secs <= i64::MAX as f64) {
        return Err(format!("{s:?} must be at least one second"));
    }
    Ok(secs as i64)
}

/// Who is making a change: `$CARACAL_OPERATOR`, else the login name.
pub fn operator() -> String {
    ["CARACAL_OPERATOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

fn change(reason: String) -> anyhow::Result<Change> {
    validate_reason(&reason)?;
    Ok(Change {
        changed_by: operator(),
        reason,
    })
}

/// Every (resource, action) the workspace's providers offer.
async fn catalog(store: &dyn Store) -> anyhow::Result<Vec<(String, Action)>> {
    let rows = store.load_state().await?;
    let (snapshot, _) = caracal_gateway::snapshot::Snapshot::build(rows, Default::default());
    let mut ops: Vec<(String, Action)> = snapshot
        .provider_names()
        .filter_map(|n| snapshot.provider(n))
        .flat_map(|p| p.catalog.operations())
        .collect();
    ops.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
    ops.dedup();
    if ops.is_empty() {
        bail!("the workspace has no providers, so no resources to grant; add one with `caracal provider add`");
    }
    Ok(ops)
}

fn definition(
    args: DefinitionArgs,
    base: Option<&PolicyDefinition>,
    no_delegation: bool,
) -> anyhow::Result<PolicyDefinition> {
    let budget = budget(&args, base.and_then(|b| b.budget.as_ref()))?;
    let rate = match (args.requests_per_minute, args.tokens_per_minute) {
        (None, None) => base.and_then(|b| b.rate),
        (rpm, tpm) => {
            let old = base.and_then(|b| b.rate.as_ref());
            Some(RateLimit {
                requests_per_minute: rpm.or(old.and_then(|r| r.requests_per_minute)),
                tokens_per_minute: tpm.or(old.and_then(|r| r.tokens_per_minute)),
            })
        }
    };
    let allow = if no_delegation {
        false
    } else {
        args.allow_delegation || base.is_some_and(|b| b.allow_delegation)
    };
    let resources = if args.resources.is_empty() {
        base.map(|b| b.scope.resources.clone()).unwrap_or_default()
    } else {
        args.resources
    };
    let actions = if args.actions.is_empty() {
        base.map(|b| b.scope.actions.clone()).unwrap_or_default()
    } else {
        args.actions
    };
    let has_scope = !resources.is_empty() || !actions.is_empty();
    let max_validity_secs = match args.max_validity.or(base.map(|b| b.max_validity_secs)) {
        Some(v) if v > 0 => v,
        _ if has_scope => bail!("--max-validity is required with a scope (e.g. 1h)"),
        _ => 0,
    };
    let depth = args
        .max_delegation_depth
        .or(base.map(|b| b.max_delegation_depth))
        .unwrap_or(1);
    Ok(PolicyDefinition {
        scope: Scope { resources, actions },
        max_validity_secs,
        allow_delegation: allow,
        max_delegation_depth: if allow { depth } else { 0 },
        budget,
        rate,
        max_in_flight: args.max_in_flight.or(base.and_then(|b| b.max_in_flight)),
    })
}

/// The budget from the flags, over the current one when updating.
fn budget(args: &DefinitionArgs, base: Option<&Budget>) -> anyhow::Result<Option<Budget>> {
    let touched = args.limit.is_some()
        || args.currency.is_some()
        || args.time_window.is_some()
        || args.window_type.is_some()
        || args.timezone.is_some()
        || args.max_output_tokens.is_some();
    if !touched {
        return Ok(base.cloned());
    }
    let limit = args
        .limit
        .or(base.map(|b| b.limit.amount))
        .ok_or_else(|| anyhow!("a budget needs --limit (e.g. 100.00)"))?;
    let currency = args
        .currency
        .or(base.map(|b| b.limit.currency))
        .unwrap_or(Currency::USD);
    let period = args
        .time_window
        .or(base.map(|b| b.window.period()))
        .ok_or_else(|| {
            anyhow!("a budget needs --time-window (hourly, daily, weekly or monthly)")
        })?;
    let window_type = args
        .window_type
        .or(base.map(|b| b.window.window_type()))
        .unwrap_or(WindowType::Calendar);
    let timezone = args
        .timezone
        .clone()
        .or(base.map(|b| b.window.timezone().to_string()))
        .unwrap_or_else(|| "UTC".into());
    let window = WindowSpec::new(period, window_type, &timezone)?;
    Ok(Some(Budget {
        limit: Money::new(limit, currency),
        window,
        max_output_tokens: args
            .max_output_tokens
            .or(base.map(|b| b.max_output_tokens))
            .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
    }))
}

pub async fn run(cmd: PolicyCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let opened = ws.store().await?;
    let store: &dyn caracal_gateway::store::Store = &*opened;
    match cmd {
        PolicyCmd::Create {
            principal_id,
            definition: args,
            change_reason,
            json,
        } => {
            let principal = context::principal(store, &principal_id).await?;
            let change = change(change_reason)?;
            let def = definition(args, None, false)?;
            def.validate(&catalog(store).await?)?;
            let policy = store.create_policy(&principal.id, &def, &change).await?;
            print_one(io, &policy, json, "created")?;
        }
        PolicyCmd::Update {
            id,
            definition: args,
            no_delegation,
            change_reason,
            json,
        } => {
            let change = change(change_reason)?;
            let current = current(store, &id).await?;
            let def = definition(args, Some(&current.definition), no_delegation)?;
            def.validate(&catalog(store).await?)?;
            let policy = store.change_policy(&id, Some(&def), true, &change).await?;
            print_one(io, &policy, json, "updated")?;
        }
        PolicyCmd::Disable { id, change_reason } => {
            let change = change(change_reason)?;
            let policy = store.change_policy(&id, None, false, &change).await?;
            writeln!(
                io.out,
                "policy {} disabled (version {})",
                policy.id, policy.version
            )?;
        }
        PolicyCmd::List { principal_id, json } => {
            let only = match principal_id {
                Some(p) => Some(context::principal(store, &p).await?.id),
                None => None,
            };
            let policies = store.list_policies(only.as_deref()).await?;
            print_many(io, &policies, json, "no policies")?;
        }
        PolicyCmd::Show { id, json } => {
            let policy = current(store, &id).await?;
            print_one(io, &policy, json, "")?;
        }
        PolicyCmd::History { id, json } => {
            let versions = store.policy_history(&id).await?;
            print_many(io, &versions, json, "no versions")?;
        }
    }
    Ok(Exit::Success)
}

async fn current(store: &dyn Store, id: &str) -> anyhow::Result<Policy> {
    store
        .policy_history(id)
        .await?
        .pop()
        .with_context(|| format!("policy {id} has no versions"))
}

fn print_one(io: &mut Io<'_>, p: &Policy, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        return output::json(io.out, p);
    }
    if !verb.is_empty() {
        writeln!(io.out, "policy {} {verb} (version {})", p.id, p.version)?;
    }
    print_many(io, std::slice::from_ref(p), false, "")
}

fn print_many(io: &mut Io<'_>, policies: &[Policy], json: bool, empty: &str) -> anyhow::Result<()> {
    if json {
        return output::json(io.out, &policies);
    }
    if policies.is_empty() {
        writeln!(io.out, "{empty}")?;
        return Ok(());
    }
    let mut t = output::table(&[
        "ID",
        "VER",
        "PRINCIPAL",
        "RESOURCES",
        "ACTIONS",
        "MAX VALIDITY",
        "DELEGATION",
        "BUDGET",
        "RATE",
        "ACTIVE",
        "CHANGED BY",
        "REASON",
        "AT",
    ]);
    for p in policies {
        let d = &p.definition;
        t.add_row(vec![
            p.id.clone(),
            p.version.to_string(),
            p.principal_id.clone(),
            d.scope.resources.join(", "),
            d.scope
                .actions
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if d.max_validity_secs > 0 {
                format!("{}s", d.max_validity_secs)
            } else {
                "-".into()
            },
            if d.allow_delegation {
                format!("depth ≤ {}", d.max_delegation_depth)
            } else {
                "no".into()
            },
            d.budget.as_ref().map_or_else(
                || "-".into(),
                |b| {
                    format!(
                        "{} {} {} ({})",
                        b.limit,
                        b.window.period().as_str(),
                        b.window.window_type().as_str(),
                        b.window.timezone()
                    )
                },
            ),
            {
                let mut parts = Vec::new();
                if let Some(n) = d.rate.as_ref().and_then(|r| r.requests_per_minute) {
                    parts.push(format!("{n} req/min"));
                }
                if let Some(n) = d.rate.as_ref().and_then(|r| r.tokens_per_minute) {
                    parts.push(format!("{n} tok/min"));
                }
                if let Some(n) = d.max_in_flight {
                    parts.push(format!("{n} in flight"));
                }
                if parts.is_empty() {
                    "-".into()
                } else {
                    parts.join(", ")
                }
            },
            if p.active { "yes" } else { "no" }.into(),
            p.changed_by.clone(),
            p.change_reason.clone(),
            p.created_at.clone(),
        ]);
    }
    output::print_table(io.out, &t)
}
