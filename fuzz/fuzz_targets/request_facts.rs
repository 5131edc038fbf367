//! Fuzzes `usage::request::facts` for each dialect and the `add_include_usage` / `cap_output_tokens` rewrites (plain and `_given`, and chained as the gateway does); asserts the facts' bounds, that `Unknown` reads like `OpenAi`, that the wrappers equal the `_given` forms, and that a rewrite is valid, reads back with exactly the one fact changed, and changes no other JSON value.
#![no_main]

use caracal_gateway::usage::request::{
    add_include_usage, add_include_usage_given, cap_output_tokens, cap_output_tokens_given, facts,
    RequestFacts, MAX_MODEL_CHARS, MAX_OUTPUT_TOKENS,
};
use caracal_gateway::usage::Dialect;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Output caps the rewrite is tried with.
const CAPS: [u64; 4] = [0, 1, 4096, MAX_OUTPUT_TOKENS];

// Input: a field byte (% 4: OpenAI max_completion_tokens, max_tokens,
// max_output_tokens, Anthropic max_tokens), a cap byte (% 4 indexes CAPS),
// then the request body.
fuzz_target!(|data: &[u8]| {
    let [choice, cap, body @ ..] = data else {
        return;
    };
    let openai = facts(Dialect::OpenAi, body);
    // `Dialect::Unknown` reads the OpenAI names.
    assert_eq!(facts(Dialect::Unknown, body), openai);
    let anthropic = facts(Dialect::Anthropic, body);
    for (dialect, f) in [(Dialect::OpenAi, &openai), (Dialect::Anthropic, &anthropic)] {
        if let Ok(f) = f {
            bounds(dialect, body, f);
        }
    }

    if let Ok(f) = &openai {
        include_usage(body, f);
    }
    // A limit field of the dialect, and a cap, as the gateway picks them.
    let (dialect, f, field) = match choice % 4 {
        0 => (Dialect::OpenAi, &openai, "max_completion_tokens"),
        1 => (Dialect::OpenAi, &openai, "max_tokens"),
        2 => (Dialect::OpenAi, &openai, "max_output_tokens"),
        _ => (Dialect::Anthropic, &anthropic, "max_tokens"),
    };
    let cap = CAPS[usize::from(cap % 4)];
    let Ok(f) = f else {
        assert!(cap_output_tokens(dialect, body, field, cap).is_err());
        return;
    };
    let capped = output_cap(dialect, body, f, field, cap);
    // The gateway then adds include_usage to the capped body, with the
    // facts of the original.
    if let (Dialect::OpenAi, Some(capped)) = (dialect, capped) {
        if let Some(both) = add_include_usage_given(&capped, f).expect("a valid body") {
            let read = facts(Dialect::OpenAi, &both).expect("the rewrite is valid");
            assert_eq!(read.max_output_tokens, Some(cap));
            assert!(read.include_usage && read.stream);
        }
    }
});

/// What `facts` promises about what it returns.
fn bounds(dialect: Dialect, body: &[u8], f: &RequestFacts) {
    assert_eq!(f.input_bytes, body.len() as u64);
    assert!(f
        .model
        .as_ref()
        .is_none_or(|m| m.chars().count() <= MAX_MODEL_CHARS));
    assert!(f.max_output_tokens.is_none_or(|n| n <= MAX_OUTPUT_TOKENS));
    if dialect == Dialect::Anthropic {
        assert!(!f.include_usage, "include_usage is OpenAI only");
    }
    // A body with facts is a JSON object (when serde_json can hold it).
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        assert!(v.is_object());
    }
}

/// `add_include_usage` on a body with OpenAI facts `f`.
fn include_usage(body: &[u8], f: &RequestFacts) {
    let given = add_include_usage_given(body, f);
    assert_eq!(add_include_usage(body), given);
    let out = given.expect("a valid body is rewritten or left alone");
    let Some(out) = out else {
        assert!(!f.stream || f.include_usage, "{f:?} needs include_usage");
        return;
    };
    assert!(f.stream && !f.include_usage, "{f:?} needs no rewrite");
    let read = facts(Dialect::OpenAi, &out).expect("the rewrite is valid");
    let want = RequestFacts {
        include_usage: true,
        input_bytes: out.len() as u64,
        ..f.clone()
    };
    assert_eq!(read, want, "{}", String::from_utf8_lossy(&out));
    same_values(body, &out, |top| {
        let options = top.entry("stream_options").or_insert(Value::Null);
        if options.is_null() {
            *options = Value::Object(Default::default());
        }
        options["include_usage"] = Value::Bool(true);
    });
}

/// `cap_output_tokens` on a body with facts `f`; the rewritten body, if any.
fn output_cap(
    dialect: Dialect,
    body: &[u8],
    f: &RequestFacts,
    field: &'static str,
    cap: u64,
) -> Option<Vec<u8>> {
    let given = cap_output_tokens_given(body, f, field, cap);
    assert_eq!(cap_output_tokens(dialect, body, field, cap), given);
    let out = given.expect("a valid body is capped or left alone");
    let Some(out) = out else {
        assert!(f.max_output_tokens.is_some(), "{f:?} has no limit");
        return None;
    };
    assert!(f.max_output_tokens.is_none(), "{f:?} already limited");
    let read = facts(dialect, &out).expect("the rewrite is valid");
    let want = RequestFacts {
        max_output_tokens: Some(cap),
        input_bytes: out.len() as u64,
        // The member written is among them; the test below checks it.
        limits: read.limits,
        ..f.clone()
    };
    assert_eq!(read, want, "{}", String::from_utf8_lossy(&out));
    same_values(body, &out, |top| {
        top.insert(field.to_string(), cap.into());
    });
    Some(out)
}

/// `after` is `before` with `change` applied to its top-level object, as
/// JSON values (the rewrites keep every other member as it was). Skipped
/// when serde_json cannot hold `before` (e.g. a lone surrogate in a member
/// `facts` skips).
fn same_values(
    before: &[u8],
    after: &[u8],
    change: impl FnOnce(&mut serde_json::Map<String, Value>),
) {
    let Ok(Value::Object(mut want)) = serde_json::from_slice(before) else {
        return;
    };
    change(&mut want);
    let got: Value = serde_json::from_slice(after).expect("the rewrite is JSON");
    assert_eq!(got, Value::Object(want));
}
