//! Ledger rows for allowed and denied calls, live configuration changes,
//! metrics and health.

mod common;

use std::time::{Duration, Instant};

use caracal_gateway::model::PatternType;
use caracal_gateway::store::LedgerFilter;
use common::*;

#[tokio::test]
async fn every_call_and_denial_leaves_a_ledger_row() {
    let env = start().await;
    let client = env.proxy_client("https", true);
    let ok = client
        .get("https://api.openai.com/v1/models")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let _ = ok.bytes().await;
    let denied = client
        .post("https://api.openai.com/v1/embeddings")
        .json(&serde_json::json!({"input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let events = env.ledger(2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let allow = events
        .iter()
        .find(|e| e.decision.as_str() == "allow")
        .unwrap();
    assert_eq!(allow.resource.as_deref(), Some("models.list"));
    assert_eq!(allow.action.as_deref(), Some("read"));
    assert_eq!(allow.mode.as_str(), "proxy");
    // Microsecond durations: a fast call is not recorded as taking 0.
    assert!(allow.duration_us > 0, "{allow:?}");
    assert_eq!(allow.duration_ms, allow.duration_us / 1000);
    let deny = events
        .iter()
        .find(|e| e.decision.as_str() == "deny")
        .unwrap();
    assert_eq!(deny.code.as_str(), "resource_not_allowed");
    assert_eq!(deny.status, Some(403));
    assert_eq!(deny.resource.as_deref(), Some("embeddings"));
    assert_eq!(deny.principal_id.as_deref(), Some(env.agent_id.as_str()));
}

#[tokio::test]
async fn allowlist_changes_reach_the_running_gateway_within_a_second() {
    let env = start().await;
    let client = env.proxy_client("https", true);
    let call = || async {
        client
            .post("https://api.openai.com/v1/embeddings")
            .json(&serde_json::json!({"input": "x"}))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(call().await, 403);
    let entry = env
        .store
        .add_allowlist(
            &env.agent_id,
            "https://api.openai.com/v1/embeddings",
            PatternType::Glob,
        )
        .await
        .unwrap();
    let changed = Instant::now();
    while call().await != 200 {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "allowlist change not applied within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.store.delete_allowlist(&entry.id).await.unwrap();
    let changed = Instant::now();
    while call().await != 403 {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "allowlist removal not applied within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `tls` guard means something: a certificate that expires within the
/// configured margin makes `/health` fail and name it.
#[tokio::test]
async fn health_reports_certificates_expiring_within_the_margin() {
    // The gateway certificate is valid for a year: a 400-day margin is
    // already crossed.
    let env = start_custom(Default::default(), |c| {
        c.tls_expiry_margin = Duration::from_secs(400 * 24 * 3600)
    })
    .await;
    let health = env.health().await;
    assert_eq!(health.status(), 503);
    let report: serde_json::Value = health.json().await.unwrap();
    assert_eq!(report["checks"]["tls"], false, "{report}");
    assert_eq!(report["failing"], serde_json::json!(["tls"]), "{report}");
}

#[tokio::test]
async fn metrics_and_health_are_served() {
    let env = start().await;
    let client = env.direct_client();
    let _ = client
        .post(format!("{}/v1/embeddings", env.base_url("openai")))
        .bearer_auth(&env.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    let health = env.health().await;
    assert_eq!(health.status(), 200);
    let report: serde_json::Value = health.json().await.unwrap();
    assert_eq!(report["status"], "ok");
    assert_eq!(report["checks"]["ledger"], true);
    assert_eq!(report["checks"]["tls"], true);
    let metrics = env.metrics().await;
    for needle in [
        "caracal_gateway_requests_total{decision=\"deny\",code=\"resource_not_allowed\"}",
        "caracal_gateway_request_duration_seconds_bucket",
        "caracal_gateway_requests_in_flight",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn shutdown_writes_every_pending_ledger_event() {
    let env = start().await;
    let client = env.direct_client();
    for _ in 0..20 {
        let r = client
            .get(format!("{}/v1/models", env.base_url("openai")))
            .bearer_auth(&env.token)
            .send()
            .await
            .unwrap();
        let _ = r.bytes().await;
    }
    let common::Env { gw, store, .. } = env;
    gw.shutdown().await;
    let events = store.query_ledger(&calls()).await.unwrap();
    assert_eq!(events.len(), 20);
}

#[tokio::test]
async fn calls_are_refused_while_the_ledger_cannot_record_them_and_nothing_is_lost() {
    let env = start().await;
    let client = env.direct_client();
    let call = || async {
        let r = client
            .get(format!("{}/v1/models", env.base_url("openai")))
            .bearer_auth(&env.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        (status, body)
    };
    assert_eq!(call().await.0, 200);
    // Break the ledger table behind the gateway's back.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        env.dir.path().join("caracal.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("ALTER TABLE ledger_events RENAME TO ledger_events_away")
        .execute(&db)
        .await
        .unwrap();
    let mut forwarded = 1;
    let broke = Instant::now();
    loop {
        let (status, body) = call().await;
        if status == 503 {
            assert!(body.contains("not_ready"), "{body}");
            break;
        }
        assert_eq!(status, 200);
        forwarded += 1;
        assert!(
            broke.elapsed() < Duration::from_secs(5),
            "calls still forwarded with a broken ledger"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = client
        .get(format!("https://127.0.0.1:{}/health", env.gw.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let report: serde_json::Value = health.json().await.unwrap();
    assert_eq!(report["failing"], serde_json::json!(["ledger"]));
    // Repair it: the queued rows land, and calls flow again.
    sqlx::query("ALTER TABLE ledger_events_away RENAME TO ledger_events")
        .execute(&db)
        .await
        .unwrap();
    let repaired = Instant::now();
    while call().await.0 != 200 {
        assert!(
            repaired.elapsed() < Duration::from_secs(10),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    forwarded += 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = env.store.query_ledger(&calls()).await.unwrap();
        let allowed = events
            .iter()
            .filter(|e| e.decision.as_str() == "allow")
            .count();
        if allowed == forwarded {
            assert!(events.iter().any(|e| e.code.as_str() == "not_ready"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{allowed} of {forwarded} forwarded calls recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn calls() -> LedgerFilter {
    LedgerFilter {
        kind: Some(caracal_gateway::ledger::EventKind::Call),
        ..LedgerFilter::default()
    }
}
