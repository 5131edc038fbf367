//! The Merkle log's conformance suite: sealing and verifying over a store,
//! and every kind of tampering with the stored rows, run against SQLite and
//! PostgreSQL. Tampering is done with plain SQL on the database, as an
//! attacker with write access would.

use std::future::Future;

use crate::ledger::{CostBasis, Decision, EventCode, EventKind, LedgerEvent, Mode};
use crate::merkle::proof::{self, From};
use crate::merkle::seal::{self, Policy};
use crate::merkle::verify::{verify_batch, verify_range, BatchReport};
use crate::merkle::LedgerKey;
use crate::store::{Batch, BatchFilter, Store};

/// A store to seal into, and a way to change its database behind it.
pub trait Harness: Send + Sync + 'static {
    fn store(&self) -> &dyn Store;
    /// Runs literal SQL statements (no parameters), in order.
    fn tamper(&self, sql: &[String]) -> crate::budget::counters::BoxFuture<()>;
    /// A literal of these bytes in the database's SQL.
    fn blob(&self, bytes: &[u8]) -> String;
}

fn event(n: u64) -> LedgerEvent {
    let mut e = LedgerEvent::new(
        EventKind::Call,
        Mode::BaseUrl,
        Decision::Allow,
        EventCode::OK,
    );
    e.ts_ms = 1_800_000_000_000 + n as i64 * 1000;
    e.ts = jiff::Timestamp::from_millisecond(e.ts_ms)
        .expect("a time")
        .to_string();
    e.principal_id = Some(format!("agent-{}", n % 3));
    e.provider = Some("openai".into());
    e.status = Some(200);
    e.input_tokens = Some(n);
    e.cost = Some(crate::money::parse_amount(&format!("0.{n:03}")).expect("amount"));
    e.currency = Some("USD".into());
    e.cost_basis = Some(CostBasis::Usage);
    e
}

