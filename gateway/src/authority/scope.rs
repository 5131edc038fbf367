//! Scopes: which (resource, action) pairs a policy or mandate covers, and
//! whether one scope is provably inside another (the delegation rule).
//!
//! A scope is a set of resource entries and a set of [`Action`]s; it covers
//! every pair of a resource one entry matches with one of its actions. A
//! resource entry ([`ResourcePattern`]) is written as
//! - an exact catalog resource name: `chat.completions`;
//! - a glob: `chat.*`, `*`, `messages.*.x` — `*` matches any run of
//!   characters (dots and the empty run included); nothing else is special;
//! - a regex: `re:chat\.(completions|responses)`, anchored at both ends.
//!
//! Names and globs use only `a-z`, `0-9`, `.`, `_`, `-` (and `*`), like the
//! catalogs' resource names. Actions stay the four [`Action`]s: there is no
//! `*` action in the stored form; [`ALL_ACTIONS`] and
//! [`Scope::with_all_actions`] spell "every action" (a CLI may accept `*`
//! and expand it).
//!
//! Containment ([`Scope::contains`]) is sound: `Proven` is only returned
//! when every pair the child covers is covered by the parent, for resource
//! names over any alphabet. Exact names and globs are decided exactly, also
//! against the union of several parent entries; regexes are only proven in
//! the simple cases listed on [`CompiledScope::contains`]. Anything else is
//! `NotProven`, naming the child entry and why.

use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::model::Action;

#[path = "scope_glob.rs"]
mod glob;

use glob::{Budget, Inclusion};

/// Every action, in a stable order.
pub const ALL_ACTIONS: [Action; 4] = [Action::Read, Action::Create, Action::Update, Action::Delete];

/// Prefix that marks a resource entry as a regex.
pub const REGEX_PREFIX: &str = "re:";

/// Longest resource entry accepted, in bytes (prefix included).
pub const MAX_ENTRY_LEN: usize = 256;

/// Most resource entries one scope may hold.
pub const MAX_ENTRIES: usize = 256;

/// Bound on one compiled regex (hostile patterns must not exhaust memory).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Bound on the nesting depth of a regex.
const REGEX_NEST_LIMIT: u32 = 64;

/// How much of a rejected entry an error message quotes.
const SHOWN_CHARS: usize = 80;

/// A set of resources and actions; it covers every pair of one of its
/// resources with one of its actions. This is the stored and serialized
/// form (mandate claims embed it); [`Scope::compile`] validates it into a
/// [`CompiledScope`] for repeated use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub resources: Vec<String>,
    pub actions: Vec<Action>,
}

/// Why a scope or one of its resource entries is invalid. `entry` is the
/// offending entry as written, shortened to 80 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("resource entry {entry:?} is empty")]
    Empty { entry: String },
    #[error("resource entry {entry:?} is longer than {max} bytes")]
    TooLong { entry: String, max: usize },
    #[error(
        "resource entry {entry:?} contains {ch:?}; names and globs use only a-z, 0-9, '.', '_', '-' \
         and '*' (write a regex as `re:<pattern>`)"
    )]
    InvalidChar { entry: String, ch: char },
    #[error("resource entry {entry:?} is not a valid regex: {reason}")]
    InvalidRegex { entry: String, reason: String },
    #[error("scope has {count} resource entries; at most {max} are allowed")]
    TooManyEntries { count: usize, max: usize },
}

impl ScopeError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        "scope_invalid"
    }

    /// The offending entry as shown in the message (`None` when the scope
    /// as a whole is at fault).
    pub fn entry(&self) -> Option<&str> {
        match self {
            Self::Empty { entry }
            | Self::TooLong { entry, .. }
            | Self::InvalidChar { entry, .. }
            | Self::InvalidRegex { entry, .. } => Some(entry),
            Self::TooManyEntries { .. } => None,
        }
    }
}

