//! Derived state and its recovery, in the store: the per-minute spend
//! aggregates (`spend_minutes`) that budget counters are primed from,
//! ledger snapshots of them, and the state of a replay. What a snapshot
//! and a replay mean, and how the events they read are verified, is
//! `crate::recovery`; this is where they are kept.
//!
//! `spend_minutes` is maintained by the statement that inserts ledger rows,
//! from the rows it inserted. A replay never writes it row by row: it
//! builds the aggregates in `replay_spend`, and replaces `spend_minutes`
//! with them in one transaction that every ledger insert waits for
//! (SQLite's write lock; on PostgreSQL an EXCLUSIVE lock on
//! `spend_minutes`, which an insert's statement needs before it writes a
//! ledger row). Events inserted before that transaction are read by it;
//! events inserted after it are added to the new aggregates by their own
//! insert: none is counted twice or lost.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::row::Columns;
use super::{SqliteStore, StoreError};
use crate::ledger::{EventKind, LedgerEvent};
use crate::money::Decimal;

/// One principal's spend in one UTC minute and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteSpend {
    pub principal_id: String,
    /// The unix millisecond the minute starts.
    pub minute_ms: i64,
    /// The currency of the costs ('' where a call had none).
    pub currency: String,
    /// The exact sum of the costs.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub calls: u64,
}

/// Costs summed per principal, minute and currency: exact, in key order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally(BTreeMap<(String, i64, String), (Decimal, u64)>);

impl Tally {
    /// Counts `e` if it is a call with a principal and a cost (what
    /// budgets count), as the PostgreSQL insert statement does.
    pub fn add_event(&mut self, e: &LedgerEvent) {
        if e.kind != EventKind::Call {
            return;
        }
        if let (Some(p), Some(cost)) = (&e.principal_id, e.cost) {
            self.add(p, e.ts_ms, e.currency.as_deref(), cost, 1);
        }
    }

    fn add(
        &mut self,
        principal: &str,
        ts_ms: i64,
        currency: Option<&str>,
        amount: Decimal,
        n: u64,
    ) {
        let key = (
            principal.to_string(),
            super::minute_of(ts_ms),
            currency.unwrap_or("").to_string(),
        );
        let slot = self.0.entry(key).or_default();
        slot.0 = slot.0.saturating_add(amount);
        slot.1 = slot.1.saturating_add(n);
    }

    /// Counts the calls among `events`.
    pub fn add_events<'a>(&mut self, events: impl IntoIterator<Item = &'a LedgerEvent>) {
        events.into_iter().for_each(|e| self.add_event(e));
    }

    /// Adds aggregated rows.
    pub fn add_rows(&mut self, rows: &[MinuteSpend]) {
        for r in rows {
            self.add(
                &r.principal_id,
                r.minute_ms,
                Some(&r.currency),
                r.amount,
                r.calls,
            );
        }
    }

    /// Counts a row of `kind, principal_id, ts_ms, currency, cost` (text).
    pub(super) fn add_row(&mut self, row: &impl Columns) -> Result<(), StoreError> {
        if row.text("kind")? != EventKind::Call.as_str() {
            return Ok(());
        }
        let (Some(p), Some(cost)) = (row.opt_text("principal_id")?, row.opt_text("cost")?) else {
            return Ok(());
        };
        let amount = parse(&cost, "ledger_events")?;
        self.add(
            &p,
            row.int("ts_ms")?,
            row.opt_text("currency")?.as_deref(),
            amount,
            1,
        );
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rows, in key order, amounts normalised (`0.0300` is `0.03`).
    pub fn rows(&self) -> Vec<MinuteSpend> {
        self.0
            .iter()
            .map(|((p, m, c), (a, n))| MinuteSpend {
                principal_id: p.clone(),
                minute_ms: *m,
                currency: c.clone(),
                amount: a.normalize(),
                calls: *n,
            })
            .collect()
    }
}

/// Per principal and currency: the sum over all minutes (what `snapshot
/// list` and a replay's check show).
pub fn totals(rows: &[MinuteSpend]) -> BTreeMap<(String, String), (Decimal, u64)> {
    let mut out: BTreeMap<(String, String), (Decimal, u64)> = BTreeMap::new();
    for r in rows {
        let slot = out
            .entry((r.principal_id.clone(), r.currency.clone()))
            .or_default();
        slot.0 = slot.0.saturating_add(r.amount);
        slot.1 = slot.1.saturating_add(r.calls);
    }
    for v in out.values_mut() {
        v.0 = v.0.normalize();
    }
    out
}

