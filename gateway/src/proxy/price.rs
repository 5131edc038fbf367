//! Price: the calls that must be judged by their body have it read
//! (bounded) and parsed here — every call of a principal with budgets or
//! rate limits, and every OpenAI-style chat or completions call (to learn
//! whether it streams). A budgeted call is priced at its worst case, and
//! the request is rewritten so that worst case holds (an output limit is
//! added when it sets none); a stream that did not ask for its usage gets
//! `stream_options.include_usage`, hidden again on the way back, so every
//! such call has tokens and a cost in the ledger whatever its principal.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;

use super::call::{Call, Refusal, RequestBody};
use super::step::{AsyncStep, AsyncStepLayer};
use crate::budget::charge::{self, output_limit_field, Charge, Plan, Unpriceable};
use crate::error::{Code, Denial};
use crate::usage::request::{self, RequestError, RequestFacts};
use crate::usage::Dialect;

/// Whether a call's streamed response reports usage only when asked
/// (`stream_options.include_usage`): OpenAI chat and completions. The
/// Responses API always reports it in its final event.
pub fn usage_on_request(dialect: Dialect, resource: &str) -> bool {
    dialect == Dialect::OpenAi && matches!(resource, "chat.completions" | "completions")
}

/// What the price step decided about a body it read.
#[derive(Debug, Default)]
pub struct Judged {
    /// The body to forward (rewritten or not).
    pub body: Bytes,
    pub facts: Option<RequestFacts>,
    /// The usage event was added for the client and must be hidden.
    pub strip_usage_event: bool,
}

/// Parses `body` and rewrites it: an output limit for a budgeted call that
/// sets none (`plan`), `include_usage` for a stream that reports usage only
/// when asked. Pure; `Err` is the refusal.
pub fn judge(
    dialect: Dialect,
    resource: &str,
    body: Bytes,
    plan: Option<&Plan>,
) -> Result<Judged, Denial> {
    if body.is_empty() {
        return Ok(Judged {
            body,
            ..Judged::default()
        });
    }
    let facts: RequestFacts = match request::facts(dialect, &body) {
        Ok(f) => f,
        // Not JSON (e.g. a multipart upload): priced per request, if at all.
        Err(RequestError::NotJson) => {
            return Ok(Judged {
                body,
                ..Judged::default()
            })
        }
        Err(e) => return Err(Denial::new(Code::BadRequest, e.to_string())),
    };
    let mut body = body;
    let mut facts = facts;
    if let (Some(plan), Some(_), Some(field)) =
        (plan, &facts.model, output_limit_field(dialect, resource))
    {
        // Only the limit the operation honours bounds the output; without
        // one, the budget's is written in (whatever other members say).
        match charge::honoured_limit(dialect, resource, &facts.limits) {
            Some(limit) => facts.max_output_tokens = Some(limit),
            None => {
                let unset = RequestFacts {
                    max_output_tokens: None,
                    ..facts.clone()
                };
                let cap = plan.max_output_tokens;
                match request::cap_output_tokens_given(&body, &unset, field, cap) {
                    Ok(Some(capped)) => {
                        body = Bytes::from(capped);
                        facts.max_output_tokens = Some(cap);
                    }
                    // Not reached for a body with facts; never priced on a guess.
                    _ => {
                        return Err(Denial::new(
                            Code::BadRequest,
                            format!("the request's {field} could not be set"),
                        ))
                    }
                }
            }
        }
    }
    let mut strip_usage_event = false;
    if usage_on_request(dialect, resource) {
        if let Ok(Some(rewritten)) = request::add_include_usage_given(&body, &facts) {
            strip_usage_event = true;
            body = Bytes::from(rewritten);
        }
    }
    // The provider reads the body as forwarded: its bytes bound the input.
    let facts = RequestFacts {
        input_bytes: body.len() as u64,
        ..facts
    };
    Ok(Judged {
        body,
        facts: Some(facts),
        strip_usage_event,
    })
}

/// The price step: reads a body within `max_body` bytes, giving up on a
/// client that sends nothing for `idle`.
pub struct Price {
    max_body: u64,
    idle: Duration,
}

pub fn layer(max_body: u64, idle: Duration) -> AsyncStepLayer<Price> {
    AsyncStepLayer::new(Price { max_body, idle })
}

