//! `caracal ledger`: the record of every call the gateway forwarded or
//! refused, and what a principal has spent in its budgets' current windows
//! (`ledger query --agent-id ID --time-window PERIOD`).

use std::collections::HashMap;
use std::io::Write;

use anyhow::{anyhow, bail};
use caracal_gateway::budget::window::Period;
use caracal_gateway::ledger::{EventKind, LedgerEvent};
use caracal_gateway::store::LedgerFilter;
use clap::Subcommand;
use jiff::Timestamp;

use crate::context::{self, Context};
use crate::output::{self, or_dash, Exit, Io};

mod spending;
use spending::spending;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// Calls through the gateway and its refusals.
    Call,
    /// Mandates issued, delegated and revoked, and calls the gateway
    /// refused for want of a covering mandate.
    Authority,
}

fn parse_period(s: &str) -> Result<Period, String> {
    s.parse::<Period>().map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// Ledger events, oldest first, optionally of one principal and a time
    /// range; or, with --time-window, what the principal has spent in the
    /// current window of its budgets.
    Query {
        /// Only this principal's events (id or name).
        #[arg(long, value_name = "ID")]
        agent_id: Option<String>,
        /// Instead of listing events, report the current window of each of
        /// the principal's budget policies with this period (hourly, daily,
        /// weekly or monthly): spent, reserved by calls in flight (when the
        /// gateway runs), remaining, and when it resets. Needs --agent-id.
        #[arg(
            long,
            value_name = "PERIOD",
            value_parser = parse_period,
            requires = "agent_id",
            conflicts_with_all = ["start_time", "end_time", "kind", "mandate_id", "limit"],
        )]
        time_window: Option<Period>,
        /// Events at or after this time: RFC 3339 (2024-01-01T00:00:00Z) or `now`.
        #[arg(long, value_name = "TIME")]
        start_time: Option<String>,
        /// Events at or before this time: RFC 3339 (2024-01-31T23:59:59Z) or `now`.
        #[arg(long, value_name = "TIME")]
        end_time: Option<String>,
        /// Only events of this kind: `call` (gateway traffic) or `authority`
        /// (mandates issued, delegated and revoked, and mandate denials).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Only events about this mandate: the calls made under it (or
        /// refused for it), its issue, delegation and revocation.
        #[arg(long, value_name = "ID")]
        mandate_id: Option<String>,
        /// At most N events (the oldest N of the range).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
        limit: Option<i64>,
        /// Print a JSON array of events (with --time-window: of budget
        /// windows) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: LedgerCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let LedgerCmd::Query {
        agent_id,
        time_window,
        start_time,
        end_time,
        kind,
        mandate_id,
        limit,
        json,
    } = cmd;
    if let Some(period) = time_window {
        let Some(agent) = agent_id else {
            bail!("--time-window needs --agent-id");
        };
        return spending(ctx, io, &agent, period, json).await;
    }
    let start = start_time
        .as_deref()
        .map(|t| parse_time("--start-time", t))
        .transpose()?;
    let end = end_time
        .as_deref()
        .map(|t| parse_time("--end-time", t))
        .transpose()?;
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            bail!("--start-time {s} is after --end-time {e}");
        }
    }
    let opened = ctx.workspace()?.store().await?;
    let store: &dyn caracal_gateway::store::Store = &*opened;
    let principal_id = match &agent_id {
        Some(a) => Some(context::principal(store, a).await?.id),
        None => None,
    };
    let events = store
        .query_ledger(&LedgerFilter {
            principal_id,
            kind: kind.map(|k| match k {
                KindArg::Call => EventKind::Call,
                KindArg::Authority => EventKind::Authority,
            }),
            start_ms: start.map(|t| t.as_millisecond()),
            end_ms: end.map(|t| t.as_millisecond()),
            limit,
            mandate_id,
        })
        .await?;
    if json {
        output::json(io.out, &events)?;
    } else if events.is_empty() {
        writeln!(io.out, "no ledger events match")?;
    } else {
        let names = context::principal_names(store).await?;
        print_events(io.out, &events, &names)?;
    }
    Ok(Exit::Success)
}

/// RFC 3339 or `now`.
pub(crate) fn parse_time(flag: &str, s: &str) -> anyhow::Result<Timestamp> {
    if s.trim().eq_ignore_ascii_case("now") {
        return Ok(Timestamp::now());
    }
    s.trim().parse::<Timestamp>().map_err(|e| {
        anyhow!(
            "{flag} {s:?} is not a time: use RFC 3339 like 2024-01-01T00:00:00Z, or `now` ({e})"
        )
    })
}

fn print_events(
    out: &mut dyn Write,
    events: &[LedgerEvent],
    names: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let mut t = output::table(&[
        "TIME",
        "KIND",
        "PRINCIPAL",
        "MODE",
        "PROVIDER",
        "RESOURCE",
        "ACTION",
        "DECISION",
        "CODE",
        "STATUS",
        "TOKENS IN/OUT",
        "BYTES IN/OUT",
        "MS",
        "MANDATE",
    ]);
    for e in events {
        let principal = e
            .principal_id
            .as_ref()
            .map(|id| names.get(id).unwrap_or(id).clone());
        t.add_row([
            e.ts.clone(),
            e.kind.to_string(),
            or_dash(principal),
            e.mode.as_str().to_string(),
            or_dash(e.provider.as_deref()),
            or_dash(e.resource.as_deref()),
            or_dash(e.action.as_deref()),
            e.decision.to_string(),
            e.code.to_string(),
            or_dash(e.status),
            format!("{}/{}", or_dash(e.input_tokens), or_dash(e.output_tokens)),
            format!("{}/{}", e.request_bytes, e.response_bytes),
            // Microsecond resolution: most calls take well under a millisecond
            // of the gateway's own time on a fast provider.
            format!("{:.3}", e.duration_us as f64 / 1000.0),
            or_dash(e.mandate_id.as_deref()),
        ]);
    }
    writeln!(out, "{t}\n{} events", events.len())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(
            parse_time("--start-time", "2024-01-01T00:00:00Z")
                .unwrap()
                .as_millisecond(),
            1_704_067_200_000
        );
        assert!(parse_time("--start-time", "now").is_ok());
        let err = parse_time("--start-time", "yesterday")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--start-time") && err.contains("RFC 3339"),
            "{err}"
        );
    }
}
