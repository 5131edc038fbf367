//! Ledger rows: idempotent batch inserts and filtered queries.

use async_trait::async_trait;
use sqlx::{Connection, QueryBuilder, Sqlite};

use super::row::Columns;
use super::{SqliteStore, StoreError};
use crate::ledger::LedgerEvent;

/// Which events a query returns.
#[derive(Debug, Clone, Default)]
pub struct LedgerFilter {
    pub principal_id: Option<String>,
    /// Calls (gateway traffic) or authority events (mandates issued,
    /// delegated, revoked, refused).
    pub kind: Option<crate::ledger::EventKind>,
    /// Inclusive lower bound, milliseconds since the epoch.
    pub start_ms: Option<i64>,
    /// Inclusive upper bound, milliseconds since the epoch.
    pub end_ms: Option<i64>,
    pub limit: Option<i64>,
    /// Events about one mandate (calls under it, its issue and revocation).
    pub mandate_id: Option<String>,
}

/// A wire enum read from a column; an unknown value is a corrupt row.
fn wire<T: std::str::FromStr<Err = crate::wire::UnknownWire>>(
    row: &impl Columns,
    col: &str,
) -> Result<T, StoreError> {
    row.text(col)?
        .parse()
        .map_err(|e: crate::wire::UnknownWire| StoreError::Corrupt {
            table: "ledger_events",
            message: format!("{col}: {e}"),
        })
}

fn opt_wire<T: std::str::FromStr<Err = crate::wire::UnknownWire>>(
    row: &impl Columns,
    col: &str,
) -> Result<Option<T>, StoreError> {
    match row.opt_text(col)? {
        None => Ok(None),
        Some(_) => wire(row, col).map(Some),
    }
}

fn opt_u64(row: &impl Columns, col: &str) -> Result<Option<u64>, StoreError> {
    Ok(row.opt_int(col)?.map(|v| v.max(0) as u64))
}

pub(super) fn from_row(row: &impl Columns) -> Result<LedgerEvent, StoreError> {
    Ok(LedgerEvent {
        id: row.text("id")?,
        ts: row.text("ts")?,
        ts_ms: row.int("ts_ms")?,
        kind: wire(row, "kind")?,
        principal_id: row.opt_text("principal_id")?,
        mode: wire(row, "mode")?,
        provider: row.opt_text("provider")?,
        resource: row.opt_text("resource")?,
        action: row.opt_text("action")?,
        method: row.opt_text("method")?,
        url: row.opt_text("url")?,
        decision: wire(row, "decision")?,
        code: wire(row, "code")?,
        status: row.opt_int("status")?.and_then(|s| u16::try_from(s).ok()),
        request_bytes: opt_u64(row, "request_bytes")?.unwrap_or(0),
        response_bytes: opt_u64(row, "response_bytes")?.unwrap_or(0),
        duration_ms: opt_u64(row, "duration_ms")?.unwrap_or(0),
        duration_us: opt_u64(row, "duration_us")?.unwrap_or(0),
        model: row.opt_text("model")?,
        input_tokens: opt_u64(row, "input_tokens")?,
        output_tokens: opt_u64(row, "output_tokens")?,
        cached_input_tokens: opt_u64(row, "cached_input_tokens")?,
        usage: opt_wire(row, "usage")?,
        detail: row.opt_text("detail")?,
        mandate_id: row.opt_text("mandate_id")?,
        cost: decimal(row, "cost")?,
        currency: row.opt_text("currency")?,
        cost_basis: opt_wire(row, "cost_basis")?,
        reserved: decimal(row, "reserved")?,
    })
}

fn decimal(row: &impl Columns, col: &str) -> Result<Option<crate::money::Decimal>, StoreError> {
    let Some(text) = row.opt_text(col)? else {
        return Ok(None);
    };
    crate::money::parse_amount(&text)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            table: "ledger_events",
            message: format!("{col}: {e}"),
        })
}

