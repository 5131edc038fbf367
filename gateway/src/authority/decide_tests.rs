use super::*;
use crate::authority::keys::{Keyring, Verifier};
use crate::authority::record::MandateRecord;
use crate::authority::Scope;
use crate::policy::{Policy, PolicyDefinition};

const T0: i64 = 1_700_000_000;
const NBF: i64 = T0 + 100;
const EXP: i64 = T0 + 1_000;

fn claims(chain: &[&str]) -> Claims {
    let chain: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
    Claims {
        iss: "user-1".into(),
        sub: "agent-1".into(),
        jti: "m-child".into(),
        iat: NBF,
        nbf: NBF,
        exp: EXP,
        scope: Scope::new(
            vec!["embeddings".into(), "chat.*".into()],
            vec![Action::Create],
        ),
        parent: chain.last().cloned(),
        depth: chain.len() as u32,
        chain,
        ws: None,
    }
}

/// The policy `pol` at version 2, over `resources` with every action.
fn policy(resources: &[&str], active: bool) -> Policy {
    Policy {
        id: "pol".into(),
        version: 2,
        principal_id: "user-1".into(),
        definition: PolicyDefinition {
            scope: Scope::with_all_actions(resources.iter().map(|r| r.to_string()).collect()),
            max_validity_secs: 3600,
            allow_delegation: true,
            max_delegation_depth: 4,
            budget: None,
            rate: None,
            max_in_flight: None,
        },
        active,
        changed_by: "t".into(),
        change_reason: "t".into(),
        created_at: String::new(),
    }
}

fn record(c: &Claims) -> MandateRecord {
    MandateRecord::issued(c, "pol", 1)
}

/// A signed mandate with `chain`, and the workspace state around it.
struct Fixture {
    verifier: Verifier,
    token: String,
    records: Vec<MandateRecord>,
    revoked: Vec<String>,
    policy: Policy,
}

impl Fixture {
    fn new(chain: &[&str]) -> Self {
        let keyring = Keyring::generate(T0).unwrap();
        let c = claims(chain);
        Fixture {
            verifier: keyring.verifier(),
            token: mandate::issue(&keyring, &c).unwrap(),
            records: vec![record(&c)],
            revoked: vec![],
            policy: policy(&["*"], true),
        }
    }

    fn view(&self) -> AuthorityView {
        AuthorityView::new(
            self.verifier.clone(),
            self.records.clone(),
            self.revoked.clone(),
            [self.policy.clone()],
        )
    }

    fn decide_at(&self, now: i64, skew: i64, call: &Call<'_>) -> Decision {
        decide(Some(&self.token), &self.view(), now, skew, call)
    }
}

fn call(principal: Option<&'static str>, resource: &'static str, action: Action) -> Call<'static> {
    Call {
        principal_id: principal,
        resource,
        action,
        explain: true,
    }
}

const OK_CALL: Call<'static> = Call {
    principal_id: Some("agent-1"),
    resource: "chat.completions",
    action: Action::Create,
    explain: true,
};

#[test]
fn a_decision_explains_its_passing_checks_only_when_asked() {
    let f = Fixture::new(&[]);
    let explained = f.decide_at(NBF, 0, &OK_CALL);
    assert!(explained.allowed());
    assert!(explained.reasons.len() >= 5, "{:?}", explained.reasons);
    // Times are written as RFC 3339 instants.
    let nbf = jiff::Timestamp::from_second(NBF).unwrap().to_string();
    assert!(
        explained
            .reasons
            .iter()
            .any(|r| r.contains(&format!("valid from {nbf}"))),
        "{:?}",
        explained.reasons
    );
    let quiet = f.decide_at(
        NBF,
        0,
        &Call {
            explain: false,
            ..OK_CALL
        },
    );
    assert_eq!(quiet.outcome, Ok(()));
    assert!(quiet.reasons.is_empty(), "{:?}", quiet.reasons);
    // A refusal always says why, explained or not.
    let wrong = call(Some("agent-2"), "chat.completions", Action::Create);
    let refused = f.decide_at(
        NBF,
        0,
        &Call {
            explain: false,
            ..wrong
        },
    );
    assert_eq!(refused.outcome, Err(Denied::MandateWrongPrincipal));
    assert!(!refused.allowed());
    assert_eq!(refused.code(), "mandate_wrong_principal");
    assert_eq!(quiet.code(), "allow");
    assert_eq!(refused.reasons.len(), 1, "{:?}", refused.reasons);
    assert!(
        refused.reasons[0].contains("agent-2"),
        "{:?}",
        refused.reasons
    );
}

