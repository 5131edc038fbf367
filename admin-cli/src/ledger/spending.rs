//! `caracal ledger query --agent-id ID --time-window PERIOD`: what a
//! principal has spent in its budgets' current windows, from the ledger and
//! the gateways' counters: the running gateway's in an embedded workspace;
//! in a distributed one, the spend aggregates the ledger writers keep in
//! PostgreSQL and the counters every replica shares in Redis.

use std::collections::BTreeMap;

use anyhow::anyhow;
use caracal_gateway::budget::window::{Period, WindowSpec, WindowType};
use caracal_gateway::model::Principal;
use caracal_gateway::money::{fmt_amount, parse_amount, Decimal};
use caracal_gateway::policy::{Budget, Policy};
use caracal_gateway::store::Spend;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use caracal_config::Deployment;

use crate::context::{self, Context, Workspace};
use crate::output::{self, or_dash, Exit, Io};
use crate::probe;
use crate::runtime::pidfile::{self, PidState};

/// One budget window of a principal (or, without a budget of the period,
/// the calendar window in UTC and one currency's spend in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct WindowSpending {
    principal: String,
    principal_name: String,
    period: &'static str,
    /// None when no budget policy with the period applies.
    policy_id: Option<String>,
    policy_version: Option<u32>,
    window_type: &'static str,
    timezone: String,
    /// None when there is neither a budget nor any spend.
    currency: Option<String>,
    limit: Option<String>,
    spent: String,
    /// `ledger` (costs recorded from the window start to now) or `gateway`
    /// (the gateways' counter, larger: it includes calls whose ledger rows
    /// are not written yet; in a distributed workspace, the counter the
    /// replicas share in Redis).
    spent_source: &'static str,
    reserved: String,
    /// limit − spent − reserved, never below 0; None without a budget.
    remaining: Option<String>,
    /// RFC 3339 in UTC.
    window_start: String,
    window_end: String,
    resets_at: String,
    /// The same instants in the policy's time zone (RFC 9557).
    window_start_local: String,
    window_end_local: String,
    resets_at_local: String,
    notes: Vec<String>,
}

/// A budget as the running gateway's `/budgets` reports it.
#[derive(Debug, Clone, Deserialize)]
struct LiveBudget {
    policy_id: String,
    currency: String,
    period: String,
    window_type: String,
    timezone: String,
    spent: String,
    reserved: String,
}

#[derive(Debug, Deserialize)]
struct LiveBudgets {
    budgets: Vec<LiveBudget>,
}

/// What the workspace's gateways say about a principal's budgets.
#[derive(Debug, Clone)]
enum Gateway {
    NotRunning,
    /// `what` (the gateway, Redis) did not answer, for `why`.
    Unreachable {
        what: &'static str,
        why: String,
    },
    Live(Vec<LiveBudget>),
}

const NOT_RUNNING: &str = "gateway not running: nothing is reserved";

/// `ledger query --agent-id ID --time-window PERIOD`.
pub(super) async fn spending(
    ctx: &Context,
    io: &mut Io<'_>,
    agent: &str,
    period: Period,
    json: bool,
) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let opened = ws.store().await?;
    let store: &dyn caracal_gateway::store::Store = &*opened;
    let principal = context::principal(store, agent).await?;
    let budgets: Vec<(Policy, Budget)> = store
        .list_policies(Some(&principal.id))
        .await?
        .into_iter()
        .filter(|p| p.active)
        .filter_map(|p| {
            let b = p.definition.budget.clone()?;
            (b.window.period() == period).then_some((p, b))
        })
        .collect();
    let now = Timestamp::now();
    let utc = WindowSpec::new(period, WindowType::Calendar, "UTC")?;
    let since = budgets
        .iter()
        .map(|(_, b)| b.window.current(now).start)
        .chain([utc.current(now).start])
        .min()
        .unwrap_or(now);
    // Per-minute sums where the store keeps them (PostgreSQL): a month of
    // calls is read as at most one row per minute and currency.
    let spend = store
        .spend_by_minute_since(&principal.id, since.as_millisecond())
        .await?;
    let rows = if budgets.is_empty() {
        unbudgeted(&principal, period, &spend, now)?
    } else {
        let gateway = match &ws.config.deployment {
            Deployment::Embedded => live_budgets(&ws, &principal.id).await,
            Deployment::Distributed(_) => {
                shared_budgets(&ws, opened.clone(), &principal.id, &budgets, now).await
            }
        };
        budgets
            .iter()
            .map(|(p, b)| budget_window(&principal, p, b, &spend, &gateway, now))
            .collect()
    };
    if json {
        output::json(io.out, &rows)?;
    } else {
        print_spending(io, &principal.name, period, now, &rows)?;
    }
    Ok(Exit::Success)
}

