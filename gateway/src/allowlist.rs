//! Allowlists: which URLs a principal may call. Each principal's patterns
//! are compiled once per snapshot into one `RegexSet` and one `GlobSet`.
//!
//! Patterns match the call's canonical URL `scheme://host[:port]/path`
//! (no query string; the port only when it is not the scheme's default).
//! Regex patterns are anchored at both ends whether or not they say so, so
//! `api\.openai\.com` cannot match `https://evil.example/?api.openai.com`.

use std::collections::HashMap;

use caracal_config::AllowlistDefault;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::{RegexSet, RegexSetBuilder};

use crate::model::{AllowlistEntry, PatternType};

/// Bound on the compiled size of one principal's regexes (hostile patterns
/// must not exhaust memory).
const REGEX_SIZE_LIMIT: usize = 4 << 20;

/// Why a pattern was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("invalid regex: {0}")]
    Regex(String),
    #[error("invalid glob: {0}")]
    Glob(String),
    #[error("pattern must be 1 to 2048 characters")]
    Length,
}

/// Checks that a pattern compiles exactly as the gateway will compile it.
pub fn validate_pattern(pattern: &str, kind: PatternType) -> Result<(), PatternError> {
    if pattern.is_empty() || pattern.len() > 2048 {
        return Err(PatternError::Length);
    }
    match kind {
        PatternType::Regex => {
            // Compiled alone first so errors quote the pattern as written.
            regex::RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| PatternError::Regex(e.to_string()))?;
            build_regex_set(&[pattern])?;
        }
        PatternType::Glob => {
            glob(pattern)?;
        }
    }
    Ok(())
}

fn build_regex_set(patterns: &[&str]) -> Result<RegexSet, PatternError> {
    RegexSetBuilder::new(patterns.iter().map(|p| format!("^(?:{p})$")))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| PatternError::Regex(e.to_string()))
}

fn glob(pattern: &str) -> Result<globset::Glob, PatternError> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| PatternError::Glob(e.to_string()))
}

/// One principal's compiled patterns.
#[derive(Debug, Clone)]
pub struct CompiledAllowlist {
    regexes: RegexSet,
    regex_ids: Vec<String>,
    globs: GlobSet,
    glob_ids: Vec<String>,
}

impl CompiledAllowlist {
    /// Compiles entries; an entry that does not compile is left out (it can
    /// never allow anything) and reported in the second value.
    pub fn compile(entries: &[&AllowlistEntry]) -> (Self, Vec<(String, PatternError)>) {
        let mut rejected = Vec::new();
        let mut regex_patterns = Vec::new();
        let mut regex_ids = Vec::new();
        let mut globs = GlobSetBuilder::new();
        let mut glob_ids = Vec::new();
        for e in entries {
            if let Err(err) = validate_pattern(&e.pattern, e.pattern_type) {
                rejected.push((e.id.clone(), err));
                continue;
            }
            match e.pattern_type {
                PatternType::Regex => {
                    regex_patterns.push(e.pattern.as_str());
                    regex_ids.push(e.id.clone());
                }
                PatternType::Glob => {
                    if let Ok(g) = glob(&e.pattern) {
                        globs.add(g);
                        glob_ids.push(e.id.clone());
                    }
                }
            }
        }
        let regexes = build_regex_set(&regex_patterns).unwrap_or_else(|err| {
            // Each pattern compiled alone, yet together they exceed the size limit.
            for id in regex_ids.drain(..) {
                rejected.push((id, PatternError::Regex(err.to_string())));
            }
            RegexSet::empty()
        });
        let globs = globs.build().unwrap_or_else(|err| {
            for id in glob_ids.drain(..) {
                rejected.push((id, PatternError::Glob(err.to_string())));
            }
            GlobSet::empty()
        });
        (
            Self {
                regexes,
                regex_ids,
                globs,
                glob_ids,
            },
            rejected,
        )
    }

    /// The id of the first entry matching `url`, if any.
    pub fn matching(&self, url: &str) -> Option<&str> {
        if let Some(i) = self.regexes.matches(url).iter().next() {
            return self.regex_ids.get(i).map(String::as_str);
        }
        self.globs
            .matches(url)
            .first()
            .and_then(|i| self.glob_ids.get(*i))
            .map(String::as_str)
    }
}

/// Every principal's compiled allowlist, and the default for principals
/// without entries.
#[derive(Debug, Clone, Default)]
pub struct Allowlists {
    by_principal: HashMap<String, CompiledAllowlist>,
    default: AllowlistDefault,
}

