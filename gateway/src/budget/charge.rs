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
//! What is charged after the call ([`CostBasis`], the ledger's
//! `cost_basis`):
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
//!   do not bill failed requests;
//! - `unpriced`: a call of a principal without budgets whose cost cannot
//!   be read (no usage, or a model the pricebook does not know).

use std::sync::Arc;

use jiff::Timestamp;

use super::counters::{BoxFuture, CounterError, Counters, Hold, Line};
use super::rate::{RateLimit, RateLimiter, RateTicket};
use crate::model::Action;
use crate::money::{Currency, Decimal, Money};
use crate::pricing::{PriceError, Pricebook};
use crate::usage::request::RequestFacts;
use crate::usage::{Usage, UsageCode};

crate::wire_enum! {
    /// How a call's recorded cost was arrived at.
    pub enum CostBasis as "cost basis" {
        /// Priced from the usage the provider reported.
        Usage => "usage",
        /// The worst case reserved (usage missing, partial or malformed, or
        /// the client left).
        Reservation => "reservation",
        /// A per-request price.
        Request => "request",
        /// Nothing to pay (a free read, or a failed call without usage).
        Free => "free",
        /// No budget applies and the cost could not be read.
        Unpriced => "unpriced",
    }
}

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

/// A call's worst case, before anything is reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub basis: Basis,
    pub estimate: Money,
    /// The worst case in tokens (for tokens-per-minute limits).
    pub tokens: u64,
}

/// Why a call cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unpriceable {
    #[error(transparent)]
    Price(#[from] PriceError),
    #[error(
        "{resource} on provider {provider} names no model and has no per-request price, \
         so it cannot be charged to a budget; set one with `caracal pricebook set \
         --provider {provider} --resource {resource} --per-request AMOUNT`"
    )]
    NoPrice { provider: String, resource: String },
    #[error("the call is priced in {priced}, but budget policy {policy_id} counts {budget}")]
    Currency {
        priced: Currency,
        policy_id: String,
        budget: Currency,
    },
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
) -> Result<Priced, Unpriceable> {
    if let Some((f, model)) = facts.and_then(|f| f.model.as_deref().map(|m| (f, m))) {
        let max_out = f.max_output_tokens.unwrap_or(default_max_output);
        let estimate = pricebook.estimate(provider, model, f.input_bytes, max_out)?;
        let basis = Basis::Model {
            provider: provider.to_string(),
            model: model.to_string(),
        };
        let tokens = f.input_bytes.saturating_add(max_out);
        return Ok(Priced {
            basis,
            estimate,
            tokens,
        });
    }
    if let Some(p) = pricebook.request_price(provider, resource) {
        return Ok(Priced {
            basis: Basis::PerRequest(p),
            estimate: p,
            tokens: 0,
        });
    }
    if matches!(action, Action::Read | Action::Delete) {
        return Ok(Priced {
            basis: Basis::Free,
            estimate: Money::zero(Currency::USD),
            tokens: 0,
        });
    }
    Err(Unpriceable::NoPrice {
        provider: provider.to_string(),
        resource: resource.to_string(),
    })
}

/// Checks that a non-zero worst case is in the currency of every budget
/// it is reserved in.
pub fn check_currency(lines: &[Line], estimate: Money) -> Result<(), Unpriceable> {
    match lines.iter().find(|l| l.currency != estimate.currency) {
        Some(line) if !estimate.amount.is_zero() => Err(Unpriceable::Currency {
            priced: estimate.currency,
            policy_id: line.id.policy_id.clone(),
            budget: line.currency,
        }),
        _ => Ok(()),
    }
}

/// Runs a seam operation whose answer nobody waits for (settling from a
/// body's drop): at once when it is ready (the in-process seams always
/// are), else on the runtime.
fn finish_later(what: &'static str, fut: BoxFuture<Result<(), CounterError>>) {
    use futures_util::FutureExt;
    let mut fut = fut;
    match (&mut fut).now_or_never() {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::error!(error = %e, "{what} failed"),
        None => match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::error!(error = %e, "{what} failed");
                    }
                });
            }
            Err(_) => tracing::error!("{what} dropped: no runtime to finish it on"),
        },
    }
}

/// A hold in every budget of a principal. Settle it with the actual cost;
/// dropping it releases it.
pub struct Reservation {
    hold: Option<Hold>,
    counters: Arc<dyn Counters>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("hold", &self.hold)
            .finish()
    }
}

impl Reservation {
    pub fn new(hold: Hold, counters: Arc<dyn Counters>) -> Self {
        Self {
            hold: Some(hold),
            counters,
        }
    }

    /// The amount held.
    pub fn amount(&self) -> Decimal {
        self.hold.as_ref().map_or(Decimal::ZERO, |h| h.amount)
    }

