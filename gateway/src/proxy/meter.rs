//! Metering at the body level. Request bodies are counted, capped and
//! guarded against stalls as they stream up; response bodies are counted,
//! guarded against stalls and scanned for token usage as they stream down.
//! Every forwarded call's ledger row is owed from the moment it is sent
//! upstream ([`Pending`]) and is emitted exactly once: when the response
//! ends, fails or is dropped, or — when the client goes away before the
//! provider answered — as a cancelled call.
//!
//! [`MeterLayer`] is the stack's last enforcement layer: it owes the row,
//! hands the request to the forwarding service, and wraps the answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;

use super::call::{Call, Refusal};
use super::forward::Outbound;
use super::overload::InFlight;
use super::respond::{Body, BoxError};
use super::step::Answer;
use crate::budget::charge::{price_after, Charge, Ending};
use crate::error::{Code, Denial};
use crate::ledger::{EventCode, EventSink, LedgerEvent, Retention};
use crate::model::Decision;
use crate::pricing::Pricebook;
use crate::redact::{Masker, Secrets};
use crate::usage::request::UsageChunkStripper;
use crate::usage::Usage;
use crate::usage::{UsageObserver, UsageOutcome};

/// Why a body was cut off by the gateway.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("no data for {0:?}")]
    Stalled(Duration),
}

