//! Revoking mandates: one by id (optionally with its descendants), or in
//! bulk by a [`Selector`]. Each revocation is one state change, so a
//! running gateway sees it as a whole.
//!
//! The mandate decision already treats a revoked ancestor as revoking its
//! descendants; cascading only makes that explicit in their records.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::mandates::{mandate_from_row, MandateRecord};
use super::{MandateStore, SqliteStore, StoreError};
use crate::authority::scope::ResourcePattern;

/// Who revokes, when (unix seconds) and why.
#[derive(Debug, Clone)]
pub struct Revocation {
    pub revoked_by: String,
    pub reason: String,
    pub at: i64,
}

/// Which mandates a bulk revocation selects.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Issued by this principal id.
    Issuer(String),
    /// Issued to this principal id.
    Subject(String),
    /// Whose scope has a resource entry this pattern (exact, glob or
    /// `re:` regex) matches as written, or an entry that covers the
    /// pattern taken as a resource name.
    Resource(String),
    /// Issued (`iat`) strictly before this unix time.
    IssuedBefore(i64),
}

impl Selector {
    /// Whether `m` is selected. An invalid resource pattern selects only
    /// entries equal to it.
    pub fn selects(&self, m: &MandateRecord) -> bool {
        match self {
            Selector::Issuer(id) => &m.issuer_id == id,
            Selector::Subject(id) => &m.subject_id == id,
            Selector::IssuedBefore(t) => m.iat < *t,
            Selector::Resource(p) => {
                let pattern = ResourcePattern::parse(p).ok();
                m.scope.resources.iter().any(|entry| {
                    entry == p
                        || pattern.as_ref().is_some_and(|pat| pat.matches(entry))
                        || ResourcePattern::parse(entry).is_ok_and(|e| e.matches(p))
                })
            }
        }
    }
}

/// What a revocation did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct Revoked {
    /// Newly revoked, oldest first.
    pub revoked: Vec<MandateRecord>,
    /// Selected but already revoked earlier (left as they were).
    pub already: Vec<MandateRecord>,
}

async fn all(tx: &mut Transaction<'_, Sqlite>) -> Result<Vec<MandateRecord>, StoreError> {
    let rows = sqlx::query("SELECT * FROM mandates ORDER BY iat, jti")
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(mandate_from_row).collect()
}

/// Revoking mandates, and the delegation trees they form.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Revokes mandate `jti` and, with `cascade`, every mandate whose
    /// chain contains it. An unknown jti is `NotFound`; an already revoked
    /// mandate is reported in `already`, not an error. Each newly revoked
    /// mandate gets a `mandate_revoked` authority ledger row; when nothing
    /// is newly revoked the state version stays.
    async fn revoke_mandate(
        &self,
        jti: &str,
        cascade: bool,
        revocation: &Revocation,
    ) -> Result<Revoked, StoreError>;

    /// Revokes every mandate `selector` selects, as [`Self::revoke_mandate`]
    /// does; with `dry_run` nothing changes and the result says what would
    /// have been revoked.
    async fn revoke_matching(
        &self,
        selector: &Selector,
        revocation: &Revocation,
        dry_run: bool,
    ) -> Result<Revoked, StoreError>;

    /// The delegation tree containing mandate `jti`: its root and every
    /// descendant of the root, oldest first.
    async fn mandate_tree(&self, jti: &str) -> Result<Vec<MandateRecord>, StoreError>;
}

#[async_trait]
impl RevocationStore for SqliteStore {
    async fn revoke_mandate(
        &self,
        jti: &str,
        cascade: bool,
        revocation: &Revocation,
    ) -> Result<Revoked, StoreError> {
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
             WHERE jti = ?1 OR EXISTS (SELECT 1 FROM json_each(mandates.chain) WHERE value = ?1)
             ORDER BY depth, iat, jti",
        )
        .bind(&root)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(mandate_from_row).collect()
    }
}

/// Mandate `jti` among `mandates` and, with `cascade`, its descendants;
/// `NotFound` when `jti` is not there.
pub(super) fn select_one(
    mandates: Vec<MandateRecord>,
    jti: &str,
    cascade: bool,
) -> Result<impl Iterator<Item = MandateRecord> + '_, StoreError> {
    if !mandates.iter().any(|m| m.jti == jti) {
        return Err(StoreError::NotFound(format!(
            "no mandate with id {jti:?}; `caracal authority list` shows them"
        )));
    }
    Ok(mandates
        .into_iter()
        .filter(move |m| m.jti == jti || (cascade && m.chain.iter().any(|a| a == jti))))
}

/// Marks `m` revoked by `revocation`, and returns the ledger row that
/// records it.
pub(super) fn revoked(
    m: &mut MandateRecord,
    revocation: &Revocation,
) -> crate::ledger::LedgerEvent {
    m.revoked_at = Some(revocation.at);
    m.revoked_by = Some(revocation.revoked_by.clone());
    m.revoke_reason = Some(revocation.reason.clone());
    let detail = format!(
        "mandate {} revoked by {}: {}",
        m.jti, revocation.revoked_by, revocation.reason
    );
    super::mandates::authority_event(
        m,
        crate::ledger::Decision::Deny,
        crate::error::Code::MandateRevoked.into(),
        detail,
    )
}

/// Marks the not yet revoked among `selected` as revoked by `revocation`.
async fn mark(
    tx: &mut Transaction<'_, Sqlite>,
    selected: impl Iterator<Item = MandateRecord>,
    revocation: &Revocation,
) -> Result<Revoked, StoreError> {
    let mut result = Revoked::default();
    for mut m in selected {
        if m.revoked_at.is_some() {
            result.already.push(m);
            continue;
        }
        sqlx::query(
            "UPDATE mandates SET revoked_at = ?, revoked_by = ?, revoke_reason = ?
             WHERE jti = ? AND revoked_at IS NULL",
        )
        .bind(revocation.at)
        .bind(&revocation.revoked_by)
        .bind(&revocation.reason)
        .bind(&m.jti)
        .execute(&mut **tx)
        .await?;
        let event = revoked(&mut m, revocation);
        super::ledger::insert_events(tx, &[event]).await?;
        result.revoked.push(m);
    }
    Ok(result)
}

/// Commits when something was revoked; otherwise (or in a dry run) rolls
/// back, leaving the state version alone.
async fn finish(
    tx: Transaction<'_, Sqlite>,
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