impl Allowlists {
    /// Compiles all entries; returns the rejected ones alongside.
    pub fn compile(
        entries: &[AllowlistEntry],
        default: AllowlistDefault,
    ) -> (Self, Vec<(String, PatternError)>) {
        let mut grouped: HashMap<&str, Vec<&AllowlistEntry>> = HashMap::new();
        for e in entries {
            grouped.entry(e.principal_id.as_str()).or_default().push(e);
        }
        let mut rejected = Vec::new();
        let by_principal = grouped
            .into_iter()
            .map(|(p, es)| {
                let (compiled, bad) = CompiledAllowlist::compile(&es);
                rejected.extend(bad);
                (p.to_string(), compiled)
            })
            .collect();
        (
            Self {
                by_principal,
                default,
            },
            rejected,
        )
    }

    /// Decides whether `principal_id` may call `url`. `Ok(Some(id))` names
    /// the matching entry; `Ok(None)` means allowed by the workspace default.
    pub fn check<'a>(
        &'a self,
        principal_id: &str,
        url: &str,
    ) -> Result<Option<&'a str>, NotAllowed> {
        match self.by_principal.get(principal_id) {
            Some(list) => list.matching(url).map(Some).ok_or_else(|| {
                NotAllowed(format!(
                    "{url} matches none of principal {principal_id}'s allowlist patterns"
                ))
            }),
            None => match self.default {
                AllowlistDefault::Allow => Ok(None),
                AllowlistDefault::Deny => Err(NotAllowed(format!(
                    "principal {principal_id} has no allowlist entries and the workspace denies by default; add one with `caracal allowlist create --agent-id {principal_id} --pattern … --pattern-type glob`"
                ))),
            },
        }
    }
}

/// A URL the principal's allowlist does not admit, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAllowed(pub String);

impl Allowlists {}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, principal: &str, pattern: &str, kind: PatternType) -> AllowlistEntry {
        AllowlistEntry {
            id: id.into(),
            principal_id: principal.into(),
            pattern: pattern.into(),
            pattern_type: kind,
            created_at: String::new(),
        }
    }

    #[test]
    fn regex_and_glob_patterns_match_whole_urls() {
        let entries = vec![
            entry(
                "r1",
                "a",
                r"^https://api\.openai\.com/.*$",
                PatternType::Regex,
            ),
            entry("g1", "a", "https://api.anthropic.com/*", PatternType::Glob),
            entry(
                "r2",
                "b",
                r"https://api\.openai\.com/v1/models",
                PatternType::Regex,
            ),
        ];
        let (lists, rejected) = Allowlists::compile(&entries, AllowlistDefault::Deny);
        assert!(rejected.is_empty());
        assert_eq!(
            lists
                .check("a", "https://api.openai.com/v1/chat/completions")
                .unwrap(),
            Some("r1")
        );
        assert_eq!(
            lists
                .check("a", "https://api.anthropic.com/v1/messages")
                .unwrap(),
            Some("g1")
        );
        assert!(lists.check("b", "https://api.openai.com/v1/models").is_ok());
        // Implicit anchoring: no substring matches.
        let err = lists
            .check("b", "https://evil.example/https://api.openai.com/v1/models")
            .unwrap_err();
        assert!(err.0.contains("matches none"), "{err}");
        assert!(lists
            .check("b", "https://api.openai.com/v1/models/x")
            .is_err());
        assert!(lists
            .check("a", "https://api.openai.com.evil.example/x")
            .is_err());
    }

    #[test]
    fn default_applies_only_without_entries() {
        let entries = vec![entry("r1", "a", "https://x/*", PatternType::Glob)];
        let (deny, _) = Allowlists::compile(&entries, AllowlistDefault::Deny);
        assert!(deny.check("nobody", "https://x/y").is_err());
        let (allow, _) = Allowlists::compile(&entries, AllowlistDefault::Allow);
        assert_eq!(allow.check("nobody", "https://anything/").unwrap(), None);
        assert!(
            allow.check("a", "https://other/").is_err(),
            "entries override the default"
        );
    }

    #[test]
    fn bad_patterns_are_rejected_and_never_allow() {
        assert!(validate_pattern("(unclosed", PatternType::Regex).is_err());
        assert!(validate_pattern("a[", PatternType::Glob).is_err());
        assert!(validate_pattern("", PatternType::Glob).is_err());
        assert!(
            validate_pattern(r"(\w{1000}){1000}", PatternType::Regex).is_err(),
            "size limit"
        );
        let entries = vec![
            entry("bad", "a", "(unclosed", PatternType::Regex),
            entry("ok", "a", "https://x/*", PatternType::Glob),
        ];
        let (lists, rejected) = Allowlists::compile(&entries, AllowlistDefault::Allow);
        assert_eq!(rejected.len(), 1);
        assert!(lists.check("a", "https://y/").is_err());
        assert!(lists.check("a", "https://x/z").is_ok());
    }
}
