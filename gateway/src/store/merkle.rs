//! The ledger's Merkle log in the store: which events are not sealed yet,
//! the order sealing gave the others (their leaf index), the tree's stored
//! hashes, and the signed batches. What the hashes mean and how a batch is
//! sealed and verified is `crate::merkle`; this is where they are kept.
//!
//! Every event inserted into `ledger_events` is queued in `ledger_pending`
//! in the transaction that inserts it, with its leaf hash, computed by the
//! writer from the event it inserts (an event queued without one is hashed
//! from its row when sealed). Sealing takes the
//! oldest pending events under the store's one sealing lock (SQLite's
//! write lock; a PostgreSQL advisory lock, so one sealer at a time among
//! all ledger writers), gives them the next leaf indexes, and records
//! their leaves' stored hashes and the signed batch in the same
//! transaction: the order is total, whoever seals.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::row::Columns;
use super::{SqliteStore, StoreError};
use crate::ledger::LedgerEvent;

/// A hash as stored.
pub type Digest = [u8; 32];

/// A sealed batch: leaves `start..end` of the tree, and the signed
/// checkpoint of the tree of `end` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// 0, 1, 2, … in the order batches were sealed.
    pub number: u64,
    /// A UUIDv7, what `merkle verify-batch --batch-id` takes.
    pub id: String,
    pub start: u64,
    pub end: u64,
    #[serde(serialize_with = "hex")]
    pub root: Digest,
    /// The signed note (C2SP tlog-checkpoint).
    pub checkpoint: String,
    /// The earliest and latest event times in the batch (ms).
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
    /// RFC 3339.
    pub sealed_at: String,
}

fn hex<S: serde::Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(d))
}

/// What sealing is given, read under the sealing lock.
#[derive(Debug)]
pub struct Sealing {
    /// The last batch sealed (None before the first).
    pub last: Option<Batch>,
    /// The tree's size: the last batch's end (0 before the first).
    pub size: u64,
    /// The stored hashes of the tree's frontier (see
    /// `crate::merkle::tree::frontier_indexes`), as the store holds them.
    pub frontier: HashMap<u64, Digest>,
    /// The events to seal, oldest first (by time, then id).
    pub leaves: Vec<PendingLeaf>,
}

/// An event waiting to be sealed: its id, time and Merkle leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLeaf {
    pub id: String,
    pub ts_ms: i64,
    pub hash: Digest,
}

impl PendingLeaf {
    /// The pending leaf of `e`, hashed from the event.
    pub fn of(e: &LedgerEvent) -> Self {
        Self {
            id: e.id.clone(),
            ts_ms: e.ts_ms,
            hash: crate::merkle::leaf::leaf_hash(e).0,
        }
    }
}

/// An event as the sealing queue holds it: id, time, and the leaf its
/// writer queued (None if it was queued without one, or with one that is
/// not a hash).
pub(super) type Queued = (String, i64, Option<Digest>);

/// A queued `leaf` column as a hash, if it is one.
pub(super) fn queued_leaf(leaf: Option<Vec<u8>>) -> Option<Digest> {
    leaf.and_then(|b| b.try_into().ok())
}

/// The leaves of the queue's `head`, in its order: each event's queued
/// leaf, else the leaf of its row (`rows`, by id). An event with neither
/// (queued without a leaf, its row deleted by hand) cannot be sealed: it is
/// logged and left out, so it is never in the tree and cannot keep the
/// queue's head due.
pub(super) fn resolve_leaves(
    head: Vec<Queued>,
    rows: &HashMap<String, LedgerEvent>,
) -> Vec<PendingLeaf> {
    let mut leaves = Vec::with_capacity(head.len());
    let mut gone: Vec<String> = Vec::new();
    for (id, ts_ms, leaf) in head {
        match (leaf, rows.get(&id)) {
            (Some(hash), _) => leaves.push(PendingLeaf { id, ts_ms, hash }),
            (None, Some(e)) => leaves.push(PendingLeaf::of(e)),
            (None, None) => gone.push(id),
        }
    }
    if !gone.is_empty() {
        tracing::error!(events = ?gone, "events queued for sealing have no leaf and no ledger row; they are not sealed");
    }
    leaves
}

/// What sealing returns: the batch and the hashes to store.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub batch: Batch,
    pub stored: Vec<(u64, Digest)>,
}

/// Seals what it is given, or says why it cannot.
pub type SealFn<'a> = &'a (dyn Fn(Sealing) -> Result<Sealed, String> + Send + Sync);

/// When pending events are sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// At most this many events per batch; a batch this full is due.
    pub max_events: usize,
    /// A batch is also due when its oldest event is at or before this time
    /// (ms); None: due whatever its age (`merkle seal`).
    pub oldest_at_or_before_ms: Option<i64>,
}

