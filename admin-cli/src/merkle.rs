//! `caracal merkle`: the ledger's Merkle log. Seal batches now, print the
//! public key auditors verify with, verify batches and time ranges from
//! the stored rows, prove one event's inclusion, check a proof offline,
//! and prove a saved checkpoint's tree is a prefix of today's.
//!
//! Every command that verifies exits 1 when anything does not verify,
//! naming the batch and the first event; `--json` prints the full report.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use caracal_gateway::merkle::proof::{self, ConsistencyProof, InclusionProof};
use caracal_gateway::merkle::verify::{self, BatchReport, RangeReport};
use caracal_gateway::merkle::{seal, LedgerKey};
use caracal_gateway::store::{BatchFilter, Store};
use clap::Subcommand;
use jiff::Timestamp;
use serde::Serialize;

use crate::context::{Context, Workspace};
use crate::output::{self, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum MerkleCmd {
    /// Seal every event waiting for a batch now (the gateway and the
    /// ledger writers seal by size and age on their own).
    Seal {
        /// Print the batches sealed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The tree: its size, the latest batch, how many events wait.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the ledger's public key (a signed-note verifier key), what
    /// `merkle verify-proof --public-key` and witnesses verify with.
    PublicKey {
        /// Also write it to FILE.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Verify one batch: every event's leaf recomputed from its row, the
    /// batch's root, its consistency with the previous checkpoint, and
    /// both signatures. Exit code 1 if anything does not verify.
    VerifyBatch {
        /// The batch's id (`merkle status`, `merkle verify-range --json`).
        #[arg(long, value_name = "ID")]
        batch_id: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify every batch with an event (or sealed) in a time range, and
    /// that no leaf lies beyond the last checkpoint. Exit code 1 if
    /// anything does not verify.
    VerifyRange {
        /// RFC 3339, or `now`.
        #[arg(long, value_name = "TIME")]
        start_time: String,
        /// RFC 3339, or `now`.
        #[arg(long, value_name = "TIME")]
        end_time: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// An inclusion proof of one event against the latest checkpoint: its
    /// canonical bytes, leaf index, audit path and the signed checkpoint.
    Prove {
        /// The event's id (`x-caracal-event-id`, `ledger query --json`).
        #[arg(long, value_name = "ID")]
        event_id: String,
        /// Write the proof to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check an inclusion proof offline, with only the public key: no
    /// workspace or database is read. Exit code 1 if it does not verify.
    VerifyProof {
        /// The proof (`merkle prove --out`).
        #[arg(long, value_name = "FILE")]
        proof: PathBuf,
        /// The ledger's public key (`merkle public-key --out`).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prove and check that the tree of an older checkpoint is a prefix of
    /// a newer one: a rewritten or truncated history fails. Exit code 1 if
    /// it does not verify.
    Consistency {
        /// The older tree: the checkpoint of this many leaves.
        #[arg(long, value_name = "SIZE", required_unless_present = "checkpoint")]
        from: Option<u64>,
        /// The older tree: a checkpoint saved earlier (its note text), the
        /// way an auditor detects a rewrite of the database itself.
        #[arg(long, value_name = "FILE", conflicts_with = "from")]
        checkpoint: Option<PathBuf>,
        /// The newer tree: the checkpoint of this many leaves (the latest
        /// by default).
        #[arg(long, value_name = "SIZE")]
        to: Option<u64>,
        /// Write the proof to FILE.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: MerkleCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    if let MerkleCmd::VerifyProof {
        proof,
        public_key,
        json,
    } = cmd
    {
        return verify_proof_file(&proof, &public_key, json, io);
    }
    let ws = ctx.workspace()?;
    // A workspace made before the Merkle log has no key yet: it gets one
    // now, as its gateway would at its next start.
    let key = LedgerKey::load_or_create(&ws.config.ledger_key)
        .with_context(|| "the workspace's ledger key (config.toml [ledger] signing_key)")?;
    match cmd {
        MerkleCmd::PublicKey { out } => {
            if let Some(path) = out {
                std::fs::write(&path, format!("{}\n", key.public_key()))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            writeln!(io.out, "{}", key.public_key())?;
            Ok(Exit::Success)
        }
        MerkleCmd::Seal { json } => {
            let store = ws.store().await?;
            let policy = seal::Policy::of(&ws.config);
            let sealed = seal::seal_due(&*store, &key, policy, true).await?;
            if json {
                output::json(io.out, &sealed)?;
            } else if sealed.is_empty() {
                writeln!(io.out, "nothing to seal: every event is in a batch")?;
            } else {
                for b in &sealed {
                    writeln!(
                        io.out,
                        "sealed batch {} (number {}): leaves {}..{}",
                        b.id, b.number, b.start, b.end
                    )?;
                }
                let last = sealed.last().map_or(0, |b| b.end);
                writeln!(io.out, "the tree has {last} leaves")?;
            }
            Ok(Exit::Success)
        }
        MerkleCmd::Status { json } => status(&ws, &key, json, io).await,
        MerkleCmd::VerifyBatch { batch_id, json } => {
            let store = ws.store().await?;
            let batch = store
                .batches(&BatchFilter {
                    id: Some(batch_id.clone()),
                    ..Default::default()
                })
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    anyhow!("no batch {batch_id}: `caracal merkle status` lists the latest")
                })?;
            let report = verify::verify_batch(&*store, key.public_key(), &batch).await?;
            if json {
                output::json(io.out, &report)?;
            } else {
                print_batch(io, &report)?;
            }
            Ok(Exit::from_ok(report.ok))
        }
        MerkleCmd::VerifyRange {
            start_time,
            end_time,
            json,
        } => {
            let start = crate::ledger::parse_time("--start-time", &start_time)?;
            let end = crate::ledger::parse_time("--end-time", &end_time)?;
            if start > end {
                anyhow::bail!("--start-time {start} is after --end-time {end}");
            }
            let store = ws.store().await?;
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("verifying batches {bar:40} {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let progress = {
                let bar = bar.clone();
                move |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            };
            let report = verify::verify_range(
                &*store,
                key.public_key(),
                start.as_millisecond(),
                end.as_millisecond(),
                &progress,
            )
            .await?;
            bar.finish_and_clear();
            if json {
                output::json(io.out, &report)?;
            } else {
                print_range(io, &report)?;
            }
            Ok(Exit::from_ok(report.ok))
        }
        MerkleCmd::Prove { event_id, out } => {
            let store = ws.store().await?;
            let p = proof::prove(&*store, key.public_key(), &event_id).await?;
            let text = serde_json::to_string_pretty(&p)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{text}\n"))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    writeln!(
                        io.out,
                        "event {event_id} is leaf {} of {}: proof written to {}",
                        p.leaf_index,
                        p.tree_size,
                        path.display()
                    )?;
                }
                None => writeln!(io.out, "{text}")?,
            }
            Ok(Exit::Success)
        }
        MerkleCmd::Consistency {
            from,
            checkpoint,
            to,
            out,
            json,
        } => {
            let from = match (from, checkpoint) {
                (Some(size), _) => proof::From::Size(size),
                (None, Some(path)) => proof::From::Checkpoint(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                (None, None) => anyhow::bail!("give --from SIZE or --checkpoint FILE"),
            };
            let store: Arc<dyn Store> = ws.store().await?;
            let result = proof::consistency(&*store, key.public_key(), from, to).await;
            consistency_result(result, out, json, io)
        }
        MerkleCmd::VerifyProof { .. } => unreachable!("handled above"),
    }
}

async fn status(
    ws: &Workspace,
    key: &LedgerKey,
    json: bool,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    let store = ws.store().await?;
    let latest = store.latest_batch().await?;
    let (pending, oldest) = store.pending().await?;
    #[derive(Serialize)]
    struct Status<'a> {
        origin: &'a str,
        public_key: &'a str,
        tree_size: u64,
        latest_batch: Option<&'a caracal_gateway::store::Batch>,
        pending: u64,
        oldest_pending: Option<String>,
    }
    let s = Status {
        origin: key.origin(),
        public_key: key.public_key(),
        tree_size: latest.as_ref().map_or(0, |b| b.end),
        latest_batch: latest.as_ref(),
        pending,
        oldest_pending: oldest
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .map(|t| t.to_string()),
    };
    if json {
        output::json(io.out, &s)?;
        return Ok(Exit::Success);
    }
    writeln!(io.out, "log         {}", s.origin)?;
    writeln!(io.out, "public key  {}", s.public_key)?;
    writeln!(io.out, "tree size   {}", s.tree_size)?;
    match &latest {
        Some(b) => writeln!(
            io.out,
            "latest      batch {} (number {}), leaves {}..{}, sealed {}",
            b.id, b.number, b.start, b.end, b.sealed_at
        )?,
        None => writeln!(io.out, "latest      no batch sealed yet")?,
    }
    match &s.oldest_pending {
        Some(t) => writeln!(io.out, "pending     {pending} events, the oldest from {t}")?,
        None => writeln!(io.out, "pending     none")?,
    }
    Ok(Exit::Success)
}

fn print_batch(io: &mut Io<'_>, r: &BatchReport) -> anyhow::Result<()> {
    if r.ok {
        writeln!(
            io.out,
            "batch {} (number {}, leaves {}..{}): verified",
            r.batch_id, r.number, r.start, r.end
        )?;
        return Ok(());
    }
    writeln!(
        io.out,
        "batch {} (number {}, leaves {}..{}): DOES NOT VERIFY{}",
        r.batch_id,
        r.number,
        r.start,
        r.end,
        r.first_bad_event
            .as_ref()
            .map(|e| format!(" — first event that does not: {e}"))
            .unwrap_or_default()
    )?;
    for f in &r.failures {
        writeln!(io.out, "  {}: {}", f.code, f.message)?;
    }
    Ok(())
}

fn print_range(io: &mut Io<'_>, r: &RangeReport) -> anyhow::Result<()> {
    for b in &r.batches {
        if !b.ok {
            print_batch(io, b)?;
        }
    }
    for f in &r.failures {
        writeln!(io.out, "{}: {}", f.code, f.message)?;
    }
    let bad = r.batches.iter().filter(|b| !b.ok).count();
    let events: u64 = r.batches.iter().map(|b| b.events).sum();
    if r.ok {
        let n = r.batches.len();
        let noun = if n == 1 { "batch" } else { "batches" };
        writeln!(io.out, "{n} {noun} ({events} events) verified")?;
    } else {
        writeln!(
            io.out,
            "LEDGER VERIFICATION FAILED: {bad} of {} batches do not verify; this may be tampering: \
             stop writes to the affected batches and preserve the database",
            r.batches.len()
        )?;
    }
    if r.pending > 0 {
        writeln!(
            io.out,
            "{} events are not sealed yet (`caracal merkle seal` seals them now)",
            r.pending
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ProofCheck {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leaf_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tree_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
}

fn verify_proof_file(
    proof_path: &std::path::Path,
    key_path: &std::path::Path,
    json: bool,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    let key = std::fs::read_to_string(key_path)
        .with_context(|| format!("cannot read the public key {}", key_path.display()))?;
    let text = std::fs::read_to_string(proof_path)
        .with_context(|| format!("cannot read the proof {}", proof_path.display()))?;
    let checked = serde_json::from_str::<InclusionProof>(&text)
        .map_err(|e| format!("not an inclusion proof: {e}"))
        .and_then(|p| proof::verify_inclusion(&p, &key).map(|head| (p, head)));
    let report = match &checked {
        Ok((p, head)) => ProofCheck {
            ok: true,
            error: None,
            event_id: Some(p.event_id.clone()),
            leaf_index: Some(p.leaf_index),
            tree_size: Some(p.tree_size),
            origin: Some(head.origin.clone()),
        },
        Err(e) => ProofCheck {
            ok: false,
            error: Some(e.clone()),
            event_id: None,
            leaf_index: None,
            tree_size: None,
            origin: None,
        },
    };
    if !report.ok {
        caracal_gateway::merkle::failed_offline(report.error.as_deref().unwrap_or_default());
    }
    if json {
        output::json(io.out, &report)?;
    } else if let Ok((p, head)) = &checked {
        writeln!(
            io.out,
            "verified: event {} is leaf {} of the {}-leaf tree of {}",
            p.event_id, p.leaf_index, p.tree_size, head.origin
        )?;
    } else {
        writeln!(
            io.out,
            "DOES NOT VERIFY: {}",
            report.error.as_deref().unwrap_or_default()
        )?;
    }
    Ok(Exit::from_ok(report.ok))
}

fn consistency_result(
    result: Result<ConsistencyProof, caracal_gateway::merkle::MerkleError>,
    out: Option<PathBuf>,
    json: bool,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    #[derive(Serialize)]
    struct Check {
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        old_size: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_size: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<&'static str>,
    }
    let check = match &result {
        Ok(p) => {
            if let Some(path) = &out {
                std::fs::write(path, format!("{}\n", serde_json::to_string_pretty(p)?))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Check {
                ok: true,
                old_size: Some(p.old_size),
                new_size: Some(p.new_size),
                error: None,
                code: None,
            }
        }
        Err(e) => Check {
            ok: false,
            old_size: None,
            new_size: None,
            error: Some(e.to_string()),
            code: Some(e.code()),
        },
    };
    if json {
        output::json(io.out, &check)?;
    } else if check.ok {
        writeln!(
            io.out,
            "consistent: the tree of {} leaves is a prefix of the tree of {}",
            check.old_size.unwrap_or_default(),
            check.new_size.unwrap_or_default()
        )?;
    } else {
        writeln!(
            io.out,
            "NOT CONSISTENT: {}",
            check.error.as_deref().unwrap_or_default()
        )?;
    }
    Ok(Exit::from_ok(check.ok))
}
