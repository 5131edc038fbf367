//! The system of record. The CLI writes it; the gateway reads its
//! enforcement state into snapshots and appends ledger events. Every change
//! to enforcement state bumps the state version in the same transaction.
//!
//! The seam is [`Store`]: one trait per concern, each in its concern's file
//! with its SQLite implementation, and every implementation passes the
//! conformance suite in `crate::conformance::store`. [`SqliteStore`] is the
//! embedded one: one SQLite file per workspace, reached through sqlx.
//! [`PgStore`] (in `pg/`, one file per concern) is the PostgreSQL one of a
//! distributed deployment, with the same model. Both decode rows with the
//! same functions (`row.rs`).

mod allowlists;
#[cfg(test)]
mod conformance_tests;
mod ledger;
mod mandates;
mod merkle;
pub(crate) mod pg;
mod policies;
mod pricebook;
mod principals;
mod providers;
mod recovery;
mod revocation;
mod row;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use allowlists::AllowlistStore;
pub use ledger::{LedgerFilter, LedgerStore, Spend};
pub use mandates::{
    MandateFilter, MandateRecord, MandateState, MandateStore, SigningKeyRow, KEEP_EXPIRED_SECS,
};
pub use merkle::{
    Batch, BatchFilter, Digest, Due, Leaf, MerkleStore, PendingLeaf, SealFn, Sealed, Sealing,
};
pub use pg::{minute_of, DeadLetter, PgStore, MINUTE_MS};
pub use policies::{Change, PolicyStore};
pub use pricebook::PricebookStore;
pub use principals::{NewPrincipal, PrincipalStore};
pub use providers::ProviderStore;
pub use recovery::{
    digest as spend_digest, totals, MinuteSpend, RecoveryStore, ReplayState, SnapshotInfo, Tally,
};
pub use revocation::{Revocation, RevocationStore, Revoked, Selector};

/// The store's traits, for callers that hold a `dyn Store`:
/// `use caracal_gateway::store::prelude::*;`.
pub mod prelude {
    pub use super::{
        AllowlistStore, LedgerStore, MandateStore, MerkleStore, PolicyStore, PricebookStore,
        PrincipalStore, ProviderStore, RecoveryStore, RevocationStore, StateStore, Store,
    };
}

use crate::model::{AllowlistEntry, Principal, ProviderDef};
use crate::policy::Policy;

/// Store failures. Messages name the object concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("cannot seal the ledger: {0}")]
    Seal(String),
    /// The derived state is being rebuilt and cannot be read yet.
    #[error("{0}")]
    Incomplete(String),
}

/// Everything the snapshot is built from, read in one transaction. Its
/// JSON form (token hashes in hex) is what the distributed deployment
/// publishes to its replicas.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StateRows {
    pub version: i64,
    /// Principals with their token hashes.
    #[serde(with = "hex_hashes")]
    pub principals: Vec<(Principal, Vec<u8>)>,
    pub providers: Vec<ProviderDef>,
    pub allowlists: Vec<AllowlistEntry>,
    /// The latest version of every policy.
    pub policies: Vec<Policy>,
    /// The public mandate signing keys (active and retired).
    pub signing_keys: Vec<SigningKeyRow>,
    /// The jtis of revoked mandates.
    pub revoked: Vec<String>,
    /// Mandates not expired, or expired within the last day.
    pub mandates: Vec<MandateRecord>,
    /// Stored prices (the pricebook lays them over the template defaults).
    pub prices: Vec<crate::pricing::PriceRow>,
    /// Rows that could not be read and were left out (they can only deny more).
    pub rejected: Vec<String>,
}