impl Due {
    /// Whether a batch is due when the queue's head (at most `max_events`
    /// of it) holds `waiting` events, the oldest from `oldest_ms`.
    pub fn met(&self, waiting: usize, oldest_ms: Option<i64>) -> bool {
        let Some(oldest) = oldest_ms else {
            return false;
        };
        waiting >= self.max_events || self.oldest_at_or_before_ms.is_none_or(|cut| oldest <= cut)
    }

    /// `max_events` as a SQL LIMIT.
    pub(super) fn limit(&self) -> i64 {
        i64::try_from(self.max_events).unwrap_or(i64::MAX)
    }
}

/// Whether a batch is `due`, from the head of the sealing queue (at most
/// `due.max_events`, in sealing order): how many events it holds and the
/// oldest time among them, read from the queue's key alone in one row,
/// before any event row is read or a lock taken. Either database.
pub(super) async fn batch_due<'e, DB>(
    db: impl sqlx::Executor<'e, Database = DB>,
    due: &Due,
) -> Result<bool, StoreError>
where
    DB: sqlx::Database,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64, Option<i64>): sqlx::FromRow<'r, DB::Row>,
{
    let (n, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*) AS n, MIN(ts_ms) AS oldest
         FROM (SELECT ts_ms FROM ledger_pending ORDER BY ts_ms, id LIMIT $1) head",
    )
    .bind(due.limit())
    .fetch_one(db)
    .await?;
    Ok(due.met(usize::try_from(n).unwrap_or(0), oldest))
}

/// One leaf of a batch as the store holds it now.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub index: u64,
    pub event_id: String,
    /// The event's row, if it is still there and can be read.
    pub event: Result<LedgerEvent, String>,
}

/// Which batches to list.
#[derive(Debug, Clone, Default)]
pub struct BatchFilter {
    pub id: Option<String>,
    /// Batches with an event in `[start, end]` (ms), or sealed in it.
    pub overlapping: Option<(i64, i64)>,
    /// Only the latest batch.
    pub latest: bool,
    /// The batch whose tree size (`end`) is this.
    pub end: Option<u64>,
    /// Batches starting at or after this leaf.
    pub from_leaf: Option<u64>,
}

/// The ledger's Merkle log.
#[async_trait]
pub trait MerkleStore: Send + Sync {
    /// Seals the oldest pending events into one batch if a batch is `due`,
    /// calling `seal` under the sealing lock and storing what it returns in
    /// the same transaction. None when nothing was due.
    async fn seal_pending(&self, due: Due, seal: SealFn<'_>) -> Result<Option<Batch>, StoreError>;

    /// How many events wait to be sealed, and the time of the oldest.
    async fn pending(&self) -> Result<(u64, Option<i64>), StoreError>;

    /// Batches matching `filter`, in sealing order.
    async fn batches(&self, filter: &BatchFilter) -> Result<Vec<Batch>, StoreError>;

    /// The leaves `start..end` as stored now, by index: an index missing
    /// from the answer has no leaf row.
    async fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, StoreError>;

    /// The stored hashes at `indexes` that exist.
    async fn merkle_hashes(&self, indexes: &[u64]) -> Result<HashMap<u64, Digest>, StoreError>;

    /// The leaf index of an event, if it was sealed.
    async fn leaf_index(&self, event_id: &str) -> Result<Option<u64>, StoreError>;

    /// The batch sealed last, if any.
    async fn latest_batch(&self) -> Result<Option<Batch>, StoreError> {
        let latest = BatchFilter {
            latest: true,
            ..Default::default()
        };
        Ok(self.batches(&latest).await?.into_iter().next())
    }
}

pub(super) fn digest(bytes: &[u8], table: &'static str) -> Result<Digest, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        table,
        message: format!("a hash of {} bytes", bytes.len()),
    })
}

pub(super) fn u(v: i64, table: &'static str, col: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        table,
        message: format!("{col} {v} is negative"),
    })
}

pub(super) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn batch_from_row(row: &impl Columns) -> Result<Batch, StoreError> {
    const T: &str = "merkle_batches";
    Ok(Batch {
        number: u(row.int("number")?, T, "number")?,
        id: row.text("id")?,
        start: u(row.int("start_index")?, T, "start_index")?,
        end: u(row.int("end_index")?, T, "end_index")?,
        root: digest(&row.bytes("root")?, T)?,
        checkpoint: row.text("checkpoint")?,
        first_ts_ms: row.int("first_ts_ms")?,
        last_ts_ms: row.int("last_ts_ms")?,
        sealed_at: row.text("sealed_at")?,
    })
}

