//! Delegation: whether a mandate may be derived (attenuated) from a parent
//! mandate. One pure function, [`check`], used by `caracal authority
//! delegate` before it signs, and by anything that re-checks a chain.
//!
//! Times are Unix seconds. A mandate is expired at `now` when
//! `now >= exp` (JWT `exp`: valid strictly before it). Depth counts
//! delegations: a mandate issued directly under a policy has depth 0, its
//! child depth 1.

use super::scope::{Scope, ScopeError, Unproven};
use crate::model::PrincipalKind;

/// Everything the delegation rules look at. The delegator is the parent
/// mandate's subject; the delegate is the child mandate's subject.
#[derive(Debug, Clone, Copy)]
pub struct DelegationRequest<'a> {
    pub parent_scope: &'a Scope,
    /// The parent mandate's `exp`.
    pub parent_exp: i64,
    /// The parent mandate's depth (0 for a mandate issued under a policy).
    pub parent_depth: u32,
    /// The kind of the parent mandate's subject (the delegator).
    pub parent_subject_kind: PrincipalKind,
    /// The kind of the child mandate's subject (the delegate).
    pub child_subject_kind: PrincipalKind,
    pub child_scope: &'a Scope,
    /// The child mandate's `exp`.
    pub child_exp: i64,
    /// The policy's maximum delegation depth; `None` when the policy does
    /// not allow delegation.
    pub max_depth: Option<u32>,
    pub now: i64,
}

/// Why a delegation is refused. Each rule has its own variant, message and
/// [`code`](DelegationError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationError {
    #[error("{}", direction_message(*.from, *.to))]
    Direction {
        from: PrincipalKind,
        to: PrincipalKind,
    },
    #[error("the parent mandate's policy does not allow delegation")]
    NotAllowed,
    #[error("delegation depth {depth} exceeds the policy's maximum of {max}")]
    Depth { depth: u64, max: u32 },
    #[error("the parent mandate expired at {parent_exp} (now {now}); it cannot be delegated")]
    ParentExpired { parent_exp: i64, now: i64 },
    #[error("the delegated mandate would expire at {child_exp}, which is not after now ({now})")]
    ChildValidity { child_exp: i64, now: i64 },
    #[error(
        "the delegated mandate would expire at {child_exp}, after its parent expires at {parent_exp}"
    )]
    Expiry { child_exp: i64, parent_exp: i64 },
    #[error("the delegated scope is invalid: {0}")]
    InvalidScope(ScopeError),
    #[error("the delegated scope is empty: it needs at least one resource and one action")]
    EmptyScope,
    #[error("the delegated scope exceeds the parent's: `{entry}`: {reason}")]
    ScopeExceeded { entry: String, reason: Unproven },
}

impl DelegationError {
    /// Stable machine-readable code, one per rule.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Direction { .. } => "delegation_direction",
            Self::NotAllowed => "delegation_not_allowed",
            Self::Depth { .. } => "delegation_depth",
            Self::ParentExpired { .. } => "parent_expired",
            Self::ChildValidity { .. } => "delegation_validity",
            Self::Expiry { .. } => "delegation_expiry",
            Self::InvalidScope(_) => "scope_invalid",
            Self::EmptyScope => "scope_empty",
            Self::ScopeExceeded { .. } => "scope_exceeded",
        }
    }
}

fn direction_message(from: PrincipalKind, to: PrincipalKind) -> String {
    match from {
        PrincipalKind::Service => {
            format!(
                "a service cannot delegate authority (not even to a {})",
                to.as_str()
            )
        }
        _ => format!(
            "a {} cannot delegate to a {}: authority does not flow back to users",
            from.as_str(),
            to.as_str()
        ),
    }
}

/// Whether a mandate held by a `from` principal may be delegated to a `to`
/// principal: user→{user, agent, service} and agent→{agent, service} are
/// allowed; service→anything and agent→user are refused.
pub fn direction_allowed(from: PrincipalKind, to: PrincipalKind) -> bool {
    use PrincipalKind::*;
    match (from, to) {
        (User, User | Agent | Service) => true,
        (Agent, Agent | Service) => true,
        (Agent, User) => false,
        (Service, _) => false,
    }
}

/// Applies every delegation rule and reports the first one broken, in this
/// order: direction, delegation allowed, depth, parent not expired, child
/// expiry in the future and not after the parent's, child scope valid,
/// non-empty and proven inside the parent's scope.
pub fn check(req: &DelegationRequest) -> Result<(), DelegationError> {
    if !direction_allowed(req.parent_subject_kind, req.child_subject_kind) {
        return Err(DelegationError::Direction {
            from: req.parent_subject_kind,
            to: req.child_subject_kind,
        });
    }
    let max = req.max_depth.ok_or(DelegationError::NotAllowed)?;
    let depth = u64::from(req.parent_depth) + 1;
    if depth > u64::from(max) {
        return Err(DelegationError::Depth { depth, max });
    }
    if req.now >= req.parent_exp {
        return Err(DelegationError::ParentExpired {
            parent_exp: req.parent_exp,
            now: req.now,
        });
    }
    if req.child_exp <= req.now {
        return Err(DelegationError::ChildValidity {
            child_exp: req.child_exp,
            now: req.now,
        });
    }
    if req.child_exp > req.parent_exp {
        return Err(DelegationError::Expiry {
            child_exp: req.child_exp,
            parent_exp: req.parent_exp,
        });
    }
    let child = req
        .child_scope
        .compile()
        .map_err(DelegationError::InvalidScope)?;
    if child.is_empty() {
        return Err(DelegationError::EmptyScope);
    }
    match req.parent_scope.compile_lenient().contains(&child) {
        super::scope::Containment::Proven => Ok(()),
        super::scope::Containment::NotProven { entry, reason } => {
            Err(DelegationError::ScopeExceeded { entry, reason })
        }
    }
}

#[cfg(test)]
#[path = "delegation_tests.rs"]
mod tests;
