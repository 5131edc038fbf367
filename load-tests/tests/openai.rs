//! OpenAI endpoints of the mock: real wire shapes and the usage rule.

mod common;

use common::{json_body, post, SseReader};
use serde_json::{json, Value};

/// 14 + 25 = 39 characters of message content -> ceil(39 / 4) = 10 tokens.
fn chat_request() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the gateway."}
        ]
    })
}

#[tokio::test]
async fn chat_non_stream_has_openai_shape_and_usage_rule() {
    let mock = common::start().await;
    let res = post(
        &mock.base_url(),
        "/v1/chat/completions",
        &[],
        &chat_request(),
    )
    .await;
    let body = json_body(res, 200).await;
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], "gpt-4o-mini");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["finish_reason"], "stop");
    let content = choice["message"]["content"].as_str().unwrap();
    assert_eq!(content.split_whitespace().count(), 16);
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], 10);
    assert_eq!(usage["completion_tokens"], 16);
    assert_eq!(usage["total_tokens"], 26);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn chat_max_tokens_caps_completion_tokens() {
    let mock = common::start().await;
    let mut req = chat_request();
    req["max_completion_tokens"] = json!(5);
    req["max_tokens"] = json!(9);
    let body = json_body(
        post(&mock.base_url(), "/v1/chat/completions", &[], &req).await,
        200,
    )
    .await;
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(body["usage"]["total_tokens"], 15);

    let mut req = chat_request();
    req["max_tokens"] = json!(100);
    let body = json_body(
        post(&mock.base_url(), "/v1/chat/completions", &[], &req).await,
        200,
    )
    .await;
    assert_eq!(body["usage"]["completion_tokens"], 16);
}

/// Content chunks, then whatever follows the last content chunk.
async fn read_chat_stream(reader: SseReader) -> (Vec<Value>, Vec<common::SseEvent>) {
    let events = reader.collect().await;
    let done_at = events
        .iter()
        .position(|e| e.data == "[DONE]")
        .expect("[DONE]");
    assert_eq!(done_at, events.len() - 1, "[DONE] is the last event");
    let chunks: Vec<Value> = events[..done_at].iter().map(|e| e.json()).collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-4o-mini");
        assert!(chunk["id"].as_str().unwrap().starts_with("chatcmpl-"));
    }
    (chunks, events)
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage() {
    let mock = common::start().await;
    let whole = json_body(
        post(
            &mock.base_url(),
            "/v1/chat/completions",
            &[],
            &chat_request(),
        )
        .await,
        200,
    )
    .await;
    let mut req = chat_request();
    req["stream"] = json!(true);
    let res = post(&mock.base_url(), "/v1/chat/completions", &[], &req).await;
    let (chunks, _) = read_chat_stream(SseReader::new(res)).await;

    // 8 content chunks, then the finish chunk.
    assert_eq!(chunks.len(), 9);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let last = &chunks[8]["choices"][0];
    assert_eq!(last["finish_reason"], "stop");
    assert_eq!(last["delta"], json!({}));
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn chat_stream_with_include_usage_ends_with_usage_chunk() {
    let mock = common::start().await;
    let mut req = chat_request();
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let res = post(
        &mock.base_url(),
        "/v1/chat/completions",
        &[("x-mock-chunks", "3")],
        &req,
    )
    .await;
    let (chunks, _) = read_chat_stream(SseReader::new(res)).await;

    assert_eq!(chunks.len(), 5, "3 content + finish + usage");
    for chunk in &chunks[..4] {
        assert_eq!(chunk["usage"], Value::Null);
        assert!(chunk.get("usage").is_some(), "usage: null is present");
    }
    let last = &chunks[4];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 10);
    assert_eq!(last["usage"]["completion_tokens"], 16);
    assert_eq!(last["usage"]["total_tokens"], 26);
}

#[tokio::test]
async fn completions_embeddings_and_models() {
    let mock = common::start().await;
    let base = mock.base_url();

    // "abcdefgh" is 8 characters -> 2 tokens.
    let req = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "abcdefgh", "max_tokens": 3});
    let body = json_body(post(&base, "/v1/completions", &[], &req).await, 200).await;
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(
        body["choices"][0]["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        3
    );
    assert_eq!(body["usage"]["prompt_tokens"], 2);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(body["usage"]["total_tokens"], 5);

    // 5 + 6 = 11 characters -> 3 tokens.
    let req = json!({"model": "text-embedding-3-small", "input": ["hello", "world!"]});
    let body = json_body(post(&base, "/v1/embeddings", &[], &req).await, 200).await;
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );

    let list = json_body(
        common::client()
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(list["object"], "list");
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "gpt-4o"));
    let one = json_body(
        common::client()
            .get(format!("{base}/v1/models/my-model"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(one["id"], "my-model");
    assert_eq!(one["object"], "model");
}

/// "Tell me a story" is 15 characters -> 4 input tokens.
fn responses_request(stream: bool) -> Value {
    json!({"model": "gpt-4.1-mini", "input": "Tell me a story", "max_output_tokens": 7, "stream": stream})
}

#[tokio::test]
async fn responses_non_stream() {
    let mock = common::start().await;
    let body = json_body(
        post(
            &mock.base_url(),
            "/v1/responses",
            &[],
            &responses_request(false),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "gpt-4.1-mini");
    let part = &body["output"][0]["content"][0];
    assert_eq!(part["type"], "output_text");
    assert_eq!(part["text"].as_str().unwrap().split_whitespace().count(), 7);
    assert_eq!(body["usage"]["input_tokens"], 4);
    assert_eq!(body["usage"]["output_tokens"], 7);
    assert_eq!(body["usage"]["total_tokens"], 11);
}

#[tokio::test]
async fn responses_stream_event_sequence() {
    let mock = common::start().await;
    let res = post(
        &mock.base_url(),
        "/v1/responses",
        &[("x-mock-chunks", "2")],
        &responses_request(true),
    )
    .await;
    let events = SseReader::new(res).collect().await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, event) in events.iter().enumerate() {
        let data = event.json();
        assert_eq!(data["type"], event.event.as_deref().unwrap());
        assert_eq!(data["sequence_number"], i);
    }
    let deltas: String = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("response.output_text.delta"))
        .map(|e| e.json()["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, events[6].json()["text"].as_str().unwrap());
    let completed = events[9].json();
    assert_eq!(completed["response"]["status"], "completed");
    assert_eq!(completed["response"]["usage"]["input_tokens"], 4);
    assert_eq!(completed["response"]["usage"]["output_tokens"], 7);
}
