//! The derived state's conformance suite: the spend aggregates the ledger
//! inserts keep, snapshots, restore and replay, run against SQLite and
//! PostgreSQL with the Merkle suite's harness (a store, and plain SQL on
//! its database to lose or change what it holds).

use std::future::Future;
use std::sync::Arc;

use crate::conformance::merkle::Harness;
use crate::ledger::{CostBasis, Decision, EventCode, EventKind, LedgerEvent, Mode};
use crate::merkle::seal::{self, Policy};
use crate::merkle::verify::verify_range;
use crate::merkle::LedgerKey;
use crate::recovery::{self, RecoveryError};
use crate::store::{MinuteSpend, StoreError};

const BASE_MS: i64 = 1_800_000_000_000;

/// Event `n`: a call of one of three principals, a second apart, costing
/// 0.00n… in USD, or EUR for every fifth.
fn call(n: u64) -> LedgerEvent {
    let mut e = LedgerEvent::new(
        EventKind::Call,
        Mode::BaseUrl,
        Decision::Allow,
        EventCode::OK,
    );
    e.id = uuid::Uuid::now_v7().to_string();
    e.ts_ms = BASE_MS + n as i64 * 7_000;
    e.ts = jiff::Timestamp::from_millisecond(e.ts_ms)
        .expect("a time")
        .to_string();
    e.principal_id = Some(format!("agent-{}", n % 3));
    e.status = Some(200);
    e.cost = Some(crate::money::parse_amount(&format!("0.{:04}", n * 37 + 1)).expect("amount"));
    e.currency = Some(if n.is_multiple_of(5) { "EUR" } else { "USD" }.into());
    e.cost_basis = Some(CostBasis::Usage);
    e
}

fn calls(range: std::ops::Range<u64>) -> Vec<LedgerEvent> {
    range.map(call).collect()
}

fn key() -> LedgerKey {
    LedgerKey::parse(&LedgerKey::generate()).expect("key")
}

const POLICY: Policy = Policy {
    max_events: 4,
    max_age: std::time::Duration::from_secs(3600),
};

fn quiet(_: u64, _: u64) {}

async fn insert<H: Harness>(h: &H, events: &[LedgerEvent]) {
    h.store()
        .insert_ledger_events(events)
        .await
        .expect("insert");
}

async fn seal<H: Harness>(h: &H, key: &LedgerKey) {
    seal::seal_due(h.store(), key, POLICY, true)
        .await
        .expect("seal");
}

/// The aggregates as the store holds them, and as the raw ledger sums.
async fn aggregates<H: Harness>(h: &H) -> (Vec<MinuteSpend>, Vec<MinuteSpend>) {
    (
        h.store().spend_minutes().await.expect("spend_minutes"),
        h.store().spend_from_ledger().await.expect("from ledger"),
    )
}

async fn assert_matches_ledger<H: Harness>(h: &H) {
    let (kept, raw) = aggregates(h).await;
    assert!(!raw.is_empty());
    assert_eq!(kept, raw, "the aggregates differ from the raw ledger");
}

/// The aggregates count every call with a principal and a cost once: not
/// a retried insert twice, not an authority event, not a call without a
/// cost or a principal; per currency, per minute.
pub async fn the_aggregates_follow_the_inserts<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let events = calls(0..12);
    insert(&h, &events[..8]).await;
    // A retried batch (overlapping the first) and a duplicate within one.
    let mut retry = events[4..].to_vec();
    retry.push(events[11].clone());
    insert(&h, &retry).await;
    let mut free = call(20);
    free.cost = None;
    let mut anonymous = call(21);
    anonymous.principal_id = None;
    let mut authority = call(22);
    authority.kind = EventKind::Authority;
    let mut no_currency = call(23);
    no_currency.currency = None;
    insert(&h, &[free, anonymous, authority, no_currency]).await;
    assert_matches_ledger(&h).await;
    let (kept, _) = aggregates(&h).await;
    assert_eq!(kept.iter().map(|r| r.calls).sum::<u64>(), 13);
    assert!(kept.iter().any(|r| r.currency.is_empty()));
    assert!(kept.iter().all(|r| r.minute_ms % 60_000 == 0));
    let spend = h
        .store()
        .spend_by_minute_since("agent-0", BASE_MS)
        .await
        .expect("by minute");
    let want: crate::money::Decimal = events
        .iter()
        .chain([call(23)].iter())
        .filter(|e| e.principal_id.as_deref() == Some("agent-0"))
        .filter_map(|e| e.cost)
        .sum();
    assert_eq!(
        spend
            .iter()
            .map(|s| s.amount)
            .sum::<crate::money::Decimal>(),
        want
    );
}

