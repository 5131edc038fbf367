//! Allowlist entries on PostgreSQL.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgStore;
use crate::model::{AllowlistEntry, PatternType};
use crate::store::allowlists::{from_row, missing, new_entry};
use crate::store::{AllowlistStore, StoreError};

pub(super) async fn all(conn: &mut PgConnection) -> Result<Vec<AllowlistEntry>, StoreError> {
    let rows = sqlx::query("SELECT * FROM allowlists ORDER BY created_at, id")
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

#[async_trait]
impl AllowlistStore for PgStore {
    async fn add_allowlist(
        &self,
        principal_id: &str,
        pattern: &str,
        pattern_type: PatternType,
    ) -> Result<AllowlistEntry, StoreError> {
        let entry = new_entry(principal_id, pattern, pattern_type);
        let mut tx = self.begin_change().await?;
        sqlx::query(
            "INSERT INTO allowlists (id, principal_id, pattern, pattern_type, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&entry.id)
        .bind(&entry.principal_id)
        .bind(&entry.pattern)
        .bind(entry.pattern_type.as_str())
        .bind(&entry.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(entry)
    }

    async fn list_allowlists(
        &self,
        principal_id: Option<&str>,
    ) -> Result<Vec<AllowlistEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM allowlists WHERE $1::text IS NULL OR principal_id = $1
             ORDER BY created_at, id",
        )
        .bind(principal_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn delete_allowlist(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_change().await?;
        let n = sqlx::query("DELETE FROM allowlists WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(missing(id));
        }
        tx.commit().await?;
        Ok(())
    }
}