/// The SHA-256 (hex) of rows' canonical form: the JSON array of
/// `[principal, minute_ms, currency, amount, calls]`, in key order,
/// amounts normalised. Binds a snapshot's rows to its record.
pub fn digest(rows: &[MinuteSpend]) -> String {
    let mut sorted: Vec<&MinuteSpend> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.principal_id, a.minute_ms, &a.currency).cmp(&(
            &b.principal_id,
            b.minute_ms,
            &b.currency,
        ))
    });
    let canonical: Vec<(&str, i64, &str, String, u64)> = sorted
        .iter()
        .map(|r| {
            (
                r.principal_id.as_str(),
                r.minute_ms,
                r.currency.as_str(),
                r.amount.normalize().to_string(),
                r.calls,
            )
        })
        .collect();
    let json = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

pub(super) fn parse(text: &str, table: &'static str) -> Result<Decimal, StoreError> {
    text.parse::<Decimal>()
        .map(|d| d.normalize())
        .map_err(|e| StoreError::Corrupt {
            table,
            message: format!("amount {text:?}: {e}"),
        })
}

/// A row of `principal_id, minute_ms, currency, amount (text), calls`.
pub(super) fn minute_from_row(
    row: &impl Columns,
    table: &'static str,
) -> Result<MinuteSpend, StoreError> {
    let calls = row.int("calls")?;
    Ok(MinuteSpend {
        principal_id: row.text("principal_id")?,
        minute_ms: row.int("minute_ms")?,
        currency: row.text("currency")?,
        amount: parse(&row.text("amount")?, table)?,
        calls: u64::try_from(calls).map_err(|_| StoreError::Corrupt {
            table,
            message: format!("calls {calls} is negative"),
        })?,
    })
}

/// A ledger snapshot's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// A UUIDv7.
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    /// The events of the Merkle log it covers: leaves `0..tree_size`.
    pub tree_size: u64,
    /// The batch whose checkpoint it was taken at (None for an empty log).
    pub batch_id: Option<String>,
    /// That checkpoint (a signed note).
    pub checkpoint: Option<String>,
    /// See [`digest`].
    pub digest: String,
    /// A note signed with the ledger key over the id, tree size and digest
    /// (see `crate::recovery`): rows and digest changed together in the
    /// database do not verify.
    pub signature: String,
    /// Calls counted, and principals with spend.
    pub calls: u64,
    pub principals: u64,
}

/// Where a replay (or a restore) of the derived state is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayState {
    /// The snapshot it started from.
    pub snapshot_id: Option<String>,
    /// Who runs it (a UUID per run): a run that finds another's owner here
    /// stops.
    pub owner: String,
    /// `restored` (the aggregates hold a snapshot, the events after it not
    /// yet), `running`, `done` or `failed`.
    pub status: String,
    /// Whether `spend_minutes` counts every event of the ledger. False
    /// after a restore until a replay finishes: counters are then primed
    /// from the ledger's rows instead.
    pub complete: bool,
    /// Leaves read (and verified) so far: the replay goes on from here.
    pub position: u64,
    /// The tree's size when it started.
    pub target: u64,
    /// Events read, calls counted among them, and events counted without
    /// being verified (sealed after the replay's last batch, or not sealed
    /// yet).
    pub events: u64,
    pub calls: u64,
    pub unverified: u64,
    pub started_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

pub(super) fn state_from_row(row: &impl Columns) -> Result<ReplayState, StoreError> {
    const T: &str = "replay_state";
    let n = |col: &str| -> Result<u64, StoreError> { super::merkle::u(row.int(col)?, T, col) };
    Ok(ReplayState {
        snapshot_id: row.opt_text("snapshot_id")?,
        owner: row.text("owner")?,
        status: row.text("status")?,
        complete: row.flag("complete")?,
        position: n("position")?,
        target: n("target")?,
        events: n("events")?,
        calls: n("calls")?,
        unverified: n("unverified")?,
        started_at: row.text("started_at")?,
        updated_at: row.text("updated_at")?,
        finished_at: row.opt_text("finished_at")?,
        error: row.opt_text("error")?,
    })
}

