//! Tests of the delegation rules, one per rule and boundary, every
//! direction pair, and a property test over random delegation chains.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::*;
use crate::authority::scope::{Containment, ALL_ACTIONS};
use crate::model::Action::{self, Create, Delete, Read};
use crate::model::PrincipalKind::{Agent, Service, User};

const NOW: i64 = 1_000_000;

fn scope(resources: &[&str], actions: &[Action]) -> Scope {
    Scope::new(
        resources.iter().map(|r| r.to_string()).collect(),
        actions.to_vec(),
    )
}

/// A request that passes every rule; tests change one field.
fn request<'a>(parent: &'a Scope, child: &'a Scope) -> DelegationRequest<'a> {
    DelegationRequest {
        parent_scope: parent,
        parent_exp: NOW + 3600,
        parent_depth: 0,
        parent_subject_kind: User,
        child_subject_kind: Agent,
        child_scope: child,
        child_exp: NOW + 600,
        max_depth: Some(2),
        now: NOW,
    }
}

fn parent() -> Scope {
    scope(&["chat.*", "models.list"], &[Read, Create])
}

fn child() -> Scope {
    scope(&["chat.completions"], &[Create])
}

#[test]
fn baseline_is_allowed() {
    let (p, c) = (parent(), child());
    assert_eq!(check(&request(&p, &c)), Ok(()));
}

#[test]
fn every_direction_pair() {
    let (p, c) = (parent(), child());
    let cases = [
        (User, Agent, true),
        (User, Service, true),
        (User, User, true),
        (Agent, Agent, true),
        (Agent, Service, true),
        (Agent, User, false),
        (Service, Agent, false),
        (Service, User, false),
        (Service, Service, false),
    ];
    for (from, to, allowed) in cases {
        assert_eq!(direction_allowed(from, to), allowed, "{from:?}->{to:?}");
        let req = DelegationRequest {
            parent_subject_kind: from,
            child_subject_kind: to,
            ..request(&p, &c)
        };
        match check(&req) {
            Ok(()) => assert!(allowed, "{from:?}->{to:?} should be refused"),
            Err(e) => {
                assert!(!allowed, "{from:?}->{to:?} refused: {e}");
                assert_eq!(e, DelegationError::Direction { from, to });
                assert_eq!(e.code(), "delegation_direction");
            }
        }
    }
    let agent_user = DelegationError::Direction {
        from: Agent,
        to: User,
    };
    assert!(agent_user
        .to_string()
        .contains("agent cannot delegate to a user"));
    let service = DelegationError::Direction {
        from: Service,
        to: Agent,
    };
    assert!(service.to_string().contains("service cannot delegate"));
}

#[test]
fn policy_without_delegation_refuses() {
    let (p, c) = (parent(), child());
    let req = DelegationRequest {
        max_depth: None,
        ..request(&p, &c)
    };
    assert_eq!(check(&req), Err(DelegationError::NotAllowed));
}

#[test]
fn depth_boundaries() {
    let (p, c) = (parent(), child());
    let at = |parent_depth, max| {
        check(&DelegationRequest {
            parent_depth,
            max_depth: Some(max),
            ..request(&p, &c)
        })
    };
    assert_eq!(at(0, 1), Ok(()));
    assert_eq!(at(1, 2), Ok(()), "child depth equal to the maximum");
    assert_eq!(at(2, 2), Err(DelegationError::Depth { depth: 3, max: 2 }));
    assert_eq!(at(0, 0), Err(DelegationError::Depth { depth: 1, max: 0 }));
    assert_eq!(
        at(u32::MAX, u32::MAX),
        Err(DelegationError::Depth {
            depth: u64::from(u32::MAX) + 1,
            max: u32::MAX
        }),
        "no overflow"
    );
}

#[test]
fn parent_expiry_boundary() {
    let (p, c) = (parent(), child());
    let at = |parent_exp, child_exp| {
        check(&DelegationRequest {
            parent_exp,
            child_exp,
            ..request(&p, &c)
        })
    };
    assert_eq!(at(NOW + 1, NOW + 1), Ok(()), "one second left");
    assert_eq!(
        at(NOW, NOW),
        Err(DelegationError::ParentExpired {
            parent_exp: NOW,
            now: NOW
        }),
        "expired at exactly exp"
    );
    assert!(matches!(
        at(NOW - 10, NOW - 20),
        Err(DelegationError::ParentExpired { .. })
    ));
}