/// The sequence: snapshot, more traffic, the aggregates lost,
/// restore, replay: the aggregates equal the raw ledger's again, the
/// ledger verifies, and replaying again changes nothing.
pub async fn snapshot_restore_replay_reproduces_the_ledger<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let key = key();
    insert(&h, &calls(0..10)).await;
    let snap = recovery::create_snapshot(h.store(), &key, POLICY, &quiet)
        .await
        .expect("snapshot");
    assert_eq!(snap.tree_size, 10, "pending events are sealed first");
    assert_eq!(snap.calls, 10);
    assert_eq!(snap.principals, 3);
    let at_snapshot = h.store().spend_minutes().await.expect("minutes");
    assert_eq!(
        h.store().snapshot_rows(&snap.id).await.expect("rows"),
        at_snapshot
    );
    // More traffic: some sealed, some still pending.
    insert(&h, &calls(10..17)).await;
    seal(&h, &key).await;
    insert(&h, &calls(17..20)).await;
    // The derived state is lost.
    h.tamper(&["DELETE FROM spend_minutes".to_string()]).await;
    let restored = recovery::restore(h.store(), key.public_key(), &snap.id)
        .await
        .expect("restore");
    assert_eq!(restored.status, "restored");
    assert!(!restored.complete);
    assert_eq!(
        h.store().spend_minutes().await.expect("minutes"),
        at_snapshot
    );
    // Counters are not primed from a restored snapshot alone, but from
    // the ledger's rows.
    match h.store().spend_by_minute_since("agent-0", BASE_MS).await {
        Err(StoreError::Incomplete(m)) => assert!(m.contains("caracal replay start"), "{m}"),
        other => panic!("read an incomplete state: {other:?}"),
    }
    let primed = crate::snapshot::refresh::primed_from(h.store(), "agent-0", BASE_MS)
        .await
        .expect("primed from the rows");
    let sum = |spend: &[crate::store::Spend]| -> crate::money::Decimal {
        spend.iter().map(|s| s.amount).sum()
    };
    let rows = h
        .store()
        .spend_since("agent-0", BASE_MS)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 7, "agent-0's calls 0, 3, …, 18");
    assert_eq!(sum(&primed), sum(&rows));
    let done = recovery::replay(h.store(), key.public_key(), &snap.id, &quiet)
        .await
        .expect("replay");
    assert_eq!(done.status, "done");
    assert!(done.complete);
    assert_eq!(done.position, 17);
    assert_eq!((done.events, done.unverified, done.calls), (10, 3, 10));
    assert_eq!(h.store().replay_state().await.expect("state"), Some(done));
    assert_matches_ledger(&h).await;
    assert!(h
        .store()
        .spend_by_minute_since("agent-0", BASE_MS)
        .await
        .is_ok());
    let r = verify_range(h.store(), key.public_key(), i64::MIN, i64::MAX, &|_, _| {})
        .await
        .expect("verify");
    assert!(r.ok, "{r:?}");
    // Idempotent: again from the same snapshot, the same aggregates.
    let before = h.store().spend_minutes().await.expect("minutes");
    recovery::replay(h.store(), key.public_key(), &snap.id, &quiet)
        .await
        .expect("replay again");
    assert_eq!(h.store().spend_minutes().await.expect("minutes"), before);
}

