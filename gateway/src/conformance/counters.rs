//! The [`Counters`] contract (see `crate::budget::counters`). Each case
//! takes a constructor from the hold time-to-live to a fresh, empty
//! implementation.

use std::future::Future;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use crate::budget::counters::{CounterId, Counters, Line, NotReserved, ReservationId};
use crate::budget::window::{Period, WindowSpec, WindowType};
use crate::money::{Currency, Decimal};

/// Builds (asynchronously: a network implementation connects) a fresh
/// implementation whose unsettled holds expire after the given time.
pub trait Make<C, F: Future<Output = C>>: Fn(SignedDuration) -> F {}
impl<C, F: Future<Output = C>, M: Fn(SignedDuration) -> F> Make<C, F> for M {}

const TTL: SignedDuration = SignedDuration::from_mins(10);
const P: &str = "agent-1";

fn d(s: &str) -> Decimal {
    crate::money::parse_amount(s).expect("an amount")
}

fn t(s: &str) -> Timestamp {
    s.parse().expect("a timestamp")
}

fn line(policy: &str, limit: &str, period: Period, kind: WindowType) -> Line {
    let spec = WindowSpec::new(period, kind, "UTC").expect("a window");
    Line {
        id: CounterId::new(policy, &spec),
        policy_version: 1,
        limit: d(limit),
        currency: Currency::USD,
        spec,
    }
}

async fn spent_reserved<C: Counters>(c: &C, l: &Line, now: Timestamp) -> (Decimal, Decimal) {
    let s = c.standing(P, l, now).await.expect("standing");
    (s.spent, s.reserved)
}

/// Reservations fit, or are refused naming the budget, its standing and
/// reset; settling below the estimate frees the difference at once.
pub async fn reserve_fits_or_names_the_budget<C: Counters, F: Future<Output = C>>(
    make: impl Make<C, F>,
) {
    let c = make(TTL).await;
    let daily = line("p-day", "1.00", Period::Daily, WindowType::Calendar);
    let lines = std::slice::from_ref(&daily);
    let now = t("2026-11-22T10:00:00Z");
    let a = c
        .reserve(P, ReservationId::new(), lines, d("0.60"), now)
        .await
        .expect("fits");
    let NotReserved::Exceeded(e) = c
        .reserve(P, ReservationId::new(), lines, d("0.50"), now)
        .await
        .expect_err("does not fit")
    else {
        panic!("refused for another reason");
    };
    assert_eq!(e.policy_id, "p-day");
    assert_eq!(
        (e.standing.spent, e.standing.reserved),
        (Decimal::ZERO, d("0.60"))
    );
    assert_eq!(e.requested, d("0.50"));
    assert_eq!(e.limit, d("1.00"));
    assert_eq!(e.standing.resets_at, t("2026-11-23T00:00:00Z"));
    c.settle(&a, d("0.10"), now).await.expect("settle");
    assert_eq!(
        spent_reserved(&c, &daily, now).await,
        (d("0.10"), Decimal::ZERO)
    );
    // Exactly up to the limit fits; a cent more does not.
    let b = c
        .reserve(P, ReservationId::new(), lines, d("0.90"), now)
        .await
        .expect("fits exactly");
    assert!(c
        .reserve(P, ReservationId::new(), lines, d("0.01"), now)
        .await
        .is_err());
    c.release(&b, now).await.expect("release");
}

/// A reservation touches every budget or none.
pub async fn all_budgets_or_none<C: Counters, F: Future<Output = C>>(make: impl Make<C, F>) {
    let c = make(TTL).await;
    let hourly = line("p-hour", "1.00", Period::Hourly, WindowType::Calendar);
    let daily = line("p-day", "5.00", Period::Daily, WindowType::Calendar);
    let both = [daily.clone(), hourly.clone()];
    let now = t("2026-11-22T10:15:00Z");
    let first = c
        .reserve(P, ReservationId::new(), &both, d("0.80"), now)
        .await
        .expect("fits");
    // Fits the daily budget, not the hourly one: neither is touched.
    let NotReserved::Exceeded(e) = c
        .reserve(P, ReservationId::new(), &both, d("0.30"), now)
        .await
        .expect_err("hourly is full")
    else {
        panic!("refused for another reason");
    };
    assert_eq!(e.policy_id, "p-hour");
    assert_eq!(
        spent_reserved(&c, &daily, now).await,
        (Decimal::ZERO, d("0.80"))
    );
    c.settle(&first, d("0.80"), now).await.expect("settle");
    // The next hour has room again; the day keeps counting.
    let later = t("2026-11-22T11:00:00Z");
    let h = c
        .reserve(P, ReservationId::new(), &both, d("0.90"), later)
        .await
        .expect("fits");
    c.settle(&h, d("0.90"), later).await.expect("settle");
    assert_eq!(spent_reserved(&c, &daily, later).await.0, d("1.70"));
    assert_eq!(spent_reserved(&c, &hourly, later).await.0, d("0.90"));
}

