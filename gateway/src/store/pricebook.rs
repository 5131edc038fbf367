//! The pricebook's stored rows: prices operators set or imported. Built-in
//! defaults are not stored; `Pricebook::build` lays these rows over them.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::row::Columns;
use super::{now, SqliteStore, StoreError};
use crate::money::{parse_amount, Decimal};
use crate::pricing::{PriceKind, PriceRow, PriceSource};

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt {
        table: "prices",
        message,
    }
}

/// A row as read, checked as thoroughly as one about to be written: a
/// price the gateway cannot trust is an error, never a zero.
pub(super) fn from_row(row: &impl Columns) -> Result<PriceRow, StoreError> {
    let provider = row.text("provider")?;
    let kind = row.text("kind")?;
    let name = row.text("name")?;
    let key = format!("{provider} {kind} {name}");
    let amount = |column: &str| -> Result<Option<Decimal>, StoreError> {
        row.opt_text(column)?
            .map(|t| parse_amount(&t))
            .transpose()
            .map_err(|e| corrupt(format!("price {key}: {column}: {e}")))
    };
    let required = |column: &str| -> Result<Decimal, StoreError> {
        amount(column)?.ok_or_else(|| corrupt(format!("price {key}: {column} is missing")))
    };
    let kind = PriceKind::parse(&kind)
        .ok_or_else(|| corrupt(format!("price {key}: unknown kind {kind:?}")))?;
    let currency = row.text("currency")?;
    let source = row.text("source")?;
    let (input, output) = match kind {
        PriceKind::Model => (required("input")?, required("output")?),
        PriceKind::Resource | PriceKind::Tool => (Decimal::ZERO, Decimal::ZERO),
    };
    let context_window = row
        .opt_int("context_window")?
        .map(|w| u64::try_from(w).map_err(|_| corrupt(format!("price {key}: context_window {w}"))))
        .transpose()?;
    let price = PriceRow {
        currency: currency
            .parse()
            .map_err(|e| corrupt(format!("price {key}: {e}")))?,
        input_per_mtok: input,
        output_per_mtok: output,
        cached_input_per_mtok: amount("cached_input")?,
        cache_write_per_mtok: amount("cache_write")?,
        per_request: amount("per_request")?,
        context_window,
        source: PriceSource::parse(&source)
            .filter(|s| *s != PriceSource::Default)
            .ok_or_else(|| corrupt(format!("price {key}: unknown source {source:?}")))?,
        updated_at: Some(row.text("updated_at")?),
        provider,
        kind,
        name,
    };
    price.validate().map_err(|e| corrupt(e.to_string()))?;
    Ok(price)
}

pub(super) async fn all(tx: &mut Transaction<'_, Sqlite>) -> Result<Vec<PriceRow>, StoreError> {
    let rows = sqlx::query("SELECT * FROM prices ORDER BY provider, kind, name")
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

/// `prices` checked for storing, stamped now: each must pass
/// `PriceRow::validate`, come from `set` or `import`, and appear once;
/// else the batch is a `Conflict`.
pub(super) fn stamped(prices: &[PriceRow]) -> Result<Vec<PriceRow>, StoreError> {
    let ts = now();
    let mut stored = Vec::with_capacity(prices.len());
    for p in prices {
        p.validate()
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        if p.source == PriceSource::Default {
            return Err(StoreError::Conflict(format!(
                "price {}: built-in defaults are not stored",
                p.key()
            )));
        }
        if stored
            .iter()
            .any(|s: &PriceRow| (&s.provider, s.kind, &s.name) == (&p.provider, p.kind, &p.name))
        {
            return Err(StoreError::Conflict(format!(
                "price {} is given twice",
                p.key()
            )));
        }
        stored.push(PriceRow {
            updated_at: Some(ts.clone()),
            ..p.clone()
        });
    }
    Ok(stored)
}

/// A price's amount and window columns as stored: exact decimal text; a
/// resource or tool row has no input or output.
pub(super) struct StoredPrice {
    pub input: Option<String>,
    pub output: Option<String>,
    pub cached_input: Option<String>,
    pub cache_write: Option<String>,
    pub per_request: Option<String>,
    pub context_window: Option<i64>,
}

impl StoredPrice {
    pub fn of(p: &PriceRow) -> Self {
        let text = |d: Option<Decimal>| d.map(|d| d.to_string());
        let (input, output) = match p.kind {
            PriceKind::Model => (Some(p.input_per_mtok), Some(p.output_per_mtok)),
            PriceKind::Resource | PriceKind::Tool => (None, None),
        };
        Self {
            input: text(input),
            output: text(output),
            cached_input: text(p.cached_input_per_mtok),
            cache_write: text(p.cache_write_per_mtok),
            per_request: text(p.per_request),
            // validate() bounds the window far below i64::MAX.
            context_window: p.context_window.map(|w| w as i64),
        }
    }
}

pub(super) fn missing(provider: &str, kind: PriceKind, name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "no price is set for {provider} {} {name:?} (built-in defaults cannot be \
         removed, only set to another price)",
        kind.as_str()
    ))
}

