//! Anthropic endpoints: `POST /v1/messages` (whole or streamed as the real
//! event sequence) and the model list.

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::body::{json_response, MockBody};
use super::errors::ApiError;
use super::request::JsonRequest;
use super::router::Ctx;
use super::sse::stream_response;
use super::usage::{completion, messages_chars, prompt_tokens, UsageMode};

/// `(id, display_name, created_at)` listed by `GET /v1/models`.
const MODELS: &[(&str, &str, &str)] = &[
    (
        "claude-sonnet-4-5",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    (
        "claude-haiku-4-5",
        "Claude Haiku 4.5",
        "2025-10-01T00:00:00Z",
    ),
    ("claude-opus-4-1", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
];

fn model_object(id: &str, display_name: &str, created_at: &str) -> Value {
    json!({ "type": "model", "id": id, "display_name": display_name, "created_at": created_at })
}

/// `GET /v1/models` with `anthropic-version`.
pub(crate) fn models() -> Response<MockBody> {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|(id, name, at)| model_object(id, name, at))
        .collect();
    let body = json!({
        "data": data,
        "has_more": false,
        "first_id": MODELS.first().map(|m| m.0),
        "last_id": MODELS.last().map(|m| m.0),
    });
    json_response(StatusCode::OK, &body)
}

/// `GET /v1/models/{id}` with `anthropic-version`: every id exists.
pub(crate) fn model(id: &str) -> Response<MockBody> {
    let known = MODELS.iter().find(|m| m.0 == id);
    let (name, at) = known.map_or((id, "2025-01-01T00:00:00Z"), |m| (m.1, m.2));
    json_response(StatusCode::OK, &model_object(id, name, at))
}

/// Full usage as Anthropic reports it, with `output_tokens` as given.
fn usage(mode: UsageMode, input: u64, output: u64) -> Option<Value> {
    let full = json!({
        "input_tokens": input,
        "output_tokens": output,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    });
    mode.render(full, json!({ "input_tokens": input }))
}

/// Answers a message; streams when `"stream": true`. Input tokens count
/// `messages[].content` only (not `system`).
pub(crate) fn messages(ctx: &Ctx, req: &JsonRequest) -> Result<Response<MockBody>, ApiError> {
    let model = req.model()?;
    let stream = req.stream()?;
    let input = prompt_tokens(messages_chars(req.messages()?));
    let output = ctx.completion_tokens(req.first_u64(&["max_tokens"])?);
    let mode = ctx.controls.usage;
    let text = completion(output, ctx.controls.chunks);
    let id = ctx.next_id("msg_");

    if !stream {
        let mut body = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{ "type": "text", "text": text.text }],
            "stop_reason": "end_turn",
            "stop_sequence": null,
        });
        let reported = ctx.controls.usage_json.clone();
        if let Some(usage) = reported.or_else(|| usage(mode, input, output)) {
            body["usage"] = usage;
        }
        return Ok(json_response(StatusCode::OK, &body));
    }

    Ok(stream_response(ctx.pacing(), move |mut sse| async move {
        let mut message = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
        });
        if let Some(usage) = usage(mode, input, 1) {
            message["usage"] = usage;
        }
        let start = json!({ "type": "message_start", "message": message });
        sse.event("message_start", &start).await?;
        let block = json!({
            "type": "content_block_start",
            "index": 0,
            "content_block": { "type": "text", "text": "" },
        });
        sse.event("content_block_start", &block).await?;
        sse.event("ping", &json!({ "type": "ping" })).await?;
        for (i, piece) in text.pieces.iter().enumerate() {
            sse.before_chunk(i).await?;
            let delta = json!({
                "type": "content_block_delta",
                "index": 0,
                "delta": { "type": "text_delta", "text": piece },
            });
            sse.event("content_block_delta", &delta).await?;
        }
        let stop = json!({ "type": "content_block_stop", "index": 0 });
        sse.event("content_block_stop", &stop).await?;
        let mut delta = json!({
            "type": "message_delta",
            "delta": { "stop_reason": "end_turn", "stop_sequence": null },
        });
        if let Some(usage) = usage(mode, input, output) {
            delta["usage"] = match mode {
                UsageMode::Full => json!({ "output_tokens": output }),
                _ => usage,
            };
        }
        sse.event("message_delta", &delta).await?;
        sse.event("message_stop", &json!({ "type": "message_stop" }))
            .await
    }))
}