/// Result of asking whether a child scope is inside a parent scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// Every (resource, action) the child covers, the parent covers.
    Proven,
    /// `entry` (a child resource entry as written, or an action name) could
    /// not be shown to be inside the parent, for `reason`.
    NotProven { entry: String, reason: Unproven },
}

impl Containment {
    pub fn is_proven(&self) -> bool {
        matches!(self, Self::Proven)
    }
}

impl fmt::Display for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Proven => f.write_str("contained"),
            Self::NotProven { entry, reason } => write!(f, "`{entry}`: {reason}"),
        }
    }
}

/// Why a child entry was not proven to be inside the parent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unproven {
    /// The child has an action the parent does not.
    #[error("action `{}` is not in the parent scope", .0.as_str())]
    Action(Action),
    /// Definitely not contained: the child covers `witness`, the parent
    /// does not.
    #[error("covers `{witness}`, which the parent scope does not")]
    Escapes { witness: String },
    /// Containment would depend on a regular expression.
    #[error("containment of regular expressions is not proven; use exact names or globs")]
    Regex,
    /// The decision procedure reached its bounds.
    #[error("containment is too complex to prove; use fewer or simpler patterns")]
    TooComplex,
    /// The child entry does not parse.
    #[error("{0}")]
    Invalid(ScopeError),
}

/// One parsed resource entry. Equality is by the entry as written.
#[derive(Debug, Clone)]
pub enum ResourcePattern {
    /// A literal resource name.
    Exact(String),
    /// A glob with at least one `*`.
    Glob(GlobPattern),
    /// A `re:` regex, anchored at both ends.
    Regex(RegexPattern),
}

/// A `*` glob: the entry as written and its normalized form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobPattern {
    source: String,
    normalized: Vec<u8>,
}

/// A compiled `re:` entry.
#[derive(Debug, Clone)]
pub struct RegexPattern {
    source: String,
    regex: Regex,
}

impl PartialEq for ResourcePattern {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.as_str() == other.as_str()
    }
}

impl Eq for ResourcePattern {}

fn shown(entry: &str) -> String {
    if entry.chars().count() <= SHOWN_CHARS {
        entry.to_string()
    } else {
        let mut s: String = entry.chars().take(SHOWN_CHARS).collect();
        s.push('…');
        s
    }
}

fn name_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')
}

impl ResourcePattern {
    /// Parses and validates one resource entry. Never panics; the error
    /// names the entry. Regexes are compiled with size and nesting limits
    /// and anchored at both ends (`re:chat` matches only `chat`).
    pub fn parse(entry: &str) -> Result<Self, ScopeError> {
        if entry.len() > MAX_ENTRY_LEN {
            return Err(ScopeError::TooLong {
                entry: shown(entry),
                max: MAX_ENTRY_LEN,
            });
        }
        if let Some(pattern) = entry.strip_prefix(REGEX_PREFIX) {
            return Self::parse_regex(entry, pattern);
        }
        if entry.is_empty() {
            return Err(ScopeError::Empty {
                entry: String::new(),
            });
        }
        if let Some(ch) = entry.chars().find(|&c| !name_char(c) && c != '*') {
            return Err(ScopeError::InvalidChar {
                entry: shown(entry),
                ch,
            });
        }
        if entry.contains('*') {
            Ok(Self::Glob(GlobPattern {
                source: entry.to_string(),
                normalized: glob::normalize(entry.as_bytes()),
            }))
        } else {
            Ok(Self::Exact(entry.to_string()))
        }
    }

    fn parse_regex(entry: &str, pattern: &str) -> Result<Self, ScopeError> {
        if pattern.is_empty() {
            return Err(ScopeError::Empty {
                entry: shown(entry),
            });
        }
        let invalid = |e: regex::Error| ScopeError::InvalidRegex {
            entry: shown(entry),
            reason: e.to_string(),
        };
        let build = |p: &str| {
            RegexBuilder::new(p)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .nest_limit(REGEX_NEST_LIMIT)
                .build()
        };
        // Compiled alone first: a pattern that is valid on its own has
        // balanced groups, so wrapping it cannot escape the anchors
        // (`a)|(b` would otherwise become `\A(?:a)|(b)\z`).
        build(pattern).map_err(invalid)?;
        let regex = build(&format!(r"\A(?:{pattern})\z")).map_err(invalid)?;
        Ok(Self::Regex(RegexPattern {
            source: entry.to_string(),
            regex,
        }))
    }

