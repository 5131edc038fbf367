//! The ledger: one event per forwarded call or denial. The data path emits
//! events into an [`EventSink`] and never waits on the database; the
//! embedded writer batches them into the workspace database.

mod writer;

use std::fmt;

use serde::Serialize;

use crate::error::Code;

pub use writer::{EmbeddedSink, LedgerWriter};

pub use crate::budget::charge::CostBasis;
pub use crate::model::{Decision, Mode};
pub use crate::usage::UsageCode;

crate::wire_enum! {
    /// What a ledger event is about.
    pub enum EventKind as "event kind" {
        /// A call through the gateway (forwarded or refused).
        Call => "call",
        /// A mandate issued, delegated, revoked, or refused on a call.
        Authority => "authority",
    }
}

crate::wire_enum! {
    /// The codes of events that are not refusals.
    pub enum Outcome as "event code" {
        /// A call forwarded and answered.
        Ok => "ok",
        /// A mandate issued under a policy.
        MandateIssued => "mandate_issued",
        /// A mandate delegated from another.
        MandateDelegated => "mandate_delegated",
    }
}

/// The ledger's `code`: `ok` (or what an authority change did), or the
/// stable error code of a refusal or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventCode {
    Done(Outcome),
    Refused(Code),
}

impl EventCode {
    pub const OK: EventCode = EventCode::Done(Outcome::Ok);

    /// The stable wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventCode::Done(o) => o.as_str(),
            EventCode::Refused(c) => c.as_str(),
        }
    }
}

impl From<Code> for EventCode {
    fn from(c: Code) -> Self {
        EventCode::Refused(c)
    }
}

impl From<Outcome> for EventCode {
    fn from(o: Outcome) -> Self {
        EventCode::Done(o)
    }
}

impl std::str::FromStr for EventCode {
    type Err = crate::wire::UnknownWire;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<Outcome>() {
            Ok(o) => Ok(EventCode::Done(o)),
            Err(_) => s.parse::<Code>().map(EventCode::Refused),
        }
    }
}

impl fmt::Display for EventCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<Code> for EventCode {
    fn eq(&self, other: &Code) -> bool {
        *self == EventCode::Refused(*other)
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEvent {
    pub id: String,
    pub ts: String,
    pub ts_ms: i64,
    pub kind: EventKind,
    pub principal_id: Option<String>,
    pub mode: Mode,
    pub provider: Option<String>,
    pub resource: Option<String>,
    pub action: Option<String>,
    pub method: Option<String>,
    pub url: Option<String>,
    pub decision: Decision,
    pub code: EventCode,
    pub status: Option<u16>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Whole milliseconds (kept for compatibility; see `duration_us`).
    pub duration_ms: u64,
    /// Microseconds from the request to the end of its response (or its
    /// refusal).
    pub duration_us: u64,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_input_tokens: Option<u64>,
    /// What the usage parser concluded (`found`, `missing`, `partial`, …).
    pub usage: Option<UsageCode>,
    pub detail: Option<String>,
    /// The mandate the event concerns: the one a call went ahead under or
    /// was refused for, or the one issued, delegated or revoked.
    pub mandate_id: Option<String>,
    /// What the call cost (exact decimal), in `currency`.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub cost: Option<crate::money::Decimal>,
    pub currency: Option<String>,
    /// How `cost` was arrived at.
    pub cost_basis: Option<CostBasis>,
    /// The worst case reserved before forwarding.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub reserved: Option<crate::money::Decimal>,
}

impl LedgerEvent {
    /// A new event stamped now, with a time-ordered id.
    pub fn new(
        kind: EventKind,
        mode: Mode,
        decision: Decision,
        code: impl Into<EventCode>,
    ) -> Self {
        let now = jiff::Timestamp::now();
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            ts: now.to_string(),
            ts_ms: now.as_millisecond(),
            kind,
            principal_id: None,
            mode,
            provider: None,
            resource: None,
            action: None,
            method: None,
            url: None,
            decision,
            code: code.into(),
            status: None,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 0,
            duration_us: 0,
            model: None,
            input_tokens: None,
            output_tokens: None,
            cached_input_tokens: None,
            usage: None,
            detail: None,
            mandate_id: None,
            cost: None,
            currency: None,
            cost_basis: None,
            reserved: None,
        }
    }
}

/// Whether a sink may drop an event to protect itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// A forwarded call (the provider may bill for it) or an authority
    /// change: never dropped.
    Keep,
    /// The refusal of a call that reached no provider (it cost nobody
    /// anything): dropped, and counted, past the sink's hard limit, so a
    /// flood of refused requests during an outage cannot exhaust memory.
    Shed,
}

/// Where the data path puts ledger events (the event-sink seam). Must not
/// block: implementations queue and write elsewhere, and must not lose an
/// accepted event. Every implementation passes the conformance suite in
/// `crate::conformance::event_sink`.
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, event: LedgerEvent, retention: Retention);

    /// Whether new calls may be forwarded: false when the sink cannot
    /// promise to record them (writer failing, backlog too long). The
    /// data path then refuses with `not_ready`.
    fn accepting(&self) -> bool;
}

/// Longest `url` or `detail` kept in a ledger row (the rest is cut, marked
/// with `…`), so hostile requests cannot make rows arbitrarily large.
pub const MAX_TEXT: usize = 2048;

/// Cuts `s` to at most [`MAX_TEXT`] bytes on a character boundary.
pub fn bounded(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT - '…'.len_utf8();
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(bounded("short".into()), "short");
        let cut = bounded("é".repeat(3000));
        assert!(cut.len() <= MAX_TEXT && cut.ends_with('…'));
        let exact = "a".repeat(MAX_TEXT);
        assert_eq!(bounded(exact.clone()), exact);
    }
}
