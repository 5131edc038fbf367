//! Fuzzes `usage::UsageObserver` over JSON bodies for each dialect, split into chunks at fuzzer-chosen points, and `BodyKind::from_content_type`; asserts the outcome does not depend on the split, a body over the cap is `TooLarge` and only then, a body that is not JSON is `Malformed`, and content types ignore case and parameters.
#![no_main]

#[path = "chunks.rs"]
mod chunks;
use chunks::{lens, Input};

use caracal_gateway::usage::{BodyKind, Dialect, UsageObserver, UsageOutcome};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;

// Input: see `chunks::Input`.
fuzz_target!(|data: &[u8]| {
    let Some(Input {
        dialect,
        cap,
        body,
        chunks,
    }) = Input::read(data)
    else {
        return;
    };
    for complete in [true, false] {
        let whole = observe(dialect, cap, &[body], complete);
        let split = observe(dialect, cap, &chunks, complete);
        assert_eq!(split, whole, "split {:?}", lens(&chunks));
        // Beyond the cap the body is dropped: `TooLarge`, and only then.
        assert_eq!(
            whole == UsageOutcome::TooLarge,
            body.len() > cap,
            "{} bytes, cap {cap}: {whole:?}",
            body.len()
        );
        // A JSON body that is not valid JSON is `Malformed`.
        let text = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        if body.len() <= cap
            && !text.trim_ascii().is_empty()
            && serde_json::from_slice::<IgnoredAny>(text).is_err()
        {
            assert!(matches!(whole, UsageOutcome::Malformed(_)), "{whole:?}");
        }
    }
    if let Ok(ct) = std::str::from_utf8(body) {
        content_type(ct);
    }
});

fn observe(dialect: Dialect, cap: usize, chunks: &[&[u8]], complete: bool) -> UsageOutcome {
    let mut obs = UsageObserver::new(BodyKind::Json, dialect, cap);
    for chunk in chunks {
        obs.observe(chunk);
    }
    obs.finish(complete)
}

/// `from_content_type` ignores case and parameters.
fn content_type(ct: &str) {
    let kind = BodyKind::from_content_type(Some(ct));
    assert_eq!(
        BodyKind::from_content_type(Some(&ct.to_ascii_uppercase())),
        kind
    );
    let with_params = format!("{ct}; charset=utf-8");
    assert_eq!(
        BodyKind::from_content_type(Some(&with_params)),
        kind,
        "{ct:?}"
    );
}