#[test]
fn a_covering_mandate_is_allowed_with_every_check_explained() {
    let f = Fixture::new(&["m-root", "m-mid"]);
    let d = f.decide_at(NBF, 30, &OK_CALL);
    assert!(d.allowed(), "{d:?}");
    assert_eq!(d.outcome, Ok(()));
    assert_eq!(d.mandate_id(), Some("m-child"));
    assert_eq!(d.reasons.len(), 6, "{:?}", d.reasons);
    assert!(d.reasons[0].starts_with("signature verified (kid k-"));
    assert!(d.reasons[1].starts_with("valid from "));
    assert_eq!(d.reasons[2], "not revoked (nor its 2 ancestors)");
    assert_eq!(d.reasons[3], "subject matches principal agent-1");
    assert_eq!(d.reasons[4], "issued under policy pol, active at version 2");
    assert_eq!(
        d.reasons[5],
        "scope covers chat.completions:create via entry chat.*"
    );
}

#[test]
fn no_principal_skips_only_the_subject_match() {
    let f = Fixture::new(&[]);
    let d = f.decide_at(NBF, 0, &call(None, "embeddings", Action::Create));
    assert!(d.allowed(), "{d:?}");
    assert_eq!(d.reasons[2], "not revoked");
    assert!(
        d.reasons[3].contains("no principal given"),
        "{:?}",
        d.reasons
    );
    assert!(d.reasons[5].ends_with("via entry embeddings"));
}

#[test]
fn a_missing_mandate_is_mandate_missing() {
    let f = Fixture::new(&[]);
    for token in [None, Some("")] {
        let d = decide(token, &f.view(), NBF, 0, &OK_CALL);
        assert_eq!(d.outcome, Err(Denied::MandateMissing));
        assert_eq!(d.reasons, vec!["no mandate presented".to_string()]);
        assert!(d.claims.is_none());
    }
}

#[test]
fn tokens_that_do_not_verify_are_mandate_invalid() {
    let f = Fixture::new(&[]);
    let other = Fixture::new(&[]);
    // Change a signature character well before the end: the last one also
    // carries padding bits, and changing only those is a malformed token.
    let mut tampered = f.token.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (view, t, needle) in [
        (f.view(), "garbage", "malformed"),
        (f.view(), other.token.as_str(), "unknown signing key"),
        (other.view(), f.token.as_str(), "unknown signing key"),
        (f.view(), tampered.as_str(), "signature"),
    ] {
        let d = decide(Some(t), &view, NBF, 0, &OK_CALL);
        assert_eq!(d.outcome, Err(Denied::MandateInvalid), "{t}");
        assert_eq!(d.reasons.len(), 1);
        assert!(d.reasons[0].contains(needle), "{:?}", d.reasons);
        assert!(d.claims.is_none());
    }
}

#[test]
fn the_time_window_is_exact_with_skew() {
    let f = Fixture::new(&[]);
    let at = |now: i64, skew: i64| f.decide_at(now, skew, &OK_CALL);
    assert_eq!(at(NBF - 1, 0).outcome, Err(Denied::MandateNotYetValid));
    assert_eq!(at(NBF, 0).outcome, Ok(()));
    assert_eq!(at(NBF - 30, 30).outcome, Ok(()));
    assert_eq!(at(NBF - 31, 30).outcome, Err(Denied::MandateNotYetValid));
    assert_eq!(at(EXP - 1, 0).outcome, Ok(()));
    assert_eq!(at(EXP, 0).outcome, Err(Denied::MandateExpired));
    assert_eq!(at(EXP + 29, 30).outcome, Ok(()));
    assert_eq!(at(EXP + 30, 30).outcome, Err(Denied::MandateExpired));
    let d = at(EXP, 0);
    assert!(d.reasons[0].contains("expired"), "{:?}", d.reasons);
}