/// A ledger of 10 events sealed in three batches (4, 4, 2); the key and
/// the events in ledger order.
async fn sealed<H: Harness>(h: &H) -> (LedgerKey, Vec<LedgerEvent>, Vec<Batch>) {
    let key = LedgerKey::parse(&LedgerKey::generate()).expect("key");
    let events: Vec<LedgerEvent> = (0..10).map(event).collect();
    h.store()
        .insert_ledger_events(&events)
        .await
        .expect("insert");
    let policy = Policy {
        max_events: 4,
        max_age: std::time::Duration::from_secs(60),
    };
    let batches = seal::seal_due(h.store(), &key, policy, true)
        .await
        .expect("seal");
    assert_eq!(
        batches
            .iter()
            .map(|b| (b.number, b.start, b.end))
            .collect::<Vec<_>>(),
        vec![(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    );
    (key, events, batches)
}

async fn verify_all<H: Harness>(h: &H, key: &LedgerKey) -> Vec<BatchReport> {
    let r = verify_range(h.store(), key.public_key(), i64::MIN, i64::MAX, &|_, _| {})
        .await
        .expect("verify");
    r.batches
}

/// Every failure, as (batch number, code).
fn codes(reports: &[BatchReport]) -> Vec<(u64, &'static str)> {
    reports
        .iter()
        .flat_map(|r| r.failures.iter().map(move |f| (r.number, f.code)))
        .collect()
}

fn bad(reports: &[BatchReport]) -> Vec<(u64, Option<String>)> {
    reports
        .iter()
        .filter(|r| !r.ok)
        .map(|r| (r.number, r.first_bad_event.clone()))
        .collect()
}

/// Sealing gives every event one leaf in (time, id) order; an honest
/// ledger verifies, batch by batch and as a range, and sealing again seals
/// nothing. Events inserted later go to the next batch.
pub async fn an_honest_ledger_verifies<H: Harness, F: Future<Output = H>>(make: impl Fn() -> F) {
    let h = make().await;
    let (key, events, batches) = sealed(&h).await;
    for b in &batches {
        let r = verify_batch(h.store(), key.public_key(), b)
            .await
            .expect("verify");
        assert!(r.ok, "{r:?}");
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            h.store().leaf_index(&e.id).await.expect("index"),
            Some(i as u64)
        );
    }
    let policy = Policy::default();
    assert!(seal::seal_due(h.store(), &key, policy, true)
        .await
        .expect("seal")
        .is_empty());
    assert_eq!(h.store().pending().await.expect("pending"), (0, None));
    // Not due yet: one young event waits for its batch.
    let mut late = event(20);
    late.ts_ms = crate::clock::now().as_millisecond();
    h.store()
        .insert_ledger_events(&[late.clone()])
        .await
        .expect("insert");
    assert!(seal::seal_due(h.store(), &key, policy, false)
        .await
        .expect("seal")
        .is_empty());
    assert_eq!(h.store().pending().await.expect("pending").0, 1);
    let more = seal::seal_due(h.store(), &key, policy, true)
        .await
        .expect("seal");
    assert_eq!((more[0].start, more[0].end), (10, 11));
    assert!(bad(&verify_all(&h, &key).await).is_empty());
}

/// Changing any audited field of one row fails its batch, naming it.
pub async fn an_altered_row_is_named<H: Harness, F: Future<Output = H>>(make: impl Fn() -> F) {
    for (column, value) in [
        ("cost", "'0.999'"),
        ("principal_id", "'agent-9'"),
        ("status", "500"),
        ("decision", "'deny'"),
        ("input_tokens", "NULL"),
    ] {
        let h = make().await;
        let (key, events, _) = sealed(&h).await;
        let victim = &events[5];
        h.tamper(&[format!(
            "UPDATE ledger_events SET {column} = {value} WHERE id = '{}'",
            victim.id
        )])
        .await;
        assert_eq!(
            bad(&verify_all(&h, &key).await),
            vec![(1, Some(victim.id.clone()))],
            "{column}"
        );
    }
}

/// A deleted row fails its batch, naming it.
pub async fn a_deleted_row_is_named<H: Harness, F: Future<Output = H>>(make: impl Fn() -> F) {
    let h = make().await;
    let (key, events, _) = sealed(&h).await;
    h.tamper(&[format!(
        "DELETE FROM ledger_events WHERE id = '{}'",
        events[2].id
    )])
    .await;
    assert_eq!(
        bad(&verify_all(&h, &key).await),
        vec![(0, Some(events[2].id.clone()))]
    );
    // And its position too.
    let h = make().await;
    let (key, events, _) = sealed(&h).await;
    h.tamper(&[
        format!("DELETE FROM ledger_events WHERE id = '{}'", events[6].id),
        "DELETE FROM merkle_leaves WHERE idx = 6".into(),
    ])
    .await;
    assert_eq!(
        bad(&verify_all(&h, &key).await),
        vec![(1, Some("leaf 6".into()))]
    );
}

/// A forged row put in the place of a sealed one, or given a position
/// beyond the last checkpoint, is found.
pub async fn a_forged_row_is_found<H: Harness, F: Future<Output = H>>(make: impl Fn() -> F) {
    let h = make().await;
    let (key, events, _) = sealed(&h).await;
    let mut forged = event(5);
    forged.id = uuid::Uuid::now_v7().to_string();
    forged.cost = Some(crate::money::parse_amount("0").expect("0"));
    h.store()
        .insert_ledger_events(&[forged.clone()])
        .await
        .expect("insert");
    h.tamper(&[
        format!("DELETE FROM ledger_events WHERE id = '{}'", events[5].id),
        format!("DELETE FROM ledger_pending WHERE id = '{}'", forged.id),
        format!(
            "UPDATE merkle_leaves SET event_id = '{}', ts_ms = {} WHERE idx = 5",
            forged.id, forged.ts_ms
        ),
    ])
    .await;
    assert_eq!(
        bad(&verify_all(&h, &key).await),
        vec![(1, Some(forged.id.clone()))]
    );

    let h = make().await;
    let (key, _, _) = sealed(&h).await;
    let mut extra = event(11);
    extra.id = uuid::Uuid::now_v7().to_string();
    h.store()
        .insert_ledger_events(&[extra.clone()])
        .await
        .expect("insert");
    h.tamper(&[
        format!("DELETE FROM ledger_pending WHERE id = '{}'", extra.id),
        format!(
            "INSERT INTO merkle_leaves (idx, event_id, ts_ms) VALUES (10, '{}', {})",
            extra.id, extra.ts_ms
        ),
    ])
    .await;
    let r = verify_range(h.store(), key.public_key(), i64::MIN, i64::MAX, &|_, _| {})
        .await
        .expect("verify");
    assert!(!r.ok);
    assert_eq!(r.failures[0].code, "unsealed_leaf");
    assert_eq!(r.failures[0].event_id.as_deref(), Some(extra.id.as_str()));
}

/// Two rows swapped in ledger order fail their batch at the first.
pub async fn swapped_rows_are_found<H: Harness, F: Future<Output = H>>(make: impl Fn() -> F) {
    let h = make().await;
    let (key, events, _) = sealed(&h).await;
    h.tamper(&[
        "UPDATE merkle_leaves SET idx = -1 WHERE idx = 1".into(),
        "UPDATE merkle_leaves SET idx = 1 WHERE idx = 2".into(),
        "UPDATE merkle_leaves SET idx = 2 WHERE idx = -1".into(),
    ])
    .await;
    assert_eq!(
        bad(&verify_all(&h, &key).await),
        vec![(0, Some(events[2].id.clone()))]
    );
}

/// Cutting the tail off (rows, positions, hashes and the last batch) is
/// invisible to the batches left, and caught by a checkpoint saved before.
pub async fn a_truncated_tail_fails_consistency<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let (key, events, batches) = sealed(&h).await;
    let saved = batches[2].checkpoint.clone();
    let ok = proof::consistency(
        h.store(),
        key.public_key(),
        From::Checkpoint(saved.clone()),
        None,
    )
    .await
    .expect("consistent");
    assert_eq!((ok.old_size, ok.new_size), (10, 10));
    // Only the rows: the last batch names them.
    h.tamper(&[format!(
        "DELETE FROM ledger_events WHERE id = '{}'",
        events[9].id
    )])
    .await;
    assert_eq!(
        bad(&verify_all(&h, &key).await),
        vec![(2, Some(events[9].id.clone()))]
    );
    // Everything of the last batch.
    let h = make().await;
    let (key, events, batches) = sealed(&h).await;
    let saved = batches[2].checkpoint.clone();
    let from_one = batches[0].end;
    h.tamper(&[
        format!(
            "DELETE FROM ledger_events WHERE id IN ('{}', '{}')",
            events[8].id, events[9].id
        ),
        "DELETE FROM merkle_leaves WHERE idx >= 8".into(),
        "DELETE FROM merkle_hashes WHERE idx >= 16".into(),
        "DELETE FROM merkle_batches WHERE number = 2".into(),
    ])
    .await;
    assert!(bad(&verify_all(&h, &key).await).is_empty());
    let err = proof::consistency(h.store(), key.public_key(), From::Checkpoint(saved), None)
        .await
        .expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    // The checkpoints left are still consistent with each other.
    proof::consistency(h.store(), key.public_key(), From::Size(from_one), None)
        .await
        .expect("consistent");
}

