//! Token usage metering: reads the token usage out of a provider response
//! while it streams through to the agent, holding a bounded number of bytes.
//!
//! Understands OpenAI (chat completions, embeddings, Responses API) and
//! Anthropic (Messages) bodies, as plain JSON and as server-sent events, and
//! reports one [`UsageOutcome`] per response.

mod extract;
mod fields;
pub mod request;
mod scan;
mod sse;
mod tally;
#[cfg(test)]
mod tests;

use std::fmt;

use fields::Fields;
use sse::Sse;
use tally::Tally;

/// Which provider's shapes to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    /// Try both shapes.
    Unknown,
}

impl Dialect {
    fn openai(self) -> bool {
        self != Dialect::Anthropic
    }

    fn anthropic(self) -> bool {
        self != Dialect::OpenAi
    }
}

/// How a response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Sse,
    Other,
}

impl BodyKind {
    /// `application/json` and `application/*+json` are `Json`,
    /// `text/event-stream` is `Sse`, ignoring case and parameters; anything
    /// else, or no header, is `Other`.
    pub fn from_content_type(ct: Option<&str>) -> Self {
        let essence = ct
            .and_then(|ct| ct.split(';').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.split_once('/') {
            Some(("application", "json")) => BodyKind::Json,
            Some(("application", sub)) if sub.ends_with("+json") => BodyKind::Json,
            Some(("text", "event-stream")) => BodyKind::Sse,
            _ => BodyKind::Other,
        }
    }
}

/// Token counts of one response, in one meaning whatever the provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// All input tokens, including those read from or written to the prompt
    /// cache (Anthropic reports those apart; they are added in here).
    pub input_tokens: u64,
    /// Generated tokens, reasoning included.
    pub output_tokens: u64,
    /// The part of `input_tokens` read from the prompt cache.
    pub cached_input_tokens: u64,
    /// The part of `input_tokens` written to the prompt cache.
    pub cache_write_tokens: u64,
    /// The part of `cache_write_tokens` written for an hour (Anthropic's
    /// `ttl: "1h"`), billed at twice the input price.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_write_1h_tokens: u64,
    /// Uses of provider-run tools by tool (`web_search`), when the response
    /// reports them (Anthropic's `server_tool_use`; the `*_call` items of a
    /// Responses API `output`); `None` when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_tool_uses: Option<std::collections::BTreeMap<String, u64>>,
    /// The model the response names, if it names one.
    pub model: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What could be learnt about a response's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageOutcome {
    /// Complete usage.
    Found(Usage),
    /// Some counts are known, others not; unknown counts are 0 and the
    /// reason names them. No count is ever estimated.
    Partial(Usage, String),
    /// The body carried no usage at all.
    Missing,
    /// Usage present but unreadable (not an object, a count that is not a
    /// non-negative integer), or a JSON body that is not valid JSON.
    Malformed(String),
    /// Usage could not be read because the body (JSON) or an event (SSE)
    /// exceeded the observer's cap.
    TooLarge,
    /// The body is neither JSON nor SSE.
    NotApplicable,
}

crate::wire_enum! {
    /// The kind of a [`UsageOutcome`], as the ledger's `usage` records it.
    pub enum UsageCode as "usage outcome" {
        Found => "found",
        Partial => "partial",
        Missing => "missing",
        Malformed => "malformed",
        TooLarge => "too_large",
        NotApplicable => "not_applicable",
    }
}

impl UsageOutcome {
    /// Its stable code.
    pub fn code(&self) -> UsageCode {
        match self {
            UsageOutcome::Found(_) => UsageCode::Found,
            UsageOutcome::Partial(..) => UsageCode::Partial,
            UsageOutcome::Missing => UsageCode::Missing,
            UsageOutcome::Malformed(_) => UsageCode::Malformed,
            UsageOutcome::TooLarge => UsageCode::TooLarge,
            UsageOutcome::NotApplicable => UsageCode::NotApplicable,
        }
    }

