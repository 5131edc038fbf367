//! The counter seam: reserve before forwarding, settle after. [`Counters`]
//! is the trait every deployment implements with the same semantics
//! (checked by the conformance suite in `counters_conformance.rs`);
//! [`InProcessCounters`] is the embedded one, sharded by principal.
//!
//! - a reservation is checked and taken across every window of every
//!   budget of the principal at once: all admit it, or none is touched;
//! - settling replaces the reserved amount with the actual cost, in the
//!   cells the reservation was taken in (a call is charged to the window it
//!   started in);
//! - every operation is idempotent by [`ReservationId`]: a retried reserve
//!   holds once, a second settle or release (within
//!   [`FINISHED_MEMORY`]) changes nothing;
//! - a hold that is neither settled nor released expires after the
//!   implementation's time to live (a replica that died cannot keep
//!   budget held); settling an expired hold still charges its actual cost.
//!
//! Every method takes `now`, so the semantics are pure over the clock.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};

use super::window::{WindowSpec, WindowType};
use crate::money::{Currency, Decimal};

/// A boxed future, for seams that a network implementation will answer
/// asynchronously. The in-process implementations return ready futures.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

fn ready<T: Send + 'static>(value: T) -> BoxFuture<T> {
    Box::pin(std::future::ready(value))
}

/// Identifies one counter: a budget policy under one window definition
/// (changing a policy's window starts a new counter, primed from the
/// ledger; changing only its limit keeps the counter).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterId {
    pub policy_id: String,
    pub window: String,
}

impl CounterId {
    pub fn new(policy_id: &str, spec: &WindowSpec) -> Self {
        Self {
            policy_id: policy_id.to_string(),
            window: format!(
                "{}/{}/{}",
                spec.period().as_str(),
                spec.window_type().as_str(),
                spec.timezone()
            ),
        }
    }
}

/// One budget a reservation must fit in.
#[derive(Debug, Clone)]
pub struct Line {
    pub id: CounterId,
    pub policy_version: u32,
    pub limit: Decimal,
    pub currency: Currency,
    pub spec: WindowSpec,
}

/// Where a budget stands in its current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub spent: Decimal,
    pub reserved: Decimal,
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    /// When the window resets (calendar) or old spend starts leaving it (rolling).
    pub resets_at: Timestamp,
}

impl Standing {
    pub fn remaining(&self, limit: Decimal) -> Decimal {
        (limit - self.spent - self.reserved).max(Decimal::ZERO)
    }
}

/// A refused reservation: the first budget it did not fit in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub policy_id: String,
    pub policy_version: u32,
    pub limit: Decimal,
    pub currency: Currency,
    pub requested: Decimal,
    pub standing: Standing,
    pub window: String,
}

/// Why nothing was reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReserved {
    /// The amount does not fit in a budget.
    #[error("budget {} exceeded", .0.policy_id)]
    Exceeded(Box<Exceeded>),
    /// This reservation id was already settled or released.
    #[error("reservation {0} already finished")]
    Finished(ReservationId),
    /// The counters cannot be reached: nothing can be promised.
    #[error(transparent)]
    Unavailable(#[from] CounterError),
}

/// The counters could not answer (a network implementation's failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("budget counters unavailable: {0}")]
pub struct CounterError(pub String);

/// The idempotency key of one reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(pub uuid::Uuid);

impl ReservationId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        ReservationId(uuid::Uuid::now_v7())
    }
}

impl Default for ReservationId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ReservationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The receipt of a reservation: everything settling it needs, even after
/// the hold itself expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: ReservationId,
    pub principal: String,
    pub amount: Decimal,
    /// The cell of each counter the amount was reserved in.
    pub cells: Vec<(CounterId, i64)>,
    pub expires_at: Timestamp,
}

