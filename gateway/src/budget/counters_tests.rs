//! The in-process counters pass the counters conformance suite.

use super::InProcessCounters;

crate::counters_conformance!(|ttl| std::future::ready(InProcessCounters::new(ttl)));

#[tokio::test]
async fn held_counts_every_shard() {
    use super::{CounterId, Counters, Line, ReservationId};
    use crate::budget::window::{Period, WindowSpec, WindowType};
    let c = InProcessCounters::default();
    let spec = WindowSpec::new(Period::Daily, WindowType::Calendar, "UTC").unwrap();
    let now: jiff::Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
    let mut holds = Vec::new();
    for i in 0..100 {
        let principal = format!("agent-{i}");
        let line = Line {
            id: CounterId::new(&format!("p-{i}"), &spec),
            policy_version: 1,
            limit: 10.into(),
            currency: crate::money::Currency::USD,
            spec: spec.clone(),
        };
        let h = c
            .reserve(&principal, ReservationId::new(), &[line], 1.into(), now)
            .await
            .unwrap();
        holds.push(h);
    }
    assert_eq!(c.held(), 100);
    for h in &holds {
        c.release(h, now).await.unwrap();
    }
    assert_eq!(c.held(), 0);
}

#[tokio::test]
async fn finished_ids_are_remembered_within_bounds() {
    use super::{CounterId, Counters, Line, ReservationId, FINISHED_CAP, FINISHED_MEMORY};
    use crate::budget::window::{Period, WindowSpec, WindowType};
    let c = InProcessCounters::default();
    let spec = WindowSpec::new(Period::Daily, WindowType::Calendar, "UTC").unwrap();
    let line = Line {
        id: CounterId::new("p", &spec),
        policy_version: 1,
        limit: 1_000_000.into(),
        currency: crate::money::Currency::USD,
        spec,
    };
    let t0: jiff::Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
    let lines = std::slice::from_ref(&line);
    let first = c
        .reserve("a", ReservationId::new(), lines, 1.into(), t0)
        .await
        .unwrap();
    c.settle(&first, 1.into(), t0).await.unwrap();
    for _ in 0..(FINISHED_CAP * 2) {
        let h = c
            .reserve("a", ReservationId::new(), lines, 1.into(), t0)
            .await
            .unwrap();
        c.settle(&h, 1.into(), t0).await.unwrap();
    }
    let remembered = c.shard("a").done.ids.len();
    assert!(
        remembered <= FINISHED_CAP,
        "{remembered} finished ids remembered"
    );
    // Within the memory a retry changes nothing; long after, the oldest id
    // is forgotten (a process-local retry never comes that late).
    let later = t0.checked_add(FINISHED_MEMORY).unwrap();
    let one = c
        .reserve("a", ReservationId::new(), lines, 1.into(), later)
        .await
        .unwrap();
    c.settle(&one, 1.into(), later).await.unwrap();
    let spent = c.standing("a", &line, later).await.unwrap().spent;
    c.settle(&one, 1.into(), later).await.unwrap();
    assert_eq!(c.standing("a", &line, later).await.unwrap().spent, spent);
    let much_later = later
        .checked_add(FINISHED_MEMORY + jiff::SignedDuration::from_secs(1))
        .unwrap();
    let last = c
        .reserve("a", ReservationId::new(), lines, 1.into(), much_later)
        .await
        .unwrap();
    c.settle(&last, 1.into(), much_later).await.unwrap();
    assert_eq!(
        c.shard("a").done.ids.len(),
        1,
        "only the newest is remembered"
    );
}
