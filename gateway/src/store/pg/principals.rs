//! Principals on PostgreSQL.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PgStore;
use crate::authn::hash_token;
use crate::model::Principal;
use crate::store::principals::{from_row, missing, name_taken, new_principal};
use crate::store::row::Columns;
use crate::store::{NewPrincipal, PrincipalStore, StoreError};

pub(super) async fn all_with_hashes(
    conn: &mut PgConnection,
) -> Result<Vec<(Principal, Vec<u8>)>, StoreError> {
    let rows = sqlx::query("SELECT * FROM principals ORDER BY created_at, id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((from_row(r)?, r.bytes("token_hash")?)))
        .collect()
}

#[async_trait]
impl PrincipalStore for PgStore {
    async fn register_principal(
        &self,
        new: NewPrincipal,
    ) -> Result<(Principal, String), StoreError> {
        let (principal, token) = new_principal(new);
        let mut tx = self.begin_change().await?;
        sqlx::query(
            "INSERT INTO principals (id, kind, name, email, token_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&principal.id)
        .bind(principal.kind.as_str())
        .bind(&principal.name)
        .bind(&principal.email)
        .bind(hash_token(&token).as_slice())
        .bind(&principal.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| name_taken(e, &principal.name))?;
        tx.commit().await?;
        Ok((principal, token))
    }

    async fn list_principals(&self) -> Result<Vec<Principal>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        let all = all_with_hashes(&mut conn).await?;
        Ok(all.into_iter().map(|(p, _)| p).collect())
    }

    async fn find_principal(&self, id_or_name: &str) -> Result<Principal, StoreError> {
        let row = sqlx::query("SELECT * FROM principals WHERE id = $1 OR name = $1 LIMIT 1")
            .bind(id_or_name)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => from_row(&r),
            None => Err(missing(id_or_name)),
        }
    }
}
