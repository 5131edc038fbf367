//! Fuzzes `allowlist::Allowlists::check` / `CompiledAllowlist::matching` on arbitrary URLs against fixed patterns, and `validate_pattern` on arbitrary regex and glob patterns; asserts regexes match only whole URLs (implicit anchoring), the first matching entry is named, defaults apply only without entries, and `validate_pattern` agrees with what `compile` keeps.
#![no_main]

use std::sync::LazyLock;

use caracal_config::AllowlistDefault;
use caracal_gateway::allowlist::{validate_pattern, Allowlists, CompiledAllowlist};
use caracal_gateway::model::{AllowlistEntry, PatternType};
use libfuzzer_sys::fuzz_target;

/// Longest pattern fuzzed: regex compilation is costly, and 512 bytes
/// reach the size limit already.
const MAX_PATTERN: usize = 512;
/// Longest URL fuzzed.
const MAX_URL: usize = 4096;

fn entry(id: &str, pattern: &str, pattern_type: PatternType) -> AllowlistEntry {
    AllowlistEntry {
        id: id.into(),
        principal_id: "agent".into(),
        pattern: pattern.into(),
        pattern_type,
        created_at: String::new(),
    }
}

/// Principal `agent`'s entries, compiled once, under both defaults.
static LISTS: LazyLock<[Allowlists; 2]> = LazyLock::new(|| {
    let entries = [
        entry(
            "exact",
            r"https://api\.openai\.com/v1/models",
            PatternType::Regex,
        ),
        entry(
            "openai",
            r"^https://api\.openai\.com/.*$",
            PatternType::Regex,
        ),
        entry(
            "anthropic",
            "https://api.anthropic.com/*",
            PatternType::Glob,
        ),
    ];
    [AllowlistDefault::Deny, AllowlistDefault::Allow].map(|default| {
        let (lists, rejected) = Allowlists::compile(&entries, default);
        assert!(rejected.is_empty(), "{rejected:?}");
        lists
    })
});

// Input: an even mode byte and a URL, or an odd one (bit 1: glob), a
// pattern, a 0xff byte and a URL.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(url) = std::str::from_utf8(rest) {
            if url.len() <= MAX_URL {
                fixed_patterns(url);
            }
        }
        return;
    }
    // A pattern, then (after a 0xff byte, never part of UTF-8) a URL.
    let mut parts = rest.splitn(2, |&b| b == 0xff);
    let (Some(pattern), url) = (parts.next(), parts.next().unwrap_or_default()) else {
        return;
    };
    let (Ok(pattern), Ok(url)) = (std::str::from_utf8(pattern), std::str::from_utf8(url)) else {
        return;
    };
    if pattern.len() <= MAX_PATTERN && url.len() <= MAX_URL {
        let kind = match mode & 2 {
            0 => PatternType::Regex,
            _ => PatternType::Glob,
        };
        arbitrary_pattern(pattern, kind, url);
    }
});

/// The fixed entries match exactly the URLs their patterns describe, and
/// the first matching entry is the one named.
fn fixed_patterns(url: &str) {
    let exact = url == "https://api.openai.com/v1/models";
    // Regex `.` matches anything but '\n'; a glob `*` matches anything.
    let openai = url
        .strip_prefix("https://api.openai.com/")
        .is_some_and(|rest| !rest.contains('\n'));
    let anthropic = url.starts_with("https://api.anthropic.com/");
    let want = [
        (exact, "exact"),
        (openai, "openai"),
        (anthropic, "anthropic"),
    ]
    .into_iter()
    .find_map(|(hit, id)| hit.then_some(id));
    for lists in LISTS.iter() {
        match lists.check("agent", url) {
            Ok(id) => assert_eq!(id, want, "{url:?}"),
            Err(d) => {
                assert_eq!(want, None, "{url:?}: {d:?}");
                assert!(d.0.contains(url), "the refusal names the URL: {d:?}");
            }
        }
    }
    // Without entries of its own, a principal gets the default.
    let [deny, allow] = &*LISTS;
    assert!(deny.check("nobody", url).is_err());
    assert_eq!(allow.check("nobody", url), Ok(None));
}

/// `validate_pattern` accepts exactly the patterns `compile` keeps, and a
/// kept pattern can be matched against any URL.
fn arbitrary_pattern(pattern: &str, kind: PatternType, url: &str) {
    let valid = validate_pattern(pattern, kind);
    let e = entry("fuzzed", pattern, kind);
    let (compiled, rejected) = CompiledAllowlist::compile(&[&e]);
    assert_eq!(
        valid.is_ok(),
        rejected.is_empty(),
        "{pattern:?} ({kind:?}): {valid:?} vs {rejected:?}"
    );
    if pattern.is_empty() || pattern.len() > 2048 {
        assert!(valid.is_err(), "{pattern:?}");
    }
    let hit = compiled.matching(url);
    assert!(hit.is_none() || (valid.is_ok() && hit == Some("fuzzed")));
}
