//! The request side of metering, as pure functions over bytes: what a
//! provider request asks for (model, output-token ceiling, streaming), read
//! before it is forwarded; the rewrite that makes a streamed OpenAI response
//! report its usage; and the filter that hides the usage event this rewrite
//! adds from a client that did not ask for it.

use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::Dialect;

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;

/// Longest `model` accepted, in characters.
pub const MAX_MODEL_CHARS: usize = 256;
/// Largest output-token ceiling accepted.
pub const MAX_OUTPUT_TOKENS: u64 = 10_000_000;

/// What a request body asks of the provider, as far as budgets care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    /// The `model` member; `None` when absent or null.
    pub model: Option<String>,
    /// The most output tokens the request allows per output; `None` when it
    /// sets no ceiling and the provider's default applies. The largest of
    /// [`RequestFacts::limits`]; the price step narrows it to the members
    /// the operation honours.
    pub max_output_tokens: Option<u64>,
    /// Each output-limit member, as sent.
    pub limits: OutputLimits,
    /// How many outputs one request generates, each up to the ceiling:
    /// `n` or `best_of`, whichever is larger, times the prompts of a
    /// completions request that sends several. At least 1.
    pub outputs: u64,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true` (OpenAI only).
    pub include_usage: bool,
    /// Length of the body in bytes.
    pub input_bytes: u64,
    /// The first member that brings in input the body does not carry
    /// (server-side state, files, URLs, media; see [`super::scan`]).
    pub unseen_input: Option<&'static str>,
    /// The request declares tools (the provider adds a tools prompt).
    pub tools: bool,
    /// Tools the provider runs itself, billed per use.
    pub server_tools: Vec<ServerTool>,
    /// `max_tool_calls` (Responses API): all built-in tool calls together.
    pub max_tool_calls: Option<u64>,
    /// `service_tier` (OpenAI): some tiers are billed at other prices.
    pub service_tier: Option<String>,
    /// The body may ask for hour-long cache writes (it holds `"ttl"`, or a
    /// `\u` escape that could spell it), billed at twice the input price.
    pub hour_cache: bool,
}

impl Default for RequestFacts {
    fn default() -> Self {
        RequestFacts {
            model: None,
            max_output_tokens: None,
            limits: OutputLimits::default(),
            outputs: 1,
            stream: false,
            include_usage: false,
            input_bytes: 0,
            unseen_input: None,
            tools: false,
            server_tools: Vec::new(),
            max_tool_calls: None,
            service_tier: None,
            hour_cache: false,
        }
    }
}

/// The output-limit members of a request, each as sent (validated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputLimits {
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub max_tokens_to_sample: Option<u64>,
}

/// A tool the provider runs (web search, file search, code execution, MCP
/// servers…): each use is billed, and its results are input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTool {
    /// Its `type` without a version date (`web_search_20250305` is
    /// `web_search`), as the pricebook names tools.
    pub name: String,
    /// `max_uses`, when the request bounds this tool's uses.
    pub max_uses: Option<u64>,
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request body is not a UTF-8 JSON object")]
    NotJson,
    #[error("request field `{field}` {}", expectation(.0), field = .0)]
    BadField(&'static str),
    /// The gateway and the provider might read different copies.
    #[error("request field `{0}` appears more than once")]
    DuplicateField(&'static str),
}

impl RequestError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::NotJson => "not_json",
            RequestError::BadField(_) => "bad_field",
            RequestError::DuplicateField(_) => "duplicate_field",
        }
    }
}

fn expectation(field: &str) -> &'static str {
    match field {
        "model" => "must be a string of at most 256 characters",
        "stream" | "stream_options.include_usage" => "must be a boolean",
        "stream_options" => "must be an object",
        "max_tokens" | "max_completion_tokens" | "max_output_tokens" | "max_tokens_to_sample" => {
            "must be an integer from 0 to 10000000"
        }
        "n" | "best_of" | "max_tool_calls" | "tools.max_uses" => "must be a non-negative integer",
        "tools" => "must be an array of objects whose `type` is a string",
        "web_search_options" => "must be an object",
        "mcp_servers" => "must be an array",
        "service_tier" => "must be a string of at most 64 characters",
        _ => "has an invalid value",
    }
}

/// Reads the facts of a request body in the dialect's field names.
///
/// The body must be a UTF-8 JSON object (nesting deeper than serde_json's
/// limit of 128 is refused, not overflowed). `null` counts as absent
/// everywhere. Each of the members read must appear at most once.
///
/// The output ceiling is the largest of the limits the provider may
/// honour: for OpenAI `max_completion_tokens`, `max_tokens` (chat
/// completions, completions) and `max_output_tokens` (Responses API); for
/// Anthropic `max_tokens` (Messages) and `max_tokens_to_sample` (legacy
/// Text Completions); `Dialect::Unknown` reads all four. So the worst case
/// holds whichever one the provider reads.
pub fn facts(dialect: Dialect, body: &[u8]) -> Result<RequestFacts, RequestError> {
    let text = std::str::from_utf8(body).map_err(|_| RequestError::NotJson)?;
    let m: Members = serde_json::from_str(text).map_err(|_| RequestError::NotJson)?;
    if let Some(name) = m.duplicate {
        return Err(RequestError::DuplicateField(name));
    }
    let model = match m.model {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= MAX_MODEL_CHARS => Some(s),
        Some(_) => return Err(RequestError::BadField("model")),
    };
    let max_tokens = tokens(m.max_tokens, "max_tokens")?;
    let openai = match dialect.openai() {
        true => [
            tokens(m.max_completion_tokens, "max_completion_tokens")?,
            tokens(m.max_output_tokens, "max_output_tokens")?,
        ],
        false => [None, None],
    };
    let anthropic = match dialect.anthropic() {
        true => tokens(m.max_tokens_to_sample, "max_tokens_to_sample")?,
        false => None,
    };
    let max_output_tokens = [max_tokens, anthropic]
        .into_iter()
        .chain(openai)
        .flatten()
        .max();
    let include_usage = match m.stream_options {
        _ if !dialect.openai() => false,
        None | Some(Value::Null) => false,
        Some(Value::Object(options)) => {
            flag(options.get("include_usage"), "stream_options.include_usage")?
        }
        Some(_) => return Err(RequestError::BadField("stream_options")),
    };
    let mut unseen = m.unseen;
    let n = count(m.n.as_ref(), "n")?.unwrap_or(1).max(1);
    let best_of = count(m.best_of.as_ref(), "best_of")?.unwrap_or(1).max(1);
    let prompts = prompts(m.prompt.as_ref(), &mut unseen)?;
    let (tools, mut server_tools) = tools(m.tools.as_ref(), &mut unseen)?;
    // Search models (`gpt-4o-search-preview`…) search once per request,
    // asked or not.
    let search_model = dialect.openai() && model.as_deref().is_some_and(|m| m.contains("-search"));
    match m.web_search_options {
        None | Some(Value::Null) if !search_model => {}
        None | Some(Value::Null) | Some(Value::Object(_)) => server_tools.push(ServerTool {
            name: "web_search".into(),
            max_uses: Some(1),
        }),
        Some(_) => return Err(RequestError::BadField("web_search_options")),
    }
    match m.mcp_servers {
        None | Some(Value::Null) => {}
        Some(Value::Array(servers)) if servers.is_empty() => {}
        Some(Value::Array(_)) => server_tools.push(ServerTool {
            name: "mcp".into(),
            max_uses: None,
        }),
        Some(_) => return Err(RequestError::BadField("mcp_servers")),
    }
    if !server_tools.is_empty() {
        // Their results become input.
        unseen.get_or_insert("tools");
    }
    Ok(RequestFacts {
        model,
        max_output_tokens,
        limits: OutputLimits {
            max_tokens,
            max_completion_tokens: openai[0],
            max_output_tokens: openai[1],
            max_tokens_to_sample: anthropic,
        },
        outputs: n.max(best_of).saturating_mul(prompts),
        stream: flag(m.stream.as_ref(), "stream")?,
        include_usage,
        input_bytes: body.len() as u64,
        unseen_input: unseen,
        tools,
        server_tools,
        max_tool_calls: count(m.max_tool_calls.as_ref(), "max_tool_calls")?,
        hour_cache: contains(body, b"\"ttl\"") || contains(body, b"\\u"),
        service_tier: match m.service_tier {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if t.len() <= 64 => Some(t),
            Some(_) => return Err(RequestError::BadField("service_tier")),
        },
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

fn tokens(v: Option<Value>, name: &'static str) -> Result<Option<u64>, RequestError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|&n| n <= MAX_OUTPUT_TOKENS)
            .map(Some)
            .ok_or(RequestError::BadField(name)),
    }
}

/// A non-negative integer member (`n`, `best_of`, `max_uses`…).
fn count(v: Option<&Value>, name: &'static str) -> Result<Option<u64>, RequestError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(RequestError::BadField(name)),
    }
}

/// How many prompts a completions request sends: an array of strings or
/// of token arrays is one prompt per item (each gets its own outputs); a
/// string, or one token array, is one. An object is a stored prompt
/// (Responses API): input the body does not carry.
fn prompts(v: Option<&Value>, unseen: &mut Option<&'static str>) -> Result<u64, RequestError> {
    match v {
        Some(Value::Array(items)) if items.iter().any(|i| i.is_string() || i.is_array()) => {
            Ok(items.len() as u64)
        }
        Some(Value::Object(_)) => {
            unseen.get_or_insert("prompt");
            Ok(1)
        }
        _ => Ok(1),
    }
}

/// Whether the request declares tools, and those the provider runs itself.
/// Tools the client runs (functions, custom tools, and the provider-defined
/// client tools: bash, text editor, computer use, shell, memory) are free;
/// any other `type` is run by the provider.
fn tools(
    v: Option<&Value>,
    unseen: &mut Option<&'static str>,
) -> Result<(bool, Vec<ServerTool>), RequestError> {
    let items = match v {
        None | Some(Value::Null) => return Ok((false, Vec::new())),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(RequestError::BadField("tools")),
    };
    let mut server = Vec::new();
    for item in items {
        let Value::Object(tool) = item else {
            return Err(RequestError::BadField("tools"));
        };
        super::scan::scan_value(item, unseen);
        let kind = match tool.get("type") {
            None | Some(Value::Null) => continue,
            Some(Value::String(kind)) => kind,
            Some(_) => return Err(RequestError::BadField("tools")),
        };
        if client_tool(kind) {
            continue;
        }
        server.push(ServerTool {
            name: tool_name(kind).to_string(),
            max_uses: count(tool.get("max_uses"), "tools.max_uses")?,
        });
    }
    Ok((!items.is_empty(), server))
}

fn client_tool(kind: &str) -> bool {
    const PREFIXES: &[&str] = &["bash_", "text_editor_", "computer_", "memory_"];
    matches!(
        kind,
        "function" | "custom" | "computer" | "local_shell" | "shell" | "apply_patch"
    ) || PREFIXES.iter().any(|p| kind.starts_with(p))
}

/// A tool `type` without its version date: `web_search_20250305` and
/// `web_search_preview_2025_03_11` are `web_search` and
/// `web_search_preview`.
pub fn tool_name(kind: &str) -> &str {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((base, date)) = kind.rsplit_once('_') {
        if digits(date, 8) {
            return base;
        }
    }
    let parts: Vec<&str> = kind.rsplitn(4, '_').collect();
    if let [day, month, year, base] = parts[..] {
        if digits(day, 2) && digits(month, 2) && digits(year, 4) {
            return base;
        }
    }
    kind
}

fn flag(v: Option<&Value>, name: &'static str) -> Result<bool, RequestError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(RequestError::BadField(name)),
    }
}

/// The top-level members `facts` reads; the rest are walked for input
/// references ([`super::scan`]) without being kept, and anything but an
/// object fails to decode.
#[derive(Default)]
struct Members {
    model: Option<Value>,
    max_tokens: Option<Value>,
    max_completion_tokens: Option<Value>,
    max_output_tokens: Option<Value>,
    max_tokens_to_sample: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
    n: Option<Value>,
    best_of: Option<Value>,
    prompt: Option<Value>,
    tools: Option<Value>,
    max_tool_calls: Option<Value>,
    web_search_options: Option<Value>,
    mcp_servers: Option<Value>,
    service_tier: Option<Value>,
    duplicate: Option<&'static str>,
    unseen: Option<&'static str>,
}

impl Members {
    fn slot(&mut self, key: &str) -> Option<(&mut Option<Value>, &'static str)> {
        Some(match key {
            "model" => (&mut self.model, "model"),
            "max_tokens" => (&mut self.max_tokens, "max_tokens"),
            "max_completion_tokens" => (&mut self.max_completion_tokens, "max_completion_tokens"),
            "max_output_tokens" => (&mut self.max_output_tokens, "max_output_tokens"),
            "max_tokens_to_sample" => (&mut self.max_tokens_to_sample, "max_tokens_to_sample"),
            "stream" => (&mut self.stream, "stream"),
            "stream_options" => (&mut self.stream_options, "stream_options"),
            "n" => (&mut self.n, "n"),
            "best_of" => (&mut self.best_of, "best_of"),
            "prompt" => (&mut self.prompt, "prompt"),
            "tools" => (&mut self.tools, "tools"),
            "max_tool_calls" => (&mut self.max_tool_calls, "max_tool_calls"),
            "web_search_options" => (&mut self.web_search_options, "web_search_options"),
            "mcp_servers" => (&mut self.mcp_servers, "mcp_servers"),
            "service_tier" => (&mut self.service_tier, "service_tier"),
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut m = Members::default();
        while let Some(key) = map.next_key::<String>()? {
            if m.unseen.is_none() {
                m.unseen = super::scan::unseen_key(&key);
            }
            let Some((slot, name)) = m.slot(&key) else {
                map.next_value_seed(super::scan::Scan::new(&mut m.unseen))?;
                continue;
            };
            let Strict(value, nested_duplicate) = map.next_value()?;
            if slot.replace(value).is_some() || nested_duplicate {
                m.duplicate.get_or_insert(name);
            }
        }
        Ok(m)
    }
}

/// A member's value, and whether any object inside it names a key twice
/// (`{"type":"web_search_20250305","type":"custom"}`): serde_json keeps the
/// last copy, a provider may keep the first, so such a member is refused
/// like a top-level duplicate.
struct Strict(Value, bool);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v), false))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v), false))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v), false))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v), false))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_string()), false))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v), false))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null, false))
    }

    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null, false))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        let mut duplicate = false;
        while let Some(Strict(v, d)) = seq.next_element()? {
            items.push(v);
            duplicate |= d;
        }
        Ok(Strict(Value::Array(items), duplicate))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut object = serde_json::Map::new();
        let mut duplicate = false;
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v, d) = map.next_value()?;
            duplicate |= d || object.insert(key, v).is_some();
        }
        Ok(Strict(Value::Object(object), duplicate))
    }
}

/// For an OpenAI streaming request that does not already ask for usage,
/// the body with `stream_options.include_usage` set to `true`; `None` when
/// nothing needs to change (not streaming, or already set).
///
/// Validates the body as [`facts`] does (OpenAI names). The rewrite is a
/// splice: every other byte of the body, including key order, whitespace
/// and number spelling, is kept, as are the other keys of an existing
/// `stream_options`.
pub fn add_include_usage(body: &[u8]) -> Result<Option<Vec<u8>>, RequestError> {
    let facts = facts(Dialect::OpenAi, body)?;
    add_include_usage_given(body, &facts)
}

/// [`add_include_usage`] for a body whose `facts` the caller already has
/// (the body is not validated again).
pub fn add_include_usage_given(
    body: &[u8],
    facts: &RequestFacts,
) -> Result<Option<Vec<u8>>, RequestError> {
    if !facts.stream || facts.include_usage {
        return Ok(None);
    }
    // From here on the body is known to be a valid JSON object.
    let text = std::str::from_utf8(body).map_err(|_| RequestError::NotJson)?;
    let open = skip_ws(text, 0);
    let top = members(text, open)?;
    let mut edits: Vec<(Range<usize>, &str)> = Vec::new();
    match top.iter().find(|m| m.key == "stream_options") {
        // `stream: true` is a member, so the object is not empty.
        None => edits.push((
            open + 1..open + 1,
            r#""stream_options":{"include_usage":true},"#,
        )),
        Some(m) if text.get(m.value.clone()) == Some("null") => {
            edits.push((m.value.clone(), r#"{"include_usage":true}"#));
        }
        Some(m) => {
            let inner = members(text, m.value.start)?;
            // Every copy, so no reader can pick a stale one.
            for usage in inner.iter().filter(|m| m.key == "include_usage") {
                edits.push((usage.value.clone(), "true"));
            }
            if edits.is_empty() {
                let at = m.value.start + 1;
                let insert = match inner.is_empty() {
                    true => r#""include_usage":true"#,
                    false => r#""include_usage":true,"#,
                };
                edits.push((at..at, insert));
            }
        }
    }
    splice(body, &edits).map(Some)
}

/// `body` with each range (in order, not overlapping) replaced by its text.
fn splice(body: &[u8], edits: &[(Range<usize>, &str)]) -> Result<Vec<u8>, RequestError> {
    let extra: usize = edits.iter().map(|(_, with)| with.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for (range, with) in edits {
        out.extend_from_slice(body.get(at..range.start).ok_or(RequestError::NotJson)?);
        out.extend_from_slice(with.as_bytes());
        at = range.end;
    }
    out.extend_from_slice(body.get(at..).ok_or(RequestError::NotJson)?);
    Ok(out)
}

/// One member of an object: its decoded key and where its value lies.
/// Sets the output cap `field` (e.g. `max_completion_tokens`) to `cap` in
/// a request that sets none of the output limits of its dialect, so the
/// worst case a budget reserves is a true bound. `None` when the request
/// already has a limit. Only the new member is inserted; every other byte
/// stays as it was.
pub fn cap_output_tokens(
    dialect: Dialect,
    body: &[u8],
    field: &'static str,
    cap: u64,
) -> Result<Option<Vec<u8>>, RequestError> {
    let facts = facts(dialect, body)?;
    cap_output_tokens_given(body, &facts, field, cap)
}

/// [`cap_output_tokens`] for a body whose `facts` the caller already has
/// (the body is not validated again).
pub fn cap_output_tokens_given(
    body: &[u8],
    facts: &RequestFacts,
    field: &'static str,
    cap: u64,
) -> Result<Option<Vec<u8>>, RequestError> {
    if facts.max_output_tokens.is_some() {
        return Ok(None);
    }
    let text = std::str::from_utf8(body).map_err(|_| RequestError::NotJson)?;
    let open = skip_ws(text, 0);
    let top = members(text, open)?;
    // A member named `field` set to null counts as absent: replace it.
    let insert = match top.iter().find(|m| m.key == field) {
        Some(m) => (m.value.clone(), cap.to_string()),
        None if top.is_empty() => (open + 1..open + 1, format!("\"{field}\":{cap}")),
        None => (open + 1..open + 1, format!("\"{field}\":{cap},")),
    };
    let (range, with) = insert;
    splice(body, &[(range, with.as_str())]).map(Some)
}

struct Member {
    key: String,
    value: Range<usize>,
}

/// The members, in order, of the object whose `{` is at `open` in `text`.
fn members(text: &str, open: usize) -> Result<Vec<Member>, RequestError> {
    if text.as_bytes().get(open) != Some(&b'{') {
        return Err(RequestError::NotJson);
    }
    let mut out = Vec::new();
    let mut at = skip_ws(text, open + 1);
    if text.as_bytes().get(at) == Some(&b'}') {
        return Ok(out);
    }
    loop {
        let (key, end) = next_value::<String>(text, at)?;
        at = skip_ws(text, end);
        if text.as_bytes().get(at) != Some(&b':') {
            return Err(RequestError::NotJson);
        }
        at = skip_ws(text, at + 1);
        let (_, end) = next_value::<IgnoredAny>(text, at)?;
        out.push(Member {
            key,
            value: at..end,
        });
        at = skip_ws(text, end);
        match text.as_bytes().get(at) {
            Some(b',') => at = skip_ws(text, at + 1),
            Some(b'}') => return Ok(out),
            _ => return Err(RequestError::NotJson),
        }
    }
}

/// The JSON value starting at `at` and the offset just past it.
fn next_value<T: DeserializeOwned>(text: &str, at: usize) -> Result<(T, usize), RequestError> {
    let rest = text.get(at..).ok_or(RequestError::NotJson)?;
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<T>();
    match values.next() {
        Some(Ok(value)) => Ok((value, at + values.byte_offset())),
        _ => Err(RequestError::NotJson),
    }
}

fn skip_ws(text: &str, mut at: usize) -> usize {
    while matches!(text.as_bytes().get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Hides, from the streamed response of an OpenAI request whose
/// `include_usage` the gateway added, the one event that carries the usage
/// (`"choices": []` and a non-null `usage`, just before `data: [DONE]`).
///
/// Every other byte passes through unchanged, event boundaries included; the
/// `"usage": null` that ordinary chunks then carry is left in place, since
/// rewriting events is riskier than the extra member. Only the current event
/// is held, and only while it may still be a usage event: once its data is
/// seen not to open a JSON object (`[DONE]`, text), the event passes through
/// as it arrives. An event that outgrows `cap` ends filtering: it and the rest
/// of the stream pass through unchanged. Recognises LF, CRLF and CR line
/// ends. A byte-order mark is not stripped, so an event it opens passes
/// through. An unfinished event at the end of the stream is returned by
/// [`finish`](Self::finish) unchanged (clients discard it anyway).
pub struct UsageChunkStripper {
    cap: usize,
    mode: Mode,
    /// The current event while it may still be a usage event.
    held: Vec<u8>,
    /// Bytes on the current line so far, line end excluded.
    line_len: usize,
    /// How much of the current line the data check has read; `usize::MAX`
    /// once the line cannot open the event's data.
    scanned: usize,
    /// The current event's data is seen to open with `{`.
    object_data: bool,
    /// The last byte was a CR ending a line; an LF next is its pair.
    after_cr: Option<AfterCr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Holding the current event until it ends or is ruled out.
    Holding,
    /// The current event is not a usage event; passing it on as it comes.
    Passing,
    /// An event outgrew the cap; passing everything on.
    GaveUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterCr {
    /// The CR ended a line within an event.
    Line,
    /// The CR ended an event that was passed on.
    KeptEvent,
    /// The CR ended an event that was dropped; so is its LF.
    DroppedEvent,
}

impl fmt::Debug for UsageChunkStripper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageChunkStripper")
            .field("cap", &self.cap)
            .field("mode", &self.mode)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl UsageChunkStripper {
    /// A filter for one response body; it holds at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        UsageChunkStripper {
            cap,
            mode: Mode::Holding,
            held: Vec::new(),
            line_len: 0,
            scanned: 0,
            object_data: false,
            after_cr: None,
        }
    }

    /// Takes the next chunk, split anywhere, and returns the bytes to pass
    /// on now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut rest = chunk;
        while let Some((&first, tail)) = rest.split_first() {
            if self.mode == Mode::GaveUp {
                out.extend_from_slice(rest);
                break;
            }
            if let Some(cr) = self.after_cr.take() {
                if first == b'\n' {
                    match cr {
                        AfterCr::Line => self.keep(&rest[..1], &mut out),
                        AfterCr::KeptEvent => out.push(b'\n'),
                        AfterCr::DroppedEvent => {}
                    }
                    rest = tail;
                    continue;
                }
            }
            let end = rest
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .unwrap_or(rest.len());
            let (text, after) = rest.split_at(end);
            self.line_bytes(text, &mut out);
            let Some((&eol, after)) = after.split_first() else {
                break;
            };
            self.keep(&[eol], &mut out);
            self.end_line(eol == b'\r', &mut out);
            rest = after;
        }
        out
    }

    /// The bytes still held once the stream has ended: an unfinished event,
    /// unchanged.
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        *self = UsageChunkStripper::new(self.cap);
        held
    }

    /// Passes `bytes` on, or holds them while the event is undecided.
    fn keep(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        match self.mode {
            Mode::Holding if self.held.len().saturating_add(bytes.len()) <= self.cap => {
                self.held.extend_from_slice(bytes);
            }
            Mode::Holding => {
                out.append(&mut self.held);
                out.extend_from_slice(bytes);
                self.held = Vec::new();
                self.mode = Mode::GaveUp;
            }
            Mode::Passing | Mode::GaveUp => out.extend_from_slice(bytes),
        }
    }

    fn line_bytes(&mut self, text: &[u8], out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        self.line_len += text.len();
        self.keep(text, out);
        if self.mode == Mode::Holding && !self.object_data {
            self.check_data_start(out);
        }
    }

    /// Rules the event out as soon as its data is seen not to open with `{`.
    fn check_data_start(&mut self, out: &mut Vec<u8>) {
        if self.scanned == usize::MAX {
            return;
        }
        let start = self.held.len().saturating_sub(self.line_len);
        let line = self.held.get(start..).unwrap_or_default();
        let Some(value) = line.strip_prefix(b"data:") else {
            if !b"data:".starts_with(line) {
                self.scanned = usize::MAX;
            }
            return;
        };
        // The space after the colon and JSON's leading whitespace alike.
        let from = self.scanned.saturating_sub(5);
        let unread = value.get(from..).unwrap_or_default();
        match unread.iter().find(|&&b| b != b' ' && b != b'\t') {
            None => self.scanned = line.len(),
            Some(b'{') => self.object_data = true,
            Some(_) => {
                out.append(&mut self.held);
                self.mode = Mode::Passing;
            }
        }
    }

    fn end_line(&mut self, cr: bool, out: &mut Vec<u8>) {
        let blank = self.line_len == 0;
        self.line_len = 0;
        self.scanned = 0;
        if !blank {
            self.after_cr = cr.then_some(AfterCr::Line);
            return;
        }
        // A blank line ends the event.
        let dropped = match self.mode {
            Mode::Holding => {
                let usage = self.object_data && is_usage_event(&self.held);
                if !usage {
                    out.extend_from_slice(&self.held);
                }
                self.held.clear();
                usage
            }
            Mode::Passing => {
                self.mode = Mode::Holding;
                false
            }
            Mode::GaveUp => false,
        };
        self.object_data = false;
        self.after_cr = cr.then_some(match dropped {
            true => AfterCr::DroppedEvent,
            false => AfterCr::KeptEvent,
        });
    }
}

/// Whether a whole event's data is a JSON object with `choices: []` and a
/// non-null `usage`.
fn is_usage_event(event: &[u8]) -> bool {
    let mut data = Vec::with_capacity(event.len());
    let mut has_data = false;
    let mut rest = event;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        let (line, tail) = rest.split_at(end);
        rest = match tail {
            [b'\r', b'\n', tail @ ..] | [_, tail @ ..] => tail,
            [] => &[],
        };
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => line.split_at(i),
            None => (line, &b""[..]),
        };
        if field == b"data" {
            let value = value.get(1..).unwrap_or_default();
            if has_data {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
            has_data = true;
        }
    }
    if data.trim_ascii_start().first() != Some(&b'{') {
        return false;
    }
    matches!(
        serde_json::from_slice::<ChunkShape>(&data),
        Ok(ChunkShape { choices: Some(choices), usage: Some(_) }) if choices.is_empty()
    )
}

/// The members of a streamed chunk that mark the usage event; a duplicate
/// member fails to decode, and so keeps the event.
#[derive(serde::Deserialize)]
struct ChunkShape {
    choices: Option<Vec<IgnoredAny>>,
    usage: Option<IgnoredAny>,
}
