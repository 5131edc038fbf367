//! Policies and their versions. A change inserts a new version; nothing
//! is updated in place, so `history` shows every earlier state.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::row::Columns;
use super::{now, SqliteStore, StoreError};
use crate::policy::{Policy, PolicyDefinition};

pub(super) fn from_row(row: &impl Columns) -> Result<Policy, StoreError> {
    let id = row.text("id")?;
    let json = row.text("definition")?;
    let definition: PolicyDefinition =
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
            table: "policies",
            message: format!("policy {id}: {e}"),
        })?;
    let version = row.int("version")?;
    Ok(Policy {
        version: u32::try_from(version).map_err(|_| StoreError::Corrupt {
            table: "policies",
            message: format!("policy {id}: version {version}"),
        })?,
        principal_id: row.text("principal_id")?,
        definition,
        active: row.flag("active")?,
        changed_by: row.text("changed_by")?,
        change_reason: row.text("change_reason")?,
        created_at: row.text("created_at")?,
        id,
    })
}

/// The latest version of every policy.
const LATEST: &str = "SELECT p.* FROM policies p
    JOIN (SELECT id, MAX(version) AS v FROM policies GROUP BY id) l
      ON p.id = l.id AND p.version = l.v";

pub(super) async fn latest(tx: &mut Transaction<'_, Sqlite>) -> Result<Vec<Policy>, StoreError> {
    let rows = sqlx::query(&format!("{LATEST} ORDER BY p.created_at, p.id"))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Who makes a change, and why.
#[derive(Debug, Clone)]
pub struct Change {
    pub changed_by: String,
    pub reason: String,
}

/// Policies and their versions: a change stores a new version.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Creates a policy (version 1) for an existing principal.
    async fn create_policy(
        &self,
        principal_id: &str,
        definition: &PolicyDefinition,
        change: &Change,
    ) -> Result<Policy, StoreError>;

    /// Stores a new version of an existing policy with `definition` (or the
    /// current one when None) and `active`.
    async fn change_policy(
        &self,
        id: &str,
        definition: Option<&PolicyDefinition>,
        active: bool,
        change: &Change,
    ) -> Result<Policy, StoreError>;

    /// The latest version of each policy, of one principal or all.
    async fn list_policies(&self, principal_id: Option<&str>) -> Result<Vec<Policy>, StoreError>;

    /// Every version of a policy, oldest first.
    async fn policy_history(&self, id: &str) -> Result<Vec<Policy>, StoreError>;
}

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn create_policy(
        &self,
        principal_id: &str,
        definition: &PolicyDefinition,
        change: &Change,
    ) -> Result<Policy, StoreError> {
        let mut tx = self.begin_change().await?;
        let policy = insert(
            &mut tx,
            uuid::Uuid::now_v7().to_string(),
            1,
            principal_id,
            definition,
            true,
            change,
        )
        .await?;
        tx.commit().await?;
        Ok(policy)
    }

    async fn change_policy(
        &self,
        id: &str,
        definition: Option<&PolicyDefinition>,
        active: bool,
        change: &Change,
    ) -> Result<Policy, StoreError> {
        let mut tx = self.begin_change().await?;
        let row = sqlx::query(&format!("{LATEST} WHERE p.id = ?"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let current = match row {
            Some(r) => from_row(&r)?,
            None => return Err(missing(id)),
        };
        let definition = definition.unwrap_or(&current.definition);
        let policy = insert(
            &mut tx,
            current.id,
            current.version + 1,
            &current.principal_id,
            definition,
            active,
            change,
        )
        .await?;
        tx.commit().await?;
        Ok(policy)
    }

    async fn list_policies(&self, principal_id: Option<&str>) -> Result<Vec<Policy>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let all = latest(&mut tx).await?;
        tx.commit().await?;
        Ok(all
            .into_iter()
            .filter(|p| principal_id.is_none_or(|id| p.principal_id == id))
            .collect())
    }

    async fn policy_history(&self, id: &str) -> Result<Vec<Policy>, StoreError> {
        let rows = sqlx::query("SELECT * FROM policies WHERE id = ? ORDER BY version")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        if rows.is_empty() {
            return Err(missing(id));
        }
        rows.iter().map(from_row).collect()
    }
}

pub(super) fn missing(id: &str) -> StoreError {
    StoreError::NotFound(format!(
        "no policy with id {id:?}; `caracal policy list` shows them"
    ))
}

/// Version `version` of policy `id`, stamped now, and its definition as
/// stored (JSON).
pub(super) fn new_version(
    id: String,
    version: u32,
    principal_id: &str,
    definition: &PolicyDefinition,
    active: bool,
    change: &Change,
) -> Result<(Policy, String), StoreError> {
    let policy = Policy {
        id,
        version,
        principal_id: principal_id.to_string(),
        definition: definition.clone(),
        active,
        changed_by: change.changed_by.clone(),
        change_reason: change.reason.clone(),
        created_at: now(),
    };
    let json = serde_json::to_string(&policy.definition).map_err(|e| StoreError::Corrupt {
        table: "policies",
        message: e.to_string(),
    })?;
    Ok((policy, json))
}

/// A policy row refused for its principal: the principal does not exist.
pub(super) fn unknown_principal(e: sqlx::Error, principal_id: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::NotFound(format!("no principal with id {principal_id:?}"))
        }
        _ => e.into(),
    }
}

async fn insert(
    tx: &mut Transaction<'_, Sqlite>,
    id: String,
    version: u32,
    principal_id: &str,
    definition: &PolicyDefinition,
    active: bool,
    change: &Change,
) -> Result<Policy, StoreError> {
    let (policy, json) = new_version(id, version, principal_id, definition, active, change)?;
    sqlx::query(
        "INSERT INTO policies (id, version, principal_id, definition, active, changed_by, change_reason, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&policy.id)
    .bind(i64::from(policy.version))
    .bind(&policy.principal_id)
    .bind(json)
    .bind(i64::from(policy.active))
    .bind(&policy.changed_by)
    .bind(&policy.change_reason)
    .bind(&policy.created_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| unknown_principal(e, principal_id))?;
    Ok(policy)
}
