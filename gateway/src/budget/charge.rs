//! Charging one call: from its request, the worst case it can cost
//! (reserved in every budget of the principal before it is forwarded), and
//! after it, the actual cost (settled, the rest released).
//!
//! How a call is priced:
//!
//! - a request naming a `model` (chat, completions, responses, embeddings,
//!   messages): by the pricebook's token prices for that model. Worst case
//!   = every byte of the request body as an input token (a token is never
//!   shorter than one byte) + the request's maximum output tokens, or the
//!   budget's `max_output_tokens` when it sets none. Actual = the usage the
//!   provider reports;
//! - a resource with a per-request price: that price;
//! - reads and deletes without a model (listing models, files): free;
//! - anything else cannot be priced and is refused (`price_unknown`) — a
//!   call is never silently free.
//!
//! What is charged after the call (`cost_basis` in the ledger):
//!
//! - `usage`: the provider reported usage; priced from it;
//! - `reservation`: the response succeeded but its usage is missing,
//!   partial or malformed, or the client left before the response ended
//!   (the gateway then closes the provider stream, which stops generation,
//!   but cannot learn what was produced): the worst case reserved is
//!   charged, never zero;
//! - `request`: a per-request price, for a successful response;
//! - `free`: a read or delete without a model, or an error response from
//!   the provider (status 400 or more) that reports no usage — providers
//!   do not bill failed requests.

use std::sync::Arc;

use jiff::Timestamp;

use super::counters::{Counters, Exceeded, Line, Reservation};
use super::rate::{RateLimit, RateLimited, RateLimiter, RateTicket};
use crate::cache::Snapshot;
use crate::error::{Code, Denial};
use crate::ledger::LedgerEvent;
use crate::model::Action;
use crate::money::{fmt_amount, Currency, Decimal, Money};
use crate::pricing::Pricebook;
use crate::usage::request::RequestFacts;
use crate::usage::Usage;

/// What limits one principal: its budgets and rate limits.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub lines: Vec<Line>,
    pub rates: Vec<RateLimit>,
    /// The smallest `max_output_tokens` of the budgets (the worst case
    /// assumed for a request that sets no maximum).
    pub max_output_tokens: u64,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.rates.is_empty()
    }
}

/// How a call is priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    Model { provider: String, model: String },
    PerRequest(Money),
    Free,
}

/// A call's charge in flight: its reservation, rate ticket and prices.
#[derive(Debug)]
pub struct Charge {
    /// The snapshot the call was admitted under (its prices).
    snapshot: Arc<Snapshot>,
    basis: Basis,
    estimate: Money,
    estimated_tokens: u64,
    reservation: Option<Reservation>,
    ticket: Option<RateTicket>,
    limiter: Arc<RateLimiter>,
}

/// Works out the basis and worst case of a call. `facts` are the parsed
/// request (None when the request has no JSON body).
pub fn price(
    pricebook: &Pricebook,
    provider: &str,
    resource: &str,
    action: Action,
    facts: Option<&RequestFacts>,
    default_max_output: u64,
) -> Result<(Basis, Money, u64), Denial> {
    if let Some((f, model)) = facts.and_then(|f| f.model.as_deref().map(|m| (f, m))) {
        let max_out = f.max_output_tokens.unwrap_or(default_max_output);
        let estimate = pricebook
            .estimate(provider, model, f.input_bytes, max_out)
            .map_err(|e| Denial::new(Code::PriceUnknown, e.to_string()))?;
        let basis = Basis::Model {
            provider: provider.to_string(),
            model: model.to_string(),
        };
        return Ok((basis, estimate, f.input_bytes.saturating_add(max_out)));
    }
    if let Some(p) = pricebook.request_price(provider, resource) {
        return Ok((Basis::PerRequest(p), p, 0));
    }
    if matches!(action, Action::Read | Action::Delete) {
        return Ok((Basis::Free, Money::zero(Currency::USD), 0));
    }
    Err(Denial::new(
        Code::PriceUnknown,
        format!(
            "{resource} on provider {provider} names no model and has no per-request price, \
             so it cannot be charged to a budget; set one with `caracal pricebook set \
             --provider {provider} --resource {resource} --per-request AMOUNT`"
        ),
    ))
}

/// Admits a priced call: rate limits first (cheap, and a refusal there
/// must not hold budget), then the budgets. All or nothing.
#[allow(clippy::too_many_arguments)]
pub fn admit(
    plan: &Plan,
    principal_id: &str,
    counters: &Arc<Counters>,
    limiter: &Arc<RateLimiter>,
    snapshot: Arc<Snapshot>,
    basis: Basis,
    estimate: Money,
    estimated_tokens: u64,
    now: Timestamp,
) -> Result<Charge, Denial> {
    let ticket = if plan.rates.is_empty() {
        None
    } else {
        Some(
            limiter
                .admit(principal_id, &plan.rates, estimated_tokens, now)
                .map_err(rate_denial)?,
        )
    };
    let reservation = if plan.lines.is_empty() {
        None
    } else {
        if let Some(line) = plan.lines.iter().find(|l| l.currency != estimate.currency) {
            if !estimate.amount.is_zero() {
                return Err(Denial::new(
                    Code::PriceUnknown,
                    format!(
                        "the call is priced in {}, but budget policy {} counts {}",
                        estimate.currency, line.id.policy_id, line.currency
                    ),
                ));
            }
        }
        Some(
            counters
                .reserve(&plan.lines, estimate.amount, now)
                .map_err(|e| budget_denial(&e))?,
        )
    };
    Ok(Charge {
        snapshot,
        basis,
        estimate,
        estimated_tokens,
        reservation,
        ticket,
        limiter: limiter.clone(),
    })
}