pub(super) fn snapshot_from_row(row: &impl Columns) -> Result<SnapshotInfo, StoreError> {
    const T: &str = "ledger_snapshots";
    let n = |col: &str| -> Result<u64, StoreError> { super::merkle::u(row.int(col)?, T, col) };
    Ok(SnapshotInfo {
        id: row.text("id")?,
        created_at: row.text("created_at")?,
        tree_size: n("tree_size")?,
        batch_id: row.opt_text("batch_id")?,
        checkpoint: row.opt_text("checkpoint")?,
        digest: row.opt_text("digest")?.unwrap_or_default(),
        signature: row.opt_text("signature")?.unwrap_or_default(),
        calls: n("calls")?,
        principals: n("principals")?,
    })
}

/// The refusal to prime from aggregates that hold a restored snapshot
/// only.
pub(super) fn incomplete(state: &ReplayState) -> StoreError {
    StoreError::Incomplete(format!(
        "the spend aggregates hold snapshot {} without the events after it (restored at {}): \
         run `caracal replay start --from-snapshot {}`",
        state.snapshot_id.as_deref().unwrap_or("?"),
        state.started_at,
        state.snapshot_id.as_deref().unwrap_or("ID"),
    ))
}

/// The refusal to go on when another run took the replay over.
pub(super) fn taken_over() -> StoreError {
    StoreError::Conflict(
        "another replay or restore started since this one: this one stopped".to_string(),
    )
}

/// Snapshots, and rebuilding the derived state.
#[async_trait]
pub trait RecoveryStore: Send + Sync {
    /// Every row of the spend aggregates, in key order.
    async fn spend_minutes(&self) -> Result<Vec<MinuteSpend>, StoreError>;

    /// What the spend aggregates would be if rebuilt from every ledger row
    /// now: the figure a replay must reach (and what a test compares it
    /// with). Reads the whole ledger.
    async fn spend_from_ledger(&self) -> Result<Vec<MinuteSpend>, StoreError>;

    /// Records a snapshot being built (`info`'s digest and counts are
    /// filled by [`Self::snapshot_complete`]), holding `rows` to start
    /// with.
    async fn snapshot_begin(
        &self,
        info: &SnapshotInfo,
        rows: &[MinuteSpend],
    ) -> Result<(), StoreError>;

    /// Adds `rows` to a snapshot being built.
    async fn snapshot_add(&self, id: &str, rows: &[MinuteSpend]) -> Result<(), StoreError>;

    /// Marks a snapshot complete, with its digest and counts.
    async fn snapshot_complete(&self, info: &SnapshotInfo) -> Result<(), StoreError>;

    /// Drops a snapshot (one whose building failed).
    async fn snapshot_discard(&self, id: &str) -> Result<(), StoreError>;

    /// Complete snapshots, oldest first; only `id` if given.
    async fn snapshots(&self, id: Option<&str>) -> Result<Vec<SnapshotInfo>, StoreError>;

    /// A snapshot's rows, in key order.
    async fn snapshot_rows(&self, id: &str) -> Result<Vec<MinuteSpend>, StoreError>;

    /// Replaces the spend aggregates with `rows` and records `state`, in
    /// one transaction that ledger inserts wait for.
    async fn restore_spend(
        &self,
        rows: &[MinuteSpend],
        state: &ReplayState,
    ) -> Result<(), StoreError>;

    /// Starts a replay: `replay_spend` holds `rows`, the replay state is
    /// `state` (this run its owner).
    async fn replay_begin(
        &self,
        rows: &[MinuteSpend],
        state: &ReplayState,
    ) -> Result<(), StoreError>;

    /// Adds `rows` to the replay's aggregates and records `state` (its
    /// position), in one transaction: a replay stopped between two calls
    /// lost nothing counted. Fails if another run took the replay over.
    async fn replay_add(&self, state: &ReplayState, rows: &[MinuteSpend])
        -> Result<(), StoreError>;

    /// Under the lock ledger inserts wait for: counts the events at or
    /// after leaf `state.position` and those not sealed yet, replaces
    /// `spend_minutes` with the replay's aggregates, and records the
    /// replay done. Answers the final state.
    async fn replay_finish(&self, state: &ReplayState) -> Result<ReplayState, StoreError>;

