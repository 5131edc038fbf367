//! What the conformance suite cannot see of the PostgreSQL store: the
//! ledger's partitions, the serialisation of concurrent changes, reset.

use super::conformance_tests::postgres;
use super::ledger::Month;
use super::PgStore;
use crate::ledger::{Decision, EventCode, EventKind, LedgerEvent, Mode};
use crate::model::{Action, PrincipalKind};
use crate::policy::PolicyDefinition;
use crate::store::prelude::*;
use crate::store::{Change, LedgerFilter, NewPrincipal};

/// 2026-01-31T23:59:59.999Z, the last millisecond of January.
const END_OF_JANUARY: i64 = 1_769_903_999_999;
const DAY_MS: i64 = 86_400_000;

fn call(ts_ms: i64) -> LedgerEvent {
    let mut e = LedgerEvent::new(
        EventKind::Call,
        Mode::BaseUrl,
        Decision::Allow,
        EventCode::OK,
    );
    e.principal_id = Some("agent".into());
    e.ts_ms = ts_ms;
    e
}

/// The ledger's partitions, by name.
async fn partitions(store: &PgStore) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'ledger_events'::regclass ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("partitions")
}

async fn rows_in(store: &PgStore, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .expect("count")
}

#[test]
fn months_are_utc_calendar_months() {
    let jan = Month::of(END_OF_JANUARY).expect("January");
    assert_eq!(jan.table(), "ledger_events_y2026m01");
    assert_eq!(jan.end_ms, END_OF_JANUARY + 1);
    let feb = Month::of(END_OF_JANUARY + 1).expect("February");
    assert_eq!(feb.table(), "ledger_events_y2026m02");
    assert_eq!(feb.start_ms, jan.end_ms);
    assert_eq!(feb.end_ms - feb.start_ms, 28 * DAY_MS);
    assert_eq!(
        Month::of(0).expect("the epoch").table(),
        "ledger_events_y1970m01"
    );
    assert_eq!(Month::of(-1), None, "before 1970: the DEFAULT partition");
    assert_eq!(Month::of(i64::MAX), None);
}

/// A batch over three months makes their partitions and puts each row in
/// its month; inserting it again (through another handle, which has not
/// seen the partitions) adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_three_months_makes_partitions_and_stays_idempotent() {
    let h = postgres().await;
    let s = &h.store;
    let batch: Vec<LedgerEvent> = (0..300)
        .map(|n| call(END_OF_JANUARY - 10 * DAY_MS + n * DAY_MS / 5))
        .collect();
    s.insert_ledger_events(&batch).await.expect("insert");
    assert_eq!(
        partitions(s).await,
        [
            "ledger_events_default",
            "ledger_events_y2026m01",
            "ledger_events_y2026m02",
            "ledger_events_y2026m03",
        ]
    );
    assert_eq!(s.ledger_rows().await.expect("rows"), 300);
    assert_eq!(rows_in(s, "ledger_events_y2026m01").await, 51);
    assert_eq!(rows_in(s, "ledger_events_y2026m02").await, 140);
    assert_eq!(rows_in(s, "ledger_events_y2026m03").await, 109);
    assert_eq!(rows_in(s, "ledger_events_default").await, 0);

    let other = PgStore::connect(&h.url).await.expect("connect");
    let mut retried = batch.clone();
    retried[7].ts_ms += 40 * DAY_MS; // the same id in another month
    retried.push(retried[3].clone()); // and twice in one batch
    other.insert_ledger_events(&retried).await.expect("retry");
    assert_eq!(other.ledger_rows().await.expect("rows"), 300);
    assert_eq!(
        s.query_ledger(&LedgerFilter::default())
            .await
            .expect("query"),
        {
            let mut sorted = batch;
            sorted.sort_by(|a, b| (a.ts_ms, &a.id).cmp(&(b.ts_ms, &b.id)));
            sorted
        }
    );
}

/// Rows written for a month without its partition land in DEFAULT; making
/// the partition later moves them into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_partition_takes_its_rows_from_default() {
    let h = postgres().await;
    let s = &h.store;
    let early = call(END_OF_JANUARY);
    let mut tx = s.pool().begin().await.expect("begin");
    super::ledger::insert_events(&mut tx, std::slice::from_ref(&early))
        .await
        .expect("insert without a partition");
    tx.commit().await.expect("commit");
    assert_eq!(rows_in(s, "ledger_events_default").await, 1);

    let late = call(END_OF_JANUARY - DAY_MS);
    s.insert_ledger_events(&[late.clone(), call(-5)])
        .await
        .expect("insert");
    assert_eq!(rows_in(s, "ledger_events_y2026m01").await, 2);
    assert_eq!(
        rows_in(s, "ledger_events_default").await,
        1,
        "only the row before 1970"
    );
    let got = s
        .query_ledger(&LedgerFilter {
            start_ms: Some(0),
            ..Default::default()
        })
        .await
        .expect("query");
    assert_eq!(got, vec![late, early]);
}

