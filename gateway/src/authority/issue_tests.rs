use super::*;
use crate::model::{Action, PrincipalKind};
use crate::policy::PolicyDefinition;

const NOW: i64 = 1_700_000_000;

fn principal(id: &str) -> Principal {
    Principal {
        id: id.into(),
        kind: PrincipalKind::User,
        name: id.into(),
        email: String::new(),
        created_at: String::new(),
    }
}

fn policy(id: &str, owner: &str, resources: &[&str], max: i64, active: bool) -> Policy {
    Policy {
        id: id.into(),
        version: 3,
        principal_id: owner.into(),
        definition: PolicyDefinition {
            scope: Scope::new(
                resources.iter().map(|r| r.to_string()).collect(),
                vec![Action::Read, Action::Create],
            ),
            max_validity_secs: max,
            allow_delegation: false,
            max_delegation_depth: 0,
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

fn scope(resources: &[&str], actions: &[Action]) -> Scope {
    Scope::new(
        resources.iter().map(|r| r.to_string()).collect(),
        actions.to_vec(),
    )
}

fn request<'a>(
    issuer: &'a Principal,
    subject: &'a Principal,
    scope: &'a Scope,
    validity_secs: i64,
) -> IssueRequest<'a> {
    IssueRequest {
        issuer,
        subject,
        scope,
        validity_secs,
        now: NOW,
        workspace: Some("demo"),
    }
}

#[test]
fn a_covered_request_yields_root_claims_and_names_the_policy() {
    let (boss, bot) = (principal("boss"), principal("bot"));
    let policies = [
        policy("p-other", "someone", &["*"], 86_400, true),
        policy("p-chat", "boss", &["chat.*"], 3600, true),
    ];
    let s = scope(&["chat.completions"], &[Action::Create]);
    let issued = issue(&policies, &request(&boss, &bot, &s, 900)).unwrap();
    assert_eq!(
        (issued.policy_id.as_str(), issued.policy_version),
        ("p-chat", 3)
    );
    let c = &issued.claims;
    assert_eq!((c.iss.as_str(), c.sub.as_str()), ("boss", "bot"));
    assert_eq!((c.iat, c.nbf, c.exp), (NOW, NOW, NOW + 900));
    assert_eq!((c.depth, c.chain.len(), c.parent.as_ref()), (0, 0, None));
    assert_eq!(c.scope, s);
    assert_eq!(c.ws.as_deref(), Some("demo"));
    assert_eq!(uuid::Uuid::parse_str(&c.jti).unwrap().get_version_num(), 7);
    assert!(c.check_shape().is_ok());
    // Validity exactly at the maximum is allowed.
    assert!(issue(&policies, &request(&boss, &bot, &s, 3600)).is_ok());
}

#[test]
fn an_issuer_without_an_active_policy_is_refused() {
    let (boss, bot) = (principal("boss"), principal("bot"));
    let s = scope(&["chat.completions"], &[Action::Create]);
    for policies in [
        vec![],
        vec![policy("p", "someone", &["*"], 3600, true)],
        vec![policy("p", "boss", &["*"], 3600, false)],
    ] {
        let err = issue(&policies, &request(&boss, &bot, &s, 60)).unwrap_err();
        assert_eq!(
            err,
            IssueError::NoPolicy {
                issuer: "boss".into()
            }
        );
        assert!(err.to_string().contains("no active policy"));
    }
}

#[test]
fn a_scope_beyond_every_policy_is_refused_with_the_reason() {
    let (boss, bot) = (principal("boss"), principal("bot"));
    let policies = [
        policy("p-chat", "boss", &["chat.*"], 3600, true),
        policy("p-emb", "boss", &["embeddings"], 3600, true),
    ];
    // Spans both policies: no single one covers it.
    let s = scope(&["chat.completions", "embeddings"], &[Action::Create]);
    let msg = issue(&policies, &request(&boss, &bot, &s, 60))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("policy p-chat: `embeddings`"), "{msg}");
    assert!(msg.contains("policy p-emb: `chat.completions`"), "{msg}");
    // An action outside the policy.
    let s = scope(&["chat.completions"], &[Action::Delete]);
    let msg = issue(&policies, &request(&boss, &bot, &s, 60))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("action `delete`"), "{msg}");
    // A pattern broader than the policy's.
    let s = scope(&["*"], &[Action::Read]);
    let err = issue(&policies, &request(&boss, &bot, &s, 60)).unwrap_err();
    assert!(matches!(err, IssueError::NotCovered { .. }), "{err}");
}

#[test]
fn validity_beyond_the_policy_maximum_names_the_maximum() {
    let (boss, bot) = (principal("boss"), principal("bot"));
    let policies = [
        policy("p-short", "boss", &["chat.*"], 600, true),
        policy("p-long", "boss", &["chat.*"], 3600, true),
    ];
    let s = scope(&["chat.completions"], &[Action::Read]);
    // The longer policy authorises what the shorter does not.
    let ok = issue(&policies, &request(&boss, &bot, &s, 1200)).unwrap();
    assert_eq!(ok.policy_id, "p-long");
    let err = issue(&policies, &request(&boss, &bot, &s, 3601)).unwrap_err();
    assert_eq!(
        err,
        IssueError::Validity {
            requested: 3601,
            max: 3600,
            policy_id: "p-long".into(),
            policy_version: 3
        }
    );
    assert!(err.to_string().contains("maximum of 3600s"), "{err}");
}

#[test]
fn empty_invalid_scopes_and_bad_validity_are_refused() {
    let (boss, bot) = (principal("boss"), principal("bot"));
    let policies = [policy("p", "boss", &["*"], 3600, true)];
    let cases = [
        (scope(&[], &[Action::Read]), 60, "at least one resource"),
        (
            scope(&["chat.completions"], &[]),
            60,
            "at least one resource",
        ),
        (scope(&["re:("], &[Action::Read]), 60, "invalid scope"),
        (scope(&["Chat!"], &[Action::Read]), 60, "invalid scope"),
        (
            scope(&["chat.completions"], &[Action::Read]),
            0,
            "at least 1 second",
        ),
    ];
    for (s, validity, needle) in cases {
        let err = issue(&policies, &request(&boss, &bot, &s, validity)).unwrap_err();
        assert!(err.to_string().contains(needle), "{s:?}: {err}");
    }
}
