//! `caracal authority keys`: rotate and list the mandate signing keys.
//! Only public halves are ever printed.

use std::time::Duration;

use caracal_gateway::authority::keys::Keyring;
use caracal_gateway::store::Store;
use clap::Subcommand;
use serde_json::json;

use super::{fmt_time, keyring, now, publish};
use crate::context::Workspace;
use crate::output::{self, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Sign new mandates with a fresh key. The old key keeps verifying the
    /// mandates it signed; retired keys older than the longest mandate
    /// validity (plus the clock skew) are dropped.
    Rotate {
        /// Print JSON (active kid, retired and pruned kids) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the signing keys gateways verify with (no private material).
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(
    cmd: KeysCmd,
    ws: &Workspace,
    store: &dyn Store,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    match cmd {
        KeysCmd::Rotate { json } => rotate(ws, store, io, json).await,
        KeysCmd::List { json } => list(ws, store, io, json).await,
    }
}

async fn rotate(
    ws: &Workspace,
    store: &dyn Store,
    io: &mut Io<'_>,
    json: bool,
) -> anyhow::Result<Exit> {
    let mut keyring = keyring(ws, store).await?;
    let before = keyring.active_kid().to_string();
    let now = now();
    let active = keyring.rotate(now)?;
    let keep_for = keep_retired_for(ws, store).await?;
    let pruned = keyring.prune(now, keep_for);
    // The file first: if publishing fails, the next command publishes it.
    keyring.save(&ws.config.keyring)?;
    publish(&keyring, store).await?;
    if json {
        output::json(
            io.out,
            &json!({ "active": active, "retired": before, "pruned": pruned }),
        )?;
    } else {
        writeln!(
            io.out,
            "new signing key {active}; {before} retired (it still verifies the mandates it signed)"
        )?;
        for kid in &pruned {
            writeln!(io.out, "pruned {kid}: every mandate it signed has expired")?;
        }
    }
    Ok(Exit::Success)
}

/// How long a retired key must keep verifying: the longest validity any
/// mandate may have had (any policy's maximum, any recorded mandate's)
/// plus the clock skew.
async fn keep_retired_for(ws: &Workspace, store: &dyn Store) -> anyhow::Result<Duration> {
    let policies = store.list_policies(None).await?;
    let by_policy = policies
        .iter()
        .map(|p| p.definition.max_validity_secs)
        .max()
        .unwrap_or(0);
    let longest = by_policy
        .max(store.longest_mandate_validity().await?)
        .max(0);
    Ok(Duration::from_secs(longest.unsigned_abs()) + ws.config.clock_skew)
}

async fn list(
    ws: &Workspace,
    store: &dyn Store,
    io: &mut Io<'_>,
    json: bool,
) -> anyhow::Result<Exit> {
    // Publish an existing keyring first, so the list is what gateways see;
    // listing never creates one.
    if ws.config.keyring.exists() {
        publish(&Keyring::load(&ws.config.keyring)?, store).await?;
    }
    let keys = store.list_signing_keys().await?;
    if json {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| {
                json!({
                    "kid": k.kid,
                    "active": k.retired_at.is_none(),
                    "created_at": k.created_at,
                    "retired_at": k.retired_at,
                    "public_key": hex_encode(&k.public_key),
                })
            })
            .collect();
        output::json(io.out, &rows)?;
        return Ok(Exit::Success);
    }
    if keys.is_empty() {
        writeln!(
            io.out,
            "no signing keys yet; `caracal authority mandate` creates the first"
        )?;
        return Ok(Exit::Success);
    }
    let mut t = output::table(&["KID", "STATE", "CREATED", "RETIRED"]);
    for k in &keys {
        t.add_row(vec![
            k.kid.clone(),
            if k.retired_at.is_none() {
                "active"
            } else {
                "retired"
            }
            .into(),
            fmt_time(k.created_at),
            output::or_dash(k.retired_at.map(fmt_time)),
        ]);
    }
    output::print_table(io.out, &t)?;
    Ok(Exit::Success)
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
