//! `x-mock-gate`: chunk 1 reaches the client before chunk 2 is even sent.

mod common;

use std::time::Duration;

use common::{post, SseReader};
use serde_json::json;

/// Long enough that a chunk sent without waiting would have arrived.
const HELD: Duration = Duration::from_millis(200);

#[tokio::test]
async fn openai_stream_waits_for_each_release() {
    let mock = common::start().await;
    let req =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let headers = [("x-mock-gate", "chat-gate"), ("x-mock-chunks", "3")];
    let res = post(&mock.base_url(), "/v1/chat/completions", &headers, &req).await;
    let mut reader = SseReader::new(res);

    let first = reader.expect_event().await.json();
    assert!(!first["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(
        reader.next_within(HELD).await.is_err(),
        "chunk 2 must not be sent before the gate is released"
    );

    mock.release_gate("chat-gate");
    let second = reader.expect_event().await.json();
    assert!(second["choices"][0]["delta"]["content"].is_string());
    assert!(second["choices"][0]["delta"].get("role").is_none());
    assert!(
        reader.next_within(HELD).await.is_err(),
        "chunk 3 is gated too"
    );

    mock.release_gate("chat-gate");
    let third = reader.expect_event().await.json();
    assert!(third["choices"][0]["delta"]["content"].is_string());
    // After the last content chunk the trailer follows without a release.
    let finish = reader.expect_event().await.json();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(reader.expect_event().await.data, "[DONE]");
    assert!(reader
        .next_within(common::PATIENCE)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn anthropic_stream_gate_released_over_http() {
    let mock = common::start().await;
    let req = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "stream": true,
        "messages": [{"role": "user", "content": "hi"}]
    });
    let headers = [("x-mock-gate", "msg-gate"), ("x-mock-chunks", "2")];
    let res = post(&mock.base_url(), "/v1/messages", &headers, &req).await;
    let mut reader = SseReader::new(res);

    for name in [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
    ] {
        assert_eq!(reader.expect_event().await.event.as_deref(), Some(name));
    }
    assert!(
        reader.next_within(HELD).await.is_err(),
        "delta 2 must not be sent before the gate is released"
    );

    let url = format!("{}/_mock/gates/msg-gate/release", mock.base_url());
    let res = common::client().post(url).send().await.unwrap();
    assert_eq!(common::json_body(res, 200).await["released"], true);

    let second = reader.expect_event().await;
    assert_eq!(second.event.as_deref(), Some("content_block_delta"));
    let rest: Vec<String> = reader
        .collect()
        .await
        .into_iter()
        .map(|e| e.event.unwrap())
        .collect();
    assert_eq!(
        rest,
        ["content_block_stop", "message_delta", "message_stop"]
    );
    // Gate releases are control traffic and are not recorded.
    assert!(mock
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/_mock/gates")));
}

#[tokio::test]
async fn early_release_is_counted() {
    let mock = common::start().await;
    mock.release_gate("early");
    let req = json!({"model": "m", "prompt": "x", "stream": true});
    let headers = [("x-mock-gate", "early"), ("x-mock-chunks", "2")];
    let res = post(&mock.base_url(), "/v1/completions", &headers, &req).await;
    let events = SseReader::new(res).collect().await;
    // 2 content chunks, finish chunk, [DONE]; no hang.
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].data, "[DONE]");
}
