//! Providers on PostgreSQL.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgStore;
use crate::model::ProviderDef;
use crate::store::providers::{decode, encode, taken};
use crate::store::row::Columns;
use crate::store::{now, ProviderStore, StoreError};

pub(super) async fn all(conn: &mut PgConnection) -> Result<Vec<ProviderDef>, StoreError> {
    let rows = sqlx::query("SELECT name, definition FROM providers ORDER BY name")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| decode(&r.text("name")?, &r.text("definition")?))
        .collect()
}

#[async_trait]
impl ProviderStore for PgStore {
    async fn put_provider(&self, def: &ProviderDef, replace: bool) -> Result<(), StoreError> {
        let json = encode(def)?;
        let mut tx = self.begin_change().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM providers WHERE name = $1")
                .bind(&def.name)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_some() && !replace {
            return Err(taken(&def.name));
        }
        let ts = now();
        sqlx::query(
            "INSERT INTO providers (name, definition, created_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
        )
        .bind(&def.name)
        .bind(json)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_providers(&self) -> Result<Vec<ProviderDef>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        all(&mut conn).await
    }

    async fn get_provider(&self, name: &str) -> Result<ProviderDef, StoreError> {
        let json: Option<String> =
            sqlx::query_scalar("SELECT definition FROM providers WHERE name = $1")
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
        let n = sqlx::query("DELETE FROM providers WHERE name = $1")
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
