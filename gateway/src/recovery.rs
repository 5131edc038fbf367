//! Snapshots and replay of the derived state: the per-minute spend
//! aggregates (`spend_minutes`) that budget counters are primed from and
//! `ledger query --time-window` reads.
//!
//! A **snapshot** is the aggregates as they are at a checkpoint of the
//! ledger's Merkle log: every pending event is sealed first, then the
//! aggregates are computed from the sealed events themselves, batch by
//! batch, each batch verified against its signed checkpoint before its
//! events count (from the latest earlier snapshot still in the ledger, so
//! only the batches since are read). Its rows are bound to its record by a
//! SHA-256 digest.
//!
//! **Restore** replaces the aggregates with a snapshot's. Until a replay
//! finishes they lack the events after the snapshot, so they are marked
//! incomplete: counters are primed from the ledger's rows meanwhile
//! instead (exact, only slower), never from the snapshot's lower figure.
//!
//! **Replay** rebuilds the aggregates from a snapshot and every event after
//! it, read from the ledger table in the Merkle log's order (not from the
//! Kafka topic: the log signs the table, so only events that verify
//! against their batch's signed checkpoint are counted, and a batch that
//! does not verify stops the replay, naming it). It builds them aside and
//! records its position with each batch, then, under the lock every ledger
//! insert waits for, counts the events sealed since and those not sealed
//! yet and swaps the result in. Starting it again from the same snapshot
//! gives the same result: it is idempotent.

use serde::Serialize;

use crate::merkle::checkpoint;
use crate::merkle::seal::{self, Policy};
use crate::merkle::verify::{verify_batch_events, BatchReport};
use crate::merkle::LedgerKey;
use crate::store::{
    totals, Batch, BatchFilter, MinuteSpend, ReplayState, SnapshotInfo, Store, StoreError, Tally,
};

/// Why a snapshot, restore or replay could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("no snapshot {0}: `caracal snapshot list` shows them")]
    NotFound(String),
    #[error("{0}")]
    NotInLedger(String),
    #[error("snapshot {0} does not match its digest: its rows were changed")]
    Corrupt(String),
    #[error("snapshot {id} is not signed by this workspace's ledger key ({why}): its record was changed or made elsewhere")]
    BadSignature { id: String, why: String },
    #[error("batch {} (number {}) does not verify: {}", .0.batch_id, .0.number, describe(.0))]
    Unverified(Box<BatchReport>),
    #[error("cannot seal the pending events first: {0}")]
    Seal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RecoveryError {
    /// A stable code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "snapshot_not_found",
            Self::NotInLedger(_) => "snapshot_not_in_ledger",
            Self::Corrupt(_) => "snapshot_corrupt",
            Self::BadSignature { .. } => "snapshot_signature",
            Self::Unverified(_) => "verification_failed",
            Self::Seal(_) => "seal_failed",
            Self::Store(_) => "store",
        }
    }
}

fn describe(r: &BatchReport) -> String {
    let first = r.failures.first();
    format!(
        "{}{}",
        first.map_or("unknown failure".to_string(), |f| format!(
            "{}: {}",
            f.code, f.message
        )),
        r.first_bad_event
            .as_ref()
            .map_or(String::new(), |e| format!(" (first event: {e})"))
    )
}

/// Progress: (leaves read, leaves to read).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// Per principal and currency: the amount and calls a set of aggregates
/// counts (what `snapshot list` shows and a check compares).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Total {
    pub principal_id: String,
    pub currency: String,
    pub amount: String,
    pub calls: u64,
}

/// The totals of `rows`, by principal then currency.
pub fn principal_totals(rows: &[MinuteSpend]) -> Vec<Total> {
    totals(rows)
        .into_iter()
        .map(|((principal_id, currency), (amount, calls))| Total {
            principal_id,
            currency,
            amount: amount.to_string(),
            calls,
        })
        .collect()
}

