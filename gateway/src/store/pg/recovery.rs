//! Derived state and its recovery on PostgreSQL (see
//! `crate::store::recovery`). The transactions that replace
//! `spend_minutes` lock it EXCLUSIVE before they read anything (so their
//! REPEATABLE READ snapshot is taken after every ledger insert that
//! touched it committed), and ledger inserts, whose one statement also
//! adds to `spend_minutes`, wait for them.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, Transaction};

use super::PgStore;
use crate::store::ledger::i;
use crate::store::recovery::{
    finished, incomplete, minute_from_row, snapshot_from_row, state_from_row, taken_over,
    MinuteSpend, RecoveryStore, ReplayState, SnapshotInfo, Tally, LEDGER_CALLS,
};
use crate::store::StoreError;

/// The events not replayed batch by batch: leaves from a position, and
/// the events not sealed yet (joined on the partition key too).
const TAIL: &str = "
SELECT e.kind, e.principal_id, e.ts_ms, e.currency, e.cost
FROM merkle_leaves l JOIN ledger_events e ON e.id = l.event_id AND e.ts_ms = l.ts_ms
WHERE l.idx >= $1
UNION ALL
SELECT e.kind, e.principal_id, e.ts_ms, e.currency, e.cost
FROM ledger_pending p JOIN ledger_events e ON e.id = p.id AND e.ts_ms = p.ts_ms";

