//! The wire format of a ledger event on `caracal.metering.events`: JSON,
//! one envelope per message, keyed by principal.
//!
//! ```json
//! {"schema": 1, "event": {"id": "0192…", "ts": "2026-…Z", "ts_ms": 1790000000000,
//!   "kind": "call", "principal_id": "…", "mode": "base_url", …,
//!   "cost": "0.0123", "currency": "USD", "cost_basis": "usage", "reserved": "0.05"}}
//! ```
//!
//! - `schema` is the version of the envelope and of the event inside it.
//!   Version 1's event is exactly the serialised [`LedgerEvent`]: every
//!   field present (absent values are `null`), enums as their wire
//!   strings, money as decimal strings (never floats), `id` a UUIDv7.
//! - A reader refuses a version it does not know, and (within version 1)
//!   any field it does not know: the ledger hashes what it stores, so a
//!   field silently dropped would be a change nobody could see. Adding a
//!   field therefore means a new version, which writers start producing
//!   only once every reader reads it.
//! - The message key is the principal id, so one principal's events stay
//!   in one partition, in emit order; events without a principal share
//!   [`NO_PRINCIPAL_KEY`] (the empty key: principal ids are never empty).
//!
//! Decoding never panics, whatever the bytes: it answers a typed
//! [`DecodeError`] whose [`DecodeError::reason`] is what the ledger
//! writer's dead-letter queue records.

use serde::{Deserialize, Serialize};

use crate::ledger::{
    CostBasis, Decision, EventCode, EventKind, LedgerEvent, Mode, UsageCode, MAX_TEXT,
};
use crate::money::Decimal;

/// The version this build writes, and the only one it reads.
pub const SCHEMA_VERSION: u64 = 1;

/// The largest message a reader accepts. An event's two free-text fields
/// are each cut to [`MAX_TEXT`] bytes, so real events are far smaller.
pub const MAX_MESSAGE: usize = 16 * MAX_TEXT;

/// The key of events that name no principal.
pub const NO_PRINCIPAL_KEY: &[u8] = b"";

/// Why a message is not a ledger event this build can read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes is larger than the {MAX_MESSAGE} bytes a ledger event can be")]
    TooLarge(usize),
    #[error("not a ledger event message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message has no schema version")]
    NoVersion,
    #[error("schema version {0} is unknown to this build (it reads version {SCHEMA_VERSION})")]
    UnknownVersion(u64),
    #[error("event id {0:?} is not a UUIDv7")]
    BadId(String),
    #[error("event {id}: field {field}: {problem}")]
    BadField {
        id: String,
        field: &'static str,
        problem: String,
    },
}

impl DecodeError {
    /// A stable code for the reason (what the dead-letter queue records).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge(_) => "too_large",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::NoVersion => "no_schema_version",
            DecodeError::UnknownVersion(_) => "unknown_schema_version",
            DecodeError::BadId(_) => "bad_event_id",
            DecodeError::BadField { .. } => "bad_field",
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    schema: u64,
    event: &'a LedgerEvent,
}

/// The message value of `event`.
pub fn encode(event: &LedgerEvent) -> Vec<u8> {
    let envelope = Envelope {
        schema: SCHEMA_VERSION,
        event,
    };
    // Strings, integers, decimal strings and unit enums under string keys:
    // nothing in a ledger event can fail to serialise.
    serde_json::to_vec(&envelope).expect("a ledger event always serialises")
}

/// The message key of `event`: its principal id, or [`NO_PRINCIPAL_KEY`].
pub fn key(event: &LedgerEvent) -> &[u8] {
    event
        .principal_id
        .as_deref()
        .map_or(NO_PRINCIPAL_KEY, str::as_bytes)
}

/// The event in a message value written by [`encode`] (of this version).
pub fn decode(bytes: &[u8]) -> Result<LedgerEvent, DecodeError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    // The version first, so a newer writer's message is refused as such
    // rather than as whatever its new fields look like to this reader.
    #[derive(Deserialize)]
    struct Probe {
        schema: Option<u64>,
    }
    let probe: Probe = serde_json::from_slice(bytes)?;
    match probe.schema {
        None => return Err(DecodeError::NoVersion),
        Some(SCHEMA_VERSION) => {}
        Some(v) => return Err(DecodeError::UnknownVersion(v)),
    }
    let envelope: EnvelopeV1 = serde_json::from_slice(bytes)?;
    envelope.event.into_event()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeV1 {
    #[allow(dead_code)]
    schema: u64,
    event: EventV1,
}