/// The batch `seal` made must extend the tree it was given by exactly the
/// events it was given.
pub(super) fn check_sealed(
    input: (&Option<Batch>, u64, usize),
    out: &Sealed,
) -> Result<(), StoreError> {
    let (last, size, n) = input;
    let b = &out.batch;
    let number = last.as_ref().map_or(0, |l| l.number + 1);
    if b.start != size || b.end != size + n as u64 || b.number != number {
        return Err(StoreError::Seal(format!(
            "a sealed batch does not extend the tree: batch {} covers {}..{}, the tree has {size} leaves and {n} were pending",
            b.number, b.start, b.end
        )));
    }
    Ok(())
}

#[async_trait]
impl MerkleStore for SqliteStore {
    async fn seal_pending(&self, due: Due, seal: SealFn<'_>) -> Result<Option<Batch>, StoreError> {
        // Nothing due (the common answer, every second): known from the
        // queue's key without the write lock or reading a row.
        if !batch_due(&self.ledger, &due).await? {
            return Ok(None);
        }
        // BEGIN IMMEDIATE: the write lock first, so two sealers (the
        // gateway's and `caracal merkle seal`) take turns. On the ledger's
        // own connection, as the writer's inserts: they take turns on it
        // instead of on SQLite's lock, and its page cache, which a commit
        // from another connection would empty, stays warm for both.
        let mut conn = self.ledger.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = async {
            // Again under the lock: another sealer may have taken it.
            if !batch_due(&mut *conn, &due).await? {
                return Ok(None);
            }
            let leaves = take_pending(&mut conn, &due).await?;
            if leaves.is_empty() {
                return Ok(None);
            }
            let last = sqlx::query("SELECT * FROM merkle_batches ORDER BY number DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| batch_from_row(&r))
                .transpose()?;
            let size = last.as_ref().map_or(0, |b| b.end);
            let frontier =
                read_hashes(&mut conn, &crate::merkle::tree::frontier_indexes(size)).await?;
            let n = leaves.len();
            let sealed_ids: Vec<(String, i64)> =
                leaves.iter().map(|l| (l.id.clone(), l.ts_ms)).collect();
            let sealed = seal(Sealing {
                last: last.clone(),
                size,
                frontier,
                leaves,
            })
            .map_err(StoreError::Seal)?;
            check_sealed((&last, size, n), &sealed)?;
            for (k, chunk) in sealed_ids.chunks(200).enumerate() {
                let mut q: QueryBuilder<Sqlite> =
                    QueryBuilder::new("INSERT INTO merkle_leaves (idx, event_id, ts_ms) ");
                q.push_values(chunk.iter().enumerate(), |mut b, (j, (id, ts))| {
                    b.push_bind(i(size + (k * 200 + j) as u64))
                        .push_bind(id)
                        .push_bind(ts);
                });
                q.build().execute(&mut *conn).await?;
            }
            for chunk in sealed.stored.chunks(400) {
                let mut q: QueryBuilder<Sqlite> =
                    QueryBuilder::new("INSERT INTO merkle_hashes (idx, hash) ");
                q.push_values(chunk, |mut b, (idx, h)| {
                    b.push_bind(i(*idx)).push_bind(h.to_vec());
                });
                q.build().execute(&mut *conn).await?;
            }
            let b = &sealed.batch;
            sqlx::query(
                "INSERT INTO merkle_batches (number, id, start_index, end_index, root, checkpoint, first_ts_ms, last_ts_ms, sealed_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(i(b.number))
            .bind(&b.id)
            .bind(i(b.start))
            .bind(i(b.end))
            .bind(b.root.to_vec())
            .bind(&b.checkpoint)
            .bind(b.first_ts_ms)
            .bind(b.last_ts_ms)
            .bind(&b.sealed_at)
            .execute(&mut *conn)
            .await?;
            Ok(Some(sealed.batch))
        }
        .await;
        match result {
            Ok(v) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok(v)
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }

    async fn pending(&self) -> Result<(u64, Option<i64>), StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n, MIN(ts_ms) AS oldest FROM ledger_pending")
            .fetch_one(self.pool())
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok((n.max(0) as u64, row.try_get("oldest")?))
    }

    async fn batches(&self, filter: &BatchFilter) -> Result<Vec<Batch>, StoreError> {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT * FROM merkle_batches WHERE 1 = 1");
        push_batch_filter(&mut q, filter);
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(batch_from_row).collect()
    }

    async fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.idx AS leaf_idx, l.event_id AS leaf_event_id, e.*
             FROM merkle_leaves l LEFT JOIN ledger_events e ON e.id = l.event_id
             WHERE l.idx >= ? AND l.idx < ? ORDER BY l.idx",
        )
        .bind(i(start))
        .bind(i(end))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(leaf_from_row).collect()
    }

    async fn merkle_hashes(&self, indexes: &[u64]) -> Result<HashMap<u64, Digest>, StoreError> {
        read_hashes(&mut *self.pool().acquire().await?, indexes).await
    }

