//! The PostgreSQL store: the system of record of a distributed
//! deployment, with the same model as the embedded one (the tables of
//! `migrations-pg/`, embedded in the binary). One file per concern, each
//! implementing its concern's trait; rows are decoded by the same
//! functions as SQLite's (see `row.rs`).
//!
//! Changes to the enforcement state are serialised by the state row: a
//! change's first statement bumps the version, which holds the row's lock
//! until the change commits or rolls back (see [`PgStore::begin_change`]).

mod allowlists;
#[cfg(test)]
pub(crate) mod conformance_tests;
mod dead_letters;
mod ledger;
mod mandates;
mod merkle;
mod policies;
mod pricebook;
mod principals;
mod providers;
mod recovery;
mod revocation;
mod spend;
#[cfg(test)]
mod tests;

pub use dead_letters::DeadLetter;
pub use spend::{minute_of, MINUTE_MS};

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use super::{StateRows, StateStore, StoreError};

/// A handle on a PostgreSQL database holding the store (cheap to clone).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The months (their first millisecond) whose ledger partition is
    /// known to exist.
    months: Arc<Mutex<BTreeSet<i64>>>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-pg");

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL). Does not
    /// migrate: see [`Self::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self {
            pool,
            months: Arc::default(),
        })
    }

    /// Applies the embedded migrations not yet applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The version of the newest migration this build carries.
    pub fn latest_migration() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The version of the latest migration applied; None before the first.
    pub async fn migration_version(&self) -> Result<Option<i64>, StoreError> {
        let migrated: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        if !migrated {
            return Ok(None);
        }
        Ok(
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Drops every table of the store's schema (the ledger's partitions
    /// and the migration history with them) and migrates afresh: an empty
    /// store, at a state version above any it had before (so a replica
    /// never takes the empty state for an old one, nor an old one for it).
    pub async fn reset(&self) -> Result<(), StoreError> {
        // Not migrated, or no state row: nothing to stay above.
        let before = self.state_version().await.ok();
        let mut tx = self.pool.begin().await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(c.relname) FROM pg_class c
             WHERE c.relnamespace = current_schema()::regnamespace
               AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
        )
        .fetch_all(&mut *tx)
        .await?;
        if !tables.is_empty() {
            sqlx::query(&format!("DROP TABLE {} CASCADE", tables.join(", ")))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.known_months().clear();
        self.migrate().await?;
        if let Some(v) = before {
            sqlx::query("UPDATE state SET version = $1 + 1 WHERE id = 1")
                .bind(v)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The standbys streaming from this server: name, state and replay
    /// lag in seconds (unknown while idle).
    pub async fn standbys(&self) -> Result<Vec<(String, String, Option<f64>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT application_name, state, EXTRACT(EPOCH FROM replay_lag)::float8
             FROM pg_stat_replication ORDER BY application_name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many events the ledger holds.
    pub async fn ledger_rows(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM ledger_events")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Closes the pool: every later call fails.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn known_months(&self) -> std::sync::MutexGuard<'_, BTreeSet<i64>> {
        self.months.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Begins a transaction that changes the enforcement state. Its first
    /// statement bumps the state version, which locks the state row until
    /// the transaction ends: changes run one at a time, as under SQLite's
    /// write lock, so versions are distinct and consecutive. A change
    /// waiting for the lock reads (READ COMMITTED, a snapshot per
    /// statement) everything the change before it committed, so a
    /// read-modify-write (the next policy version, a key sync, a
    /// revocation) never loses an update.
    async fn begin_change(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE state SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

#[async_trait]
impl StateStore for PgStore {
    async fn state_version(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT version FROM state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn load_state(&self) -> Result<StateRows, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One snapshot for every read below (READ COMMITTED would take one
        // per statement, and could mix two versions of the state).
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let version = sqlx::query_scalar("SELECT version FROM state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let principals = principals::all_with_hashes(&mut tx).await?;
        let providers = providers::all(&mut tx).await?;
        let allowlists = allowlists::all(&mut tx).await?;
        let policies = policies::latest(&mut tx).await?;
        let signing_keys = mandates::signing_keys(&mut tx).await?;
        let revoked = mandates::revoked(&mut tx).await?;
        let now = jiff::Timestamp::now().as_second();
        let (mandates, rejected) = mandates::current(&mut tx, now).await?;
        let prices = pricebook::all(&mut tx).await?;
        tx.commit().await?;
        Ok(StateRows {
            version,
            principals,
            providers,
            allowlists,
            policies,
            signing_keys,
            revoked,
            mandates,
            prices,
            rejected,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
