//! Fuzzes `usage::UsageObserver` over SSE bodies for each dialect and `usage::request::UsageChunkStripper`, both fed chunks cut at fuzzer-chosen points; asserts neither depends on the split, LF, CRLF and CR framing read alike, the stripper only removes bytes, and a stream that cannot hold a usage member passes through it unchanged.
#![no_main]

#[path = "chunks.rs"]
mod chunks;
use chunks::{lens, Input};

use caracal_gateway::usage::request::UsageChunkStripper;
use caracal_gateway::usage::{BodyKind, Dialect, UsageObserver, UsageOutcome};
use libfuzzer_sys::fuzz_target;

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
    // Line ends, for bodies that have no CR of their own.
    let reframed =
        (!body.contains(&b'\r')).then(|| [&b"\r\n"[..], b"\r"].map(|eol| replace_lf(body, eol)));

    for complete in [true, false] {
        let whole = observe(dialect, cap, &[body], complete);
        let split = observe(dialect, cap, &chunks, complete);
        assert_eq!(
            split,
            whole,
            "split {:?}, complete {complete}",
            lens(&chunks)
        );
        for other in reframed.iter().flatten() {
            assert_eq!(observe(dialect, cap, &[other], complete), whole, "reframed");
        }
    }

    let whole = strip(cap, &[body]);
    assert_eq!(strip(cap, &chunks), whole, "split {:?}", lens(&chunks));
    assert!(is_subsequence(&whole, body), "the stripper added bytes");
    // Only an event with a `usage` member is dropped; its name can only be
    // spelled `usage` or with a `\u` escape.
    if !contains(body, b"usage") && !contains(body, b"\\u") {
        assert_eq!(whole, body, "a stream without usage changed");
    }
    // Within the cap, the framing does not change what is dropped.
    if body.len() * 2 <= cap {
        for (other, eol) in reframed.iter().flatten().zip([&b"\r\n"[..], b"\r"]) {
            assert_eq!(strip(cap, &[other]), replace_lf(&whole, eol), "reframed");
        }
    }
});

fn observe(dialect: Dialect, cap: usize, chunks: &[&[u8]], complete: bool) -> UsageOutcome {
    let mut obs = UsageObserver::new(BodyKind::Sse, dialect, cap);
    for chunk in chunks {
        obs.observe(chunk);
    }
    obs.finish(complete)
}

/// Everything the stripper passes on, `finish` included.
fn strip(cap: usize, chunks: &[&[u8]]) -> Vec<u8> {
    let mut stripper = UsageChunkStripper::new(cap);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(stripper.push(chunk));
    }
    out.extend(stripper.finish());
    out
}

fn replace_lf(body: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 2);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(eol),
            _ => out.push(b),
        }
    }
    out
}

fn is_subsequence(short: &[u8], long: &[u8]) -> bool {
    let mut long = long.iter();
    short.iter().all(|b| long.any(|c| c == b))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