    /// Replaces the hold with the actual cost.
    pub fn settle(mut self, actual: Decimal, now: Timestamp) {
        if let Some(h) = self.hold.take() {
            finish_later("budget settle", self.counters.settle(&h, actual, now));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(h) = self.hold.take() {
            let now = Timestamp::now();
            finish_later("budget release", self.counters.release(&h, now));
        }
    }
}

/// A rate-limit admission. Settle it with the actual tokens; dropping it
/// (a later step refused the call, or the provider was never reached)
/// takes the admission back, so refusals use up no requests or tokens.
pub struct Ticket {
    ticket: Option<RateTicket>,
    limiter: Arc<dyn RateLimiter>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl Ticket {
    pub fn new(ticket: RateTicket, limiter: Arc<dyn RateLimiter>) -> Self {
        Self {
            ticket: Some(ticket),
            limiter,
        }
    }

    /// Replaces the estimate with the actual tokens.
    pub fn settle(mut self, tokens: u64, now: Timestamp) {
        if let Some(t) = self.ticket.take() {
            finish_later("rate settle", self.limiter.settle(t, tokens, now));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            finish_later("rate release", self.limiter.release(t, Timestamp::now()));
        }
    }
}

/// A budgeted call in flight: its prices, its worst case, and what it
/// holds (a rate ticket, a reservation). It keeps the pricebook it was
/// admitted under, not the snapshot.
#[derive(Debug)]
pub struct Charge {
    pub prices: Arc<Pricebook>,
    pub priced: Priced,
    pub ticket: Option<Ticket>,
    pub reservation: Option<Reservation>,
}

/// What the ledger records of a call's cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub cost: Option<Decimal>,
    pub currency: Option<Currency>,
    pub basis: CostBasis,
    /// The worst case reserved before forwarding (budgeted calls).
    pub reserved: Option<Decimal>,
}

/// How a forwarded call ended, as far as charging goes.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// The provider's status; `None` when the client left before it
    /// answered (the provider may still have done, and billed, the work).
    pub status: Option<u16>,
    /// What the usage parser concluded, if the body was read.
    pub usage_code: Option<UsageCode>,
    /// The usage, when it was read in full.
    pub usage: Option<&'a Usage>,
}

impl Charge {
    /// The cost of the call as it ended; settles the reservation and the
    /// rate ticket with it.
    pub fn settle(mut self, end: Ending<'_>, now: Timestamp) -> Settled {
        let (cost, basis, tokens) = self.cost(end);
        if let Some(r) = self.reservation.take() {
            r.settle(cost, now);
        }
        if let Some(t) = self.ticket.take() {
            t.settle(tokens, now);
        }
        Settled {
            cost: Some(cost),
            currency: Some(self.priced.estimate.currency),
            basis,
            reserved: Some(self.priced.estimate.amount),
        }
    }

    /// (cost, basis, tokens) of the call as it ended.
    fn cost(&self, end: Ending<'_>) -> (Decimal, CostBasis, u64) {
        let worst = (
            self.priced.estimate.amount,
            CostBasis::Reservation,
            self.priced.tokens,
        );
        let provider_failed = end.status.is_some_and(|s| s >= 400);
        match (&self.priced.basis, end.usage) {
            (Basis::Model { provider, model }, Some(u)) => {
                let model = u.model.as_deref().unwrap_or(model);
                match self.prices.cost(provider, model, u) {
                    Ok(c) if c.currency == self.priced.estimate.currency => (
                        c.amount,
                        CostBasis::Usage,
                        u.input_tokens.saturating_add(u.output_tokens),
                    ),
                    // The response names a model the pricebook cannot price
                    // (or prices in another currency): the worst case.
                    _ => worst,
                }
            }
            (Basis::Model { .. }, None)
                if provider_failed && end.usage_code != Some(UsageCode::Partial) =>
            {
                (Decimal::ZERO, CostBasis::Free, 0)
            }
            (Basis::Model { .. }, None) => worst,
            (Basis::PerRequest(_), _) if provider_failed => (Decimal::ZERO, CostBasis::Free, 0),
            (Basis::PerRequest(p), _) => (p.amount, CostBasis::Request, 0),
            (Basis::Free, _) => (Decimal::ZERO, CostBasis::Free, 0),
        }
    }
}

/// Prices a call of a principal without budgets after the fact, for the
/// ledger only: from the provider's usage when it was read in full
/// (`usage`). Without usage, or for a model the pricebook does not know,
/// the call is `unpriced` and carries no cost — never a silent zero.
pub fn price_after(
    prices: &Pricebook,
    provider: &str,
    model_hint: Option<&str>,
    usage: Option<&Usage>,
) -> Settled {
    let priced = usage.and_then(|u| {
        let model = u.model.as_deref().or(model_hint)?;
        prices.cost(provider, model, u).ok()
    });
    match priced {
        Some(cost) => Settled {
            cost: Some(cost.amount),
            currency: Some(cost.currency),
            basis: CostBasis::Usage,
            reserved: None,
        },
        None => Settled {
            cost: None,
            currency: None,
            basis: CostBasis::Unpriced,
            reserved: None,
        },
    }
}
