//! The one way out for a refusal: its ledger row (and, for a mandate
//! denial, its authority event), its metrics and log line, and its JSON
//! response with the stable code. The request body is drained first
//! (bounded), because a response sent while the client is still uploading
//! makes HTTP/2 reset the stream, and some clients (curl among them) then
//! report a framing error instead of the refusal.

use std::time::Duration;

use http::{HeaderValue, Response};
use http_body_util::BodyExt;

use super::call::{Refusal, Refused, RequestBody};
use super::meter::finish;
use super::respond::{self, Body};
use crate::ledger::{bounded, EventKind, EventSink};

/// Most of a refused request's body that is read (and dropped) before the
/// refusal is sent, and how long that may take.
const DRAIN_LIMIT: usize = 256 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Records `refusal` and answers it.
pub async fn refuse(sink: &dyn EventSink, refusal: Refusal) -> Response<Body> {
    let Refused {
        denial,
        ctx,
        body,
        retention,
    } = refusal.into_inner();
    let code = denial.code;
    let mode = ctx.mode();
    let mut event = ctx.record.event(code.decision(), code);
    event.status = Some(code.status(mode).as_u16());
    event.detail = Some(bounded(denial.message.clone()));
    tracing::info!(
        code = code.as_str(),
        principal = ctx.record.principal_id.as_deref().unwrap_or("-"),
        url = ctx.record.url.as_deref().unwrap_or("-"),
        "refused: {}",
        denial.message
    );
    // A mandate refusal is also an authority event, next to the call's
    // row, so `ledger query --kind authority` lists denials with issues
    // and revocations.
    let authority = code.is_authority().then(|| {
        let mut a = event.clone();
        a.id = uuid::Uuid::now_v7().to_string();
        a.kind = EventKind::Authority;
        a.detail = Some(bounded(format!(
            "call {} denied: {}",
            event.id, denial.message
        )));
        a
    });
    let event_id = HeaderValue::from_str(&event.id).ok();
    finish(sink, event, ctx.started, retention);
    if let Some(a) = authority {
        sink.emit(a, retention);
    }
    // What the call held (its place in flight, a rate ticket, a
    // reservation) is given back before the body is drained.
    drop(ctx);
    let mut resp = respond::denial(&denial, mode);
    if let Some(id) = event_id {
        // The caller can look the refusal up in the ledger.
        resp.headers_mut().insert("x-caracal-event-id", id);
    }
    if let Some(body) = body {
        drain(body).await;
    }
    resp
}

/// Reads what is left of a refused request's body, within bounds.
async fn drain(mut body: RequestBody) {
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while read < DRAIN_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    })
    .await;
}
