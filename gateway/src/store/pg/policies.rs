//! Policies and their versions on PostgreSQL.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgStore;
use crate::policy::{Policy, PolicyDefinition};
use crate::store::policies::{from_row, missing, new_version, unknown_principal};
use crate::store::{Change, PolicyStore, StoreError};

/// The latest version of every policy.
const LATEST: &str = "SELECT p.* FROM policies p
    JOIN (SELECT id, MAX(version) AS v FROM policies GROUP BY id) l
      ON p.id = l.id AND p.version = l.v";

pub(super) async fn latest(conn: &mut PgConnection) -> Result<Vec<Policy>, StoreError> {
    let rows = sqlx::query(&format!("{LATEST} ORDER BY p.created_at, p.id"))
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

#[async_trait]
impl PolicyStore for PgStore {
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
        // The state row's lock (begin_change) orders concurrent changes of
        // a policy: the latest version read here is the latest committed.
        let mut tx = self.begin_change().await?;
        let row = sqlx::query(&format!("{LATEST} WHERE p.id = $1"))
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
        let mut conn = self.pool().acquire().await?;
        let all = latest(&mut conn).await?;
        Ok(all
            .into_iter()
            .filter(|p| principal_id.is_none_or(|id| p.principal_id == id))
            .collect())
    }

    async fn policy_history(&self, id: &str) -> Result<Vec<Policy>, StoreError> {
        let rows = sqlx::query("SELECT * FROM policies WHERE id = $1 ORDER BY version")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        if rows.is_empty() {
            return Err(missing(id));
        }
        rows.iter().map(from_row).collect()
    }
}

async fn insert(
    conn: &mut PgConnection,
    id: String,
    version: u32,
    principal_id: &str,
    definition: &PolicyDefinition,
    active: bool,
    change: &Change,
) -> Result<Policy, StoreError> {
    let (policy, json) = new_version(id, version, principal_id, definition, active, change)?;
    sqlx::query(
        "INSERT INTO policies (id, version, principal_id, definition, active, changed_by,
                               change_reason, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&policy.id)
    .bind(i64::from(policy.version))
    .bind(&policy.principal_id)
    .bind(json)
    .bind(policy.active)
    .bind(&policy.changed_by)
    .bind(&policy.change_reason)
    .bind(&policy.created_at)
    .execute(conn)
    .await
    .map_err(|e| unknown_principal(e, principal_id))?;
    Ok(policy)
}