#[test]
fn revocation_of_the_mandate_or_any_ancestor_denies() {
    for revoked in ["m-child", "m-root", "m-mid"] {
        let mut f = Fixture::new(&["m-root", "m-mid"]);
        f.revoked = vec![revoked.to_string()];
        let d = f.decide_at(NBF, 0, &OK_CALL);
        assert_eq!(d.outcome, Err(Denied::MandateRevoked), "{revoked}");
        assert!(
            d.reasons.last().unwrap().contains(revoked),
            "{:?}",
            d.reasons
        );
        assert_eq!(d.reasons.len(), 3, "verification reasons, then the denial");
        assert_eq!(d.mandate_id(), Some("m-child"));
    }
}

#[test]
fn another_principal_presenting_the_mandate_is_refused() {
    let f = Fixture::new(&[]);
    let d = f.decide_at(
        NBF,
        0,
        &call(Some("agent-2"), "chat.completions", Action::Create),
    );
    assert_eq!(d.outcome, Err(Denied::MandateWrongPrincipal));
    let last = d.reasons.last().unwrap();
    assert!(
        last.contains("agent-1") && last.contains("agent-2"),
        "{last}"
    );
}

#[test]
fn calls_outside_the_scope_are_scope_exceeded() {
    let f = Fixture::new(&[]);
    for (resource, action, needle) in [
        (
            "chat.completions",
            Action::Read,
            "action read is not among create",
        ),
        ("files", Action::Create, "no resource entry matches"),
        ("embedding", Action::Create, "no resource entry matches"),
    ] {
        let d = f.decide_at(NBF, 0, &call(Some("agent-1"), resource, action));
        assert_eq!(d.outcome, Err(Denied::ScopeExceeded), "{resource}");
        assert!(
            d.reasons.last().unwrap().contains(needle),
            "{:?}",
            d.reasons
        );
    }
}

#[test]
fn a_signed_but_unrecorded_mandate_is_invalid() {
    let mut f = Fixture::new(&[]);
    f.records.clear();
    let d = f.decide_at(NBF, 0, &OK_CALL);
    assert_eq!(d.outcome, Err(Denied::MandateInvalid));
    assert!(
        d.reasons.last().unwrap().contains("not recorded"),
        "{:?}",
        d.reasons
    );
}

#[test]
fn a_missing_policy_is_invalid_and_a_disabled_one_is_policy_disabled() {
    let mut f = Fixture::new(&[]);
    f.policy.id = "other".into();
    assert_eq!(
        f.decide_at(NBF, 0, &OK_CALL).outcome,
        Err(Denied::MandateInvalid)
    );
    let mut f = Fixture::new(&[]);
    f.policy.active = false;
    let d = f.decide_at(NBF, 0, &OK_CALL);
    assert_eq!(d.outcome, Err(Denied::PolicyDisabled));
    assert!(
        d.reasons.last().unwrap().contains("policy pol"),
        "{:?}",
        d.reasons
    );
}

#[test]
fn a_tightened_policy_narrows_mandates_already_issued() {
    let mut f = Fixture::new(&[]);
    f.policy = policy(&["embeddings"], true);
    let d = f.decide_at(NBF, 0, &OK_CALL);
    assert_eq!(d.outcome, Err(Denied::ScopeExceeded));
    assert_eq!(
        d.reasons.last().unwrap(),
        "policy pol (version 2) no longer covers chat.completions:create"
    );
    let still = f.decide_at(NBF, 0, &call(Some("agent-1"), "embeddings", Action::Create));
    assert!(still.allowed(), "{still:?}");
}

#[test]
fn the_signed_scope_is_judged_even_when_the_record_says_more() {
    // A record widened behind the gateway's back does not widen the token.
    let mut f = Fixture::new(&[]);
    f.records[0].scope = Scope::with_all_actions(vec!["*".into()]);
    let d = f.decide_at(NBF, 0, &call(Some("agent-1"), "files", Action::Delete));
    assert_eq!(d.outcome, Err(Denied::ScopeExceeded));
    assert!(f.decide_at(NBF, 0, &OK_CALL).allowed());
}

