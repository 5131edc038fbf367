use std::sync::Arc;

use super::*;

crate::rate_conformance!(|| std::future::ready(InProcessRateLimiter::new()));

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn rpm(n: u32) -> RateLimit {
    RateLimit::new(Some(n), None).unwrap()
}

fn tpm(n: u64) -> RateLimit {
    RateLimit::new(None, Some(n)).unwrap()
}

/// Admits, and drops the ticket (its estimate stays counted).
fn admit_ok(
    limiter: &InProcessRateLimiter,
    principal: &str,
    limits: &[RateLimit],
    tokens: u64,
    now: Timestamp,
) {
    let _ticket = limiter
        .admit(principal, limits, tokens, now)
        .expect("admitted");
}

const T0: &str = "2026-06-15T12:00:00.5Z";

#[test]
fn rpm_admits_exactly_the_limit_then_refuses_with_retry_after() {
    let limiter = InProcessRateLimiter::new();
    let t0 = ts(T0);
    for offset in [0, 10, 20] {
        admit_ok(&limiter, "a", &[rpm(3)], 0, t0 + secs(offset));
    }
    let refused = limiter.admit("a", &[rpm(3)], 0, t0 + secs(30)).unwrap_err();
    // The first request (bucket 12:00:00) leaves at 12:01:01; from
    // 12:00:30.5 that is 30.5 s, rounded up.
    assert_eq!(
        refused,
        RateLimited::Exceeded {
            limit: LimitKind::Requests,
            limit_value: 3,
            used: 3,
            retry_after: secs(31),
        }
    );

    assert_eq!(limiter.usage("a", t0 + secs(30)).requests, 3);
}

#[test]
fn window_sliding_frees_capacity_never_early() {
    let limiter = InProcessRateLimiter::new();
    let t0 = ts(T0);
    admit_ok(&limiter, "a", &[rpm(1)], 0, t0);
    // Still counted a full 60 s after admission ...
    assert!(limiter.admit("a", &[rpm(1)], 0, t0 + secs(60)).is_err());
    let leaves = ts("2026-06-15T12:01:01Z");
    let nanos = SignedDuration::from_nanos(1);
    assert!(limiter.admit("a", &[rpm(1)], 0, leaves - nanos).is_err());
    // ... and gone when its bucket leaves.
    admit_ok(&limiter, "a", &[rpm(1)], 0, leaves);
}

#[test]
fn retry_after_is_when_enough_usage_leaves() {
    let limiter = InProcessRateLimiter::new();
    let t0 = ts("2026-06-15T12:00:00Z");
    for offset in [0, 0, 5, 5, 40] {
        admit_ok(&limiter, "a", &[rpm(5)], 0, t0 + secs(offset));
    }
    // Needs one request to leave: the two at 12:00:00 leave at 12:01:01.
    let refused = limiter.admit("a", &[rpm(5)], 0, t0 + secs(50)).unwrap_err();
    assert_eq!(refused.retry_after(), Some(secs(11)));
    // A limit of 3 needs three to leave: the ones at 12:00:05 too.
    let refused = limiter.admit("a", &[rpm(3)], 0, t0 + secs(50)).unwrap_err();
    assert_eq!(refused.retry_after(), Some(secs(16)));
    // Retry-After is never below one second.
    let refused = limiter
        .admit("a", &[rpm(5)], 0, ts("2026-06-15T12:01:00.999Z"))
        .unwrap_err();
    assert_eq!(refused.retry_after(), Some(secs(1)));
}

#[test]
fn tpm_counts_estimates_then_settle_lowers_usage() {
    let limiter = InProcessRateLimiter::new();
    let t0 = ts(T0);
    let limits = [tpm(1_000)];
    let first = limiter.admit("a", &limits, 600, t0).unwrap();
    let refused = limiter.admit("a", &limits, 500, t0 + secs(1)).unwrap_err();
    assert!(matches!(
        refused,
        RateLimited::Exceeded {
            limit: LimitKind::Tokens,
            limit_value: 1_000,
            used: 600,
            ..
        }
    ));
    limiter.settle(first, 100, t0 + secs(2));
    assert_eq!(limiter.usage("a", t0 + secs(2)).tokens, 100);
    let second = limiter.admit("a", &limits, 500, t0 + secs(3)).unwrap();
    // Settling higher than estimated counts the actual tokens.
    limiter.settle(second, 900, t0 + secs(4));
    assert_eq!(limiter.usage("a", t0 + secs(4)).tokens, 1_000);
    // At exactly the limit a request needing no tokens still fits.
    admit_ok(&limiter, "a", &limits, 0, t0 + secs(5));
    let refused = limiter.admit("a", &limits, 1, t0 + secs(5)).unwrap_err();
    assert_eq!(refused.limit(), LimitKind::Tokens);
}

