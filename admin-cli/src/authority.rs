//! `caracal authority`: issue signed mandates under policies, delegate and
//! revoke them, show their trees, dry-run the gateway's mandate decision,
//! and manage the signing keys.

mod delegate;
mod graph;
mod keys;
mod revoke;

use anyhow::Context as _;
use caracal_gateway::authority::decide::{self, Call};
use caracal_gateway::authority::issue::{self, IssueRequest};
use caracal_gateway::authority::keys::Keyring;
use caracal_gateway::authority::view::AuthorityView;
use caracal_gateway::authority::{mandate, Scope};
use caracal_gateway::model::{Action, Principal};
use caracal_gateway::store::{MandateRecord, SigningKeyRow, Store};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::context::{self, Context, Workspace};
use crate::output::{self, Exit, Io};
use crate::policy::{parse_action, parse_duration};

#[derive(Debug, Subcommand)]
pub enum AuthorityCmd {
    /// Issue a signed mandate under the issuer's active policy. The token
    /// is printed once and never stored: it is a credential.
    Mandate(MandateArgs),
    /// Dry run: the gateway's own mandate decision for one call. Exit code
    /// 0 when allowed, 1 when denied.
    Enforce(EnforceArgs),
    /// Derive a narrower mandate from one held by the delegator (the
    /// parent's subject), under the policy the root mandate was issued under.
    Delegate(delegate::DelegateArgs),
    /// Revoke one mandate (--mandate-id, optionally with its descendants)
    /// or, for incident response, every mandate issued by, to, over a
    /// resource or before a time (with --dry-run to see which first).
    Revoke(revoke::RevokeArgs),
    /// The delegation tree containing a mandate, with each node's state.
    Graph(graph::GraphArgs),
    /// Recorded mandates with their state (the tokens are never stored).
    List(graph::ListArgs),
    /// The workspace's mandate signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
}

#[derive(Debug, Args)]
pub struct MandateArgs {
    /// The issuing principal (id or name); one of its active policies must cover the mandate.
    #[arg(long, value_name = "ID")]
    issuer: String,
    /// The principal that may act under the mandate (id or name).
    #[arg(long, value_name = "ID")]
    subject: String,
    /// A resource the mandate covers (catalog name, glob or re: regex). Repeat for several.
    #[arg(long = "resource", value_name = "R", required = true)]
    resources: Vec<String>,
    /// An action the mandate covers: read, create, update or delete. Repeat for several.
    #[arg(long = "action", value_name = "A", value_parser = parse_action, required = true)]
    actions: Vec<Action>,
    /// How long the mandate is valid from now, e.g. 15m, 1h (at most the policy's maximum).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    valid_for: i64,
    /// Print JSON (id, token, subject, exp, ...) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct EnforceArgs {
    /// The mandate token to check. Without it, the mandates recorded for
    /// --principal are judged, as the gateway does for a call that
    /// presents none (an HTTPS_PROXY client).
    #[arg(long, value_name = "TOKEN", required_unless_present = "principal")]
    mandate: Option<String>,
    /// The resource of the call, e.g. chat.completions.
    #[arg(long, value_name = "R")]
    resource: String,
    /// The action of the call: read, create, update or delete.
    #[arg(long, value_name = "A", value_parser = parse_action)]
    action: Action,
    /// The principal making the call (id or name); without it the
    /// mandate's subject is not checked.
    #[arg(long, value_name = "ID")]
    principal: Option<String>,
    /// Decide as of this time (RFC 3339, e.g. 2030-01-01T00:00:00Z) instead of now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<i64>,
    /// Print JSON (decision, code, reasons) instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_time(s: &str) -> Result<i64, String> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| format!("{s:?} is not an RFC 3339 time like 2030-01-01T00:00:00Z"))
}