/// A rewritten history (one event changed and every hash recomputed and
/// re-signed with the same key) verifies on its own, and fails the
/// consistency check against a checkpoint saved before the rewrite.
pub async fn a_rewritten_history_fails_consistency<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let (key, _, batches) = sealed(&h).await;
    let saved = batches[1].checkpoint.clone();
    // The rewrite: every table of the log emptied, one row changed, and
    // everything sealed again (an attacker holding the key).
    h.tamper(&[
        "UPDATE ledger_events SET cost = '0' WHERE input_tokens = 3".into(),
        "DELETE FROM merkle_leaves".into(),
        "DELETE FROM merkle_hashes".into(),
        "DELETE FROM merkle_batches".into(),
        "INSERT INTO ledger_pending (id, ts_ms) SELECT id, ts_ms FROM ledger_events".into(),
    ])
    .await;
    let policy = Policy {
        max_events: 4,
        max_age: std::time::Duration::from_secs(60),
    };
    seal::seal_due(h.store(), &key, policy, true)
        .await
        .expect("reseal");
    assert!(bad(&verify_all(&h, &key).await).is_empty());
    let err = proof::consistency(h.store(), key.public_key(), From::Checkpoint(saved), None)
        .await
        .expect_err("rewritten");
    assert!(err.to_string().contains("rewritten"), "{err}");
}

