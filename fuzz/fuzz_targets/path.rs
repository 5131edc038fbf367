//! Fuzzes `path::check`; asserts it accepts exactly the paths its module doc allows (restated independently here), and that an accepted path, percent-decoded, has the same segments and none of them is `.`, `..` or holds a separator or NUL.
#![no_main]

use caracal_gateway::path::check;
use libfuzzer_sys::fuzz_target;

// Input: a request path.
fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let verdict = check(path);
    assert_eq!(verdict.is_ok(), allowed(path), "{path:?}: {verdict:?}");
    if verdict.is_ok() {
        decodes_to_the_same_segments(path);
    }
});

/// The rule of `gateway/src/path.rs`: absolute; no control character
/// (RFC 5234 CTL: 0x00-0x1f, 0x7f), space or backslash; every '%' opens
/// two hex digits that encode none of '/', '\', '.', NUL; no '.' or '..'
/// segment; no empty segment except a trailing one.
fn allowed(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\')
    {
        return false;
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
            return false;
        };
        let (Some(h), Some(l)) = (hex(h), hex(l)) else {
            return false;
        };
        if matches!(h << 4 | l, b'/' | b'\\' | b'.' | 0) {
            return false;
        }
        i += 3;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    segments
        .iter()
        .enumerate()
        .all(|(n, seg)| !matches!(*seg, "." | "..") && (n == last || !seg.is_empty()))
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// What an upstream that percent-decodes sees: the same segments, none of
/// them a dot segment, none holding '/', '\' or NUL.
fn decodes_to_the_same_segments(path: &str) {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let value = hex(bytes[i + 1]).zip(hex(bytes[i + 2]));
            let (h, l) = value.expect("an accepted path has only valid escapes");
            decoded.push(h << 4 | l);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let raw = path.split('/').count();
    let segments: Vec<&[u8]> = decoded.split(|&b| b == b'/').collect();
    assert_eq!(segments.len(), raw, "{path:?} decodes to {decoded:?}");
    for seg in segments {
        assert!(
            !matches!(seg, b"." | b".."),
            "{path:?} decodes to a dot segment"
        );
        assert!(
            !seg.contains(&b'\\') && !seg.contains(&0),
            "{path:?} decodes to a backslash or NUL"
        );
    }
}
