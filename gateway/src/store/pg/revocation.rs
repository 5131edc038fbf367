//! Revoking mandates on PostgreSQL: each revocation one state change.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, Transaction};

use super::PgStore;
use crate::store::mandates::mandate_from_row;
use crate::store::revocation::{revoked, select_one};
use crate::store::{
    MandateRecord, MandateStore, Revocation, RevocationStore, Revoked, Selector, StoreError,
};

async fn all(conn: &mut PgConnection) -> Result<Vec<MandateRecord>, StoreError> {
    let rows = sqlx::query("SELECT * FROM mandates ORDER BY iat, jti")
        .fetch_all(conn)
        .await?;
    rows.iter().map(mandate_from_row).collect()
}

#[async_trait]
impl RevocationStore for PgStore {
    async fn revoke_mandate(
        &self,
        jti: &str,
        cascade: bool,
        revocation: &Revocation,
    ) -> Result<Revoked, StoreError> {
        self.ensure_partitions([jiff::Timestamp::now().as_millisecond()])
            .await?;
        let mut tx = self.begin_change().await?;
        let mandates = all(&mut tx).await?;
        let selected = select_one(mandates, jti, cascade)?;
        let result = mark(&mut tx, selected, revocation).await?;
        finish(tx, &result, false).await?;
        Ok(result)
    }

    async fn revoke_matching(
        &self,
        selector: &Selector,
        revocation: &Revocation,
        dry_run: bool,
    ) -> Result<Revoked, StoreError> {
        self.ensure_partitions([jiff::Timestamp::now().as_millisecond()])
            .await?;
        let mut tx = self.begin_change().await?;
        let selected = all(&mut tx)
            .await?
            .into_iter()
            .filter(|m| selector.selects(m));
        let result = mark(&mut tx, selected, revocation).await?;
        finish(tx, &result, dry_run).await?;
        Ok(result)
    }

    async fn mandate_tree(&self, jti: &str) -> Result<Vec<MandateRecord>, StoreError> {
        let m = self.get_mandate(jti).await?;
        let root = m.chain.first().cloned().unwrap_or(m.jti);
        let rows = sqlx::query(
            "SELECT * FROM mandates
             WHERE jti = $1
                OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(mandates.chain::jsonb) AS a (value)
                           WHERE a.value = $1)
             ORDER BY depth, iat, jti",
        )
        .bind(&root)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(mandate_from_row).collect()
    }
}

/// Marks the not yet revoked among `selected` as revoked by `revocation`,
/// in one update, and records each in the ledger.
async fn mark(
    conn: &mut PgConnection,
    selected: impl Iterator<Item = MandateRecord>,
    revocation: &Revocation,
) -> Result<Revoked, StoreError> {
    let mut result = Revoked::default();
    let mut events = Vec::new();
    for mut m in selected {
        if m.revoked_at.is_some() {
            result.already.push(m);
        } else {
            events.push(revoked(&mut m, revocation));
            result.revoked.push(m);
        }
    }
    if result.revoked.is_empty() {
        return Ok(result);
    }
    let jtis: Vec<&str> = result.revoked.iter().map(|m| m.jti.as_str()).collect();
    sqlx::query(
        "UPDATE mandates SET revoked_at = $1, revoked_by = $2, revoke_reason = $3
         WHERE jti = ANY($4) AND revoked_at IS NULL",
    )
    .bind(revocation.at)
    .bind(&revocation.revoked_by)
    .bind(&revocation.reason)
    .bind(&jtis)
    .execute(&mut *conn)
    .await?;
    super::ledger::insert_events(conn, &events).await?;
    Ok(result)
}

/// Commits when something was revoked; otherwise (or in a dry run) rolls
/// back, leaving the state version alone.
async fn finish(
    tx: Transaction<'_, Postgres>,
    result: &Revoked,
    dry_run: bool,
) -> Result<(), StoreError> {
    if dry_run || result.revoked.is_empty() {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(())
}