/// Version 1's event as read: [`LedgerEvent`]'s fields, with the ones that
/// need checking beyond their JSON type as strings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventV1 {
    id: String,
    ts: String,
    ts_ms: i64,
    kind: EventKind,
    principal_id: Option<String>,
    mode: Mode,
    provider: Option<String>,
    resource: Option<String>,
    action: Option<String>,
    method: Option<String>,
    url: Option<String>,
    decision: Decision,
    code: String,
    status: Option<u16>,
    request_bytes: u64,
    response_bytes: u64,
    duration_ms: u64,
    duration_us: u64,
    model: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cached_input_tokens: Option<u64>,
    usage: Option<UsageCode>,
    detail: Option<String>,
    mandate_id: Option<String>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    cost: Option<Decimal>,
    currency: Option<String>,
    cost_basis: Option<CostBasis>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    reserved: Option<Decimal>,
}

impl EventV1 {
    fn into_event(self) -> Result<LedgerEvent, DecodeError> {
        let is_v7 = uuid::Uuid::try_parse(&self.id)
            .is_ok_and(|u| u.get_version() == Some(uuid::Version::SortRand));
        if !is_v7 {
            return Err(DecodeError::BadId(self.id.chars().take(64).collect()));
        }
        let bad = |field: &'static str, problem: String| DecodeError::BadField {
            id: self.id.clone(),
            field,
            problem,
        };
        if let Err(e) = self.ts.parse::<jiff::Timestamp>() {
            return Err(bad("ts", e.to_string()));
        }
        let code = match self.code.parse::<EventCode>() {
            Ok(code) => code,
            Err(e) => return Err(bad("code", e.to_string())),
        };
        Ok(LedgerEvent {
            id: self.id,
            ts: self.ts,
            ts_ms: self.ts_ms,
            kind: self.kind,
            principal_id: self.principal_id,
            mode: self.mode,
            provider: self.provider,
            resource: self.resource,
            action: self.action,
            method: self.method,
            url: self.url,
            decision: self.decision,
            code,
            status: self.status,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            duration_ms: self.duration_ms,
            duration_us: self.duration_us,
            model: self.model,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            usage: self.usage,
            detail: self.detail,
            mandate_id: self.mandate_id,
            cost: self.cost,
            currency: self.currency,
            cost_basis: self.cost_basis,
            reserved: self.reserved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn full() -> LedgerEvent {
        let mut e = LedgerEvent::new(EventKind::Call, Mode::Proxy, Decision::Allow, EventCode::OK);
        e.principal_id = Some("agent-1".into());
        e.provider = Some("openai".into());
        e.resource = Some("gpt-4o".into());
        e.action = Some("chat".into());
        e.method = Some("POST".into());
        e.url = Some("https://api.openai.com/v1/chat/completions".into());
        e.status = Some(200);
        e.request_bytes = 1234;
        e.response_bytes = u64::MAX;
        e.duration_ms = 12;
        e.duration_us = 12_345;
        e.model = Some("gpt-4o-2024-08-06".into());
        e.input_tokens = Some(100);
        e.output_tokens = Some(20);
        e.cached_input_tokens = Some(0);
        e.usage = Some(UsageCode::Found);
        e.detail = Some("naïve – détail".into());
        e.mandate_id = Some("m-1".into());
        e.cost = Some(Decimal::new(123_456_789, 12));
        e.currency = Some("USD".into());
        e.cost_basis = Some(CostBasis::Usage);
        e.reserved = Some(Decimal::new(15, 1));
        e
    }

    /// The encoded value of `full()` with its event as a JSON object.
    fn full_json() -> serde_json::Value {
        serde_json::from_slice(&encode(&full())).unwrap()
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = full_json();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn events_round_trip_exactly() {
        let e = full();
        assert_eq!(decode(&encode(&e)).unwrap(), e);
        let mut bare = LedgerEvent::new(
            EventKind::Authority,
            Mode::BaseUrl,
            Decision::Deny,
            Code::NotReady,
        );
        bare.detail = Some(String::new());
        assert_eq!(decode(&encode(&bare)).unwrap(), bare);
        assert_eq!(key(&bare), NO_PRINCIPAL_KEY);
        assert_eq!(key(&e), b"agent-1");
    }

    #[test]
    fn the_envelope_is_versioned_and_money_is_a_string() {
        let v = full_json();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["event"]["cost"], "0.000123456789");
        assert_eq!(v["event"]["code"], "ok");
        assert_eq!(v["event"]["kind"], "call");
        assert!(v["event"]["input_tokens"].is_u64());
    }

    #[test]
    fn an_unknown_or_missing_version_is_refused_as_such() {
        let newer = with(|v| {
            v["schema"] = 2.into();
            v["event"]["new_field"] = "x".into();
        });
        assert!(matches!(
            decode(&newer),
            Err(DecodeError::UnknownVersion(2))
        ));
        let none = with(|v| {
            v.as_object_mut().unwrap().remove("schema");
        });
        assert!(matches!(decode(&none), Err(DecodeError::NoVersion)));
        for bad in [r#""1""#, "-1", "1.5", "null", "18446744073709551616"] {
            let msg = format!(r#"{{"schema": {bad}, "event": {{}}}}"#);
            let err = decode(msg.as_bytes()).unwrap_err();
            assert!(
                matches!(err, DecodeError::Malformed(_) | DecodeError::NoVersion),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn malformed_and_hostile_inputs_are_typed_errors() {
        let full = encode(&full());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("not json", b"hello".to_vec()),
            ("binary", vec![0xff, 0xfe, 0x00, 0x01]),
            ("array", b"[1,2,3]".to_vec()),
            ("no event", br#"{"schema":1}"#.to_vec()),
            (
                "event not an object",
                br#"{"schema":1,"event":"x"}"#.to_vec(),
            ),
            ("deep", {
                let mut s = r#"{"schema":1,"event":"#.to_string();
                s.push_str(&"[".repeat(10_000));
                s.into_bytes()
            }),
            (
                "huge number",
                with(|v| v["event"]["request_bytes"] = serde_json::json!(1e300)),
            ),
            (
                "negative size",
                with(|v| v["event"]["response_bytes"] = (-1).into()),
            ),
            (
                "overflowing integer",
                String::from_utf8(full.clone())
                    .unwrap()
                    .replacen(
                        "\"request_bytes\":1234",
                        "\"request_bytes\":99999999999999999999999",
                        1,
                    )
                    .into_bytes(),
            ),
            (
                "status out of range",
                with(|v| v["event"]["status"] = 70_000.into()),
            ),
            (
                "wrong type",
                with(|v| v["event"]["ts_ms"] = "yesterday".into()),
            ),
            (
                "money as a float",
                with(|v| v["event"]["cost"] = serde_json::json!(0.1)),
            ),
            (
                "money too large",
                with(|v| v["event"]["cost"] = "1e999".into()),
            ),
            (
                "unknown enum",
                with(|v| v["event"]["decision"] = "maybe".into()),
            ),
            ("unknown field", with(|v| v["event"]["extra"] = true.into())),
            ("unknown envelope field", with(|v| v["extra"] = 1.into())),
            (
                "missing id",
                with(|v| {
                    v["event"].as_object_mut().unwrap().remove("id");
                }),
            ),
            (
                "null id",
                with(|v| v["event"]["id"] = serde_json::Value::Null),
            ),
        ];
        for (name, bytes) in cases {
            match decode(&bytes) {
                Err(DecodeError::Malformed(_)) => {}
                other => panic!("{name}: {other:?}"),
            }
        }
        for cut in [1, full.len() / 2, full.len() - 1] {
            assert!(
                matches!(decode(&full[..cut]), Err(DecodeError::Malformed(_))),
                "truncated at {cut}"
            );
        }
    }

    #[test]
    fn ids_times_and_codes_are_checked() {
        let v4 = with(|v| v["event"]["id"] = uuid::Uuid::new_v4().to_string().into());
        assert!(matches!(decode(&v4), Err(DecodeError::BadId(_))));
        let junk = with(|v| v["event"]["id"] = "x".repeat(5000).into());
        match decode(&junk) {
            Err(e @ DecodeError::BadId(_)) => assert!(e.to_string().len() < 200),
            other => panic!("{other:?}"),
        }
        let ts = with(|v| v["event"]["ts"] = "not a time".into());
        assert!(matches!(
            decode(&ts),
            Err(DecodeError::BadField { field: "ts", .. })
        ));
        let code = with(|v| v["event"]["code"] = "rm_rf".into());
        let err = decode(&code).unwrap_err();
        assert!(matches!(err, DecodeError::BadField { field: "code", .. }));
        assert_eq!(err.reason(), "bad_field");
        let refused = with(|v| v["event"]["code"] = "not_ready".into());
        assert_eq!(decode(&refused).unwrap().code, Code::NotReady);
    }

    #[test]
    fn oversized_messages_are_refused_before_parsing() {
        let big = vec![b' '; MAX_MESSAGE + 1];
        assert!(matches!(decode(&big), Err(DecodeError::TooLarge(_))));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mangled_events_never_panic(cut in 0usize..2000, byte in proptest::num::u8::ANY) {
            let mut bytes = encode(&full());
            let at = cut % bytes.len();
            bytes[at] = byte;
            let _ = decode(&bytes);
        }
    }
}