/// Budget counters: reserve / settle / release across every window of
/// every budget of a principal. See the module docs for the contract.
pub trait Counters: Send + Sync + 'static {
    /// Reserves `amount` in the current window of every line, or in none.
    /// Reserving an id that is already held returns its hold again.
    fn reserve(
        &self,
        principal: &str,
        id: ReservationId,
        lines: &[Line],
        amount: Decimal,
        now: Timestamp,
    ) -> BoxFuture<Result<Hold, NotReserved>>;

    /// Replaces the hold with `actual` spend, in the hold's cells.
    fn settle(
        &self,
        hold: &Hold,
        actual: Decimal,
        now: Timestamp,
    ) -> BoxFuture<Result<(), CounterError>>;

    /// Gives the hold back: nothing was spent.
    fn release(&self, hold: &Hold, now: Timestamp) -> BoxFuture<Result<(), CounterError>>;

    /// Where `line` of `principal` stands at `now`.
    fn standing(
        &self,
        principal: &str,
        line: &Line,
        now: Timestamp,
    ) -> BoxFuture<Result<Standing, CounterError>>;

    /// Whether the counter exists (was primed or used).
    fn knows(&self, principal: &str, id: &CounterId) -> BoxFuture<Result<bool, CounterError>>;

    /// Adds spend recorded before these counters counted it (the ledger's
    /// costs), each into the cell of its time. Only for a counter not yet
    /// in use: returns false and adds nothing otherwise.
    fn prime(
        &self,
        principal: &str,
        id: &CounterId,
        spec: &WindowSpec,
        spend: Vec<(Timestamp, Decimal)>,
    ) -> BoxFuture<Result<bool, CounterError>>;
}

/// The cell a reservation at `now` goes into and the cells whose sum is
/// the window's spend.
pub(crate) fn cells_at(spec: &WindowSpec, now: Timestamp) -> (i64, std::ops::RangeInclusive<i64>) {
    match spec.window_type() {
        WindowType::Calendar => {
            let key = spec.key(now);
            (key, key..=key)
        }
        WindowType::Rolling => (spec.bucket_of(now), spec.buckets_in(now)),
    }
}

