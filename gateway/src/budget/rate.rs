//! Per-principal rate limits: requests and tokens per minute over a sliding
//! 60-second window, held in process. Pure over the clock: every call takes
//! `now`.
//!
//! Usage is counted in 1-second buckets (at most 61 per principal). A
//! request admitted at instant `t` lands in the bucket of `floor(t)` and
//! counts until `floor(t) + 61 s`, so between 60 and 61 seconds: it is
//! never forgotten early, and in every 60-second interval at most the
//! limit is admitted. The cost is that capacity comes back up to one
//! second late.
//!
//! Token estimates are held in the bucket of the request's admission until
//! [`RateLimiter::settle`] replaces them with the actual count. A
//! [`RateTicket`] dropped without settling releases nothing: its estimate
//! counts as spent and leaves with its bucket, at most 61 s later, so
//! nothing leaks and abandoned requests err towards refusing.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::counters::{BoxFuture, CounterError};

/// Length of the sliding window, in seconds.
pub const WINDOW_SECS: i64 = 60;

/// Largest accepted requests-per-minute limit.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 1_000_000;

/// Largest accepted tokens-per-minute limit.
pub const MAX_TOKENS_PER_MINUTE: u64 = 1_000_000_000;

/// Why a rate limit definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error("a rate limit needs requests_per_minute, tokens_per_minute or both")]
    Empty,
    #[error("requests_per_minute {0} is out of range: use 1 to {MAX_REQUESTS_PER_MINUTE}")]
    Requests(u32),
    #[error("tokens_per_minute {0} is out of range: use 1 to {MAX_TOKENS_PER_MINUTE}")]
    Tokens(u64),
}

/// The stored form of a [`RateLimit`] (JSON inside policy definitions).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    /// Requests admitted per sliding minute, 1 to 1,000,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests_per_minute: Option<u32>,
    /// Tokens (settled, or estimated while in flight) per sliding minute,
    /// 1 to 1,000,000,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens_per_minute: Option<u64>,
}

/// Requests and/or tokens per minute one principal may use. Values loaded
/// from JSON or built with [`RateLimit::new`] are validated; a hand-built
/// value can be checked with [`RateLimit::validate`] (an out-of-range zero
/// limit refuses everything as never fitting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRateLimit", into = "RawRateLimit")]
pub struct RateLimit {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
}

impl RateLimit {
    pub fn new(
        requests_per_minute: Option<u32>,
        tokens_per_minute: Option<u64>,
    ) -> Result<RateLimit, RateLimitError> {
        let limit = RateLimit {
            requests_per_minute,
            tokens_per_minute,
        };
        limit.validate()?;
        Ok(limit)
    }

    /// At least one limit set; each within its range.
    pub fn validate(&self) -> Result<(), RateLimitError> {
        if self.requests_per_minute.is_none() && self.tokens_per_minute.is_none() {
            return Err(RateLimitError::Empty);
        }
        if let Some(rpm) = self.requests_per_minute {
            if !(1..=MAX_REQUESTS_PER_MINUTE).contains(&rpm) {
                return Err(RateLimitError::Requests(rpm));
            }
        }
        if let Some(tpm) = self.tokens_per_minute {
            if !(1..=MAX_TOKENS_PER_MINUTE).contains(&tpm) {
                return Err(RateLimitError::Tokens(tpm));
            }
        }
        Ok(())
    }
}

impl TryFrom<RawRateLimit> for RateLimit {
    type Error = RateLimitError;

    fn try_from(raw: RawRateLimit) -> Result<Self, Self::Error> {
        RateLimit::new(raw.requests_per_minute, raw.tokens_per_minute)
    }
}

impl From<RateLimit> for RawRateLimit {
    fn from(limit: RateLimit) -> Self {
        RawRateLimit {
            requests_per_minute: limit.requests_per_minute,
            tokens_per_minute: limit.tokens_per_minute,
        }
    }
}