/// The plan (budgets and rate limits) of the call's principal, and whether
/// its body must be read at all.
fn plan(call: &Call) -> (Option<Arc<Plan>>, bool) {
    let (Ok(principal), Ok((provider, operation))) = (call.ctx.principal(), call.ctx.route())
    else {
        return (None, false);
    };
    let plan = call.ctx.snapshot.budgets.get(&principal.id).cloned();
    let read = plan.is_some() || usage_on_request(provider.dialect(), &operation.resource);
    (plan, read)
}

impl AsyncStep for Price {
    fn applies(&self, call: &Call) -> bool {
        plan(call).1
    }

    fn run(self: Arc<Self>, call: Call) -> BoxFuture<'static, Result<Call, Refusal>> {
        Box::pin(async move {
            let (plan, _) = plan(&call);
            let Call { req, mut ctx } = call;
            let (mut parts, body) = req.into_parts();
            let bytes = match read_body(body, self.max_body, self.idle).await {
                Ok(b) => b,
                Err(d) => return Err(refuse(d, parts, ctx)),
            };
            let (provider, operation) = match ctx.route() {
                Ok((p, o)) => (p.clone(), o.clone()),
                Err(d) => return Err(refuse(d, parts, ctx)),
            };
            let judged = match judge(
                provider.dialect(),
                &operation.resource,
                bytes,
                plan.as_deref(),
            ) {
                Ok(j) => j,
                Err(d) => return Err(refuse(d, parts, ctx)),
            };
            if let Some(plan) = &plan {
                let priced = charge::price(
                    &ctx.snapshot.pricebook,
                    provider.name(),
                    provider.dialect(),
                    &operation.resource,
                    operation.action,
                    judged.facts.as_ref(),
                    plan.max_output_tokens,
                )
                .and_then(|p| {
                    if !plan.lines.is_empty() {
                        charge::check_currency(&plan.lines, p.estimate)?;
                    }
                    Ok(p)
                });
                match priced {
                    Ok(priced) => {
                        ctx.charge = Some(Charge {
                            prices: ctx.snapshot.pricebook.clone(),
                            priced,
                            ticket: None,
                            reservation: None,
                        })
                    }
                    Err(e) => return Err(refuse(unpriceable(e), parts, ctx)),
                }
            }
            ctx.facts = judged.facts;
            ctx.strip_usage_event = judged.strip_usage_event;
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, judged.body.len().into());
            let req = http::Request::from_parts(parts, RequestBody::full(judged.body));
            Ok(Call { req, ctx })
        })
    }
}

fn refuse(d: Denial, parts: http::request::Parts, ctx: super::call::Ctx) -> Refusal {
    let req = http::Request::from_parts(parts, RequestBody::full(Bytes::new()));
    Refusal::new(d, Call { req, ctx })
}

/// The refusal of a call that cannot be priced under a budget.
pub fn unpriceable(e: Unpriceable) -> Denial {
    let code = match &e {
        Unpriceable::OutputUnbounded { .. } => Code::OutputUnbounded,
        Unpriceable::InputUnbounded { .. } => Code::InputUnbounded,
        Unpriceable::ToolUnbounded { .. } => Code::ToolUnbounded,
        Unpriceable::Price(_)
        | Unpriceable::NoPrice { .. }
        | Unpriceable::ToolUnpriced { .. }
        | Unpriceable::Tier { .. }
        | Unpriceable::Currency { .. } => Code::PriceUnknown,
    };
    Denial::new(code, e.to_string())
}

/// Reads a whole request body of at most `limit` bytes; a client that
/// sends nothing for `idle` is refused.
async fn read_body(mut body: RequestBody, limit: u64, idle: Duration) -> Result<Bytes, Denial> {
    // Room for a declared length up front (within the limit).
    let exact = http_body::Body::size_hint(&body).exact();
    let mut buf = bytes::BytesMut::with_capacity(exact.map_or(0, |n| n.min(limit) as usize));
    let stall = tokio::time::sleep(idle);
    tokio::pin!(stall);
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            _ = &mut stall => {
                return Err(Denial::new(
                    Code::BadRequest,
                    format!("the request body stalled for {idle:?}"),
                ))
            }
        };
        let frame = match frame {
            None => return Ok(buf.freeze()),
            Some(Err(e)) => {
                return Err(Denial::new(
                    Code::BadRequest,
                    format!("the request body could not be read: {e}"),
                ))
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(Denial::new(
                    Code::BodyTooLarge,
                    format!("request body exceeds {limit} bytes"),
                ));
            }
            buf.extend_from_slice(data);
        }
        // Progress: the wait starts again.
        stall.as_mut().reset(tokio::time::Instant::now() + idle);
    }
}

#[cfg(test)]
#[path = "price_tests.rs"]
mod tests;