/// Asks the gateway `caracal up` started in this workspace (found through
/// its pid file, as `caracal status` does) for the principal's budgets.
async fn live_budgets(ws: &Workspace, principal_id: &str) -> Gateway {
    let pid_file = &ws.config.pid_file;
    let pid = match pidfile::check(pid_file) {
        Ok(PidState::Running(pid)) => pid,
        Ok(PidState::Missing | PidState::Stale(_)) => return Gateway::NotRunning,
        Err(e) => {
            return Gateway::Unreachable {
                what: "the gateway",
                why: output::error_chain(&e),
            }
        }
    };
    let addr = pidfile::read_state(pid_file, pid)
        .map(|s| s.metrics_listen)
        .unwrap_or(ws.config.metrics_listen);
    let path = format!("/budgets?principal={}", encode(principal_id));
    let answer = probe::get_json(addr, &path).await.and_then(|v| {
        serde_json::from_value::<LiveBudgets>(v)
            .map_err(|e| anyhow!("unexpected /budgets answer: {e}"))
    });
    match answer {
        Ok(b) => Gateway::Live(b.budgets),
        Err(e) => Gateway::Unreachable {
            what: "the gateway",
            why: output::error_chain(&e),
        },
    }
}

/// Reads the principal's budgets from the counters a distributed
/// workspace's replicas share in Redis, as a replica's `/budgets` would.
async fn shared_budgets(
    ws: &Workspace,
    store: std::sync::Arc<dyn caracal_gateway::store::Store>,
    principal_id: &str,
    budgets: &[(Policy, Budget)],
    now: Timestamp,
) -> Gateway {
    let answer = async {
        let (conn, keys) = crate::distributed::redis(ws).await?;
        let policies: Vec<Policy> = budgets.iter().map(|(p, _)| p.clone()).collect();
        let plans = caracal_gateway::budget::plans(&policies);
        // Only read: standings never prime a counter from the history.
        let history = std::sync::Arc::new(store);
        let counters = caracal_gateway::shared::RedisCounters::new(
            conn,
            keys,
            jiff::SignedDuration::from_secs(60),
            history,
        );
        let plan = plans.get(principal_id).map(|p| &**p);
        let report =
            caracal_gateway::ops::metrics::budgets_json(principal_id, plan, &counters, now).await;
        serde_json::from_value::<LiveBudgets>(report.clone()).map_err(|_| {
            let errors: Vec<&str> = report["budgets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b["error"].as_str())
                .collect();
            anyhow!("cannot read the budget counters: {}", errors.join("; "))
        })
    };
    match answer.await {
        Ok(b) => Gateway::Live(b.budgets),
        Err(e) => Gateway::Unreachable {
            what: "Redis",
            why: output::error_chain(&e),
        },
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sums the spend in `currency` (any when None) within `[start, now]`.
fn spent_in(spend: &[Spend], currency: &str, start: Timestamp, now: Timestamp) -> Decimal {
    let (from, to) = (start.as_millisecond(), now.as_millisecond());
    spend
        .iter()
        .filter(|s| s.ts_ms >= from && s.ts_ms <= to)
        .filter(|s| s.currency.eq_ignore_ascii_case(currency))
        .map(|s| s.amount)
        .sum()
}

fn local(t: Timestamp, spec: &WindowSpec) -> String {
    t.to_zoned(spec.tz().clone()).to_string()
}

/// The current window of one budget at `now`: spend from the ledger rows in
/// `spend`, raised to the gateway's counter when that is larger, and what
/// the gateway holds reserved.
fn budget_window(
    principal: &Principal,
    policy: &Policy,
    budget: &Budget,
    spend: &[Spend],
    gateway: &Gateway,
    now: Timestamp,
) -> WindowSpending {
    let spec = &budget.window;
    let currency = budget.limit.currency.as_str();
    let window = spec.current(now);
    let resets_at = spec.resets_at(now);
    let ledger = spent_in(spend, currency, window.start, now);
    let mut notes = Vec::new();
    let live = match gateway {
        Gateway::NotRunning => {
            notes.push(NOT_RUNNING.to_string());
            None
        }
        Gateway::Unreachable { what, why } => {
            notes.push(format!(
                "{what} did not answer ({why}): reserved counted as 0"
            ));
            None
        }
        Gateway::Live(list) => {
            let found = list.iter().find(|l| {
                l.policy_id == policy.id
                    && l.currency.eq_ignore_ascii_case(currency)
                    && l.period == spec.period().as_str()
                    && l.window_type == spec.window_type().as_str()
                    && l.timezone == spec.timezone()
            });
            match found.map(|l| (parse_amount(&l.spent), parse_amount(&l.reserved))) {
                Some((Ok(spent), Ok(reserved))) => Some((spent, reserved)),
                Some(_) => {
                    notes.push(
                        "the gateway reported amounts that are not decimals: reserved counted as 0"
                            .into(),
                    );
                    None
                }
                None => {
                    notes.push("the running gateway has not loaded this budget yet: nothing is reserved in it".into());
                    None
                }
            }
        }
    };
    let (live_spent, reserved) = live.unwrap_or((Decimal::ZERO, Decimal::ZERO));
    let (spent, source) = if live.is_some() && live_spent > ledger {
        (live_spent, "gateway")
    } else {
        (ledger, "ledger")
    };
    let remaining = (budget.limit.amount - spent - reserved).max(Decimal::ZERO);
    WindowSpending {
        principal: principal.id.clone(),
        principal_name: principal.name.clone(),
        period: spec.period().as_str(),
        policy_id: Some(policy.id.clone()),
        policy_version: Some(policy.version),
        window_type: spec.window_type().as_str(),
        timezone: spec.timezone().to_string(),
        currency: Some(currency.to_string()),
        limit: Some(fmt_amount(budget.limit.amount)),
        spent: fmt_amount(spent),
        spent_source: source,
        reserved: fmt_amount(reserved),
        remaining: Some(fmt_amount(remaining)),
        window_start: window.start.to_string(),
        window_end: window.end.to_string(),
        resets_at: resets_at.to_string(),
        window_start_local: local(window.start, spec),
        window_end_local: local(window.end, spec),
        resets_at_local: local(resets_at, spec),
        notes,
    }
}

/// Without a budget of `period`: its calendar window in UTC, with the
/// ledger's spend in it, one row per currency (one row of 0 when none).
fn unbudgeted(
    principal: &Principal,
    period: Period,
    spend: &[Spend],
    now: Timestamp,
) -> anyhow::Result<Vec<WindowSpending>> {
    let spec = WindowSpec::new(period, WindowType::Calendar, "UTC")?;
    let window = spec.current(now);
    let resets_at = spec.resets_at(now);
    let mut by_currency: BTreeMap<Option<String>, Decimal> = BTreeMap::new();
    for s in spend
        .iter()
        .filter(|s| s.ts_ms >= window.start.as_millisecond() && s.ts_ms <= now.as_millisecond())
    {
        *by_currency
            .entry(Some(s.currency.to_ascii_uppercase()))
            .or_default() += s.amount;
    }
    if by_currency.is_empty() {
        by_currency.insert(None, Decimal::ZERO);
    }
    let note = format!("no budget policy with a {} window applies", period.as_str());
    Ok(by_currency
        .into_iter()
        .map(|(currency, spent)| WindowSpending {
            principal: principal.id.clone(),
            principal_name: principal.name.clone(),
            period: period.as_str(),
            policy_id: None,
            policy_version: None,
            window_type: WindowType::Calendar.as_str(),
            timezone: spec.timezone().to_string(),
            currency,
            limit: None,
            spent: fmt_amount(spent),
            spent_source: "ledger",
            reserved: fmt_amount(Decimal::ZERO),
            remaining: None,
            window_start: window.start.to_string(),
            window_end: window.end.to_string(),
            resets_at: resets_at.to_string(),
            window_start_local: local(window.start, &spec),
            window_end_local: local(window.end, &spec),
            resets_at_local: local(resets_at, &spec),
            notes: vec![note.clone()],
        })
        .collect())
}

/// The text form: a block per budget window, notes on stderr.
fn print_spending(
    io: &mut Io<'_>,
    name: &str,
    period: Period,
    now: Timestamp,
    rows: &[WindowSpending],
) -> anyhow::Result<()> {
    let out = &mut *io.out;
    writeln!(out, "{} spending of {name} at {now}", period.as_str())?;
    if rows.iter().all(|r| r.policy_id.is_none()) {
        writeln!(
            out,
            "no budget policy with a {0} window applies to {name}; the {0} calendar window in UTC:",
            period.as_str()
        )?;
    }
    let mut notes: Vec<&str> = Vec::new();
    for r in rows {
        let currency = r.currency.as_deref().unwrap_or_default();
        let amount = |a: &str| format!("{a} {currency}").trim_end().to_string();
        if let (Some(id), Some(limit)) = (&r.policy_id, &r.limit) {
            writeln!(
                out,
                "policy {id} (version {}): limit {}, {} {} window in {}",
                or_dash(r.policy_version),
                amount(limit),
                r.period,
                r.window_type,
                r.timezone
            )?;
            notes.extend(r.notes.iter().map(String::as_str));
        }
        let source = match r.spent_source {
            "gateway" => "the gateways' count",
            _ => "from the ledger",
        };
        writeln!(out, "  spent      {} ({source})", amount(&r.spent))?;
        if let Some(remaining) = &r.remaining {
            writeln!(out, "  reserved   {}", amount(&r.reserved))?;
            writeln!(out, "  remaining  {}", amount(remaining))?;
        }
        if r.timezone == "UTC" {
            writeln!(out, "  window     {} – {}", r.window_start, r.window_end)?;
            writeln!(out, "  resets at  {}", r.resets_at)?;
        } else {
            writeln!(
                out,
                "  window     {} – {}",
                r.window_start_local, r.window_end_local
            )?;
            writeln!(
                out,
                "             {} – {} (UTC)",
                r.window_start, r.window_end
            )?;
            writeln!(out, "  resets at  {} ({})", r.resets_at_local, r.resets_at)?;
        }
    }
    notes.sort_unstable();
    notes.dedup();
    for n in notes {
        writeln!(io.err, "note: {n}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        parse_amount(s).unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn agent() -> Principal {
        Principal {
            id: "a-1".into(),
            kind: caracal_gateway::model::PrincipalKind::Agent,
            name: "worker".into(),
            email: "w@example.com".into(),
            created_at: String::new(),
        }
    }

    fn spend(at: &str, amount: &str, currency: &str) -> Spend {
        Spend {
            ts_ms: t(at).as_millisecond(),
            amount: d(amount),
            currency: currency.into(),
        }
    }

    fn daily_budget(zone: &str) -> (Policy, Budget) {
        let budget = Budget {
            limit: caracal_gateway::money::Money::new(
                d("5"),
                caracal_gateway::money::Currency::USD,
            ),
            window: WindowSpec::new(Period::Daily, WindowType::Calendar, zone).unwrap(),
            max_output_tokens: 100,
        };
        let policy = Policy {
            id: "p-1".into(),
            version: 2,
            principal_id: "a-1".into(),
            definition: caracal_gateway::policy::PolicyDefinition {
                budget: Some(budget.clone()),
                ..Default::default()
            },
            active: true,
            changed_by: "ops".into(),
            change_reason: "x".into(),
            created_at: String::new(),
        };
        (policy, budget)
    }

    fn live(spent: &str, reserved: &str) -> Gateway {
        Gateway::Live(vec![LiveBudget {
            policy_id: "p-1".into(),
            currency: "USD".into(),
            period: "daily".into(),
            window_type: "calendar".into(),
            timezone: "Europe/Berlin".into(),
            spent: spent.into(),
            reserved: reserved.into(),
        }])
    }

    #[test]
    fn a_budget_window_counts_its_currency_since_its_local_start() {
        let now = t("2026-11-22T10:00:00Z");
        let (policy, budget) = daily_budget("Europe/Berlin");
        let rows = [
            spend("2026-11-21T22:59:59Z", "9", "USD"), // the local day before
            spend("2026-11-21T23:00:00Z", "1.5", "USD"),
            spend("2026-11-22T09:00:00Z", "0.25", "usd"),
            spend("2026-11-22T09:00:00Z", "7", "EUR"),
        ];
        let w = budget_window(&agent(), &policy, &budget, &rows, &Gateway::NotRunning, now);
        assert_eq!(
            (
                w.spent.as_str(),
                w.reserved.as_str(),
                w.remaining.as_deref()
            ),
            ("1.75", "0.00", Some("3.25"))
        );
        assert_eq!(w.spent_source, "ledger");
        assert_eq!(w.window_start, "2026-11-21T23:00:00Z");
        assert_eq!(w.resets_at, "2026-11-22T23:00:00Z");
        assert_eq!(
            w.resets_at_local,
            "2026-11-23T00:00:00+01:00[Europe/Berlin]"
        );
        assert_eq!(w.notes, vec![NOT_RUNNING.to_string()]);

        // A running gateway adds its reservations and, when larger, its spend.
        let w = budget_window(&agent(), &policy, &budget, &rows, &live("2", "0.5"), now);
        assert_eq!(
            (
                w.spent.as_str(),
                w.reserved.as_str(),
                w.remaining.as_deref()
            ),
            ("2.00", "0.50", Some("2.50"))
        );
        assert_eq!(w.spent_source, "gateway");
        assert!(w.notes.is_empty(), "{:?}", w.notes);
        let w = budget_window(&agent(), &policy, &budget, &rows, &live("1", "4.9"), now);
        assert_eq!((w.spent.as_str(), w.spent_source), ("1.75", "ledger"));
        assert_eq!(w.remaining.as_deref(), Some("0.00"), "never below 0");

        // A gateway that has not loaded the budget reserves nothing in it.
        let (other, other_budget) = daily_budget("UTC");
        let w = budget_window(&agent(), &other, &other_budget, &rows, &live("3", "1"), now);
        assert_eq!((w.spent.as_str(), w.reserved.as_str()), ("0.25", "0.00"));
        assert_eq!(w.notes.len(), 1, "{:?}", w.notes);
    }

    #[test]
    fn without_a_budget_the_utc_window_reports_every_currency() {
        let now = t("2026-11-22T10:00:00Z");
        let rows = [
            spend("2026-11-21T23:59:59Z", "9", "USD"),
            spend("2026-11-22T00:00:00Z", "1", "USD"),
            spend("2026-11-22T01:00:00Z", "2", "EUR"),
        ];
        let w = unbudgeted(&agent(), Period::Daily, &rows, now).unwrap();
        let got: Vec<_> = w
            .iter()
            .map(|r| (r.currency.as_deref(), r.spent.as_str()))
            .collect();
        assert_eq!(got, [(Some("EUR"), "2.00"), (Some("USD"), "1.00")]);
        assert!(w.iter().all(|r| r.policy_id.is_none() && r.limit.is_none()));
        assert_eq!(w[0].resets_at, "2026-11-23T00:00:00Z");
        assert!(
            w[0].notes[0].contains("no budget policy"),
            "{:?}",
            w[0].notes
        );
        let none = unbudgeted(&agent(), Period::Monthly, &[], now).unwrap();
        assert_eq!(none.len(), 1);
        assert_eq!(
            (none[0].currency.as_deref(), none[0].spent.as_str()),
            (None, "0.00")
        );
        assert_eq!(none[0].window_start, "2026-11-01T00:00:00Z");
    }

    #[test]
    fn principal_ids_are_percent_encoded() {
        assert_eq!(encode("a-1_b.c~"), "a-1_b.c~");
        assert_eq!(encode("a b/&=é"), "a%20b%2F%26%3D%C3%A9");
    }
}
