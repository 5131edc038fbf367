//! Token usage metering: reads the token usage out of a provider response
//! while it streams through to the agent, holding a bounded number of bytes.
//!
//! Understands OpenAI (chat completions, embeddings, Responses API) and
//! Anthropic (Messages) bodies, as plain JSON and as server-sent events, and
//! reports one [`UsageOutcome`] per response.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

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
    /// The model the response names, if it names one.
    pub model: Option<String>,
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

impl UsageOutcome {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            UsageOutcome::Found(_) => "found",
            UsageOutcome::Partial(..) => "partial",
            UsageOutcome::Missing => "missing",
            UsageOutcome::Malformed(_) => "malformed",
            UsageOutcome::TooLarge => "too_large",
            UsageOutcome::NotApplicable => "not_applicable",
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
            tally.merge(fields.usage.as_ref(), dialect);
            tally.model = fields.model;
            tally.outcome(complete)
        }
        Err(_) if !complete => {
            UsageOutcome::Malformed("body cut off before its JSON was complete".into())
        }
        Err(e) => UsageOutcome::Malformed(format!("body is not valid JSON: {e}")),
    }
}

/// SSE framing per the HTML standard, reduced to `event` and `data`.
#[derive(Default)]
struct Sse {
    line: Vec<u8>,
    /// The current line outgrew the cap; its rest is being discarded.
    line_overflow: bool,
    overflow_is_comment: bool,
    /// The last byte was CR, so a leading LF in the next chunk is its pair.
    after_cr: bool,
    past_first_line: bool,
    event: String,
    data: Vec<u8>,
    has_data: bool,
    /// Part of the current event was skipped for size; it is not dispatched.
    poisoned: bool,
    tally: Tally,
}