/// A row of `ts_ms, cost, currency`.
pub(super) fn spend_from_row(row: &impl Columns) -> Result<Spend, StoreError> {
    Ok(Spend {
        ts_ms: row.int("ts_ms")?,
        amount: decimal(row, "cost")?.unwrap_or_default(),
        currency: row.opt_text("currency")?.unwrap_or_default(),
    })
}

/// A count as stored (BIGINT / INTEGER); counts beyond `i64::MAX` are
/// stored as `i64::MAX`.
pub(super) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One recorded cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    pub ts_ms: i64,
    pub amount: crate::money::Decimal,
    pub currency: String,
}

/// The ledger: appended events, queried back.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Inserts events in one transaction. Re-inserting an event id is a
    /// no-op, so a retried batch never double counts.
    async fn insert_ledger_events(&self, events: &[LedgerEvent]) -> Result<(), StoreError>;

    /// Events matching `filter`, oldest first.
    async fn query_ledger(&self, filter: &LedgerFilter) -> Result<Vec<LedgerEvent>, StoreError>;

    /// The costs recorded for `principal_id` at or after `since_ms`,
    /// oldest first (call events only).
    async fn spend_since(
        &self,
        principal_id: &str,
        since_ms: i64,
    ) -> Result<Vec<Spend>, StoreError>;

    /// What `principal_id` spent per minute and currency from the minute
    /// holding `since_ms` on, oldest first, read from the spend aggregates
    /// (`spend_minutes`), not the ledger: each [`Spend`] is the exact sum
    /// of the costs of one minute and currency (`ts_ms` the minute's
    /// start). What budget counters are primed from. Fails while the
    /// aggregates hold a restored snapshot without the events after it
    /// ([`StoreError::Incomplete`]).
    async fn spend_by_minute_since(
        &self,
        principal_id: &str,
        since_ms: i64,
    ) -> Result<Vec<Spend>, StoreError>;
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn insert_ledger_events(&self, events: &[LedgerEvent]) -> Result<(), StoreError> {
        let mut tx = self.ledger.begin().await?;
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn query_ledger(&self, filter: &LedgerFilter) -> Result<Vec<LedgerEvent>, StoreError> {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT * FROM ledger_events WHERE 1 = 1");
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
             WHERE principal_id = ? AND ts_ms >= ? AND kind = 'call' AND cost IS NOT NULL
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
        self.spend_complete().await?;
        let rows = sqlx::query(
            "SELECT minute_ms, currency, amount FROM spend_minutes
             WHERE principal_id = ? AND minute_ms >= ?
             ORDER BY minute_ms, currency",
        )
        .bind(principal_id)
        .bind(super::minute_of(since_ms))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(minute_spend_from_row).collect()
    }
}

/// A row of `minute_ms, currency, amount` (an exact decimal as text).
pub(super) fn minute_spend_from_row(row: &impl Columns) -> Result<Spend, StoreError> {
    Ok(Spend {
        ts_ms: row.int("minute_ms")?,
        amount: super::recovery::parse(&row.text("amount")?, "spend_minutes")?,
        currency: row.text("currency")?,
    })
}

/// Rows per INSERT into the ledger (29 parameters each, about 3 700 a
/// statement, far below SQLite's limit): each statement is a hand-off to
/// SQLite's thread, so fewer and larger is faster, up to where the
/// statement's own size costs (measured with the embedded ledger benchmark,
/// 10 principals: 32 rows a statement wrote ~20 % fewer rows per second
/// than 128; 512 no more than 128).
const ROWS_PER_INSERT: usize = 128;