/// Which kind of limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests,
    Tokens,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused admission. Nothing was recorded for the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimited {
    /// The limit is reached now; `retry_after` (whole seconds, at least
    /// 1 s) is when enough usage will have left the window for this request
    /// to fit, if nothing else is admitted meanwhile.
    #[error("{limit} per minute limit of {limit_value} reached ({used} used); retry after {}s", retry_after.as_secs())]
    Exceeded {
        limit: LimitKind,
        limit_value: u64,
        used: u64,
        retry_after: SignedDuration,
    },
    /// The request alone needs more than the limit (an estimate above the
    /// tokens per minute): retrying cannot help.
    #[error("request needs {needed} {limit} but the limit is {limit_value} per minute, so it can never fit")]
    NeverFits {
        limit: LimitKind,
        limit_value: u64,
        needed: u64,
    },
}

impl RateLimited {
    /// The value for `Retry-After`; `None` when retrying cannot help.
    pub fn retry_after(&self) -> Option<SignedDuration> {
        match self {
            RateLimited::Exceeded { retry_after, .. } => Some(*retry_after),
            RateLimited::NeverFits { .. } => None,
        }
    }

    pub fn limit(&self) -> LimitKind {
        match self {
            RateLimited::Exceeded { limit, .. } | RateLimited::NeverFits { limit, .. } => *limit,
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAdmitted {
    #[error(transparent)]
    Limited(#[from] RateLimited),
    /// The limiter cannot be reached: nothing can be promised.
    #[error(transparent)]
    Unavailable(#[from] CounterError),
}

/// The rate-limit seam: requests and tokens per sliding minute, per
/// principal, with the semantics of [`InProcessRateLimiter`] (the
/// embedded implementation; the module docs describe the window).
pub trait RateLimiter: Send + Sync + 'static {
    /// Admits a request if every limit holds; records it and holds its
    /// token estimate. A refusal records nothing.
    fn admit(
        &self,
        principal: &str,
        limits: &[RateLimit],
        estimated_tokens: u64,
        now: Timestamp,
    ) -> BoxFuture<Result<RateTicket, NotAdmitted>>;

    /// Replaces the ticket's estimate with the actual tokens, in the
    /// second the request was admitted in.
    fn settle(
        &self,
        ticket: RateTicket,
        actual_tokens: u64,
        now: Timestamp,
    ) -> BoxFuture<Result<(), CounterError>>;

    /// Takes the admission back (the call was refused by a later step, so
    /// it used neither a request nor tokens).
    fn release(&self, ticket: RateTicket, now: Timestamp) -> BoxFuture<Result<(), CounterError>>;

    /// What `principal` has used in the window at `now`.
    fn usage(&self, principal: &str, now: Timestamp) -> BoxFuture<Result<RateUsage, CounterError>>;
}

/// Proof of an admission, holding its token estimate until settled.
/// Dropping it unsettled leaves the estimate counted until its bucket
/// leaves the window (at most 61 s).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "settle the ticket with the actual tokens, or its estimate stays counted for a minute"]
pub struct RateTicket {
    principal: String,
    second: i64,
    estimate: u64,
}

impl RateTicket {
    pub fn principal(&self) -> &str {
        &self.principal
    }

    pub fn estimate(&self) -> u64 {
        self.estimate
    }

    /// The second (unix) of the bucket the request was admitted in.
    pub fn second(&self) -> i64 {
        self.second
    }

    /// A ticket another implementation of the seam issued.
    pub(crate) fn issued(principal: String, second: i64, estimate: u64) -> Self {
        Self {
            principal,
            second,
            estimate,
        }
    }
}

/// What a principal has used in the window at some instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateUsage {
    pub requests: u64,
    pub tokens: u64,
}

/// One second of admissions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub(crate) second: i64,
    pub(crate) requests: u64,
    pub(crate) tokens: u64,
}

impl Bucket {
    /// The instant this bucket stops counting.
    fn leaves_at(&self) -> Timestamp {
        let second = self.second.saturating_add(WINDOW_SECS + 1);
        Timestamp::from_second(second).unwrap_or(Timestamp::MAX)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Buckets per principal, oldest first; never empty.
    principals: HashMap<String, VecDeque<Bucket>>,
    /// Second of the last sweep over all principals.
    last_sweep: Option<i64>,
}

impl State {
    /// Drops every principal's expired buckets and idle principals, at
    /// most once per window length, so idle entries live under two
    /// windows.
    fn sweep_if_due(&mut self, now_second: i64) {
        let due = self
            .last_sweep
            .is_none_or(|last| now_second >= last.saturating_add(WINDOW_SECS));
        if due {
            self.sweep(now_second);
        }
    }

    fn sweep(&mut self, now_second: i64) {
        self.principals.retain(|_, buckets| {
            prune(buckets, now_second);
            !buckets.is_empty()
        });
        self.last_sweep = Some(now_second);
    }
}

/// Shards of [`InProcessRateLimiter`].
const SHARDS: usize = 64;

/// In-process rate limiter keyed by principal id, sharded by principal:
/// one lock per shard, so each admission checks and records atomically
/// without serialising other principals.
#[derive(Debug)]
pub struct InProcessRateLimiter {
    shards: Box<[Mutex<State>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for InProcessRateLimiter {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(State::default())).collect(),
            hasher: Default::default(),
        }
    }
}

impl InProcessRateLimiter {
    pub fn new() -> InProcessRateLimiter {
        InProcessRateLimiter::default()
    }

    /// Admits a request of `principal` if every limit in `limits` holds
    /// over the last 60 s: admitted requests + 1 <= requests per minute,
    /// and tokens (settled, or estimated for tickets not yet settled) +
    /// `estimated_tokens` <= tokens per minute. On success records the
    /// request and holds the estimate; on refusal records nothing and
    /// reports the limit that needs the longest wait (a limit the request
    /// can never fit wins). Usage is recorded even with no limits, so a
    /// limit added later sees the past minute.
    pub fn admit(
        &self,
        principal: &str,
        limits: &[RateLimit],
        estimated_tokens: u64,
        now: Timestamp,
    ) -> Result<RateTicket, RateLimited> {
        let now_second = second_of(now);
        let mut state = self.lock(principal);
        state.sweep_if_due(now_second);

        let mut empty = VecDeque::new();
        let buckets = match state.principals.get_mut(principal) {
            Some(buckets) => {
                prune(buckets, now_second);
                buckets
            }
            None => &mut empty,
        };
        if let Some(refusal) = refusal(buckets, limits, estimated_tokens, now) {
            if buckets.is_empty() {
                state.principals.remove(principal);
            }
            return Err(refusal);
        }

        let buckets = state.principals.entry(principal.to_owned()).or_default();
        let second = record(buckets, now_second, estimated_tokens);
        Ok(RateTicket {
            principal: principal.to_owned(),
            second,
            estimate: estimated_tokens,
        })
    }

    /// Replaces the ticket's estimate with `actual_tokens`, in the bucket
    /// the request was admitted in (so it leaves the window when the
    /// admission does). A ticket whose bucket has already left changes
    /// nothing.
    pub fn settle(&self, ticket: RateTicket, actual_tokens: u64, now: Timestamp) {
        self.with_bucket(&ticket, now, |bucket| {
            bucket.tokens = bucket
                .tokens
                .saturating_sub(ticket.estimate)
                .saturating_add(actual_tokens);
        });
    }

    /// Takes an admission back: its request and its token estimate leave
    /// the window at once (a later step refused the call). A ticket whose
    /// bucket has already left changes nothing.
    pub fn release(&self, ticket: RateTicket, now: Timestamp) {
        self.with_bucket(&ticket, now, |bucket| {
            bucket.requests = bucket.requests.saturating_sub(1);
            bucket.tokens = bucket.tokens.saturating_sub(ticket.estimate);
        });
    }

    /// Changes the bucket `ticket` was admitted in, if it still counts.
    fn with_bucket(&self, ticket: &RateTicket, now: Timestamp, change: impl FnOnce(&mut Bucket)) {
        let mut state = self.lock(&ticket.principal);
        state.sweep_if_due(second_of(now));
        let bucket = state
            .principals
            .get_mut(&ticket.principal)
            .and_then(|buckets| buckets.iter_mut().find(|b| b.second == ticket.second));
        if let Some(bucket) = bucket {
            change(bucket);
        }
    }

    /// What `principal` has used in the window at `now`.
    pub fn usage(&self, principal: &str, now: Timestamp) -> RateUsage {
        let now_second = second_of(now);
        let state = self.lock(principal);
        state
            .principals
            .get(principal)
            .map(|buckets| {
                let live = buckets
                    .iter()
                    .filter(|b| b.second >= oldest_counted(now_second));
                totals(live)
            })
            .unwrap_or_default()
    }

    /// Drops expired buckets and principals with nothing in the window.
    /// `admit` and `settle` also do this at most once a minute.
    pub fn prune(&self, now: Timestamp) {
        for shard in &self.shards {
            lock(shard).sweep(second_of(now));
        }
    }

    /// Principals currently holding usage (for metrics and tests).
    pub fn principals(&self) -> usize {
        self.shards.iter().map(|s| lock(s).principals.len()).sum()
    }

    fn lock(&self, principal: &str) -> std::sync::MutexGuard<'_, State> {
        lock(&self.shards[(self.hasher.hash_one(principal) % SHARDS as u64) as usize])
    }
}

fn lock(shard: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // The state stays consistent across a panic (every update is a single
    // field write), so a poisoned lock is safe to reuse.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RateLimiter for InProcessRateLimiter {
    fn admit(
        &self,
        principal: &str,
        limits: &[RateLimit],
        estimated_tokens: u64,
        now: Timestamp,
    ) -> BoxFuture<Result<RateTicket, NotAdmitted>> {
        let r = InProcessRateLimiter::admit(self, principal, limits, estimated_tokens, now);
        Box::pin(std::future::ready(r.map_err(NotAdmitted::Limited)))
    }

    fn settle(
        &self,
        ticket: RateTicket,
        actual_tokens: u64,
        now: Timestamp,
    ) -> BoxFuture<Result<(), CounterError>> {
        InProcessRateLimiter::settle(self, ticket, actual_tokens, now);
        Box::pin(std::future::ready(Ok(())))
    }

    fn release(&self, ticket: RateTicket, now: Timestamp) -> BoxFuture<Result<(), CounterError>> {
        InProcessRateLimiter::release(self, ticket, now);
        Box::pin(std::future::ready(Ok(())))
    }

    fn usage(&self, principal: &str, now: Timestamp) -> BoxFuture<Result<RateUsage, CounterError>> {
        let u = InProcessRateLimiter::usage(self, principal, now);
        Box::pin(std::future::ready(Ok(u)))
    }
}

/// The floor of `t` in unix seconds (also before 1970).
pub(crate) fn second_of(t: Timestamp) -> i64 {
    // |t| < 2^68 ns, so the quotient fits an i64.
    t.as_nanosecond().div_euclid(1_000_000_000) as i64
}

/// The oldest bucket that still counts at `now_second`.
pub(crate) fn oldest_counted(now_second: i64) -> i64 {
    now_second.saturating_sub(WINDOW_SECS)
}

fn prune(buckets: &mut VecDeque<Bucket>, now_second: i64) {
    while buckets
        .front()
        .is_some_and(|b| b.second < oldest_counted(now_second))
    {
        buckets.pop_front();
    }
}

fn totals<'a>(buckets: impl Iterator<Item = &'a Bucket>) -> RateUsage {
    buckets.fold(RateUsage::default(), |sum, b| RateUsage {
        requests: sum.requests.saturating_add(b.requests),
        tokens: sum.tokens.saturating_add(b.tokens),
    })
}

