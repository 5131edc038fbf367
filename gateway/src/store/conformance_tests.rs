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