impl Sse {
    fn observe(&mut self, mut chunk: &[u8], cap: usize, dialect: Dialect) {
        loop {
            if std::mem::take(&mut self.after_cr) {
                chunk = chunk.strip_prefix(b"\n").unwrap_or(chunk);
            }
            let Some(i) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') else {
                break;
            };
            let (segment, rest) = chunk.split_at(i);
            self.push(segment, cap);
            self.end_line(cap, dialect);
            self.after_cr = rest.first() == Some(&b'\r');
            chunk = rest.get(1..).unwrap_or_default();
        }
        self.push(chunk, cap);
    }

    fn held(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len()
    }

    fn push(&mut self, bytes: &[u8], cap: usize) {
        if self.line_overflow || bytes.is_empty() {
            return;
        }
        let room = cap.saturating_sub(self.held() - self.line.len());
        if !push_within(&mut self.line, bytes, room) {
            self.overflow_is_comment = self.line.first().or(bytes.first()) == Some(&b':');
            self.line_overflow = true;
            self.line = Vec::new();
        }
    }

    fn end_line(&mut self, cap: usize, dialect: Dialect) {
        if std::mem::take(&mut self.line_overflow) {
            self.poisoned |= !self.overflow_is_comment;
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        self.line_done(&line, cap, dialect);
        line.clear();
        self.line = line;
    }

    fn line_done(&mut self, line: &[u8], cap: usize, dialect: Dialect) {
        let line = match std::mem::replace(&mut self.past_first_line, true) {
            false => line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line),
            true => line,
        };
        if line.is_empty() {
            return self.dispatch(dialect);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => line.split_at(i),
            None => (line, &b""[..]),
        };
        let value = value.get(1..).unwrap_or(value);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            b"data" if !self.poisoned => {
                let sep: &[u8] = if self.has_data { b"\n" } else { b"" };
                let room = cap.saturating_sub(self.event.len());
                if !(push_within(&mut self.data, sep, room)
                    && push_within(&mut self.data, value, room))
                {
                    self.poisoned = true;
                }
                self.has_data = true;
            }
            // A name that is not UTF-8 can match no known event.
            b"event" => self.event = String::from_utf8(value.to_vec()).unwrap_or_default(),
            _ => {}
        }
    }

    fn dispatch(&mut self, dialect: Dialect) {
        if std::mem::take(&mut self.poisoned) {
            self.tally.oversized = true;
        } else if self.has_data {
            self.tally.event(&self.event, &self.data, dialect);
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}

/// Counts as reported, before normalisation; later reports overwrite.
#[derive(Default)]
struct Tally {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    total: Option<u64>,
    /// Input was reported without cached tokens (Anthropic).
    cache_apart: bool,
    model: Option<String>,
    seen: bool,
    malformed: Option<String>,
    /// Anthropic `message_start` usage, `message_delta` usage, `message_stop`.
    started: bool,
    delta: bool,
    stopped: bool,
    error_event: bool,
    oversized: bool,
}

impl Tally {
    fn event(&mut self, event: &str, data: &[u8], dialect: Dialect) {
        // Not JSON (`[DONE]`, keep-alives): not usage.
        let Ok(f) = serde_json::from_slice::<Fields>(data) else {
            return;
        };
        match f.kind.as_deref().unwrap_or(event) {
            "message_start" if dialect.anthropic() => {
                let m = f.message.unwrap_or_default();
                self.started |= self.merge(m.usage.as_ref(), dialect);
                self.model = m.model.or(self.model.take());
            }
            "message_stop" if dialect.anthropic() => self.stopped = true,
            "error" => self.error_event = true,
            kind if kind.starts_with("response.") && dialect.openai() => {
                let r = f.response.unwrap_or_default();
                self.merge(r.usage.as_ref(), dialect);
                self.model = r.model.or(self.model.take());
            }
            kind => {
                self.delta |= self.merge(f.usage.as_ref(), dialect) && kind == "message_delta";
                self.model = f.model.or(self.model.take());
            }
        }
    }

    /// Takes one usage report; true when it carried counts.
    fn merge(&mut self, usage: Option<&Value>, dialect: Dialect) -> bool {
        match usage.map(|u| read_usage(u, dialect)) {
            None | Some(Ok(None)) => false,
            Some(Err(e)) => {
                self.malformed.get_or_insert(e);
                false
            }
            Some(Ok(Some(r))) => {
                self.input = r.input.or(self.input);
                self.output = r.output.or(self.output);
                self.cache_read = r.cache_read.or(self.cache_read);
                self.cache_write = r.cache_write.or(self.cache_write);
                self.total = r.total.or(self.total);
                self.cache_apart |= r.cache_apart;
                self.seen = true;
                true
            }
        }
    }

    fn outcome(self, complete: bool) -> UsageOutcome {
        if let Some(e) = self.malformed {
            return UsageOutcome::Malformed(e);
        }
        if !self.seen {
            return if self.oversized {
                UsageOutcome::TooLarge
            } else {
                UsageOutcome::Missing
            };
        }
        let (cache_read, cache_write) =
            (self.cache_read.unwrap_or(0), self.cache_write.unwrap_or(0));
        let mut input = self.input.unwrap_or(0);
        if self.cache_apart {
            input = input.saturating_add(cache_read).saturating_add(cache_write);
        }
        // Embeddings report no completion tokens: total == prompt is complete.
        let no_output = !self.cache_apart && self.input.is_some() && self.total == self.input;
        let reason = if self.input.is_none() {
            Some("input token count missing")
        } else if self.output.is_none() && !no_output {
            Some("output token count missing")
        } else if self.started && !self.delta && self.error_event {
            Some("error event before the final message_delta; output is a lower bound")
        } else if self.started && !self.delta {
            Some("no message_delta after message_start; output is a lower bound")
        } else if self.started && !self.stopped && !complete {
            Some("stream cut off before message_stop")
        } else {
            None
        };
        let usage = Usage {
            input_tokens: input,
            output_tokens: self.output.unwrap_or(0),
            cached_input_tokens: cache_read,
            cache_write_tokens: cache_write,
            model: self.model,
        };
        match (reason, complete) {
            (None, _) => UsageOutcome::Found(usage),
            (Some(r), true) => UsageOutcome::Partial(usage, r.into()),
            (Some(r), false) => UsageOutcome::Partial(usage, format!("{r} (body cut off)")),
        }
    }
}

#[derive(Default)]
struct Report {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    total: Option<u64>,
    cache_apart: bool,
}

/// Reads a usage object in the dialect's key names; `Ok(None)` for null.
fn read_usage(usage: &Value, dialect: Dialect) -> Result<Option<Report>, String> {
    let obj = match usage {
        Value::Null => return Ok(None),
        Value::Object(obj) => obj,
        _ => return Err("usage is not an object".into()),
    };
    let mut r = Report {
        input: count(obj, "input_tokens")?,
        output: count(obj, "output_tokens")?,
        ..Report::default()
    };
    if dialect.openai() {
        r.input = count(obj, "prompt_tokens")?.or(r.input);
        r.output = count(obj, "completion_tokens")?.or(r.output);
        r.total = count(obj, "total_tokens")?;
        r.cache_read =
            cached(obj, "prompt_tokens_details")?.or(cached(obj, "input_tokens_details")?);
    }
    if dialect.anthropic() {
        let read = count(obj, "cache_read_input_tokens")?;
        let write = count(obj, "cache_creation_input_tokens")?;
        r.cache_apart = dialect == Dialect::Anthropic || read.is_some() || write.is_some();
        if r.cache_apart {
            (r.cache_read, r.cache_write) = (read, write);
        }
    }
    if [r.input, r.output, r.cache_read, r.cache_write, r.total]
        .iter()
        .all(Option::is_none)
    {
        return Err("usage has no token counts".into());
    }
    Ok(Some(r))
}

fn count(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("usage.{key} is not a non-negative integer")),
    }
}

