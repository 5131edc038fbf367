//! The counter seam: reserve before forwarding, settle after. This is the
//! in-process implementation (one mutex over every counter of the
//! process); the distributed deployment puts the same operations in Redis
//! (an atomic Lua script per call) with the same semantics:
//!
//! - a reservation is checked and taken across every window of every
//!   budget of the principal at once: all admit it, or none is touched;
//! - settling replaces the reserved amount with the actual cost, in the
//!   cell the reservation was taken in (a call is charged to the window it
//!   started in);
//! - a reservation that is neither settled nor released (its handle was
//!   dropped) is released: nothing stays held after its call ended. A
//!   process that dies takes its reservations with it; on restart the
//!   counters are primed from the ledger's recorded costs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

use super::window::{WindowSpec, WindowType};
use crate::money::{Currency, Decimal};

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

#[derive(Debug)]
struct Hold {
    id: CounterId,
    cell: i64,
    amount: Decimal,
}

#[derive(Debug, Default)]
struct State {
    counters: HashMap<CounterId, Counter>,
    held: HashMap<u64, Vec<Hold>>,
    next: u64,
}

/// Every budget counter of this process.
#[derive(Debug, Default)]
pub struct Counters {
    state: Mutex<State>,
}

/// The cell a reservation at `now` goes into and the cells whose sum is
/// the window's spend.
fn cells_at(spec: &WindowSpec, now: Timestamp) -> (i64, std::ops::RangeInclusive<i64>) {
    match spec.window_type() {
        WindowType::Calendar => {
            let key = spec.key(now);
            (key, key..=key)
        }
        WindowType::Rolling => (spec.bucket_of(now), spec.buckets_in(now)),
    }
}

fn standing_of(counter: Option<&Counter>, spec: &WindowSpec, now: Timestamp) -> Standing {
    let (_, range) = cells_at(spec, now);
    let (mut spent, mut reserved) = (Decimal::ZERO, Decimal::ZERO);
    if let Some(c) = counter {
        for (_, cell) in c.cells.range(range) {
            spent += cell.spent;
            reserved += cell.reserved;
        }
    }
    let window = spec.current(now);
    Standing {
        spent,
        reserved,
        window_start: window.start,
        window_end: window.end,
        resets_at: spec.resets_at(now),
    }
}

impl Counters {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a cell half-updated
        // (every update is a single assignment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `amount` in every line's current window, or in none: the
    /// first line it does not fit in is returned. Lines in another currency
    /// than the amount's are the caller's business (it converts or refuses).
    pub fn reserve(
        self: &Arc<Self>,
        lines: &[Line],
        amount: Decimal,
        now: Timestamp,
    ) -> Result<Reservation, Box<Exceeded>> {
        let mut state = self.lock();
        for line in lines {
            let standing = standing_of(state.counters.get(&line.id), &line.spec, now);
            if standing.spent + standing.reserved + amount > line.limit {
                return Err(Box::new(Exceeded {
                    policy_id: line.id.policy_id.clone(),
                    policy_version: line.policy_version,
                    limit: line.limit,
                    currency: line.currency,
                    requested: amount,
                    standing,
                    window: line.id.window.clone(),
                }));
            }
        }
        let mut holds = Vec::with_capacity(lines.len());
        for line in lines {
            let (cell, oldest) = cells_at(&line.spec, now);
            let counter = state.counters.entry(line.id.clone()).or_default();
            counter.cells.entry(cell).or_default().reserved += amount;
            // Cells that can no longer count are dropped (the current cell
            // of a calendar window is its own oldest).
            let keep_from = *oldest.start();
            while let Some((&k, _)) = counter.cells.first_key_value() {
                if k >= keep_from {
                    break;
                }
                counter.cells.pop_first();
            }
            holds.push(Hold {
                id: line.id.clone(),
                cell,
                amount,
            });
        }
        state.next += 1;
        let id = state.next;
        state.held.insert(id, holds);
        Ok(Reservation {
            id,
            amount,
            counters: Some(self.clone()),
        })
    }

    /// Where each line stands at `now`.
    pub fn standing(&self, line: &Line, now: Timestamp) -> Standing {
        let state = self.lock();
        standing_of(state.counters.get(&line.id), &line.spec, now)
    }

    /// Adds spend recorded before this process counted it (the ledger's
    /// costs at start-up), into the cell of its time. Only for counters
    /// not yet in use: `prime` returns false and adds nothing otherwise.
    pub fn prime(
        &self,
        id: &CounterId,
        spec: &WindowSpec,
        spend: impl IntoIterator<Item = (Timestamp, Decimal)>,
    ) -> bool {
        let mut state = self.lock();
        if state.counters.contains_key(id) {
            return false;
        }
        let mut counter = Counter::default();
        for (at, amount) in spend {
            let (cell, _) = cells_at(spec, at);
            counter.cells.entry(cell).or_default().spent += amount;
        }
        state.counters.insert(id.clone(), counter);
        true
    }

    /// Whether the counter exists (was primed or used).
    pub fn knows(&self, id: &CounterId) -> bool {
        self.lock().counters.contains_key(id)
    }

    fn finish(&self, id: u64, actual: Option<Decimal>) {
        let mut state = self.lock();
        let Some(holds) = state.held.remove(&id) else {
            return;
        };
        for hold in holds {
            if let Some(counter) = state.counters.get_mut(&hold.id) {
                let cell = counter.cells.entry(hold.cell).or_default();
                cell.reserved = (cell.reserved - hold.amount).max(Decimal::ZERO);
                if let Some(actual) = actual {
                    cell.spent += actual;
                }
            }
        }
    }

    /// Number of reservations held right now.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }
}

/// A reservation held for one call. Settle it with the actual cost, or
/// release it; dropping it releases it.
#[derive(Debug)]
pub struct Reservation {
    id: u64,
    amount: Decimal,
    counters: Option<Arc<Counters>>,
}

impl Reservation {
    /// The amount held (the call's worst case).
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// Replaces the hold with the actual cost.
    pub fn settle(mut self, actual: Decimal) {
        if let Some(c) = self.counters.take() {
            c.finish(self.id, Some(actual.max(Decimal::ZERO)));
        }
    }

    /// Gives the hold back: nothing was spent.
    pub fn release(mut self) {
        if let Some(c) = self.counters.take() {
            c.finish(self.id, None);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(c) = self.counters.take() {
            c.finish(self.id, None);
        }
    }
}

#[cfg(test)]
#[path = "counters_tests.rs"]
mod tests;
