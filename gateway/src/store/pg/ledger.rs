//! The ledger on PostgreSQL: monthly partitions made on demand, batched
//! idempotent inserts that maintain the per-minute spend aggregates,
//! filtered queries.
//!
//! Idempotency: `ledger_events`' primary key must contain the partition
//! key, so it cannot make an id unique across months. Each insert claims
//! its ids in `ledger_event_ids` (`ON CONFLICT DO NOTHING ... RETURNING`)
//! and writes only the rows it claimed, in the same statement. The claim
//! table's unique index serialises concurrent writers of an id (the second
//! waits for the first to commit, then skips), which a check of
//! `ledger_events` before inserting would not. Its cost is one narrow row
//! and one index entry per event.

use async_trait::async_trait;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use super::PgStore;
use crate::ledger::LedgerEvent;
use crate::store::ledger::{from_row, i, spend_from_row};
use crate::store::{LedgerFilter, LedgerStore, Spend, StoreError};

/// Events per statement: every column is one array parameter, so a
/// statement's size is bounded by memory, not by a parameter limit.
const BATCH: usize = 4096;

/// Claims the ids of a batch, then writes the rows claimed, queues them
/// for sealing into the Merkle log (`ledger_pending`, with the leaf hash
/// of each, computed here from the event written) and adds the cost of
/// the call events among them to `spend_minutes`, and answers how many
/// rows it wrote. Duplicates within the batch keep their first
/// occurrence, as a second insert of an id would. `ON CONFLICT DO NOTHING`
/// on `ledger_events` only guards a row whose claim was lost (it cannot
/// happen through the store). Aggregates are added in key order, so two
/// writers updating the same minutes lock them in the same order.
const INSERT: &str = "
WITH batch AS (
    SELECT DISTINCT ON (id) *
    FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                $13::text[], $14::int8[], $15::int8[], $16::int8[], $17::int8[], $18::int8[],
                $19::text[], $20::int8[], $21::int8[], $22::int8[], $23::text[], $24::text[],
                $25::text[], $26::text[], $27::text[], $28::text[], $29::text[], $30::bytea[])
         WITH ORDINALITY
         AS b (id, ts, ts_ms, kind, principal_id, mode, provider, resource, action, method,
               url, decision, code, status, request_bytes, response_bytes, duration_ms,
               duration_us, model, input_tokens, output_tokens, cached_input_tokens, usage,
               detail, mandate_id, cost, currency, cost_basis, reserved, leaf, ord)
    ORDER BY id, ord
), claimed AS (
    INSERT INTO ledger_event_ids (id, ts_ms)
    SELECT id, ts_ms FROM batch
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), inserted AS (
INSERT INTO ledger_events (id, ts, ts_ms, kind, principal_id, mode, provider, resource, action,
                           method, url, decision, code, status, request_bytes, response_bytes,
                           duration_ms, duration_us, model, input_tokens, output_tokens,
                           cached_input_tokens, usage, detail, mandate_id, cost, currency,
                           cost_basis, reserved)
SELECT b.id, b.ts, b.ts_ms, b.kind, b.principal_id, b.mode, b.provider, b.resource, b.action,
       b.method, b.url, b.decision, b.code, b.status, b.request_bytes, b.response_bytes,
       b.duration_ms, b.duration_us, b.model, b.input_tokens, b.output_tokens,
       b.cached_input_tokens, b.usage, b.detail, b.mandate_id, b.cost, b.currency,
       b.cost_basis, b.reserved
FROM batch b JOIN claimed c ON c.id = b.id
ON CONFLICT DO NOTHING
RETURNING id, principal_id, currency, ts_ms, kind, cost
), queued AS (
    INSERT INTO ledger_pending (id, ts_ms, leaf)
    SELECT i.id, i.ts_ms, b.leaf FROM inserted i JOIN batch b ON b.id = i.id
), spent AS (
    INSERT INTO spend_minutes (principal_id, minute_ms, currency, amount, calls)
    SELECT principal_id, ts_ms - (((ts_ms % 60000) + 60000) % 60000), COALESCE(currency, ''),
           SUM(cost::numeric), COUNT(*)
    FROM inserted
    WHERE kind = 'call' AND cost IS NOT NULL AND principal_id IS NOT NULL
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (principal_id, minute_ms, currency) DO UPDATE
    SET amount = spend_minutes.amount + EXCLUDED.amount,
        calls = spend_minutes.calls + EXCLUDED.calls
)
SELECT COUNT(*) FROM inserted";

