//! Delegation issuance: the claims of a child mandate derived from a
//! stored parent. Pure: the caller looks up the parent, its subject's kind,
//! the authorising policy and the revocations, then signs and records the
//! result. The rules themselves are [`super::delegation::check`].

use super::delegation::{self, DelegationError, DelegationRequest};
use super::issue::Issued;
use super::mandate::Claims;
use super::record::MandateRecord;
use super::Scope;
use crate::model::{Principal, PrincipalKind};
use crate::policy::Policy;

/// What a child mandate is requested with.
#[derive(Debug, Clone, Copy)]
pub struct DelegateRequest<'a> {
    /// The parent mandate as stored.
    pub parent: &'a MandateRecord,
    /// The kind of the parent's subject (the delegator).
    pub parent_subject_kind: PrincipalKind,
    /// Who may act under the child mandate.
    pub child_subject: &'a Principal,
    pub scope: &'a Scope,
    pub validity_secs: i64,
    /// Unix seconds: the child's `iat` and `nbf`.
    pub now: i64,
    /// The current version of the policy the root mandate was issued
    /// under (`parent.policy_id`).
    pub policy: &'a Policy,
    /// The parent's jti when it is revoked, else the first revoked ancestor's.
    pub revoked: Option<&'a str>,
    /// Workspace name carried in the `ws` claim.
    pub workspace: Option<&'a str>,
}

/// Why a child mandate cannot be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegateError {
    #[error("the validity must be at least 1 second")]
    NonPositiveValidity,
    #[error("mandate {jti} is revoked; it cannot be delegated")]
    Revoked { jti: String },
    #[error(
        "policy {policy_id}, under which mandate {parent} was issued, is disabled; \
         it authorises no delegation"
    )]
    PolicyDisabled { policy_id: String, parent: String },
    #[error("policy {given} is not the policy {expected} mandate {parent} was issued under")]
    WrongPolicy {
        given: String,
        expected: String,
        parent: String,
    },
    #[error(transparent)]
    Rule(#[from] DelegationError),
}

impl DelegateError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NonPositiveValidity => "delegation_validity",
            Self::Revoked { .. } => "parent_revoked",
            Self::PolicyDisabled { .. } => "policy_disabled",
            Self::WrongPolicy { .. } => "policy_mismatch",
            Self::Rule(e) => e.code(),
        }
    }
}

/// Builds the child's claims: `iss` = the parent's subject, `sub` = the
/// child subject, `parent` = the parent's jti, `chain` = the parent's chain
/// then its jti, `depth` = the parent's + 1, `iat = nbf = now`,
/// `exp = now + validity`. Refused, in this order, when the validity is not
/// positive, the policy is not the parent's, the parent (or an ancestor)
/// is revoked, the policy is disabled, or a rule of
/// [`delegation::check`] is broken (the parent's expiry included). The
/// child records the parent's policy id at the version consulted.
pub fn delegate(req: &DelegateRequest<'_>) -> Result<Issued, DelegateError> {
    let parent = req.parent;
    if req.validity_secs < 1 {
        return Err(DelegateError::NonPositiveValidity);
    }
    if req.policy.id != parent.policy_id {
        return Err(DelegateError::WrongPolicy {
            given: req.policy.id.clone(),
            expected: parent.policy_id.clone(),
            parent: parent.jti.clone(),
        });
    }
    if let Some(jti) = req.revoked {
        return Err(DelegateError::Revoked {
            jti: jti.to_string(),
        });
    }
    if !req.policy.active {
        return Err(DelegateError::PolicyDisabled {
            policy_id: req.policy.id.clone(),
            parent: parent.jti.clone(),
        });
    }
    let definition = &req.policy.definition;
    let exp = req.now.saturating_add(req.validity_secs);
    delegation::check(&DelegationRequest {
        parent_scope: &parent.scope,
        parent_exp: parent.exp,
        parent_depth: parent.depth,
        parent_subject_kind: req.parent_subject_kind,
        child_subject_kind: req.child_subject.kind,
        child_scope: req.scope,
        child_exp: exp,
        max_depth: definition
            .allow_delegation
            .then_some(definition.max_delegation_depth),
        now: req.now,
    })?;
    let mut chain = parent.chain.clone();
    chain.push(parent.jti.clone());
    Ok(Issued {
        claims: Claims {
            iss: parent.subject_id.clone(),
            sub: req.child_subject.id.clone(),
            jti: uuid::Uuid::now_v7().to_string(),
            iat: req.now,
            nbf: req.now,
            exp,
            scope: req.scope.clone(),
            parent: Some(parent.jti.clone()),
            chain,
            depth: parent.depth + 1,
            ws: req.workspace.map(str::to_string),
        },
        policy_id: req.policy.id.clone(),
        policy_version: req.policy.version,
    })
}

#[cfg(test)]
#[path = "delegate_tests.rs"]
mod tests;
