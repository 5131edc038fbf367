use super::*;
use crate::budget::window::Period;

fn d(s: &str) -> Decimal {
    crate::money::parse_amount(s).unwrap()
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn line(policy: &str, limit: &str, period: Period, kind: WindowType) -> Line {
    let spec = WindowSpec::new(period, kind, "UTC").unwrap();
    Line {
        id: CounterId::new(policy, &spec),
        policy_version: 1,
        limit: d(limit),
        currency: Currency::USD,
        spec,
    }
}

#[test]
fn reservations_fit_or_are_refused_naming_the_budget() {
    let c = Counters::new();
    let daily = line("p-day", "1.00", Period::Daily, WindowType::Calendar);
    let now = t("2026-11-22T10:00:00Z");
    let a = c
        .reserve(std::slice::from_ref(&daily), d("0.60"), now)
        .unwrap();
    let e = c
        .reserve(std::slice::from_ref(&daily), d("0.50"), now)
        .unwrap_err();
    assert_eq!(e.policy_id, "p-day");
    assert_eq!(e.standing.reserved, d("0.60"));
    assert_eq!(e.standing.spent, Decimal::ZERO);
    assert_eq!(e.requested, d("0.50"));
    assert_eq!(e.standing.resets_at, t("2026-11-23T00:00:00Z"));
    // Settling below the estimate frees the difference at once.
    a.settle(d("0.10"));
    let s = c.standing(&daily, now);
    assert_eq!((s.spent, s.reserved), (d("0.10"), Decimal::ZERO));
    assert!(c
        .reserve(std::slice::from_ref(&daily), d("0.90"), now)
        .is_ok());
    assert_eq!(c.held(), 0, "the handle above was dropped: released");
}

#[test]
fn a_reservation_touches_all_budgets_or_none() {
    let c = Counters::new();
    let hourly = line("p-hour", "1.00", Period::Hourly, WindowType::Calendar);
    let daily = line("p-day", "5.00", Period::Daily, WindowType::Calendar);
    let both = [daily.clone(), hourly.clone()];
    let now = t("2026-11-22T10:15:00Z");
    let first = c.reserve(&both, d("0.80"), now).unwrap();
    // Fits the daily budget, not the hourly one: neither is touched.
    let e = c.reserve(&both, d("0.30"), now).unwrap_err();
    assert_eq!(e.policy_id, "p-hour");
    assert_eq!(c.standing(&daily, now).reserved, d("0.80"));
    first.settle(d("0.80"));
    // The next hour has room again; the day keeps counting.
    let later = t("2026-11-22T11:00:00Z");
    c.reserve(&both, d("0.90"), later)
        .unwrap()
        .settle(d("0.90"));
    assert_eq!(c.standing(&daily, later).spent, d("1.70"));
    assert_eq!(c.standing(&hourly, later).spent, d("0.90"));
}

#[test]
fn dropping_or_releasing_gives_the_hold_back() {
    let c = Counters::new();
    let daily = line("p", "1.00", Period::Daily, WindowType::Calendar);
    let now = t("2026-11-22T10:00:00Z");
    drop(
        c.reserve(std::slice::from_ref(&daily), d("1.00"), now)
            .unwrap(),
    );
    c.reserve(std::slice::from_ref(&daily), d("1.00"), now)
        .unwrap()
        .release();
    let s = c.standing(&daily, now);
    assert_eq!((s.spent, s.reserved), (Decimal::ZERO, Decimal::ZERO));
}

#[test]
fn a_call_is_charged_to_the_window_it_started_in() {
    let c = Counters::new();
    let daily = line("p", "1.00", Period::Daily, WindowType::Calendar);
    let r = c
        .reserve(
            std::slice::from_ref(&daily),
            d("1.00"),
            t("2026-11-22T23:59:59Z"),
        )
        .unwrap();
    let tomorrow = t("2026-11-23T00:00:01Z");
    assert_eq!(c.standing(&daily, tomorrow).reserved, Decimal::ZERO);
    r.settle(d("0.70"));
    assert_eq!(c.standing(&daily, tomorrow).spent, Decimal::ZERO);
    assert_eq!(
        c.standing(&daily, t("2026-11-22T23:59:59Z")).spent,
        d("0.70")
    );
}

#[test]
fn rolling_windows_let_old_spend_leave() {
    let c = Counters::new();
    let rolling = line("p", "1.00", Period::Hourly, WindowType::Rolling);
    let t0 = t("2026-11-22T10:00:00Z");
    c.reserve(std::slice::from_ref(&rolling), d("1.00"), t0)
        .unwrap()
        .settle(d("1.00"));
    let half = t("2026-11-22T10:30:00Z");
    assert!(c
        .reserve(std::slice::from_ref(&rolling), d("0.01"), half)
        .is_err());
    // An hour and one bucket later the spend has left the window.
    let later = t("2026-11-22T11:01:00Z");
    assert!(c
        .reserve(std::slice::from_ref(&rolling), d("1.00"), later)
        .is_ok());
}

#[test]
fn priming_adds_recorded_spend_once() {
    let c = Counters::new();
    let daily = line("p", "1.00", Period::Daily, WindowType::Calendar);
    let now = t("2026-11-22T10:00:00Z");
    let spend = [
        (t("2026-11-22T01:00:00Z"), d("0.25")),
        (t("2026-11-21T23:00:00Z"), d("5.00")), // yesterday: not counted
    ];
    assert!(c.prime(&daily.id, &daily.spec, spend));
    assert!(!c.prime(&daily.id, &daily.spec, [(now, d("9"))]));
    assert_eq!(c.standing(&daily, now).spent, d("0.25"));
    assert!(c
        .reserve(std::slice::from_ref(&daily), d("0.76"), now)
        .is_err());
    assert!(c.reserve(&[daily], d("0.75"), now).is_ok());
}

#[test]
fn concurrent_reservations_never_overshoot() {
    let c = Counters::new();
    let daily = line("p", "10.00", Period::Daily, WindowType::Calendar);
    let now = t("2026-11-22T10:00:00Z");
    let admitted = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..100 {
                    if let Ok(r) = c.reserve(std::slice::from_ref(&daily), d("0.30"), now) {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        r.settle(d("0.30"));
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 33, "10.00 / 0.30 = 33 calls fit");
    assert_eq!(c.standing(&daily, now).spent, d("9.90"));
}
