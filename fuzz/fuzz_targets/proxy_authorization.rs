//! Fuzzes `authn::from_proxy_headers` / `from_request_headers` on arbitrary header values; asserts absent ⇒ `Ok(None)`, refusals are `unauthenticated`, accepted tokens are non-empty, and Basic (plain and percent-encoded) and Bearer credentials built from fuzzed parts round-trip.
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use caracal_gateway::authn::BadCredentials;
use caracal_gateway::authn::{from_proxy_headers, from_request_headers, Presented};
use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// The headers the two readers look at, in the order the input fills them.
const NAMES: [&str; 4] = [
    "proxy-authorization",
    "authorization",
    "x-api-key",
    "api-key",
];

// Input: a mode byte (bits 0-3: which of NAMES get a value; bit 4: round-trip
// `user\ntoken` instead; bit 5: percent-encode them), then '\n'-separated values.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Values are separated by '\n', which no header value may contain.
    let parts: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    if mode & 0x10 == 0 {
        raw_headers(mode, &parts);
    } else if let [user, token, ..] = parts.as_slice() {
        basic_round_trip(user, token, mode & 0x20 != 0);
        bearer_round_trip(token);
    }
});

/// Arbitrary values for the headers whose bit is set in `mask`.
fn raw_headers(mask: u8, parts: &[&[u8]]) {
    let mut headers = HeaderMap::new();
    for (i, value) in parts.iter().take(NAMES.len()).enumerate() {
        if mask & (1 << i) == 0 {
            continue;
        }
        // A value `HeaderValue` refuses cannot reach the gateway.
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(NAMES[i], v);
        }
    }
    let proxy = from_proxy_headers(&headers);
    check(&proxy);
    assert_eq!(
        matches!(proxy, Ok(None)),
        !headers.contains_key(PROXY_AUTHORIZATION)
    );

    let request = from_request_headers(&headers);
    check(&request);
    let any = ["authorization", "x-api-key", "api-key"]
        .iter()
        .any(|n| headers.contains_key(*n));
    assert_eq!(matches!(request, Ok(None)), !any);
    // Without Authorization, an API-key header is the token, trimmed.
    if !headers.contains_key(AUTHORIZATION) {
        let key = ["x-api-key", "api-key"]
            .iter()
            .find_map(|n| headers.get(*n));
        if let (Some(value), Ok(Some(p))) = (key, &request) {
            let text = value.to_str().expect("accepted value is text");
            assert_eq!(p, &presented(None, text.trim()));
        }
    }
}

/// What every reader guarantees: a refusal says why, an accepted
/// credential has a token, and a user part is never empty.
fn check(result: &Result<Option<Presented>, BadCredentials>) {
    match result {
        Ok(Some(p)) => {
            assert!(!p.token.is_empty(), "empty token accepted: {p:?}");
            assert!(p.user.as_deref() != Some(""), "empty user kept: {p:?}");
        }
        Ok(None) => {}
        Err(d) => assert!(!d.0.is_empty(), "a refusal without a reason: {d:?}"),
    }
}

/// `Basic base64(user:token)`, optionally with every byte of both parts
/// percent-encoded (clients that leave proxy userinfo encoded), reads back
/// as the same user and token.
fn basic_round_trip(user: &[u8], token: &[u8], encode: bool) {
    let (Ok(user), Ok(token)) = (std::str::from_utf8(user), std::str::from_utf8(token)) else {
        return;
    };
    // The decoder splits at the first ':' and treats '%' as an escape (ids
    // and tokens never contain '%'); an empty token is refused.
    if token.is_empty() || token.contains('%') || user.contains('%') {
        return;
    }
    if !encode && user.contains(':') {
        return;
    }
    let (u, t) = if encode {
        (percent_encode(user), percent_encode(token))
    } else {
        (user.to_string(), token.to_string())
    };
    let value = format!("Basic {}", B64.encode(format!("{u}:{t}")));
    let headers = one("proxy-authorization", &value);
    let user = (!user.is_empty()).then_some(user);
    assert_eq!(
        from_proxy_headers(&headers),
        Ok(Some(presented(user, token))),
        "{value}"
    );
    let headers = one("authorization", &value);
    assert_eq!(
        from_request_headers(&headers),
        Ok(Some(presented(user, token)))
    );
}

/// `Bearer token` reads back as the token without surrounding blanks.
fn bearer_round_trip(token: &[u8]) {
    // Header text is visible ASCII, space and tab.
    if !token
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return;
    }
    let token = std::str::from_utf8(token).expect("ASCII");
    let value = format!("Bearer {token}");
    let trimmed = token.trim_matches([' ', '\t']);
    for result in [
        from_proxy_headers(&one("proxy-authorization", &value)),
        from_request_headers(&one("authorization", &value)),
    ] {
        if trimmed.is_empty() {
            assert!(result.is_err(), "{value:?}: {result:?}");
        } else {
            assert_eq!(result, Ok(Some(presented(None, trimmed))), "{value:?}");
        }
    }
}

fn one(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_str(value).expect("valid header"));
    h
}

fn presented(user: Option<&str>, token: &str) -> Presented {
    Presented {
        user: user.map(str::to_string),
        token: token.to_string(),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}