/// Inserts events inside the caller's transaction (idempotent by id), so a
/// change and the ledger row that records it commit together, and answers
/// how many were new. The months of the events should have their
/// partitions ([`PgStore::ensure_partitions`]); rows of a month without
/// one land in the DEFAULT partition.
pub(super) async fn insert_events(
    conn: &mut PgConnection,
    events: &[LedgerEvent],
) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for chunk in events.chunks(BATCH) {
        // One array per column, NULL where the event has no value.
        let text = |f: fn(&LedgerEvent) -> Option<String>| chunk.iter().map(f).collect::<Vec<_>>();
        let int = |f: fn(&LedgerEvent) -> Option<i64>| chunk.iter().map(f).collect::<Vec<_>>();
        fn dec(d: Option<crate::money::Decimal>) -> Option<String> {
            d.map(|d| d.to_string())
        }
        let count: i64 = sqlx::query_scalar(INSERT)
            .bind(text(|e| Some(e.id.clone())))
            .bind(text(|e| Some(e.ts.clone())))
            .bind(int(|e| Some(e.ts_ms)))
            .bind(text(|e| Some(e.kind.as_str().into())))
            .bind(text(|e| e.principal_id.clone()))
            .bind(text(|e| Some(e.mode.as_str().into())))
            .bind(text(|e| e.provider.clone()))
            .bind(text(|e| e.resource.clone()))
            .bind(text(|e| e.action.clone()))
            .bind(text(|e| e.method.clone()))
            .bind(text(|e| e.url.clone()))
            .bind(text(|e| Some(e.decision.as_str().into())))
            .bind(text(|e| Some(e.code.as_str().into())))
            .bind(int(|e| e.status.map(i64::from)))
            .bind(int(|e| Some(i(e.request_bytes))))
            .bind(int(|e| Some(i(e.response_bytes))))
            .bind(int(|e| Some(i(e.duration_ms))))
            .bind(int(|e| Some(i(e.duration_us))))
            .bind(text(|e| e.model.clone()))
            .bind(int(|e| e.input_tokens.map(i)))
            .bind(int(|e| e.output_tokens.map(i)))
            .bind(int(|e| e.cached_input_tokens.map(i)))
            .bind(text(|e| e.usage.map(|u| u.as_str().into())))
            .bind(text(|e| e.detail.clone()))
            .bind(text(|e| e.mandate_id.clone()))
            .bind(text(|e| dec(e.cost)))
            .bind(text(|e| e.currency.clone()))
            .bind(text(|e| e.cost_basis.map(|b| b.as_str().into())))
            .bind(text(|e| dec(e.reserved)))
            .bind(
                chunk
                    .iter()
                    .map(|e| crate::merkle::leaf::leaf_hash(e).0.to_vec())
                    .collect::<Vec<_>>(),
            )
            .fetch_one(&mut *conn)
            .await?;
        inserted += u64::try_from(count).unwrap_or(0);
    }
    Ok(inserted)
}

/// A UTC calendar month of the ledger: its partition holds `ts_ms` in
/// `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Month {
    pub start_ms: i64,
    pub end_ms: i64,
    year: i16,
    month: i8,
}

impl Month {
    /// The month holding `ts_ms`; None before 1970 or after 9999, whose
    /// rows go to the DEFAULT partition.
    pub fn of(ts_ms: i64) -> Option<Self> {
        let ts = jiff::Timestamp::from_millisecond(ts_ms).ok()?;
        let day = ts.to_zoned(TimeZone::UTC).date();
        if day.year() < 1970 {
            return None;
        }
        let first = day.first_of_month();
        let next = first.last_of_month().tomorrow().ok()?;
        let ms = |d: Date| -> Option<i64> {
            Some(d.to_zoned(TimeZone::UTC).ok()?.timestamp().as_millisecond())
        };
        Some(Self {
            start_ms: ms(first)?,
            end_ms: ms(next)?,
            year: first.year(),
            month: first.month(),
        })
    }

    /// Its partition's name, `ledger_events_y2026m11`.
    pub fn table(&self) -> String {
        format!("ledger_events_y{:04}m{:02}", self.year, self.month)
    }
}

