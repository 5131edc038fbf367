//! Budget counters in Redis, shared by every replica: the [`Counters`]
//! contract kept by Lua scripts, each of which runs atomically.
//!
//! - `reserve` checks every window of every budget of the principal and
//!   takes the amount in all of them, or in none, in one script;
//! - `settle` and `release` are one script, idempotent by reservation id:
//!   a finished id is remembered ([`FINISHED_MEMORY`]) and finishing it
//!   again changes nothing;
//! - holds expire by themselves: each is recorded with its expiry in a
//!   sorted set, and the scripts that count them (reserve, standing)
//!   first release the holds past it. The process that took a hold renews
//!   it every third of its time to live (`deployment.hold_ttl_secs`,
//!   default 60 s) while its call is in flight, however long it streams; a
//!   replica that dies stops renewing, and its holds count for nothing
//!   after at most that time. The hold records live as long as the cells
//!   they hold amounts in, so a record can never vanish while its amount
//!   still counts (Redis 7 has no per-field expiry);
//! - counter keys expire [`GRACE`] (and at most a minute more) after the
//!   last window they count ends.
//!
//! Every command a script runs costs Redis, the one thread all replicas
//! share, about as much again in the script's own overhead: the scripts
//! run as few as they can (`load-tests/bench/redis-counters.sh` counts
//! them: 20 per budgeted call with one budget line).
//!
//! Time is the caller's `now`, as for every implementation: the gateway
//! passes the one clock of the deployment (see `crate::shared::clock`).
//!
//! A counter Redis does not know (new, expired after a long idle time, or
//! lost with Redis's data) is primed from the spend history before
//! anything is reserved in it: `reserve` finds it unprimed, primes it from
//! [`SpendHistory`] and tries again. Until priming succeeds the call is
//! refused (`Unavailable`), never admitted on a guess.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use jiff::{SignedDuration, Timestamp};
use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::{from_micros, micros_down, micros_up, unavailable, Keys};
use crate::budget::counters::standing_at;
use crate::budget::counters::{
    BoxFuture, CounterError, CounterId, Counters, Exceeded, Hold, Line, NotReserved, ReservationId,
    Standing, FINISHED_MEMORY,
};
use crate::budget::window::{WindowSpec, WindowType};
use crate::money::Decimal;
use crate::snapshot::SpendHistory;

/// How long a counter key outlives the last window it counts, so a budget
/// used again soon after its window does not need priming again.
pub const GRACE: SignedDuration = SignedDuration::from_hours(6);

/// Most finished ids remembered per principal (the oldest are forgotten
/// first, and every id after [`FINISHED_MEMORY`]).
const FINISHED_CAP: usize = 65_536;

/// How often `reserve` may find a counter it had just primed gone again
/// before giving up (the counters keep vanishing: Redis evicting them).
const PRIME_ATTEMPTS: usize = 3;

fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("lua/common.lua")))
}

static RESERVE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/reserve.lua")));
static FINISH: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/finish.lua")));
static STANDING: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/standing.lua")));
static PRIME: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/prime.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/renew.lua")));

