//! `POST /v1/chat/completions`, whole or streamed.

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{unix_now, usage_pair};
use crate::mock::body::{json_response, MockBody};
use crate::mock::errors::ApiError;
use crate::mock::request::JsonRequest;
use crate::mock::router::Ctx;
use crate::mock::sse::stream_response;
use crate::mock::usage::{completion, messages_chars, prompt_tokens};

/// Fields every chunk of one stream repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
    /// Whether chunks carry `"usage": null` (as OpenAI does when usage was
    /// asked for and a usage chunk will follow).
    usage_null: bool,
}

impl Head {
    fn chunk(&self, choices: Value) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_mock",
            "choices": choices,
        });
        if self.usage_null {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn delta(&self, delta: Value, finish_reason: Value) -> Value {
        self.chunk(json!([{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        }]))
    }
}

/// Answers a chat completion; streams when `"stream": true`.
pub(crate) fn chat(ctx: &Ctx, req: &JsonRequest) -> Result<Response<MockBody>, ApiError> {
    let model = req.model()?;
    let stream = req.stream()?;
    let include_usage = req.include_usage()?;
    let prompt = prompt_tokens(messages_chars(req.messages()?));
    let max = req.first_u64(&["max_completion_tokens", "max_tokens"])?;
    let tokens = ctx.completion_tokens(max);
    let (full, partial) = usage_pair(prompt, tokens);
    let usage = ctx.controls.render_usage(full, partial);
    let text = completion(tokens, ctx.controls.chunks);
    let id = ctx.next_id("chatcmpl-");
    let created = unix_now();

    if !stream {
        let mut body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text.text, "refusal": null },
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "system_fingerprint": "fp_mock",
        });
        if let Some(usage) = usage {
            body["usage"] = usage;
        }
        return Ok(json_response(StatusCode::OK, &body));
    }

    let usage = usage.filter(|_| include_usage);
    let head = Head {
        id,
        created,
        model,
        usage_null: usage.is_some(),
    };
    Ok(stream_response(ctx.pacing(), move |mut sse| async move {
        for (i, piece) in text.pieces.iter().enumerate() {
            sse.before_chunk(i).await?;
            let delta = if i == 0 {
                json!({ "role": "assistant", "content": piece })
            } else {
                json!({ "content": piece })
            };
            sse.data(&head.delta(delta, Value::Null)).await?;
        }
        if text.pieces.is_empty() {
            let delta = json!({ "role": "assistant", "content": "" });
            sse.data(&head.delta(delta, Value::Null)).await?;
        }
        sse.data(&head.delta(json!({}), json!("stop"))).await?;
        if let Some(usage) = usage {
            let mut last = head.chunk(json!([]));
            last["usage"] = usage;
            sse.data(&last).await?;
        }
        sse.done().await
    }))
}