/// A timer that fires when a body makes no progress for `idle`.
struct Stall {
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Stall {
    fn new(idle: Duration) -> Self {
        Self {
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// Progress was made: start the wait again.
    fn reset(&mut self) {
        let deadline = tokio::time::Instant::now() + self.idle;
        self.timer.as_mut().reset(deadline);
    }

    /// True when the body has been idle too long (registers a wake-up otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }
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
    stall: Stall,
}

impl<B> Counted<B> {
    pub fn new(inner: B, progress: Arc<RequestProgress>, limit: u64, idle: Duration) -> Self {
        Self {
            inner,
            progress,
            limit,
            stall: Stall::new(idle),
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
                    let len = data.len() as u64;
                    let total = this.progress.bytes.fetch_add(len, Ordering::Relaxed) + len;
                    if total > this.limit {
                        this.progress.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit).into())));
                    }
                }
                this.stall.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.stall.expired(cx) => {
                Poll::Ready(Some(Err(BodyError::Stalled(this.stall.idle).into())))
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

/// Records the request metrics and emits the ledger row of a finished call.
pub fn finish(
    sink: &dyn EventSink,
    mut event: LedgerEvent,
    started: Instant,
    retention: Retention,
) {
    let elapsed = started.elapsed();
    event.duration_ms = elapsed.as_millis().try_into().unwrap_or(u64::MAX);
    event.duration_us = elapsed.as_micros().try_into().unwrap_or(u64::MAX);
    metrics::counter!(
        "caracal_gateway_requests_total",
        "decision" => event.decision.as_str(),
        "code" => event.code.as_str()
    )
    .increment(1);
    metrics::histogram!("caracal_gateway_request_duration_seconds", "mode" => event.mode.as_str())
        .record(elapsed.as_secs_f64());
    sink.emit(event, retention);
}

/// Longest SSE event the usage stripper holds before it gives up.
const USAGE_EVENT_CAP: usize = 64 * 1024;

/// How a forwarded call's cost is recorded.
enum Pricing {
    /// A budgeted call: its charge is settled with the row.
    Charge(Box<Charge>),
    /// No budget applies: the row is priced from the usage, for the
    /// ledger only.
    After {
        prices: Arc<Pricebook>,
        provider: String,
    },
}

/// The ledger row a forwarded call owes. Dropped while still armed (the
/// client went away before the provider's response began), it records the
/// call as `client_cancelled`: the provider may have done — and billed —
/// the work, so the call must not vanish from the ledger.
pub struct Pending {
    event: Option<LedgerEvent>,
    pricing: Option<Pricing>,
    started: Instant,
    request: Arc<RequestProgress>,
    sink: Arc<dyn EventSink>,
    _in_flight: Option<InFlight>,
}

impl Pending {
    pub fn new(
        event: LedgerEvent,
        started: Instant,
        request: Arc<RequestProgress>,
        sink: Arc<dyn EventSink>,
        in_flight: Option<InFlight>,
    ) -> Self {
        Self {
            event: Some(event),
            pricing: None,
            started,
            request,
            sink,
            _in_flight: in_flight,
        }
    }

    /// The event id (also sent to the caller as `x-caracal-event-id`).
    pub fn id(&self) -> &str {
        self.event.as_ref().map_or("", |e| e.id.as_str())
    }

    pub fn set_status(&mut self, status: u16) {
        if let Some(e) = self.event.as_mut() {
            e.status = Some(status);
        }
    }

    /// Attaches the call's budget charge: it is settled with the row.
    pub fn set_charge(&mut self, charge: Charge) {
        self.pricing = Some(Pricing::Charge(Box::new(charge)));
    }

    /// Records the call's cost from `prices` (no budget applies).
    pub fn set_prices(&mut self, prices: Arc<Pricebook>, provider: &str) {
        self.pricing = Some(Pricing::After {
            prices,
            provider: provider.to_string(),
        });
    }

    /// The caller records this call another way (a refusal row); what it
    /// holds is released.
    pub fn disarm(mut self) {
        self.event = None;
        self.pricing = None;
    }

    /// Emits the row, completed by `fill`, settling the charge with
    /// `usage` (the provider's usage when it was read in full).
    fn emit(&mut self, usage: Option<&Usage>, fill: impl FnOnce(&mut LedgerEvent)) {
        let Some(mut event) = self.event.take() else {
            return;
        };
        event.request_bytes = self.request.bytes.load(Ordering::Relaxed);
        fill(&mut event);
        let settled = match self.pricing.take() {
            Some(Pricing::Charge(charge)) => {
                let end = Ending {
                    status: event.status,
                    usage_code: event.usage,
                    usage,
                };
                Some(charge.settle(end, crate::clock::now()))
            }
            Some(Pricing::After { prices, provider }) => Some(price_after(
                &prices,
                &provider,
                event.model.as_deref(),
                usage,
            )),
            None => None,
        };
        if let Some(s) = settled {
            event.cost = s.cost;
            event.currency = s.currency.map(|c| c.to_string());
            event.cost_basis = Some(s.basis);
            event.reserved = s.reserved;
        }
        finish(self.sink.as_ref(), event, self.started, Retention::Keep);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.emit(None, |e| {
            e.decision = Decision::Error;
            e.code = Code::ClientCancelled.into();
            e.status = None;
            e.detail = Some("the client went away before the provider answered".into());
        });
    }
}

/// A response body streamed to the caller while being counted and scanned
/// for usage. Frames pass through untouched and immediately; a provider
/// that sends nothing for `idle` is cut off.
pub struct Metered<B> {
    inner: B,
    observer: Option<UsageObserver>,
    /// Removes the usage event the gateway asked for on the client's behalf.
    strip: Option<UsageChunkStripper>,
    /// Masks the provider's credentials, should the body carry them.
    mask: Option<Masker>,
    /// The stripper's last held bytes went out; the body is over.
    ended: bool,
    bytes: u64,
    pending: Option<Pending>,
    stall: Stall,
}

impl<B: HttpBody> Metered<B> {
    pub fn new(inner: B, observer: UsageObserver, pending: Pending, idle: Duration) -> Self {
        let mut this = Self {
            inner,
            observer: Some(observer),
            strip: None,
            mask: None,
            ended: false,
            bytes: 0,
            pending: Some(pending),
            stall: Stall::new(idle),
        };
        // hyper never polls a body that is already known to be empty.
        if this.inner.is_end_stream() {
            this.settle(true, None);
        }
        this
    }
}

impl<B> Metered<B> {
    /// Drops the provider's usage-only SSE event before the client sees it
    /// (the gateway added `stream_options.include_usage`; the client did
    /// not ask for it).
    pub fn strip_usage_event(mut self) -> Self {
        self.strip = Some(UsageChunkStripper::new(USAGE_EVENT_CAP));
        self
    }

    /// Masks `secrets` wherever they appear in the body.
    pub fn mask(mut self, secrets: &Secrets) -> Self {
        self.mask = Some(secrets.masker());
        self
    }

    /// The client-bound bytes of `data` after the body's filters (usage
    /// event stripped, secrets masked); `None` when no filter applies.
    /// `end`: the body ends with this chunk; held bytes go out with it.
    fn filter(&mut self, data: &Bytes, end: bool) -> Option<Bytes> {
        let mut out = None;
        if let Some(strip) = self.strip.as_mut() {
            let mut o = strip.push(data);
            if end {
                o.extend(strip.finish());
            }
            out = Some(Bytes::from(o));
        }
        if let Some(mask) = self.mask.as_mut() {
            let mut o = mask.push_bytes(out.take().unwrap_or_else(|| data.clone()));
            if end && mask.holding() {
                let rest = mask.finish();
                o = Bytes::from([&o[..], &rest[..]].concat());
            }
            if end {
                let masked = mask.take_masked();
                if masked > 0 {
                    metrics::counter!("caracal_credentials_masked_total", "where" => "body")
                        .increment(masked);
                }
            }
            out = Some(o);
        }
        out
    }

    /// Emits the ledger row (once). `complete` is false when the body was
    /// cut off; `error` says by what.
    fn settle(&mut self, complete: bool, error: Option<String>) {
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        let bytes = self.bytes;
        let outcome = self.observer.take().map(|o| o.finish(complete));
        // Only complete usage prices a call; partial counts are not a cost.
        let found = match &outcome {
            Some(UsageOutcome::Found(u)) => Some(u.clone()),
            _ => None,
        };
        pending.emit(found.as_ref(), |event| {
            event.response_bytes = bytes;
            if let Some(outcome) = outcome {
                if let Some(u) = outcome.usage() {
                    event.input_tokens = Some(u.input_tokens);
                    event.output_tokens = Some(u.output_tokens);
                    event.cached_input_tokens = Some(u.cached_input_tokens);
                    event.model = u.model.clone();
                }
                event.usage = Some(outcome.code());
            }
            event.detail = match error {
                Some(err) => Some(err),
                None if !complete => Some("client disconnected before the response ended".into()),
                None => None,
            };
        });
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
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(mut frame))) => {
                let end = this.inner.is_end_stream();
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    if let Some(o) = this.observer.as_mut() {
                        o.observe(data);
                    }
                    let data = data.clone();
                    if let Some(out) = this.filter(&data, end) {
                        frame = Frame::data(out);
                    }
                }
                this.stall.reset();
                // hyper may stop polling once the body reports its end.
                if end {
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
                this.ended = true;
                match this.filter(&Bytes::new(), true) {
                    Some(rest) if !rest.is_empty() => Poll::Ready(Some(Ok(Frame::data(rest)))),
                    _ => Poll::Ready(None),
                }
            }
            Poll::Pending if this.stall.expired(cx) => {
                let e = BodyError::Stalled(this.stall.idle);
                this.settle(false, Some(format!("provider stream stalled: {e}")));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (self.strip.is_none() && self.mask.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.strip.is_some() {
            // Stripping changes the length.
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        self.settle(false, None);
    }
}

/// Masks the provider's credentials in response header values (an
/// upstream that reflects request headers).
fn mask_headers(headers: &mut http::HeaderMap, secrets: &Secrets) {
    let mut masked = 0;
    for value in headers.values_mut() {
        if !secrets.found_in(value.as_bytes()) {
            continue;
        }
        let mut bytes = value.as_bytes().to_vec();
        secrets.mask(&mut bytes);
        // `*` is a valid header byte: this cannot fail.
        if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
            *value = v;
            masked += 1;
        }
    }
    if masked > 0 {
        metrics::counter!("caracal_credentials_masked_total", "where" => "header")
            .increment(masked);
    }
}

/// Most a JSON response is buffered (as a copy) to read its usage.
const USAGE_CAP: usize = 4 << 20;

/// The meter layer: wraps the forwarding service.
#[derive(Clone)]
pub struct MeterLayer {
    sink: Arc<dyn EventSink>,
    /// A provider that sends nothing for this long is cut off.
    idle: Duration,
}

pub fn layer(sink: Arc<dyn EventSink>, idle: Duration) -> MeterLayer {
    MeterLayer { sink, idle }
}

impl<F> tower::Layer<F> for MeterLayer {
    type Service = Meter<F>;

    fn layer(&self, forward: F) -> Self::Service {
        Meter {
            sink: self.sink.clone(),
            idle: self.idle,
            forward,
        }
    }
}

#[derive(Clone)]
pub struct Meter<F> {
    sink: Arc<dyn EventSink>,
    idle: Duration,
    forward: F,
}

impl<F> tower::Service<Call> for Meter<F>
where
    F: tower::Service<Outbound, Response = http::Response<hyper::body::Incoming>, Error = Denial>,
    F::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Refusal;
    type Future = futures_util::future::BoxFuture<'static, Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        // The forwarding service is always ready (its client pools).
        match self.forward.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let Call { req, mut ctx } = call;
        let provider = match ctx.route() {
            Ok((p, _)) => p.clone(),
            Err(d) => {
                let refusal = Refusal::new(d, Call { req, ctx });
                return Box::pin(std::future::ready(Err(refusal)));
            }
        };
        // From here on the call is owed a ledger row, even if the client
        // goes away before the provider answers.
        let event = ctx.record.event(Decision::Allow, EventCode::OK);
        let mut pending = Pending::new(
            event,
            ctx.started,
            ctx.progress.clone(),
            self.sink.clone(),
            ctx.in_flight.take(),
        );
        match ctx.charge.take() {
            Some(charge) => pending.set_charge(charge),
            None => pending.set_prices(ctx.snapshot.pricebook.clone(), provider.name()),
        }
        let strip = ctx.strip_usage_event;
        let outbound = Outbound {
            req,
            path: std::mem::take(&mut ctx.path),
            provider: provider.clone(),
            progress: ctx.progress.clone(),
        };
        let sent = self.forward.call(outbound);
        let idle = self.idle;
        Box::pin(async move {
            let response = match sent.await {
                Ok(r) => r,
                Err(d) => {
                    pending.disarm();
                    return Err(Refusal::after_forwarding(d, ctx));
                }
            };
            drop(ctx);
            Ok(metered(response, &provider, pending, idle, strip))
        })
    }
}