async fn version(conn: &mut sqlx::PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM state WHERE id = 1")
        .fetch_one(conn)
        .await
}

/// Two changes begun at once: the second waits for the first's lock on
/// the state row, and both commit with distinct, consecutive versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_commit_with_distinct_versions() {
    let h = postgres().await;
    let s = h.store.clone();
    let start = s.state_version().await.expect("version");
    let mut first = s.begin_change().await.expect("first");
    let v1 = version(&mut first).await.expect("v1");
    let second = tokio::spawn({
        let s = s.clone();
        async move {
            let mut tx = s.begin_change().await.expect("second");
            let v = version(&mut tx).await.expect("v2");
            tx.commit().await.expect("commit second");
            v
        }
    });
    // The second change is blocked on the state row while the first is open.
    let blocked = tokio::time::timeout(std::time::Duration::from_millis(300), async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(s.pool())
            .await
            .expect("activity");
            if waiting > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        blocked.is_ok(),
        "the second change does not wait for the first"
    );
    assert!(!second.is_finished());
    first.commit().await.expect("commit first");
    let v2 = second.await.expect("second change");
    assert_eq!((v1, v2), (start + 1, start + 2));
    assert_eq!(s.state_version().await.expect("version"), start + 2);
}

/// Concurrent read-modify-write changes lose nothing: every change of a
/// policy gets its own version, and the state version counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_policy_changes_lose_no_update() {
    let h = postgres().await;
    let s = h.store.clone();
    let (bot, _) = s
        .register_principal(NewPrincipal {
            kind: PrincipalKind::Agent,
            name: "bot".into(),
            email: "bot@example.com".into(),
        })
        .await
        .expect("register");
    let definition = PolicyDefinition {
        scope: crate::authority::Scope::new(vec!["chat.*".into()], vec![Action::Create]),
        max_validity_secs: 3600,
        allow_delegation: false,
        max_delegation_depth: 0,
        budget: None,
        rate: None,
        max_in_flight: None,
    };
    let change = |reason: &str| Change {
        changed_by: "ops".into(),
        reason: reason.into(),
    };
    let policy = s
        .create_policy(&bot.id, &definition, &change("start"))
        .await
        .expect("create");
    let start = s.state_version().await.expect("version");
    let changes: Vec<_> = (0..12)
        .map(|n| {
            let (s, id, reason) = (s.clone(), policy.id.clone(), change(&format!("c{n}")));
            tokio::spawn(async move { s.change_policy(&id, None, n % 2 == 0, &reason).await })
        })
        .collect();
    for c in changes {
        c.await.expect("task").expect("change");
    }
    let history = s.policy_history(&policy.id).await.expect("history");
    let versions: Vec<u32> = history.iter().map(|p| p.version).collect();
    assert_eq!(versions, (1..=13).collect::<Vec<_>>());
    assert_eq!(s.state_version().await.expect("version"), start + 12);
}

/// Reset empties the store and leaves it migrated, its state version
/// still moving forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_drops_everything_and_migrates_again() {
    let h = postgres().await;
    let s = &h.store;
    assert_eq!(
        s.migration_version().await.expect("migration"),
        Some(PgStore::latest_migration())
    );
    s.register_principal(NewPrincipal {
        kind: PrincipalKind::User,
        name: "boss".into(),
        email: "boss@example.com".into(),
    })
    .await
    .expect("register");
    s.insert_ledger_events(&[call(END_OF_JANUARY)])
        .await
        .expect("insert");
    let before = s.state_version().await.expect("version");
    s.reset().await.expect("reset");
    assert_eq!(
        s.migration_version().await.expect("migration"),
        Some(PgStore::latest_migration())
    );
    // Above every version before: replicas never take it for an old state.
    assert_eq!(s.state_version().await.expect("version"), before + 1);
    assert!(s.list_principals().await.expect("list").is_empty());
    assert_eq!(s.ledger_rows().await.expect("rows"), 0);
    assert_eq!(partitions(s).await, ["ledger_events_default"]);
    // The partition cache was emptied with the tables.
    s.insert_ledger_events(&[call(END_OF_JANUARY)])
        .await
        .expect("insert after reset");
    assert_eq!(rows_in(s, "ledger_events_y2026m01").await, 1);
}
