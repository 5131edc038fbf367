//! The mandate decision: may this call go ahead under this mandate? One
//! pure function, [`decide`], run by the gateway on every call and by
//! `caracal authority enforce` as a dry run, so both always agree.
//!
//! Checks run in a fixed order and stop at the first failure:
//!
//! 1. a mandate is presented (`mandate_missing`);
//! 2. it verifies: signature under a known kid, well-formed claims
//!    (`mandate_invalid`), and the time window with the clock skew
//!    (`mandate_not_yet_valid`, `mandate_expired`);
//! 3. neither it nor any ancestor in its chain is revoked
//!    (`mandate_revoked`);
//! 4. its subject is the authenticated principal, when one is given
//!    (`mandate_wrong_principal`: a separate code rather than
//!    `mandate_invalid`, because the token itself is sound — someone else
//!    presenting it is a leak worth telling apart in the ledger);
//! 5. its scope covers the (resource, action) of the call (`scope_exceeded`).

use serde::Serialize;

use super::keys::Verifier;
use super::mandate::{self, Claims, MandateError};
use super::scope::ResourcePattern;
use crate::model::Action;

/// The call is allowed.
pub const ALLOW: &str = "allow";
/// No mandate was presented.
pub const MANDATE_MISSING: &str = "mandate_missing";
/// The token does not verify (malformed, bad signature, unknown kid, bad
/// claims, disallowed algorithm).
pub const MANDATE_INVALID: &str = "mandate_invalid";
/// Past `exp` (plus the clock skew).
pub const MANDATE_EXPIRED: &str = "mandate_expired";
/// Before `nbf` (minus the clock skew).
pub const MANDATE_NOT_YET_VALID: &str = "mandate_not_yet_valid";
/// The mandate or one of its ancestors is revoked.
pub const MANDATE_REVOKED: &str = "mandate_revoked";
/// The mandate belongs to another principal than the one presenting it.
pub const MANDATE_WRONG_PRINCIPAL: &str = "mandate_wrong_principal";
/// The mandate's scope does not cover the call.
pub const SCOPE_EXCEEDED: &str = "scope_exceeded";

/// What a call is checked against the mandate for.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The authenticated principal; `None` skips the subject check (a dry
    /// run that names no principal). The gateway always passes one.
    pub principal_id: Option<&'a str>,
    pub resource: &'a str,
    pub action: Action,
}

/// The outcome: allowed or not, a stable code, and one human line per
/// check that ran (the failing check last on a denial).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allow: bool,
    /// [`ALLOW`] or one of the denial codes of this module.
    pub code: &'static str,
    pub reasons: Vec<String>,
    /// The verified claims (present once step 2 passed, also on a later denial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
}

impl Decision {
    fn deny(code: &'static str, mut reasons: Vec<String>, why: String) -> Self {
        reasons.push(why);
        Decision {
            allow: false,
            code,
            reasons,
            claims: None,
        }
    }
}

/// Decides whether `call` may proceed under `token` at unix time `now`,
/// tolerating `skew` seconds of clock difference. `is_revoked` answers for
/// one jti. Never panics on hostile input; see the module docs for the order.
pub fn decide(
    token: Option<&str>,
    verifier: &Verifier,
    now: i64,
    skew: i64,
    call: &Call<'_>,
    is_revoked: impl Fn(&str) -> bool,
) -> Decision {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Decision::deny(MANDATE_MISSING, vec![], "no mandate presented".into());
    };
    let claims = match mandate::verify(verifier, token, now, skew) {
        Ok(claims) => claims,
        Err(e) => return Decision::deny(e.code_for_decision(), vec![], e.to_string()),
    };
    // verify() only succeeds with a kid header it knew.
    let kid = mandate::peek_unverified(token).map_or_else(String::new, |(kid, _)| kid);
    let mut reasons = vec![
        format!("signature verified (kid {kid})"),
        format!(
            "valid from {} until {} (exclusive), checked at {} with {}s clock skew",
            fmt_time(claims.nbf),
            fmt_time(claims.exp),
            fmt_time(now),
            skew.max(0)
        ),
    ];
    let with_claims = |mut d: Decision, claims: Claims| {
        d.claims = Some(claims);
        d
    };

    if is_revoked(&claims.jti) {
        let why = format!("mandate {} is revoked", claims.jti);
        return with_claims(Decision::deny(MANDATE_REVOKED, reasons, why), claims);
    }
    if let Some(ancestor) = claims.chain.iter().find(|a| is_revoked(a)) {
        let why = format!("ancestor mandate {ancestor} is revoked, so this one is too");
        return with_claims(Decision::deny(MANDATE_REVOKED, reasons, why), claims);
    }
    reasons.push(match claims.chain.len() {
        0 => "not revoked".to_string(),
        1 => "not revoked (nor its 1 ancestor)".to_string(),
        n => format!("not revoked (nor its {n} ancestors)"),
    });

    match call.principal_id {
        Some(p) if p != claims.sub => {
            let why = format!(
                "mandate was issued to principal {}, but presented by principal {p}",
                claims.sub
            );
            return with_claims(
                Decision::deny(MANDATE_WRONG_PRINCIPAL, reasons, why),
                claims,
            );
        }
        Some(p) => reasons.push(format!("subject matches principal {p}")),
        None => reasons.push(format!(
            "subject is principal {} (no principal given to match)",
            claims.sub
        )),
    }

    let (resource, action) = (call.resource, call.action.as_str());
    if !claims.scope.actions.contains(&call.action) {
        let why = format!(
            "scope does not cover {resource}:{action}: action {action} is not among {}",
            list(claims.scope.actions.iter().map(|a| a.as_str()))
        );
        return with_claims(Decision::deny(SCOPE_EXCEEDED, reasons, why), claims);
    }
    let entry =
        claims.scope.resources.iter().find(|entry| {
            ResourcePattern::parse(entry).is_ok_and(|pattern| pattern.matches(resource))
        });
    match entry {
        Some(entry) => {
            reasons.push(format!(
                "scope covers {resource}:{action} via entry {entry}"
            ));
            Decision {
                allow: true,
                code: ALLOW,
                reasons,
                claims: Some(claims),
            }
        }
        None => {
            let why = format!(
                "scope does not cover {resource}:{action}: no resource entry matches (entries: {})",
                list(claims.scope.resources.iter().map(String::as_str))
            );
            with_claims(Decision::deny(SCOPE_EXCEEDED, reasons, why), claims)
        }
    }
}

impl MandateError {
    /// The decision code of a verification failure (signing failures
    /// cannot come out of verification; they count as invalid).
    fn code_for_decision(&self) -> &'static str {
        match self {
            MandateError::Invalid(_) | MandateError::Signing(_) => MANDATE_INVALID,
            MandateError::Expired { .. } => MANDATE_EXPIRED,
            MandateError::NotYetValid { .. } => MANDATE_NOT_YET_VALID,
        }
    }
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn fmt_time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