/// A later snapshot builds on the earlier one, and equals what the raw
/// ledger sums; an empty ledger has an empty snapshot.
pub async fn snapshots_build_on_each_other<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let key = key();
    let empty = recovery::create_snapshot(h.store(), &key, POLICY, &quiet)
        .await
        .expect("empty snapshot");
    assert_eq!((empty.tree_size, empty.calls), (0, 0));
    assert!(empty.checkpoint.is_none());
    insert(&h, &calls(0..9)).await;
    let first = recovery::create_snapshot(h.store(), &key, POLICY, &quiet)
        .await
        .expect("first");
    insert(&h, &calls(9..15)).await;
    let second = recovery::create_snapshot(h.store(), &key, POLICY, &quiet)
        .await
        .expect("second");
    assert_eq!((first.tree_size, second.tree_size), (9, 15));
    let (_, raw) = aggregates(&h).await;
    assert_eq!(
        h.store().snapshot_rows(&second.id).await.expect("rows"),
        raw
    );
    assert_eq!(second.digest, crate::store::spend_digest(&raw));
    let listed: Vec<String> = h
        .store()
        .snapshots(None)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![empty.id.clone(), first.id, second.id.clone()]);
    // A snapshot the database lost comes back from its record and rows
    // (the workspace copy), checked: changed rows and a signature over
    // another digest are refused, the true ones accepted.
    let rows = h.store().snapshot_rows(&second.id).await.expect("rows");
    h.store()
        .snapshot_discard(&second.id)
        .await
        .expect("discard");
    assert!(h
        .store()
        .snapshots(Some(&second.id))
        .await
        .expect("gone")
        .is_empty());
    let mut changed = rows.clone();
    changed[0].calls += 1;
    let err = recovery::import(h.store(), key.public_key(), &second, &changed)
        .await
        .expect_err("changed rows");
    assert_eq!(err.code(), "snapshot_corrupt");
    let resigned = crate::store::SnapshotInfo {
        digest: crate::store::spend_digest(&changed),
        ..second.clone()
    };
    let err = recovery::import(h.store(), key.public_key(), &resigned, &changed)
        .await
        .expect_err("digest without a signature over it");
    assert_eq!(err.code(), "snapshot_signature");
    assert!(h
        .store()
        .snapshots(Some(&second.id))
        .await
        .expect("still gone")
        .is_empty());
    recovery::import(h.store(), key.public_key(), &second, &rows)
        .await
        .expect("import");
    assert_eq!(
        h.store().snapshots(Some(&second.id)).await.expect("back"),
        vec![second.clone()]
    );
    assert_eq!(
        h.store().snapshot_rows(&second.id).await.expect("rows"),
        rows
    );
    // Restoring the empty snapshot and replaying rebuilds everything.
    h.tamper(&["UPDATE spend_minutes SET calls = calls + 1".to_string()])
        .await;
    recovery::replay(h.store(), key.public_key(), &empty.id, &quiet)
        .await
        .expect("replay from empty");
    assert_matches_ledger(&h).await;
}

/// A replay reads only events that verify: a changed row stops it, naming
/// the batch and event, and the aggregates are left as they were.
pub async fn a_replay_stops_at_a_batch_that_does_not_verify<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let key = key();
    let snap = recovery::create_snapshot(h.store(), &key, POLICY, &quiet)
        .await
        .expect("snapshot");
    let events = calls(0..10);
    insert(&h, &events).await;
    seal(&h, &key).await;
    let before = h.store().spend_minutes().await.expect("minutes");
    h.tamper(&[format!(
        "UPDATE ledger_events SET cost = '9.99' WHERE id = '{}'",
        events[5].id
    )])
    .await;
    let err = recovery::replay(h.store(), key.public_key(), &snap.id, &quiet)
        .await
        .expect_err("a changed row must stop the replay");
    assert_eq!(err.code(), "verification_failed");
    match &err {
        RecoveryError::Unverified(r) => {
            assert_eq!(r.number, 1);
            assert_eq!(r.first_bad_event.as_deref(), Some(events[5].id.as_str()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.store().spend_minutes().await.expect("minutes"), before);
    let state = h.store().replay_state().await.expect("state").expect("one");
    assert_eq!(state.status, "failed");
    assert_eq!(state.position, 4, "the first batch was read");
    assert!(state
        .error
        .as_deref()
        .is_some_and(|e| e.contains(&events[5].id)));
    // Nor can a snapshot be taken over it.
    let err = recovery::create_snapshot(h.store(), &key, POLICY, &quiet)
        .await
        .expect_err("snapshot over a changed row");
    assert_eq!(err.code(), "verification_failed");
    assert_eq!(h.store().snapshots(None).await.expect("list").len(), 1);
}

/// A snapshot whose rows were changed, or whose checkpoint the ledger no
/// longer holds, is refused.
pub async fn a_changed_or_foreign_snapshot_is_refused<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let key = key();
    insert(&h, &calls(0..6)).await;
    let snap = recovery::create_snapshot(h.store(), &key, POLICY, &quiet)
        .await
        .expect("snapshot");
    let err = recovery::restore(h.store(), key.public_key(), "no-such-id")
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), "snapshot_not_found");
    let other = self::key();
    let err = recovery::restore(h.store(), other.public_key(), &snap.id)
        .await
        .expect_err("another key");
    assert_eq!(err.code(), "snapshot_not_in_ledger");
    h.tamper(&[format!(
        "UPDATE snapshot_spend SET calls = calls + 1 WHERE snapshot_id = '{}' AND principal_id = 'agent-1'",
        snap.id
    )])
    .await;
    let err = recovery::restore(h.store(), key.public_key(), &snap.id)
        .await
        .expect_err("changed rows");
    assert_eq!(err.code(), "snapshot_corrupt");
    // Rows and digest changed together: the ledger key did not sign that.
    let forged = h.store().snapshot_rows(&snap.id).await.expect("rows");
    h.tamper(&[format!(
        "UPDATE ledger_snapshots SET digest = '{}' WHERE id = '{}'",
        crate::store::spend_digest(&forged),
        snap.id
    )])
    .await;
    let err = recovery::restore(h.store(), key.public_key(), &snap.id)
        .await
        .expect_err("re-digested rows");
    assert_eq!(err.code(), "snapshot_signature");
    h.tamper(&[format!(
        "UPDATE ledger_snapshots SET signature = 'not a note' WHERE id = '{}'",
        snap.id
    )])
    .await;
    let err = recovery::replay(h.store(), key.public_key(), &snap.id, &quiet)
        .await
        .expect_err("no signature");
    assert_eq!(err.code(), "snapshot_signature");
    // The ledger's tree of that size has another root: a rewritten history.
    h.tamper(&[format!(
        "UPDATE merkle_batches SET root = {} WHERE end_index = {}",
        h.blob(&[7u8; 32]),
        snap.tree_size
    )])
    .await;
    let err = recovery::restore(h.store(), key.public_key(), &snap.id)
        .await
        .expect_err("another root");
    assert_eq!(err.code(), "snapshot_not_in_ledger");
    assert!(err.to_string().contains("rewritten"), "{err}");
    // The ledger's checkpoint of that size is gone: another ledger.
    h.tamper(&["DELETE FROM merkle_batches".to_string()]).await;
    let err = recovery::replay(h.store(), key.public_key(), &snap.id, &quiet)
        .await
        .expect_err("not in the ledger");
    assert_eq!(err.code(), "snapshot_not_in_ledger");
    assert!(err.to_string().contains("backup"), "{err}");
    // Nothing was changed by the refusals.
    assert_matches_ledger(&h).await;
}

