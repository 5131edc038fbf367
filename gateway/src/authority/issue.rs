//! Issuance: whether an issuer's policies authorise a new root mandate,
//! and its claims. Pure: the caller signs ([`super::mandate::issue`]) and
//! records the result.

use super::mandate::Claims;
use super::scope::{Containment, ScopeError};
use super::Scope;
use crate::model::Principal;
use crate::policy::Policy;

/// What a root mandate is requested with.
#[derive(Debug, Clone, Copy)]
pub struct IssueRequest<'a> {
    pub issuer: &'a Principal,
    /// Who may act under the mandate (an existing principal).
    pub subject: &'a Principal,
    pub scope: &'a Scope,
    pub validity_secs: i64,
    /// Unix seconds: `iat` and `nbf`.
    pub now: i64,
    /// Workspace name carried in the `ws` claim.
    pub workspace: Option<&'a str>,
}

/// Claims ready to sign and the policy version that authorised them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub claims: Claims,
    pub policy_id: String,
    pub policy_version: u32,
}

/// Why a mandate cannot be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("the mandate needs at least one resource and one action")]
    EmptyScope,
    #[error("invalid scope: {0}")]
    InvalidScope(ScopeError),
    #[error("the validity must be at least 1 second")]
    NonPositiveValidity,
    #[error("issuer {issuer} has no active policy; create one with `caracal policy create`")]
    NoPolicy { issuer: String },
    #[error("the requested scope is not within any active policy of issuer {issuer}: {}", .refusals.join("; "))]
    NotCovered {
        issuer: String,
        /// One line per active policy: `policy ID: `entry`: reason`.
        refusals: Vec<String>,
    },
    #[error(
        "validity of {requested}s exceeds the maximum of {max}s allowed by policy {policy_id} \
         (version {policy_version})"
    )]
    Validity {
        requested: i64,
        max: i64,
        policy_id: String,
        policy_version: u32,
    },
}

/// Builds the claims of a root mandate: a UUID v7 `jti`, `iat = nbf = now`,
/// `exp = now + validity`, depth 0, no chain. `policies` are the latest
/// versions of the workspace's policies; only the issuer's active ones
/// count. The requested scope must be provably inside one policy's scope
/// ([`Scope::contains`]) and the validity within that policy's maximum;
/// among several such policies the first (in `policies` order) wins.
pub fn issue(policies: &[Policy], req: &IssueRequest<'_>) -> Result<Issued, IssueError> {
    if req.scope.is_empty() {
        return Err(IssueError::EmptyScope);
    }
    req.scope.validate().map_err(IssueError::InvalidScope)?;
    if req.validity_secs < 1 {
        return Err(IssueError::NonPositiveValidity);
    }
    let issuer = &req.issuer.id;
    let active: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.active && &p.principal_id == issuer)
        .collect();
    if active.is_empty() {
        return Err(IssueError::NoPolicy {
            issuer: issuer.clone(),
        });
    }
    let mut refusals = Vec::new();
    let mut too_long: Option<&Policy> = None;
    for policy in active {
        match policy.definition.scope.contains(req.scope) {
            Containment::NotProven { entry, reason } => {
                refusals.push(format!("policy {}: `{entry}`: {reason}", policy.id));
            }
            Containment::Proven if req.validity_secs > policy.definition.max_validity_secs => {
                let longer = too_long.is_none_or(|t| {
                    policy.definition.max_validity_secs > t.definition.max_validity_secs
                });
                if longer {
                    too_long = Some(policy);
                }
            }
            Containment::Proven => return Ok(claims(policy, req)),
        }
    }
    match too_long {
        Some(p) => Err(IssueError::Validity {
            requested: req.validity_secs,
            max: p.definition.max_validity_secs,
            policy_id: p.id.clone(),
            policy_version: p.version,
        }),
        None => Err(IssueError::NotCovered {
            issuer: issuer.clone(),
            refusals,
        }),
    }
}

fn claims(policy: &Policy, req: &IssueRequest<'_>) -> Issued {
    Issued {
        claims: Claims {
            iss: req.issuer.id.clone(),
            sub: req.subject.id.clone(),
            jti: uuid::Uuid::now_v7().to_string(),
            iat: req.now,
            nbf: req.now,
            exp: req.now.saturating_add(req.validity_secs),
            scope: req.scope.clone(),
            parent: None,
            chain: vec![],
            depth: 0,
            ws: req.workspace.map(str::to_string),
        },
        policy_id: policy.id.clone(),
        policy_version: policy.version,
    }
}

#[cfg(test)]
#[path = "issue_tests.rs"]
mod tests;