/// Releasing gives the hold back; nothing is spent.
pub async fn release_gives_the_hold_back<C: Counters, F: Future<Output = C>>(
    make: impl Make<C, F>,
) {
    let c = make(TTL).await;
    let daily = line("p", "1.00", Period::Daily, WindowType::Calendar);
    let lines = std::slice::from_ref(&daily);
    let now = t("2026-11-22T10:00:00Z");
    let h = c
        .reserve(P, ReservationId::new(), lines, d("1.00"), now)
        .await
        .expect("fits");
    c.release(&h, now).await.expect("release");
    assert_eq!(
        spent_reserved(&c, &daily, now).await,
        (Decimal::ZERO, Decimal::ZERO)
    );
    c.reserve(P, ReservationId::new(), lines, d("1.00"), now)
        .await
        .expect("room again");
}

/// A call is charged to the window it started in.
pub async fn charged_to_the_window_it_started_in<C: Counters, F: Future<Output = C>>(
    make: impl Make<C, F>,
) {
    let c = make(TTL).await;
    let daily = line("p", "1.00", Period::Daily, WindowType::Calendar);
    let start = t("2026-11-22T23:59:59Z");
    let h = c
        .reserve(
            P,
            ReservationId::new(),
            std::slice::from_ref(&daily),
            d("1.00"),
            start,
        )
        .await
        .expect("fits");
    let tomorrow = t("2026-11-23T00:00:01Z");
    assert_eq!(spent_reserved(&c, &daily, tomorrow).await.1, Decimal::ZERO);
    c.settle(&h, d("0.70"), tomorrow).await.expect("settle");
    assert_eq!(spent_reserved(&c, &daily, tomorrow).await.0, Decimal::ZERO);
    assert_eq!(spent_reserved(&c, &daily, start).await.0, d("0.70"));
}

/// Rolling windows let old spend leave, never early.
pub async fn rolling_windows_let_old_spend_leave<C: Counters, F: Future<Output = C>>(
    make: impl Make<C, F>,
) {
    let c = make(TTL).await;
    let rolling = line("p", "1.00", Period::Hourly, WindowType::Rolling);
    let lines = std::slice::from_ref(&rolling);
    let t0 = t("2026-11-22T10:00:00Z");
    let h = c
        .reserve(P, ReservationId::new(), lines, d("1.00"), t0)
        .await
        .expect("fits");
    c.settle(&h, d("1.00"), t0).await.expect("settle");
    let half = t("2026-11-22T10:30:00Z");
    assert!(c
        .reserve(P, ReservationId::new(), lines, d("0.01"), half)
        .await
        .is_err());
    assert!(c
        .reserve(
            P,
            ReservationId::new(),
            lines,
            d("0.01"),
            t("2026-11-22T10:59:59Z")
        )
        .await
        .is_err());
    // An hour and one bucket later the spend has left the window.
    let later = t("2026-11-22T11:01:00Z");
    c.reserve(P, ReservationId::new(), lines, d("1.00"), later)
        .await
        .expect("room again");
}

/// Priming adds recorded spend once, into the cells of its time, and only
/// to a counter not yet in use.
pub async fn priming_adds_recorded_spend_once<C: Counters, F: Future<Output = C>>(
    make: impl Make<C, F>,
) {
    let c = make(TTL).await;
    let daily = line("p", "1.00", Period::Daily, WindowType::Calendar);
    let now = t("2026-11-22T10:00:00Z");
    assert!(!c.knows(P, &daily.id).await.expect("knows"));
    let spend = vec![
        (t("2026-11-22T01:00:00Z"), d("0.25")),
        (t("2026-11-21T23:00:00Z"), d("5.00")), // yesterday: not counted
    ];
    assert!(c
        .prime(P, &daily.id, &daily.spec, spend)
        .await
        .expect("prime"));
    assert!(c.knows(P, &daily.id).await.expect("knows"));
    assert!(!c
        .prime(P, &daily.id, &daily.spec, vec![(now, d("9"))])
        .await
        .expect("prime"));
    assert_eq!(spent_reserved(&c, &daily, now).await.0, d("0.25"));
    let lines = std::slice::from_ref(&daily);
    assert!(c
        .reserve(P, ReservationId::new(), lines, d("0.76"), now)
        .await
        .is_err());
    c.reserve(P, ReservationId::new(), lines, d("0.75"), now)
        .await
        .expect("fits");
}