/// Checks that the ledger still holds the tree the snapshot was taken of:
/// its checkpoint verifies with the ledger key, and the ledger's batch of
/// that size signs the same root.
async fn in_ledger(
    store: &dyn Store,
    public_key: &str,
    s: &SnapshotInfo,
) -> Result<(), RecoveryError> {
    if s.tree_size == 0 {
        return Ok(());
    }
    let Some(note) = &s.checkpoint else {
        return Err(RecoveryError::Corrupt(s.id.clone()));
    };
    let signed = checkpoint::verify(note, public_key).map_err(|e| {
        RecoveryError::NotInLedger(format!(
            "snapshot {}'s checkpoint does not verify with this workspace's ledger key: {e}",
            s.id
        ))
    })?;
    if signed.size != s.tree_size {
        return Err(RecoveryError::Corrupt(s.id.clone()));
    }
    let batch = store
        .batches(&BatchFilter {
            end: Some(s.tree_size),
            ..Default::default()
        })
        .await?;
    match batch.first() {
        Some(b) if b.root == signed.root.0 => Ok(()),
        Some(_) => Err(RecoveryError::NotInLedger(format!(
            "the ledger's tree of {} events is not the one snapshot {} was taken of (its root differs): \
             the ledger was rewritten; `caracal merkle consistency --checkpoint` with a saved checkpoint says since when",
            s.tree_size, s.id
        ))),
        None => {
            let size = store.latest_batch().await?.map_or(0, |b| b.end);
            Err(RecoveryError::NotInLedger(format!(
                "the ledger has no checkpoint of {} events, where snapshot {} was taken (its tree has {size}): \
                 this is not the ledger the snapshot was taken of; restore the database from its backup first",
                s.tree_size, s.id
            )))
        }
    }
}

/// A snapshot's record and rows, checked (see [`check`]).
async fn load(
    store: &dyn Store,
    public_key: &str,
    id: &str,
) -> Result<(SnapshotInfo, Vec<MinuteSpend>), RecoveryError> {
    let info = store
        .snapshots(Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| RecoveryError::NotFound(id.to_string()))?;
    let rows = store.snapshot_rows(id).await?;
    check(store, public_key, &info, &rows).await?;
    Ok((info, rows))
}

/// Checks a snapshot's record and rows: the ledger holds its checkpoint,
/// the rows match its digest, and the ledger key signed its id, size and
/// digest.
async fn check(
    store: &dyn Store,
    public_key: &str,
    info: &SnapshotInfo,
    rows: &[MinuteSpend],
) -> Result<(), RecoveryError> {
    in_ledger(store, public_key, info).await?;
    if crate::store::spend_digest(rows) != info.digest {
        crate::merkle::failed(
            None,
            "snapshot_corrupt",
            &format!("snapshot {}'s rows do not match its digest", info.id),
        );
        return Err(RecoveryError::Corrupt(info.id.clone()));
    }
    check_signature(public_key, info)
}

/// What a snapshot's signature signs: its id, tree size and digest.
fn signed_text(info: &SnapshotInfo) -> String {
    format!(
        "caracal-ledger-snapshot/v1\n{}\n{}\n{}\n",
        info.id, info.tree_size, info.digest
    )
}