/// The window bounds of a standing (time-zone arithmetic: done outside
/// any lock).
pub(crate) fn standing_at(
    spec: &WindowSpec,
    now: Timestamp,
    (spent, reserved): (Decimal, Decimal),
) -> Standing {
    let window = spec.current(now);
    Standing {
        spent,
        reserved,
        window_start: window.start,
        window_end: window.end,
        resets_at: spec.resets_at(now),
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Cell {
    spent: Decimal,
    reserved: Decimal,
}

#[derive(Debug, Default)]
struct Counter {
    /// By calendar window start (unix seconds) or rolling bucket index.
    cells: BTreeMap<i64, Cell>,
}

impl Counter {
    fn sums(&self, range: std::ops::RangeInclusive<i64>) -> (Decimal, Decimal) {
        self.cells
            .range(range)
            .fold((Decimal::ZERO, Decimal::ZERO), |(s, r), (_, c)| {
                (s + c.spent, r + c.reserved)
            })
    }
}

/// How long a settled or released id is remembered, so a retried settle or
/// release changes nothing: any retry comes within it.
pub const FINISHED_MEMORY: SignedDuration = SignedDuration::from_mins(5);

/// Most finished ids a shard remembers (the oldest are forgotten first),
/// so memory stays bounded whatever the call rate.
pub(crate) const FINISHED_CAP: usize = 4096;

/// The ids finished in the last [`FINISHED_MEMORY`], at most
/// [`FINISHED_CAP`] of them.
#[derive(Debug, Default)]
struct Finished {
    ids: std::collections::HashSet<ReservationId>,
    order: std::collections::VecDeque<(Timestamp, ReservationId)>,
}

impl Finished {
    fn contains(&self, id: &ReservationId) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: ReservationId, now: Timestamp) {
        if self.ids.insert(id) {
            self.order.push_back((now, id));
        }
        let forget_before = now.checked_sub(FINISHED_MEMORY).unwrap_or(Timestamp::MIN);
        while let Some(&(at, old)) = self.order.front() {
            if at >= forget_before && self.order.len() <= FINISHED_CAP {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
    }
}

/// The counters, holds and finished ids of the principals of one shard.
#[derive(Debug, Default)]
struct Shard {
    counters: HashMap<CounterId, Counter>,
    held: HashMap<ReservationId, Hold>,
    /// Ids settled or released recently (see [`Finished`]).
    done: Finished,
    /// No hold expires before this instant.
    next_expiry: Option<Timestamp>,
}

impl Shard {
    fn take_reserved(&mut self, hold: &Hold) {
        for (id, cell) in &hold.cells {
            if let Some(c) = self
                .counters
                .get_mut(id)
                .and_then(|c| c.cells.get_mut(cell))
            {
                c.reserved = (c.reserved - hold.amount).max(Decimal::ZERO);
            }
        }
    }

    fn add_spent(&mut self, hold: &Hold, actual: Decimal) {
        for (id, cell) in &hold.cells {
            let counter = self.counters.entry(id.clone()).or_default();
            counter.cells.entry(*cell).or_default().spent += actual;
        }
    }

    /// Releases holds past their expiry.
    fn expire(&mut self, now: Timestamp) {
        if self.next_expiry.is_none_or(|t| now < t) {
            return;
        }
        let expired: Vec<ReservationId> = self
            .held
            .iter()
            .filter(|(_, h)| h.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(h) = self.held.remove(&id) {
                self.take_reserved(&h);
            }
        }
        self.next_expiry = self.held.values().map(|h| h.expires_at).min();
    }
}

/// The embedded deployment's counters: in process, sharded by principal
/// (one mutex per shard, so principals do not serialise on each other),
/// with the time-zone window arithmetic done before a lock is taken.
#[derive(Debug)]
pub struct InProcessCounters {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    ttl: SignedDuration,
}

/// Shards of [`InProcessCounters`].
const SHARDS: usize = 64;

/// How long an unsettled hold lives by default: longer than any call the
/// gateway lets run (its stalls are cut off far sooner), so only a leaked
/// hold ever expires.
pub const DEFAULT_HOLD_TTL: SignedDuration = SignedDuration::from_hours(1);

impl Default for InProcessCounters {
    fn default() -> Self {
        Self::new(DEFAULT_HOLD_TTL)
    }
}

impl InProcessCounters {
    /// Counters whose unsettled holds expire after `ttl`.
    pub fn new(ttl: SignedDuration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
            ttl,
        }
    }

    fn shard(&self, principal: &str) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(principal) % SHARDS as u64) as usize;
        // Every update leaves a shard consistent (single assignments), so a
        // panic elsewhere while it was held does not poison its meaning.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reservations held right now, in every shard.
    pub fn held(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).held.len())
            .sum()
    }

    fn reserve_now(
        &self,
        principal: &str,
        id: ReservationId,
        lines: &[Line],
        amount: Decimal,
        now: Timestamp,
    ) -> Result<Hold, NotReserved> {
        let at: Vec<_> = lines.iter().map(|l| cells_at(&l.spec, now)).collect();
        let refused = {
            let mut shard = self.shard(principal);
            shard.expire(now);
            if let Some(h) = shard.held.get(&id) {
                return Ok(h.clone());
            }
            if shard.done.contains(&id) {
                return Err(NotReserved::Finished(id));
            }
            let over = lines.iter().zip(&at).find_map(|(line, (_, range))| {
                let sums = shard
                    .counters
                    .get(&line.id)
                    .map_or((Decimal::ZERO, Decimal::ZERO), |c| c.sums(range.clone()));
                (sums.0 + sums.1 + amount > line.limit).then_some((line, sums))
            });
            match over {
                Some(refused) => refused,
                None => {
                    let mut cells = Vec::with_capacity(lines.len());
                    for (line, (cell, range)) in lines.iter().zip(&at) {
                        let counter = shard.counters.entry(line.id.clone()).or_default();
                        counter.cells.entry(*cell).or_default().reserved += amount;
                        // Cells that can no longer count are dropped (the
                        // current cell of a calendar window is its own oldest).
                        let keep_from = *range.start();
                        while counter
                            .cells
                            .first_key_value()
                            .is_some_and(|(k, _)| *k < keep_from)
                        {
                            counter.cells.pop_first();
                        }
                        cells.push((line.id.clone(), *cell));
                    }
                    let expires_at = now.checked_add(self.ttl).unwrap_or(Timestamp::MAX);
                    let hold = Hold {
                        id,
                        principal: principal.to_string(),
                        amount,
                        cells,
                        expires_at,
                    };
                    shard.next_expiry =
                        Some(shard.next_expiry.map_or(expires_at, |t| t.min(expires_at)));
                    shard.held.insert(id, hold.clone());
                    return Ok(hold);
                }
            }
        };
        let (line, sums) = refused;
        Err(NotReserved::Exceeded(Box::new(Exceeded {
            policy_id: line.id.policy_id.clone(),
            policy_version: line.policy_version,
            limit: line.limit,
            currency: line.currency,
            requested: amount,
            standing: standing_at(&line.spec, now, sums),
            window: line.id.window.clone(),
        })))
    }

    fn finish_now(&self, hold: &Hold, actual: Option<Decimal>, now: Timestamp) {
        let mut shard = self.shard(&hold.principal);
        if shard.done.contains(&hold.id) {
            return;
        }
        shard.done.insert(hold.id, now);
        // Settle or release whichever hold is recorded under this id: the
        // one this process holds, not the caller's copy.
        let held = shard.held.remove(&hold.id);
        if let Some(h) = &held {
            shard.take_reserved(h);
        }
        if let Some(actual) = actual {
            shard.add_spent(held.as_ref().unwrap_or(hold), actual.max(Decimal::ZERO));
        }
    }
}

