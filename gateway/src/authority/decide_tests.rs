use super::*;
use crate::authority::keys::Keyring;
use crate::authority::Scope;

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

fn setup(chain: &[&str]) -> (Verifier, String) {
    let keyring = Keyring::generate(T0).unwrap();
    let token = mandate::issue(&keyring, &claims(chain)).unwrap();
    (keyring.verifier(), token)
}

fn call(principal: Option<&'static str>, resource: &'static str, action: Action) -> Call<'static> {
    Call {
        principal_id: principal,
        resource,
        action,
    }
}

const OK_CALL: Call<'static> = Call {
    principal_id: Some("agent-1"),
    resource: "chat.completions",
    action: Action::Create,
};

fn none_revoked(_: &str) -> bool {
    false
}

#[test]
fn a_covering_mandate_is_allowed_with_every_check_explained() {
    let (verifier, token) = setup(&["m-root", "m-mid"]);
    let d = decide(Some(&token), &verifier, NBF, 30, &OK_CALL, none_revoked);
    assert!(d.allow, "{d:?}");
    assert_eq!(d.code, ALLOW);
    assert_eq!(d.claims.as_ref().unwrap().jti, "m-child");
    assert_eq!(d.reasons.len(), 5, "{:?}", d.reasons);
    assert!(d.reasons[0].starts_with("signature verified (kid k-"));
    assert!(d.reasons[1].starts_with("valid from "));
    assert_eq!(d.reasons[2], "not revoked (nor its 2 ancestors)");
    assert_eq!(d.reasons[3], "subject matches principal agent-1");
    assert_eq!(
        d.reasons[4],
        "scope covers chat.completions:create via entry chat.*"
    );
}

#[test]
fn no_principal_skips_only_the_subject_match() {
    let (verifier, token) = setup(&[]);
    let c = call(None, "embeddings", Action::Create);
    let d = decide(Some(&token), &verifier, NBF, 0, &c, none_revoked);
    assert!(d.allow, "{d:?}");
    assert_eq!(d.reasons[2], "not revoked");
    assert!(
        d.reasons[3].contains("no principal given"),
        "{:?}",
        d.reasons
    );
    assert!(d.reasons[4].ends_with("via entry embeddings"));
}

#[test]
fn a_missing_mandate_is_mandate_missing() {
    let (verifier, _) = setup(&[]);
    for token in [None, Some("")] {
        let d = decide(token, &verifier, NBF, 0, &OK_CALL, none_revoked);
        assert_eq!((d.allow, d.code), (false, MANDATE_MISSING));
        assert_eq!(d.reasons, vec!["no mandate presented".to_string()]);
        assert!(d.claims.is_none());
    }
}

#[test]
fn tokens_that_do_not_verify_are_mandate_invalid() {
    let (verifier, token) = setup(&[]);
    let (other, other_token) = setup(&[]);
    // Change a signature character well before the end: the last one also
    // carries padding bits, and changing only those is a malformed token.
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (v, t, needle) in [
        (&verifier, "garbage", "malformed"),
        (&verifier, other_token.as_str(), "unknown signing key"),
        (&other, token.as_str(), "unknown signing key"),
        (&verifier, tampered.as_str(), "signature"),
    ] {
        let d = decide(Some(t), v, NBF, 0, &OK_CALL, |_| true);
        assert_eq!((d.allow, d.code), (false, MANDATE_INVALID), "{t}");
        assert_eq!(d.reasons.len(), 1);
        assert!(d.reasons[0].contains(needle), "{:?}", d.reasons);
        assert!(d.claims.is_none());
    }
}