/// A checkpoint whose signature was replaced fails its batch, and the
/// batch after it (whose previous checkpoint no longer verifies).
pub async fn a_replaced_signature_is_found<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let (key, _, batches) = sealed(&h).await;
    let other = LedgerKey::parse(&LedgerKey::generate()).expect("key");
    // The same text, signed by another key.
    let resign = |b: &Batch| {
        let head = b.checkpoint.split("\n\n").next().expect("body").to_string();
        let theirs = other
            .sign(b.end, tlog_tiles::Hash(b.root), jiff::Timestamp::now())
            .expect("sign");
        let sig = theirs.lines().last().expect("signature line").to_string();
        let forged = format!("{head}\n\n{sig}\n").replace('\'', "''");
        format!(
            "UPDATE merkle_batches SET checkpoint = '{forged}' WHERE number = {}",
            b.number
        )
    };
    h.tamper(&[resign(&batches[1])]).await;
    let reports = verify_all(&h, &key).await;
    let failing = codes(&reports);
    assert_eq!(failing, vec![(1, "signature"), (2, "previous_checkpoint")]);
    // Sealing refuses to extend a tree whose last checkpoint does not verify.
    h.tamper(&[resign(&batches[2])]).await;
    let mut e = event(30);
    e.id = uuid::Uuid::now_v7().to_string();
    h.store().insert_ledger_events(&[e]).await.expect("insert");
    let err = seal::seal_due(h.store(), &key, Policy::default(), true)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("does not verify"), "{err}");
}

/// An inclusion proof verifies offline with the public key, and fails
/// with another key or a changed event.
pub async fn inclusion_proofs_verify_offline<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let (key, events, _) = sealed(&h).await;
    for e in &events {
        let p = proof::prove(h.store(), key.public_key(), &e.id)
            .await
            .expect("prove");
        assert_eq!(p.tree_size, 10);
        proof::verify_inclusion(&p, key.public_key()).expect("verifies");
        let mut changed = p.clone();
        changed.event = changed.event.replace("\"status\":200", "\"status\":201");
        assert!(proof::verify_inclusion(&changed, key.public_key()).is_err());
    }
    let other = LedgerKey::parse(&LedgerKey::generate()).expect("key");
    let p = proof::prove(h.store(), key.public_key(), &events[3].id)
        .await
        .expect("prove");
    assert!(proof::verify_inclusion(&p, other.public_key()).is_err());
    let err = proof::prove(h.store(), key.public_key(), "no-such-event")
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), "not_found");
    let first = h
        .store()
        .batches(&BatchFilter {
            end: Some(4),
            ..Default::default()
        })
        .await
        .expect("batches");
    assert_eq!(first.len(), 1);
}

