//! `caracal authority delegate`: a child mandate from a stored parent.

use anyhow::Context as _;
use caracal_gateway::authority::delegate::{self, DelegateRequest};
use caracal_gateway::authority::{mandate, Scope};
use caracal_gateway::model::Action;
use caracal_gateway::store::{MandateRecord, Store};
use clap::Args;

use super::{keyring, now, print_issued};
use crate::context::{self, Workspace};
use crate::output::{Exit, Io};
use crate::policy::{parse_action, parse_duration};

#[derive(Debug, Args)]
pub struct DelegateArgs {
    /// The parent mandate's id; its subject is the delegator.
    #[arg(long = "from", value_name = "MANDATE_ID")]
    from: String,
    /// The principal the new mandate is for (id or name).
    #[arg(long = "to", value_name = "PRINCIPAL_ID")]
    to: String,
    /// A resource the new mandate covers, within the parent's scope. Repeat for several.
    #[arg(long = "resource", value_name = "R", required = true)]
    resources: Vec<String>,
    /// An action the new mandate covers, among the parent's. Repeat for several.
    #[arg(long = "action", value_name = "A", value_parser = parse_action, required = true)]
    actions: Vec<Action>,
    /// How long the new mandate is valid from now, e.g. 5m (it cannot outlive its parent).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    valid_for: i64,
    /// Print JSON (id, token, subject, exp, parent, chain, ...) instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(
    args: DelegateArgs,
    ws: &Workspace,
    store: &dyn Store,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    let parent = store.get_mandate(&args.from).await?;
    let delegator = context::principal(store, &parent.subject_id).await?;
    let child = context::principal(store, &args.to).await?;
    let policy = store
        .list_policies(None)
        .await?
        .into_iter()
        .find(|p| p.id == parent.policy_id)
        .with_context(|| {
            format!(
                "policy {} of mandate {} no longer exists",
                parent.policy_id, parent.jti
            )
        })?;
    let revoked = revoked_in_chain(store, &parent).await?;
    let scope = Scope::new(args.resources, args.actions);
    let issued = delegate::delegate(&DelegateRequest {
        parent: &parent,
        parent_subject_kind: delegator.kind,
        child_subject: &child,
        scope: &scope,
        validity_secs: args.valid_for,
        now: now(),
        policy: &policy,
        revoked: revoked.as_deref(),
        workspace: Some(ws.name.as_str()),
    })
    .context("delegation refused")?;
    let keyring = keyring(ws, store).await?;
    let token = mandate::issue(&keyring, &issued.claims)?;
    let record = MandateRecord::issued(&issued.claims, &issued.policy_id, issued.policy_version);
    store.insert_mandate(&record).await?;
    print_issued(&issued, &token, &delegator, &child, &keyring, args.json, io)?;
    Ok(Exit::Success)
}

/// The parent's jti when it is revoked, else its first revoked ancestor's.
async fn revoked_in_chain(
    store: &dyn Store,
    parent: &MandateRecord,
) -> anyhow::Result<Option<String>> {
    if parent.revoked_at.is_some() {
        return Ok(Some(parent.jti.clone()));
    }
    for jti in &parent.chain {
        if store.get_mandate(jti).await?.revoked_at.is_some() {
            return Ok(Some(jti.clone()));
        }
    }
    Ok(None)
}