/// The advisory lock key of partition creation ("caracal" and 1).
const PARTITION_LOCK: i64 = 0x6361_7261_6361_6c01;

/// Creates the partition of `month` unless it exists, moving into it any
/// rows of the month the DEFAULT partition holds. Creators take turns on
/// an advisory lock, so one that waited finds the partition made.
async fn create_partition(pool: &PgPool, month: &Month) -> Result<(), StoreError> {
    let name = month.table();
    let (start, end) = (month.start_ms, month.end_ms);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PARTITION_LOCK)
        .execute(&mut *tx)
        .await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        return Ok(());
    }
    // Writers of the DEFAULT partition wait from here until the commit,
    // so no row of the month lands there between the move and the attach.
    let statements = [
        format!("CREATE TABLE {name} (LIKE ledger_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"),
        "LOCK TABLE ledger_events_default IN ACCESS EXCLUSIVE MODE".to_string(),
        format!(
            "WITH moved AS (DELETE FROM ledger_events_default
                            WHERE ts_ms >= {start} AND ts_ms < {end} RETURNING *)
             INSERT INTO {name} SELECT * FROM moved"
        ),
        format!("ALTER TABLE ledger_events ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})"),
    ];
    for statement in &statements {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

impl PgStore {
    /// Makes sure the months of `times` (unix milliseconds) have their
    /// ledger partitions. Each is looked for once per handle; creating one
    /// is a short transaction of its own, never inside a change, since it
    /// locks the DEFAULT partition.
    pub(super) async fn ensure_partitions(
        &self,
        times: impl IntoIterator<Item = i64>,
    ) -> Result<(), StoreError> {
        let months: std::collections::BTreeSet<Month> =
            times.into_iter().filter_map(Month::of).collect();
        for month in months {
            if self.known_months().contains(&month.start_ms) {
                continue;
            }
            create_partition(self.pool(), &month).await?;
            self.known_months().insert(month.start_ms);
        }
        Ok(())
    }
}

impl PgStore {
    /// Inserts events in one transaction, idempotent by id, with their
    /// spend added to the per-minute aggregates in the same transaction;
    /// answers how many were new (a redelivered event is not, and adds
    /// nothing to the aggregates).
    pub async fn append_ledger_events(&self, events: &[LedgerEvent]) -> Result<u64, StoreError> {
        self.ensure_partitions(events.iter().map(|e| e.ts_ms))
            .await?;
        let mut tx = self.pool().begin().await?;
        let inserted = insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(inserted)
    }
}

#[async_trait]
impl LedgerStore for PgStore {
    async fn insert_ledger_events(&self, events: &[LedgerEvent]) -> Result<(), StoreError> {
        self.append_ledger_events(events).await.map(drop)
    }

    async fn query_ledger(&self, filter: &LedgerFilter) -> Result<Vec<LedgerEvent>, StoreError> {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT * FROM ledger_events WHERE true");
        if let Some(p) = &filter.principal_id {
            q.push(" AND principal_id = ").push_bind(p);
        }
        if let Some(k) = &filter.kind {
            q.push(" AND kind = ").push_bind(k.as_str());
        }
        if let Some(m) = &filter.mandate_id {
            q.push(" AND mandate_id = ").push_bind(m);
        }
        if let Some(s) = filter.start_ms {
            q.push(" AND ts_ms >= ").push_bind(s);
        }
        if let Some(e) = filter.end_ms {
            q.push(" AND ts_ms <= ").push_bind(e);
        }
        q.push(" ORDER BY ts_ms, id");
        if let Some(l) = filter.limit {
            q.push(" LIMIT ").push_bind(l);
        }
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(from_row).collect()
    }

    async fn spend_since(
        &self,
        principal_id: &str,
        since_ms: i64,
    ) -> Result<Vec<Spend>, StoreError> {
        let rows = sqlx::query(
            "SELECT ts_ms, cost, currency FROM ledger_events
             WHERE principal_id = $1 AND ts_ms >= $2 AND kind = 'call' AND cost IS NOT NULL
             ORDER BY ts_ms, id",
        )
        .bind(principal_id)
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(spend_from_row).collect()
    }

    async fn spend_by_minute_since(
        &self,
        principal_id: &str,
        since_ms: i64,
    ) -> Result<Vec<Spend>, StoreError> {
        self.spend_aggregated_since(principal_id, since_ms).await
    }
}