/// Every operation is idempotent by reservation id.
pub async fn operations_are_idempotent_by_reservation_id<C: Counters, F: Future<Output = C>>(
    make: impl Make<C, F>,
) {
    let c = make(TTL).await;
    let daily = line("p", "1.00", Period::Daily, WindowType::Calendar);
    let lines = std::slice::from_ref(&daily);
    let now = t("2026-11-22T10:00:00Z");
    let id = ReservationId::new();
    let h = c.reserve(P, id, lines, d("0.40"), now).await.expect("fits");
    // A retried reserve holds once.
    let again = c
        .reserve(P, id, lines, d("0.40"), now)
        .await
        .expect("retry");
    assert_eq!(again.id, h.id);
    assert_eq!(
        spent_reserved(&c, &daily, now).await,
        (Decimal::ZERO, d("0.40"))
    );
    // A retried settle charges once; a late release changes nothing.
    c.settle(&h, d("0.30"), now).await.expect("settle");
    c.settle(&h, d("0.30"), now).await.expect("settle again");
    c.release(&h, now).await.expect("late release");
    assert_eq!(
        spent_reserved(&c, &daily, now).await,
        (d("0.30"), Decimal::ZERO)
    );
    // A finished id cannot hold again.
    assert!(matches!(
        c.reserve(P, id, lines, d("0.10"), now).await,
        Err(NotReserved::Finished(_))
    ));
    // Released first, then settled: nothing is spent.
    let r = c
        .reserve(P, ReservationId::new(), lines, d("0.20"), now)
        .await
        .expect("fits");
    c.release(&r, now).await.expect("release");
    c.settle(&r, d("0.20"), now).await.expect("late settle");
    assert_eq!(
        spent_reserved(&c, &daily, now).await,
        (d("0.30"), Decimal::ZERO)
    );
}

/// A hold nobody settles expires after the time to live; settling it
/// afterwards still charges the actual cost.
pub async fn unsettled_holds_expire<C: Counters, F: Future<Output = C>>(make: impl Make<C, F>) {
    let ttl = SignedDuration::from_mins(5);
    let c = make(ttl).await;
    let daily = line("p", "1.00", Period::Daily, WindowType::Calendar);
    let lines = std::slice::from_ref(&daily);
    let t0 = t("2026-11-22T10:00:00Z");
    let h = c
        .reserve(P, ReservationId::new(), lines, d("1.00"), t0)
        .await
        .expect("fits");
    let before = t0
        .checked_add(ttl - SignedDuration::from_secs(1))
        .expect("time");
    assert_eq!(
        spent_reserved(&c, &daily, before).await.1,
        d("1.00"),
        "still held"
    );
    assert!(c
        .reserve(P, ReservationId::new(), lines, d("0.01"), before)
        .await
        .is_err());
    let after = t0.checked_add(ttl).expect("time");
    assert_eq!(
        spent_reserved(&c, &daily, after).await.1,
        Decimal::ZERO,
        "expired"
    );
    c.settle(&h, d("0.40"), after).await.expect("late settle");
    assert_eq!(
        spent_reserved(&c, &daily, after).await,
        (d("0.40"), Decimal::ZERO)
    );
}

/// Concurrent reservations never overshoot a limit.
pub async fn concurrent_reservations_never_overshoot<C: Counters, F: Future<Output = C>>(
    make: impl Make<C, F>,
) {
    let c = Arc::new(make(TTL).await);
    let daily = line("p", "10.00", Period::Daily, WindowType::Calendar);
    let now = t("2026-11-22T10:00:00Z");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, daily) = (c.clone(), daily.clone());
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u32;
            for _ in 0..100 {
                let lines = std::slice::from_ref(&daily);
                if let Ok(h) = c
                    .reserve(P, ReservationId::new(), lines, d("0.30"), now)
                    .await
                {
                    admitted += 1;
                    c.settle(&h, d("0.30"), now).await.expect("settle");
                }
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.expect("task");
    }
    assert_eq!(admitted, 33, "10.00 / 0.30 = 33 calls fit");
    assert_eq!(
        spent_reserved(&*c, &daily, now).await,
        (d("9.90"), Decimal::ZERO)
    );
}

/// Instantiates every case of the counters suite for one implementation:
/// `$make` is an expression of type `Fn(SignedDuration) -> impl Counters`.
#[macro_export]
macro_rules! counters_conformance {
    ($make:expr) => {
        $crate::conformance_cases!(counters, $make;
            reserve_fits_or_names_the_budget,
            all_budgets_or_none,
            release_gives_the_hold_back,
            charged_to_the_window_it_started_in,
            rolling_windows_let_old_spend_leave,
            priming_adds_recorded_spend_once,
            operations_are_idempotent_by_reservation_id,
            unsettled_holds_expire,
            concurrent_reservations_never_overshoot,
        );
    };
}

/// One `#[tokio::test]` (multi-threaded) per case of a suite.
#[macro_export]
macro_rules! conformance_cases {
    ($suite:ident, $make:expr; $($case:ident,)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$suite::$case($make).await;
            }
        )+
    };
}
