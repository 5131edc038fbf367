//! `x-mock-status`, `x-mock-usage`, `x-mock-latency-ms` and bad input.

mod common;

use std::time::{Duration, Instant};

use common::{json_body, post, SseReader};
use serde_json::{json, Value};

fn chat(stream: bool) -> Value {
    // "12345678" is 8 characters -> 2 prompt tokens.
    json!({
        "model": "gpt-4o",
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "12345678"}]
    })
}

fn message(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "12345678"}]
    })
}

#[tokio::test]
async fn status_override_uses_openai_error_shape() {
    let mock = common::start().await;
    let res = post(
        &mock.base_url(),
        "/v1/chat/completions",
        &[("x-mock-status", "429")],
        &chat(false),
    )
    .await;
    assert_eq!(res.headers()["retry-after"], "1");
    let body = json_body(res, 429).await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].is_string());

    let res = post(
        &mock.base_url(),
        "/v1/chat/completions",
        &[("x-mock-status", "503")],
        &chat(true),
    )
    .await;
    assert_eq!(json_body(res, 503).await["error"]["type"], "server_error");
}

#[tokio::test]
async fn usage_omit() {
    let mock = common::start().await;
    let h = [("x-mock-usage", "omit")];
    let body = json_body(
        post(&mock.base_url(), "/v1/chat/completions", &h, &chat(false)).await,
        200,
    )
    .await;
    assert!(body.get("usage").is_none());
    let body = json_body(
        post(&mock.base_url(), "/v1/messages", &h, &message(false)).await,
        200,
    )
    .await;
    assert!(body.get("usage").is_none());

    let res = post(&mock.base_url(), "/v1/chat/completions", &h, &chat(true)).await;
    let events = SseReader::new(res).collect().await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    for event in &events[..events.len() - 1] {
        assert!(event.json().get("usage").is_none(), "{}", event.data);
    }
    let res = post(&mock.base_url(), "/v1/messages", &h, &message(true)).await;
    for event in SseReader::new(res).collect().await {
        let data = event.json();
        assert!(data.get("usage").is_none());
        assert!(data.pointer("/message/usage").is_none());
    }
}

#[tokio::test]
async fn usage_malformed_is_not_an_object() {
    let mock = common::start().await;
    let h = [("x-mock-usage", "malformed")];
    let body = json_body(
        post(&mock.base_url(), "/v1/chat/completions", &h, &chat(false)).await,
        200,
    )
    .await;
    assert!(!body["usage"].is_object() && !body["usage"].is_null());

    let res = post(&mock.base_url(), "/v1/chat/completions", &h, &chat(true)).await;
    let events = SseReader::new(res).collect().await;
    let usage_chunk = events[events.len() - 2].json();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert!(usage_chunk["usage"].is_string());

    let res = post(&mock.base_url(), "/v1/messages", &h, &message(true)).await;
    let events = SseReader::new(res).collect().await;
    assert!(events[0].json()["message"]["usage"].is_string());
    let delta = events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_delta"))
        .unwrap();
    assert!(delta.json()["usage"].is_string());
}

#[tokio::test]
async fn usage_partial_has_only_input_tokens() {
    let mock = common::start().await;
    let h = [("x-mock-usage", "partial")];
    let body = json_body(
        post(&mock.base_url(), "/v1/chat/completions", &h, &chat(false)).await,
        200,
    )
    .await;
    assert_eq!(body["usage"], json!({"prompt_tokens": 2}));
    let body = json_body(
        post(&mock.base_url(), "/v1/messages", &h, &message(false)).await,
        200,
    )
    .await;
    assert_eq!(body["usage"], json!({"input_tokens": 2}));

    let res = post(&mock.base_url(), "/v1/messages", &h, &message(true)).await;
    let events = SseReader::new(res).collect().await;
    assert_eq!(
        events[0].json()["message"]["usage"],
        json!({"input_tokens": 2})
    );
    let delta = events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_delta"))
        .unwrap();
    assert!(delta.json()["usage"].get("output_tokens").is_none());
}

#[tokio::test]
async fn malformed_json_is_400_with_json_error() {
    let mock = common::start().await;
    for body in [
        "{\"model\": ",
        "[1, 2]",
        "",
        "{\"messages\": \"not an array\"}",
    ] {
        let res = common::client()
            .post(format!("{}/v1/chat/completions", mock.base_url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let error = json_body(res, 400).await;
        assert_eq!(error["error"]["type"], "invalid_request_error", "{body:?}");
    }
    let res = post(
        &mock.base_url(),
        "/v1/chat/completions",
        &[("x-mock-chunks", "lots")],
        &chat(false),
    )
    .await;
    let error = json_body(res, 400).await;
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-mock-chunks"));
}

#[tokio::test]
async fn latency_delays_the_response_headers() {
    let mock = common::start().await;
    let started = Instant::now();
    let res = post(
        &mock.base_url(),
        "/v1/embeddings",
        &[("x-mock-latency-ms", "150")],
        &json!({"input": "x"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}