#[test]
fn settle_stays_in_the_admission_bucket() {
    let limiter = InProcessRateLimiter::new();
    let t0 = ts("2026-06-15T12:00:00Z");
    let ticket = limiter.admit("a", &[tpm(1_000)], 10, t0).unwrap();
    limiter.settle(ticket, 700, t0 + secs(59));
    assert_eq!(limiter.usage("a", t0 + secs(60)).tokens, 700);
    assert_eq!(limiter.usage("a", t0 + secs(61)).tokens, 0);
    // Settling after the bucket left changes nothing.
    let late = limiter
        .admit("a", &[tpm(1_000)], 10, t0 + secs(100))
        .unwrap();
    limiter.settle(late, 5_000, t0 + secs(200));
    assert_eq!(limiter.usage("a", t0 + secs(200)), RateUsage::default());
}

#[test]
fn dropped_ticket_estimate_expires_with_its_bucket() {
    let limiter = InProcessRateLimiter::new();
    let t0 = ts("2026-06-15T12:00:00Z");
    drop(limiter.admit("a", &[tpm(1_000)], 1_000, t0).unwrap());
    assert!(limiter.admit("a", &[tpm(1_000)], 1, t0 + secs(60)).is_err());
    admit_ok(&limiter, "a", &[tpm(1_000)], 1_000, t0 + secs(61));
}

#[test]
fn every_limit_must_hold_and_a_refusal_records_nothing() {
    let limiter = InProcessRateLimiter::new();
    let t0 = ts(T0);
    let limits = [
        RateLimit::new(Some(10), Some(1_000)).unwrap(),
        rpm(2),
        tpm(5_000),
    ];
    admit_ok(&limiter, "a", &limits, 100, t0);
    admit_ok(&limiter, "a", &limits, 100, t0 + secs(1));
    let before = limiter.usage("a", t0 + secs(2));
    let refused = limiter.admit("a", &limits, 100, t0 + secs(2)).unwrap_err();
    assert!(matches!(
        refused,
        RateLimited::Exceeded {
            limit: LimitKind::Requests,
            limit_value: 2,
            used: 2,
            ..
        }
    ));
    assert_eq!(limiter.usage("a", t0 + secs(2)), before);
    // Tokens over the first limit alone refuse too.
    let refused = limiter.admit("b", &limits, 1_001, t0).unwrap_err();
    assert!(matches!(
        refused,
        RateLimited::NeverFits {
            limit_value: 1_000,
            ..
        }
    ));
    assert_eq!(limiter.usage("b", t0), RateUsage::default());
    assert_eq!(limiter.principals(), 1);
}

#[test]
fn refusal_reports_the_longest_wait() {
    let limiter = InProcessRateLimiter::new();
    let t0 = ts("2026-06-15T12:00:00Z");
    admit_ok(&limiter, "a", &[], 0, t0);
    admit_ok(&limiter, "a", &[], 500, t0 + secs(30));
    // Requests free up at 12:01:01 (20 s away), tokens only at 12:01:31.
    let limits = [rpm(2), tpm(500)];
    let refused = limiter.admit("a", &limits, 100, t0 + secs(41)).unwrap_err();
    assert_eq!(refused.limit(), LimitKind::Tokens);
    assert_eq!(refused.retry_after(), Some(secs(50)));
    let limits = [rpm(2), tpm(1_000)];
    let refused = limiter.admit("a", &limits, 100, t0 + secs(41)).unwrap_err();
    assert_eq!(refused.limit(), LimitKind::Requests);
    assert_eq!(refused.retry_after(), Some(secs(20)));
    // A limit the request can never fit outranks any wait.
    let limits = [rpm(2), tpm(50)];
    let refused = limiter.admit("a", &limits, 100, t0 + secs(41)).unwrap_err();
    assert_eq!(refused.retry_after(), None);
}

