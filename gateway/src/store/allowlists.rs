//! Allowlist entries of principals.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::row::Columns;
use super::{now, SqliteStore, StoreError};
use crate::model::{AllowlistEntry, PatternType};

pub(super) fn from_row(row: &impl Columns) -> Result<AllowlistEntry, StoreError> {
    let kind = row.text("pattern_type")?;
    Ok(AllowlistEntry {
        id: row.text("id")?,
        principal_id: row.text("principal_id")?,
        pattern: row.text("pattern")?,
        pattern_type: PatternType::parse(&kind).ok_or_else(|| StoreError::Corrupt {
            table: "allowlists",
            message: format!("unknown pattern type {kind:?}"),
        })?,
        created_at: row.text("created_at")?,
    })
}

/// An entry added now, with a new id.
pub(super) fn new_entry(
    principal_id: &str,
    pattern: &str,
    pattern_type: PatternType,
) -> AllowlistEntry {
    AllowlistEntry {
        id: uuid::Uuid::now_v7().to_string(),
        principal_id: principal_id.to_string(),
        pattern: pattern.to_string(),
        pattern_type,
        created_at: now(),
    }
}

pub(super) fn missing(id: &str) -> StoreError {
    StoreError::NotFound(format!("no allowlist entry with id {id:?}"))
}

pub(super) async fn all(
    tx: &mut Transaction<'_, Sqlite>,
) -> Result<Vec<AllowlistEntry>, StoreError> {
    let rows = sqlx::query("SELECT * FROM allowlists ORDER BY created_at, id")
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The allowlist entries of principals.
#[async_trait]
pub trait AllowlistStore: Send + Sync {
    /// Adds an entry for an existing principal. The caller validates the
    /// pattern (see `allowlist::validate_pattern`).
    async fn add_allowlist(
        &self,
        principal_id: &str,
        pattern: &str,
        pattern_type: PatternType,
    ) -> Result<AllowlistEntry, StoreError>;

    /// Entries, of one principal or of all.
    async fn list_allowlists(
        &self,
        principal_id: Option<&str>,
    ) -> Result<Vec<AllowlistEntry>, StoreError>;

    /// Removes entry `id`; an unknown id is `NotFound`.
    async fn delete_allowlist(&self, id: &str) -> Result<(), StoreError>;
}

#[async_trait]
impl AllowlistStore for SqliteStore {
    async fn add_allowlist(
        &self,
        principal_id: &str,
        pattern: &str,
        pattern_type: PatternType,
    ) -> Result<AllowlistEntry, StoreError> {
        let entry = new_entry(principal_id, pattern, pattern_type);
        let mut tx = self.begin_change().await?;
        sqlx::query(
            "INSERT INTO allowlists (id, principal_id, pattern, pattern_type, created_at) VALUES (?, ?, ?, ?, ?)",
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
            "SELECT * FROM allowlists WHERE ?1 IS NULL OR principal_id = ?1 ORDER BY created_at, id",
        )
        .bind(principal_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn delete_allowlist(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_change().await?;
        let n = sqlx::query("DELETE FROM allowlists WHERE id = ?")
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
