//! Verifying batches from what the store holds now: every leaf recomputed
//! from its event's row, the batch's root recomputed from them and the
//! previous checkpoint's tree, both checkpoints' signatures checked with
//! the ledger's public key. Nothing stored is trusted: the stored hashes
//! only serve to name the first event that no longer matches what was
//! sealed, and to extend the previous tree, whose stored frontier must
//! hash to the previous signed root.

use serde::Serialize;

use super::checkpoint::{self, Verified};
use super::{leaf, tree};
use crate::ledger::LedgerEvent;
use crate::store::{Batch, BatchFilter, MerkleStore};

/// One thing that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// A stable code: `signature`, `checkpoint_mismatch`,
    /// `previous_checkpoint`, `frontier`, `missing_leaf`, `missing_event`,
    /// `unreadable_event`, `leaf_mismatch`, `root_mismatch`,
    /// `unsealed_leaf`, `batch_gap`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            leaf_index: None,
            event_id: None,
        }
    }

    fn at(mut self, index: u64, event: Option<&str>) -> Self {
        self.leaf_index = Some(index);
        self.event_id = event.map(str::to_string);
        self
    }
}

/// What verifying one batch found.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub batch_id: String,
    pub number: u64,
    pub start: u64,
    pub end: u64,
    pub events: u64,
    pub ok: bool,
    pub failures: Vec<Failure>,
    /// The first event that does not verify, when one can be named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_event: Option<String>,
}

/// Verifies `batch` against the ledger key `public_key`. Every failure is
/// counted and logged as critical.
pub async fn verify_batch(
    store: &dyn MerkleStore,
    public_key: &str,
    batch: &Batch,
) -> Result<BatchReport, crate::store::StoreError> {
    Ok(verify_batch_events(store, public_key, batch).await?.0)
}

