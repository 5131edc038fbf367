//! The Redis counters pass the counters conformance suite against a real
//! Redis, each case under its own key prefix; and, beyond the suite, what
//! only a shared implementation can get wrong: several replicas, counters
//! lost with Redis's data, a history or a Redis that cannot answer.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

use super::RedisCounters;
use crate::budget::counters::{BoxFuture, CounterId, Counters, Line, NotReserved, ReservationId};
use crate::budget::window::{Period, WindowSpec, WindowType};
use crate::money::{Currency, Decimal};
use crate::shared::{test_redis, Keys};
use crate::snapshot::{SourceError, SpendHistory};
use crate::store::Spend;

/// A spend history the test writes, or one that cannot answer.
#[derive(Default)]
struct History {
    rows: Mutex<Vec<Spend>>,
    down: std::sync::atomic::AtomicBool,
    reads: std::sync::atomic::AtomicUsize,
}

impl SpendHistory for Arc<History> {
    fn spend_since(
        &self,
        _principal: &str,
        since_ms: i64,
    ) -> BoxFuture<Result<Vec<Spend>, SourceError>> {
        use std::sync::atomic::Ordering;
        self.reads.fetch_add(1, Ordering::SeqCst);
        let r = if self.down.load(Ordering::SeqCst) {
            Err(SourceError("ledger unreachable".into()))
        } else {
            Ok(self
                .rows
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.ts_ms >= since_ms)
                .cloned()
                .collect())
        };
        Box::pin(std::future::ready(r))
    }
}

async fn counters(ttl: SignedDuration) -> RedisCounters {
    counters_and_keys(ttl).await.0
}

crate::counters_conformance!(counters);