/// Adds `rows` to the aggregates of `table` (`spend_minutes`,
/// `replay_spend`, or `snapshot_spend` of snapshot `scope`), in key order.
async fn add_spend(
    conn: &mut PgConnection,
    table: &'static str,
    scope: Option<&str>,
    rows: &[MinuteSpend],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let (cols, vals, key) = match scope {
        Some(_) => ("snapshot_id, ", "$6, ", "snapshot_id, "),
        None => ("", "", ""),
    };
    let sql = format!(
        "INSERT INTO {table} AS t ({cols}principal_id, minute_ms, currency, amount, calls)
         SELECT {vals}p, m, c, a::numeric, n
         FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[]) AS r (p, m, c, a, n)
         ORDER BY p, m, c
         ON CONFLICT ({key}principal_id, minute_ms, currency) DO UPDATE
         SET amount = t.amount + EXCLUDED.amount, calls = t.calls + EXCLUDED.calls"
    );
    for chunk in rows.chunks(4096) {
        let mut q = sqlx::query(&sql)
            .bind(
                chunk
                    .iter()
                    .map(|r| r.principal_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(chunk.iter().map(|r| r.minute_ms).collect::<Vec<_>>())
            .bind(chunk.iter().map(|r| r.currency.clone()).collect::<Vec<_>>())
            .bind(
                chunk
                    .iter()
                    .map(|r| r.amount.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(chunk.iter().map(|r| i(r.calls)).collect::<Vec<_>>());
        if let Some(s) = scope {
            q = q.bind(s);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn read_minutes(
    conn: impl sqlx::PgExecutor<'_>,
    sql: &str,
    scope: Option<&str>,
    table: &'static str,
) -> Result<Vec<MinuteSpend>, StoreError> {
    let mut q = sqlx::query(sql);
    if let Some(s) = scope {
        q = q.bind(s);
    }
    q.fetch_all(conn)
        .await?
        .iter()
        .map(|r| minute_from_row(r, table))
        .collect()
}

async fn put_state(conn: &mut PgConnection, s: &ReplayState) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO replay_state (id, snapshot_id, owner, status, complete, position, target,
             events, calls, unverified, started_at, updated_at, finished_at, error)
         VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (id) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id,
             owner = EXCLUDED.owner, status = EXCLUDED.status, complete = EXCLUDED.complete,
             position = EXCLUDED.position, target = EXCLUDED.target, events = EXCLUDED.events,
             calls = EXCLUDED.calls, unverified = EXCLUDED.unverified,
             started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
             finished_at = EXCLUDED.finished_at, error = EXCLUDED.error",
    )
    .bind(&s.snapshot_id)
    .bind(&s.owner)
    .bind(&s.status)
    .bind(s.complete)
    .bind(i(s.position))
    .bind(i(s.target))
    .bind(i(s.events))
    .bind(i(s.calls))
    .bind(i(s.unverified))
    .bind(&s.started_at)
    .bind(&s.updated_at)
    .bind(&s.finished_at)
    .bind(&s.error)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn get_state(
    conn: impl sqlx::PgExecutor<'_>,
    lock: bool,
) -> Result<Option<ReplayState>, StoreError> {
    let sql = if lock {
        "SELECT * FROM replay_state WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT * FROM replay_state WHERE id = 1"
    };
    sqlx::query(sql)
        .fetch_optional(conn)
        .await?
        .map(|r| state_from_row(&r))
        .transpose()
}

/// Whether this run still owns the replay (the state row stays locked
/// until the transaction ends).
async fn owns(conn: &mut PgConnection, s: &ReplayState) -> Result<(), StoreError> {
    match get_state(&mut *conn, true).await? {
        Some(now) if now.owner == s.owner => Ok(()),
        _ => Err(taken_over()),
    }
}

impl PgStore {
    /// A transaction that ledger inserts wait for: `spend_minutes` locked
    /// EXCLUSIVE first, then a REPEATABLE READ snapshot.
    async fn begin_swap(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        sqlx::query("LOCK TABLE spend_minutes IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Fails when `spend_minutes` holds a restored snapshot only.
    pub(super) async fn spend_complete(&self) -> Result<(), StoreError> {
        match get_state(self.pool(), false).await? {
            Some(s) if !s.complete => Err(incomplete(&s)),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl RecoveryStore for PgStore {
    async fn spend_minutes(&self) -> Result<Vec<MinuteSpend>, StoreError> {
        read_minutes(
            self.pool(),
            "SELECT principal_id, minute_ms, currency, amount::text AS amount, calls
             FROM spend_minutes ORDER BY principal_id, minute_ms, currency",
            None,
            "spend_minutes",
        )
        .await
    }

    async fn spend_from_ledger(&self) -> Result<Vec<MinuteSpend>, StoreError> {
        let mut tally = Tally::default();
        for row in sqlx::query(LEDGER_CALLS).fetch_all(self.pool()).await? {
            tally.add_row(&row)?;
        }
        Ok(tally.rows())
    }

    async fn snapshot_begin(
        &self,
        info: &SnapshotInfo,
        rows: &[MinuteSpend],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO ledger_snapshots (id, created_at, status, tree_size, batch_id, checkpoint)
             VALUES ($1, $2, 'building', $3, $4, $5)",
        )
        .bind(&info.id)
        .bind(&info.created_at)
        .bind(i(info.tree_size))
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
            "UPDATE ledger_snapshots SET status = 'complete', digest = $1, calls = $2,
                 principals = $3, signature = $5
             WHERE id = $4 AND status = 'building'",
        )
        .bind(&info.digest)
        .bind(i(info.calls))
        .bind(i(info.principals))
        .bind(&info.id)
        .bind(&info.signature)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn snapshot_discard(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM ledger_snapshots WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn snapshots(&self, id: Option<&str>) -> Result<Vec<SnapshotInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM ledger_snapshots
             WHERE status = 'complete' AND ($1::text IS NULL OR id = $1)
             ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(snapshot_from_row).collect()
    }

    async fn snapshot_rows(&self, id: &str) -> Result<Vec<MinuteSpend>, StoreError> {
        read_minutes(
            self.pool(),
            "SELECT principal_id, minute_ms, currency, amount::text AS amount, calls
             FROM snapshot_spend WHERE snapshot_id = $1
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
        let mut tx = self.begin_swap().await?;
        sqlx::query("DELETE FROM spend_minutes")
            .execute(&mut *tx)
            .await?;
        add_spend(&mut tx, "spend_minutes", None, rows).await?;
        put_state(&mut tx, state).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replay_begin(
        &self,
        rows: &[MinuteSpend],
        state: &ReplayState,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        // The state row first: two runs starting at once take turns.
        get_state(&mut *tx, true).await?;
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
        let mut tx = self.pool().begin().await?;
        owns(&mut tx, state).await?;
        add_spend(&mut tx, "replay_spend", None, rows).await?;
        put_state(&mut tx, state).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replay_finish(&self, state: &ReplayState) -> Result<ReplayState, StoreError> {
        let mut tx = self.begin_swap().await?;
        owns(&mut tx, state).await?;
        let pos = i(state.position);
        let tail: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM merkle_leaves WHERE idx >= $1)
                  + (SELECT COUNT(*) FROM ledger_pending)",
        )
        .bind(pos)
        .fetch_one(&mut *tx)
        .await?;
        let mut tally = Tally::default();
        for row in sqlx::query(TAIL).bind(pos).fetch_all(&mut *tx).await? {
            tally.add_row(&row)?;
        }
        let rows = tally.rows();
        add_spend(&mut tx, "replay_spend", None, &rows).await?;
        sqlx::query("DELETE FROM spend_minutes")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO spend_minutes (principal_id, minute_ms, currency, amount, calls)
             SELECT principal_id, minute_ms, currency, amount, calls FROM replay_spend",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM replay_spend")
            .execute(&mut *tx)
            .await?;
        let done = finished(state.clone(), tail, &rows);
        put_state(&mut tx, &done).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn replay_fail(&self, state: &ReplayState) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        owns(&mut tx, state).await?;
        put_state(&mut tx, state).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replay_state(&self) -> Result<Option<ReplayState>, StoreError> {
        get_state(self.pool(), false).await
    }
}
