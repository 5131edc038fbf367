//! The per-minute spend aggregates (`spend_minutes`), maintained by every
//! ledger insert (see `ledger.rs`): what budget counters are primed from
//! in the distributed deployment.

use super::PgStore;
use crate::store::ledger::minute_spend_from_row;
use crate::store::{Spend, StoreError};

/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;

/// The start of the UTC minute holding `ts_ms`.
pub fn minute_of(ts_ms: i64) -> i64 {
    ts_ms - ts_ms.rem_euclid(MINUTE_MS)
}

impl PgStore {
    /// What `principal` spent per minute and currency from the minute
    /// holding `since_ms` on, oldest first: one [`Spend`] per minute and
    /// currency, `ts_ms` the minute's start, `amount` the exact sum of the
    /// ledger's costs in it. Exact when `since_ms` is a whole minute (as
    /// budget windows' starts are); otherwise the minute holding it counts
    /// whole, which errs towards more spend.
    pub async fn spend_aggregated_since(
        &self,
        principal: &str,
        since_ms: i64,
    ) -> Result<Vec<Spend>, StoreError> {
        self.spend_complete().await?;
        let rows = sqlx::query(
            "SELECT minute_ms, currency, amount::text AS amount FROM spend_minutes
             WHERE principal_id = $1 AND minute_ms >= $2
             ORDER BY minute_ms, currency",
        )
        .bind(principal)
        .bind(minute_of(since_ms))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(minute_spend_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_start_on_whole_minutes_before_and_after_the_epoch() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 60_000);
        assert_eq!(minute_of(-1), -60_000);
        assert_eq!(minute_of(-60_000), -60_000);
    }
}