    /// Records a replay failed (if this run still owns it).
    async fn replay_fail(&self, state: &ReplayState) -> Result<(), StoreError>;

    /// The last replay's or restore's state, if any ran.
    async fn replay_state(&self) -> Result<Option<ReplayState>, StoreError>;
}

/// The ledger's calls that budgets count, as [`Tally::add_row`] reads them
/// (the same text in both dialects).
pub(super) const LEDGER_CALLS: &str = "
SELECT kind, principal_id, ts_ms, currency, cost FROM ledger_events
WHERE kind = 'call' AND cost IS NOT NULL AND principal_id IS NOT NULL";

/// The whole ledger's calls, summed.
async fn tally_ledger(conn: &mut SqliteConnection) -> Result<Tally, StoreError> {
    let mut tally = Tally::default();
    for row in sqlx::query(LEDGER_CALLS).fetch_all(&mut *conn).await? {
        tally.add_row(&row)?;
    }
    Ok(tally)
}

/// What SQLite reads to count the events not replayed batch by batch.
const TAIL: &str = "
SELECT e.kind, e.principal_id, e.ts_ms, e.currency, e.cost
FROM merkle_leaves l JOIN ledger_events e ON e.id = l.event_id
WHERE l.idx >= ?
UNION ALL
SELECT e.kind, e.principal_id, e.ts_ms, e.currency, e.cost
FROM ledger_pending p JOIN ledger_events e ON e.id = p.id";

/// Keys per statement when adding to the aggregates (3 parameters each
/// to read, 5 to write: far below SQLite's limit).
const ADD_CHUNK: usize = 256;