#[test]
fn checks_run_in_order_and_the_first_failure_wins() {
    let mut f = Fixture::new(&["m-root"]);
    // Everything wrong: expired, revoked, wrong principal, disabled
    // policy, out of scope.
    let bad = call(Some("agent-2"), "files", Action::Delete);
    f.revoked = vec!["m-root".into()];
    f.policy.active = false;
    assert_eq!(
        f.decide_at(EXP, 0, &bad).outcome,
        Err(Denied::MandateExpired)
    );
    assert_eq!(
        f.decide_at(NBF, 0, &bad).outcome,
        Err(Denied::MandateRevoked)
    );
    f.revoked.clear();
    assert_eq!(
        f.decide_at(NBF, 0, &bad).outcome,
        Err(Denied::MandateWrongPrincipal)
    );
    let in_scope_principal = call(Some("agent-1"), "files", Action::Delete);
    assert_eq!(
        f.decide_at(NBF, 0, &in_scope_principal).outcome,
        Err(Denied::PolicyDisabled)
    );
    f.policy.active = true;
    assert_eq!(
        f.decide_at(NBF, 0, &in_scope_principal).outcome,
        Err(Denied::ScopeExceeded)
    );
    // An unknown kid is refused before anything else is looked at.
    let other = Fixture::new(&[]);
    let d = decide(Some(&f.token), &other.view(), NBF, 0, &OK_CALL);
    assert_eq!(d.outcome, Err(Denied::MandateInvalid));
    assert!(d.claims.is_none());
}

/// A recorded mandate for agent-1 over `resources` (create), valid in
/// [nbf, exp).
fn held(jti: &str, resources: &[&str], nbf: i64, exp: i64) -> MandateRecord {
    let mut c = claims(&[]);
    c.jti = jti.into();
    c.nbf = nbf;
    c.iat = nbf;
    c.exp = exp;
    c.scope = Scope::new(
        resources.iter().map(|r| r.to_string()).collect(),
        vec![Action::Create],
    );
    record(&c)
}

fn held_view(records: Vec<MandateRecord>, revoked: &[&str]) -> AuthorityView {
    AuthorityView::new(
        Verifier::empty(),
        records,
        revoked.iter().map(|r| r.to_string()),
        [policy(&["*"], true)],
    )
}

#[test]
fn without_a_token_the_principals_recorded_mandates_decide() {
    let view = held_view(
        vec![
            held("m-embed", &["embeddings"], NBF, EXP),
            held("m-chat", &["chat.completions"], NBF, EXP),
        ],
        &[],
    );
    let d = decide_held(&view, NBF, 0, &OK_CALL);
    assert!(d.allowed(), "{d:?}");
    assert_eq!(d.mandate_id(), Some("m-chat"));
    assert_eq!(
        d.reasons[0],
        "mandate m-chat recorded for principal agent-1"
    );

    let other = call(Some("agent-2"), "chat.completions", Action::Create);
    let d = decide_held(&view, NBF, 0, &other);
    assert_eq!(d.outcome, Err(Denied::MandateMissing));
    assert!(d.reasons[0].contains("holds none"), "{:?}", d.reasons);
    let d = decide_held(&view, NBF, 0, &call(None, "embeddings", Action::Create));
    assert_eq!(d.outcome, Err(Denied::MandateMissing));
}

#[test]
fn the_most_telling_denial_among_held_mandates_is_reported() {
    let expired = held("m-old", &["chat.completions"], T0, NBF);
    let later = held("m-later", &["chat.completions"], EXP, EXP + 100);
    let revoked = held("m-revoked", &["chat.completions"], NBF, EXP);
    let narrow = held("m-narrow", &["embeddings"], NBF, EXP);
    let at = |records: Vec<MandateRecord>| {
        decide_held(&held_view(records, &["m-revoked"]), NBF, 0, &OK_CALL)
    };
    let d = at(vec![expired.clone()]);
    assert_eq!(d.outcome, Err(Denied::MandateExpired));
    assert_eq!(d.mandate_id(), Some("m-old"));
    assert_eq!(
        at(vec![expired.clone(), later.clone()]).outcome,
        Err(Denied::MandateNotYetValid)
    );
    assert_eq!(
        at(vec![expired.clone(), later.clone(), revoked.clone()]).outcome,
        Err(Denied::MandateRevoked)
    );
    let d = at(vec![expired, later, revoked, narrow]);
    assert_eq!(d.outcome, Err(Denied::ScopeExceeded));
    assert_eq!(d.mandate_id(), Some("m-narrow"));
    assert_eq!(d.reasons.len(), 1);
    assert!(
        d.reasons[0].contains("holds 4 recorded mandate(s)")
            && d.reasons[0].contains("closest: mandate m-narrow"),
        "{:?}",
        d.reasons
    );
}

