//! Anthropic endpoints of the mock: real wire shapes and the usage rule.

mod common;

use common::{json_body, post, SseReader};
use serde_json::{json, Value};

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

/// Message content is 13 + 3 + 15 = 31 characters -> ceil(31 / 4) = 8
/// tokens; `system` does not count.
fn messages_request(stream: bool, max_tokens: u64) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "system": "This system prompt is not counted.",
        "stream": stream,
        "messages": [
            {"role": "user", "content": "Hello, Claude"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi!"}]},
            {"role": "user", "content": "Count to three."}
        ]
    })
}

#[tokio::test]
async fn messages_non_stream_has_anthropic_shape_and_usage_rule() {
    let mock = common::start().await;
    let res = post(
        &mock.base_url(),
        "/v1/messages",
        &[VERSION],
        &messages_request(false, 1024),
    )
    .await;
    let body = json_body(res, 200).await;
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(
        body["content"][0]["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        16
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(
        body["usage"],
        json!({
            "input_tokens": 8,
            "output_tokens": 16,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0
        })
    );
}

#[tokio::test]
async fn messages_stream_follows_the_real_event_sequence() {
    let mock = common::start().await;
    let whole = json_body(
        post(
            &mock.base_url(),
            "/v1/messages",
            &[VERSION],
            &messages_request(false, 4),
        )
        .await,
        200,
    )
    .await;
    let res = post(
        &mock.base_url(),
        "/v1/messages",
        &[VERSION],
        &messages_request(true, 4),
    )
    .await;
    let events = SseReader::new(res).collect().await;

    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(["content_block_delta"; 8]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    for event in &events {
        assert_eq!(event.json()["type"], event.event.as_deref().unwrap());
    }

    let start = events[0].json();
    assert_eq!(start["message"]["model"], "claude-sonnet-4-5");
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["usage"]["input_tokens"], 8);
    assert_eq!(start["message"]["usage"]["output_tokens"], 1);

    let text: String = events[3..11]
        .iter()
        .map(|e| {
            let data = e.json();
            assert_eq!(data["delta"]["type"], "text_delta");
            data["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, whole["content"][0]["text"].as_str().unwrap());

    let delta = events[12].json();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 4, "capped by max_tokens");
}

#[tokio::test]
async fn models_use_anthropic_shape_when_anthropic_version_is_sent() {
    let mock = common::start().await;
    let url = format!("{}/v1/models", mock.base_url());
    let res = common::client()
        .get(&url)
        .header(VERSION.0, VERSION.1)
        .send()
        .await
        .unwrap();
    let body = json_body(res, 200).await;
    assert_eq!(body["has_more"], false);
    assert_eq!(body["data"][0]["type"], "model");
    assert!(body["data"][0]["display_name"].is_string());
    assert!(body.get("object").is_none());

    let res = common::client().get(&url).send().await.unwrap();
    assert_eq!(json_body(res, 200).await["object"], "list");
}

#[tokio::test]
async fn errors_use_anthropic_shape() {
    let mock = common::start().await;
    let res = post(
        &mock.base_url(),
        "/v1/messages",
        &[VERSION, ("x-mock-status", "529")],
        &messages_request(false, 10),
    )
    .await;
    let body = json_body(res, 529).await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(body["error"]["message"].is_string());

    let res = common::client()
        .post(format!("{}/v1/messages", mock.base_url()))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    let body = json_body(res, 400).await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}