    /// The counts, complete or partial.
    pub fn usage(&self) -> Option<&Usage> {
        match self {
            UsageOutcome::Found(u) | UsageOutcome::Partial(u, _) => Some(u),
            _ => None,
        }
    }
}

/// Incremental observer, fed every chunk of one response body in order.
///
/// Holds at most `cap` bytes of body per buffer: for JSON a copy of the body
/// (beyond `cap` it is dropped and the outcome is `TooLarge`); for SSE the
/// current incomplete line plus the current event's data (a longer line or
/// event is skipped, and if no usage is found the outcome is `TooLarge`). The
/// cap must cover the largest usage-bearing event: the Responses API's
/// `response.completed` repeats the whole output.
pub struct UsageObserver {
    dialect: Dialect,
    cap: usize,
    state: State,
}

impl fmt::Debug for UsageObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageObserver")
            .field("dialect", &self.dialect)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

enum State {
    Json { buf: Vec<u8>, overflow: bool },
    Sse(Box<Sse>),
    Other,
}

impl UsageObserver {
    /// An observer for one response body; `cap` bounds what it holds.
    pub fn new(kind: BodyKind, dialect: Dialect, cap: usize) -> Self {
        let state = match kind {
            BodyKind::Json => State::Json {
                buf: Vec::new(),
                overflow: false,
            },
            BodyKind::Sse => State::Sse(Box::default()),
            BodyKind::Other => State::Other,
        };
        UsageObserver {
            dialect,
            cap,
            state,
        }
    }

    /// Takes the next chunk; split points may fall anywhere.
    pub fn observe(&mut self, chunk: &[u8]) {
        match &mut self.state {
            State::Json { overflow: true, .. } | State::Other => {}
            State::Json { buf, overflow } => {
                if !push_within(buf, chunk, self.cap) {
                    *buf = Vec::new();
                    *overflow = true;
                }
            }
            State::Sse(sse) => sse.observe(chunk, self.cap, self.dialect),
        }
    }

    /// The best knowledge once the body ended (`complete`) or was cut off.
    /// A cut-off SSE stream drops its unfinished line and event; a complete
    /// one still dispatches a final event that lacks its blank line.
    pub fn finish(self, complete: bool) -> UsageOutcome {
        match self.state {
            State::Other => UsageOutcome::NotApplicable,
            State::Json { overflow: true, .. } => UsageOutcome::TooLarge,
            State::Json { buf, .. } => json_outcome(&buf, complete, self.dialect),
            State::Sse(mut sse) => {
                if complete {
                    if !sse.line.is_empty() || sse.line_overflow {
                        sse.end_line(self.cap, self.dialect);
                    }
                    sse.dispatch(self.dialect);
                }
                sse.tally.outcome(complete)
            }
        }
    }
}

/// Appends `bytes` unless `buf` would exceed `cap`; capacity stays within `cap`.
fn push_within(buf: &mut Vec<u8>, bytes: &[u8], cap: usize) -> bool {
    let Some(need) = buf.len().checked_add(bytes.len()).filter(|&n| n <= cap) else {
        return false;
    };
    if need > buf.capacity() {
        buf.reserve_exact(need.max(buf.capacity().saturating_mul(2)).min(cap) - buf.len());
    }
    buf.extend_from_slice(bytes);
    true
}

fn json_outcome(body: &[u8], complete: bool, dialect: Dialect) -> UsageOutcome {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.trim_ascii().is_empty() {
        return UsageOutcome::Missing;
    }
    match serde_json::from_slice::<Fields>(body) {
        Ok(fields) => {
            let mut tally = Tally::default();
            if tally.merge(fields.usage.as_ref(), dialect) && dialect.openai() {
                tally.tool_calls(fields.tool_calls);
            }
            tally.model = fields.model;
            tally.outcome(complete)
        }
        Err(_) if !complete => {
            UsageOutcome::Malformed("body cut off before its JSON was complete".into())
        }
        Err(e) => UsageOutcome::Malformed(format!("body is not valid JSON: {e}")),
    }
}