/// The stored prices of the pricebook.
#[async_trait]
pub trait PricebookStore: Send + Sync {
    /// Stores `prices` (replacing rows with the same provider, kind and
    /// name) in one transaction: all of them or, on any error, none.
    /// Every row must pass `PriceRow::validate`, come from `set` or
    /// `import`, and appear once. Returns the rows as stored (with
    /// `updated_at`).
    async fn put_prices(&self, prices: &[PriceRow]) -> Result<Vec<PriceRow>, StoreError>;

    /// Removes a stored price; a built-in default it replaced applies
    /// again.
    async fn delete_price(
        &self,
        provider: &str,
        kind: PriceKind,
        name: &str,
    ) -> Result<(), StoreError>;

    /// The stored prices (not the built-in defaults), sorted by provider,
    /// kind and name.
    async fn list_prices(&self) -> Result<Vec<PriceRow>, StoreError>;
}

#[async_trait]
impl PricebookStore for SqliteStore {
    async fn put_prices(&self, prices: &[PriceRow]) -> Result<Vec<PriceRow>, StoreError> {
        let stored = stamped(prices)?;
        let mut tx = self.begin_change().await?;
        for p in &stored {
            let c = StoredPrice::of(p);
            sqlx::query(
                "INSERT INTO prices (provider, kind, name, currency, input, output, cached_input,
                                     cache_write, per_request, context_window, source, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
        let n = sqlx::query("DELETE FROM prices WHERE provider = ? AND kind = ? AND name = ?")
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
        let mut tx = self.pool().begin().await?;
        let all = all(&mut tx).await?;
        tx.commit().await?;
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::store::prelude::*;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("c.db")).await.unwrap();
        (dir, store)
    }

    fn model(name: &str, input: &str) -> PriceRow {
        let mut row = PriceRow::model(
            "openai",
            name,
            Currency::USD,
            parse_amount(input).unwrap(),
            parse_amount("8.00").unwrap(),
            Some(parse_amount("0.50").unwrap()),
            None,
            PriceSource::Set,
        );
        row.updated_at = None;
        row
    }

    #[tokio::test]
    async fn pricebook_corrupt_rows_are_errors_not_prices() {
        for (column, value) in [
            ("input", Some("abc")),
            ("input", Some("-1")),
            ("input", None),
            ("currency", Some("dollars")),
            ("source", Some("default")),
            ("cached_input", Some("1e3")),
            ("per_request", Some("1")),
        ] {
            let (_dir, store) = store().await;
            store.put_prices(&[model("gpt-4o", "2")]).await.unwrap();
            sqlx::query(&format!("UPDATE prices SET {column} = ?"))
                .bind(value)
                .execute(store.pool())
                .await
                .unwrap();
            let err = store.list_prices().await.unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::Corrupt {
                        table: "prices",
                        ..
                    }
                ),
                "{column}={value:?}: {err}"
            );
            assert!(store.load_state().await.is_err());
        }
    }
}