/// Inserts events inside the caller's transaction (idempotent by id), so a
/// change and the ledger row that records it commit together.
pub(super) async fn insert_events(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    events: &[LedgerEvent],
) -> Result<(), StoreError> {
    let mut spent = super::recovery::Tally::default();
    for chunk in super::statement_chunks(events, ROWS_PER_INSERT) {
        // The rows inserted (not those whose id was already there) are
        // queued for sealing with their leaves and add their cost to the
        // spend aggregates. Usually every row is new, which the count of
        // rows inserted shows: `RETURNING id` would send each id back from
        // SQLite's thread as a message of its own (a wake-up each, most of
        // what the writer's hand-offs cost). When some were there already,
        // the chunk is undone to its savepoint and inserted again, naming
        // the ids it inserts.
        let mut part = (**tx).begin().await?;
        let inserted = insert_rows(chunk, false)
            .build()
            .execute(&mut *part)
            .await?
            .rows_affected();
        let new = if usize::try_from(inserted).is_ok_and(|n| n == chunk.len()) {
            part.commit().await?;
            chunk.iter().collect()
        } else {
            part.rollback().await?;
            let ids: Vec<String> = insert_rows(chunk, true)
                .build_query_scalar()
                .fetch_all(&mut **tx)
                .await?;
            inserted_events(chunk, ids)
        };
        if new.is_empty() {
            continue;
        }
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO ledger_pending (ts_ms, id, leaf) ");
        q.push_values(&new, |mut b, e| {
            b.push_bind(e.ts_ms)
                .push_bind(&e.id)
                .push_bind(crate::merkle::leaf::leaf_hash(e).0.to_vec());
        });
        q.build().execute(&mut **tx).await?;
        spent.add_events(new);
    }
    super::recovery::add_to_spend_minutes(tx, &spent).await
}

/// The INSERT of `chunk` into the ledger, skipping ids already there;
/// with `returning`, it answers the ids it inserted.
fn insert_rows(chunk: &[LedgerEvent], returning: bool) -> QueryBuilder<'_, Sqlite> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO ledger_events (id, ts, ts_ms, kind, principal_id, mode, provider, resource, action, method, url, decision, code, status, request_bytes, response_bytes, duration_ms, duration_us, model, input_tokens, output_tokens, cached_input_tokens, usage, detail, mandate_id, cost, currency, cost_basis, reserved) ",
    );
    q.push_values(chunk, |mut b, e| {
        b.push_bind(&e.id)
            .push_bind(&e.ts)
            .push_bind(e.ts_ms)
            .push_bind(e.kind.as_str())
            .push_bind(&e.principal_id)
            .push_bind(e.mode.as_str())
            .push_bind(&e.provider)
            .push_bind(&e.resource)
            .push_bind(&e.action)
            .push_bind(&e.method)
            .push_bind(&e.url)
            .push_bind(e.decision.as_str())
            .push_bind(e.code.as_str())
            .push_bind(e.status.map(i64::from))
            .push_bind(i(e.request_bytes))
            .push_bind(i(e.response_bytes))
            .push_bind(i(e.duration_ms))
            .push_bind(i(e.duration_us))
            .push_bind(&e.model)
            .push_bind(e.input_tokens.map(i))
            .push_bind(e.output_tokens.map(i))
            .push_bind(e.cached_input_tokens.map(i))
            .push_bind(e.usage.map(|u| u.as_str()))
            .push_bind(&e.detail)
            .push_bind(&e.mandate_id)
            .push_bind(e.cost.map(|c| c.to_string()))
            .push_bind(&e.currency)
            .push_bind(e.cost_basis.map(|b| b.as_str()))
            .push_bind(e.reserved.map(|c| c.to_string()));
    });
    q.push(" ON CONFLICT (id) DO NOTHING");
    if returning {
        q.push(" RETURNING id");
    }
    q
}

/// The events among `events` whose ids an insert answered as inserted
/// (`inserted`, in any order; an id the table already had is not among
/// them), each once, in their order.
fn inserted_events(events: &[LedgerEvent], inserted: Vec<String>) -> Vec<&LedgerEvent> {
    let mut new: std::collections::HashSet<String> = inserted.into_iter().collect();
    events.iter().filter(|e| new.remove(&e.id)).collect()
}