/// [`verify_batch`], answering also the batch's events in leaf order as
/// they were read and verified (all of them when the report is `ok`).
pub async fn verify_batch_events(
    store: &dyn MerkleStore,
    public_key: &str,
    batch: &Batch,
) -> Result<(BatchReport, Vec<LedgerEvent>), crate::store::StoreError> {
    let mut failures = Vec::new();
    // The batch's own checkpoint: what it signs is the truth.
    let signed = match checkpoint::verify(&batch.checkpoint, public_key) {
        Ok(v) => {
            if v.size != batch.end || v.root.0 != batch.root {
                failures.push(Failure::new(
                    "checkpoint_mismatch",
                    format!(
                        "the batch row says {} leaves with root {}, its signed checkpoint {} leaves with root {}",
                        batch.end,
                        hex::encode(batch.root),
                        v.size,
                        hex::encode(v.root.0)
                    ),
                ));
            }
            Some(v)
        }
        Err(e) => {
            failures.push(Failure::new("signature", e.to_string()));
            None
        }
    };
    let end = signed.as_ref().map_or(batch.end, |v| v.size);
    let start = batch.start;
    if start > end {
        failures.push(Failure::new(
            "checkpoint_mismatch",
            format!("the batch starts at leaf {start}, after its end {end}"),
        ));
        return Ok((finish(batch, failures, 0), Vec::new()));
    }
    // The previous checkpoint: the tree this batch extends.
    let previous: Option<Verified> = if start == 0 {
        if batch.number != 0 {
            failures.push(Failure::new(
                "previous_checkpoint",
                format!(
                    "batch {} starts the tree, but only batch 0 may",
                    batch.number
                ),
            ));
        }
        None
    } else {
        let prev = store
            .batches(&BatchFilter {
                end: Some(start),
                ..Default::default()
            })
            .await?;
        match prev.first() {
            None => {
                failures.push(Failure::new(
                    "previous_checkpoint",
                    format!("no batch ends at leaf {start}, where this batch starts: a batch is missing"),
                ));
                None
            }
            Some(p) => {
                match checkpoint::verify(&p.checkpoint, public_key) {
                    Ok(v) if v.size == start => {
                        if p.number + 1 != batch.number {
                            failures.push(Failure::new(
                                "batch_gap",
                                format!(
                                    "the batch before is number {}, this one {}",
                                    p.number, batch.number
                                ),
                            ));
                        }
                        Some(v)
                    }
                    Ok(v) => {
                        failures.push(Failure::new(
                            "previous_checkpoint",
                            format!(
                                "the previous batch's checkpoint signs {} leaves, not {start}",
                                v.size
                            ),
                        ));
                        None
                    }
                    Err(e) => {
                        failures.push(Failure::new(
                        "previous_checkpoint",
                        format!("the previous batch ({}) has a checkpoint that does not verify: {e}", p.id),
                    ));
                        None
                    }
                }
            }
        }
    };
    // The tree before the batch, from its stored frontier, checked
    // against the previous signed root.
    let indexes = tree::frontier_indexes(start);
    let stored_frontier = store.merkle_hashes(&indexes).await?;
    let frontier = tree::Hashes(
        stored_frontier
            .iter()
            .map(|(k, v)| (*k, tlog_tiles::Hash(*v)))
            .collect(),
    );
    let frontier_ok = match (&previous, start) {
        (_, 0) => true,
        (Some(prev), _) => match tree::root(start, &frontier) {
            Ok(r) if r == prev.root => true,
            _ => {
                failures.push(Failure::new(
                    "frontier",
                    format!(
                        "the stored tree of {start} leaves does not hash to the previous checkpoint's root: \
                         earlier batches' hashes were changed"
                    ),
                ));
                false
            }
        },
        (None, _) => false,
    };
    // The leaves, recomputed from the rows.
    let leaves = store.leaves(start, end).await?;
    let level0: Vec<u64> = (start..end)
        .map(|n| tlog_tiles::stored_hash_index(0, n))
        .collect();
    let stored_leaves = store.merkle_hashes(&level0).await?;
    let by_index: std::collections::HashMap<u64, &crate::store::Leaf> =
        leaves.iter().map(|l| (l.index, l)).collect();
    let mut recomputed = Vec::with_capacity((end - start) as usize);
    let mut events = Vec::with_capacity((end - start) as usize);
    let mut leaf_failures = Vec::new();
    for n in start..end {
        let Some(l) = by_index.get(&n) else {
            leaf_failures.push(
                Failure::new(
                    "missing_leaf",
                    format!("leaf {n} has no event: a row was deleted"),
                )
                .at(n, None),
            );
            continue;
        };
        match &l.event {
            Err(why) => {
                let code = if why.contains("not in the ledger") {
                    "missing_event"
                } else {
                    "unreadable_event"
                };
                leaf_failures.push(
                    Failure::new(code, format!("leaf {n}: event {} {why}", l.event_id))
                        .at(n, Some(&l.event_id)),
                );
            }
            Ok(e) => {
                let h = leaf::leaf_hash(e);
                let stored = stored_leaves.get(&tlog_tiles::stored_hash_index(0, n));
                if stored != Some(&h.0) || e.id != l.event_id {
                    leaf_failures.push(
                        Failure::new(
                            "leaf_mismatch",
                            format!(
                                "leaf {n}: event {} is not what was sealed (changed, or moved from another position)",
                                e.id
                            ),
                        )
                        .at(n, Some(&e.id)),
                    );
                }
                recomputed.push(h);
                events.push(e.clone());
            }
        }
    }
    let complete = recomputed.len() as u64 == end - start;
    let first_bad = leaf_failures.first().map(|f| {
        f.event_id
            .clone()
            .unwrap_or_else(|| format!("leaf {}", f.leaf_index.unwrap_or_default()))
    });
    failures.extend(leaf_failures);
    if complete && frontier_ok {
        if let Some(v) = &signed {
            match tree::append(start, &frontier, &recomputed) {
                Ok(a) if a.root == v.root => {}
                Ok(_) => failures.push(Failure::new(
                    "root_mismatch",
                    "the batch's events do not hash to its signed root",
                )),
                Err(e) => failures.push(Failure::new("root_mismatch", e.to_string())),
            }
        }
    }
    let mut report = finish(batch, failures, end - start);
    report.first_bad_event = first_bad;
    for f in &report.failures {
        super::failed(Some(&batch.id), f.code, &f.message);
    }
    Ok((report, events))
}

fn finish(batch: &Batch, failures: Vec<Failure>, events: u64) -> BatchReport {
    BatchReport {
        batch_id: batch.id.clone(),
        number: batch.number,
        start: batch.start,
        end: batch.end,
        events,
        ok: failures.is_empty(),
        failures,
        first_bad_event: None,
    }
}

/// What verifying a time range found.
#[derive(Debug, Clone, Serialize)]
pub struct RangeReport {
    pub start_ms: i64,
    pub end_ms: i64,
    pub batches: Vec<BatchReport>,
    /// Failures outside any batch (leaves beyond the last checkpoint).
    pub failures: Vec<Failure>,
    /// Events not sealed yet (all of them, whatever their time).
    pub pending: u64,
    pub ok: bool,
}

