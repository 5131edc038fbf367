//! The pricebook's stored rows on PostgreSQL.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgStore;
use crate::pricing::{PriceKind, PriceRow};
use crate::store::pricebook::{from_row, missing, stamped, StoredPrice};
use crate::store::{PricebookStore, StoreError};

pub(super) async fn all(conn: &mut PgConnection) -> Result<Vec<PriceRow>, StoreError> {
    let rows = sqlx::query("SELECT * FROM prices ORDER BY provider, kind, name")
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

#[async_trait]
impl PricebookStore for PgStore {
    async fn put_prices(&self, prices: &[PriceRow]) -> Result<Vec<PriceRow>, StoreError> {
        let stored = stamped(prices)?;
        let mut tx = self.begin_change().await?;
        for p in &stored {
            let c = StoredPrice::of(p);
            sqlx::query(
                "INSERT INTO prices (provider, kind, name, currency, input, output, cached_input,
                                     cache_write, per_request, context_window, source, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (provider, kind, name) DO UPDATE SET
                     currency = excluded.currency, input = excluded.input,
                     output = excluded.output, cached_input = excluded.cached_input,
                     cache_write = excluded.cache_write, per_request = excluded.per_request,
                     context_window = excluded.context_window,
                     source = excluded.source, updated_at = excluded.updated_at",
            )
            .bind(&p.provider)
            .bind(p.kind.as_str())
            .bind(&p.name)
            .bind(p.currency.as_str())
            .bind(c.input)
            .bind(c.output)
            .bind(c.cached_input)
            .bind(c.cache_write)
            .bind(c.per_request)
            .bind(c.context_window)
            .bind(p.source.as_str())
            .bind(&p.updated_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn delete_price(
        &self,
        provider: &str,
        kind: PriceKind,
        name: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_change().await?;
        let n = sqlx::query("DELETE FROM prices WHERE provider = $1 AND kind = $2 AND name = $3")
            .bind(provider)
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(missing(provider, kind, name));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_prices(&self) -> Result<Vec<PriceRow>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        all(&mut conn).await
    }
}
