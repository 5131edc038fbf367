//! The typed per-call context that travels down the stack with the
//! request ([`Call`]), the request body type of the stack, and the error
//! every layer refuses with ([`Refusal`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::meter::RequestProgress;
use super::overload::InFlight;
use super::ConnInfo;
use crate::authn::Presented;
use crate::budget::charge::Charge;
use crate::catalog::Operation;
use crate::error::Denial;
use crate::ledger::{EventCode, EventKind, LedgerEvent, Retention};
use crate::model::{Decision, Mode, Principal};
use crate::provider::Provider;
use crate::snapshot::Snapshot;
use crate::usage::request::RequestFacts;

/// A request on its way down the stack, with what is known about it.
pub struct Call {
    pub req: Request<RequestBody>,
    pub ctx: Ctx,
}

/// Who is calling, as far as the connection knows.
#[derive(Debug)]
pub enum Caller {
    /// Credentials presented with this request (or why they cannot be read).
    Presented(Result<Option<Presented>, crate::authn::BadCredentials>),
    /// Authenticated when the CONNECT tunnel was opened.
    Tunnel { principal_id: String },
}

/// Where the call is going, as the agent named it.
#[derive(Debug, Clone)]
pub enum Target {
    /// A host name or address (CONNECT, a tunnel, an absolute-form request).
    Host {
        host: String,
        https: bool,
        port: Option<u16>,
    },
    /// A provider named by the first path segment (base_url mode).
    Provider { name: String },
}

/// The context of one call. Each layer reads what the layers above it
/// established and adds its own part.
pub struct Ctx {
    pub started: Instant,
    pub conn: Arc<ConnInfo>,
    /// The one snapshot that decides the whole call.
    pub snapshot: Arc<Snapshot>,
    /// What becomes the call's ledger row.
    pub record: CallRecord,
    pub caller: Option<Caller>,
    pub target: Option<Target>,
    /// Why the request names no usable target (refused by the route step).
    pub misnamed: Option<Denial>,
    /// The path and query to forward (base_url: without the provider
    /// prefix).
    pub path: String,
    pub principal: Option<Arc<Principal>>,
    pub provider: Option<Arc<Provider>>,
    pub operation: Option<Operation>,
    /// The request body's parsed facts (model, output limit, stream), when
    /// the body was read.
    pub facts: Option<RequestFacts>,
    /// What the call holds against its budgets and rate limits.
    pub charge: Option<Charge>,
    /// Hide the usage event the gateway asked for on the client's behalf.
    pub strip_usage_event: bool,
    /// The request body's progress as it streams up.
    pub progress: Arc<RequestProgress>,
    /// The call's place under the in-flight limit; it moves into the
    /// response body, so a stream holds it until it ends.
    pub in_flight: Option<InFlight>,
    /// The call's place under its principal's in-flight limit, when it has
    /// no global place to travel with (see `concurrency`).
    pub principal_slot: Option<super::concurrency::PrincipalSlot>,
}

impl Ctx {
    pub fn new(
        mode: Mode,
        method: &http::Method,
        conn: Arc<ConnInfo>,
        snapshot: Arc<Snapshot>,
    ) -> Self {
        Ctx {
            started: Instant::now(),
            conn,
            snapshot,
            record: CallRecord::new(mode, method),
            caller: None,
            target: None,
            misnamed: None,
            path: String::new(),
            principal: None,
            provider: None,
            operation: None,
            facts: None,
            charge: None,
            strip_usage_event: false,
            progress: Arc::default(),
            in_flight: None,
            principal_slot: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.record.mode
    }

    /// The authenticated principal. Only layers below `authenticate` ask;
    /// an absent one is a stack-order bug, refused rather than panicking.
    pub fn principal(&self) -> Result<&Arc<Principal>, Denial> {
        self.principal.as_ref().ok_or_else(|| missing("principal"))
    }

    /// The provider and operation, established by `route`.
    pub fn route(&self) -> Result<(&Arc<Provider>, &Operation), Denial> {
        match (&self.provider, &self.operation) {
            (Some(p), Some(o)) => Ok((p, o)),
            _ => Err(missing("route")),
        }
    }
}

fn missing(what: &str) -> Denial {
    Denial::new(
        crate::error::Code::Internal,
        format!("the call reached a step before its {what} was known"),
    )
}

/// What the data path knows about a call so far; it becomes the ledger row.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub mode: Mode,
    pub method: http::Method,
    pub principal_id: Option<String>,
    pub provider: Option<String>,
    pub resource: Option<String>,
    pub action: Option<&'static str>,
    pub url: Option<String>,
    /// The mandate decided on (allowed under, or refused for).
    pub mandate_id: Option<String>,
}

impl CallRecord {
    pub fn new(mode: Mode, method: &http::Method) -> Self {
        Self {
            mode,
            method: method.clone(),
            principal_id: None,
            provider: None,
            resource: None,
            action: None,
            url: None,
            mandate_id: None,
        }
    }

    /// The ledger row for this call with its decision and code.
    pub fn event(&self, decision: Decision, code: impl Into<EventCode>) -> LedgerEvent {
        let mut e = LedgerEvent::new(EventKind::Call, self.mode, decision, code);
        e.principal_id = self.principal_id.clone();
        e.provider = self.provider.clone();
        e.resource = self.resource.clone();
        e.action = self.action.map(str::to_string);
        e.method = Some(self.method.as_str().to_string());
        e.url = self.url.clone().map(crate::ledger::bounded);
        e.mandate_id = self.mandate_id.clone();
        e
    }
}

/// A refused call: why, and what is known of it (for its ledger row, its
/// response, and the request body still to drain). Every layer refuses
/// with one; they all leave through [`super::refuse::refuse`].
pub struct Refusal(Box<Refused>);

pub struct Refused {
    pub denial: Denial,
    pub ctx: Ctx,
    /// What is left of the request body (drained before answering).
    pub body: Option<RequestBody>,
    pub retention: Retention,
}

impl Refusal {
    /// Refuses `call` with `denial`; its row may be shed under pressure
    /// (nothing reached a provider).
    pub fn new(denial: Denial, call: Call) -> Self {
        let Call { req, ctx } = call;
        Refusal(Box::new(Refused {
            denial,
            ctx,
            body: Some(req.into_body()),
            retention: Retention::Shed,
        }))
    }

    /// Refuses a call whose request is gone (it was sent upstream): its
    /// row is always kept.
    pub fn after_forwarding(denial: Denial, ctx: Ctx) -> Self {
        Refusal(Box::new(Refused {
            denial,
            ctx,
            body: None,
            retention: Retention::Keep,
        }))
    }

    pub fn into_inner(self) -> Refused {
        *self.0
    }

    pub fn denial(&self) -> &Denial {
        &self.0.denial
    }
}

impl std::fmt::Debug for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Refusal({})", self.0.denial)
    }
}

/// The request body of the stack: as received, or read whole by a layer
/// that had to judge it (and possibly rewrote it).
pub enum RequestBody {
    Incoming(Incoming),
    Full(Option<Bytes>),
}

impl RequestBody {
    pub fn full(bytes: Bytes) -> Self {
        RequestBody::Full(Some(bytes))
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            RequestBody::Incoming(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(b) => b.is_end_stream(),
            RequestBody::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(b) => b.size_hint(),
            RequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