/// Verifies every batch with an event in `[start_ms, end_ms]` (or sealed
/// in it), calling `progress(done, total)` after each.
pub async fn verify_range(
    store: &dyn MerkleStore,
    public_key: &str,
    start_ms: i64,
    end_ms: i64,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<RangeReport, crate::store::StoreError> {
    let batches = store
        .batches(&BatchFilter {
            overlapping: Some((start_ms, end_ms)),
            ..Default::default()
        })
        .await?;
    let total = batches.len() as u64;
    let mut reports = Vec::with_capacity(batches.len());
    for (k, b) in batches.iter().enumerate() {
        reports.push(verify_batch(store, public_key, b).await?);
        progress(k as u64 + 1, total);
    }
    // Leaves nobody signed: rows given a position by hand.
    let mut failures = Vec::new();
    let size = store.latest_batch().await?.map_or(0, |b| b.end);
    let beyond = store.leaves(size, u64::MAX >> 1).await?;
    if let Some(l) = beyond.first() {
        let f = Failure::new(
            "unsealed_leaf",
            format!(
                "{} leaves at or after {size}, where the last checkpoint ends, were never sealed",
                beyond.len()
            ),
        )
        .at(l.index, Some(&l.event_id));
        super::failed(None, f.code, &f.message);
        failures.push(f);
    }
    let (pending, _) = store.pending().await?;
    let ok = failures.is_empty() && reports.iter().all(|r| r.ok);
    Ok(RangeReport {
        start_ms,
        end_ms,
        batches: reports,
        failures,
        pending,
        ok,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ledger::{Decision, EventCode, EventKind, LedgerEvent, Mode};
    use crate::merkle::seal::{seal_due, Policy};
    use crate::merkle::LedgerKey;
    use crate::store::{LedgerStore, SqliteStore, Store};

    #[derive(Debug, Clone)]
    enum Tamper {
        /// Sets event k's cost to `cents` (unchanged when it already is).
        Cost(usize, u32),
        Delete(usize),
        Swap(usize, usize),
        Nothing,
    }

    fn tamper() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            (0usize..64, 0u32..4).prop_map(|(k, c)| Tamper::Cost(k, c)),
            (0usize..64).prop_map(Tamper::Delete),
            (0usize..64, 0usize..64).prop_map(|(a, b)| Tamper::Swap(a, b)),
            Just(Tamper::Nothing),
        ]
    }

    /// Runs `tamper` on a sealed ledger of `n` events with costs `costs`
    /// (in cents); answers whether the data differs from what was sealed
    /// and whether verification passed.
    async fn run(n: usize, batch: usize, costs: Vec<u32>, t: Tamper) -> (bool, bool) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("c.db")).await.unwrap();
        let key = LedgerKey::parse(&LedgerKey::generate()).unwrap();
        let events: Vec<LedgerEvent> = (0..n)
            .map(|i| {
                let mut e = LedgerEvent::new(
                    EventKind::Call,
                    Mode::BaseUrl,
                    Decision::Allow,
                    EventCode::OK,
                );
                e.ts_ms = 1_000_000 + i as i64;
                e.cost = Some(crate::money::Decimal::new(
                    i64::from(costs[i % costs.len()]),
                    2,
                ));
                e
            })
            .collect();
        store.insert_ledger_events(&events).await.unwrap();
        let policy = Policy {
            max_events: batch,
            max_age: std::time::Duration::from_secs(60),
        };
        seal_due(&store, &key, policy, true).await.unwrap();
        let sql: Vec<String>;
        let differs;
        match t {
            Tamper::Cost(k, cents) => {
                let e = &events[k % n];
                let new = crate::money::Decimal::new(i64::from(cents), 2);
                differs = e.cost != Some(new);
                sql = vec![format!(
                    "UPDATE ledger_events SET cost = '{new}' WHERE id = '{}'",
                    e.id
                )];
            }
            Tamper::Delete(k) => {
                differs = true;
                sql = vec![format!(
                    "DELETE FROM ledger_events WHERE id = '{}'",
                    events[k % n].id
                )];
            }
            Tamper::Swap(a, b) => {
                let (a, b) = (a % n, b % n);
                differs = a != b;
                sql = vec![
                    format!("UPDATE merkle_leaves SET idx = -1 WHERE idx = {a}"),
                    format!("UPDATE merkle_leaves SET idx = {a} WHERE idx = {b}"),
                    format!("UPDATE merkle_leaves SET idx = {b} WHERE idx = -1"),
                ];
            }
            Tamper::Nothing => {
                differs = false;
                sql = Vec::new();
            }
        }
        for s in sql {
            sqlx::query(&s).execute(store.pool()).await.unwrap();
        }
        let r = verify_range(
            &store as &dyn Store,
            key.public_key(),
            i64::MIN,
            i64::MAX,
            &|_, _| {},
        )
        .await
        .unwrap();
        (differs, r.ok)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Verification fails exactly when the stored data differs from
        /// what was sealed.
        #[test]
        fn verification_fails_exactly_when_the_data_differs(
            n in 1usize..40,
            batch in 1usize..9,
            costs in proptest::collection::vec(0u32..4, 1..5),
            t in tamper(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (differs, ok) = rt.block_on(run(n, batch, costs, t.clone()));
            prop_assert_eq!(ok, !differs, "{:?}", t);
        }
    }

    /// A failure counts in `caracal_merkle_verification_failures_total`.
    #[test]
    fn failures_are_counted() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (differs, ok) = rt.block_on(run(5, 2, vec![1, 2], Tamper::Delete(3)));
            assert!(differs && !ok);
        });
        let text = handle.render();
        assert!(
            text.contains("caracal_merkle_verification_failures_total 1"),
            "{text}"
        );
    }
}