/// The response the caller gets: the provider's, with hop-by-hop headers
/// removed, the ledger event id added, and its body metered.
fn metered(
    response: http::Response<hyper::body::Incoming>,
    provider: &crate::provider::Provider,
    mut pending: Pending,
    idle: Duration,
    strip: bool,
) -> http::Response<Body> {
    use http::header::{self, HeaderName, HeaderValue};
    use http_body_util::BodyExt;
    let (mut parts, body) = response.into_parts();
    // The upstream's own reason phrase would be written verbatim (and could
    // carry a reflected credential): the client gets the standard one.
    parts.extensions.remove::<hyper::ext::ReasonPhrase>();
    // A message with Transfer-Encoding is framed by it, whatever its
    // Content-Length says; the body is re-framed here, so an intermediary
    // must drop the length (RFC 9112 §6.3), or the client reads a body cut
    // to it.
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    super::forward::strip_hop_by_hop(&mut parts.headers);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let observer = UsageObserver::new(
        crate::usage::BodyKind::from_content_type(content_type),
        provider.dialect(),
        USAGE_CAP,
    );
    pending.set_status(parts.status.as_u16());
    if let Ok(v) = HeaderValue::from_str(pending.id()) {
        parts
            .headers
            .insert(HeaderName::from_static("x-caracal-event-id"), v);
    }
    let mut body = Metered::new(body, observer, pending, idle);
    if strip {
        body = body.strip_usage_event();
        // The length changes when the event is removed.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    if let Some(secrets) = &provider.secrets {
        mask_headers(&mut parts.headers, secrets);
        // Masking keeps every length.
        body = body.mask(secrets);
    }
    http::Response::from_parts(parts, body.boxed_unsync())
}