fn cached(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(details)) => {
            count(details, "cached_tokens").map_err(|e| format!("{key}.{e}"))
        }
        Some(_) => Err(format!("usage.{key} is not an object")),
    }
}

/// The few members of a JSON value the observer reads; everything else is
/// skipped without being kept, and a non-object reads as empty.
#[derive(Default)]
struct Fields {
    kind: Option<String>,
    model: Option<String>,
    usage: Option<Value>,
    message: Option<Box<Fields>>,
    response: Option<Box<Fields>>,
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldsVisitor)
    }
}

struct FieldsVisitor;

fn string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => f.kind = string(map.next_value()?),
                "model" => f.model = string(map.next_value()?),
                "usage" => f.usage = Some(map.next_value()?),
                "message" => f.message = Some(map.next_value()?),
                "response" => f.response = Some(map.next_value()?),
                _ => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(f)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fields, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Fields::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_unit<E>(self) -> Result<Fields, E> {
        Ok(Fields::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 64 * 1024;

    fn run(
        kind: BodyKind,
        dialect: Dialect,
        cap: usize,
        chunks: &[&[u8]],
        complete: bool,
    ) -> UsageOutcome {
        let mut obs = UsageObserver::new(kind, dialect, cap);
        chunks.iter().for_each(|c| obs.observe(c));
        obs.finish(complete)
    }

    /// Same outcome whole, split in two at every byte, and byte by byte.
    fn at_every_split(kind: BodyKind, dialect: Dialect, body: &str) -> UsageOutcome {
        let body = body.as_bytes();
        let whole = run(kind, dialect, CAP, &[body], true);
        for i in 0..=body.len() {
            let (a, b) = body.split_at(i);
            assert_eq!(
                run(kind, dialect, CAP, &[a, b], true),
                whole,
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(run(kind, dialect, CAP, &bytes, true), whole, "byte by byte");
        whole
    }

    fn usage(input: u64, output: u64, cached: u64, write: u64, model: &str) -> Usage {
        let model = Some(model.to_owned());
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cache_write_tokens: write,
            model,
        }
    }

    fn json(body: &str) -> UsageOutcome {
        run(
            BodyKind::Json,
            Dialect::Unknown,
            CAP,
            &[body.as_bytes()],
            true,
        )
    }

    fn sse(dialect: Dialect, body: &str, complete: bool) -> UsageOutcome {
        run(BodyKind::Sse, dialect, CAP, &[body.as_bytes()], complete)
    }

    const OPENAI_CHAT: &str = r#"{"id":"chatcmpl-9x","object":"chat.completion","created":1718000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Héllo — wörld ✓"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_1"}"#;
    const OPENAI_RESPONSES: &str = r#"{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1-2025-04-14","output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Ça va ✓"}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;
    const OPENAI_EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    const ANTHROPIC: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Bonjour ✓"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":6,"service_tier":"standard"}}"#;

    const OPENAI_SSE: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé ✓\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );
    const RESPONSES_SSE: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"model\":\"gpt-4.1\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi ✓\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"model\":\"gpt-4.1\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi ✓\"}]}],\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":48}}}\n\n",
    );
    const ANTHROPIC_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-haiku-20241022\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n";
    const ANTHROPIC_BODY: &str = concat!(
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Grüße ✓\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    const ANTHROPIC_DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n";
    const ANTHROPIC_STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    fn anthropic_sse() -> String {
        [
            ANTHROPIC_START,
            ANTHROPIC_BODY,
            ANTHROPIC_DELTA,
            ANTHROPIC_STOP,
        ]
        .concat()
    }

    #[test]
    fn json_bodies_at_every_split() {
        use Dialect::*;
        let chat = usage(19, 10, 3, 0, "gpt-4o-2024-08-06");
        let responses = usage(36, 87, 0, 0, "gpt-4.1-2025-04-14");
        let embeddings = usage(8, 0, 0, 0, "text-embedding-3-small");
        let anthropic = usage(2112, 6, 2000, 100, "claude-sonnet-4-20250514");
        for (dialect, body, want) in [
            (OpenAi, OPENAI_CHAT, &chat),
            (OpenAi, OPENAI_RESPONSES, &responses),
            (OpenAi, OPENAI_EMBEDDINGS, &embeddings),
            (Anthropic, ANTHROPIC, &anthropic),
        ] {
            for d in [dialect, Unknown] {
                assert_eq!(
                    at_every_split(BodyKind::Json, d, body),
                    UsageOutcome::Found(want.clone()),
                    "{d:?} {body}"
                );
            }
        }
    }

    #[test]
    fn sse_streams_at_every_split() {
        use Dialect::*;
        let anthropic = anthropic_sse();
        for (dialect, body, want) in [
            (OpenAi, OPENAI_SSE, usage(9, 2, 0, 0, "gpt-4o-mini")),
            (OpenAi, RESPONSES_SSE, usage(37, 11, 5, 0, "gpt-4.1")),
            (
                Anthropic,
                anthropic.as_str(),
                usage(35, 15, 10, 0, "claude-3-5-haiku-20241022"),
            ),
        ] {
            for d in [dialect, Unknown] {
                let found = UsageOutcome::Found(want.clone());
                assert_eq!(at_every_split(BodyKind::Sse, d, body), found, "{d:?}");
                let crlf = body.replace('\n', "\r\n");
                assert_eq!(at_every_split(BodyKind::Sse, d, &crlf), found, "{d:?} CRLF");
                assert_eq!(
                    at_every_split(BodyKind::Sse, d, &body.replace('\n', "\r")),
                    found,
                    "{d:?} CR"
                );
            }
        }
    }

    #[test]
    fn missing_and_null_usage() {
        assert_eq!(
            json(r#"{"error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            UsageOutcome::Missing
        );
        assert_eq!(json(r#"{"model":"m","usage":null}"#), UsageOutcome::Missing);
        assert_eq!(json("[1,2]"), UsageOutcome::Missing);
        assert_eq!(json(" \n"), UsageOutcome::Missing);
        // OpenAI stream without stream_options.include_usage: usage null everywhere.
        let (head, _) = OPENAI_SSE.split_at(OPENAI_SSE.find("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[]").unwrap());
        let no_usage = format!("{head}data: [DONE]\n\n");
        assert_eq!(
            at_every_split(BodyKind::Sse, Dialect::OpenAi, &no_usage),
            UsageOutcome::Missing
        );
        assert_eq!(
            sse(
                Dialect::Unknown,
                ": keep-alive\n\nevent: ping\ndata: {}\n\n",
                true
            ),
            UsageOutcome::Missing
        );
    }

    #[test]
    fn partial_usage_names_what_is_missing() {
        let only_input = json(r#"{"model":"gpt-4o","usage":{"prompt_tokens":5}}"#);
        assert_eq!(only_input.code(), "partial");
        assert_eq!(only_input.usage(), Some(&usage(5, 0, 0, 0, "gpt-4o")));
        assert!(matches!(&only_input, UsageOutcome::Partial(_, r) if r.contains("output")));
        let only_output = run(
            BodyKind::Json,
            Dialect::Anthropic,
            CAP,
            &[br#"{"usage":{"output_tokens":4}}"#],
            true,
        );
        assert!(
            matches!(&only_output, UsageOutcome::Partial(u, r) if u.output_tokens == 4 && r.contains("input"))
        );
        // Embeddings-like usage whose total is more than its prompt lacks an output count.
        assert_eq!(
            json(r#"{"usage":{"prompt_tokens":5,"total_tokens":9}}"#).code(),
            "partial"
        );
    }

    #[test]
    fn malformed_usage_and_invalid_json() {
        for body in [
            r#"{"usage":"12"}"#,
            r#"{"usage":[1]}"#,
            r#"{"usage":{}}"#,
            r#"{"usage":{"prompt_tokens":-1,"completion_tokens":2}}"#,
            r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":2}}"#,
            r#"{"usage":{"prompt_tokens":"10","completion_tokens":2}}"#,
            r#"{"usage":{"prompt_tokens":1e30,"completion_tokens":2}}"#,
            r#"{"usage":{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":7}}"#,
            r#"{"usage":{"input_tokens":1,"output_tokens":2,"cache_read_input_tokens":true}}"#,
            r#"{"usage":{"prompt_tokens":1,"#,
            "not json",
            "{} {}",
        ] {
            assert_eq!(json(body).code(), "malformed", "{body}");
        }
        let cut = run(
            BodyKind::Json,
            Dialect::OpenAi,
            CAP,
            &[&OPENAI_CHAT.as_bytes()[..40]],
            false,
        );
        assert!(matches!(cut, UsageOutcome::Malformed(r) if r.contains("cut off")));
        // A malformed report in a stream wins over good ones.
        let bad = format!("data: {{\"usage\":{{\"prompt_tokens\":-3}}}}\n\n{OPENAI_SSE}");
        assert_eq!(sse(Dialect::OpenAi, &bad, true).code(), "malformed");
        // Hostile nesting is skipped or an error, never a stack overflow.
        let deep =
            |open: &str, close: &str| format!("{}{}", open.repeat(100_000), close.repeat(100_000));
        let big = |body: &str, kind| run(kind, Dialect::Unknown, 1 << 21, &[body.as_bytes()], true);
        assert_eq!(big(&deep("[", "]"), BodyKind::Json), UsageOutcome::Missing);
        assert_eq!(
            big(&format!("{{\"usage\":{}}}", deep("[", "]")), BodyKind::Json).code(),
            "malformed"
        );
        assert_eq!(
            big(
                &format!(
                    "{}1{}",
                    "{\"message\":".repeat(100_000),
                    "}".repeat(100_000)
                ),
                BodyKind::Json
            )
            .code(),
            "malformed"
        );
        assert_eq!(
            big(
                &format!("data: {}", deep("{\"usage\":", "}")),
                BodyKind::Sse
            ),
            UsageOutcome::Missing
        );
    }

    #[test]
    fn json_larger_than_cap_is_too_large() {
        let n = OPENAI_CHAT.len();
        let found = run(
            BodyKind::Json,
            Dialect::OpenAi,
            n,
            &[OPENAI_CHAT.as_bytes()],
            true,
        );
        assert_eq!(found.code(), "found");
        let (a, b) = OPENAI_CHAT.as_bytes().split_at(n / 2);
        let mut obs = UsageObserver::new(BodyKind::Json, Dialect::OpenAi, n - 1);
        obs.observe(a);
        obs.observe(b);
        assert!(matches!(&obs.state, State::Json { buf, overflow: true } if buf.capacity() == 0));
        obs.observe(b);
        assert_eq!(obs.finish(true), UsageOutcome::TooLarge);
    }

    #[test]
    fn anthropic_stream_cut_off() {
        let partial = |body: &str, complete| match sse(Dialect::Anthropic, body, complete) {
            UsageOutcome::Partial(u, reason) => (u, reason),
            other => panic!("{other:?}"),
        };
        let model = "claude-3-5-haiku-20241022";
        let (u, reason) = partial(&[ANTHROPIC_START, ANTHROPIC_BODY].concat(), false);
        assert_eq!(u, usage(35, 1, 10, 0, model));
        assert!(
            reason.contains("lower bound") && reason.contains("cut off"),
            "{reason}"
        );
        let error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let (_, reason) = partial(&[ANTHROPIC_START, error].concat(), true);
        assert!(reason.contains("error event"), "{reason}");
        let (u, reason) = partial(&[ANTHROPIC_START, ANTHROPIC_DELTA].concat(), false);
        assert_eq!(u, usage(35, 15, 10, 0, model));
        assert!(reason.contains("message_stop"), "{reason}");
        // A complete stream whose message_stop is missing still has final counts.
        assert_eq!(
            sse(
                Dialect::Anthropic,
                &[ANTHROPIC_START, ANTHROPIC_DELTA].concat(),
                true
            )
            .code(),
            "found"
        );
        // Cut off before any usage, or mid-event: nothing invented.
        assert_eq!(
            sse(Dialect::Anthropic, &ANTHROPIC_START[..60], false),
            UsageOutcome::Missing
        );
        assert_eq!(sse(Dialect::Anthropic, "", false), UsageOutcome::Missing);
    }

    #[test]
    fn openai_stream_cut_after_usage_chunk_is_found() {
        let cut = OPENAI_SSE.trim_end_matches("data: [DONE]\n\n");
        assert_eq!(sse(Dialect::OpenAi, cut, false).code(), "found");
    }

    #[test]
    fn newer_anthropic_delta_carries_cumulative_input() {
        let delta = "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":30,\"cache_creation_input_tokens\":4,\"cache_read_input_tokens\":10,\"output_tokens\":20}}\n\n";
        let body = [ANTHROPIC_START, delta, ANTHROPIC_STOP].concat();
        assert_eq!(
            sse(Dialect::Unknown, &body, true),
            UsageOutcome::Found(usage(44, 20, 10, 4, "claude-3-5-haiku-20241022"))
        );
    }

    #[test]
    fn sse_framing_details() {
        let want = UsageOutcome::Found(usage(3, 4, 0, 0, "m"));
        // No space after the colon, comments, multi-line data joined by LF, a BOM, no final blank line.
        let body = "\u{feff}: hi\ndata:{\"model\":\"m\",\n: mid-event comment\ndata: \"usage\":{\"prompt_tokens\":3,\ndata:\"completion_tokens\":4}}";
        assert_eq!(at_every_split(BodyKind::Sse, Dialect::OpenAi, body), want);
        // That last event is only trusted when the body ended properly.
        assert_eq!(sse(Dialect::OpenAi, body, false), UsageOutcome::Missing);
        // `event:` names the event when the data has no `type`.
        let named = "event: message_delta\ndata: {\"usage\":{\"output_tokens\":7}}\n\n";
        assert_eq!(
            sse(
                Dialect::Anthropic,
                &[ANTHROPIC_START, named].concat(),
                false
            )
            .code(),
            "partial"
        );
        // Dialects only read their own shapes.
        assert_ne!(sse(Dialect::OpenAi, &anthropic_sse(), true).code(), "found");
        assert_eq!(
            sse(Dialect::Anthropic, RESPONSES_SSE, true),
            UsageOutcome::Missing
        );
    }

    #[test]
    fn sse_line_longer_than_cap_is_skipped_in_bounded_memory() {
        let cap = 512;
        let huge = "x".repeat(100_000);
        let body = format!(
            ": {huge}\ndata: {{\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1}},\"pad\":\"{huge}\"}}\n\n\
             data: {{\"a\":1}}\ndata: \"{huge}\"\n\nevent: {huge}\ndata: {{}}\n\n{OPENAI_SSE}"
        );
        let mut obs = UsageObserver::new(BodyKind::Sse, Dialect::OpenAi, cap);
        for chunk in body.as_bytes().chunks(1000) {
            obs.observe(chunk);
            let State::Sse(sse) = &obs.state else {
                unreachable!()
            };
            assert!(sse.held() <= cap && sse.line.capacity() <= cap && sse.data.capacity() <= cap);
        }
        assert_eq!(
            obs.finish(true),
            UsageOutcome::Found(usage(9, 2, 0, 0, "gpt-4o-mini"))
        );
        // When the only usage-bearing event was too large, say so.
        let only_big =
            format!("data: {{\"usage\":{{\"prompt_tokens\":1}},\"pad\":\"{huge}\"}}\n\n");
        assert_eq!(
            run(
                BodyKind::Sse,
                Dialect::OpenAi,
                cap,
                &[only_big.as_bytes()],
                true
            ),
            UsageOutcome::TooLarge
        );
        assert_eq!(
            run(
                BodyKind::Sse,
                Dialect::OpenAi,
                0,
                &[OPENAI_SSE.as_bytes()],
                true
            ),
            UsageOutcome::TooLarge
        );
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let body = format!(
            r#"{{"usage":{{"input_tokens":{m},"output_tokens":{m},"cache_read_input_tokens":{m},"cache_creation_input_tokens":{m}}}}}"#,
            m = u64::MAX
        );
        assert_eq!(json(&body).usage().map(|u| u.input_tokens), Some(u64::MAX));
    }

    #[test]
    fn content_types_and_codes() {
        for (ct, want) in [
            (Some("application/json"), BodyKind::Json),
            (Some("Application/JSON; charset=utf-8"), BodyKind::Json),
            (Some("application/problem+json"), BodyKind::Json),
            (Some("text/event-stream;charset=UTF-8"), BodyKind::Sse),
            (Some(" text/event-stream "), BodyKind::Sse),
            (Some("text/plain"), BodyKind::Other),
            (Some("application/jsonl"), BodyKind::Other),
            (Some(""), BodyKind::Other),
            (None, BodyKind::Other),
        ] {
            assert_eq!(BodyKind::from_content_type(ct), want, "{ct:?}");
        }
        assert_eq!(
            run(BodyKind::Other, Dialect::Unknown, 0, &[b"x"], true),
            UsageOutcome::NotApplicable
        );
        let codes = [
            UsageOutcome::Found(Usage::default()).code(),
            UsageOutcome::Partial(Usage::default(), String::new()).code(),
            UsageOutcome::Missing.code(),
            UsageOutcome::Malformed(String::new()).code(),
            UsageOutcome::TooLarge.code(),
            UsageOutcome::NotApplicable.code(),
        ];
        assert_eq!(
            codes,
            [
                "found",
                "partial",
                "missing",
                "malformed",
                "too_large",
                "not_applicable"
            ]
        );
        assert_eq!(UsageOutcome::Missing.usage(), None);
    }
}
