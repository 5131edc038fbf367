//! `POST /v1/completions` (legacy text completions), whole or streamed.

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{unix_now, usage_pair};
use crate::mock::body::{json_response, MockBody};
use crate::mock::errors::ApiError;
use crate::mock::request::JsonRequest;
use crate::mock::router::Ctx;
use crate::mock::sse::stream_response;
use crate::mock::usage::{completion, content_chars, prompt_tokens};

/// Answers a text completion for `prompt` (string or array of strings).
pub(crate) fn completions(ctx: &Ctx, req: &JsonRequest) -> Result<Response<MockBody>, ApiError> {
    let model = req.model()?;
    let stream = req.stream()?;
    let include_usage = req.include_usage()?;
    let prompt = prompt_tokens(req.get("prompt").map_or(0, content_chars));
    let tokens = ctx.completion_tokens(req.first_u64(&["max_tokens"])?);
    let (full, partial) = usage_pair(prompt, tokens);
    let usage = ctx.controls.render_usage(full, partial);
    let text = completion(tokens, ctx.controls.chunks);
    let id = ctx.next_id("cmpl-");
    let created = unix_now();
    let head = move |choices: Value| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": choices,
        })
    };
    let choice = |text: &str, finish_reason: Value| json!([{ "text": text, "index": 0, "logprobs": null, "finish_reason": finish_reason }]);

    if !stream {
        let mut body = head(choice(&text.text, json!("stop")));
        if let Some(usage) = usage {
            body["usage"] = usage;
        }
        return Ok(json_response(StatusCode::OK, &body));
    }

    let usage = usage.filter(|_| include_usage);
    Ok(stream_response(ctx.pacing(), move |mut sse| async move {
        for (i, piece) in text.pieces.iter().enumerate() {
            sse.before_chunk(i).await?;
            sse.data(&head(choice(piece, Value::Null))).await?;
        }
        sse.data(&head(choice("", json!("stop")))).await?;
        if let Some(usage) = usage {
            let mut last = head(json!([]));
            last["usage"] = usage;
            sse.data(&last).await?;
        }
        sse.done().await
    }))
}