    /// The entry as written.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Exact(name) => name,
            Self::Glob(g) => &g.source,
            Self::Regex(r) => &r.source,
        }
    }

    /// Whether this entry matches the whole resource name.
    pub fn matches(&self, resource: &str) -> bool {
        match self {
            Self::Exact(name) => name == resource,
            Self::Glob(g) => glob::matches(&g.normalized, resource.as_bytes()),
            Self::Regex(r) => r.regex.is_match(resource),
        }
    }

    /// The entry as a `*`-only glob, for exact names and globs.
    fn as_glob(&self) -> Option<&[u8]> {
        match self {
            Self::Exact(name) => Some(name.as_bytes()),
            Self::Glob(g) => Some(&g.normalized),
            Self::Regex(_) => None,
        }
    }
}

impl GlobPattern {
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl RegexPattern {
    /// The entry as written, `re:` prefix included.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl Scope {
    pub fn new(resources: Vec<String>, actions: Vec<Action>) -> Self {
        Self { resources, actions }
    }

    /// A scope over `resources` with every action.
    pub fn with_all_actions(resources: Vec<String>) -> Self {
        Self::new(resources, ALL_ACTIONS.to_vec())
    }

    /// True when the scope covers nothing (no resources or no actions).
    /// An empty scope is contained in every scope; issuance must refuse
    /// to sign a mandate with one.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() || self.actions.is_empty()
    }

    /// Checks every resource entry and the number of entries.
    pub fn validate(&self) -> Result<(), ScopeError> {
        self.compile().map(|_| ())
    }

    /// Validates into the form the gateway caches and asks per request.
    /// Fails on the first invalid entry.
    pub fn compile(&self) -> Result<CompiledScope, ScopeError> {
        if self.resources.len() > MAX_ENTRIES {
            return Err(ScopeError::TooManyEntries {
                count: self.resources.len(),
                max: MAX_ENTRIES,
            });
        }
        let patterns = self
            .resources
            .iter()
            .map(|r| ResourcePattern::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledScope::from_parts(patterns, &self.actions))
    }

    /// Compiles, leaving out invalid entries (they cover nothing). Used for
    /// scopes already accepted elsewhere (a verified mandate's claims), where
    /// covering less is the safe direction.
    pub fn compile_lenient(&self) -> CompiledScope {
        let patterns = self
            .resources
            .iter()
            .filter_map(|r| ResourcePattern::parse(r).ok())
            .collect();
        CompiledScope::from_parts(patterns, &self.actions)
    }

    /// Whether the scope covers `resource` with `action`. Invalid entries
    /// cover nothing. Compiles on every call: the gateway's hot path should
    /// cache [`Scope::compile`] and ask [`CompiledScope::covers`].
    pub fn covers(&self, resource: &str, action: Action) -> bool {
        self.actions.contains(&action)
            && self
                .resources
                .iter()
                .filter_map(|r| ResourcePattern::parse(r).ok())
                .any(|p| p.matches(resource))
    }

    /// Whether `child` is provably inside `self` (see
    /// [`CompiledScope::contains`]). An invalid child is `NotProven` with
    /// [`Unproven::Invalid`]; invalid entries of `self` are left out.
    pub fn contains(&self, child: &Scope) -> Containment {
        match child.compile() {
            Ok(child) => self.compile_lenient().contains(&child),
            Err(e) => Containment::NotProven {
                entry: e
                    .entry()
                    .map_or_else(|| "(scope)".to_string(), str::to_string),
                reason: Unproven::Invalid(e),
            },
        }
    }
}

