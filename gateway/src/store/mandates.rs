//! Mandates and the public halves of the signing keys. A mandate's claims
//! are recorded when it is issued; the token itself (a bearer credential)
//! is never stored. Revocation marks a row; the set of revoked jtis is part
//! of the enforcement state.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::row::Columns;
use super::{SqliteStore, StoreError};
pub use crate::authority::record::{MandateRecord, MandateState, SigningKeyRow};
use crate::authority::Scope;

/// Which mandates [`MandateStore::list_mandates`] returns.
#[derive(Debug, Clone, Default)]
pub struct MandateFilter {
    pub subject_id: Option<String>,
    pub issuer_id: Option<String>,
}

fn corrupt(table: &'static str, message: String) -> StoreError {
    StoreError::Corrupt { table, message }
}

pub(super) fn mandate_from_row(row: &impl Columns) -> Result<MandateRecord, StoreError> {
    let jti = row.text("jti")?;
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        corrupt("mandates", format!("mandate {jti}: {what}: {e}"))
    };
    let scope: Scope = serde_json::from_str(&row.text("scope")?).map_err(|e| bad("scope", &e))?;
    let chain: Vec<String> =
        serde_json::from_str(&row.text("chain")?).map_err(|e| bad("chain", &e))?;
    let version = row.int("policy_version")?;
    let depth = row.int("depth")?;
    Ok(MandateRecord {
        issuer_id: row.text("issuer_id")?,
        subject_id: row.text("subject_id")?,
        parent_jti: row.opt_text("parent_jti")?,
        policy_id: row.text("policy_id")?,
        policy_version: u32::try_from(version).map_err(|e| bad("policy_version", &e))?,
        scope,
        iat: row.int("iat")?,
        nbf: row.int("nbf")?,
        exp: row.int("exp")?,
        depth: u32::try_from(depth).map_err(|e| bad("depth", &e))?,
        chain,
        revoked_at: row.opt_int("revoked_at")?,
        revoked_by: row.opt_text("revoked_by")?,
        revoke_reason: row.opt_text("revoke_reason")?,
        created_at: row.text("created_at")?,
        jti,
    })
}

pub(super) fn key_from_row(row: &impl Columns) -> Result<SigningKeyRow, StoreError> {
    let kid = row.text("kid")?;
    let public = row.bytes("public_key")?;
    let public_key = <[u8; 32]>::try_from(public.as_slice()).map_err(|_| {
        corrupt(
            "signing_keys",
            format!(
                "key {kid}: public key is {} bytes, expected 32",
                public.len()
            ),
        )
    })?;
    Ok(SigningKeyRow {
        public_key,
        created_at: row.int("created_at")?,
        retired_at: row.opt_int("retired_at")?,
        kid,
    })
}

/// Every public signing key, oldest first.
pub(super) async fn signing_keys(
    tx: &mut Transaction<'_, Sqlite>,
) -> Result<Vec<SigningKeyRow>, StoreError> {
    let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(key_from_row).collect()
}

/// The jtis of every revoked mandate.
pub(super) async fn revoked(tx: &mut Transaction<'_, Sqlite>) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT jti FROM mandates WHERE revoked_at IS NOT NULL ORDER BY jti")
            .fetch_all(&mut **tx)
            .await?,
    )
}

