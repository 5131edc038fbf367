//! The mandate decision: may this call go ahead? Pure functions run by
//! the gateway on every call and by `caracal authority enforce` as a dry
//! run, so both always agree. [`decide`] judges one presented token;
//! [`decide_held`] judges the mandates the workspace recorded for the
//! calling principal (how an unmodified `HTTPS_PROXY` client acts under
//! its mandates without sending one).
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
//! 5. the workspace recorded it (`mandate_invalid` otherwise) and the
//!    policy it was issued under is still active (`policy_disabled`);
//! 6. its scope covers the (resource, action) of the call, and so does the
//!    current version of its policy (`scope_exceeded`): tightening a policy
//!    narrows every mandate already issued under it.

use std::sync::Arc;

use super::mandate::{self, Claims, MandateError};
use super::scope::CompiledScope;
use super::view::{AuthorityView, Held, Verified};
use crate::model::Action;

crate::wire_enum! {
    /// Why a mandate decision refused a call.
    pub enum Denied as "mandate decision" {
        /// No mandate was presented (and, for recorded mandates, the
        /// principal holds none).
        MandateMissing => "mandate_missing",
        /// The token does not verify (malformed, bad signature, unknown
        /// kid, bad claims, disallowed algorithm), or the workspace has no
        /// record of it.
        MandateInvalid => "mandate_invalid",
        /// Past `exp` (plus the clock skew).
        MandateExpired => "mandate_expired",
        /// Before `nbf` (minus the clock skew).
        MandateNotYetValid => "mandate_not_yet_valid",
        /// The mandate or one of its ancestors is revoked.
        MandateRevoked => "mandate_revoked",
        /// The mandate belongs to another principal than the one presenting it.
        MandateWrongPrincipal => "mandate_wrong_principal",
        /// The policy the mandate was issued under has been disabled.
        PolicyDisabled => "policy_disabled",
        /// The mandate's scope (or its policy's current scope) does not cover the call.
        ScopeExceeded => "scope_exceeded",
    }
}

impl Denied {
    /// How close a denial over a recorded mandate came to allowing: the
    /// most telling one is reported when none allows.
    fn rank(self) -> u8 {
        match self {
            Denied::ScopeExceeded => 6,
            Denied::PolicyDisabled => 5,
            Denied::MandateRevoked => 4,
            Denied::MandateNotYetValid => 3,
            Denied::MandateExpired => 2,
            Denied::MandateMissing | Denied::MandateInvalid | Denied::MandateWrongPrincipal => 1,
        }
    }
}

/// What a call is checked against the mandate for.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The authenticated principal; `None` skips the subject check (a dry
    /// run that names no principal). The gateway always passes one.
    pub principal_id: Option<&'a str>,
    pub resource: &'a str,
    pub action: Action,
    /// Record a line for every check that passed, not only the failing
    /// one (`caracal authority enforce` explains; the gateway, which only
    /// ever prints a refusal, does not pay for the text).
    pub explain: bool,
}

/// The human lines of a decision: the passing checks' only when asked.
struct Trace {
    explain: bool,
    lines: Vec<String>,
}

impl Trace {
    fn new(call: &Call<'_>) -> Self {
        Trace {
            explain: call.explain,
            lines: Vec::new(),
        }
    }

    /// Notes a check that passed.
    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.explain {
            self.lines.push(line());
        }
    }
}

/// The outcome: allowed, or the reason it was not, and one human line per
/// check that ran (the failing check last on a denial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `Ok` when the call may go ahead.
    pub outcome: Result<(), Denied>,
    pub reasons: Vec<String>,
    /// The mandate decided on (present once step 2 passed, also on a
    /// later denial).
    pub claims: Option<Arc<Claims>>,
}

impl Decision {
    fn deny(code: Denied, mut reasons: Vec<String>, why: String) -> Self {
        reasons.push(why);
        Decision {
            outcome: Err(code),
            reasons,
            claims: None,
        }
    }

    /// Whether the call may go ahead.
    pub fn allowed(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The stable code: `allow`, or the denial's.
    pub fn code(&self) -> &'static str {
        match self.outcome {
            Ok(()) => "allow",
            Err(d) => d.as_str(),
        }
    }

    /// The id of the mandate decided on, if one was.
    pub fn mandate_id(&self) -> Option<&str> {
        self.claims.as_deref().map(|c| c.jti.as_str())
    }
}