/// A validated scope: parsed resource entries and the set of actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledScope {
    patterns: Vec<ResourcePattern>,
    actions: Vec<Action>,
}

impl CompiledScope {
    fn from_parts(patterns: Vec<ResourcePattern>, actions: &[Action]) -> Self {
        let actions = ALL_ACTIONS
            .into_iter()
            .filter(|a| actions.contains(a))
            .collect();
        Self { patterns, actions }
    }

    pub fn patterns(&self) -> &[ResourcePattern] {
        &self.patterns
    }

    /// The actions, without duplicates, in [`ALL_ACTIONS`] order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// True when the scope covers nothing.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() || self.actions.is_empty()
    }

    /// Whether the scope covers `resource` with `action`.
    pub fn covers(&self, resource: &str, action: Action) -> bool {
        self.actions.contains(&action) && self.patterns.iter().any(|p| p.matches(resource))
    }

    /// Decides soundly whether every (resource, action) `child` covers is
    /// covered by `self`. `Proven` is never wrong; `NotProven` names the
    /// first child entry (actions first, then resources in order) that
    /// could not be shown inside.
    ///
    /// - An empty child is contained in anything.
    /// - Child actions must be a subset of the parent's.
    /// - An exact child name is inside iff some parent entry matches it.
    /// - A child glob is decided exactly against the union of the parent's
    ///   exact names and globs (a child inside the union but inside no
    ///   single entry is `Proven`); parent regexes are not used for globs.
    ///   When the union misses a name a parent regex matches, the answer is
    ///   [`Unproven::Regex`], otherwise [`Unproven::Escapes`] with the
    ///   shortest name that escapes.
    /// - A child regex is inside only when the parent has a regex written
    ///   identically, or the parent's names and globs match every name.
    /// - Beyond the search bounds (shared by all entries of one call) the
    ///   answer is [`Unproven::TooComplex`].
    pub fn contains(&self, child: &CompiledScope) -> Containment {
        if child.is_empty() {
            return Containment::Proven;
        }
        if let Some(&a) = child.actions.iter().find(|a| !self.actions.contains(a)) {
            return Containment::NotProven {
                entry: a.as_str().to_string(),
                reason: Unproven::Action(a),
            };
        }
        let globs: Vec<&[u8]> = self
            .patterns
            .iter()
            .filter_map(ResourcePattern::as_glob)
            .collect();
        let regex_matches = |name: &str| {
            self.patterns
                .iter()
                .any(|p| matches!(p, ResourcePattern::Regex(r) if r.regex.is_match(name)))
        };
        let mut budget = Budget::new();
        let mut universal = None;
        for entry in &child.patterns {
            let verdict = match entry {
                ResourcePattern::Exact(name) => {
                    if self.patterns.iter().any(|p| p.matches(name)) {
                        None
                    } else {
                        Some(Unproven::Escapes {
                            witness: name.clone(),
                        })
                    }
                }
                ResourcePattern::Glob(g) => {
                    match glob::included(&g.normalized, &globs, &mut budget) {
                        Inclusion::Included => None,
                        Inclusion::TooComplex => Some(Unproven::TooComplex),
                        Inclusion::Escapes(w) if regex_matches(&w) => Some(Unproven::Regex),
                        Inclusion::Escapes(witness) => Some(Unproven::Escapes { witness }),
                    }
                }
                ResourcePattern::Regex(r) => {
                    let same = self
                        .patterns
                        .iter()
                        .any(|p| matches!(p, ResourcePattern::Regex(q) if q.source == r.source));
                    let everything = *universal.get_or_insert_with(|| {
                        glob::included(b"*", &globs, &mut budget) == Inclusion::Included
                    });
                    if same || everything {
                        None
                    } else {
                        Some(Unproven::Regex)
                    }
                }
            };
            if let Some(reason) = verdict {
                return Containment::NotProven {
                    entry: entry.as_str().to_string(),
                    reason,
                };
            }
        }
        Containment::Proven
    }
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
