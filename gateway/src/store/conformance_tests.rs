//! The store conformance suite run against [`SqliteStore`], each case over
//! a fresh database file in a temporary directory.

use super::{SqliteStore, Store};

struct Sqlite {
    _dir: tempfile::TempDir,
    store: SqliteStore,
}

impl crate::conformance::store::Harness for Sqlite {
    fn store(&self) -> &dyn Store {
        &self.store
    }
}

async fn sqlite() -> Sqlite {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("caracal.db"))
        .await
        .expect("open");
    Sqlite { _dir: dir, store }
}

crate::store_conformance!(sqlite);

impl crate::conformance::merkle::Harness for Sqlite {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    fn tamper(&self, sql: &[String]) -> crate::budget::counters::BoxFuture<()> {
        let (pool, sql) = (self.store.pool().clone(), sql.to_vec());
        Box::pin(async move {
            for s in sql {
                sqlx::query(&s).execute(&pool).await.expect("tamper");
            }
        })
    }

    fn blob(&self, bytes: &[u8]) -> String {
        format!("X'{}'", hex::encode(bytes))
    }
}

mod merkle {
    use super::sqlite;
    crate::merkle_conformance!(sqlite);
}

mod recovery {
    use super::sqlite;
    crate::recovery_conformance!(sqlite);
}

/// A ledger written before the spend aggregates existed is summed into
/// them when the store opens (the migration asks for it once).
#[tokio::test]
async fn the_ledger_before_the_aggregates_is_summed_on_open() {
    use crate::store::{LedgerStore, RecoveryStore};
    let h = sqlite().await;
    let mut e = crate::ledger::LedgerEvent::new(
        crate::ledger::EventKind::Call,
        crate::ledger::Mode::BaseUrl,
        crate::ledger::Decision::Allow,
        crate::ledger::EventCode::OK,
    );
    e.principal_id = Some("agent".into());
    e.cost = Some(crate::money::parse_amount("0.125").expect("amount"));
    e.currency = Some("USD".into());
    h.store.insert_ledger_events(&[e]).await.expect("insert");
    // As the migration leaves it: no aggregates, a backfill asked for.
    for sql in [
        "DELETE FROM spend_minutes",
        "INSERT INTO replay_state (id, owner, status, complete, position, target, events, calls, \
         unverified, started_at, updated_at) VALUES (1, 'migration', 'backfill', 0, 0, 0, 0, 0, 0, '', '')",
    ] {
        sqlx::query(sql).execute(h.store.pool()).await.expect(sql);
    }
    h.store.close().await;
    let store = SqliteStore::open(&h._dir.path().join("caracal.db"))
        .await
        .expect("reopen");
    let rows = store.spend_minutes().await.expect("minutes");
    assert_eq!(rows, store.spend_from_ledger().await.expect("ledger"));
    assert_eq!(rows.len(), 1);
    assert_eq!(store.replay_state().await.expect("state"), None);
}