/// Adds `rows` to the aggregates of `table` (`spend_minutes`,
/// `replay_spend`, or `snapshot_spend` of snapshot `scope`): SQLite cannot
/// add decimals exactly, so the rows a chunk touches are read in one
/// statement, summed here, and written back in one.
async fn add_spend(
    conn: &mut SqliteConnection,
    table: &'static str,
    scope: Option<&str>,
    rows: &[MinuteSpend],
) -> Result<(), StoreError> {
    let cols = if scope.is_some() { "snapshot_id, " } else { "" };
    for chunk in super::statement_chunks(rows, ADD_CHUNK) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT principal_id, minute_ms, currency, amount, calls FROM {table} WHERE "
        ));
        if let Some(s) = scope {
            q.push("snapshot_id = ")
                .push_bind(s.to_string())
                .push(" AND ");
        }
        q.push("(principal_id, minute_ms, currency) IN (VALUES ");
        let mut sep = q.separated(", ");
        for r in chunk {
            sep.push("(")
                .push_bind_unseparated(r.principal_id.clone())
                .push_unseparated(", ")
                .push_bind_unseparated(r.minute_ms)
                .push_unseparated(", ")
                .push_bind_unseparated(r.currency.clone())
                .push_unseparated(")");
        }
        q.push(")");
        let mut tally = Tally::default();
        tally.add_rows(chunk);
        for old in q.build().fetch_all(&mut *conn).await? {
            tally.add_rows(&[minute_from_row(&old, table)?]);
        }
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "INSERT OR REPLACE INTO {table} ({cols}principal_id, minute_ms, currency, amount, calls) "
        ));
        q.push_values(tally.rows(), |mut b, r| {
            if let Some(s) = scope {
                b.push_bind(s.to_string());
            }
            b.push_bind(r.principal_id)
                .push_bind(r.minute_ms)
                .push_bind(r.currency)
                .push_bind(r.amount.to_string())
                .push_bind(super::ledger::i(r.calls));
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Adds what `spent` counts to `spend_minutes`.
pub(super) async fn add_to_spend_minutes(
    conn: &mut SqliteConnection,
    spent: &Tally,
) -> Result<(), StoreError> {
    if spent.is_empty() {
        return Ok(());
    }
    add_spend(conn, "spend_minutes", None, &spent.rows()).await
}

/// Writes the replay state (the one row).
async fn put_state(conn: &mut SqliteConnection, s: &ReplayState) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR REPLACE INTO replay_state (id, snapshot_id, owner, status, complete, position,
             target, events, calls, unverified, started_at, updated_at, finished_at, error)
         VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&s.snapshot_id)
    .bind(&s.owner)
    .bind(&s.status)
    .bind(s.complete)
    .bind(super::ledger::i(s.position))
    .bind(super::ledger::i(s.target))
    .bind(super::ledger::i(s.events))
    .bind(super::ledger::i(s.calls))
    .bind(super::ledger::i(s.unverified))
    .bind(&s.started_at)
    .bind(&s.updated_at)
    .bind(&s.finished_at)
    .bind(&s.error)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn get_state(conn: &mut SqliteConnection) -> Result<Option<ReplayState>, StoreError> {
    sqlx::query("SELECT * FROM replay_state WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| state_from_row(&r))
        .transpose()
}

/// Whether this run still owns the replay.
async fn owns(conn: &mut SqliteConnection, s: &ReplayState) -> Result<(), StoreError> {
    match get_state(conn).await? {
        Some(now) if now.owner == s.owner => Ok(()),
        _ => Err(taken_over()),
    }
}

/// Runs `f` in a transaction that holds SQLite's write lock from its
/// start (BEGIN IMMEDIATE), so no ledger insert interleaves.
async fn immediate<T, F>(store: &SqliteStore, f: F) -> Result<T, StoreError>
where
    F: for<'c> FnOnce(
        &'c mut SqliteConnection,
    ) -> futures_util::future::BoxFuture<'c, Result<T, StoreError>>,
{
    let mut conn = store.pool().acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    match f(&mut conn).await {
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

async fn read_minutes(
    conn: &mut SqliteConnection,
    sql: &str,
    scope: Option<&str>,
    table: &'static str,
) -> Result<Vec<MinuteSpend>, StoreError> {
    let mut q = sqlx::query(sql);
    if let Some(s) = scope {
        q = q.bind(s);
    }
    q.fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| minute_from_row(r, table))
        .collect()
}

impl SqliteStore {
    /// Sums the ledger written before `spend_minutes` existed into it, once
    /// (the migration that made the table asks for it).
    pub(super) async fn backfill_spend(&self) -> Result<(), StoreError> {
        // Asked for once: known without the write lock every other time.
        let asked: Option<String> =
            sqlx::query_scalar("SELECT status FROM replay_state WHERE id = 1")
                .fetch_optional(self.pool())
                .await?;
        if asked.as_deref() != Some("backfill") {
            return Ok(());
        }
        immediate(self, |conn| {
            Box::pin(async move {
                let Some(s) = get_state(conn).await? else {
                    return Ok(());
                };
                if s.status != "backfill" {
                    return Ok(());
                }
                let tally = tally_ledger(conn).await?;
                sqlx::query("DELETE FROM spend_minutes")
                    .execute(&mut *conn)
                    .await?;
                add_spend(conn, "spend_minutes", None, &tally.rows()).await?;
                sqlx::query("DELETE FROM replay_state")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Fails when `spend_minutes` holds a restored snapshot only.
    pub(super) async fn spend_complete(&self) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await?;
        match get_state(&mut conn).await? {
            Some(s) if !s.complete => Err(incomplete(&s)),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl RecoveryStore for SqliteStore {
    async fn spend_minutes(&self) -> Result<Vec<MinuteSpend>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        read_minutes(
            &mut conn,
            "SELECT * FROM spend_minutes ORDER BY principal_id, minute_ms, currency",
            None,
            "spend_minutes",
        )
        .await
    }

    async fn spend_from_ledger(&self) -> Result<Vec<MinuteSpend>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        Ok(tally_ledger(&mut conn).await?.rows())
    }

    async fn snapshot_begin(
        &self,
        info: &SnapshotInfo,
        rows: &[MinuteSpend],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO ledger_snapshots (id, created_at, status, tree_size, batch_id, checkpoint)
             VALUES (?, ?, 'building', ?, ?, ?)",
        )
        .bind(&info.id)
        .bind(&info.created_at)
        .bind(super::ledger::i(info.tree_size))
        .bind(&info.batch_id)
        .bind(&info.checkpoint)
        .execute(&mut *tx)
        .await?;
        add_spend(&mut tx, "snapshot_spend", Some(&info.id), rows).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn snapshot_add(&self, id: &str, rows: &[MinuteSpend]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        add_spend(&mut tx, "snapshot_spend", Some(id), rows).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn snapshot_complete(&self, info: &SnapshotInfo) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE ledger_snapshots SET status = 'complete', digest = ?, signature = ?, calls = ?,
                 principals = ?
             WHERE id = ? AND status = 'building'",
        )
        .bind(&info.digest)
        .bind(&info.signature)
        .bind(super::ledger::i(info.calls))
        .bind(super::ledger::i(info.principals))
        .bind(&info.id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn snapshot_discard(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM ledger_snapshots WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn snapshots(&self, id: Option<&str>) -> Result<Vec<SnapshotInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM ledger_snapshots WHERE status = 'complete' AND (? IS NULL OR id = ?)
             ORDER BY created_at, id",
        )
        .bind(id)
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(snapshot_from_row).collect()
    }

    async fn snapshot_rows(&self, id: &str) -> Result<Vec<MinuteSpend>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        read_minutes(
            &mut conn,
            "SELECT * FROM snapshot_spend WHERE snapshot_id = ?
             ORDER BY principal_id, minute_ms, currency",
            Some(id),
            "snapshot_spend",
        )
        .await
    }

    async fn restore_spend(
        &self,
        rows: &[MinuteSpend],
        state: &ReplayState,
    ) -> Result<(), StoreError> {
        let (rows, state) = (rows.to_vec(), state.clone());
        immediate(self, move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM spend_minutes")
                    .execute(&mut *conn)
                    .await?;
                add_spend(conn, "spend_minutes", None, &rows).await?;
                put_state(conn, &state).await
            })
        })
        .await
    }

    async fn replay_begin(
        &self,
        rows: &[MinuteSpend],
        state: &ReplayState,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM replay_spend")
            .execute(&mut *tx)
            .await?;
        add_spend(&mut tx, "replay_spend", None, rows).await?;
        put_state(&mut tx, state).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replay_add(
        &self,
        state: &ReplayState,
        rows: &[MinuteSpend],
    ) -> Result<(), StoreError> {
        let (rows, state) = (rows.to_vec(), state.clone());
        immediate(self, move |conn| {
            Box::pin(async move {
                owns(conn, &state).await?;
                add_spend(conn, "replay_spend", None, &rows).await?;
                put_state(conn, &state).await
            })
        })
        .await
    }

    async fn replay_finish(&self, state: &ReplayState) -> Result<ReplayState, StoreError> {
        let state = state.clone();
        immediate(self, move |conn| {
            Box::pin(async move {
                owns(conn, &state).await?;
                let pos = super::ledger::i(state.position);
                let tail: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM merkle_leaves WHERE idx >= ?)
                          + (SELECT COUNT(*) FROM ledger_pending)",
                )
                .bind(pos)
                .fetch_one(&mut *conn)
                .await?;
                let mut tally = Tally::default();
                for row in sqlx::query(TAIL).bind(pos).fetch_all(&mut *conn).await? {
                    tally.add_row(&row)?;
                }
                let rows = tally.rows();
                add_spend(conn, "replay_spend", None, &rows).await?;
                sqlx::query("DELETE FROM spend_minutes")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("INSERT INTO spend_minutes SELECT * FROM replay_spend")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("DELETE FROM replay_spend")
                    .execute(&mut *conn)
                    .await?;
                let done = finished(state, tail, &rows);
                put_state(conn, &done).await?;
                Ok(done)
            })
        })
        .await
    }

    async fn replay_fail(&self, state: &ReplayState) -> Result<(), StoreError> {
        let state = state.clone();
        immediate(self, move |conn| {
            Box::pin(async move {
                owns(conn, &state).await?;
                put_state(conn, &state).await
            })
        })
        .await
    }

    async fn replay_state(&self) -> Result<Option<ReplayState>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        get_state(&mut conn).await
    }
}

/// The state of a replay that counted `tail` more events (`rows` their
/// calls) under the final lock.
pub(super) fn finished(mut state: ReplayState, tail: i64, rows: &[MinuteSpend]) -> ReplayState {
    let tail = u64::try_from(tail).unwrap_or(0);
    let now = jiff::Timestamp::now().to_string();
    state.events += tail;
    state.unverified += tail;
    state.calls += rows.iter().map(|r| r.calls).sum::<u64>();
    state.status = "done".to_string();
    state.complete = true;
    state.updated_at = now.clone();
    state.finished_at = Some(now);
    state.error = None;
    state
}
