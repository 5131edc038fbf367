//! The ledger event of a typical forwarded call, for the benchmarks: every
//! column a real call fills.

use caracal_gateway::ledger::{Decision, EventCode, EventKind, LedgerEvent, Mode};
use caracal_gateway::money::Decimal;

/// Call `i` of a run: one of `principals` principals, at `ts_ms`.
pub fn call(i: usize, principals: usize, ts_ms: i64) -> LedgerEvent {
    let mut e = LedgerEvent::new(
        EventKind::Call,
        Mode::BaseUrl,
        Decision::Allow,
        EventCode::OK,
    );
    e.ts_ms = ts_ms;
    e.ts = jiff::Timestamp::from_millisecond(ts_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    e.principal_id = Some(format!("agent-{}", i % principals.max(1)));
    e.provider = Some("openai".into());
    e.resource = Some("gpt-4o".into());
    e.action = Some("chat".into());
    e.method = Some("POST".into());
    e.url = Some("https://api.openai.com/v1/chat/completions".into());
    e.status = Some(200);
    e.request_bytes = 1200;
    e.response_bytes = 800;
    e.duration_ms = 420;
    e.duration_us = 420_123;
    e.model = Some("gpt-4o-2024-08-06".into());
    e.input_tokens = Some(1000);
    e.output_tokens = Some(200);
    e.cost = Some(Decimal::new(4_500 + (i % 1000) as i64, 6));
    e.currency = Some("USD".into());
    e.reserved = Some(Decimal::new(10_000, 6));
    e
}