/// Checks that the ledger key signed this snapshot's id, tree size and
/// digest (a record whose rows and digest were both changed in the
/// database fails here).
fn check_signature(public_key: &str, info: &SnapshotInfo) -> Result<(), RecoveryError> {
    let bad = |why: String| {
        crate::merkle::failed(
            None,
            "snapshot_signature",
            &format!("snapshot {}: {why}", info.id),
        );
        RecoveryError::BadSignature {
            id: info.id.clone(),
            why,
        }
    };
    match checkpoint::verify_text(&info.signature, public_key) {
        Ok(text) if text == signed_text(info) => Ok(()),
        Ok(_) => Err(bad("it signs another id, size or digest".to_string())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The batches from leaf `from` on, in order.
async fn batches_from(store: &dyn Store, from: u64) -> Result<Vec<Batch>, StoreError> {
    store
        .batches(&BatchFilter {
            from_leaf: Some(from),
            ..Default::default()
        })
        .await
}

/// Reads batch `b` (which must start at `position`), verified: its calls'
/// aggregates and how many events it holds.
async fn read_batch(
    store: &dyn Store,
    public_key: &str,
    position: u64,
    b: &Batch,
) -> Result<(Vec<MinuteSpend>, u64), RecoveryError> {
    let (report, events) = verify_batch_events(store, public_key, b).await?;
    if !report.ok {
        return Err(RecoveryError::Unverified(Box::new(report)));
    }
    if b.start != position {
        return Err(RecoveryError::NotInLedger(format!(
            "batch {} starts at leaf {}, but the events before it end at {position}",
            b.id, b.start
        )));
    }
    let mut tally = Tally::default();
    for e in &events {
        tally.add_event(e);
    }
    Ok((tally.rows(), events.len() as u64))
}

/// Seals what is pending, then records a snapshot at the resulting
/// checkpoint.
pub async fn create_snapshot(
    store: &dyn Store,
    key: &LedgerKey,
    policy: Policy,
    progress: Progress<'_>,
) -> Result<SnapshotInfo, RecoveryError> {
    seal::seal_due(store, key, policy, true)
        .await
        .map_err(|e| RecoveryError::Seal(e.to_string()))?;
    let latest = store.latest_batch().await?;
    let size = latest.as_ref().map_or(0, |b| b.end);
    // The latest earlier snapshot still in the ledger (`load` refuses one
    // whose checkpoint the tree does not hold): only the batches after it
    // need reading.
    let mut base: Option<(SnapshotInfo, Vec<MinuteSpend>)> = None;
    for s in store.snapshots(None).await?.into_iter().rev() {
        if let Ok(loaded) = load(store, key.public_key(), &s.id).await {
            base = Some(loaded);
            break;
        }
    }
    let (from, rows) = base.map_or((0, Vec::new()), |(s, r)| (s.tree_size, r));
    let mut info = SnapshotInfo {
        id: uuid::Uuid::now_v7().to_string(),
        created_at: jiff::Timestamp::now().to_string(),
        tree_size: size,
        batch_id: latest.as_ref().map(|b| b.id.clone()),
        checkpoint: latest.as_ref().map(|b| b.checkpoint.clone()),
        digest: String::new(),
        signature: String::new(),
        calls: 0,
        principals: 0,
    };
    store.snapshot_begin(&info, &rows).await?;
    let built = async {
        let mut position = from;
        progress(position, size);
        for b in batches_from(store, from).await? {
            if b.end > size {
                break;
            }
            let (rows, _) = read_batch(store, key.public_key(), position, &b).await?;
            store.snapshot_add(&info.id, &rows).await?;
            position = b.end;
            progress(position, size);
        }
        if position != size {
            return Err(RecoveryError::NotInLedger(format!(
                "the batches end at leaf {position}, the tree has {size}"
            )));
        }
        Ok(())
    }
    .await;
    if let Err(e) = built {
        let _ = store.snapshot_discard(&info.id).await;
        return Err(e);
    }
    let rows = store.snapshot_rows(&info.id).await?;
    summarize(&mut info, &rows);
    info.signature = match key.sign_text(&signed_text(&info)) {
        Ok(s) => s,
        Err(e) => {
            let _ = store.snapshot_discard(&info.id).await;
            return Err(RecoveryError::Seal(e.to_string()));
        }
    };
    store.snapshot_complete(&info).await?;
    tracing::info!(snapshot = %info.id, tree_size = size, "recorded a ledger snapshot");
    Ok(info)
}

/// Records a snapshot kept outside the database (its copy in the
/// workspace) back into it, after the checks of a stored one.
pub async fn import(
    store: &dyn Store,
    public_key: &str,
    info: &SnapshotInfo,
    rows: &[MinuteSpend],
) -> Result<(), RecoveryError> {
    // Its counts from its rows; its digest as claimed, to be checked.
    let mut checked = info.clone();
    summarize(&mut checked, rows);
    checked.digest.clone_from(&info.digest);
    check(store, public_key, &checked, rows).await?;
    store.snapshot_begin(&checked, rows).await?;
    store.snapshot_complete(&checked).await?;
    Ok(())
}

/// Fills a snapshot's digest and counts from its rows.
fn summarize(info: &mut SnapshotInfo, rows: &[MinuteSpend]) {
    info.digest = crate::store::spend_digest(rows);
    info.calls = rows.iter().map(|r| r.calls).sum();
    info.principals = totals(rows)
        .keys()
        .map(|(p, _)| p)
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
}

fn state(snapshot: &SnapshotInfo, status: &str, complete: bool, target: u64) -> ReplayState {
    let now = jiff::Timestamp::now().to_string();
    ReplayState {
        snapshot_id: Some(snapshot.id.clone()),
        owner: uuid::Uuid::now_v7().to_string(),
        status: status.to_string(),
        complete,
        position: snapshot.tree_size,
        target,
        events: 0,
        calls: 0,
        unverified: 0,
        started_at: now.clone(),
        updated_at: now,
        finished_at: None,
        error: None,
    }
}

/// Replaces the spend aggregates with snapshot `id`'s, marked incomplete
/// until a replay from it finishes.
pub async fn restore(
    store: &dyn Store,
    public_key: &str,
    id: &str,
) -> Result<ReplayState, RecoveryError> {
    let (info, rows) = load(store, public_key, id).await?;
    let mut s = state(&info, "restored", false, info.tree_size);
    s.finished_at = Some(s.started_at.clone());
    store.restore_spend(&rows, &s).await?;
    tracing::warn!(snapshot = %id, "restored the spend aggregates from a snapshot; counters are primed from the ledger's rows until a replay finishes");
    Ok(s)
}

/// Rebuilds the spend aggregates from snapshot `id` and every event after
/// it. Answers the final state; a failure is recorded in the replay state
/// too (`caracal replay status`).
pub async fn replay(
    store: &dyn Store,
    public_key: &str,
    id: &str,
    progress: Progress<'_>,
) -> Result<ReplayState, RecoveryError> {
    let (info, rows) = load(store, public_key, id).await?;
    let target = store.latest_batch().await?.map_or(0, |b| b.end);
    // The aggregates stay what they are until the swap: still incomplete
    // if a restore left them so.
    let complete = store.replay_state().await?.is_none_or(|s| s.complete);
    let mut s = state(&info, "running", complete, target);
    store.replay_begin(&rows, &s).await?;
    let run = async {
        progress(s.position, s.target);
        // Batches sealed while replaying are read too, until none is new.
        loop {
            let batches = batches_from(store, s.position).await?;
            if batches.is_empty() {
                break;
            }
            for b in batches {
                let (rows, n) = read_batch(store, public_key, s.position, &b).await?;
                s.position = b.end;
                s.target = s.target.max(b.end);
                s.events += n;
                s.calls += rows.iter().map(|r| r.calls).sum::<u64>();
                s.updated_at = jiff::Timestamp::now().to_string();
                store.replay_add(&s, &rows).await?;
                progress(s.position, s.target);
            }
        }
        Ok::<_, RecoveryError>(store.replay_finish(&s).await?)
    }
    .await;
    match run {
        Ok(done) => {
            tracing::info!(snapshot = %id, events = done.events, "replayed the ledger into the spend aggregates");
            Ok(done)
        }
        Err(e) => {
            s.status = "failed".to_string();
            s.error = Some(format!("{}: {e}", e.code()));
            s.updated_at = jiff::Timestamp::now().to_string();
            s.finished_at = Some(s.updated_at.clone());
            // Taken over by another run: that one's state stays.
            let _ = store.replay_fail(&s).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::parse_amount;

    fn row(p: &str, minute: i64, c: &str, a: &str, n: u64) -> MinuteSpend {
        MinuteSpend {
            principal_id: p.into(),
            minute_ms: minute,
            currency: c.into(),
            amount: parse_amount(a).expect("amount"),
            calls: n,
        }
    }

    #[test]
    fn totals_sum_every_minute_per_principal_and_currency() {
        let rows = [
            row("a", 0, "USD", "1.50", 2),
            row("a", 60_000, "USD", "0.25", 1),
            row("a", 0, "EUR", "2", 1),
            row("b", 0, "USD", "0.010", 3),
        ];
        let got: Vec<(String, String, String, u64)> = principal_totals(&rows)
            .into_iter()
            .map(|t| (t.principal_id, t.currency, t.amount, t.calls))
            .collect();
        let want = [
            ("a", "EUR", "2", 1),
            ("a", "USD", "1.75", 3),
            ("b", "USD", "0.01", 3),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(p, c, a, n)| (p.to_string(), c.to_string(), a.to_string(), *n))
                .collect::<Vec<_>>()
        );
        assert!(principal_totals(&[]).is_empty());
    }
}
