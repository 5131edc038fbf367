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

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ledger::LedgerEvent;

/// The version of the encoding, the `v` member of every leaf.
pub const VERSION: u64 = 1;

fn text(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn count(v: Option<u64>) -> Value {
    v.map_or(Value::Null, Value::from)
}

/// The canonical bytes of `e` (see the module's documentation).
pub fn canonical(e: &LedgerEvent) -> Vec<u8> {
    let mut m: BTreeMap<&str, Value> = BTreeMap::new();
    m.insert("v", Value::from(VERSION));
    m.insert("id", Value::String(e.id.clone()));
    m.insert("ts", Value::String(e.ts.clone()));
    m.insert("ts_ms", Value::from(e.ts_ms));
    m.insert("kind", Value::String(e.kind.as_str().into()));
    m.insert("principal_id", text(&e.principal_id));
    m.insert("mode", Value::String(e.mode.as_str().into()));
    m.insert("provider", text(&e.provider));
    m.insert("resource", text(&e.resource));
    m.insert("action", text(&e.action));
    m.insert("method", text(&e.method));
    m.insert("url", text(&e.url));
    m.insert("decision", Value::String(e.decision.as_str().into()));
    m.insert("code", Value::String(e.code.as_str().into()));
    m.insert("status", count(e.status.map(u64::from)));
    m.insert("request_bytes", Value::from(e.request_bytes));
    m.insert("response_bytes", Value::from(e.response_bytes));
    m.insert("duration_ms", Value::from(e.duration_ms));
    m.insert("duration_us", Value::from(e.duration_us));
    m.insert("model", text(&e.model));
    m.insert("input_tokens", count(e.input_tokens));
    m.insert("output_tokens", count(e.output_tokens));
    m.insert("cached_input_tokens", count(e.cached_input_tokens));
    m.insert(
        "usage",
        e.usage
            .map_or(Value::Null, |u| Value::String(u.as_str().into())),
    );
    m.insert("detail", text(&e.detail));
    m.insert("mandate_id", text(&e.mandate_id));
    m.insert("cost", text(&e.cost.map(|c| c.to_string())));
    m.insert("currency", text(&e.currency));
    m.insert(
        "cost_basis",
        e.cost_basis
            .map_or(Value::Null, |b| Value::String(b.as_str().into())),
    );
    m.insert("reserved", text(&e.reserved.map(|c| c.to_string())));
    serde_json::to_vec(&m).expect("a map of JSON values serialises")
}

/// The Merkle leaf hash of `e`: `SHA-256(0x00 ‖ canonical(e))`.
pub fn leaf_hash(e: &LedgerEvent) -> tlog_tiles::Hash {
    tlog_tiles::record_hash(&canonical(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{CostBasis, Decision, EventCode, EventKind, Mode};

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
