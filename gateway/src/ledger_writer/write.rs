//! Writing a batch's events to PostgreSQL: the whole batch in one
//! transaction when the database takes it; when it refuses a row for
//! good, the batch is split in halves until the rows it refuses stand
//! alone, so only those go to the dead-letter queue.

use std::ops::Range;

use crate::ledger::LedgerEvent;
use crate::store::{PgStore, StoreError};

/// What writing a batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows inserted (events whose id the ledger did not hold yet).
    pub inserted: u64,
    /// The events the database refused even alone: index in the batch,
    /// and the database's error.
    pub refused: Vec<(usize, String)>,
}

/// Whether the database refused the data itself (SQLSTATE class 22, data
/// exception, or 23, integrity constraint violation): retrying the same
/// rows cannot succeed. Anything else (connection lost, timeouts,
/// deadlocks, a server shutting down, …) may pass, and is retried.
pub fn is_permanent(e: &StoreError) -> bool {
    let StoreError::Db(sqlx::Error::Database(db)) = e else {
        return false;
    };
    db.code()
        .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

/// Writes `events` (each part in one transaction, idempotent by event id,
/// aggregates with them). Fails only with an error worth retrying; the
/// parts committed before it are harmless to write again.
pub async fn write_events(store: &PgStore, events: &[LedgerEvent]) -> Result<Written, StoreError> {
    let mut written = Written::default();
    // Parts still to write, the next one last.
    let mut todo: Vec<Range<usize>> = Vec::new();
    todo.push(0..events.len());
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        match store.append_ledger_events(&events[range.clone()]).await {
            Ok(inserted) => written.inserted += inserted,
            Err(e) if is_permanent(&e) => {
                if range.len() == 1 {
                    written.refused.push((range.start, e.to_string()));
                } else {
                    // The first half is written first (popped last-in).
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
            }
            Err(e) => return Err(e),
        }
    }
    written.refused.sort();
    Ok(written)
}