fn d(s: &str) -> Decimal {
    crate::money::parse_amount(s).unwrap()
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn daily(limit: &str) -> Line {
    let spec = WindowSpec::new(Period::Daily, WindowType::Calendar, "UTC").unwrap();
    Line {
        id: CounterId::new("p-day", &spec),
        policy_version: 1,
        limit: d(limit),
        currency: Currency::USD,
        spec,
    }
}

const TTL: SignedDuration = SignedDuration::from_mins(10);

/// Two replicas (two clients on one prefix) share one budget: 64
/// concurrent reservations split across them never overshoot it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_budget() {
    let (conn, keys) = test_redis::fresh().await;
    let history: Arc<dyn SpendHistory> = Arc::new(Arc::new(History::default()));
    let a = Arc::new(RedisCounters::new(conn, keys.clone(), TTL, history.clone()));
    let conn_b = crate::shared::connect(&test_redis::url()).await.unwrap();
    let b = Arc::new(RedisCounters::new(conn_b, keys, TTL, history));
    let line = daily("5.00");
    let now = t("2026-11-22T10:00:00Z");
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let line = line.clone();
        tasks.push(tokio::spawn(async move {
            let lines = std::slice::from_ref(&line);
            match c
                .reserve("agent-1", ReservationId::new(), lines, d("0.25"), now)
                .await
            {
                Ok(h) => {
                    c.settle(&h, d("0.25"), now).await.unwrap();
                    1
                }
                Err(NotReserved::Exceeded(_)) => 0,
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert_eq!(admitted, 20, "5.00 / 0.25 = 20 calls fit");
    let s = b.standing("agent-1", &line, now).await.unwrap();
    assert_eq!((s.spent, s.reserved), (d("5"), Decimal::ZERO));
}

/// Counters lost with Redis's data are primed again from the ledger before
/// the next reservation: the spend recorded before the loss still counts.
#[tokio::test]
async fn lost_counters_are_primed_from_the_ledger() {
    let (conn, keys) = test_redis::fresh().await;
    let history = Arc::new(History::default());
    let c = RedisCounters::new(conn.clone(), keys.clone(), TTL, Arc::new(history.clone()));
    let line = daily("1.00");
    let lines = std::slice::from_ref(&line);
    let now = t("2026-11-22T10:00:00Z");
    let h = c
        .reserve("agent-1", ReservationId::new(), lines, d("0.70"), now)
        .await
        .unwrap();
    c.settle(&h, d("0.70"), now).await.unwrap();
    // The ledger recorded the call; then Redis loses everything.
    history.rows.lock().unwrap().push(Spend {
        ts_ms: now.as_millisecond(),
        amount: d("0.70"),
        currency: "USD".into(),
    });
    flush(&conn, &keys).await;
    assert!(!c.knows("agent-1", &line.id).await.unwrap());
    // 0.70 is still spent: 0.40 does not fit, 0.30 does.
    assert!(matches!(
        c.reserve("agent-1", ReservationId::new(), lines, d("0.40"), now)
            .await,
        Err(NotReserved::Exceeded(_))
    ));
    c.reserve("agent-1", ReservationId::new(), lines, d("0.30"), now)
        .await
        .expect("fits");
}

/// While a lost counter cannot be primed (the ledger is unreachable), its
/// principal's calls are refused as unavailable, never admitted on a guess.
#[tokio::test]
async fn an_unprimed_counter_refuses_until_the_ledger_answers() {
    use std::sync::atomic::Ordering;
    let (conn, keys) = test_redis::fresh().await;
    let history = Arc::new(History::default());
    history.down.store(true, Ordering::SeqCst);
    let c = RedisCounters::new(conn, keys, TTL, Arc::new(history.clone()));
    let line = daily("1.00");
    let lines = std::slice::from_ref(&line);
    let now = t("2026-11-22T10:00:00Z");
    let r = c
        .reserve("agent-1", ReservationId::new(), lines, d("0.10"), now)
        .await;
    assert!(matches!(r, Err(NotReserved::Unavailable(_))), "{r:?}");
    history.down.store(false, Ordering::SeqCst);
    c.reserve("agent-1", ReservationId::new(), lines, d("0.10"), now)
        .await
        .expect("primed, then admitted");
    // Primed once: the next reservation reads no history.
    let reads = history.reads.load(Ordering::SeqCst);
    c.reserve("agent-1", ReservationId::new(), lines, d("0.10"), now)
        .await
        .unwrap();
    assert_eq!(history.reads.load(Ordering::SeqCst), reads);
}

/// A hold whose replica died expires by itself; settling it afterwards
/// (a retried settle, too) charges it once.
#[tokio::test]
async fn an_expired_hold_is_charged_once() {
    let c = counters(SignedDuration::from_mins(5)).await;
    let line = daily("1.00");
    let lines = std::slice::from_ref(&line);
    let t0 = t("2026-11-22T10:00:00Z");
    let h = c
        .reserve("agent-1", ReservationId::new(), lines, d("0.60"), t0)
        .await
        .unwrap();
    let later = t("2026-11-22T10:06:00Z");
    let s = c.standing("agent-1", &line, later).await.unwrap();
    assert_eq!(s.reserved, Decimal::ZERO, "expired");
    c.settle(&h, d("0.60"), later).await.unwrap();
    c.settle(&h, d("0.60"), later).await.unwrap();
    c.release(&h, later).await.unwrap();
    let s = c.standing("agent-1", &line, later).await.unwrap();
    assert_eq!((s.spent, s.reserved), (d("0.6"), Decimal::ZERO));
}

/// Amounts finer than a micro-unit are reserved and spent rounded up:
/// never below what the provider can bill.
#[tokio::test]
async fn sub_micro_amounts_round_towards_refusing() {
    let c = counters(TTL).await;
    let line = daily("0.000002");
    let lines = std::slice::from_ref(&line);
    let now = t("2026-11-22T10:00:00Z");
    for _ in 0..2 {
        let h = c
            .reserve("agent-1", ReservationId::new(), lines, d("0.0000001"), now)
            .await
            .unwrap();
        c.settle(&h, d("0.0000001"), now).await.unwrap();
    }
    assert!(c
        .reserve("agent-1", ReservationId::new(), lines, d("0.0000001"), now)
        .await
        .is_err());
}

/// A Redis that cannot be reached refuses: nothing can be promised.
#[tokio::test]
async fn an_unreachable_redis_refuses() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let r = crate::shared::connect(&format!("redis://127.0.0.1:{port}/")).await;
    assert!(r.is_err(), "nothing listens there");
}

/// Principals' keys stay apart, and a principal id that is not a plain
/// name cannot reach another's keys.
#[tokio::test]
async fn principals_are_counted_apart() {
    let c = counters(TTL).await;
    let line = daily("1.00");
    let lines = std::slice::from_ref(&line);
    let now = t("2026-11-22T10:00:00Z");
    for p in ["agent-1", "agent-1}", "{agent-1}"] {
        c.reserve(p, ReservationId::new(), lines, d("1.00"), now)
            .await
            .unwrap_or_else(|e| panic!("{p}: {e}"));
    }
}

/// Deletes every key under the prefix (Redis "lost its data").
async fn flush(conn: &redis::aio::ConnectionManager, keys: &Keys) {
    let mut conn = conn.clone();
    let found: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", keys.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !found.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(found)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// A live replica renews the holds of its calls in flight, however long
/// they run; a replica that dies (its counters dropped) stops, and its
/// holds count for nothing once their time to live passes — on the clock
/// every replica shares, with no one settling them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_holds_are_renewed_and_a_dead_replicas_expire() {
    let ttl = SignedDuration::from_millis(600);
    let (conn, keys) = test_redis::fresh().await;
    let history: Arc<dyn SpendHistory> = Arc::new(Arc::new(History::default()));
    let live = RedisCounters::new(conn.clone(), keys.clone(), ttl, history.clone());
    let dying = RedisCounters::new(conn, keys, ttl, history);
    let line = daily("10.00");
    let lines = std::slice::from_ref(&line);
    let now = crate::clock::now;
    let kept = live
        .reserve("agent-1", ReservationId::new(), lines, d("1.00"), now())
        .await
        .unwrap();
    let lost = dying
        .reserve("agent-1", ReservationId::new(), lines, d("2.00"), now())
        .await
        .unwrap();
    assert_eq!((live.live_holds(), dying.live_holds()), (1, 1));
    drop(dying);
    // Three times the time to live later, the live replica's hold is still
    // held; the dead one's is gone.
    tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
    let s = live.standing("agent-1", &line, now()).await.unwrap();
    assert_eq!(s.reserved, d("1"), "only the live replica's hold is held");
    live.settle(&kept, d("0.50"), now()).await.unwrap();
    assert_eq!(live.live_holds(), 0, "a finished hold is no longer renewed");
    // The dead replica's call is never charged by anyone; a late settle of
    // it (its caller came back) charges it once.
    let s = live.standing("agent-1", &line, now()).await.unwrap();
    assert_eq!((s.spent, s.reserved), (d("0.5"), Decimal::ZERO));
    live.settle(&lost, d("2.00"), now()).await.unwrap();
    live.settle(&lost, d("2.00"), now()).await.unwrap();
    let s = live.standing("agent-1", &line, now()).await.unwrap();
    assert_eq!(s.spent, d("2.5"));
}

/// A principal under several budgets, none of which Redis knows yet (new,
/// or every counter expired while it was idle): the first reservation
/// primes each of them and goes through.
#[tokio::test]
async fn every_unknown_counter_is_primed_before_the_first_reservation() {
    let c = counters(TTL).await;
    let lines: Vec<Line> = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
    ]
    .into_iter()
    .map(|period| {
        let spec = WindowSpec::new(period, WindowType::Calendar, "UTC").unwrap();
        Line {
            id: CounterId::new(&format!("p-{}", period.as_str()), &spec),
            policy_version: 1,
            limit: d("1.00"),
            currency: Currency::USD,
            spec,
        }
    })
    .collect();
    let now = t("2026-11-22T10:00:00Z");
    c.reserve("agent-1", ReservationId::new(), &lines, d("0.10"), now)
        .await
        .expect("all four primed, then reserved");
    for line in &lines {
        assert!(c.knows("agent-1", &line.id).await.unwrap());
    }
}

/// A counter keeps only the cells its window can still count: a
/// reservation prunes the ones before it, so a rolling budget's hash does
/// not grow with every bucket it ever had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_that_left_the_window_are_pruned() {
    let (c, conn, keys) = counters_and_keys(TTL).await;
    let spec = WindowSpec::new(Period::Hourly, WindowType::Rolling, "UTC").unwrap();
    let line = Line {
        id: CounterId::new("p-hour", &spec),
        policy_version: 1,
        limit: d("100.00"),
        currency: Currency::USD,
        spec,
    };
    let lines = std::slice::from_ref(&line);
    let start = t("2026-11-22T10:00:00Z");
    for minutes in [0, 20, 40, 130] {
        let now = start + SignedDuration::from_mins(minutes);
        spend_one(&c, lines, now).await;
    }
    let key = format!(
        "{}:c:{}:{}",
        keys.principal("agent"),
        line.id.policy_id,
        line.id.window
    );
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let cells: Vec<&String> = fields.iter().filter(|f| f.starts_with("s:")).collect();
    // 10:00–10:40 left the hour before 12:10; only 12:10's cell is kept.
    assert_eq!(cells.len(), 1, "{fields:?}");
    let standing = c
        .standing("agent", &line, start + SignedDuration::from_mins(130))
        .await
        .unwrap();
    assert_eq!(standing.spent, d("1.00"));
}

/// Finished ids are remembered for `FINISHED_MEMORY` (a second settle
/// within it changes nothing) and forgotten after it: the set is trimmed
/// every few finishes, so it stays bounded however many calls a principal
/// makes, and its key expires.
#[tokio::test]
async fn finished_ids_are_remembered_then_trimmed() {
    use crate::budget::counters::FINISHED_MEMORY;
    let (c, conn, keys) = counters_and_keys(TTL).await;
    let line = daily("1000000.00");
    let lines = std::slice::from_ref(&line);
    let start = t("2026-11-22T10:00:00Z");
    let finished = format!("{}:finished", keys.principal("agent"));
    let mut first = Vec::new();
    for _ in 0..200 {
        first.push(spend_one(&c, lines, start).await);
    }
    assert_eq!(
        zcard(&conn, &finished).await,
        200,
        "every finished id is remembered"
    );
    // A retried settle within the memory charges nothing more.
    c.settle(&first[0], d("1.00"), start).await.unwrap();
    let s = c.standing("agent", &line, start).await.unwrap();
    assert_eq!(s.spent, d("200"));
    // Past the memory, the next finishes trim the earlier ids (one in 16
    // trims: 200 finishes all missing it has odds of about 10⁻⁶).
    let later = start + FINISHED_MEMORY + SignedDuration::from_secs(1);
    for _ in 0..200 {
        spend_one(&c, lines, later).await;
    }
    let left = zcard(&conn, &finished).await;
    assert!(
        left <= 200,
        "the earlier 200 ids are forgotten: {left} left"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&finished)
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert!(ttl > 0, "the set expires by itself: {ttl}");
}

/// Counters on a fresh prefix with an empty history whose holds expire
/// after `ttl`, with the connection and keys to read what they left in
/// Redis.
async fn counters_and_keys(
    ttl: SignedDuration,
) -> (
    RedisCounters,
    redis::aio::ConnectionManager,
    crate::shared::Keys,
) {
    let (conn, keys) = test_redis::fresh().await;
    let c = RedisCounters::new(
        conn.clone(),
        keys.clone(),
        ttl,
        Arc::new(Arc::new(History::default())),
    );
    (c, conn, keys)
}

/// One call of `agent` reserving and spending 1.00 at `now`.
async fn spend_one(
    c: &RedisCounters,
    lines: &[Line],
    now: Timestamp,
) -> crate::budget::counters::Hold {
    let hold = c
        .reserve("agent", ReservationId::new(), lines, d("1.00"), now)
        .await
        .unwrap();
    c.settle(&hold, d("1.00"), now).await.unwrap();
    hold
}

async fn zcard(conn: &redis::aio::ConnectionManager, key: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
        .unwrap()
}
