//! Helpers shared by the mock provider's integration tests.
#![allow(dead_code)]

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use caracal_load_tests::mock::{self, MockConfig, MockHandle};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A mock on a free port with the default config but a 1 ms chunk delay.
pub async fn start() -> MockHandle {
    let config = MockConfig {
        chunk_delay: Duration::from_millis(1),
        ..MockConfig::default()
    };
    mock::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("mock starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

/// Reads server-sent events off a response as they arrive.
pub struct SseReader {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "stream status");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            stream: Box::pin(response.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event, or `None` at the end of the stream. Cancel-safe.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                return Some(parse_event(&raw));
            }
            match self.stream.next().await {
                Some(chunk) => {
                    let chunk = chunk.expect("stream chunk");
                    self.buf
                        .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
                }
                None => {
                    assert!(self.buf.trim().is_empty(), "trailing bytes: {:?}", self.buf);
                    return None;
                }
            }
        }
    }

    /// The next event if one arrives within `wait`; `Err(())` on timeout.
    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<SseEvent>, ()> {
        tokio::time::timeout(wait, self.next())
            .await
            .map_err(|_| ())
    }

    /// The next event, failing the test if none comes within [`PATIENCE`].
    pub async fn expect_event(&mut self) -> SseEvent {
        self.next_within(PATIENCE)
            .await
            .expect("event in time")
            .expect("stream not ended")
    }

    /// Every remaining event.
    pub async fn collect(mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = tokio::time::timeout(PATIENCE, self.next())
            .await
            .expect("stream ends in time")
        {
            events.push(event);
        }
        events
    }
}

fn parse_event(raw: &str) -> SseEvent {
    let mut event = None;
    let mut data = Vec::new();
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v);
        } else if !line.is_empty() {
            panic!("unexpected SSE line: {line:?}");
        }
    }
    SseEvent {
        event,
        data: data.join("\n"),
    }
}

/// POSTs `body` as JSON to `base + path` with extra `headers`.
pub async fn post(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut request = client().post(format!("{base}{path}")).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request sent")
}

/// The body of a non-streamed response as JSON, after checking `status`.
pub async fn json_body(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    response.json().await.expect("JSON body")
}
