//! The store conformance suite run against [`PgStore`], each case over a
//! database of its own on the server at `CARACAL_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped when
//! the case ends. An unreachable server fails the cases: it never skips
//! them.

use sqlx::{Connection, PgConnection};

use super::PgStore;
use crate::store::Store;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Test databases are named `caracal_t_<uuid v7>`; one left behind by a
/// run that did not drop it is dropped after this long.
const STALE_SECS: u64 = 3600;

/// A fresh, migrated database of its own, dropped with the harness.
pub(crate) struct Postgres {
    pub store: PgStore,
    pub url: String,
    admin_url: String,
    name: String,
}

impl crate::conformance::store::Harness for Postgres {
    fn store(&self) -> &dyn Store {
        &self.store
    }
}

pub(crate) async fn postgres() -> Postgres {
    let admin_url =
        std::env::var("CARACAL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {admin_url}: {e}. The PostgreSQL store tests need \
             a server where this user may create databases; set CARACAL_TEST_POSTGRES_URL"
        )
    });
    drop_stale(&mut admin).await;
    let name = format!("caracal_t_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("creating the test database {name} at {admin_url}: {e}"));
    let _ = admin.close().await;
    let url = with_database(&admin_url, &name);
    let store = PgStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    Postgres {
        store,
        url,
        admin_url,
        name,
    }
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// Drops the test databases older than [`STALE_SECS`] (best effort).
async fn drop_stale(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'caracal\\_t\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    for name in names {
        let made = uuid::Uuid::parse_str(name.trim_start_matches("caracal_t_"))
            .ok()
            .and_then(|id| id.get_timestamp())
            .map(|t| t.to_unix().0);
        if made.is_some_and(|made| made + STALE_SECS < now) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut *admin)
                .await;
        }
    }
}

impl Drop for Postgres {
    /// Drops the database (best effort) on a thread of its own: `drop`
    /// cannot await, and the test's runtime may be shutting down.
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

crate::store_conformance!(postgres);

#[test]
fn with_database_replaces_only_the_database() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "d"),
        "postgres://u@h:5432/d"
    );
    assert_eq!(
        with_database("postgres://u@h/postgres?sslmode=disable", "d"),
        "postgres://u@h/d?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "d"),
        "postgres://h:5432/d"
    );
}

impl crate::conformance::merkle::Harness for Postgres {
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
        format!("'\\x{}'::bytea", hex::encode(bytes))
    }
}

mod merkle {
    use super::postgres;
    crate::merkle_conformance!(postgres);
}

mod recovery {
    use super::postgres;
    crate::recovery_conformance!(postgres);
}
