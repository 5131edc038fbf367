//! The in-process counters pass the counters conformance suite.

use super::InProcessCounters;

crate::counters_conformance!(InProcessCounters::new);

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