    async fn leaf_index(&self, event_id: &str) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT idx FROM merkle_leaves WHERE event_id = ?")
            .bind(event_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| u(r.try_get("idx")?, "merkle_leaves", "idx"))
            .transpose()
    }
}

/// Takes the head of the sealing queue (at most `due.max_events` events,
/// in sealing order) off the queue and answers its leaves (see
/// [`resolve_leaves`]; the rows of events queued without a leaf are read).
///
/// Under the write lock the head is exactly the queued keys up to the last
/// one read, so one range delete takes it off; the caller's transaction
/// puts it back if sealing fails.
async fn take_pending(
    conn: &mut sqlx::SqliteConnection,
    due: &Due,
) -> Result<Vec<PendingLeaf>, StoreError> {
    let rows = sqlx::query("SELECT ts_ms, id, leaf FROM ledger_pending ORDER BY ts_ms, id LIMIT ?")
        .bind(due.limit())
        .fetch_all(&mut *conn)
        .await?;
    let mut head: Vec<Queued> = Vec::with_capacity(rows.len());
    for row in &rows {
        head.push((
            row.try_get("id")?,
            row.try_get("ts_ms")?,
            queued_leaf(row.try_get("leaf")?),
        ));
    }
    let Some((last_id, last_ts, _)) = head.last() else {
        return Ok(Vec::new());
    };
    sqlx::query("DELETE FROM ledger_pending WHERE (ts_ms, id) <= (?, ?)")
        .bind(last_ts)
        .bind(last_id)
        .execute(&mut *conn)
        .await?;
    let mut rows_of: HashMap<String, LedgerEvent> = HashMap::new();
    let unhashed: Vec<&str> = head
        .iter()
        .filter(|q| q.2.is_none())
        .map(|q| q.0.as_str())
        .collect();
    for chunk in unhashed.chunks(500) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT * FROM ledger_events WHERE id IN (");
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        q.push(")");
        for row in q.build().fetch_all(&mut *conn).await? {
            let e = super::ledger::from_row(&row)?;
            rows_of.insert(e.id.clone(), e);
        }
    }
    Ok(resolve_leaves(head, &rows_of))
}

/// The stored hashes at `indexes` that exist.
async fn read_hashes(
    conn: &mut sqlx::SqliteConnection,
    indexes: &[u64],
) -> Result<HashMap<u64, Digest>, StoreError> {
    let mut out = HashMap::with_capacity(indexes.len());
    for chunk in indexes.chunks(500) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT idx, hash FROM merkle_hashes WHERE idx IN (");
        let mut sep = q.separated(", ");
        for idx in chunk {
            sep.push_bind(i(*idx));
        }
        q.push(")");
        for row in q.build().fetch_all(&mut *conn).await? {
            let idx: i64 = row.try_get("idx")?;
            let h: Vec<u8> = row.try_get("hash")?;
            out.insert(
                u(idx, "merkle_hashes", "idx")?,
                digest(&h, "merkle_hashes")?,
            );
        }
    }
    Ok(out)
}

/// The conditions and order of a batch query, for either database.
pub(super) fn push_batch_filter<'a, DB: sqlx::Database>(
    q: &mut QueryBuilder<'a, DB>,
    filter: &BatchFilter,
) where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(id) = &filter.id {
        q.push(" AND id = ").push_bind(id.clone());
    }
    if let Some(end) = filter.end {
        q.push(" AND end_index = ").push_bind(i(end));
    }
    if let Some(from) = filter.from_leaf {
        q.push(" AND start_index >= ").push_bind(i(from));
    }
    if let Some((s, e)) = filter.overlapping {
        q.push(" AND ((first_ts_ms <= ")
            .push_bind(e)
            .push(" AND last_ts_ms >= ")
            .push_bind(s)
            .push(") OR (sealed_at >= ")
            .push_bind(rfc3339(s))
            .push(" AND sealed_at <= ")
            .push_bind(rfc3339(e))
            .push("))");
    }
    if filter.latest {
        q.push(" ORDER BY number DESC LIMIT 1");
    } else {
        q.push(" ORDER BY number");
    }
}

pub(super) fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| if ms < 0 { "0".into() } else { "9".into() })
}

pub(super) fn leaf_from_row(row: &impl Columns) -> Result<Leaf, StoreError> {
    let index = u(row.int("leaf_idx")?, "merkle_leaves", "idx")?;
    let event_id = row.text("leaf_event_id")?;
    let present = row.opt_text("id")?;
    let event = match present {
        None => Err("its row is not in the ledger".to_string()),
        Some(_) => super::ledger::from_row(row).map_err(|e| e.to_string()),
    };
    Ok(Leaf {
        index,
        event_id,
        event,
    })
}
