//! Reads one usage object, in OpenAI or Anthropic key names, into raw
//! counts.

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
