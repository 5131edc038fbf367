//! Charging one call: from its request, the worst case it can cost
//! (reserved in every budget of the principal before it is forwarded), and
//! after it, the actual cost (settled, the rest released).
//!
//! How a call is priced:
//!
//! - a request naming a `model` of an operation whose output the gateway
//!   can bound ([`output_limit_field`]: chat completions, completions,
//!   responses, messages, Anthropic's legacy complete; embeddings, which
//!   generate none): by the pricebook's token prices for that model. The
//!   worst case is what the provider can bill for the request (see
//!   [`bound`]); actual = the usage the provider reports, plus each use of
//!   a provider-run tool at its per-use price;
//! - a resource with a per-request price: that price;
//! - reads and deletes (listing models, counting tokens): free;
//! - anything else cannot be priced and is refused: `price_unknown`, or
//!   `output_unbounded` for a model-named request of an operation whose
//!   output the gateway cannot bound — a call is never silently free, nor
//!   admitted on a guess.
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
use crate::usage::request::{OutputLimits, RequestFacts};
use crate::usage::{Dialect, Usage, UsageCode};

/// Input tokens a provider adds to a request that declares tools (its
/// tool-use system prompt and the definitions of its own client tools;
/// Anthropic documents up to about 2 000), beyond the body's bytes.
pub const TOOLS_PROMPT_TOKENS: u64 = 4096;

/// The request member that limits output tokens, for operations that
/// generate text; the one set when a budgeted request sets none.
pub fn output_limit_field(dialect: Dialect, resource: &str) -> Option<&'static str> {
    match (dialect, resource) {
        (Dialect::OpenAi, "chat.completions") => Some("max_completion_tokens"),
        (Dialect::OpenAi, "completions") => Some("max_tokens"),
        (Dialect::OpenAi, "responses") => Some("max_output_tokens"),
        (Dialect::Anthropic, "messages") => Some("max_tokens"),
        (Dialect::Anthropic, "completions") => Some("max_tokens_to_sample"),
        _ => None,
    }
}

/// The output limit a request sets that its operation honours: a lenient
/// upstream (an OpenAI-compatible server) ignores the members of other
/// operations, so only these bound what it generates. `None`: the request
/// sets none of them, and the gateway writes [`output_limit_field`].
pub fn honoured_limit(dialect: Dialect, resource: &str, l: &OutputLimits) -> Option<u64> {
    match (dialect, resource) {
        (Dialect::OpenAi, "chat.completions") => l.max_completion_tokens.max(l.max_tokens),
        (Dialect::OpenAi, "completions") => l.max_tokens,
        (Dialect::OpenAi, "responses") => l.max_output_tokens,
        (Dialect::Anthropic, "messages") => l.max_tokens,
        (Dialect::Anthropic, "completions") => l.max_tokens_to_sample,
        _ => None,
    }
}

/// Whether an operation is priced by tokens, and if so whether it
/// generates output (`Some(true)`) or only reads input (embeddings).
fn token_priced(dialect: Dialect, resource: &str) -> Option<bool> {
    match (dialect, resource) {
        (Dialect::OpenAi, "embeddings") => Some(false),
        _ => output_limit_field(dialect, resource).map(|_| true),
    }
}

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
    Model {
        provider: String,
        model: String,
        /// Provider-run tools the request enables, each at its price.
        tools: Vec<ToolPrice>,
        /// What their uses can cost at most (part of the estimate).
        tool_fees: Decimal,
    },
    PerRequest(Money),
    Free,
}

/// A provider-run tool a request enables, and the price of one use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPrice {
    pub name: String,
    pub per_use: Decimal,
}

