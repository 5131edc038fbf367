//! Tests of scope parsing, coverage and containment, including patterns
//! that look narrower than the parent's but are not, and a brute-force
//! check that `Proven` glob containment is never wrong.

use proptest::prelude::*;

use super::glob::{self as glob_impl, Budget, Inclusion};
use super::*;
use crate::model::Action::{Create, Delete, Read, Update};

fn scope(resources: &[&str], actions: &[Action]) -> Scope {
    Scope::new(
        resources.iter().map(|r| r.to_string()).collect(),
        actions.to_vec(),
    )
}

fn contains(parent: &[&str], child: &[&str]) -> Containment {
    scope(parent, &[Read]).contains(&scope(child, &[Read]))
}

/// Asserts NotProven with a witness the child covers and the parent does not.
fn assert_escapes(parent: &[&str], child: &[&str]) -> String {
    match contains(parent, child) {
        Containment::NotProven {
            reason: Unproven::Escapes { witness },
            ..
        } => {
            assert!(
                scope(child, &[Read]).covers(&witness, Read),
                "{child:?} should cover witness {witness:?}"
            );
            assert!(
                !scope(parent, &[Read]).covers(&witness, Read),
                "{parent:?} should not cover witness {witness:?}"
            );
            witness
        }
        other => panic!("{child:?} in {parent:?}: expected an escape, got {other:?}"),
    }
}

// ---- parsing ----

#[test]
fn parses_exact_glob_and_regex() {
    assert!(matches!(
        ResourcePattern::parse("chat.completions"),
        Ok(ResourcePattern::Exact(_))
    ));
    assert!(matches!(
        ResourcePattern::parse("chat.*"),
        Ok(ResourcePattern::Glob(_))
    ));
    assert!(matches!(
        ResourcePattern::parse("*"),
        Ok(ResourcePattern::Glob(_))
    ));
    assert!(matches!(
        ResourcePattern::parse(r"re:chat\..*"),
        Ok(ResourcePattern::Regex(_))
    ));
    assert_eq!(
        ResourcePattern::parse("chat.**").unwrap().as_str(),
        "chat.**",
        "the entry is kept as written"
    );
}

#[test]
fn rejects_special_and_foreign_characters_naming_the_entry() {
    for entry in [
        "chat.?",
        "chat.[ab]",
        "chat.{a,b}",
        "Chat",
        "chat/completions",
        "chat completions",
        "chat\\*",
        "chät",
    ] {
        let err = ResourcePattern::parse(entry).unwrap_err();
        assert!(
            matches!(err, ScopeError::InvalidChar { .. }),
            "{entry}: {err:?}"
        );
        assert!(err.to_string().contains(&format!("{entry:?}")), "{err}");
        assert_eq!(err.entry(), Some(entry));
        assert_eq!(err.code(), "scope_invalid");
    }
}

#[test]
fn rejects_empty_too_long_and_bad_regexes() {
    assert!(matches!(
        ResourcePattern::parse(""),
        Err(ScopeError::Empty { .. })
    ));
    assert!(matches!(
        ResourcePattern::parse("re:"),
        Err(ScopeError::Empty { .. })
    ));
    let long = "a".repeat(MAX_ENTRY_LEN + 1);
    let err = ResourcePattern::parse(&long).unwrap_err();
    assert!(matches!(err, ScopeError::TooLong { .. }));
    assert!(err.to_string().len() < 200, "long entries are shortened");
    assert!(ResourcePattern::parse(&"a".repeat(MAX_ENTRY_LEN)).is_ok());
    for bad in ["re:(", "re:chat[", r"re:\p{Nope}", "re:a{99999}{99999}"] {
        let err = ResourcePattern::parse(bad).unwrap_err();
        assert!(
            matches!(err, ScopeError::InvalidRegex { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("re:"), "{err}");
    }
}

#[test]
fn regex_cannot_escape_its_anchors() {
    // Balanced on its own is required, so `a)|(b` cannot turn the wrapper
    // into `\A(?:a)|(b)\z`.
    assert!(ResourcePattern::parse("re:a)|(b").is_err());
    // A verbose-mode comment cannot swallow the closing anchor.
    match ResourcePattern::parse("re:(?x)a#") {
        Err(_) => {}
        Ok(p) => assert!(!p.matches("ab") && !p.matches("xa")),
    }
    let p = ResourcePattern::parse("re:(?m)chat").unwrap();
    assert!(!p.matches("chat\nx") && !p.matches("x\nchat"));
    let p = ResourcePattern::parse("re:chat").unwrap();
    assert!(p.matches("chat"));
    assert!(!p.matches("chat.completions") && !p.matches("xchat"));
}

#[test]
fn scope_limits_entries() {
    let many = Scope::new(vec!["a".into(); MAX_ENTRIES + 1], vec![Read]);
    assert!(matches!(
        many.validate(),
        Err(ScopeError::TooManyEntries { .. })
    ));
    assert!(Scope::new(vec!["a".into(); MAX_ENTRIES], vec![Read])
        .validate()
        .is_ok());
}

#[test]
fn serde_form_is_unchanged() {
    let s = scope(&["chat.*", r"re:a\.b"], &[Read, Delete]);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(
        json,
        r#"{"resources":["chat.*","re:a\\.b"],"actions":["read","delete"]}"#
    );
    assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), s);
}

