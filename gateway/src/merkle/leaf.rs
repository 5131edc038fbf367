//! The canonical bytes of a ledger event: what its Merkle leaf hashes.
//!
//! A leaf is `SHA-256(0x00 ‖ bytes)` (RFC 6962 §2.1), where `bytes` is the
//! event as one JSON object, UTF-8, keys sorted by their bytes, no
//! whitespace, every field present:
//!
//! - strings as JSON strings, escaping only `"`, `\` and control
//!   characters (`\b \f \n \r \t`, others as `\u00xx` in lowercase hex);
//! - counts (`ts_ms`, `status`, tokens, bytes, durations) as integers in
//!   decimal, never with an exponent or a fraction;
//! - money (`cost`, `reserved`) as the exact decimal text the ledger
//!   stores (`"0.001250"` stays `"0.001250"`);
//! - a field without a value as `null`;
//! - `"v": 1`, the version of this encoding.
//!
//! For these values this is the JSON Canonicalization Scheme (RFC 8785):
//! any JCS implementation, or Python's
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`,
//! reproduces the bytes from the fields `caracal ledger query --json`
//! prints. Every field of the row is covered, so changing any of them
//! changes the leaf.

use std::io::Write;

use crate::ledger::LedgerEvent;

/// The version of the encoding, the `v` member of every leaf.
pub const VERSION: u64 = 1;

/// A JSON value of the encoding, written straight into the output.
enum Field<'a> {
    Text(Option<&'a str>),
    Count(Option<u64>),
    Int(i64),
}

/// The canonical bytes of `e` (see the module's documentation).
///
/// Written member by member in key order, without building a map: every
/// ledger row is hashed once, on the writer's path.
pub fn canonical(e: &LedgerEvent) -> Vec<u8> {
    use Field::{Count, Int, Text};
    let cost = e.cost.map(|c| c.to_string());
    let reserved = e.reserved.map(|c| c.to_string());
    // Keys sorted by their bytes; the test below checks the order.
    let members: [(&str, Field); 30] = [
        ("action", Text(e.action.as_deref())),
        ("cached_input_tokens", Count(e.cached_input_tokens)),
        ("code", Text(Some(e.code.as_str()))),
        ("cost", Text(cost.as_deref())),
        ("cost_basis", Text(e.cost_basis.map(|b| b.as_str()))),
        ("currency", Text(e.currency.as_deref())),
        ("decision", Text(Some(e.decision.as_str()))),
        ("detail", Text(e.detail.as_deref())),
        ("duration_ms", Count(Some(e.duration_ms))),
        ("duration_us", Count(Some(e.duration_us))),
        ("id", Text(Some(&e.id))),
        ("input_tokens", Count(e.input_tokens)),
        ("kind", Text(Some(e.kind.as_str()))),
        ("mandate_id", Text(e.mandate_id.as_deref())),
        ("method", Text(e.method.as_deref())),
        ("mode", Text(Some(e.mode.as_str()))),
        ("model", Text(e.model.as_deref())),
        ("output_tokens", Count(e.output_tokens)),
        ("principal_id", Text(e.principal_id.as_deref())),
        ("provider", Text(e.provider.as_deref())),
        ("request_bytes", Count(Some(e.request_bytes))),
        ("reserved", Text(reserved.as_deref())),
        ("resource", Text(e.resource.as_deref())),
        ("response_bytes", Count(Some(e.response_bytes))),
        ("status", Count(e.status.map(u64::from))),
        ("ts", Text(Some(&e.ts))),
        ("ts_ms", Int(e.ts_ms)),
        ("url", Text(e.url.as_deref())),
        ("usage", Text(e.usage.map(|u| u.as_str()))),
        ("v", Count(Some(VERSION))),
    ];
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    for (k, (key, value)) in members.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Text(Some(s)) => {
                // serde_json's escaping is the documented one.
                serde_json::to_writer(&mut out, s).expect("writing to a Vec cannot fail");
            }
            Count(Some(n)) => write!(out, "{n}").expect("writing to a Vec cannot fail"),
            Int(n) => write!(out, "{n}").expect("writing to a Vec cannot fail"),
            Text(None) | Count(None) => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
    out
}

/// The Merkle leaf hash of `e`: `SHA-256(0x00 ‖ canonical(e))`.
pub fn leaf_hash(e: &LedgerEvent) -> tlog_tiles::Hash {
    tlog_tiles::record_hash(&canonical(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{CostBasis, Decision, EventCode, EventKind, Mode};
    use serde_json::Value;

    fn event() -> LedgerEvent {
        let mut e = LedgerEvent::new(
            EventKind::Call,
            Mode::BaseUrl,
            Decision::Allow,
            EventCode::OK,
        );
        e.id = "0192f0c1-0000-7000-8000-000000000001".into();
        e.ts = "2026-11-30T12:00:00.5Z".into();
        e.ts_ms = 1_796_040_000_500;
        e.principal_id = Some("agent-1".into());
        e.provider = Some("openai".into());
        e.resource = Some("chat.completions".into());
        e.detail = Some("line\nbreak \"quoted\" \u{1} é".into());
        e.status = Some(200);
        e.input_tokens = Some(12);
        e.cost = Some(crate::money::parse_amount("0.001250").unwrap());
        e.currency = Some("USD".into());
        e.cost_basis = Some(CostBasis::Usage);
        e
    }

    #[test]
    fn the_encoding_is_sorted_compact_and_complete() {
        let bytes = canonical(&event());
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with(r#"{"action":null,"cached_input_tokens":null,"code":"ok","#),
            "{text}"
        );
        assert!(text.contains(r#""cost":"0.001250""#), "{text}");
        assert!(
            text.contains(r#""detail":"line\nbreak \"quoted\" \u0001 é""#),
            "{text}"
        );
        assert!(text.ends_with(r#""usage":null,"v":1}"#), "{text}");
        assert!(!text.contains(": ") && !text.contains(", "), "{text}");
        // Keys in byte order, every field once.
        let v: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
        let keys: Vec<&String> = v.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(v.len(), 30);
    }

    /// The leaf of a fixed event, as an independent implementation computes
    /// it (Python's hashlib over the documented `json.dumps` form).
    #[test]
    fn a_known_event_has_a_known_leaf() {
        let mut e = event();
        e.detail = None;
        assert_eq!(hex::encode(leaf_hash(&e).0), KNOWN_LEAF);
    }

    /// The encoding as a map of JSON values sorted by key: what the direct
    /// writer must produce byte for byte, for events with every kind of
    /// value (absent, empty, escaped, non-ASCII, extreme numbers).
    fn by_map(e: &LedgerEvent) -> Vec<u8> {
        use std::collections::BTreeMap;
        let text = |v: Option<&str>| v.map_or(Value::Null, |s| Value::String(s.into()));
        let count = |v: Option<u64>| v.map_or(Value::Null, Value::from);
        let m: BTreeMap<&str, Value> = BTreeMap::from([
            ("v", Value::from(VERSION)),
            ("id", text(Some(&e.id))),
            ("ts", text(Some(&e.ts))),
            ("ts_ms", Value::from(e.ts_ms)),
            ("kind", text(Some(e.kind.as_str()))),
            ("principal_id", text(e.principal_id.as_deref())),
            ("mode", text(Some(e.mode.as_str()))),
            ("provider", text(e.provider.as_deref())),
            ("resource", text(e.resource.as_deref())),
            ("action", text(e.action.as_deref())),
            ("method", text(e.method.as_deref())),
            ("url", text(e.url.as_deref())),
            ("decision", text(Some(e.decision.as_str()))),
            ("code", text(Some(e.code.as_str()))),
            ("status", count(e.status.map(u64::from))),
            ("request_bytes", Value::from(e.request_bytes)),
            ("response_bytes", Value::from(e.response_bytes)),
            ("duration_ms", Value::from(e.duration_ms)),
            ("duration_us", Value::from(e.duration_us)),
            ("model", text(e.model.as_deref())),
            ("input_tokens", count(e.input_tokens)),
            ("output_tokens", count(e.output_tokens)),
            ("cached_input_tokens", count(e.cached_input_tokens)),
            ("usage", text(e.usage.map(|u| u.as_str()))),
            ("detail", text(e.detail.as_deref())),
            ("mandate_id", text(e.mandate_id.as_deref())),
            ("cost", text(e.cost.map(|c| c.to_string()).as_deref())),
            ("currency", text(e.currency.as_deref())),
            ("cost_basis", text(e.cost_basis.map(|b| b.as_str()))),
            (
                "reserved",
                text(e.reserved.map(|c| c.to_string()).as_deref()),
            ),
        ]);
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn the_direct_writer_matches_a_sorted_map() {
        let mut full = event();
        full.action = Some(String::new());
        full.method = Some("POST".into());
        full.url = Some("https://api.example.com/v1/x?q=\u{7f}\\\"\t".into());
        full.mode = Mode::Proxy;
        full.model = Some("gpt-4o-mini \u{2028} 模型".into());
        full.output_tokens = Some(u64::MAX);
        full.cached_input_tokens = Some(0);
        full.request_bytes = u64::MAX;
        full.duration_us = 1;
        full.ts_ms = i64::MIN;
        full.mandate_id = Some("m".into());
        full.usage = Some(crate::usage::UsageCode::Missing);
        full.reserved = Some(crate::money::parse_amount("12.5").unwrap());
        let mut bare = LedgerEvent::new(
            EventKind::Authority,
            Mode::BaseUrl,
            Decision::Deny,
            EventCode::OK,
        );
        bare.ts_ms = -1;
        for e in [event(), full, bare] {
            assert_eq!(
                String::from_utf8(canonical(&e)).unwrap(),
                String::from_utf8(by_map(&e)).unwrap()
            );
        }
    }

    const KNOWN_LEAF: &str = "c5b69f953082b1b7940e5f1213fac0d52b751580d762eb655358fb135f0daeab";

    #[test]
    fn every_field_changes_the_leaf() {
        let base = leaf_hash(&event());
        type Change = Box<dyn Fn(&mut LedgerEvent)>;
        let changes: Vec<Change> = vec![
            Box::new(|e| e.id.push('0')),
            Box::new(|e| e.ts.push(' ')),
            Box::new(|e| e.ts_ms += 1),
            Box::new(|e| e.kind = EventKind::Authority),
            Box::new(|e| e.principal_id = Some("agent-2".into())),
            Box::new(|e| e.mode = Mode::Proxy),
            Box::new(|e| e.provider = None),
            Box::new(|e| e.resource = Some("embeddings".into())),
            Box::new(|e| e.action = Some("x".into())),
            Box::new(|e| e.method = Some("GET".into())),
            Box::new(|e| e.url = Some("/".into())),
            Box::new(|e| e.decision = Decision::Deny),
            Box::new(|e| e.code = EventCode::from(crate::error::Code::BudgetExceeded)),
            Box::new(|e| e.status = Some(201)),
            Box::new(|e| e.request_bytes = 1),
            Box::new(|e| e.response_bytes = 1),
            Box::new(|e| e.duration_ms = 1),
            Box::new(|e| e.duration_us = 1),
            Box::new(|e| e.model = Some("m".into())),
            Box::new(|e| e.input_tokens = Some(13)),
            Box::new(|e| e.output_tokens = Some(0)),
            Box::new(|e| e.cached_input_tokens = Some(0)),
            Box::new(|e| e.usage = Some(crate::usage::UsageCode::Missing)),
            Box::new(|e| e.detail = None),
            Box::new(|e| e.mandate_id = Some("m-1".into())),
            Box::new(|e| e.cost = Some(crate::money::parse_amount("0.00125").unwrap())),
            Box::new(|e| e.currency = Some("EUR".into())),
            Box::new(|e| e.cost_basis = Some(CostBasis::Reservation)),
            Box::new(|e| e.reserved = Some(crate::money::parse_amount("0").unwrap())),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut e = event();
            change(&mut e);
            assert_ne!(leaf_hash(&e), base, "change {i} left the leaf as it was");
        }
    }
}