#[test]
fn estimate_larger_than_tpm_can_never_fit() {
    let limiter = InProcessRateLimiter::new();
    let refused = limiter
        .admit("a", &[tpm(1_000)], 1_001, ts(T0))
        .unwrap_err();
    assert_eq!(
        refused,
        RateLimited::NeverFits {
            limit: LimitKind::Tokens,
            limit_value: 1_000,
            needed: 1_001,
        }
    );
    assert_eq!(refused.retry_after(), None);
    assert!(refused.to_string().contains("never fit"), "{refused}");
    assert_eq!(limiter.principals(), 0);
}

#[test]
fn concurrent_admits_never_exceed_rpm() {
    let limiter = Arc::new(InProcessRateLimiter::new());
    let t0 = ts("2026-06-15T12:00:00Z");
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let limiter = Arc::clone(&limiter);
            std::thread::spawn(move || {
                let mut admitted = 0;
                for i in 0..200 {
                    let now = t0 + SignedDuration::from_millis(i * 100 + n);
                    if limiter.admit("shared", &[rpm(50)], 1, now).is_ok() {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // 20 s of traffic: one window's worth.
    assert_eq!(admitted, 50);
    assert_eq!(limiter.usage("shared", t0 + secs(20)).requests, 50);
}

#[test]
fn pruning_drops_old_buckets_and_idle_principals() {
    let limiter = InProcessRateLimiter::new();
    let t0 = ts("2026-06-15T12:00:00Z");
    for (i, principal) in ["a", "b", "c"].into_iter().enumerate() {
        admit_ok(&limiter, principal, &[rpm(10)], 1, t0 + secs(i as i64));
    }
    assert_eq!(limiter.principals(), 3);
    limiter.prune(t0 + secs(62));
    assert_eq!(limiter.principals(), 1);
    limiter.prune(t0 + secs(63));
    assert_eq!(limiter.principals(), 0);

    // admit sweeps its own shard once a window has passed; a principal
    // alone in its shard is swept when it comes back.
    admit_ok(&limiter, "a", &[rpm(10)], 1, t0 + secs(100));
    admit_ok(&limiter, "a", &[rpm(10)], 1, t0 + secs(200));
    assert_eq!(limiter.usage("a", t0 + secs(200)).requests, 1);
    assert_eq!(limiter.principals(), 1);

    // A principal's buckets never exceed one window's worth.
    for i in 0..300 {
        admit_ok(&limiter, "busy", &[], 1, t0 + secs(300 + i));
    }
    let state = limiter.lock("busy");
    assert!(state.principals["busy"].len() <= (WINDOW_SECS + 1) as usize);
}

#[test]
fn limits_are_validated() {
    assert_eq!(RateLimit::new(None, None), Err(RateLimitError::Empty));
    assert_eq!(
        RateLimit::new(Some(0), None),
        Err(RateLimitError::Requests(0))
    );
    assert_eq!(
        RateLimit::new(Some(1_000_001), None),
        Err(RateLimitError::Requests(1_000_001))
    );
    assert_eq!(
        RateLimit::new(None, Some(0)),
        Err(RateLimitError::Tokens(0))
    );
    assert_eq!(
        RateLimit::new(None, Some(1_000_000_001)),
        Err(RateLimitError::Tokens(1_000_000_001))
    );
    assert!(RateLimit::new(Some(1_000_000), Some(1_000_000_000)).is_ok());
    assert!(RateLimitError::Requests(0)
        .to_string()
        .contains("requests_per_minute 0"));
}

#[test]
fn limits_load_from_json_validated() {
    let limit: RateLimit = serde_json::from_str(r#"{"requests_per_minute": 60}"#).unwrap();
    assert_eq!(limit, rpm(60));
    assert_eq!(
        serde_json::to_string(&limit).unwrap(),
        r#"{"requests_per_minute":60}"#
    );
    for bad in [
        "{}",
        r#"{"requests_per_minute": 0}"#,
        r#"{"tokens_per_minute": 2000000000}"#,
        r#"{"rpm": 5}"#,
    ] {
        assert!(serde_json::from_str::<RateLimit>(bad).is_err(), "{bad}");
    }
}

#[test]
fn clock_before_1970_floors_seconds() {
    assert_eq!(second_of(ts("1969-12-31T23:59:59.5Z")), -1);
    assert_eq!(second_of(ts("1970-01-01T00:00:00.5Z")), 0);
}