#[test]
fn child_expiry_boundaries() {
    let (p, c) = (parent(), child());
    let at = |child_exp| {
        check(&DelegationRequest {
            child_exp,
            ..request(&p, &c)
        })
    };
    assert_eq!(at(NOW + 3600), Ok(()), "equal to the parent's");
    assert_eq!(
        at(NOW + 3601),
        Err(DelegationError::Expiry {
            child_exp: NOW + 3601,
            parent_exp: NOW + 3600
        })
    );
    assert_eq!(at(NOW + 1), Ok(()));
    assert_eq!(
        at(NOW),
        Err(DelegationError::ChildValidity {
            child_exp: NOW,
            now: NOW
        })
    );
    assert!(matches!(
        at(i64::MIN),
        Err(DelegationError::ChildValidity { .. })
    ));
    assert!(matches!(at(i64::MAX), Err(DelegationError::Expiry { .. })));
}

#[test]
fn scope_must_be_proven_inside() {
    let p = parent();
    let refused = |c: Scope| {
        check(&DelegationRequest {
            child_scope: &c,
            ..request(&p, &c)
        })
        .unwrap_err()
    };
    // Looks narrower, is not: `chat*` covers `chatx`.
    let e = refused(scope(&["chat*"], &[Read]));
    assert_eq!(e.code(), "scope_exceeded");
    match &e {
        DelegationError::ScopeExceeded { entry, reason } => {
            assert_eq!(entry, "chat*");
            assert!(matches!(reason, Unproven::Escapes { .. }));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("`chat*`"), "{e}");
    // An action the parent lacks.
    let e = refused(scope(&["chat.completions"], &[Delete]));
    assert!(matches!(
        e,
        DelegationError::ScopeExceeded {
            reason: Unproven::Action(Delete),
            ..
        }
    ));
    // A regex the parent's globs would cover: not proven, refused.
    let e = refused(scope(&[r"re:chat\..*"], &[Read]));
    assert!(matches!(
        e,
        DelegationError::ScopeExceeded {
            reason: Unproven::Regex,
            ..
        }
    ));
    // Invalid and empty child scopes.
    let e = refused(scope(&["chat.[ab]"], &[Read]));
    assert!(matches!(e, DelegationError::InvalidScope(_)));
    assert_eq!(e.code(), "scope_invalid");
    assert_eq!(refused(scope(&[], &[Read])), DelegationError::EmptyScope);
    assert_eq!(
        refused(scope(&["chat.x"], &[])),
        DelegationError::EmptyScope
    );
}

#[test]
fn rules_are_reported_in_order() {
    let p = parent();
    let bad = scope(&["*"], &[Delete]);
    let req = DelegationRequest {
        parent_subject_kind: Service,
        max_depth: None,
        parent_exp: NOW,
        child_exp: NOW + 10,
        child_scope: &bad,
        ..request(&p, &bad)
    };
    assert_eq!(check(&req).unwrap_err().code(), "delegation_direction");
    let req = DelegationRequest {
        parent_subject_kind: User,
        ..req
    };
    assert_eq!(check(&req).unwrap_err().code(), "delegation_not_allowed");
    let req = DelegationRequest {
        max_depth: Some(1),
        ..req
    };
    assert_eq!(check(&req).unwrap_err().code(), "parent_expired");
    let req = DelegationRequest {
        parent_exp: NOW + 5,
        ..req
    };
    assert_eq!(check(&req).unwrap_err().code(), "delegation_expiry");
    let req = DelegationRequest {
        child_exp: NOW + 5,
        ..req
    };
    assert_eq!(check(&req).unwrap_err().code(), "scope_exceeded");
}

#[test]
fn codes_and_messages_are_distinct() {
    let errors = [
        DelegationError::Direction {
            from: Agent,
            to: User,
        },
        DelegationError::NotAllowed,
        DelegationError::Depth { depth: 2, max: 1 },
        DelegationError::ParentExpired {
            parent_exp: 1,
            now: 2,
        },
        DelegationError::ChildValidity {
            child_exp: 1,
            now: 2,
        },
        DelegationError::Expiry {
            child_exp: 2,
            parent_exp: 1,
        },
        DelegationError::InvalidScope(crate::authority::scope::ScopeError::Empty {
            entry: String::new(),
        }),
        DelegationError::EmptyScope,
        DelegationError::ScopeExceeded {
            entry: "x".into(),
            reason: Unproven::Regex,
        },
    ];
    let codes: HashSet<_> = errors.iter().map(DelegationError::code).collect();
    let messages: HashSet<_> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(codes.len(), errors.len());
    assert_eq!(messages.len(), errors.len());
}

// ---- property: a delegated scope never covers more than its parent ----

/// Fragments resource names and globs are built from.
const FRAGMENTS: &[&str] = &["a", "a.b", "a.bc", "ab", "b", ".", "c"];
const REGEXES: &[&str] = &[r"re:a\..*", "re:a(b|c)*", "re:.*", r"re:a\.b"];

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 1..4).prop_map(|p| p.concat())
}

