//! Mandates and public signing keys on PostgreSQL.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgStore;
use crate::store::mandates::{
    encode, issue_event, key_from_row, mandate_from_row, missing, refused, KeySync,
};
use crate::store::{
    MandateFilter, MandateRecord, MandateStore, SigningKeyRow, StoreError, KEEP_EXPIRED_SECS,
};

/// Every public signing key, oldest first.
pub(super) async fn signing_keys(
    conn: &mut PgConnection,
) -> Result<Vec<SigningKeyRow>, StoreError> {
    let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
        .fetch_all(conn)
        .await?;
    rows.iter().map(key_from_row).collect()
}

/// The jtis of every revoked mandate.
pub(super) async fn revoked(conn: &mut PgConnection) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT jti FROM mandates WHERE revoked_at IS NOT NULL ORDER BY jti")
            .fetch_all(conn)
            .await?,
    )
}

/// Mandates the gateway may be asked about at unix time `now` (as
/// SQLite's `current`); unreadable rows are left out and reported.
pub(super) async fn current(
    conn: &mut PgConnection,
    now: i64,
) -> Result<(Vec<MandateRecord>, Vec<String>), StoreError> {
    let rows = sqlx::query("SELECT * FROM mandates WHERE exp > $1 ORDER BY iat, jti")
        .bind(now.saturating_sub(KEEP_EXPIRED_SECS))
        .fetch_all(conn)
        .await?;
    let mut mandates = Vec::with_capacity(rows.len());
    let mut rejected = Vec::new();
    for row in &rows {
        match mandate_from_row(row) {
            Ok(m) => mandates.push(m),
            Err(e) => rejected.push(format!("left out: {e}")),
        }
    }
    Ok((mandates, rejected))
}

#[async_trait]
impl MandateStore for PgStore {
    async fn sync_signing_keys(&self, keys: &[SigningKeyRow]) -> Result<bool, StoreError> {
        let mut tx = self.begin_change().await?;
        let stored = signing_keys(&mut tx).await?;
        let sync = KeySync::plan(&stored, keys)?;
        if !sync.changes() {
            // Nothing to publish: leave the state version alone.
            tx.rollback().await?;
            return Ok(false);
        }
        for key in &sync.put {
            sqlx::query(
                "INSERT INTO signing_keys (kid, public_key, created_at, retired_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (kid) DO UPDATE SET
                   created_at = excluded.created_at, retired_at = excluded.retired_at",
            )
            .bind(&key.kid)
            .bind(key.public_key.as_slice())
            .bind(key.created_at)
            .bind(key.retired_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM signing_keys WHERE kid = ANY($1)")
            .bind(&sync.remove)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        signing_keys(&mut conn).await
    }

    async fn insert_mandate(&self, record: &MandateRecord) -> Result<(), StoreError> {
        let (scope, chain) = encode(record)?;
        let event = issue_event(record);
        self.ensure_partitions([event.ts_ms]).await?;
        let mut tx = self.begin_change().await?;
        sqlx::query(
            "INSERT INTO mandates (jti, issuer_id, subject_id, parent_jti, policy_id,
               policy_version, scope, iat, nbf, exp, depth, chain, revoked_at, revoked_by,
               revoke_reason, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&record.jti)
        .bind(&record.issuer_id)
        .bind(&record.subject_id)
        .bind(&record.parent_jti)
        .bind(&record.policy_id)
        .bind(i64::from(record.policy_version))
        .bind(scope)
        .bind(record.iat)
        .bind(record.nbf)
        .bind(record.exp)
        .bind(i64::from(record.depth))
        .bind(chain)
        .bind(record.revoked_at)
        .bind(&record.revoked_by)
        .bind(&record.revoke_reason)
        .bind(&record.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| refused(e, record))?;
        super::ledger::insert_events(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn longest_mandate_validity(&self) -> Result<i64, StoreError> {
        let longest: Option<i64> = sqlx::query_scalar("SELECT MAX(exp - iat) FROM mandates")
            .fetch_one(self.pool())
            .await?;
        Ok(longest.unwrap_or(0).max(0))
    }

    async fn get_mandate(&self, jti: &str) -> Result<MandateRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM mandates WHERE jti = $1")
            .bind(jti)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => mandate_from_row(&r),
            None => Err(missing(jti)),
        }
    }

    async fn list_mandates(
        &self,
        filter: &MandateFilter,
    ) -> Result<Vec<MandateRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM mandates
             WHERE ($1::text IS NULL OR subject_id = $1) AND ($2::text IS NULL OR issuer_id = $2)
             ORDER BY iat, jti",
        )
        .bind(&filter.subject_id)
        .bind(&filter.issuer_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(mandate_from_row).collect()
    }
}
