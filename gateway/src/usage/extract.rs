//! Reads one usage object, in OpenAI or Anthropic key names, into raw
//! counts.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Dialect;

#[derive(Default)]
pub(super) struct Report {
    pub(super) input: Option<u64>,
    pub(super) output: Option<u64>,
    pub(super) cache_read: Option<u64>,
    pub(super) cache_write: Option<u64>,
    pub(super) total: Option<u64>,
    pub(super) cache_apart: bool,
    /// Uses of provider-run tools (Anthropic `server_tool_use`), by tool.
    pub(super) tool_uses: Option<BTreeMap<String, u64>>,
    /// Cache writes of an hour (Anthropic `cache_creation`).
    pub(super) cache_write_1h: Option<u64>,
}

/// Reads a usage object in the dialect's key names; `Ok(None)` for null.
pub(super) fn read_usage(usage: &Value, dialect: Dialect) -> Result<Option<Report>, String> {
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
        r.tool_uses = server_tool_use(obj)?;
        r.cache_write_1h = match obj.get("cache_creation") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) => {
                count(c, "ephemeral_1h_input_tokens").map_err(|e| format!("cache_creation.{e}"))?
            }
            Some(_) => return Err("usage.cache_creation is not an object".into()),
        };
    }
    if [r.input, r.output, r.cache_read, r.cache_write, r.total]
        .iter()
        .all(Option::is_none)
    {
        return Err("usage has no token counts".into());
    }
    Ok(Some(r))
}

/// `server_tool_use`: `{"web_search_requests": 2, …}` is two uses of
/// `web_search`. Members not named `…_requests` are not counts of uses.
fn server_tool_use(obj: &Map<String, Value>) -> Result<Option<BTreeMap<String, u64>>, String> {
    match obj.get("server_tool_use") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(uses)) => {
            let mut out = BTreeMap::new();
            for (key, n) in uses {
                let Some(tool) = key.strip_suffix("_requests") else {
                    continue;
                };
                let n = n.as_u64().ok_or_else(|| {
                    format!("usage.server_tool_use.{key} is not a non-negative integer")
                })?;
                out.insert(tool.to_string(), n);
            }
            Ok(Some(out))
        }
        Some(_) => Err("usage.server_tool_use is not an object".into()),
    }
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
