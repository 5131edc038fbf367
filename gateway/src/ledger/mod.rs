//! The ledger: one event per forwarded call or denial. The data path emits
//! events into an [`EventSink`] and never waits on the database; the
//! embedded writer batches them into the workspace database.

mod writer;

use serde::Serialize;

pub use writer::{EmbeddedSink, LedgerWriter};

/// How a call entered the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `CONNECT` tunnel (HTTPS_PROXY).
    Proxy,
    /// `/<provider>/…` with a bearer token.
    BaseUrl,
    /// Absolute-form `http://` request (HTTP_PROXY).
    HttpProxy,
    /// An operator's command (authority events: issued, delegated, revoked).
    Cli,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::BaseUrl => "base_url",
            Self::HttpProxy => "http_proxy",
            Self::Cli => "cli",
        }
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEvent {
    pub id: String,
    pub ts: String,
    pub ts_ms: i64,
    pub kind: String,
    pub principal_id: Option<String>,
    pub mode: Mode,
    pub provider: Option<String>,
    pub resource: Option<String>,
    pub action: Option<String>,
    pub method: Option<String>,
    pub url: Option<String>,
    /// `allow`, `deny` or `error` (allowed, but the provider failed).
    pub decision: String,
    /// `ok` or the stable error code.
    pub code: String,
    pub status: Option<u16>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub duration_ms: u64,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_input_tokens: Option<u64>,
    /// What the usage parser concluded (`found`, `missing`, `partial`, …).
    pub usage: Option<String>,
    pub detail: Option<String>,
    /// The mandate the event concerns: the one a call went ahead under or
    /// was refused for, or the one issued, delegated or revoked.
    pub mandate_id: Option<String>,
    /// What the call cost (exact decimal), in `currency`.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub cost: Option<crate::money::Decimal>,
    pub currency: Option<String>,
    /// How `cost` was arrived at: `usage`, `reservation`, `request` or `free`.
    pub cost_basis: Option<String>,
    /// The worst case reserved before forwarding.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub reserved: Option<crate::money::Decimal>,
}

impl LedgerEvent {
    /// A new event stamped now, with a time-ordered id.
    pub fn new(kind: &str, mode: Mode, decision: &str, code: &str) -> Self {
        let now = jiff::Timestamp::now();
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            ts: now.to_string(),
            ts_ms: now.as_millisecond(),
            kind: kind.to_string(),
            principal_id: None,
            mode,
            provider: None,
            resource: None,
            action: None,
            method: None,
            url: None,
            decision: decision.to_string(),
            code: code.to_string(),
            status: None,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 0,
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

/// Where the data path puts ledger events. Must not block: implementations
/// queue and write elsewhere, and must not lose an accepted event.
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, event: LedgerEvent);

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