/// Decides whether `call` may proceed under `token` at unix time `now`,
/// tolerating `skew` seconds of clock difference. Never panics on hostile
/// input; see the module docs for the order.
pub fn decide(
    token: Option<&str>,
    view: &AuthorityView,
    now: i64,
    skew: i64,
    call: &Call<'_>,
) -> Decision {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Decision::deny(
            Denied::MandateMissing,
            vec![],
            "no mandate presented".into(),
        );
    };
    // A token verified before under the same keys skips the signature
    // check; its time window is judged again like any other.
    let verified = match view.verified(token) {
        Some(v) => match mandate::check_window(v.claims.nbf, v.claims.exp, now, skew) {
            Ok(()) => v,
            Err(e) => return Decision::deny(e.code_for_decision(), vec![], e.to_string()),
        },
        None => match mandate::verify(view.verifier(), token, now, skew) {
            Ok(claims) => {
                // verify() only succeeds with a kid header it knew.
                let kid = mandate::peek_unverified(token).map_or_else(String::new, |(k, _)| k);
                let v = Arc::new(Verified {
                    claims: Arc::new(claims),
                    kid,
                });
                view.remember(token, v.clone());
                v
            }
            Err(e) => return Decision::deny(e.code_for_decision(), vec![], e.to_string()),
        },
    };
    let claims = &verified.claims;
    let mut trace = Trace::new(call);
    trace.note(|| format!("signature verified (kid {})", verified.kid));
    trace.note(|| window_reason(claims, now, skew));
    let held = view.mandate(&claims.jti);
    // The signed claims are what is judged; the record supplies the policy
    // and, when it agrees with the token, its compiled scope.
    let compiled;
    let scope = match held {
        Some(h) if h.claims.scope == claims.scope => &h.scope,
        _ => {
            compiled = claims.scope.compile_lenient();
            &compiled
        }
    };
    let policy_id = held.map(|h| h.policy_id.as_str());
    judge(claims.clone(), scope, policy_id, view, call, trace)
}

/// Decides `call` for its principal without a presented token, over the
/// mandates the workspace recorded for that principal: allowed when one of
/// them allows it. Otherwise the denial is the most telling one among
/// them (a current mandate that does not cover the call, before a disabled
/// policy, a revoked, a not-yet-valid, an expired or an unrecorded one);
/// `mandate_missing` when the principal holds none. `call.principal_id`
/// is required (without one, nothing is held).
pub fn decide_held(view: &AuthorityView, now: i64, skew: i64, call: &Call<'_>) -> Decision {
    let Some(principal) = call.principal_id else {
        return Decision::deny(
            Denied::MandateMissing,
            vec![],
            "no mandate presented and no principal to select mandates for".into(),
        );
    };
    let held = view.held_by(principal);
    if held.is_empty() {
        return Decision::deny(
            Denied::MandateMissing,
            vec![],
            format!(
                "no mandate presented and principal {principal} holds none; \
                 issue one with `caracal authority mandate --subject {principal}`"
            ),
        );
    }
    let mut best: Option<(Denied, Decision)> = None;
    for h in held {
        let d = judge_held(h, view, now, skew, call);
        let Err(code) = d.outcome else {
            return d;
        };
        if best.as_ref().is_none_or(|(b, _)| code.rank() > b.rank()) {
            best = Some((code, d));
        }
    }
    let Some((code, best)) = best else {
        // Unreachable: `held` is not empty, so one decision was kept.
        return Decision::deny(Denied::MandateMissing, vec![], "no mandate to judge".into());
    };
    let resource = call.resource;
    let action = call.action.as_str();
    let reasons = vec![format!(
        "no mandate presented; principal {principal} holds {} recorded mandate(s), none allows {resource}:{action}; closest: mandate {}: {}",
        held.len(),
        best.mandate_id().unwrap_or("?"),
        best.reasons.last().map_or("", String::as_str)
    )];
    Decision {
        outcome: Err(code),
        reasons,
        claims: best.claims,
    }
}