/// The most a token-priced request can make the provider bill: tokens in
/// and out, and tool uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Uses of provider-run tools, all tools together.
    pub tool_uses: u64,
    /// Sampling rounds: 1, plus one per tool use (each reads the context
    /// again and may generate up to the output limit again).
    pub rounds: u64,
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
    #[error(
        "{resource} on provider {provider} names a model, but the gateway cannot bound what \
         the provider bills for it (no output limit it knows), so it is not admitted under a \
         budget; price it per request with `caracal pricebook set --provider {provider} \
         --resource {resource} --per-request AMOUNT`"
    )]
    OutputUnbounded { provider: String, resource: String },
    #[error(
        "the request brings in input its body does not carry ({what}), and model {model:?} of \
         provider {provider} has no context window in the pricebook to bound it; set one with \
         `caracal pricebook set --provider {provider} --model {model:?} … --context-window TOKENS`"
    )]
    InputUnbounded {
        provider: String,
        model: String,
        what: &'static str,
    },
    #[error(
        "the request enables the provider-run tool {tool:?} without a bound on its uses; \
         set its `max_uses` (Anthropic) or `max_tool_calls` (OpenAI Responses)"
    )]
    ToolUnbounded { tool: String },
    #[error(
        "the provider-run tool {tool:?} of provider {provider} has no per-use price in \
         {currency}; set one with `caracal pricebook set --provider {provider} --tool {tool} \
         --per-use AMOUNT`"
    )]
    ToolUnpriced {
        provider: String,
        tool: String,
        currency: Currency,
    },
    #[error(
        "service tier {tier:?} is billed at other prices than the pricebook's standard ones, \
         so it is not admitted under a budget; leave service_tier out, or use \"default\", \
         \"auto\" or \"flex\""
    )]
    Tier { tier: String },
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
    dialect: Dialect,
    resource: &str,
    action: Action,
    facts: Option<&RequestFacts>,
    default_max_output: u64,
) -> Result<Priced, Unpriceable> {
    let named = facts.and_then(|f| f.model.as_deref().map(|m| (f, m)));
    if let (Some((f, model)), Some(output)) = (named, token_priced(dialect, resource)) {
        return price_tokens(pricebook, provider, model, f, output, default_max_output);
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
    let (provider, resource) = (provider.to_string(), resource.to_string());
    match named {
        Some(_) => Err(Unpriceable::OutputUnbounded { provider, resource }),
        None => Err(Unpriceable::NoPrice { provider, resource }),
    }
}

/// The most a request of a token-priced operation can make the provider
/// bill, as tokens and tool uses:
///
/// - output: the request's output limit (or `default_max_output` when it
///   sets none, which the gateway then writes into the request), times the
///   outputs it asks for (`n`, `best_of`, several prompts);
/// - input: every body byte as one token (a token is never shorter than a
///   byte), plus [`TOOLS_PROMPT_TOKENS`] when it declares tools. When the
///   request brings in input its body does not carry (stored state, files,
///   URLs, media, tool results), the model's context window instead, or
///   `Err` when the pricebook has none;
/// - provider-run tools: each bounded by its `max_uses`, or all together by
///   `max_tool_calls`, else `Err`. Each use is a further sampling round, so
///   input and output are multiplied by the rounds.
pub fn bound(
    f: &RequestFacts,
    generates: bool,
    default_max_output: u64,
    context_window: Option<u64>,
) -> Result<Bound, BoundError> {
    let per_output = match generates {
        true => f.max_output_tokens.unwrap_or(default_max_output),
        false => 0,
    };
    // Saturating: a sum of absurd `max_uses` must not wrap to a small one.
    let each: Option<u64> = f
        .server_tools
        .iter()
        .try_fold(0u64, |sum, t| Some(sum.saturating_add(t.max_uses?)));
    let tool_uses = match each {
        _ if f.server_tools.is_empty() => 0,
        Some(each) => f.max_tool_calls.map_or(each, |all| all.min(each)),
        None => match (
            f.max_tool_calls,
            f.server_tools.iter().find(|t| t.max_uses.is_none()),
        ) {
            (Some(all), _) => all,
            (None, tool) => {
                return Err(BoundError::Tool(
                    tool.map_or_else(String::new, |t| t.name.clone()),
                ))
            }
        },
    };
    let rounds = tool_uses.saturating_add(1);
    let input = match f.unseen_input {
        Some(what) => context_window
            .ok_or(BoundError::Input(what))?
            .max(f.input_bytes),
        None if f.tools => f.input_bytes.saturating_add(TOOLS_PROMPT_TOKENS),
        None => f.input_bytes,
    };
    Ok(Bound {
        input_tokens: input.saturating_mul(rounds),
        output_tokens: per_output.saturating_mul(f.outputs).saturating_mul(rounds),
        tool_uses,
        rounds,
    })
}

/// Why [`bound`] found no bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundError {
    /// Input the body does not carry (what brings it), and no context window.
    Input(&'static str),
    /// A provider-run tool whose uses are not bounded.
    Tool(String),
}

fn price_tokens(
    pricebook: &Pricebook,
    provider: &str,
    model: &str,
    f: &RequestFacts,
    generates: bool,
    default_max_output: u64,
) -> Result<Priced, Unpriceable> {
    // Priority (and scale) processing is billed above the standard prices
    // the pricebook holds; flex below them.
    if let Some(tier) = f
        .service_tier
        .as_deref()
        .filter(|t| !matches!(*t, "auto" | "default" | "flex" | "standard_only"))
    {
        return Err(Unpriceable::Tier {
            tier: tier.to_string(),
        });
    }
    let price = pricebook.model_price(provider, model)?;
    let b = bound(f, generates, default_max_output, price.context_window).map_err(|e| match e {
        BoundError::Input(what) => Unpriceable::InputUnbounded {
            provider: provider.to_string(),
            model: model.to_string(),
            what,
        },
        BoundError::Tool(tool) => Unpriceable::ToolUnbounded { tool },
    })?;
    let overflow = || PriceError::Overflow {
        provider: provider.to_string(),
        model: model.to_string(),
    };
    let mut tools = Vec::with_capacity(f.server_tools.len());
    let mut dearest = Decimal::ZERO;
    let mut each_bounded = Some(Decimal::ZERO);
    for t in &f.server_tools {
        let per_use = pricebook
            .tool_price(provider, &t.name)
            .filter(|p| p.currency == price.currency)
            .ok_or_else(|| Unpriceable::ToolUnpriced {
                provider: provider.to_string(),
                tool: t.name.clone(),
                currency: price.currency,
            })?
            .amount;
        dearest = dearest.max(per_use);
        each_bounded = match (each_bounded, t.max_uses) {
            (Some(sum), Some(n)) => Some(
                Decimal::from(n)
                    .checked_mul(per_use)
                    .and_then(|fee| sum.checked_add(fee))
                    .ok_or_else(overflow)?,
            ),
            _ => None,
        };
        tools.push(ToolPrice {
            name: t.name.clone(),
            per_use,
        });
    }
    // All uses at the dearest price bounds any mix of them.
    let all_at_dearest = Decimal::from(b.tool_uses)
        .checked_mul(dearest)
        .ok_or_else(overflow)?;
    let tool_fees = each_bounded.map_or(all_at_dearest, |e| e.min(all_at_dearest));
    let tokens_cost = price
        .estimate_with(b.input_tokens, b.output_tokens, f.hour_cache)
        .ok_or_else(overflow)?;
    let amount = tokens_cost
        .amount
        .checked_add(tool_fees)
        .ok_or_else(overflow)?;
    Ok(Priced {
        basis: Basis::Model {
            provider: provider.to_string(),
            model: model.to_string(),
            tools,
            tool_fees,
        },
        estimate: Money::new(amount, price.currency),
        tokens: b.input_tokens.saturating_add(b.output_tokens),
    })
}

/// What the uses of provider-run tools cost: as the response reports them
/// (`usage`), else as many as the request allowed (`reserved`).
fn tool_fees(tools: &[ToolPrice], reserved: Decimal, usage: &Usage) -> Option<Decimal> {
    let Some(uses) = &usage.server_tool_uses else {
        return Some(reserved);
    };
    let mut sum = Decimal::ZERO;
    for (name, n) in uses {
        // A use of a tool the request did not enable is priced as the
        // dearest it did; none at all leaves nothing to price it by.
        let per_use = tools
            .iter()
            .find(|t| t.name == *name || name.starts_with(&format!("{}_", t.name)))
            .or_else(|| tools.iter().max_by_key(|t| t.per_use))
            .map_or(Decimal::ZERO, |t| t.per_use);
        sum = sum.checked_add(Decimal::from(*n).checked_mul(per_use)?)?;
    }
    Some(sum)
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
            let now = crate::clock::now();
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
            finish_later("rate release", self.limiter.release(t, crate::clock::now()));
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
            (
                Basis::Model {
                    provider,
                    model,
                    tools,
                    tool_fees: reserved_fees,
                },
                Some(u),
            ) => {
                let model = u.model.as_deref().unwrap_or(model);
                let fees = tool_fees(tools, *reserved_fees, u);
                match (self.prices.cost(provider, model, u), fees) {
                    (Ok(c), Some(fees)) if c.currency == self.priced.estimate.currency => {
                        match c.amount.checked_add(fees) {
                            Some(cost) => (
                                cost,
                                CostBasis::Usage,
                                u.input_tokens.saturating_add(u.output_tokens),
                            ),
                            None => worst,
                        }
                    }
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
/// (`usage`), its tokens and the uses of provider-run tools it reports.
/// Without usage, for a model the pricebook does not know, or with a tool
/// use it has no price for, the call is `unpriced` and carries no cost —
/// never a silent zero, nor a partial cost.
pub fn price_after(
    prices: &Pricebook,
    provider: &str,
    model_hint: Option<&str>,
    usage: Option<&Usage>,
) -> Settled {
    let priced = usage.and_then(|u| {
        let model = u.model.as_deref().or(model_hint)?;
        let tokens = prices.cost(provider, model, u).ok()?;
        let mut amount = tokens.amount;
        for (tool, n) in u.server_tool_uses.iter().flatten() {
            let per_use = prices
                .tool_price(provider, tool)
                .filter(|p| p.currency == tokens.currency)?;
            amount = amount.checked_add(Decimal::from(*n).checked_mul(per_use.amount)?)?;
        }
        Some(Money::new(amount, tokens.currency))
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
