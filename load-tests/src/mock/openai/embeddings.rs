//! `POST /v1/embeddings`.

use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::mock::body::{json_response, MockBody};
use crate::mock::errors::ApiError;
use crate::mock::request::JsonRequest;
use crate::mock::router::Ctx;
use crate::mock::usage::{content_chars, prompt_tokens};

/// Vector length when the request gives no `dimensions`.
const DEFAULT_DIMENSIONS: u64 = 8;
/// Largest `dimensions` honoured.
const MAX_DIMENSIONS: u64 = 4096;

/// One float embedding per input (a string, or each item of an array of
/// strings or token arrays); usage counts the input strings' characters.
/// `encoding_format` is ignored: vectors are always float arrays.
pub(crate) fn embeddings(ctx: &Ctx, req: &JsonRequest) -> Result<Response<MockBody>, ApiError> {
    let model = req.model()?;
    let input = req.get("input");
    let inputs = match input {
        Some(Value::Array(items)) if items.iter().all(|i| i.is_string() || i.is_array()) => {
            items.len().max(1)
        }
        _ => 1,
    };
    let dimensions = req
        .first_u64(&["dimensions"])?
        .unwrap_or(DEFAULT_DIMENSIONS)
        .clamp(1, MAX_DIMENSIONS) as usize;
    let prompt = prompt_tokens(input.map_or(0, content_chars));
    let data: Vec<Value> = (0..inputs)
        .map(|index| {
            let vector: Vec<f64> = (0..dimensions)
                .map(|d| ((index * 31 + d * 7) % 100) as f64 / 100.0 - 0.5)
                .collect();
            json!({ "object": "embedding", "index": index, "embedding": vector })
        })
        .collect();
    let mut body = json!({ "object": "list", "data": data, "model": model });
    let full = json!({ "prompt_tokens": prompt, "total_tokens": prompt });
    let partial = json!({ "prompt_tokens": prompt });
    if let Some(usage) = ctx.controls.render_usage(full, partial) {
        body["usage"] = usage;
    }
    Ok(json_response(StatusCode::OK, &body))
}
