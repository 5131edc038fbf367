//! The request stack: every request on every connection — outer, or
//! inside a CONNECT tunnel — passes the layers built here, top to bottom.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tower::util::BoxCloneService;
use tower::ServiceBuilder;
use tower_http::classify::{NeverClassifyEos, ServerErrorsFailureClass};
use tower_http::trace::{
    DefaultOnBodyChunk, DefaultOnEos, DefaultOnFailure, DefaultOnRequest, DefaultOnResponse,
    TraceLayer,
};
use tracing::Level;

use super::respond::Body;
use super::{
    allowlist, authenticate, budget, concurrency, connect, entry, forward, limits, mandate, meter,
    overload, price, rate, route, Shared,
};

/// A response body as the stack returns it (traced).
pub type StackBody = tower_http::trace::ResponseBody<
    Body,
    NeverClassifyEos<ServerErrorsFailureClass>,
    DefaultOnBodyChunk,
    DefaultOnEos,
    DefaultOnFailure,
>;

/// The request stack, cloned per request by each connection.
pub type Stack = BoxCloneService<Request<Incoming>, Response<Body>, Infallible>;

/// Builds the stack. Transport concerns first, then one layer per
/// enforcement concern (each a thin adapter over a pure function of the
/// snapshot), then the forwarding service. A refusal anywhere below
/// `entry` travels back up as an error and leaves through one function.
pub fn stack(shared: &Arc<Shared>) -> Stack {
    let config = &shared.config;
    let limits = &config.limits;
    let service = ServiceBuilder::new()
        // One body type for every connection (the traced body, boxed).
        .map_response(|r: Response<StackBody>| r.map(|b| b.boxed_unsync()))
        // A span per request, opened before anything can fail, so every
        // line logged for the call carries it (debug level: free when off).
        .layer(
            TraceLayer::new_for_http()
                .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        // The call's context (way in, start time, the one snapshot that
        // decides it); /health is answered here, under any load; refusals
        // from below are recorded and answered here.
        .layer(entry::layer(shared.clone()))
        // Shed load before doing any work: past max_in_flight, 503
        // overloaded at once. The place is held until the response ends.
        .layer(overload::layer(limits.max_in_flight))
        // Oversized headers and declared bodies, before anything reads them.
        .layer(limits::layer(limits))
        // Fail closed: no call is taken on that the ledger cannot record,
        // nor decided on a state not confirmed current (distributed).
        .layer(limits::recordable(
            shared.sink.clone(),
            shared.snapshot_current.clone(),
        ))
        // Identity first, so an unauthenticated caller learns nothing else.
        .layer(authenticate::layer())
        // One principal's share of the gateway: past its in-flight limit,
        // 429 at once (the place is held until the response ends).
        .layer(concurrency::layer(limits.max_in_flight_per_principal))
        // The provider and catalog operation (path hygiene, destination
        // guard, tunnel host pinning) that every later step speaks about.
        .layer(route::layer())
        // A CONNECT stops here: it opens a tunnel whose requests come back
        // to the top of this stack one by one.
        .layer(connect::layer(shared.clone()))
        // Where may this principal go at all?
        .layer(allowlist::layer())
        // Does a current mandate, under a current policy, cover the call?
        .layer(mandate::layer(shared.clock_skew_secs()))
        // Bodies that must be judged are read here, priced at their worst
        // case, and rewritten so that worst case holds and usage is reported.
        .layer(price::layer(
            limits.max_request_body_bytes,
            limits.idle_timeout,
        ))
        // Requests and tokens per minute, before budgets: cheaper, and a
        // rate refusal holds no budget (a later refusal gives the ticket back).
        .layer(rate::layer(shared.limiter.clone()))
        // The worst case, reserved in every budget at once, or 402.
        .layer(budget::layer(shared.counters.clone()))
        // From here the call is owed a ledger row; usage is read from the
        // response as it streams, and the charge settled with the row.
        .layer(meter::layer(
            shared.sink.clone(),
            limits.upstream_response_timeout,
        ))
        // Credentials injected, the call sent; provider time is bounded by
        // upstream_response_timeout (headers) and idle_timeout (bodies).
        .service(forward::Forward::new(
            shared.upstream.clone(),
            limits.clone(),
        ));
    BoxCloneService::new(service)
}