/// The holds this process issued and has not finished: what it renews.
#[derive(Default)]
struct Live {
    holds: std::sync::Mutex<std::collections::HashMap<ReservationId, Hold>>,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<ReservationId, Hold>> {
        self.holds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The embedded deployment's counters' twin for many replicas.
#[derive(Clone)]
pub struct RedisCounters {
    conn: ConnectionManager,
    keys: Keys,
    ttl: SignedDuration,
    history: Arc<dyn SpendHistory>,
    live: Arc<Live>,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters")
            .field("prefix", &self.keys.prefix())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The keys of one principal.
struct PrincipalKeys {
    holds: String,
    expiry: String,
    finished: String,
    base: String,
}

impl PrincipalKeys {
    fn new(keys: &Keys, principal: &str) -> Self {
        let base = keys.principal(principal);
        Self {
            holds: format!("{base}:holds"),
            expiry: format!("{base}:expiry"),
            finished: format!("{base}:finished"),
            base,
        }
    }

    fn counter(&self, id: &CounterId) -> String {
        format!("{}:c:{}:{}", self.base, id.policy_id, id.window)
    }
}

/// The cell a reservation at `now` goes into and the first and last cells
/// counted (as the in-process counters count them).
fn cells_at(spec: &WindowSpec, now: Timestamp) -> (i64, i64, i64) {
    let (cell, counted) = crate::budget::counters::cells_at(spec, now);
    (cell, *counted.start(), *counted.end())
}

/// The instant (ms) after which `cell` of `spec` no longer counts.
fn counts_until_ms(spec: &WindowSpec, cell: i64, now: Timestamp) -> i64 {
    match spec.window_type() {
        // The cell of a calendar window is its start; it counts until the
        // window at `now`'s end at the latest (cells only move forward).
        WindowType::Calendar => spec
            .current(Timestamp::from_second(cell).unwrap_or(now))
            .end
            .as_millisecond(),
        WindowType::Rolling => {
            let width = spec.bucket_width().as_millis() as i64;
            let length = spec.period().rolling_length().as_millis() as i64;
            cell.saturating_add(1)
                .saturating_mul(width)
                .saturating_add(length)
        }
    }
}

/// Per budget line at `now`: the cell a reservation goes into, the first
/// and last cells counted, and how long (ms) the counter key must live.
type LineCells = (i64, i64, i64, i64);

fn line_cells(line: &Line, now: Timestamp) -> LineCells {
    let (cell, first, last) = cells_at(&line.spec, now);
    (cell, first, last, key_ttl_ms(&line.spec, cell, now))
}

/// How long (ms) a key holding `cell` must live from `now`.
fn key_ttl_ms(spec: &WindowSpec, cell: i64, now: Timestamp) -> i64 {
    let left = counts_until_ms(spec, cell, now).saturating_sub(now.as_millisecond());
    left.max(0).saturating_add(GRACE.as_millis() as i64)
}

/// The caller's record of a hold, kept with it so a retried reserve
/// returns the same receipt.
#[derive(Serialize, Deserialize)]
struct HoldRecord {
    principal: String,
    amount: Decimal,
    cells: Vec<(String, String, i64)>,
    expires_ms: i64,
}

impl HoldRecord {
    fn of(hold: &Hold) -> Self {
        Self {
            principal: hold.principal.clone(),
            amount: hold.amount,
            cells: hold
                .cells
                .iter()
                .map(|(id, cell)| (id.policy_id.clone(), id.window.clone(), *cell))
                .collect(),
            expires_ms: hold.expires_at.as_millisecond(),
        }
    }

    fn into_hold(self, id: ReservationId) -> Result<Hold, CounterError> {
        Ok(Hold {
            id,
            principal: self.principal,
            amount: self.amount,
            cells: self
                .cells
                .into_iter()
                .map(|(policy_id, window, cell)| (CounterId { policy_id, window }, cell))
                .collect(),
            expires_at: Timestamp::from_millisecond(self.expires_ms)
                .map_err(|e| CounterError(format!("corrupt hold record {id}: {e}")))?,
        })
    }
}

/// What the reserve script answered.
enum Reserved {
    Ok,
    Held(Hold),
    Finished,
    Unprimed(usize),
    Exceeded {
        line: usize,
        spent: i64,
        reserved: i64,
    },
}

fn corrupt(what: impl std::fmt::Display) -> CounterError {
    CounterError(format!("unexpected answer from the reserve script: {what}"))
}

impl RedisCounters {
    /// Counters under `keys` whose unsettled holds expire after `ttl`,
    /// primed from `history` when Redis does not know a counter.
    pub fn new(
        conn: ConnectionManager,
        keys: Keys,
        ttl: SignedDuration,
        history: Arc<dyn SpendHistory>,
    ) -> Self {
        let live = Arc::new(Live::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(renew_live(
                Arc::downgrade(&live),
                conn.clone(),
                keys.clone(),
                ttl,
            ));
        }
        Self {
            conn,
            keys,
            ttl,
            history,
            live,
        }
    }

    /// Holds issued here and not finished yet.
    pub fn live_holds(&self) -> usize {
        self.live.lock().len()
    }

    async fn reserve_once(
        &self,
        keys: &PrincipalKeys,
        hold: &Hold,
        lines: &[Line],
        at: &[LineCells],
        record: &str,
        now: Timestamp,
    ) -> Result<Reserved, CounterError> {
        // The hold's keys live as long as the longest-lived cell it takes
        // an amount in, so its record outlives its amount.
        let holds_ttl = at
            .iter()
            .map(|a| a.3)
            .fold(self.ttl.as_millis() as i64, i64::max);
        let mut call = RESERVE.prepare_invoke();
        call.key(&keys.holds)
            .key(&keys.expiry)
            .key(&keys.finished)
            .arg(now.as_millisecond())
            .arg(hold.id.to_string())
            .arg(micros_up(hold.amount))
            .arg(hold.expires_at.as_millisecond())
            .arg(holds_ttl)
            .arg(record);
        for (line, (cell, first, last, ttl)) in lines.iter().zip(at) {
            call.key(keys.counter(&line.id))
                .arg(micros_down(line.limit))
                .arg(*cell)
                .arg(*first)
                .arg(*last)
                .arg(*ttl);
        }
        let answer: Vec<redis::Value> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        parse_reserved(&answer, hold.id)
    }

    /// Primes counter `line` of `principal` from the spend history; false
    /// when another caller primed it first.
    async fn prime_from_history(
        &self,
        principal: &str,
        line: &Line,
        now: Timestamp,
    ) -> Result<bool, CounterError> {
        let spend = crate::snapshot::spend_in_window(&*self.history, principal, line, now)
            .await
            .map_err(|e| CounterError(format!("cannot prime budget {}: {e}", line.id.policy_id)))?;
        self.prime_now(principal, &line.id, &line.spec, spend, now)
            .await
    }

    async fn prime_now(
        &self,
        principal: &str,
        id: &CounterId,
        spec: &WindowSpec,
        spend: Vec<(Timestamp, Decimal)>,
        now: Timestamp,
    ) -> Result<bool, CounterError> {
        let mut cells: BTreeMap<i64, Decimal> = BTreeMap::new();
        for (at, amount) in spend {
            *cells.entry(cells_at(spec, at).0).or_default() += amount;
        }
        // The current cell is the one that counts longest.
        let ttl = key_ttl_ms(spec, cells_at(spec, now).0, now);
        let keys = PrincipalKeys::new(&self.keys, principal);
        let mut call = PRIME.prepare_invoke();
        call.key(keys.counter(id)).arg(ttl);
        for (cell, amount) in cells {
            call.arg(cell).arg(micros_up(amount));
        }
        let primed: i64 = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(primed == 1)
    }

    async fn finish(
        &self,
        hold: &Hold,
        actual: Option<Decimal>,
        now: Timestamp,
    ) -> Result<(), CounterError> {
        let keys = PrincipalKeys::new(&self.keys, &hold.principal);
        // The counters' keys live at least as long as the newest cell the
        // hold charged needs (its spec is not in the hold: its cells are
        // kept for the longest period a window has, plus the grace).
        let ttl = (LONGEST_WINDOW + GRACE).as_millis() as i64;
        let mut call = FINISH.prepare_invoke();
        call.key(&keys.holds)
            .key(&keys.expiry)
            .key(&keys.finished)
            .arg(now.as_millisecond())
            .arg(hold.id.to_string())
            .arg(actual.map_or(String::new(), |a| micros_up(a).to_string()))
            .arg(FINISHED_MEMORY.as_millis() as i64)
            .arg(FINISHED_CAP)
            .arg(ttl);
        for (id, cell) in &hold.cells {
            call.key(keys.counter(id)).arg(*cell);
        }
        let _: i64 = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Renews the live holds every third of `ttl`, until the counters are
/// dropped. A renewal that fails is retried at the next round; the hold
/// expires only if none succeeds within its time to live.
async fn renew_live(
    live: std::sync::Weak<Live>,
    conn: ConnectionManager,
    keys: Keys,
    ttl: SignedDuration,
) {
    let every = std::time::Duration::try_from(ttl / 3)
        .unwrap_or(std::time::Duration::from_secs(20))
        .max(std::time::Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let Some(live) = live.upgrade() else { return };
        let mut by_principal: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for hold in live.lock().values() {
            by_principal
                .entry(hold.principal.clone())
                .or_default()
                .push(hold.id.to_string());
        }
        drop(live);
        let expires = crate::clock::now()
            .checked_add(ttl)
            .unwrap_or(Timestamp::MAX)
            .as_millisecond();
        for (principal, ids) in by_principal {
            let k = PrincipalKeys::new(&keys, &principal);
            let mut call = RENEW.prepare_invoke();
            call.key(&k.holds).key(&k.expiry).arg(expires);
            for id in &ids {
                call.arg(id);
            }
            if let Err(e) = call.invoke_async::<i64>(&mut conn.clone()).await {
                tracing::warn!(error = %e, principal, holds = ids.len(), "cannot renew budget holds");
            }
        }
    }
}

/// The longest a window lasts (a 31-day month, a 30-day rolling window
/// plus a bucket): what a spent cell's key must outlive.
const LONGEST_WINDOW: SignedDuration = SignedDuration::from_hours(32 * 24);

fn parse_reserved(answer: &[redis::Value], id: ReservationId) -> Result<Reserved, CounterError> {
    use redis::{from_redis_value_ref as get, Value};
    let tag: String = match answer.first() {
        Some(v) => get(v).map_err(corrupt)?,
        None => return Err(corrupt("nothing")),
    };
    let int = |i: usize| -> Result<i64, CounterError> {
        let v: &Value = answer.get(i).ok_or_else(|| corrupt("too short"))?;
        get::<i64>(v).map_err(corrupt)
    };
    Ok(match tag.as_str() {
        "ok" => Reserved::Ok,
        "finished" => Reserved::Finished,
        "held" => {
            let text: String =
                get(answer.get(1).ok_or_else(|| corrupt("no record"))?).map_err(corrupt)?;
            let record: HoldRecord = serde_json::from_str(&text)
                .map_err(|e| CounterError(format!("corrupt hold record {id}: {e}")))?;
            Reserved::Held(record.into_hold(id)?)
        }
        "unprimed" => Reserved::Unprimed(usize::try_from(int(1)? - 1).map_err(corrupt)?),
        "exceeded" => Reserved::Exceeded {
            line: usize::try_from(int(1)? - 1).map_err(corrupt)?,
            spent: int(2)?,
            reserved: int(3)?,
        },
        other => return Err(corrupt(other)),
    })
}

impl Counters for RedisCounters {
    fn reserve(
        &self,
        principal: &str,
        id: ReservationId,
        lines: &[Line],
        amount: Decimal,
        now: Timestamp,
    ) -> BoxFuture<Result<Hold, NotReserved>> {
        let this = self.clone();
        let lines = lines.to_vec();
        // Time-zone arithmetic and the record, once for every round below.
        let at: Vec<LineCells> = lines.iter().map(|l| line_cells(l, now)).collect();
        let hold = Hold {
            id,
            principal: principal.to_string(),
            amount,
            cells: lines
                .iter()
                .zip(&at)
                .map(|(l, a)| (l.id.clone(), a.0))
                .collect(),
            expires_at: now.checked_add(self.ttl).unwrap_or(Timestamp::MAX),
        };
        let record = serde_json::to_string(&HoldRecord::of(&hold)).expect("a hold serialises");
        Box::pin(async move {
            let keys = PrincipalKeys::new(&this.keys, &hold.principal);
            // Each round primes the first counter Redis does not know; a
            // principal has a few budget lines, each primed once. Only a
            // counter found missing again right after priming counts
            // against the attempts.
            let mut vanished = 0;
            let mut rounds = 0;
            loop {
                rounds += 1;
                if vanished >= PRIME_ATTEMPTS || rounds > lines.len() + PRIME_ATTEMPTS {
                    break;
                }
                match this
                    .reserve_once(&keys, &hold, &lines, &at, &record, now)
                    .await?
                {
                    Reserved::Ok => {
                        this.live.lock().insert(hold.id, hold.clone());
                        return Ok(hold);
                    }
                    Reserved::Held(held) => {
                        this.live.lock().insert(held.id, held.clone());
                        return Ok(held);
                    }
                    Reserved::Finished => return Err(NotReserved::Finished(id)),
                    Reserved::Unprimed(i) => {
                        let line = lines.get(i).ok_or_else(|| corrupt("no such line"))?;
                        if !this.prime_from_history(&hold.principal, line, now).await? {
                            vanished += 1;
                        }
                    }
                    Reserved::Exceeded {
                        line,
                        spent,
                        reserved,
                    } => {
                        let line = lines.get(line).ok_or_else(|| corrupt("no such line"))?;
                        let sums = (from_micros(spent), from_micros(reserved));
                        return Err(NotReserved::Exceeded(Box::new(Exceeded {
                            policy_id: line.id.policy_id.clone(),
                            policy_version: line.policy_version,
                            limit: line.limit,
                            currency: line.currency,
                            requested: amount,
                            standing: standing_at(&line.spec, now, sums),
                            window: line.id.window.clone(),
                        })));
                    }
                }
            }
            Err(NotReserved::Unavailable(CounterError(
                "budget counters keep vanishing from Redis while being primed".into(),
            )))
        })
    }

    fn settle(
        &self,
        hold: &Hold,
        actual: Decimal,
        now: Timestamp,
    ) -> BoxFuture<Result<(), CounterError>> {
        self.live.lock().remove(&hold.id);
        let (this, hold) = (self.clone(), hold.clone());
        Box::pin(async move { this.finish(&hold, Some(actual), now).await })
    }

    fn release(&self, hold: &Hold, now: Timestamp) -> BoxFuture<Result<(), CounterError>> {
        self.live.lock().remove(&hold.id);
        let (this, hold) = (self.clone(), hold.clone());
        Box::pin(async move { this.finish(&hold, None, now).await })
    }

    fn standing(
        &self,
        principal: &str,
        line: &Line,
        now: Timestamp,
    ) -> BoxFuture<Result<Standing, CounterError>> {
        let this = self.clone();
        let keys = PrincipalKeys::new(&self.keys, principal);
        let (counter, spec) = (keys.counter(&line.id), line.spec.clone());
        Box::pin(async move {
            let (_, first, last) = cells_at(&spec, now);
            let (spent, reserved): (i64, i64) = STANDING
                .key(&keys.holds)
                .key(&keys.expiry)
                .key(&counter)
                .arg(now.as_millisecond())
                .arg(first)
                .arg(last)
                .invoke_async(&mut this.conn.clone())
                .await
                .map_err(unavailable)?;
            let sums = (from_micros(spent), from_micros(reserved));
            Ok(standing_at(&spec, now, sums))
        })
    }

    fn knows(&self, principal: &str, id: &CounterId) -> BoxFuture<Result<bool, CounterError>> {
        let mut conn = self.conn.clone();
        let counter = PrincipalKeys::new(&self.keys, principal).counter(id);
        Box::pin(async move {
            redis::cmd("HEXISTS")
                .arg(&counter)
                .arg("primed")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)
        })
    }

    fn prime(
        &self,
        principal: &str,
        id: &CounterId,
        spec: &WindowSpec,
        spend: Vec<(Timestamp, Decimal)>,
    ) -> BoxFuture<Result<bool, CounterError>> {
        let this = self.clone();
        let (principal, id, spec) = (principal.to_string(), id.clone(), spec.clone());
        Box::pin(async move {
            this.prime_now(&principal, &id, &spec, spend, crate::clock::now())
                .await
        })
    }
}

#[cfg(test)]
#[path = "counters_tests.rs"]
mod tests;