impl Counters for InProcessCounters {
    fn reserve(
        &self,
        principal: &str,
        id: ReservationId,
        lines: &[Line],
        amount: Decimal,
        now: Timestamp,
    ) -> BoxFuture<Result<Hold, NotReserved>> {
        ready(self.reserve_now(principal, id, lines, amount, now))
    }

    fn settle(
        &self,
        hold: &Hold,
        actual: Decimal,
        now: Timestamp,
    ) -> BoxFuture<Result<(), CounterError>> {
        self.finish_now(hold, Some(actual), now);
        ready(Ok(()))
    }

    fn release(&self, hold: &Hold, now: Timestamp) -> BoxFuture<Result<(), CounterError>> {
        self.finish_now(hold, None, now);
        ready(Ok(()))
    }

    fn standing(
        &self,
        principal: &str,
        line: &Line,
        now: Timestamp,
    ) -> BoxFuture<Result<Standing, CounterError>> {
        let (_, range) = cells_at(&line.spec, now);
        let sums = {
            let mut shard = self.shard(principal);
            shard.expire(now);
            shard
                .counters
                .get(&line.id)
                .map_or((Decimal::ZERO, Decimal::ZERO), |c| c.sums(range))
        };
        ready(Ok(standing_at(&line.spec, now, sums)))
    }

    fn knows(&self, principal: &str, id: &CounterId) -> BoxFuture<Result<bool, CounterError>> {
        ready(Ok(self.shard(principal).counters.contains_key(id)))
    }

    fn prime(
        &self,
        principal: &str,
        id: &CounterId,
        spec: &WindowSpec,
        spend: Vec<(Timestamp, Decimal)>,
    ) -> BoxFuture<Result<bool, CounterError>> {
        let mut counter = Counter::default();
        for (at, amount) in spend {
            let (cell, _) = cells_at(spec, at);
            counter.cells.entry(cell).or_default().spent += amount;
        }
        let mut shard = self.shard(principal);
        if shard.counters.contains_key(id) {
            return ready(Ok(false));
        }
        shard.counters.insert(id.clone(), counter);
        ready(Ok(true))
    }
}

#[cfg(test)]
#[path = "counters_tests.rs"]
mod tests;