pub async fn run(cmd: AuthorityCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let opened = ws.store().await?;
    let store: &dyn caracal_gateway::store::Store = &*opened;
    match cmd {
        AuthorityCmd::Mandate(args) => issue_mandate(args, &ws, store, io).await,
        AuthorityCmd::Enforce(args) => enforce(args, &ws, store, io).await,
        AuthorityCmd::Delegate(args) => delegate::run(args, &ws, store, io).await,
        AuthorityCmd::Revoke(args) => revoke::run(args, store, io).await,
        AuthorityCmd::Graph(args) => graph::graph(args, store, io).await,
        AuthorityCmd::List(args) => graph::list(args, store, io).await,
        AuthorityCmd::Keys(cmd) => keys::run(cmd, &ws, store, io).await,
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn fmt_time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

/// The workspace keyring (created on first use) with its public keys
/// published to the store, where gateways read them.
async fn keyring(ws: &Workspace, store: &dyn Store) -> anyhow::Result<Keyring> {
    let path = &ws.config.keyring;
    let (keyring, created) = Keyring::load_or_create(path, now())?;
    if created {
        tracing::info!("created the mandate signing keyring {}", path.display());
    }
    publish(&keyring, store).await?;
    Ok(keyring)
}

/// Makes the store's public keys exactly the keyring's.
async fn publish(keyring: &Keyring, store: &dyn Store) -> anyhow::Result<()> {
    let rows = SigningKeyRow::of_keyring(keyring);
    store
        .sync_signing_keys(&rows)
        .await
        .context("cannot publish the signing keys to the workspace database")?;
    Ok(())
}

async fn issue_mandate(
    args: MandateArgs,
    ws: &Workspace,
    store: &dyn Store,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    let issuer = context::principal(store, &args.issuer).await?;
    let subject = context::principal(store, &args.subject).await?;
    let scope = Scope::new(args.resources, args.actions);
    let policies = store.list_policies(Some(&issuer.id)).await?;
    let issued = issue::issue(
        &policies,
        &IssueRequest {
            issuer: &issuer,
            subject: &subject,
            scope: &scope,
            validity_secs: args.valid_for,
            now: now(),
            workspace: Some(ws.name.as_str()),
        },
    )
    .context("mandate refused")?;
    let keyring = keyring(ws, store).await?;
    let token = mandate::issue(&keyring, &issued.claims)?;
    let record = MandateRecord::issued(&issued.claims, &issued.policy_id, issued.policy_version);
    store.insert_mandate(&record).await?;

    print_issued(&issued, &token, &issuer, &subject, &keyring, args.json, io)?;
    Ok(Exit::Success)
}

/// Prints a freshly signed mandate (`authority mandate` and `authority
/// delegate` share this form), with the warning that the token is a credential.
fn print_issued(
    issued: &issue::Issued,
    token: &str,
    issuer: &Principal,
    subject: &Principal,
    keyring: &Keyring,
    json: bool,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let c = &issued.claims;
    writeln!(
        io.err,
        "warning: the token is a credential: whoever holds it can act as {} within its scope \
         until {}; it is not stored and cannot be shown again",
        subject.name,
        fmt_time(c.exp)
    )?;
    if json {
        output::json(
            io.out,
            &json!({
                "id": c.jti,
                "token": token,
                "issuer": c.iss,
                "subject": c.sub,
                "scope": c.scope,
                "iat": c.iat,
                "nbf": c.nbf,
                "exp": c.exp,
                "expires_at": fmt_time(c.exp),
                "parent": c.parent,
                "chain": c.chain,
                "depth": c.depth,
                "kid": keyring.active_kid(),
                "policy_id": issued.policy_id,
                "policy_version": issued.policy_version,
            }),
        )?;
    } else {
        let actions: Vec<&str> = c.scope.actions.iter().map(|a| a.as_str()).collect();
        writeln!(io.out, "mandate {} issued", c.jti)?;
        writeln!(io.out, "  subject:  {} ({})", subject.name, c.sub)?;
        writeln!(io.out, "  issuer:   {} ({})", issuer.name, c.iss)?;
        if let Some(parent) = &c.parent {
            writeln!(io.out, "  parent:   {parent} (depth {})", c.depth)?;
        }
        writeln!(
            io.out,
            "  scope:    {} : {}",
            c.scope.resources.join(", "),
            actions.join(", ")
        )?;
        writeln!(io.out, "  expires:  {}", fmt_time(c.exp))?;
        writeln!(
            io.out,
            "  policy:   {} (version {})",
            issued.policy_id, issued.policy_version
        )?;
        writeln!(io.out, "token:\n{token}")?;
    }
    Ok(())
}

async fn enforce(
    args: EnforceArgs,
    ws: &Workspace,
    store: &dyn Store,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    let principal = match &args.principal {
        Some(p) => Some(context::principal(store, p).await?.id),
        None => None,
    };
    let rows = store.load_state().await?;
    let (view, rejected) = AuthorityView::from_rows(
        rows.signing_keys,
        rows.mandates,
        rows.revoked,
        rows.policies,
    );
    for r in rejected.iter().chain(&rows.rejected) {
        writeln!(io.err, "warning: {r}")?;
    }
    let skew = i64::try_from(ws.config.clock_skew.as_secs()).unwrap_or(i64::MAX);
    let call = Call {
        principal_id: principal.as_deref(),
        resource: &args.resource,
        action: args.action,
        explain: true,
    };
    let at = args.at.unwrap_or_else(now);
    let d = match &args.mandate {
        Some(token) => decide::decide(Some(token), &view, at, skew, &call),
        None => decide::decide_held(&view, at, skew, &call),
    };
    let allowed = d.allowed();
    let decision = if allowed { "allow" } else { "deny" };
    if args.json {
        output::json(
            io.out,
            &json!({
                "decision": decision,
                "allow": allowed,
                "code": d.code(),
                "reasons": d.reasons,
                "mandate_id": d.claims.as_ref().map(|c| &c.jti),
                "subject": d.claims.as_ref().map(|c| &c.sub),
            }),
        )?;
    } else {
        if allowed {
            writeln!(io.out, "allow")?;
        } else {
            writeln!(io.out, "deny ({})", d.code())?;
        }
        for reason in &d.reasons {
            writeln!(io.out, "  - {reason}")?;
        }
    }
    Ok(Exit::from_ok(allowed))
}