/// Token hashes as hex strings in the JSON form of [`StateRows`].
mod hex_hashes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::model::Principal;

    pub fn serialize<S: Serializer>(
        rows: &[(Principal, Vec<u8>)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let hexed: Vec<(&Principal, String)> =
            rows.iter().map(|(p, h)| (p, hex::encode(h))).collect();
        hexed.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(Principal, Vec<u8>)>, D::Error> {
        Vec::<(Principal, String)>::deserialize(d)?
            .into_iter()
            .map(|(p, h)| {
                hex::decode(&h)
                    .map(|h| (p, h))
                    .map_err(|e| serde::de::Error::custom(format!("token hash: {e}")))
            })
            .collect()
    }
}

/// The enforcement state as a whole: its version and a consistent read.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The enforcement state's version; changes whenever anything the
    /// snapshot holds changes.
    async fn state_version(&self) -> Result<i64, StoreError>;

    /// Reads the whole enforcement state consistently.
    async fn load_state(&self) -> Result<StateRows, StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The system of record: every concern's trait. Implemented by
/// [`SqliteStore`] and [`PgStore`]; every implementation passes the conformance suite in
/// `crate::conformance::store`. Callers hold an `Arc<dyn Store>` and bring
/// the methods into scope with [`prelude`].
pub trait Store:
    StateStore
    + PrincipalStore
    + ProviderStore
    + AllowlistStore
    + PolicyStore
    + MandateStore
    + RevocationStore
    + PricebookStore
    + LedgerStore
    + MerkleStore
    + RecoveryStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: StateStore
        + PrincipalStore
        + ProviderStore
        + AllowlistStore
        + PolicyStore
        + MandateStore
        + RevocationStore
        + PricebookStore
        + LedgerStore
        + MerkleStore
        + RecoveryStore
        + Send
        + Sync
        + 'static
{
}

/// The embedded store: a handle on the workspace's SQLite file (cheap to
/// clone).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The ledger's own connection, for the writer's inserts
    /// ([`LedgerStore::insert_ledger_events`]) and the sealer's batches
    /// ([`MerkleStore::seal_pending`]), opened on first use and kept, with
    /// a page cache that holds the pages batches write into: each
    /// principal's last leaf of the `(principal_id, ts_ms)` index and of
    /// its spend aggregates, for a thousand principals and more (the
    /// default 2 MiB holds about 500 pages, and every miss is a read per
    /// row). SQLite empties a connection's cache when another connection
    /// has committed since its last transaction, so the sealer, which
    /// commits every batch, shares this one. The other connections keep
    /// the default cache.
    ledger: SqlitePool,
}

/// The ledger writer's page cache (`PRAGMA cache_size`; negative: KiB).
const LEDGER_CACHE: &str = "-16384";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    /// WAL mode lets the CLI and a running gateway use it at once.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Temporary tables and indexes (sorts, IN lists) in memory, not
            // in a file created and unlinked for each statement that needs
            // one: they hold nothing that must survive the statement.
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let ledger = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options.pragma("cache_size", LEDGER_CACHE));
        let store = Self { pool, ledger };
        store.backfill_spend().await?;
        Ok(store)
    }

    /// Closes the pools: every later call fails.
    pub async fn close(&self) {
        self.pool.close().await;
        self.ledger.close().await;
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn state_version(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT version FROM state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn load_state(&self) -> Result<StateRows, StoreError> {
        let mut tx = self.pool.begin().await?;
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

impl SqliteStore {
    /// Begins a transaction that changes the enforcement state. Its first
    /// statement bumps the state version, which takes SQLite's write lock
    /// at once: a deferred transaction that read first could not upgrade
    /// while the ledger writer holds the lock, and would fail with BUSY
    /// instead of waiting.
    async fn begin_change(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE state SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `items` cut for multi-row statements of at most `max` rows (a power of
/// two): as many slices of `max` as fit, then the rest in decreasing powers
/// of two (`max` 128, 300 items: 128, 128, 32, 8, 4). A statement's text
/// depends on its row count and each text is prepared once per connection,
/// so batches of any size use at most log2(`max`) + 1 texts, all found in
/// the connection's statement cache, instead of one new text (and a
/// prepare, and an eviction) for each size a batch happens to have.
fn statement_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    assert!(max.is_power_of_two(), "statement chunks of {max} rows");
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= max {
            max
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod statement_chunk_tests {
    use super::statement_chunks;

    fn sizes(n: usize, max: usize) -> Vec<usize> {
        let items: Vec<usize> = (0..n).collect();
        let chunks: Vec<&[usize]> = statement_chunks(&items, max).collect();
        let joined: Vec<usize> = chunks.concat();
        assert_eq!(joined, items, "every item once, in order");
        chunks.iter().map(|c| c.len()).collect()
    }

    #[test]
    fn full_chunks_then_powers_of_two() {
        assert_eq!(sizes(0, 128), Vec::<usize>::new());
        assert_eq!(sizes(1, 128), vec![1]);
        assert_eq!(sizes(128, 128), vec![128]);
        assert_eq!(sizes(300, 128), vec![128, 128, 32, 8, 4]);
        assert_eq!(sizes(127, 128), vec![64, 32, 16, 8, 4, 2, 1]);
        assert_eq!(sizes(129, 128), vec![128, 1]);
    }

    #[test]
    fn few_shapes_whatever_the_sizes() {
        let mut shapes = std::collections::BTreeSet::new();
        for n in 0..2000 {
            shapes.extend(sizes(n, 128));
        }
        assert_eq!(shapes.len(), 8, "{shapes:?}");
    }
}
