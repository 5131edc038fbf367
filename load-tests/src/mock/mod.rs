//! An OpenAI- and Anthropic-compatible fake provider.
//!
//! Serves plain HTTP/1.1 and h2c (prior knowledge) on one port, no TLS.
//! Responses have the shapes of the real APIs; streams are sent as
//! server-sent events, each chunk flushed as it is produced.
//!
//! # Endpoints
//!
//! | Route | Behaviour |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat; `"stream": true` streams, `stream_options.include_usage` adds the usage chunk |
//! | `POST /v1/completions` | OpenAI legacy completions (stream or not) |
//! | `POST /v1/embeddings` | one embedding per input string |
//! | `POST /v1/responses` | OpenAI Responses API (stream or not) |
//! | `GET /v1/models`, `GET /v1/models/{id}` | OpenAI shape, or Anthropic shape when `anthropic-version` is sent |
//! | `POST /v1/messages` | Anthropic messages (stream or not) |
//! | `GET /health` | `{"status":"ok"}` |
//! | `ANY /_mock/echo/...` | reads the whole body, returns `{method, path, query, version, headers, body_bytes}`; with `x-mock-echo-headers` every request header also comes back as `x-echo-NAME`, with `x-mock-echo-chunk: N` the answer streams in N-byte chunks (a reflecting upstream) |
//! | `POST /_mock/gates/{NAME}/release` | releases gate `NAME` once |
//!
//! Anything else gets a 404 in the OpenAI error shape. A body that is not a
//! JSON object gets a 400 in the provider's error shape. Missing fields take
//! defaults (`model` becomes `mock-model`); present fields of the wrong type
//! are a 400.
//!
//! # Usage numbers
//!
//! Deterministic: prompt/input tokens are `ceil(chars / 4)`, at least 1,
//! where `chars` counts the Unicode scalar values of the request's message
//! text (`messages[].content` for chat and messages, Anthropic `system`
//! excluded; `prompt` for completions; `input` for embeddings and
//! responses). Completion/output tokens are the configured
//! `completion_tokens`, capped by `max_completion_tokens`, `max_tokens` or
//! `max_output_tokens` when given. The model is echoed from the request.
//!
//! # Per-request controls (request headers, provider endpoints only)
//!
//! - `x-mock-latency-ms: N` — delay before the response headers.
//! - `x-mock-chunk-delay-ms: N` — delay between streamed content chunks.
//! - `x-mock-chunks: N` — content chunks in a streamed response.
//! - `x-mock-status: CODE` (400–599) — answer with that status and an error
//!   body in the provider's format (`retry-after: 1` on 429).
//! - `x-mock-usage: omit | malformed | partial` — leave usage out entirely,
//!   send `"usage": "malformed"` (not an object), or send only the
//!   prompt/input token count. Applies to every place usage appears,
//!   stream events included.
//! - `x-mock-usage-json: {…}` — report exactly this usage object instead
//!   (non-streamed responses, and OpenAI streams' usage chunk): e.g. the
//!   most a request could be billed, or input from server-side state.
//! - `x-mock-gate: NAME` — on a streamed response the first content chunk
//!   (and everything before it) is sent at once; before each later content
//!   chunk the stream waits for one release of gate `NAME` instead of the
//!   chunk delay. Releases are counted, so releasing early is fine. A wait
//!   gives up after 30 s, after which the rest of the stream is sent
//!   without waiting. The trailing events (finish, usage, `[DONE]`) follow
//!   the last content chunk immediately.
//!
//! A malformed control header is a 400.

mod anthropic;
mod body;
mod controls;
mod echo;
mod errors;
mod gates;
mod openai;
mod record;
mod request;
mod responses;
mod router;
mod server;
mod sse;
mod usage;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use record::RecordedRequest;

/// Server-wide defaults; per-request headers override them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// Delay before response headers.
    pub latency: Duration,
    /// Delay between streamed content chunks.
    pub chunk_delay: Duration,
    /// Content chunks per streamed response.
    pub chunks: usize,
    /// Completion/output tokens per response, before `max_tokens` capping.
    pub completion_tokens: u64,
}

impl Default for MockConfig {
    /// The CLI defaults: no latency, 20 ms between 8 chunks, 16 tokens.
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            chunk_delay: Duration::from_millis(20),
            chunks: 8,
            completion_tokens: 16,
        }
    }
}

/// State shared by every connection of one mock server.
pub(crate) struct State {
    pub(crate) config: MockConfig,
    pub(crate) gates: Arc<gates::Gates>,
    pub(crate) recorder: record::Recorder,
    ids: AtomicU64,
}

impl State {
    fn new(config: MockConfig) -> Self {
        Self {
            config,
            gates: Arc::new(gates::Gates::default()),
            recorder: record::Recorder::default(),
            ids: AtomicU64::new(1),
        }
    }

    /// A fresh id such as `chatcmpl-mock00000001`; unique per server.
    pub(crate) fn next_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}mock{n:08}")
    }
}

/// A running mock server. Dropping it stops the server as well, but only
/// [`MockHandle::shutdown`] waits for it to finish.
pub struct MockHandle {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MockHandle {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, with a wildcard bind address replaced by loopback
    /// so the URL is always connectable.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Lets one more chunk through gate `name`; counted if nobody waits yet.
    pub fn release_gate(&self, name: &str) {
        self.state.gates.release(name);
    }

    /// Requests seen so far, oldest first; only the last 1000 are kept.
    /// Gate releases over HTTP are not recorded.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorder.snapshot()
    }

    /// Stops accepting, lets open connections finish for up to 2 s, then
    /// closes the rest and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Binds `listen` (port 0 picks a free port) and serves in a tokio task.
pub async fn start(listen: SocketAddr, config: MockConfig) -> std::io::Result<MockHandle> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State::new(config));
    let (shutdown, signal) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, Arc::clone(&state), signal));
    tracing::info!(%addr, "mock provider listening");
    Ok(MockHandle {
        addr,
        state,
        shutdown,
        task,
    })
}