// ---- coverage ----

#[test]
fn covers_exact_glob_and_regex() {
    let s = scope(
        &[
            "models.list",
            "chat.*",
            "messages.*.x",
            r"re:audio\.(speech|translations)",
        ],
        &[Read, Create],
    );
    assert!(s.covers("models.list", Read));
    assert!(!s.covers("models.lis", Read));
    assert!(!s.covers("models.list.x", Read));
    assert!(s.covers("chat.completions", Create));
    assert!(s.covers("chat.", Read), "`*` matches the empty run");
    assert!(s.covers("chat.a.b.c", Read), "`*` matches dots");
    assert!(!s.covers("chat", Read));
    assert!(!s.covers("chatx", Read));
    assert!(s.covers("messages.batches.x", Read));
    assert!(s.covers("messages..x", Read));
    assert!(!s.covers("messages.batches.xy", Read));
    assert!(s.covers("audio.speech", Read));
    assert!(!s.covers("audio.speech2", Read));
    assert!(!s.covers("chat.completions", Delete), "action not in scope");
    assert!(!s.covers("chat.completions", Update));
    let all = Scope::with_all_actions(vec!["*".into()]);
    for a in ALL_ACTIONS {
        assert!(all.covers("anything.at.all", a));
        assert!(all.covers("", a));
    }
}

#[test]
fn invalid_entries_cover_nothing() {
    let s = scope(&["chat.[ab]", "re:(", "models.list"], &[Read]);
    assert!(!s.covers("chat.[ab]", Read));
    assert!(!s.covers("chat.a", Read));
    assert!(s.covers("models.list", Read));
    assert!(s.compile().is_err());
    assert!(s.compile_lenient().covers("models.list", Read));
}

#[test]
fn compiled_scope_agrees_with_scope() {
    let s = scope(&["chat.*", "models.list", r"re:a+"], &[Read, Update, Read]);
    let c = s.compile().unwrap();
    assert_eq!(c.actions(), &[Read, Update]);
    for r in ["chat.x", "models.list", "aaa", "b", ""] {
        for a in ALL_ACTIONS {
            assert_eq!(c.covers(r, a), s.covers(r, a), "{r} {a:?}");
        }
    }
}

// ---- containment: looks narrower, is not ----

#[test]
fn prefix_glob_is_not_inside_a_longer_prefix() {
    // `chat.*` covers `chat.x`; `chat.completions*` does not.
    assert_escapes(&["chat.completions*"], &["chat.*"]);
    assert!(contains(&["chat.*"], &["chat.completions*"]).is_proven());
}

#[test]
fn suffix_and_prefix_globs_are_unrelated() {
    let w = assert_escapes(&["chat.*"], &["*.completions"]);
    assert!(!w.starts_with("chat."));
    assert_escapes(&["*.completions"], &["chat.*"]);
    assert!(contains(&["*.completions"], &["chat.completions"]).is_proven());
    assert!(contains(&["chat.*"], &["chat.*.completions"]).is_proven());
}

#[test]
fn double_star_is_the_same_language() {
    assert!(contains(&["chat.*"], &["chat.**"]).is_proven());
    assert!(contains(&["chat.**"], &["chat.*"]).is_proven());
    assert!(contains(&["*"], &["**"]).is_proven());
    assert!(contains(&["a*b"], &["a**b"]).is_proven());
}

#[test]
fn missing_dot_is_wider() {
    // `chat*` covers `chat` and `chatx`; `chat.*` covers neither.
    let w = assert_escapes(&["chat.*"], &["chat*"]);
    assert!(!w.starts_with("chat."));
    assert!(contains(&["chat*"], &["chat.*"]).is_proven());
}

#[test]
fn star_in_the_middle_is_wider_than_it_looks() {
    // `messages.*.x` covers `messages.a.b.x`.
    assert!(contains(&["messages.*.x"], &["messages.a.b.x"]).is_proven());
    assert_escapes(&["messages.*.x"], &["messages.*x"]);
    assert_escapes(&["messages.*.*.x"], &["messages.*.x"]);
    assert!(contains(&["messages.*.x"], &["messages.*.*.x"]).is_proven());
    assert!(contains(&["*a*"], &["*a*a*"]).is_proven());
    assert_escapes(&["*a*a*"], &["*a*"]);
    assert_escapes(&["*aa*"], &["*a*a*"]);
    assert!(contains(&["*a*a*"], &["*aa*"]).is_proven());
    // Overlapping literals: `aba` contains `ab` and `ba` overlapping.
    assert_escapes(&["*ab*ba*"], &["*aba*"]);
    assert!(contains(&["*ab*", "*ba*"], &["*aba*"]).is_proven());
}