fn glob() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![3 => prop::sample::select(FRAGMENTS), 2 => Just("*")],
        1..5,
    )
    .prop_map(|p| p.concat())
}

fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        4 => glob(),
        1 => prop::sample::select(REGEXES).prop_map(str::to_string),
    ]
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    prop::sample::subsequence(ALL_ACTIONS.to_vec(), 1..=4)
}

fn random_scope() -> impl Strategy<Value = Scope> {
    (prop::collection::vec(entry(), 1..4), actions()).prop_map(|(r, a)| Scope::new(r, a))
}

/// A candidate child: random, or derived from the parent (a subset of its
/// entries and actions, globs with a `*` filled in or extended), so that a
/// fair share of candidates is accepted.
fn candidate(parent: &Scope, seed: &[u32]) -> Scope {
    let pick = |i: usize| seed[i % seed.len()] as usize;
    let mut resources = Vec::new();
    for (i, r) in parent.resources.iter().enumerate() {
        match pick(i) % 5 {
            0 => {}
            1 => resources.push(r.clone()),
            2 => resources.push(r.replacen('*', FRAGMENTS[pick(i + 1) % FRAGMENTS.len()], 1)),
            3 => resources.push(format!("{r}{}", FRAGMENTS[pick(i + 2) % FRAGMENTS.len()])),
            _ => resources.push(format!("{}{r}", FRAGMENTS[pick(i + 3) % FRAGMENTS.len()])),
        }
    }
    if resources.is_empty() {
        resources.push(parent.resources[0].clone());
    }
    let actions: Vec<Action> = parent
        .actions
        .iter()
        .enumerate()
        .filter(|(i, _)| pick(i + 7) % 3 != 0)
        .map(|(_, a)| *a)
        .chain((pick(11) % 7 == 0).then_some(Delete))
        .collect();
    Scope::new(resources, actions)
}

fn chain() -> impl Strategy<Value = (Scope, Vec<(bool, Scope, Vec<u32>)>)> {
    (
        random_scope(),
        prop::collection::vec(
            (
                any::<bool>(),
                random_scope(),
                prop::collection::vec(any::<u32>(), 8),
            ),
            1..5,
        ),
    )
}

fn probes() -> Vec<String> {
    let mut out: Vec<String> = ["", "a", "ab", "a.b", "a.bc", "abc", "b.a", "a.", ".a", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for x in FRAGMENTS {
        for y in FRAGMENTS {
            out.push(format!("{x}{y}"));
            for z in ["a", ".", "b", "c"] {
                out.push(format!("{x}{y}{z}"));
            }
        }
    }
    out
}

#[test]
fn delegated_scope_never_covers_more_than_its_parent() {
    let accepted = AtomicUsize::new(0);
    let probes = probes();
    let mut runner = TestRunner::new(Config {
        cases: 400,
        ..Config::default()
    });
    runner
        .run(&(chain(), "[abc.x]{0,6}"), |((root, steps), extra)| {
            let mut current = root;
            let mut exp = NOW + 10_000;
            for (depth, (random, other, seed)) in steps.into_iter().enumerate() {
                let child = if random {
                    other
                } else {
                    candidate(&current, &seed)
                };
                let child_exp = exp - 1;
                let req = DelegationRequest {
                    parent_scope: &current,
                    parent_exp: exp,
                    parent_depth: depth as u32,
                    parent_subject_kind: User,
                    child_subject_kind: User,
                    child_scope: &child,
                    child_exp,
                    max_depth: Some(10),
                    now: NOW,
                };
                if check(&req).is_err() {
                    continue;
                }
                accepted.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(current.contains(&child), Containment::Proven);
                for r in probes.iter().chain(std::iter::once(&extra)) {
                    for a in ALL_ACTIONS {
                        prop_assert!(
                            !child.covers(r, a) || current.covers(r, a),
                            "{child:?} covers ({r:?}, {a:?}), its parent {current:?} does not"
                        );
                    }
                }
                current = child;
                exp = child_exp;
            }
            Ok(())
        })
        .unwrap();
    // The property is not vacuous: many delegations were accepted (about
    // 230 of up to 1600 candidates in practice).
    assert!(
        accepted.load(Ordering::Relaxed) > 120,
        "only {} delegations accepted",
        accepted.load(Ordering::Relaxed)
    );
}