/// Several sealers at once (the gateway and `merkle seal`; several ledger
/// writers) while events keep arriving: every event gets exactly one leaf,
/// the leaves are contiguous, the batches chain, and everything verifies.
pub async fn concurrent_sealers_give_one_order<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = std::sync::Arc::new(make().await);
    let key = LedgerKey::parse(&LedgerKey::generate()).expect("key");
    let policy = Policy {
        max_events: 7,
        max_age: std::time::Duration::from_secs(3600),
    };
    let writer = {
        let h = h.clone();
        tokio::spawn(async move {
            for round in 0..20u64 {
                let events: Vec<LedgerEvent> = (0..5)
                    .map(|k| {
                        let mut e = event(round * 5 + k);
                        e.id = uuid::Uuid::now_v7().to_string();
                        e
                    })
                    .collect();
                h.store()
                    .insert_ledger_events(&events)
                    .await
                    .expect("insert");
                tokio::task::yield_now().await;
            }
        })
    };
    let sealers: Vec<_> = (0..3)
        .map(|_| {
            let (h, key) = (h.clone(), key.clone());
            tokio::spawn(async move {
                for _ in 0..15 {
                    seal::seal_due(h.store(), &key, policy, true)
                        .await
                        .expect("seal");
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    writer.await.expect("writer");
    for s in sealers {
        s.await.expect("sealer");
    }
    seal::seal_due(h.store(), &key, policy, true)
        .await
        .expect("seal");
    let batches = h
        .store()
        .batches(&BatchFilter::default())
        .await
        .expect("batches");
    let mut next = 0;
    for (n, b) in batches.iter().enumerate() {
        assert_eq!((b.number, b.start), (n as u64, next), "{batches:?}");
        next = b.end;
    }
    assert_eq!(next, 100, "every event has one leaf");
    let leaves = h.store().leaves(0, 100).await.expect("leaves");
    let ids: std::collections::HashSet<&str> = leaves.iter().map(|l| l.event_id.as_str()).collect();
    assert_eq!((leaves.len(), ids.len()), (100, 100));
    assert!(bad(&verify_all(&*h, &key).await).is_empty());
}

/// Stored hashes of a sealed tree changed (one of the frontier the next
/// batch extends): verification names `frontier` for the batch after,
/// and sealing refuses to extend the tree.
pub async fn a_changed_stored_hash_stops_sealing<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let (key, _, batches) = sealed(&h).await;
    // The tree of 8 leaves is one complete subtree: its stored hash is
    // the whole frontier batch 2 extends.
    let idx = crate::merkle::tree::frontier_indexes(batches[1].end);
    assert_eq!(idx.len(), 1);
    h.tamper(&[format!(
        "UPDATE merkle_hashes SET hash = (SELECT hash FROM merkle_hashes WHERE idx = 0) WHERE idx = {}",
        idx[0]
    )])
    .await;
    let reports = verify_all(&h, &key).await;
    let failing = codes(&reports);
    assert!(failing.contains(&(2, "frontier")), "{failing:?}");
    let mut e = event(40);
    e.id = uuid::Uuid::now_v7().to_string();
    h.store().insert_ledger_events(&[e]).await.expect("insert");
    let err = seal::seal_due(h.store(), &key, Policy::default(), true)
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("does not match the last checkpoint"),
        "{err}"
    );
    assert_eq!(
        h.store().pending().await.expect("pending").0,
        1,
        "the event still waits"
    );
}

/// A batch row whose recorded range or root no longer matches its signed
/// checkpoint is named, whatever was changed; a range that ends before
/// it starts is a finding, not a crash.
pub async fn a_changed_batch_row_is_found<H: Harness, F: Future<Output = H>>(make: impl Fn() -> F) {
    for change in [
        "root = (SELECT root FROM merkle_batches WHERE number = 0)",
        "end_index = 9",
        "start_index = 9",
    ] {
        let h = make().await;
        let (key, _, _) = sealed(&h).await;
        h.tamper(&[format!(
            "UPDATE merkle_batches SET {change} WHERE number = 1"
        )])
        .await;
        let reports = verify_all(&h, &key).await;
        let codes: Vec<&str> = codes(&reports)
            .into_iter()
            .filter(|(n, _)| *n == 1)
            .map(|(_, c)| c)
            .collect();
        assert!(
            codes.contains(&"checkpoint_mismatch"),
            "{change}: {codes:?}"
        );
    }
    // Two rows moved together so that they still chain: the batch after
    // finds a previous checkpoint that signs another size.
    let h = make().await;
    let (key, _, _) = sealed(&h).await;
    h.tamper(&[
        "UPDATE merkle_batches SET end_index = 9 WHERE number = 1".into(),
        "UPDATE merkle_batches SET start_index = 9 WHERE number = 2".into(),
    ])
    .await;
    let reports = verify_all(&h, &key).await;
    let codes: Vec<&str> = codes(&reports)
        .into_iter()
        .filter(|(n, _)| *n == 2)
        .map(|(_, c)| c)
        .collect();
    assert!(codes.contains(&"previous_checkpoint"), "{codes:?}");
}

/// A row changed together with its stored leaf hash (an attacker who
/// rewrites the hash tables too): no single leaf can be named, and the
/// batch's root, recomputed, does not match its signed one.
pub async fn a_row_rewritten_with_its_hash_fails_the_root<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let (key, events, _) = sealed(&h).await;
    let mut changed = events[6].clone();
    changed.status = Some(500);
    let leaf = crate::merkle::leaf::leaf_hash(&changed);
    h.tamper(&[
        format!(
            "UPDATE ledger_events SET status = 500 WHERE id = '{}'",
            changed.id
        ),
        format!(
            "UPDATE merkle_hashes SET hash = {} WHERE idx = {}",
            h.blob(&leaf.0),
            tlog_tiles::stored_hash_index(0, 6)
        ),
    ])
    .await;
    let reports = verify_all(&h, &key).await;
    let failing = codes(&reports);
    assert_eq!(failing, vec![(1, "root_mismatch")]);
}

/// Two events written (the first the one a case tampers with), the
/// tampering `sql` applied before anything is sealed (`{first}` stands for
/// the first event's id), then everything sealed: the harness, its key, the
/// two events and the batches sealed.
async fn tampered_before_sealing<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
    sql: &[&str],
) -> (H, LedgerKey, [LedgerEvent; 2], Vec<Batch>) {
    let h = make().await;
    let key = LedgerKey::parse(&LedgerKey::generate()).expect("key");
    let events = [event(1), event(2)];
    h.store()
        .insert_ledger_events(&events)
        .await
        .expect("insert");
    let sql: Vec<String> = sql
        .iter()
        .map(|q| q.replace("{first}", &events[0].id))
        .collect();
    h.tamper(&sql).await;
    let sealed = seal::seal_due(h.store(), &key, Policy::default(), true)
        .await
        .expect("seal");
    (h, key, events, sealed)
}