/// Steps 2 (time only: the record came from the workspace's own
/// database) to 6 for one recorded mandate.
fn judge_held(
    h: &Arc<Held>,
    view: &AuthorityView,
    now: i64,
    skew: i64,
    call: &Call<'_>,
) -> Decision {
    let c = &h.claims;
    let with = |mut d: Decision| {
        d.claims = Some(c.clone());
        d
    };
    if let Err(e) = mandate::check_window(c.nbf, c.exp, now, skew) {
        return with(Decision::deny(e.code_for_decision(), vec![], e.to_string()));
    }
    let mut trace = Trace::new(call);
    trace.note(|| format!("mandate {} recorded for principal {}", c.jti, c.sub));
    trace.note(|| window_reason(c, now, skew));
    judge(c.clone(), &h.scope, Some(&h.policy_id), view, call, trace)
}

/// Steps 3 to 6 over claims already known to be genuine and current.
/// `policy_id` is `None` when the workspace holds no record of the mandate.
fn judge(
    claims: Arc<Claims>,
    scope: &CompiledScope,
    policy_id: Option<&str>,
    view: &AuthorityView,
    call: &Call<'_>,
    mut trace: Trace,
) -> Decision {
    let deny = |code, trace: Trace, why| {
        let mut d = Decision::deny(code, trace.lines, why);
        d.claims = Some(claims.clone());
        d
    };
    if view.is_revoked(&claims.jti) {
        let why = format!("mandate {} is revoked", claims.jti);
        return deny(Denied::MandateRevoked, trace, why);
    }
    if let Some(ancestor) = claims.chain.iter().find(|a| view.is_revoked(a)) {
        let why = format!("ancestor mandate {ancestor} is revoked, so this one is too");
        return deny(Denied::MandateRevoked, trace, why);
    }
    trace.note(|| match claims.chain.len() {
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
            return deny(Denied::MandateWrongPrincipal, trace, why);
        }
        Some(p) => trace.note(|| format!("subject matches principal {p}")),
        None => trace.note(|| {
            format!(
                "subject is principal {} (no principal given to match)",
                claims.sub
            )
        }),
    }

    let Some(policy_id) = policy_id else {
        let why = format!(
            "mandate {} is signed by this workspace's key but not recorded in its database",
            claims.jti
        );
        return deny(Denied::MandateInvalid, trace, why);
    };
    let Some(policy) = view.policy(policy_id) else {
        let why = format!("policy {policy_id}, under which it was issued, does not exist");
        return deny(Denied::MandateInvalid, trace, why);
    };
    let version = policy.policy.version;
    if !policy.policy.active {
        let why = format!(
            "policy {policy_id}, under which it was issued, is disabled (version {version})"
        );
        return deny(Denied::PolicyDisabled, trace, why);
    }
    trace.note(|| format!("issued under policy {policy_id}, active at version {version}"));

    let (resource, action) = (call.resource, call.action);
    let a = action.as_str();
    if !scope.actions().contains(&action) {
        let why = format!(
            "scope does not cover {resource}:{a}: action {a} is not among {}",
            list(claims.scope.actions.iter().map(|a| a.as_str()))
        );
        return deny(Denied::ScopeExceeded, trace, why);
    }
    let Some(entry) = scope.patterns().iter().find(|p| p.matches(resource)) else {
        let why = format!(
            "scope does not cover {resource}:{a}: no resource entry matches (entries: {})",
            list(claims.scope.resources.iter().map(String::as_str))
        );
        return deny(Denied::ScopeExceeded, trace, why);
    };
    trace.note(|| format!("scope covers {resource}:{a} via entry {}", entry.as_str()));
    if !policy.scope.covers(resource, action) {
        let why = format!("policy {policy_id} (version {version}) no longer covers {resource}:{a}");
        return deny(Denied::ScopeExceeded, trace, why);
    }
    Decision {
        outcome: Ok(()),
        reasons: trace.lines,
        claims: Some(claims),
    }
}

fn window_reason(claims: &Claims, now: i64, skew: i64) -> String {
    format!(
        "valid from {} until {} (exclusive), checked at {} with {}s clock skew",
        fmt_time(claims.nbf),
        fmt_time(claims.exp),
        fmt_time(now),
        skew.max(0)
    )
}

impl MandateError {
    /// The decision code of a verification failure (signing failures
    /// cannot come out of verification; they count as invalid).
    fn code_for_decision(&self) -> Denied {
        match self {
            MandateError::Invalid(_) | MandateError::Signing(_) => Denied::MandateInvalid,
            MandateError::Expired { .. } => Denied::MandateExpired,
            MandateError::NotYetValid { .. } => Denied::MandateNotYetValid,
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