/// Adds one request to the bucket of `now_second` and returns that
/// bucket's second. If another caller's clock ran ahead, the request joins
/// the newest bucket instead, staying counted slightly longer.
fn record(buckets: &mut VecDeque<Bucket>, now_second: i64, tokens: u64) -> i64 {
    match buckets.back_mut() {
        Some(last) if last.second >= now_second => {
            last.requests = last.requests.saturating_add(1);
            last.tokens = last.tokens.saturating_add(tokens);
            last.second
        }
        _ => {
            buckets.push_back(Bucket {
                second: now_second,
                requests: 1,
                tokens,
            });
            now_second
        }
    }
}

/// The refusal for this request against `limits`, if any: the one with
/// the longest wait, `NeverFits` above all. `buckets` are pruned to the
/// window.
pub(crate) fn refusal(
    buckets: &VecDeque<Bucket>,
    limits: &[RateLimit],
    estimated_tokens: u64,
    now: Timestamp,
) -> Option<RateLimited> {
    let used = totals(buckets.iter());
    let mut worst: Option<RateLimited> = None;
    for limit in limits {
        let checks = [
            limit
                .requests_per_minute
                .map(|rpm| (LimitKind::Requests, u64::from(rpm), used.requests, 1)),
            limit
                .tokens_per_minute
                .map(|tpm| (LimitKind::Tokens, tpm, used.tokens, estimated_tokens)),
        ];
        for (kind, limit_value, used, needed) in checks.into_iter().flatten() {
            let Some(refused) = check(buckets, kind, limit_value, used, needed, now) else {
                continue;
            };
            if waits_longer(&refused, worst.as_ref()) {
                worst = Some(refused);
            }
        }
    }
    worst
}

