//! The [`RateLimiter`] contract: requests and tokens per sliding minute,
//! per principal; a refusal records nothing; settling replaces the
//! estimate; releasing takes the admission back.

use std::future::Future;

use jiff::{SignedDuration, Timestamp};

use crate::budget::rate::{NotAdmitted, RateLimit, RateLimited, RateLimiter};

fn t0() -> Timestamp {
    "2026-06-15T12:00:00.5Z".parse().expect("a timestamp")
}

fn at(secs: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(secs))
        .expect("a time")
}

fn rpm(n: u32) -> RateLimit {
    RateLimit::new(Some(n), None).expect("a limit")
}

fn tpm(n: u64) -> RateLimit {
    RateLimit::new(None, Some(n)).expect("a limit")
}

fn limited(r: Result<impl Sized, NotAdmitted>) -> RateLimited {
    match r {
        Err(NotAdmitted::Limited(l)) => l,
        Err(NotAdmitted::Unavailable(e)) => panic!("unavailable: {e}"),
        Ok(_) => panic!("admitted"),
    }
}

/// Exactly the limit is admitted in a minute, then refused with a retry
/// hint; the window slides, never early.
pub async fn requests_per_minute_hold<L: RateLimiter, F: Future<Output = L>>(make: impl Fn() -> F) {
    let l = make().await;
    for s in [0, 10, 20] {
        let ticket = l.admit("a", &[rpm(3)], 0, at(s)).await.expect("admitted");
        l.settle(ticket, 0, at(s)).await.expect("settle");
    }
    let r = limited(l.admit("a", &[rpm(3)], 0, at(30)).await);
    assert!(r.retry_after().is_some_and(|w| w.as_secs() >= 1), "{r:?}");
    assert_eq!(l.usage("a", at(30)).await.expect("usage").requests, 3);
    // Another principal has its own window.
    let _kept = l
        .admit("b", &[rpm(3)], 0, at(30))
        .await
        .expect("b admitted");
    // The first request counts for at least 60 s.
    assert!(l.admit("a", &[rpm(3)], 0, at(59)).await.is_err());
    let _kept = l.admit("a", &[rpm(3)], 0, at(62)).await.expect("slid");
}

/// Token estimates count until settled; settling replaces them; a request
/// that alone exceeds the limit can never fit (no retry hint).
pub async fn tokens_per_minute_hold<L: RateLimiter, F: Future<Output = L>>(make: impl Fn() -> F) {
    let l = make().await;
    let limits = [tpm(1_000)];
    let first = l.admit("a", &limits, 600, at(0)).await.expect("admitted");
    let refused = limited(l.admit("a", &limits, 500, at(1)).await);
    assert!(refused.retry_after().is_some());
    l.settle(first, 100, at(2)).await.expect("settle");
    assert_eq!(l.usage("a", at(2)).await.expect("usage").tokens, 100);
    let _kept = l
        .admit("a", &limits, 900, at(3))
        .await
        .expect("fits after settling");
    let never = limited(l.admit("a", &limits, 1_001, at(4)).await);
    assert_eq!(never.retry_after(), None);
}

/// A refusal records nothing.
pub async fn a_refusal_records_nothing<L: RateLimiter, F: Future<Output = L>>(
    make: impl Fn() -> F,
) {
    let l = make().await;
    let limits = [rpm(1), tpm(100)];
    let _kept = l.admit("a", &limits, 50, at(0)).await.expect("admitted");
    let before = l.usage("a", at(1)).await.expect("usage");
    assert!(l.admit("a", &limits, 10, at(1)).await.is_err());
    assert_eq!(l.usage("a", at(1)).await.expect("usage"), before);
}

/// Releasing takes an admission back: its request and its tokens leave
/// the window at once (a later step refused the call).
pub async fn release_takes_the_admission_back<L: RateLimiter, F: Future<Output = L>>(
    make: impl Fn() -> F,
) {
    let l = make().await;
    let limits = [rpm(2), tpm(1_000)];
    let a = l.admit("a", &limits, 700, at(0)).await.expect("admitted");
    l.release(a, at(1)).await.expect("release");
    assert_eq!(l.usage("a", at(1)).await.expect("usage").requests, 0);
    assert_eq!(l.usage("a", at(1)).await.expect("usage").tokens, 0);
    // Both requests of the minute are still available, and all the tokens.
    let b = l.admit("a", &limits, 500, at(2)).await.expect("first");
    let c = l.admit("a", &limits, 500, at(3)).await.expect("second");
    assert!(l.admit("a", &limits, 0, at(4)).await.is_err());
    l.settle(b, 500, at(5)).await.expect("settle");
    l.settle(c, 500, at(5)).await.expect("settle");
}

/// Instantiates every case of the rate-limiter suite for one
/// implementation: `$make` is an expression of type `Fn() -> impl RateLimiter`.
#[macro_export]
macro_rules! rate_conformance {
    ($make:expr) => {
        $crate::conformance_cases!(rate, $make;
            requests_per_minute_hold,
            tokens_per_minute_hold,
            a_refusal_records_nothing,
            release_takes_the_admission_back,
        );
    };
}
