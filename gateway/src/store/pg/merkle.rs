//! The ledger's Merkle log on PostgreSQL (see `crate::store::merkle`).
//! Sealers (every ledger writer, `caracal merkle seal`) take turns through
//! one transaction-scoped advisory lock, so leaf indexes are given in one
//! total order however many writers run.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::store::ledger::from_row;
use crate::store::merkle::{
    batch_due, batch_from_row, check_sealed, digest, i, leaf_from_row, push_batch_filter,
    queued_leaf, resolve_leaves, u, Batch, BatchFilter, Digest, Due, Leaf, MerkleStore, Queued,
    SealFn, Sealing,
};
use crate::store::StoreError;

/// The advisory lock every sealer of a database takes ("caracal" in ASCII).
const SEAL_LOCK: i64 = 0x0063_6172_6163_616c;

/// The stored hashes at `indexes` that exist.
async fn read_hashes(
    db: impl sqlx::PgExecutor<'_>,
    indexes: &[u64],
) -> Result<HashMap<u64, Digest>, StoreError> {
    let want: Vec<i64> = indexes.iter().map(|k| i(*k)).collect();
    let mut out = HashMap::with_capacity(indexes.len());
    for row in sqlx::query("SELECT idx, hash FROM merkle_hashes WHERE idx = ANY($1)")
        .bind(&want)
        .fetch_all(db)
        .await?
    {
        let h: Vec<u8> = row.try_get("hash")?;
        out.insert(
            u(row.try_get("idx")?, "merkle_hashes", "idx")?,
            digest(&h, "merkle_hashes")?,
        );
    }
    Ok(out)
}

/// Takes events off the sealing queue, by its key.
async fn unqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ts: &[i64],
    ids: &[String],
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM ledger_pending
         WHERE (ts_ms, id) IN (SELECT * FROM UNNEST($1::int8[], $2::text[]))",
    )
    .bind(ts)
    .bind(ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl MerkleStore for PgStore {
    async fn seal_pending(&self, due: Due, seal: SealFn<'_>) -> Result<Option<Batch>, StoreError> {
        // Nothing due (the common answer, every second from every writer):
        // known from the queue's key without the lock or reading a row.
        if !batch_due(self.pool(), &due).await? {
            return Ok(None);
        }
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEAL_LOCK)
            .execute(&mut *tx)
            .await?;
        // Again under the lock: another sealer may have taken it.
        if !batch_due(&mut *tx, &due).await? {
            tx.commit().await?;
            return Ok(None);
        }
        let rows =
            sqlx::query("SELECT ts_ms, id, leaf FROM ledger_pending ORDER BY ts_ms, id LIMIT $1")
                .bind(due.limit())
                .fetch_all(&mut *tx)
                .await?;
        let mut head: Vec<Queued> = Vec::with_capacity(rows.len());
        for row in &rows {
            head.push((
                row.try_get("id")?,
                row.try_get("ts_ms")?,
                queued_leaf(row.try_get("leaf")?),
            ));
        }
        // Taken off by key, not by range: writers queue concurrently, and
        // one may have committed an older key since the head was read.
        let (head_ts, head_ids): (Vec<i64>, Vec<String>) =
            head.iter().map(|q| (q.1, q.0.clone())).unzip();
        unqueue(&mut tx, &head_ts, &head_ids).await?;
        // The rows of events queued without a leaf (before leaves were
        // queued, or by hand).
        let (want_ts, want_ids): (Vec<i64>, Vec<String>) = head
            .iter()
            .filter(|q| q.2.is_none())
            .map(|q| (q.1, q.0.clone()))
            .unzip();
        let mut rows_of = HashMap::new();
        if !want_ids.is_empty() {
            for row in sqlx::query(
                "SELECT e.* FROM UNNEST($1::int8[], $2::text[]) AS q (ts_ms, id)
                 JOIN ledger_events e ON e.id = q.id AND e.ts_ms = q.ts_ms",
            )
            .bind(&want_ts)
            .bind(&want_ids)
            .fetch_all(&mut *tx)
            .await?
            {
                let e = from_row(&row)?;
                rows_of.insert(e.id.clone(), e);
            }
        }
        let leaves = resolve_leaves(head, &rows_of);
        if leaves.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        let last = sqlx::query("SELECT * FROM merkle_batches ORDER BY number DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| batch_from_row(&r))
            .transpose()?;
        let size = last.as_ref().map_or(0, |b| b.end);
        let frontier = read_hashes(&mut *tx, &crate::merkle::tree::frontier_indexes(size)).await?;
        let n = leaves.len();
        let (ts, ids): (Vec<i64>, Vec<String>) =
            leaves.iter().map(|l| (l.ts_ms, l.id.clone())).unzip();
        let sealed = seal(Sealing {
            last: last.clone(),
            size,
            frontier,
            leaves,
        })
        .map_err(StoreError::Seal)?;
        check_sealed((&last, size, n), &sealed)?;
        let idx: Vec<i64> = (0..n as u64).map(|k| i(size + k)).collect();
        sqlx::query(
            "INSERT INTO merkle_leaves (idx, event_id, ts_ms)
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[])",
        )
        .bind(&idx)
        .bind(&ids)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        let (hidx, hashes): (Vec<i64>, Vec<Vec<u8>>) = sealed
            .stored
            .iter()
            .map(|(k, h)| (i(*k), h.to_vec()))
            .unzip();
        sqlx::query(
            "INSERT INTO merkle_hashes (idx, hash) SELECT * FROM UNNEST($1::int8[], $2::bytea[])",
        )
        .bind(&hidx)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        let b = &sealed.batch;
        sqlx::query(
            "INSERT INTO merkle_batches (number, id, start_index, end_index, root, checkpoint, first_ts_ms, last_ts_ms, sealed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(sealed.batch))
    }

    async fn pending(&self) -> Result<(u64, Option<i64>), StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n, MIN(ts_ms) AS oldest FROM ledger_pending")
            .fetch_one(self.pool())
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok((n.max(0) as u64, row.try_get("oldest")?))
    }

    async fn batches(&self, filter: &BatchFilter) -> Result<Vec<Batch>, StoreError> {
        let mut q: sqlx::QueryBuilder<sqlx::Postgres> =
            sqlx::QueryBuilder::new("SELECT * FROM merkle_batches WHERE true");
        push_batch_filter(&mut q, filter);
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(batch_from_row).collect()
    }

    async fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.idx AS leaf_idx, l.event_id AS leaf_event_id, e.*
             FROM merkle_leaves l LEFT JOIN ledger_events e ON e.id = l.event_id AND e.ts_ms = l.ts_ms
             WHERE l.idx >= $1 AND l.idx < $2 ORDER BY l.idx",
        )
        .bind(i(start))
        .bind(i(end))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(leaf_from_row).collect()
    }

    async fn merkle_hashes(&self, indexes: &[u64]) -> Result<HashMap<u64, Digest>, StoreError> {
        read_hashes(self.pool(), indexes).await
    }

    async fn leaf_index(&self, event_id: &str) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT idx FROM merkle_leaves WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| u(r.try_get("idx")?, "merkle_leaves", "idx"))
            .transpose()
    }
}
