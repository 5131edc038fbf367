//! Principals: registration (the token is returned once, stored hashed).

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::row::Columns;
use super::{is_unique_violation, now, SqliteStore, StoreError};
use crate::authn::{hash_token, new_token};
use crate::model::{Principal, PrincipalKind};

/// What registration needs.
#[derive(Debug, Clone)]
pub struct NewPrincipal {
    pub kind: PrincipalKind,
    pub name: String,
    pub email: String,
}

pub(super) fn from_row(row: &impl Columns) -> Result<Principal, StoreError> {
    let kind = row.text("kind")?;
    Ok(Principal {
        id: row.text("id")?,
        kind: PrincipalKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
            table: "principals",
            message: format!("unknown kind {kind:?}"),
        })?,
        name: row.text("name")?,
        email: row.text("email")?,
        created_at: row.text("created_at")?,
    })
}

pub(super) async fn all_with_hashes(
    tx: &mut Transaction<'_, Sqlite>,
) -> Result<Vec<(Principal, Vec<u8>)>, StoreError> {
    let rows = sqlx::query("SELECT * FROM principals ORDER BY created_at, id")
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| Ok((from_row(r)?, r.bytes("token_hash")?)))
        .collect()
}

/// Principals: registration and look-up.
#[async_trait]
pub trait PrincipalStore: Send + Sync {
    /// Registers a principal and returns it with its token, which is not
    /// stored and cannot be shown again. A taken name is a `Conflict`.
    async fn register_principal(
        &self,
        new: NewPrincipal,
    ) -> Result<(Principal, String), StoreError>;

    /// Every principal.
    async fn list_principals(&self) -> Result<Vec<Principal>, StoreError>;

    /// Finds a principal by id or by name; neither is `NotFound`.
    async fn find_principal(&self, id_or_name: &str) -> Result<Principal, StoreError>;
}

#[async_trait]
impl PrincipalStore for SqliteStore {
    async fn register_principal(
        &self,
        new: NewPrincipal,
    ) -> Result<(Principal, String), StoreError> {
        let (principal, token) = new_principal(new);
        let mut tx = self.begin_change().await?;
        sqlx::query(
            "INSERT INTO principals (id, kind, name, email, token_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
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
        let mut tx = self.pool().begin().await?;
        let all = all_with_hashes(&mut tx).await?;
        tx.commit().await?;
        Ok(all.into_iter().map(|(p, _)| p).collect())
    }

    async fn find_principal(&self, id_or_name: &str) -> Result<Principal, StoreError> {
        let row = sqlx::query("SELECT * FROM principals WHERE id = ? OR name = ? LIMIT 1")
            .bind(id_or_name)
            .bind(id_or_name)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => from_row(&r),
            None => Err(missing(id_or_name)),
        }
    }
}

/// A principal registered now, with a new id, and its token.
pub(super) fn new_principal(new: NewPrincipal) -> (Principal, String) {
    let principal = Principal {
        id: uuid::Uuid::now_v7().to_string(),
        kind: new.kind,
        name: new.name,
        email: new.email,
        created_at: now(),
    };
    (principal, new_token())
}

/// A registration refused: a unique violation means the name is taken.
pub(super) fn name_taken(e: sqlx::Error, name: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(format!("a principal named {name:?} already exists"))
    } else {
        e.into()
    }
}

pub(super) fn missing(id_or_name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "no principal with id or name {id_or_name:?}; `caracal principal list` shows them"
    ))
}