/// One limit: refused when `used + needed > limit_value`.
fn check(
    buckets: &VecDeque<Bucket>,
    limit: LimitKind,
    limit_value: u64,
    used: u64,
    needed: u64,
    now: Timestamp,
) -> Option<RateLimited> {
    if needed > limit_value {
        return Some(RateLimited::NeverFits {
            limit,
            limit_value,
            needed,
        });
    }
    let excess = used.saturating_add(needed).checked_sub(limit_value)?;
    if excess == 0 {
        return None;
    }
    // Walk the buckets oldest first until enough usage has left.
    let mut freed = 0u64;
    let leaves_at = buckets
        .iter()
        .find(|b| {
            freed = freed.saturating_add(match limit {
                LimitKind::Requests => b.requests,
                LimitKind::Tokens => b.tokens,
            });
            freed >= excess
        })
        .map_or(Timestamp::MAX, Bucket::leaves_at);
    Some(RateLimited::Exceeded {
        limit,
        limit_value,
        used,
        retry_after: whole_seconds_until(now, leaves_at),
    })
}

/// `later - now` rounded up to whole seconds, at least 1 s.
fn whole_seconds_until(now: Timestamp, later: Timestamp) -> SignedDuration {
    let wait = later.duration_since(now);
    let mut secs = wait.as_secs();
    if wait.subsec_nanos() > 0 {
        secs += 1;
    }
    SignedDuration::from_secs(secs.max(1))
}

fn waits_longer(candidate: &RateLimited, current: Option<&RateLimited>) -> bool {
    match (candidate, current) {
        (_, None) => true,
        (_, Some(RateLimited::NeverFits { .. })) => false,
        (RateLimited::NeverFits { .. }, Some(_)) => true,
        (
            RateLimited::Exceeded { retry_after: a, .. },
            Some(RateLimited::Exceeded { retry_after: b, .. }),
        ) => a > b,
    }
}

#[cfg(test)]
#[path = "rate_tests.rs"]
mod tests;
