//! Server-sent-event streams: a producer task writes events into a channel
//! that the response body drains, so every event is flushed as produced.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::body::{ChannelBody, MockBody};
use super::gates::Gates;

/// How long a stream waits for one gate release before giving up.
pub(crate) const GATE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a stream waits for between content chunks.
pub(crate) struct Pacing {
    pub(crate) chunk_delay: Duration,
    /// Gate registry and name; when set it replaces `chunk_delay`.
    pub(crate) gate: Option<(Arc<Gates>, String)>,
}

/// The client went away; the producer should stop.
#[derive(Debug)]
pub(crate) struct Closed;

/// The producer's end of an event stream.
pub(crate) struct Sse {
    tx: mpsc::Sender<Bytes>,
    pacing: Pacing,
}

impl Sse {
    /// Sends `data: {json}` (OpenAI style).
    pub(crate) async fn data(&self, value: &Value) -> Result<(), Closed> {
        self.send(format!("data: {value}\n\n")).await
    }

    /// Sends `event: NAME` + `data: {json}` (Anthropic / Responses style).
    pub(crate) async fn event(&self, name: &str, value: &Value) -> Result<(), Closed> {
        self.send(format!("event: {name}\ndata: {value}\n\n")).await
    }

    /// Sends OpenAI's terminating `data: [DONE]`.
    pub(crate) async fn done(&self) -> Result<(), Closed> {
        self.send("data: [DONE]\n\n".to_owned()).await
    }

    /// Waits before content chunk `index`: nothing for the first, then one
    /// gate release (or the chunk delay when there is no gate). A gate that
    /// times out is dropped for the rest of the stream.
    pub(crate) async fn before_chunk(&mut self, index: usize) -> Result<(), Closed> {
        if index == 0 {
            return Ok(());
        }
        if let Some((gates, name)) = &self.pacing.gate {
            let released = tokio::select! {
                released = gates.wait(name, GATE_TIMEOUT) => released,
                _ = self.tx.closed() => return Err(Closed),
            };
            if !released {
                tracing::warn!(gate = %name, "gate not released in time; finishing stream");
                self.pacing.gate = None;
            }
            return Ok(());
        }
        if !self.pacing.chunk_delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(self.pacing.chunk_delay) => {}
                _ = self.tx.closed() => return Err(Closed),
            }
        }
        Ok(())
    }

    async fn send(&self, text: String) -> Result<(), Closed> {
        self.tx.send(Bytes::from(text)).await.map_err(|_| Closed)
    }
}

/// A `text/event-stream` response whose body is written by `produce`,
/// running in its own task. The stream ends when `produce` returns.
pub(crate) fn stream_response<F, Fut>(pacing: Pacing, produce: F) -> Response<MockBody>
where
    F: FnOnce(Sse) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Closed>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if produce(Sse { tx, pacing }).await.is_err() {
            tracing::debug!("client closed the stream early");
        }
    });
    let mut response = Response::new(ChannelBody::new(rx).boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
