//! OpenAI endpoints: chat completions, legacy completions, embeddings and
//! models. The Responses API lives in `super::responses`.

mod chat;
mod completions;
mod embeddings;

use std::time::{SystemTime, UNIX_EPOCH};

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::body::{json_response, MockBody};

pub(crate) use chat::chat;
pub(crate) use completions::completions;
pub(crate) use embeddings::embeddings;

/// Models listed by `GET /v1/models`; any id is served by `/v1/models/{id}`.
const MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "o3-mini",
    "text-embedding-3-small",
];

/// Fixed `created` stamp for listed models.
const MODEL_CREATED: u64 = 1_700_000_000;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Chat/completions usage: the full object and the prompt-only one.
fn usage_pair(prompt: u64, completion: u64) -> (Value, Value) {
    let full = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": 0, "audio_tokens": 0 },
    });
    (full, json!({ "prompt_tokens": prompt }))
}

fn model_object(id: &str) -> Value {
    json!({ "id": id, "object": "model", "created": MODEL_CREATED, "owned_by": "caracal-mock" })
}

/// `GET /v1/models`.
pub(crate) fn models() -> Response<MockBody> {
    let data: Vec<Value> = MODELS.iter().map(|id| model_object(id)).collect();
    json_response(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

/// `GET /v1/models/{id}`: every id exists.
pub(crate) fn model(id: &str) -> Response<MockBody> {
    json_response(StatusCode::OK, &model_object(id))
}
