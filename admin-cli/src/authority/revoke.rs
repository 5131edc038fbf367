//! `caracal authority revoke`: one mandate (optionally with its
//! descendants) or a bulk selection for incident response.
//!
//! The gateway's decision already refuses a mandate whose ancestor is
//! revoked, so `--cascade` changes no decision: it records the revocation
//! on each descendant too, so lists and audits show it.

use caracal_gateway::policy::validate_reason;
use caracal_gateway::store::{MandateRecord, Revocation, Revoked, Selector, Store};
use clap::{ArgGroup, Args};
use serde_json::json;

use super::{fmt_time, now, parse_time};
use crate::context;
use crate::output::{self, Exit, Io};
use crate::policy::{operator, parse_duration};

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["mandate_id", "issuer", "subject", "resource", "issued_before", "older_than"])
))]
pub struct RevokeArgs {
    /// Revoke this one mandate.
    #[arg(long, value_name = "ID")]
    mandate_id: Option<String>,
    /// With --mandate-id: also mark every descendant revoked (they are
    /// refused anyway once an ancestor is revoked; this records it on each).
    #[arg(
        long,
        conflicts_with_all = ["issuer", "subject", "resource", "issued_before", "older_than"]
    )]
    cascade: bool,
    /// Bulk: every mandate issued by this principal (id or name).
    #[arg(long, value_name = "ID")]
    issuer: Option<String>,
    /// Bulk: every mandate issued to this principal (id or name).
    #[arg(long, value_name = "ID")]
    subject: Option<String>,
    /// Bulk: every mandate with a resource entry this pattern (name, glob or
    /// re: regex) matches, or an entry covering this resource name.
    #[arg(long, value_name = "PATTERN")]
    resource: Option<String>,
    /// Bulk: every mandate issued before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    issued_before: Option<i64>,
    /// Bulk: every mandate issued longer ago than this, e.g. 24h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    older_than: Option<i64>,
    /// Bulk only: list what would be revoked and change nothing.
    #[arg(long, conflicts_with = "mandate_id")]
    dry_run: bool,
    /// Why (recorded on every revoked mandate).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Print JSON (revoked, already_revoked, dry_run) instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: RevokeArgs, store: &dyn Store, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    validate_reason(&args.reason)?;
    let now = now();
    let revocation = Revocation {
        revoked_by: operator(),
        reason: args.reason.trim().to_string(),
        at: now,
    };
    let (result, dry_run) = if let Some(jti) = &args.mandate_id {
        let r = store.revoke_mandate(jti, args.cascade, &revocation).await?;
        (r, false)
    } else {
        let selector = selector(&args, store, now).await?;
        let r = store
            .revoke_matching(&selector, &revocation, args.dry_run)
            .await?;
        (r, args.dry_run)
    };
    if args.json {
        let brief = |v: &[MandateRecord]| v.iter().map(summary).collect::<Vec<_>>();
        output::json(
            io.out,
            &json!({
                "dry_run": dry_run,
                "revoked": brief(&result.revoked),
                "already_revoked": brief(&result.already),
            }),
        )?;
    } else {
        print_text(&result, dry_run, io)?;
    }
    Ok(Exit::Success)
}

async fn selector(args: &RevokeArgs, store: &dyn Store, now: i64) -> anyhow::Result<Selector> {
    Ok(if let Some(p) = &args.issuer {
        Selector::Issuer(context::principal(store, p).await?.id)
    } else if let Some(p) = &args.subject {
        Selector::Subject(context::principal(store, p).await?.id)
    } else if let Some(r) = &args.resource {
        Selector::Resource(r.clone())
    } else if let Some(t) = args.issued_before {
        Selector::IssuedBefore(t)
    } else if let Some(d) = args.older_than {
        Selector::IssuedBefore(now.saturating_sub(d))
    } else {
        anyhow::bail!("say what to revoke: --mandate-id, --issuer, --subject, --resource, --issued-before or --older-than")
    })
}

fn summary(m: &MandateRecord) -> serde_json::Value {
    json!({
        "id": m.jti,
        "issuer": m.issuer_id,
        "subject": m.subject_id,
        "scope": m.scope,
        "exp": m.exp,
        "depth": m.depth,
        "revoked_at": m.revoked_at,
        "revoked_by": m.revoked_by,
        "revoke_reason": m.revoke_reason,
    })
}

fn print_text(result: &Revoked, dry_run: bool, io: &mut Io<'_>) -> anyhow::Result<()> {
    let n = result.revoked.len();
    let verb = if dry_run { "would revoke" } else { "revoked" };
    writeln!(
        io.out,
        "{verb} {n} mandate{}{}",
        if n == 1 { "" } else { "s" },
        if dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    )?;
    for m in &result.revoked {
        writeln!(
            io.out,
            "  {}  subject {}  {}  expires {}",
            m.jti,
            m.subject_id,
            m.scope.resources.join(", "),
            fmt_time(m.exp)
        )?;
    }
    for m in &result.already {
        writeln!(
            io.out,
            "mandate {} was already revoked at {} by {}: {}",
            m.jti,
            output::or_dash(m.revoked_at.map(fmt_time)),
            output::or_dash(m.revoked_by.as_deref()),
            output::or_dash(m.revoke_reason.as_deref()),
        )?;
    }
    Ok(())
}