/// A row deleted before its event was sealed is still sealed, from the
/// leaf its writer queued, and verification finds the row missing: a
/// deletion inside the sealing window is not silent.
pub async fn a_row_deleted_before_its_seal_is_found<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let (h, key, [gone, _], sealed) =
        tampered_before_sealing(make, &["DELETE FROM ledger_events WHERE id = '{first}'"]).await;
    assert_eq!(
        sealed.iter().map(|b| (b.start, b.end)).collect::<Vec<_>>(),
        vec![(0, 2)]
    );
    assert_eq!(h.store().pending().await.expect("pending"), (0, None));
    let reports = verify_all(&h, &key).await;
    assert_eq!(codes(&reports), vec![(0, "missing_event")]);
    assert_eq!(bad(&reports), vec![(0, Some(gone.id.clone()))]);
}

/// A row changed before its event was sealed is sealed as it was
/// written, and verification finds the change.
pub async fn a_row_changed_before_its_seal_is_found<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let (h, key, [changed, _], _) = tampered_before_sealing(
        make,
        &["UPDATE ledger_events SET cost = '0' WHERE id = '{first}'"],
    )
    .await;
    assert_eq!(
        bad(&verify_all(&h, &key).await),
        vec![(0, Some(changed.id.clone()))]
    );
}

/// An event queued without a leaf (before leaves were queued, or by hand)
/// is sealed from its row; one whose row is gone as well leaves the queue,
/// is never in the tree, and holds up nothing behind it.
pub async fn a_queued_event_without_leaf_or_row_leaves_the_queue<
    H: Harness,
    F: Future<Output = H>,
>(
    make: impl Fn() -> F,
) {
    let (h, key, [gone, kept], sealed) = tampered_before_sealing(
        make,
        &[
            "UPDATE ledger_pending SET leaf = NULL",
            "DELETE FROM ledger_events WHERE id = '{first}'",
        ],
    )
    .await;
    assert_eq!(
        sealed.iter().map(|b| (b.start, b.end)).collect::<Vec<_>>(),
        vec![(0, 1)]
    );
    assert_eq!(
        h.store().leaf_index(&kept.id).await.expect("index"),
        Some(0)
    );
    assert_eq!(h.store().leaf_index(&gone.id).await.expect("index"), None);
    assert_eq!(h.store().pending().await.expect("pending"), (0, None));
    assert!(bad(&verify_all(&h, &key).await).is_empty());
}

/// Instantiates every case of the Merkle suite for one store.
#[macro_export]
macro_rules! merkle_conformance {
    ($make:expr) => {
        $crate::conformance_cases!(merkle, $make;
            an_honest_ledger_verifies,
            an_altered_row_is_named,
            a_deleted_row_is_named,
            a_forged_row_is_found,
            swapped_rows_are_found,
            a_truncated_tail_fails_consistency,
            a_rewritten_history_fails_consistency,
            a_replaced_signature_is_found,
            inclusion_proofs_verify_offline,
            concurrent_sealers_give_one_order,
            a_changed_stored_hash_stops_sealing,
            a_changed_batch_row_is_found,
            a_row_rewritten_with_its_hash_fails_the_root,
            a_row_deleted_before_its_seal_is_found,
            a_row_changed_before_its_seal_is_found,
            a_queued_event_without_leaf_or_row_leaves_the_queue,
        );
    };
}