#[test]
fn held_mandates_follow_the_same_time_revocation_and_policy_rules() {
    let m = held("m-1", &["chat.*"], NBF, EXP);
    let view = held_view(vec![m.clone()], &[]);
    for (now, skew, code) in [
        (NBF - 1, 0, Err(Denied::MandateNotYetValid)),
        (NBF - 30, 30, Ok(())),
        (EXP - 1, 0, Ok(())),
        (EXP, 0, Err(Denied::MandateExpired)),
        (EXP + 29, 30, Ok(())),
    ] {
        assert_eq!(
            decide_held(&view, now, skew, &OK_CALL).outcome,
            code,
            "{now}"
        );
    }
    let mut child = held("m-2", &["chat.*"], NBF, EXP);
    child.chain = vec!["m-root".into()];
    child.parent_jti = Some("m-root".into());
    child.depth = 1;
    let view = held_view(vec![child], &["m-root"]);
    assert_eq!(
        decide_held(&view, NBF, 0, &OK_CALL).outcome,
        Err(Denied::MandateRevoked)
    );
    let view = AuthorityView::new(
        Verifier::empty(),
        [m.clone()],
        [],
        [policy(&["embeddings"], true)],
    );
    assert_eq!(
        decide_held(&view, NBF, 0, &OK_CALL).outcome,
        Err(Denied::ScopeExceeded)
    );
    let view = AuthorityView::new(Verifier::empty(), [m], [], [policy(&["*"], false)]);
    assert_eq!(
        decide_held(&view, NBF, 0, &OK_CALL).outcome,
        Err(Denied::PolicyDisabled)
    );
}

#[test]
fn a_remembered_verification_still_has_its_time_window_judged() {
    let f = Fixture::new(&[]);
    let view = f.view();
    let at = |now: i64| decide(Some(&f.token), &view, now, 0, &OK_CALL).outcome;
    assert_eq!(at(NBF), Ok(()));
    assert!(
        view.verified(&f.token).is_some(),
        "verified once, remembered"
    );
    assert_eq!(at(NBF + 1), Ok(()));
    assert_eq!(at(EXP), Err(Denied::MandateExpired));
    assert_eq!(at(NBF - 1), Err(Denied::MandateNotYetValid));
    // A token that failed is not remembered.
    assert_eq!(
        decide(Some("garbage"), &view, NBF, 0, &OK_CALL).outcome,
        Err(Denied::MandateInvalid)
    );
    assert!(view.verified("garbage").is_none());
    // Another view (other keys) remembers nothing.
    let other = Fixture::new(&[]);
    assert_eq!(
        decide(Some(&f.token), &other.view(), NBF, 0, &OK_CALL).outcome,
        Err(Denied::MandateInvalid)
    );
}

#[test]
fn a_remembered_verification_does_not_outlive_a_revocation() {
    let mut f = Fixture::new(&[]);
    let view = f.view();
    assert!(decide(Some(&f.token), &view, NBF, 0, &OK_CALL).allowed());
    // The gateway swaps in a new view when the revocation lands.
    f.revoked = vec!["m-child".into()];
    let revoked = f.view();
    assert_eq!(
        decide(Some(&f.token), &revoked, NBF, 0, &OK_CALL).outcome,
        Err(Denied::MandateRevoked)
    );
}

#[test]
fn among_equally_close_denials_the_mandate_held_longest_is_named() {
    // Both mandates are current and neither covers the call: the one that
    // expires last (first in the principal's list) is the one reported.
    let short = held("m-short", &["embeddings"], NBF, EXP - 10);
    let long = held("m-long", &["files"], NBF, EXP);
    let view = held_view(vec![short, long], &[]);
    let d = decide_held(&view, NBF, 0, &OK_CALL);
    assert_eq!(d.outcome, Err(Denied::ScopeExceeded));
    assert_eq!(d.mandate_id(), Some("m-long"));
}