fn rate_denial(r: RateLimited) -> Denial {
    let mut d = Denial::new(Code::RateLimited, r.to_string());
    // A call that can never fit gets no retry hint.
    d.retry_after = r
        .retry_after()
        .map(|w| u64::try_from(w.as_secs()).unwrap_or(1).max(1));
    d
}

/// The `budget_exceeded` refusal: which policy, its limit, spent,
/// reserved, window and reset time, in the message and as JSON fields.
pub fn budget_denial(e: &Exceeded) -> Denial {
    let s = &e.standing;
    let message = format!(
        "budget policy {} (version {}) allows {} {} per {} window; spent {}, reserved {}, \
         this call needs up to {}; the window resets at {}",
        e.policy_id,
        e.policy_version,
        fmt_amount(e.limit),
        e.currency,
        e.window,
        fmt_amount(s.spent),
        fmt_amount(s.reserved),
        fmt_amount(e.requested),
        s.resets_at
    );
    let mut d = Denial::new(Code::BudgetExceeded, message);
    let details = serde_json::json!({
        "policy_id": e.policy_id,
        "policy_version": e.policy_version,
        "limit": fmt_amount(e.limit),
        "currency": e.currency.as_str(),
        "spent": fmt_amount(s.spent),
        "reserved": fmt_amount(s.reserved),
        "requested": fmt_amount(e.requested),
        "window": e.window,
        "window_start": s.window_start.to_string(),
        "window_end": s.window_end.to_string(),
        "resets_at": s.resets_at.to_string(),
    });
    if let serde_json::Value::Object(map) = details {
        d.details = Some(map);
    }
    d
}

impl Charge {
    /// The worst case reserved.
    pub fn estimate(&self) -> Money {
        self.estimate
    }

    /// Settles with what the ledger row says happened (`usage` is the
    /// provider's usage when it was read in full) and records the cost in
    /// the row.
    pub fn settle(mut self, event: &mut LedgerEvent, usage: Option<&Usage>, now: Timestamp) {
        // No status: the client left before the provider answered, which
        // may still have done (and billed) the work.
        let provider_failed = event.status.is_some_and(|s| s >= 400);
        let (cost, basis, tokens) = match (&self.basis, usage) {
            (Basis::Model { provider, model }, Some(u)) => {
                let model = u.model.as_deref().unwrap_or(model);
                match self.snapshot.pricebook.cost(provider, model, u) {
                    Ok(c) if c.currency == self.estimate.currency => (
                        c.amount,
                        "usage",
                        u.input_tokens.saturating_add(u.output_tokens),
                    ),
                    // The response names a model the pricebook cannot price
                    // (or prices in another currency): the worst case.
                    _ => (self.estimate.amount, "reservation", self.estimated_tokens),
                }
            }
            (Basis::Model { .. }, None)
                if provider_failed && event.usage.as_deref() != Some("partial") =>
            {
                (Decimal::ZERO, "free", 0)
            }
            (Basis::Model { .. }, None) => {
                (self.estimate.amount, "reservation", self.estimated_tokens)
            }
            (Basis::PerRequest(_), _) if provider_failed => (Decimal::ZERO, "free", 0),
            (Basis::PerRequest(p), _) => (p.amount, "request", 0),
            (Basis::Free, _) => (Decimal::ZERO, "free", 0),
        };
        event.cost = Some(cost);
        event.currency = Some(self.estimate.currency.to_string());
        event.cost_basis = Some(basis.to_string());
        event.reserved = Some(self.estimate.amount);
        if let Some(r) = self.reservation.take() {
            r.settle(cost);
        }
        if let Some(t) = self.ticket.take() {
            self.limiter.settle(t, tokens, now);
        }
    }
}

/// Prices a call of a principal without budgets after the fact, for the
/// ledger only: from the provider's usage when it was read in full
/// (`cost_basis` `usage`). Without usage, or for a model the pricebook
/// does not know, the row says `unpriced` and carries no cost — never a
/// silent zero.
pub fn price_after(
    snapshot: &Snapshot,
    provider: &str,
    event: &mut LedgerEvent,
    usage: Option<&Usage>,
) {
    let priced = usage.and_then(|u| {
        let model = u.model.as_deref().or(event.model.as_deref())?;
        snapshot.pricebook.cost(provider, model, u).ok()
    });
    match priced {
        Some(cost) => {
            event.cost = Some(cost.amount);
            event.currency = Some(cost.currency.to_string());
            event.cost_basis = Some("usage".into());
        }
        None => event.cost_basis = Some("unpriced".into()),
    }
}
