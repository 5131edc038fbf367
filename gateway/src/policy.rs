//! Policies: what a principal may authorise (scopes, maximum mandate
//! validity, delegation), what it may spend (a budget over a window) and
//! how fast (rate limits), versioned. One policy may carry a scope, a
//! budget, a rate limit or several of them; every policy of a principal
//! must hold. The definition is validated against the workspace's
//! provider catalogs before it is stored.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::authority::Scope;
use crate::budget::rate::RateLimit;
use crate::budget::window::WindowSpec;
use crate::model::Action;
use crate::money::Money;

/// The versioned content of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDefinition {
    /// What mandates issued under this policy may cover (empty: none; the
    /// policy then carries only a budget or rate limit).
    #[serde(default)]
    pub scope: Scope,
    /// Longest validity of a mandate issued under this policy, seconds.
    #[serde(default)]
    pub max_validity_secs: i64,
    /// Whether mandates issued under it may be delegated.
    #[serde(default)]
    pub allow_delegation: bool,
    /// Longest delegation chain below a root mandate (when allowed).
    #[serde(default)]
    pub max_delegation_depth: u32,
    /// What the principal may spend per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// How fast the principal may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
    /// How many of its requests may be in flight at once (below the
    /// workspace's `limits.max_in_flight_per_principal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// The largest per-principal in-flight limit a policy may set.
pub const MAX_IN_FLIGHT: u32 = 100_000;

/// A spend limit over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub limit: Money,
    pub window: WindowSpec,
    /// Output tokens a request is assumed to produce when it sets no
    /// maximum itself (its reservation is priced with this many).
    pub max_output_tokens: u64,
}

/// Output tokens assumed for requests without a maximum, by default.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// One version of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Policy {
    pub id: String,
    pub version: u32,
    pub principal_id: String,
    pub definition: PolicyDefinition,
    /// False once the policy was disabled (in that version and after).
    pub active: bool,
    pub changed_by: String,
    pub change_reason: String,
    pub created_at: String,
}

/// Why a definition cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "a policy needs a scope (--resource and --action), a budget (--limit with \
         --time-window), a rate limit (--requests-per-minute, --tokens-per-minute) or an \
         in-flight limit (--max-in-flight)"
    )]
    Empty,
    #[error("--max-in-flight must be between 1 and {MAX_IN_FLIGHT}")]
    MaxInFlight,
    #[error("a scope needs at least one --resource and one --action")]
    EmptyScope,
    #[error("--max-output-tokens must be between 1 and 10000000")]
    MaxOutputTokens,
    #[error("invalid rate limit: {0}")]
    Rate(String),
    #[error("--max-validity must be between 1 second and 366 days")]
    Validity,
    #[error("--max-delegation-depth must be between 1 and 16 when delegation is allowed")]
    Depth,
    #[error("invalid resource {entry:?}: {reason}")]
    Pattern { entry: String, reason: String },
    #[error("unknown resource {entry:?}: no provider of this workspace has it; valid resources: {valid}")]
    UnknownResource { entry: String, valid: String },
    #[error(
        "action {action} is offered for none of the resources {entries}; actions there: {valid}"
    )]
    UnknownAction {
        action: String,
        entries: String,
        valid: String,
    },
    #[error("--change-reason must say why (1 to 1000 characters)")]
    Reason,
}

/// Longest mandate validity a policy may allow.
pub const MAX_VALIDITY_SECS: i64 = 366 * 24 * 3600;

impl PolicyDefinition {
    /// Checks the definition on its own and against the workspace catalog
    /// (every (resource, action) pair the providers offer): each resource
    /// entry must name or match at least one catalog resource, and each
    /// action must be offered for at least one of the resources it matches.
    pub fn validate(&self, catalog: &[(String, Action)]) -> Result<(), PolicyError> {
        let no_scope = self.scope.resources.is_empty() && self.scope.actions.is_empty();
        if let Some(b) = &self.budget {
            if !(1..=10_000_000).contains(&b.max_output_tokens) {
                return Err(PolicyError::MaxOutputTokens);
            }
        }
        if let Some(r) = &self.rate {
            r.validate().map_err(|e| PolicyError::Rate(e.to_string()))?;
        }
        if self
            .max_in_flight
            .is_some_and(|n| !(1..=MAX_IN_FLIGHT).contains(&n))
        {
            return Err(PolicyError::MaxInFlight);
        }
        if no_scope {
            return if self.budget.is_some() || self.rate.is_some() || self.max_in_flight.is_some() {
                Ok(())
            } else {
                Err(PolicyError::Empty)
            };
        }
        if self.scope.resources.is_empty() || self.scope.actions.is_empty() {
            return Err(PolicyError::EmptyScope);
        }
        if !(1..=MAX_VALIDITY_SECS).contains(&self.max_validity_secs) {
            return Err(PolicyError::Validity);
        }
        if self.allow_delegation && !(1..=16).contains(&self.max_delegation_depth) {
            return Err(PolicyError::Depth);
        }
        let resources: BTreeSet<&str> = catalog.iter().map(|(r, _)| r.as_str()).collect();
        let mut offered: BTreeSet<Action> = BTreeSet::new();
        for entry in &self.scope.resources {
            let single = Scope::with_all_actions(vec![entry.clone()]);
            single.validate().map_err(|e| PolicyError::Pattern {
                entry: entry.clone(),
                reason: e.to_string(),
            })?;
            let mut matched = false;
            for (r, a) in catalog {
                if single.covers(r, *a) {
                    matched = true;
                    offered.insert(*a);
                }
            }
            if !matched {
                return Err(PolicyError::UnknownResource {
                    entry: entry.clone(),
                    valid: resources.iter().copied().collect::<Vec<_>>().join(", "),
                });
            }
        }
        for action in &self.scope.actions {
            if !offered.contains(action) {
                return Err(PolicyError::UnknownAction {
                    action: action.as_str().to_string(),
                    entries: self.scope.resources.join(", "),
                    valid: offered
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(())
    }
}

/// Checks a change reason.
pub fn validate_reason(reason: &str) -> Result<(), PolicyError> {
    let r = reason.trim();
    if r.is_empty() || r.len() > 1000 {
        return Err(PolicyError::Reason);
    }
    Ok(())
}