/// Events inserted while a replay runs are counted once: by the replay if
/// they committed before its swap, by their own insert after it.
pub async fn events_inserted_during_a_replay_count_once<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = Arc::new(make().await);
    let key = key();
    let snap = recovery::create_snapshot(h.store(), &key, POLICY, &quiet)
        .await
        .expect("snapshot");
    insert(&*h, &calls(0..40)).await;
    seal(&*h, &key).await;
    // A writer inserting all along, until the replays are done.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (h, stop) = (h.clone(), stop.clone());
        tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                insert(&*h, &calls(100 + round * 3..103 + round * 3)).await;
                round += 1;
            }
            round
        })
    };
    for _ in 0..5 {
        recovery::replay(h.store(), key.public_key(), &snap.id, &quiet)
            .await
            .expect("replay");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.await.expect("writer") > 0);
    assert_matches_ledger(&*h).await;
}

/// A second run takes the replay over; the first stops at its next step
/// and cannot swap in what it built.
pub async fn a_second_run_takes_the_replay_over<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let key = key();
    insert(&h, &calls(0..3)).await;
    let snap = recovery::create_snapshot(h.store(), &key, POLICY, &quiet)
        .await
        .expect("snapshot");
    let rows = h.store().snapshot_rows(&snap.id).await.expect("rows");
    let now = jiff::Timestamp::now().to_string();
    let first = crate::store::ReplayState {
        snapshot_id: Some(snap.id.clone()),
        owner: "first".into(),
        status: "running".into(),
        complete: true,
        position: snap.tree_size,
        target: snap.tree_size,
        events: 0,
        calls: 0,
        unverified: 0,
        started_at: now.clone(),
        updated_at: now,
        finished_at: None,
        error: None,
    };
    h.store().replay_begin(&rows, &first).await.expect("begin");
    let second = crate::store::ReplayState {
        owner: "second".into(),
        ..first.clone()
    };
    h.store().replay_begin(&[], &second).await.expect("begin");
    assert!(matches!(
        h.store().replay_add(&first, &rows).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        h.store().replay_finish(&first).await,
        Err(StoreError::Conflict(_))
    ));
    assert_matches_ledger(&h).await;
}

/// Instantiates every case for one store harness.
#[macro_export]
macro_rules! recovery_conformance {
    ($make:expr) => {
        $crate::conformance_cases!(recovery, $make;
            the_aggregates_follow_the_inserts,
            snapshot_restore_replay_reproduces_the_ledger,
            snapshots_build_on_each_other,
            a_replay_stops_at_a_batch_that_does_not_verify,
            a_changed_or_foreign_snapshot_is_refused,
            events_inserted_during_a_replay_count_once,
            a_second_run_takes_the_replay_over,
        );
    };
}