#[test]
fn regex_child_inside_glob_is_not_proven() {
    // `re:chat\..*` and `chat.*` are the same language, but regex
    // containment is not decided: refuse rather than guess.
    match contains(&["chat.*"], &[r"re:chat\..*"]) {
        Containment::NotProven { entry, reason } => {
            assert_eq!(entry, r"re:chat\..*");
            assert_eq!(reason, Unproven::Regex);
            assert!(reason.to_string().contains("regular expressions"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!contains(&["chat.*", "models.*"], &["re:chat"]).is_proven());
}

#[test]
fn regex_child_inside_identical_regex_or_everything() {
    assert!(contains(&[r"re:chat\..*"], &[r"re:chat\..*"]).is_proven());
    assert!(contains(&["*"], &[r"re:chat\..*"]).is_proven());
    assert!(contains(&["**", "models.list"], &["re:.*"]).is_proven());
    // Same meaning, different spelling: not proven.
    assert!(!contains(&[r"re:chat\..*"], &[r"re:chat[.].*"]).is_proven());
}

#[test]
fn literal_child_inside_parent_regex() {
    let parent = [r"re:chat\.(completions|x)"];
    assert!(contains(&parent, &["chat.completions"]).is_proven());
    assert!(contains(&parent, &["chat.x"]).is_proven());
    assert_escapes(&parent, &["chat.completion"]);
    assert_escapes(&parent, &["chat.completionsx"]);
}

#[test]
fn glob_child_inside_parent_regex_is_not_proven() {
    match contains(&[r"re:chat\..*"], &["chat.*"]) {
        Containment::NotProven { reason, .. } => assert_eq!(reason, Unproven::Regex),
        other => panic!("{other:?}"),
    }
    // When the escaping name is not matched by the regex either, it is a
    // definite escape.
    assert_escapes(&[r"re:models\..*"], &["chat.*"]);
    // Globs and names of the parent still prove it.
    assert!(contains(&[r"re:models\..*", "chat*"], &["chat.*"]).is_proven());
}

#[test]
fn actions_superset_is_refused() {
    let parent = scope(&["*"], &[Read, Create]);
    let child = scope(&["chat.completions"], &[Read, Delete]);
    match parent.contains(&child) {
        Containment::NotProven { entry, reason } => {
            assert_eq!(entry, "delete");
            assert_eq!(reason, Unproven::Action(Delete));
        }
        other => panic!("{other:?}"),
    }
    assert!(parent
        .contains(&scope(&["chat.completions"], &[Create, Read, Read]))
        .is_proven());
}

#[test]
fn empty_child_is_contained_in_anything() {
    let parent = scope(&["models.list"], &[Read]);
    let no_resources = scope(&[], &[Read, Delete]);
    let no_actions = scope(&["*"], &[]);
    assert!(no_resources.is_empty() && no_actions.is_empty());
    assert!(!parent.is_empty());
    assert!(parent.contains(&no_resources).is_proven());
    assert!(parent.contains(&no_actions).is_proven());
    assert!(scope(&[], &[]).contains(&no_actions).is_proven());
    assert!(!scope(&[], &[]).contains(&parent).is_proven());
}

#[test]
fn invalid_child_is_not_proven_and_named() {
    match contains(&["*"], &["chat.*", "chat.[ab]"]) {
        Containment::NotProven { entry, reason } => {
            assert_eq!(entry, "chat.[ab]");
            assert!(matches!(reason, Unproven::Invalid(_)));
        }
        other => panic!("{other:?}"),
    }
    // Invalid parent entries are left out, which can only narrow it.
    assert_escapes(&["chat.[ab]", "models.*"], &["chat.a"]);
}

#[test]
fn union_of_parents_is_used_exactly() {
    assert!(contains(&["chat.*", "models.*"], &["models.list", "chat.*"]).is_proven());
    // Covered piecewise, but `chat.*` still escapes both.
    let w = assert_escapes(
        &["chat.completions", "chat.x*", "chat.a*", "chat.*.*"],
        &["chat.*"],
    );
    assert!(w.starts_with("chat."));
    assert_escapes(&["a", "a.*"], &["a*"]);
}

#[test]
fn not_proven_names_the_first_bad_entry() {
    match contains(&["chat.*"], &["chat.completions", "models.list", "chat.x"]) {
        Containment::NotProven { entry, .. } => assert_eq!(entry, "models.list"),
        other => panic!("{other:?}"),
    }
    let c = contains(&["chat.*"], &["models.*"]);
    assert!(
        c.to_string().starts_with("`models.*`: covers `models."),
        "{c}"
    );
}

#[test]
fn inclusion_gives_up_soundly_at_its_bounds() {
    let parents: [&[u8]; 2] = [b"*a*b*a*b*", b"*b*a*b*a*"];
    let mut few_states = Budget::with_limits(3, usize::MAX);
    assert_eq!(
        glob_impl::included(b"*a*b*", &parents, &mut few_states),
        Inclusion::TooComplex
    );
    let mut little_work = Budget::with_limits(usize::MAX, 3);
    assert_eq!(
        glob_impl::included(b"*a*b*", &parents, &mut little_work),
        Inclusion::TooComplex
    );
    // An exhausted budget stays exhausted: the next question gives up too.
    assert_eq!(
        glob_impl::included(b"*a*", &[b"*a*".as_slice()], &mut little_work),
        Inclusion::TooComplex
    );
    assert!(matches!(
        glob_impl::included(b"*a*b*", &parents, &mut Budget::new()),
        Inclusion::Escapes(_)
    ));
}

#[test]
fn letters_no_pattern_mentions_are_accounted_for() {
    // Over the letters the globs mention (`a`, `.`) the parents cover all
    // of `a*`; but `a*` also covers `ax`.
    let w = assert_escapes(&["a", "aa*", "a.*"], &["a*"]);
    assert!(w.starts_with('a') && !w[1..].starts_with(['a', '.']), "{w}");
    assert!(contains(&["a", "aa*", "a.*", "a*"], &["a*"]).is_proven());
}

#[test]
fn hostile_sizes_stay_bounded() {
    // Long globs with many stars against many parents: answers (any
    // answer) without blowing up.
    let child = "*a".repeat(MAX_ENTRY_LEN / 2);
    let parents: Vec<String> = (0..64)
        .map(|i| format!("{}{}", "*a*b".repeat(MAX_ENTRY_LEN / 4 - 1), i % 10))
        .collect();
    let parent = Scope::new(parents, vec![Read]);
    let c = parent.contains(&Scope::new(vec![child], vec![Read]));
    assert!(!c.is_proven());
}

// ---- brute force: no false `Proven` ----

/// Every string over `alphabet` of length at most `max`.
fn all_strings(alphabet: &[char], max: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut layer = vec![String::new()];
    for _ in 0..max {
        layer = layer
            .iter()
            .flat_map(|s| {
                alphabet.iter().map(move |c| {
                    let mut t = s.clone();
                    t.push(*c);
                    t
                })
            })
            .collect();
        out.extend(layer.iter().cloned());
    }
    out
}

fn small_glob() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", ".", "*", "ab", "a.b"]),
        1..5,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `Proven` agrees with enumeration of every name up to length 6 over
    /// the globs' letters plus one letter they never mention; and every
    /// escape witness really escapes (so glob answers are exact).
    #[test]
    fn glob_inclusion_matches_brute_force(
        child in small_glob(),
        parents in prop::collection::vec(small_glob(), 1..4),
    ) {
        let parent_refs: Vec<&str> = parents.iter().map(String::as_str).collect();
        let names = all_strings(&['a', 'b', '.', 'x'], 6);
        let c = scope(&[child.as_str()], &[Read]);
        let p = scope(&parent_refs, &[Read]);
        match p.contains(&c) {
            Containment::Proven => {
                for n in &names {
                    prop_assert!(
                        !c.covers(n, Read) || p.covers(n, Read),
                        "false Proven: {child:?} in {parents:?}, {n:?} escapes"
                    );
                }
            }
            Containment::NotProven { reason: Unproven::Escapes { witness }, .. } => {
                prop_assert!(c.covers(&witness, Read));
                prop_assert!(!p.covers(&witness, Read));
            }
            other => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    /// Matching agrees with an independent regex translation.
    #[test]
    fn glob_matching_agrees_with_regex(glob in small_glob(), name in "[ab.x]{0,7}") {
        let re = regex::Regex::new(&format!(
            "^{}$",
            glob.split('*').map(regex::escape).collect::<Vec<_>>().join(".*")
        ))
        .unwrap();
        prop_assert_eq!(
            ResourcePattern::parse(&glob).unwrap().matches(&name),
            re.is_match(&name)
        );
    }

    /// Parsing and asking never panic, whatever the input.
    #[test]
    fn hostile_entries_never_panic(entry in any::<String>(), name in any::<String>()) {
        let s = Scope::new(vec![entry.clone(), format!("re:{entry}")], vec![Read]);
        let _ = s.covers(&name, Read);
        let _ = s.contains(&s);
        let _ = scope(&["*", "a*"], &[Read]).contains(&s);
    }
}
