//! Metering at the body level. Request bodies are counted, capped and
//! guarded against stalls as they stream up; response bodies are counted
//! and scanned for token usage as they stream down. When a response ends,
//! fails or is dropped (the client went away) the call's ledger row is
//! emitted exactly once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;

use super::respond::BoxError;
use crate::ledger::{EventSink, LedgerEvent};
use crate::usage::UsageObserver;

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("request body stalled for more than {0:?}")]
    Stalled(Duration),
}

/// Shared view of a request body's progress.
#[derive(Debug, Default)]
pub struct RequestProgress {
    pub bytes: AtomicU64,
    pub too_large: AtomicBool,
}

/// A request body that counts bytes, enforces a size cap and fails when
/// the client sends nothing for `idle`.
pub struct Counted<B> {
    inner: B,
    progress: Arc<RequestProgress>,
    limit: u64,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, progress: Arc<RequestProgress>, limit: u64, idle: Duration) -> Self {
        Self {
            inner,
            progress,
            limit,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let total = this
                        .progress
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if total > this.limit {
                        this.progress.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(
                            RequestBodyError::TooLarge(this.limit).into()
                        )));
                    }
                }
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(RequestBodyError::Stalled(this.idle).into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight;

impl InFlight {
    pub fn start() -> Self {
        metrics::gauge!("caracal_gateway_requests_in_flight").increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("caracal_gateway_requests_in_flight").decrement(1.0);
    }
}

/// Records the request metrics and emits the ledger row of a finished call.
pub fn finish(sink: &dyn EventSink, mut event: LedgerEvent, started: Instant) {
    let elapsed = started.elapsed();
    event.duration_ms = elapsed.as_millis().try_into().unwrap_or(u64::MAX);
    metrics::counter!(
        "caracal_gateway_requests_total",
        "decision" => event.decision.clone(),
        "code" => event.code.clone()
    )
    .increment(1);
    metrics::histogram!("caracal_gateway_request_duration_seconds", "mode" => event.mode.as_str())
        .record(elapsed.as_secs_f64());
    sink.emit(event);
}

/// State carried until the response body is done.
pub struct Pending {
    pub event: LedgerEvent,
    pub started: Instant,
    pub request: Arc<RequestProgress>,
    pub sink: Arc<dyn EventSink>,
    pub in_flight: InFlight,
}

/// A response body streamed to the caller while being counted and scanned
/// for usage. Frames pass through untouched and immediately.
pub struct Metered<B> {
    inner: B,
    observer: Option<UsageObserver>,
    bytes: u64,
    pending: Option<Pending>,
}

impl<B: HttpBody> Metered<B> {
    pub fn new(inner: B, observer: UsageObserver, pending: Pending) -> Self {
        let mut this = Self {
            inner,
            observer: Some(observer),
            bytes: 0,
            pending: Some(pending),
        };
        // hyper never polls a body that is already known to be empty.
        if this.inner.is_end_stream() {
            this.settle(true, None);
        }
        this
    }
}

impl<B> Metered<B> {
    /// Emits the ledger row (once). `complete` is false when the body was
    /// cut off; `error` says by what.
    fn settle(&mut self, complete: bool, error: Option<String>) {
        let Some(p) = self.pending.take() else { return };
        let mut event = p.event;
        event.request_bytes = p.request.bytes.load(Ordering::Relaxed);
        event.response_bytes = self.bytes;
        if let Some(observer) = self.observer.take() {
            let outcome = observer.finish(complete);
            if let Some(u) = outcome.usage() {
                event.input_tokens = Some(u.input_tokens);
                event.output_tokens = Some(u.output_tokens);
                event.cached_input_tokens = Some(u.cached_input_tokens);
                event.model = u.model.clone();
            }
            event.usage = Some(outcome.code().to_string());
        }
        if let Some(err) = error {
            event.detail = Some(err);
        } else if !complete {
            event.detail = Some("client disconnected before the response ended".into());
        }
        finish(p.sink.as_ref(), event, p.started);
        drop(p.in_flight);
    }
}

impl<B> HttpBody for Metered<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    if let Some(o) = this.observer.as_mut() {
                        o.observe(data);
                    }
                }
                // hyper may stop polling once the body reports its end.
                if this.inner.is_end_stream() {
                    this.settle(true, None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                this.settle(false, Some(format!("upstream body failed: {e}")));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.settle(true, None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        self.settle(false, None);
    }
}