#[test]
fn the_time_window_is_exact_with_skew() {
    let (verifier, token) = setup(&[]);
    let at =
        |now: i64, skew: i64| decide(Some(&token), &verifier, now, skew, &OK_CALL, none_revoked);
    assert_eq!(at(NBF - 1, 0).code, MANDATE_NOT_YET_VALID);
    assert_eq!(at(NBF, 0).code, ALLOW);
    assert_eq!(at(NBF - 30, 30).code, ALLOW);
    assert_eq!(at(NBF - 31, 30).code, MANDATE_NOT_YET_VALID);
    assert_eq!(at(EXP - 1, 0).code, ALLOW);
    assert_eq!(at(EXP, 0).code, MANDATE_EXPIRED);
    assert_eq!(at(EXP + 29, 30).code, ALLOW);
    assert_eq!(at(EXP + 30, 30).code, MANDATE_EXPIRED);
    let d = at(EXP, 0);
    assert!(d.reasons[0].contains("expired"), "{:?}", d.reasons);
}

#[test]
fn revocation_of_the_mandate_or_any_ancestor_denies() {
    let (verifier, token) = setup(&["m-root", "m-mid"]);
    for revoked in ["m-child", "m-root", "m-mid"] {
        let d = decide(Some(&token), &verifier, NBF, 0, &OK_CALL, |j| j == revoked);
        assert_eq!((d.allow, d.code), (false, MANDATE_REVOKED), "{revoked}");
        assert!(
            d.reasons.last().unwrap().contains(revoked),
            "{:?}",
            d.reasons
        );
        assert_eq!(d.reasons.len(), 3, "verification reasons, then the denial");
        assert!(d.claims.is_some());
    }
}

#[test]
fn another_principal_presenting_the_mandate_is_refused() {
    let (verifier, token) = setup(&[]);
    let c = call(Some("agent-2"), "chat.completions", Action::Create);
    let d = decide(Some(&token), &verifier, NBF, 0, &c, none_revoked);
    assert_eq!((d.allow, d.code), (false, MANDATE_WRONG_PRINCIPAL));
    let last = d.reasons.last().unwrap();
    assert!(
        last.contains("agent-1") && last.contains("agent-2"),
        "{last}"
    );
}

#[test]
fn calls_outside_the_scope_are_scope_exceeded() {
    let (verifier, token) = setup(&[]);
    for (resource, action, needle) in [
        (
            "chat.completions",
            Action::Read,
            "action read is not among create",
        ),
        ("files", Action::Create, "no resource entry matches"),
        ("embedding", Action::Create, "no resource entry matches"),
    ] {
        let c = call(Some("agent-1"), resource, action);
        let d = decide(Some(&token), &verifier, NBF, 0, &c, none_revoked);
        assert_eq!((d.allow, d.code), (false, SCOPE_EXCEEDED), "{resource}");
        assert!(
            d.reasons.last().unwrap().contains(needle),
            "{:?}",
            d.reasons
        );
    }
}

#[test]
fn checks_run_in_order_and_the_first_failure_wins() {
    let (verifier, token) = setup(&["m-root"]);
    // Everything wrong: expired, revoked, wrong principal, out of scope.
    let bad = call(Some("agent-2"), "files", Action::Delete);
    let all = |j: &str| j == "m-root";
    let d = decide(Some(&token), &verifier, EXP, 0, &bad, all);
    assert_eq!(d.code, MANDATE_EXPIRED);
    let d = decide(Some(&token), &verifier, NBF, 0, &bad, all);
    assert_eq!(d.code, MANDATE_REVOKED);
    let d = decide(Some(&token), &verifier, NBF, 0, &bad, none_revoked);
    assert_eq!(d.code, MANDATE_WRONG_PRINCIPAL);
    let in_scope_principal = call(Some("agent-1"), "files", Action::Delete);
    let d = decide(
        Some(&token),
        &verifier,
        NBF,
        0,
        &in_scope_principal,
        none_revoked,
    );
    assert_eq!(d.code, SCOPE_EXCEEDED);
    // An unknown kid is refused before revocation is even asked.
    let asked = std::cell::Cell::new(false);
    let (other, _) = setup(&[]);
    let d = decide(Some(&token), &other, NBF, 0, &OK_CALL, |_| {
        asked.set(true);
        true
    });
    assert_eq!(d.code, MANDATE_INVALID);
    assert!(!asked.get());
}
