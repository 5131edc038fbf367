//! `caracal snapshot` and `caracal replay`: record the derived state (the
//! per-minute spend aggregates budget counters are primed from) at a
//! checkpoint of the Merkle log, restore it, and rebuild it from a
//! snapshot and every verified event after it. See
//! `caracal_gateway::recovery` for what each step guarantees.
//!
//! A snapshot is kept in the database and, as a copy, in the workspace's
//! `snapshots/` directory: `restore` and `replay` read the copy when the
//! database no longer has the snapshot (checking its digest, its
//! signature and that the ledger still holds its checkpoint).

use std::path::PathBuf;

use anyhow::Context as _;
use caracal_config::Deployment;
use caracal_gateway::merkle::{seal, LedgerKey};
use caracal_gateway::recovery::{self, principal_totals, RecoveryError, Total};
use caracal_gateway::store::{MinuteSpend, ReplayState, SnapshotInfo, Store};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::context::{Context, Workspace};
use crate::output::{self, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Seal the pending events, then record the spend aggregates (per
    /// principal, minute and currency) at the resulting checkpoint,
    /// computed from the sealed events that verify.
    Create {
        /// Print the snapshot as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The snapshots, oldest first.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One snapshot's totals per principal and currency.
    Show {
        /// The snapshot's id (`snapshot list`).
        #[arg(long, value_name = "ID")]
        snapshot_id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replace the spend aggregates with a snapshot's. Until `replay start
    /// --from-snapshot` finishes they lack the events after it, so budget
    /// counters are primed from the ledger's rows meanwhile instead.
    Restore {
        /// The snapshot's id (`snapshot list`).
        #[arg(long, value_name = "ID")]
        snapshot_id: String,
        /// Print the replay state as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReplayCmd {
    /// Rebuild the spend aggregates from a snapshot and every event after
    /// it, read from the ledger in the Merkle log's order; every sealed
    /// batch is verified before its events count, and one that does not
    /// verify stops the replay (exit code 1). Starting again gives the
    /// same result.
    Start {
        /// The snapshot to start from (`snapshot list`).
        #[arg(long, value_name = "ID")]
        from_snapshot: String,
        /// Print the final state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where the last replay (or restore) is. Exit code 1 if it failed.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A snapshot as written to the workspace's `snapshots/` directory.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format: String,
    snapshot: SnapshotInfo,
    rows: Vec<MinuteSpend>,
}

const FILE_FORMAT: &str = "caracal-ledger-snapshot/v1";

fn snapshot_dir(ws: &Workspace) -> PathBuf {
    ws.paths.root().join("snapshots")
}

fn snapshot_file(ws: &Workspace, id: &str) -> anyhow::Result<PathBuf> {
    // An id names a file: only what a UUID holds.
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        anyhow::bail!("{id:?} is not a snapshot id (`caracal snapshot list` shows them)");
    }
    Ok(snapshot_dir(ws).join(format!("{id}.json")))
}

fn write_copy(
    ws: &Workspace,
    info: &SnapshotInfo,
    rows: Vec<MinuteSpend>,
) -> anyhow::Result<PathBuf> {
    let dir = snapshot_dir(ws);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = snapshot_file(ws, &info.id)?;
    let file = SnapshotFile {
        format: FILE_FORMAT.to_string(),
        snapshot: info.clone(),
        rows,
    };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Brings snapshot `id` back into the database from its copy when the
/// database does not have it.
async fn import_if_missing(
    ws: &Workspace,
    store: &dyn Store,
    key: &LedgerKey,
    id: &str,
) -> anyhow::Result<()> {
    if !store.snapshots(Some(id)).await?.is_empty() {
        return Ok(());
    }
    let path = snapshot_file(ws, id)?;
    let Ok(text) = std::fs::read(&path) else {
        return Err(RecoveryError::NotFound(id.to_string()).into());
    };
    let file: SnapshotFile = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a snapshot file", path.display()))?;
    if file.format != FILE_FORMAT || file.snapshot.id != id {
        anyhow::bail!(
            "{} is not snapshot {id} in the format {FILE_FORMAT}",
            path.display()
        );
    }
    recovery::import(store, key.public_key(), &file.snapshot, &file.rows).await?;
    Ok(())
}

pub async fn run_snapshot(
    cmd: SnapshotCmd,
    ctx: &Context,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let key = LedgerKey::load_or_create(&ws.config.ledger_key)
        .with_context(|| "the workspace's ledger key (config.toml [ledger] signing_key)")?;
    let store = ws.store().await?;
    match cmd {
        SnapshotCmd::Create { json } => {
            let bar = progress_bar("reading batches");
            let progress = {
                let bar = bar.clone();
                move |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            };
            let policy = seal::Policy::of(&ws.config);
            let info = recovery::create_snapshot(&*store, &key, policy, &progress).await;
            bar.finish_and_clear();
            let info = info?;
            let rows = store.snapshot_rows(&info.id).await?;
            let path = write_copy(&ws, &info, rows)?;
            if json {
                output::json(io.out, &info)?;
            } else {
                writeln!(io.out, "snapshot {}", info.id)?;
                writeln!(
                    io.out,
                    "  at the checkpoint of {} events{}",
                    info.tree_size,
                    info.batch_id
                        .as_ref()
                        .map_or(String::new(), |b| format!(" (batch {b})"))
                )?;
                writeln!(
                    io.out,
                    "  {} calls of {} principals; digest {}",
                    info.calls, info.principals, info.digest
                )?;
                writeln!(io.out, "  copy: {}", path.display())?;
            }
            Ok(Exit::Success)
        }
        SnapshotCmd::List { json } => {
            let list = store.snapshots(None).await?;
            if json {
                output::json(io.out, &list)?;
            } else if list.is_empty() {
                writeln!(
                    io.out,
                    "no snapshots: `caracal snapshot create` records one"
                )?;
            } else {
                let mut t = output::table(&["ID", "CREATED", "EVENTS", "CALLS", "PRINCIPALS"]);
                for s in &list {
                    t.add_row(vec![
                        s.id.clone(),
                        s.created_at.clone(),
                        s.tree_size.to_string(),
                        s.calls.to_string(),
                        s.principals.to_string(),
                    ]);
                }
                output::print_table(io.out, &t)?;
            }
            Ok(Exit::Success)
        }
        SnapshotCmd::Show { snapshot_id, json } => {
            import_if_missing(&ws, &*store, &key, &snapshot_id).await?;
            let info = store
                .snapshots(Some(&snapshot_id))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| RecoveryError::NotFound(snapshot_id.clone()))?;
            let totals = principal_totals(&store.snapshot_rows(&snapshot_id).await?);
            if json {
                #[derive(Serialize)]
                struct Shown<'a> {
                    snapshot: &'a SnapshotInfo,
                    totals: &'a [Total],
                }
                output::json(
                    io.out,
                    &Shown {
                        snapshot: &info,
                        totals: &totals,
                    },
                )?;
            } else {
                writeln!(
                    io.out,
                    "snapshot {} at the checkpoint of {} events, created {}",
                    info.id, info.tree_size, info.created_at
                )?;
                print_totals(io, &totals)?;
            }
            Ok(Exit::Success)
        }
        SnapshotCmd::Restore { snapshot_id, json } => {
            import_if_missing(&ws, &*store, &key, &snapshot_id).await?;
            let state = recovery::restore(&*store, key.public_key(), &snapshot_id).await?;
            if json {
                output::json(io.out, &state)?;
            } else {
                writeln!(
                    io.out,
                    "restored the spend aggregates to snapshot {snapshot_id} (the checkpoint of {} events)",
                    state.position
                )?;
                writeln!(
                    io.out,
                    "until `caracal replay start --from-snapshot {snapshot_id}` finishes, budget counters are primed from the ledger's rows instead"
                )?;
            }
            Ok(Exit::Success)
        }
    }
}

pub async fn run_replay(cmd: ReplayCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let store = ws.store().await?;
    match cmd {
        ReplayCmd::Start {
            from_snapshot,
            json,
        } => {
            let key = LedgerKey::load_or_create(&ws.config.ledger_key)
                .with_context(|| "the workspace's ledger key (config.toml [ledger] signing_key)")?;
            import_if_missing(&ws, &*store, &key, &from_snapshot).await?;
            let bar = progress_bar("replaying batches");
            let progress = {
                let bar = bar.clone();
                move |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            };
            let result =
                recovery::replay(&*store, key.public_key(), &from_snapshot, &progress).await;
            bar.finish_and_clear();
            let state = match result {
                Ok(s) => s,
                Err(e @ RecoveryError::Unverified(_)) => {
                    // Recorded in the replay state; the report says where.
                    if json {
                        if let Some(s) = store.replay_state().await? {
                            output::json(io.out, &s)?;
                        }
                    } else {
                        writeln!(io.err, "replay stopped: {e}")?;
                        writeln!(
                            io.err,
                            "the spend aggregates were left as they were; `caracal merkle verify-range` shows every batch that does not verify"
                        )?;
                    }
                    return Ok(Exit::Failure);
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                output::json(io.out, &state)?;
            } else {
                print_state(io, &state)?;
                let totals = principal_totals(&store.spend_minutes().await?);
                print_totals(io, &totals)?;
                writeln!(io.out, "{}", counters_note(&ws))?;
            }
            Ok(Exit::Success)
        }
        ReplayCmd::Status { json } => {
            let state = store.replay_state().await?;
            if json {
                output::json(io.out, &state)?;
            } else {
                match &state {
                    None => writeln!(io.out, "no replay or restore has run in this workspace")?,
                    Some(s) => print_state(io, s)?,
                }
            }
            Ok(Exit::from_ok(state.is_none_or(|s| s.status != "failed")))
        }
    }
}

/// What a rebuilt set of aggregates means for the budget counters.
fn counters_note(ws: &Workspace) -> &'static str {
    match ws.config.deployment {
        Deployment::Embedded => {
            "budget counters: the gateway primes a counter from these aggregates when it first needs it; \
             a running gateway keeps the counters it already holds (restart it to prime them all again)"
        }
        Deployment::Distributed(_) => {
            "budget counters: replicas prime a counter Redis does not hold from these aggregates; \
             counters Redis holds keep their live figures (they also count spend the ledger writers \
             have not written yet)"
        }
    }
}

fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} events"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn print_state(io: &mut Io<'_>, s: &ReplayState) -> anyhow::Result<()> {
    writeln!(
        io.out,
        "snapshot    {}",
        s.snapshot_id.as_deref().unwrap_or("none")
    )?;
    writeln!(io.out, "status      {}", s.status)?;
    let pct = (s.position.min(s.target) * 100)
        .checked_div(s.target)
        .unwrap_or(100);
    writeln!(
        io.out,
        "position    leaf {} of {} ({pct}%)",
        s.position, s.target
    )?;
    writeln!(
        io.out,
        "events      {} read, {} of them calls counted; {} counted unverified (sealed after the last batch read, or not sealed yet)",
        s.events, s.calls, s.unverified
    )?;
    writeln!(io.out, "started     {}", s.started_at)?;
    writeln!(io.out, "updated     {}", s.updated_at)?;
    if let Some(f) = &s.finished_at {
        writeln!(io.out, "finished    {f}")?;
    }
    writeln!(
        io.out,
        "aggregates  {}",
        if s.complete {
            "complete: counters are primed from them"
        } else {
            "INCOMPLETE (a restored snapshot only): counters are primed from the ledger's rows until a replay finishes"
        }
    )?;
    if let Some(e) = &s.error {
        writeln!(io.out, "error       {e}")?;
    }
    Ok(())
}

fn print_totals(io: &mut Io<'_>, totals: &[Total]) -> anyhow::Result<()> {
    if totals.is_empty() {
        writeln!(io.out, "no spend")?;
        return Ok(());
    }
    let mut t = output::table(&["PRINCIPAL", "CURRENCY", "SPENT", "CALLS"]);
    for total in totals {
        t.add_row(vec![
            total.principal_id.clone(),
            total.currency.clone(),
            total.amount.clone(),
            total.calls.to_string(),
        ]);
    }
    output::print_table(io.out, &t)
}
