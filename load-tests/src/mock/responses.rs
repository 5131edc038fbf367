//! `POST /v1/responses` (OpenAI Responses API), whole or streamed as the
//! real `response.*` event sequence.

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::body::{json_response, MockBody};
use super::errors::ApiError;
use super::openai::unix_now;
use super::request::JsonRequest;
use super::router::Ctx;
use super::sse::{stream_response, Closed, Sse};
use super::usage::{completion, content_chars, prompt_tokens};

/// The parts of a response object shared by every event of one stream.
struct Shape {
    id: String,
    item_id: String,
    created_at: u64,
    model: String,
    usage: Option<Value>,
}

impl Shape {
    /// The response object; `text` is `None` while still in progress.
    fn response(&self, text: Option<&str>) -> Value {
        let (status, output) = match text {
            None => ("in_progress", json!([])),
            Some(text) => ("completed", json!([self.item("completed", Some(text))])),
        };
        let mut response = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
        });
        if let Some(usage) = &self.usage {
            // Real in-progress responses carry `"usage": null`.
            response["usage"] = if text.is_some() {
                usage.clone()
            } else {
                Value::Null
            };
        }
        response
    }

    fn item(&self, status: &str, text: Option<&str>) -> Value {
        let content = match text {
            Some(text) => json!([part(text)]),
            None => json!([]),
        };
        json!({
            "type": "message",
            "id": self.item_id,
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }
}

fn part(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [] })
}

/// Answers a Responses API request; input tokens count `input` only.
pub(crate) fn responses(ctx: &Ctx, req: &JsonRequest) -> Result<Response<MockBody>, ApiError> {
    let model = req.model()?;
    let stream = req.stream()?;
    let input = prompt_tokens(req.get("input").map_or(0, content_chars));
    let output = ctx.completion_tokens(req.first_u64(&["max_output_tokens"])?);
    let full = json!({
        "input_tokens": input,
        "input_tokens_details": { "cached_tokens": 0 },
        "output_tokens": output,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": input + output,
    });
    let partial = json!({ "input_tokens": input });
    let shape = Shape {
        id: ctx.next_id("resp_"),
        item_id: ctx.next_id("msg_"),
        created_at: unix_now(),
        model,
        usage: ctx.controls.render_usage(full, partial),
    };
    let text = completion(output, ctx.controls.chunks);
    if !stream {
        return Ok(json_response(
            StatusCode::OK,
            &shape.response(Some(&text.text)),
        ));
    }
    Ok(stream_response(ctx.pacing(), move |mut sse| async move {
        let mut events = Events { seq: 0 };
        let in_progress = json!({ "response": shape.response(None) });
        events
            .send(&sse, "response.created", in_progress.clone())
            .await?;
        events
            .send(&sse, "response.in_progress", in_progress)
            .await?;
        let at = json!({ "item_id": shape.item_id, "output_index": 0, "content_index": 0 });
        let added = json!({ "output_index": 0, "item": shape.item("in_progress", None) });
        events
            .send(&sse, "response.output_item.added", added)
            .await?;
        let part_added = with(&at, "part", part(""));
        events
            .send(&sse, "response.content_part.added", part_added)
            .await?;
        for (i, piece) in text.pieces.iter().enumerate() {
            sse.before_chunk(i).await?;
            let delta = with(&at, "delta", json!(piece));
            events
                .send(&sse, "response.output_text.delta", delta)
                .await?;
        }
        let done = with(&at, "text", json!(text.text));
        events.send(&sse, "response.output_text.done", done).await?;
        let part_done = with(&at, "part", part(&text.text));
        events
            .send(&sse, "response.content_part.done", part_done)
            .await?;
        let item = shape.item("completed", Some(&text.text));
        let item_done = json!({ "output_index": 0, "item": item });
        events
            .send(&sse, "response.output_item.done", item_done)
            .await?;
        let completed = json!({ "response": shape.response(Some(&text.text)) });
        events.send(&sse, "response.completed", completed).await
    }))
}

/// `base` plus one more field.
fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut out = base.clone();
    out[key] = value;
    out
}

/// Numbers events and sends them as `event: TYPE` + `data: {"type": TYPE, ...}`.
struct Events {
    seq: u64,
}

impl Events {
    async fn send(&mut self, sse: &Sse, kind: &str, mut payload: Value) -> Result<(), Closed> {
        payload["type"] = json!(kind);
        payload["sequence_number"] = json!(self.seq);
        self.seq += 1;
        sse.event(kind, &payload).await
    }
}