/// Mandates the gateway may be asked about at unix time `now`: those not
/// expired for longer than [`KEEP_EXPIRED_SECS`] (so a denial can still say
/// "expired" rather than "missing"). A row that cannot be read is left out,
/// which can only deny more, and reported in the second list.
pub(super) async fn current(
    tx: &mut Transaction<'_, Sqlite>,
    now: i64,
) -> Result<(Vec<MandateRecord>, Vec<String>), StoreError> {
    let rows = sqlx::query("SELECT * FROM mandates WHERE exp > ? ORDER BY iat, jti")
        .bind(now.saturating_sub(KEEP_EXPIRED_SECS))
        .fetch_all(&mut **tx)
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

/// How long an expired mandate stays in the enforcement state.
pub const KEEP_EXPIRED_SECS: i64 = 24 * 3600;

/// Issued mandates and the public signing keys that verify them.
#[async_trait]
pub trait MandateStore: Send + Sync {
    /// Makes the stored public keys exactly `keys` (the keyring's): new
    /// keys are added, changed retirement times updated, keys no longer in
    /// the keyring (pruned) removed, so mandates they signed stop verifying.
    /// A public key never changes under a kid: that is refused as a
    /// conflict. Returns whether anything changed (the state version is
    /// bumped only then).
    async fn sync_signing_keys(&self, keys: &[SigningKeyRow]) -> Result<bool, StoreError>;

    /// The stored public signing keys, oldest first.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError>;

    /// Records an issued mandate. Its issuer, subject, parent and policy
    /// version must exist (else `NotFound`); a repeated jti is a conflict.
    /// Its authority ledger row (`mandate_issued`, or `mandate_delegated`
    /// when it has a parent) is written in the same change.
    async fn insert_mandate(&self, record: &MandateRecord) -> Result<(), StoreError>;

    /// The longest validity (`exp - iat`, seconds) of any recorded mandate;
    /// 0 when there is none. Key pruning keeps retired keys at least this long.
    async fn longest_mandate_validity(&self) -> Result<i64, StoreError>;

    /// The mandate with id `jti`, or `NotFound`.
    async fn get_mandate(&self, jti: &str) -> Result<MandateRecord, StoreError>;

    /// Mandates matching `filter`, oldest first.
    async fn list_mandates(&self, filter: &MandateFilter)
        -> Result<Vec<MandateRecord>, StoreError>;
}

#[async_trait]
impl MandateStore for SqliteStore {
    async fn sync_signing_keys(&self, keys: &[SigningKeyRow]) -> Result<bool, StoreError> {
        let mut tx = self.begin_change().await?;
        let stored = signing_keys(&mut tx).await?;
        let sync = KeySync::plan(&stored, keys)?;
        for key in &sync.put {
            sqlx::query(
                "INSERT INTO signing_keys (kid, public_key, created_at, retired_at)
                         VALUES (?, ?, ?, ?)
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
        for kid in &sync.remove {
            sqlx::query("DELETE FROM signing_keys WHERE kid = ?")
                .bind(kid)
                .execute(&mut *tx)
                .await?;
        }
        let changed = sync.changes();
        if changed {
            tx.commit().await?;
        } else {
            // Nothing to publish: leave the state version alone.
            tx.rollback().await?;
        }
        Ok(changed)
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let keys = signing_keys(&mut tx).await?;
        tx.commit().await?;
        Ok(keys)
    }

    async fn insert_mandate(&self, record: &MandateRecord) -> Result<(), StoreError> {
        let (scope, chain) = encode(record)?;
        let mut tx = self.begin_change().await?;
        sqlx::query(
            "INSERT INTO mandates (jti, issuer_id, subject_id, parent_jti, policy_id,
               policy_version, scope, iat, nbf, exp, depth, chain, revoked_at, revoked_by,
               revoke_reason, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        super::ledger::insert_events(&mut tx, &[issue_event(record)]).await?;
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
        let row = sqlx::query("SELECT * FROM mandates WHERE jti = ?")
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
             WHERE (?1 IS NULL OR subject_id = ?1) AND (?2 IS NULL OR issuer_id = ?2)
             ORDER BY iat, jti",
        )
        .bind(&filter.subject_id)
        .bind(&filter.issuer_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(mandate_from_row).collect()
    }
}

#[cfg(test)]
#[path = "mandates_tests.rs"]
mod tests;

pub(super) fn missing(jti: &str) -> StoreError {
    StoreError::NotFound(format!("no mandate with id {jti:?}"))
}

/// What syncing the stored keys to a keyring writes.
pub(super) struct KeySync<'k> {
    /// Keys to add, or whose times changed (upserts).
    pub put: Vec<&'k SigningKeyRow>,
    /// Kids no longer in the keyring.
    pub remove: Vec<String>,
}

impl<'k> KeySync<'k> {
    /// The writes that make `stored` exactly `keys`; a kid stored with
    /// another public key is a conflict.
    pub fn plan(stored: &[SigningKeyRow], keys: &'k [SigningKeyRow]) -> Result<Self, StoreError> {
        let mut put = Vec::new();
        for key in keys {
            match stored.iter().find(|s| s.kid == key.kid) {
                Some(s) if s.public_key != key.public_key => {
                    return Err(StoreError::Conflict(format!(
                        "signing key {} is stored with a different public key; \
                         the keyring does not belong to this workspace's database",
                        key.kid
                    )));
                }
                Some(s) if s == key => {}
                _ => put.push(key),
            }
        }
        let remove = stored
            .iter()
            .filter(|s| !keys.iter().any(|k| k.kid == s.kid))
            .map(|s| s.kid.clone())
            .collect();
        Ok(Self { put, remove })
    }

    /// Whether the sync writes anything (and so bumps the state version).
    pub fn changes(&self) -> bool {
        !self.put.is_empty() || !self.remove.is_empty()
    }
}

/// A mandate's scope and chain as stored (JSON).
pub(super) fn encode(record: &MandateRecord) -> Result<(String, String), StoreError> {
    let encode = |what: &str, v: serde_json::Result<String>| {
        v.map_err(|e| corrupt("mandates", format!("mandate {}: {what}: {e}", record.jti)))
    };
    Ok((
        encode("scope", serde_json::to_string(&record.scope))?,
        encode("chain", serde_json::to_string(&record.chain))?,
    ))
}

/// A mandate insert refused: its jti is taken, or what it refers to is
/// missing.
pub(super) fn refused(e: sqlx::Error, record: &MandateRecord) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("a mandate with id {} already exists", record.jti))
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound(format!(
            "mandate {}: its issuer, subject, parent or policy version does not exist",
            record.jti
        )),
        _ => e.into(),
    }
}

/// The ledger row recording that `record` was issued (or delegated).
pub(super) fn issue_event(record: &MandateRecord) -> crate::ledger::LedgerEvent {
    let (code, verb) = if record.parent_jti.is_some() {
        (crate::ledger::Outcome::MandateDelegated, "delegated")
    } else {
        (crate::ledger::Outcome::MandateIssued, "issued")
    };
    let detail = format!(
        "mandate {} {verb} by {} for {} under policy {} v{}, valid until {}",
        record.jti,
        record.issuer_id,
        record.subject_id,
        record.policy_id,
        record.policy_version,
        record.exp
    );
    authority_event(record, crate::ledger::Decision::Allow, code.into(), detail)
}

/// The ledger row of an authority change to `record` (kind `authority`,
/// mode `cli`): the subject as principal, the scope as resource and action.
pub(super) fn authority_event(
    record: &MandateRecord,
    decision: crate::ledger::Decision,
    code: crate::ledger::EventCode,
    detail: String,
) -> crate::ledger::LedgerEvent {
    use crate::ledger::{EventKind, LedgerEvent, Mode};
    let mut e = LedgerEvent::new(EventKind::Authority, Mode::Cli, decision, code);
    e.principal_id = Some(record.subject_id.clone());
    e.resource = Some(record.scope.resources.join(","));
    e.action = Some(
        record
            .scope
            .actions
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    e.detail = Some(crate::ledger::bounded(detail));
    e.mandate_id = Some(record.jti.clone());
    e
}
