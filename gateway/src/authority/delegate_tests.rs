use super::*;
use crate::model::Action;
use crate::policy::PolicyDefinition;

const NOW: i64 = 1_700_000_000;

fn principal(id: &str, kind: PrincipalKind) -> Principal {
    Principal {
        id: id.into(),
        kind,
        name: id.into(),
        email: String::new(),
        created_at: String::new(),
    }
}

fn scope(resources: &[&str]) -> Scope {
    Scope::new(
        resources.iter().map(|r| r.to_string()).collect(),
        vec![Action::Create],
    )
}

fn policy(allow: bool, max_depth: u32) -> Policy {
    Policy {
        id: "pol".into(),
        version: 4,
        principal_id: "boss".into(),
        definition: PolicyDefinition {
            scope: scope(&["chat.*"]),
            max_validity_secs: 3600,
            allow_delegation: allow,
            max_delegation_depth: max_depth,
            budget: None,
            rate: None,
            max_in_flight: None,
        },
        active: true,
        changed_by: "t".into(),
        change_reason: "t".into(),
        created_at: String::new(),
    }
}

/// A depth-1 parent held by `agent-1`, over chat.completions, expiring at NOW + 600.
fn parent() -> MandateRecord {
    MandateRecord {
        jti: "p".into(),
        issuer_id: "boss".into(),
        subject_id: "agent-1".into(),
        parent_jti: Some("root".into()),
        policy_id: "pol".into(),
        policy_version: 2,
        scope: scope(&["chat.completions"]),
        iat: NOW - 60,
        nbf: NOW - 60,
        exp: NOW + 600,
        depth: 1,
        chain: vec!["root".into()],
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
        created_at: String::new(),
    }
}

fn run(
    parent: &MandateRecord,
    child: &Principal,
    scope: &Scope,
    validity: i64,
    policy: &Policy,
    revoked: Option<&str>,
) -> Result<Issued, DelegateError> {
    delegate(&DelegateRequest {
        parent,
        parent_subject_kind: PrincipalKind::Agent,
        child_subject: child,
        scope,
        validity_secs: validity,
        now: NOW,
        policy,
        revoked,
        workspace: Some("demo"),
    })
}

#[test]
fn a_child_extends_the_chain_under_the_parents_policy() {
    let p = parent();
    let child = principal("agent-2", PrincipalKind::Agent);
    let s = scope(&["chat.completions"]);
    let issued = run(&p, &child, &s, 300, &policy(true, 2), None).unwrap();
    let c = &issued.claims;
    assert_eq!((c.iss.as_str(), c.sub.as_str()), ("agent-1", "agent-2"));
    assert_eq!(c.parent.as_deref(), Some("p"));
    assert_eq!(c.chain, vec!["root".to_string(), "p".to_string()]);
    assert_eq!(c.depth, 2);
    assert_eq!((c.iat, c.nbf, c.exp), (NOW, NOW, NOW + 300));
    assert_eq!(c.ws.as_deref(), Some("demo"));
    assert_eq!(c.scope, s);
    assert!(c.check_shape().is_ok());
    assert_eq!(
        (issued.policy_id.as_str(), issued.policy_version),
        ("pol", 4)
    );
}

#[test]
fn expiry_may_equal_the_parents_but_not_pass_it() {
    let p = parent();
    let child = principal("agent-2", PrincipalKind::Agent);
    let s = scope(&["chat.completions"]);
    assert!(run(&p, &child, &s, 600, &policy(true, 2), None).is_ok());
    let e = run(&p, &child, &s, 601, &policy(true, 2), None).unwrap_err();
    assert_eq!(e.code(), "delegation_expiry");
    let e = run(&p, &child, &s, 0, &policy(true, 2), None).unwrap_err();
    assert_eq!(e, DelegateError::NonPositiveValidity);
}

#[test]
fn each_refusal_has_its_code() {
    let p = parent();
    let agent = principal("agent-2", PrincipalKind::Agent);
    let user = principal("u", PrincipalKind::User);
    let narrow = scope(&["chat.completions"]);
    let ok = policy(true, 2);
    let code = |r: Result<Issued, DelegateError>| r.unwrap_err().code();

    // A glob that looks narrower than "everything" but is wider than the parent's entry.
    assert_eq!(
        code(run(&p, &agent, &scope(&["chat.*"]), 60, &ok, None)),
        "scope_exceeded"
    );
    assert_eq!(
        code(run(&p, &user, &narrow, 60, &ok, None)),
        "delegation_direction"
    );
    assert_eq!(
        code(run(&p, &agent, &narrow, 60, &policy(true, 1), None)),
        "delegation_depth"
    );
    assert_eq!(
        code(run(&p, &agent, &narrow, 60, &policy(false, 0), None)),
        "delegation_not_allowed"
    );
    assert_eq!(
        code(run(&p, &agent, &narrow, 60, &ok, Some("root"))),
        "parent_revoked"
    );
    let mut disabled = policy(true, 2);
    disabled.active = false;
    assert_eq!(
        code(run(&p, &agent, &narrow, 60, &disabled, None)),
        "policy_disabled"
    );
    let mut other = policy(true, 2);
    other.id = "other".into();
    assert_eq!(
        code(run(&p, &agent, &narrow, 60, &other, None)),
        "policy_mismatch"
    );
    let mut expired = parent();
    expired.exp = NOW;
    assert_eq!(
        code(run(&expired, &agent, &narrow, 60, &ok, None)),
        "parent_expired"
    );
}

#[test]
fn revocation_is_reported_before_the_other_rules() {
    let mut p = parent();
    p.exp = NOW - 1;
    let user = principal("u", PrincipalKind::User);
    let e = run(&p, &user, &scope(&["x"]), 60, &policy(false, 0), Some("p")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mandate p is revoked; it cannot be delegated"
    );
}
