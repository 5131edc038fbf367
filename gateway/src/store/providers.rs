//! Providers: stored as their JSON definition, keyed by name.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::row::Columns;
use super::{now, SqliteStore, StoreError};
use crate::model::ProviderDef;

pub(super) fn decode(name: &str, json: &str) -> Result<ProviderDef, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        table: "providers",
        message: format!("provider {name:?}: {e}"),
    })
}

pub(super) fn encode(def: &ProviderDef) -> Result<String, StoreError> {
    serde_json::to_string(def).map_err(|e| StoreError::Corrupt {
        table: "providers",
        message: e.to_string(),
    })
}

pub(super) fn taken(name: &str) -> StoreError {
    StoreError::Conflict(format!(
        "provider {name:?} already exists (use --replace to overwrite it)"
    ))
}

pub(super) async fn all(tx: &mut Transaction<'_, Sqlite>) -> Result<Vec<ProviderDef>, StoreError> {
    let rows = sqlx::query("SELECT name, definition FROM providers ORDER BY name")
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| decode(&r.text("name")?, &r.text("definition")?))
        .collect()
}

/// Provider definitions, keyed by name.
#[async_trait]
pub trait ProviderStore: Send + Sync {
    /// Adds a provider, or replaces it when `replace` is set (an existing
    /// name without `replace` is a `Conflict`).
    async fn put_provider(&self, def: &ProviderDef, replace: bool) -> Result<(), StoreError>;

    /// Every provider, sorted by name.
    async fn list_providers(&self) -> Result<Vec<ProviderDef>, StoreError>;

    /// The provider named `name`, or `NotFound`.
    async fn get_provider(&self, name: &str) -> Result<ProviderDef, StoreError>;

    /// Removes the provider named `name`; an unknown name is `NotFound`.
    async fn remove_provider(&self, name: &str) -> Result<(), StoreError>;
}

#[async_trait]
impl ProviderStore for SqliteStore {
    async fn put_provider(&self, def: &ProviderDef, replace: bool) -> Result<(), StoreError> {
        let json = encode(def)?;
        let mut tx = self.begin_change().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM providers WHERE name = ?")
                .bind(&def.name)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_some() && !replace {
            return Err(taken(&def.name));
        }
        let ts = now();
        sqlx::query(
            "INSERT INTO providers (name, definition, created_at, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
        )
        .bind(&def.name)
        .bind(json)
        .bind(&ts)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_providers(&self) -> Result<Vec<ProviderDef>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let all = all(&mut tx).await?;
        tx.commit().await?;
        Ok(all)
    }

    async fn get_provider(&self, name: &str) -> Result<ProviderDef, StoreError> {
        let json: Option<String> =
            sqlx::query_scalar("SELECT definition FROM providers WHERE name = ?")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        match json {
            Some(j) => decode(name, &j),
            None => Err(StoreError::NotFound(format!(
                "no provider named {name:?}; `caracal provider list` shows them"
            ))),
        }
    }

    async fn remove_provider(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_change().await?;
        let n = sqlx::query("DELETE FROM providers WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no provider named {name:?}")));
        }
        tx.commit().await?;
        Ok(())
    }
}
