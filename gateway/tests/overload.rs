//! The global in-flight limit: past `limits.max_in_flight` requests are
//! shed at once with `503 overloaded` (JSON, `Retry-After`, a ledger row),
//! a stream holds its place until it ends, and `/health` keeps answering.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;

fn chat() -> serde_json::Value {
    serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

async fn post(env: &Env, client: &reqwest::Client, latency_ms: u64) -> reqwest::Response {
    client
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .bearer_auth(&env.token)
        .header("x-mock-latency-ms", latency_ms.to_string())
        .json(&chat())
        .send()
        .await
        .unwrap()
}

/// A streamed chat call whose body takes about a second to arrive.
async fn slow_stream(env: &Env, client: &reqwest::Client) -> reqwest::Response {
    let mut body = chat();
    body["stream"] = true.into();
    client
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .bearer_auth(&env.token)
        .header("x-mock-chunks", "4")
        .header("x-mock-chunk-delay-ms", "300")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Two slow calls, and a third while they hold their places: the slow
/// ones' responses, the third's, and how long it took. `/health` is asked
/// while the places are held.
async fn two_slow_then_one(
    env: &Env,
    client: &reqwest::Client,
) -> (Vec<reqwest::Response>, reqwest::Response, Duration) {
    let slow = join_all((0..2).map(|_| post(env, client, 1500)));
    let third = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let r = post(env, client, 0).await;
        let took = started.elapsed();
        env.assert_healthy().await;
        (r, took)
    };
    let (slow, (r, took)) = tokio::join!(slow, third);
    (slow, r, took)
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_are_shed_at_once() {
    let env = start_custom(Default::default(), |c| c.limits.max_in_flight = 2).await;
    let client = env.direct_client();
    // Two slow calls take both places.
    let (slow, r, took) = two_slow_then_one(&env, &client).await;
    assert_eq!(r.status(), 503);
    assert!(took < Duration::from_millis(500), "shedding took {took:?}");
    assert_eq!(r.headers()["retry-after"], "1");
    let id = event_id(&r);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "overloaded", "{v}");
    for r in slow {
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
    }
    let e = env.event(&id).await;
    assert_eq!(
        (e.decision.as_str(), e.code.as_str()),
        ("error", "overloaded")
    );
    assert_eq!(e.status, Some(503));
    // The places are given back: calls go through again.
    assert_eq!(post(&env, &client, 0).await.status(), 200);
}

#[tokio::test]
async fn a_stream_holds_its_place_until_it_ends() {
    let env = start_custom(Default::default(), |c| c.limits.max_in_flight = 1).await;
    let client = env.direct_client();
    let stream = slow_stream(&env, &client).await;
    assert_eq!(stream.status(), 200);
    // The headers are back, the body still streams: the place is taken.
    assert_eq!(post(&env, &client, 0).await.status(), 503);
    let _ = stream.bytes().await.unwrap();
    assert_eq!(post(&env, &client, 0).await.status(), 200);
}

/// Many more clients than places, against a slow provider: the excess is
/// refused quickly (nothing queues), the admitted calls all succeed, and
/// the gateway stays healthy.
#[tokio::test]
async fn a_burst_past_the_limit_is_refused_quickly_and_nothing_queues() {
    let env = start_custom(Default::default(), |c| c.limits.max_in_flight = 8).await;
    let client = env.direct_client();
    let started = Instant::now();
    let results = join_all((0..64).map(|_| {
        let (env, client) = (&env, &client);
        async move {
            let t = Instant::now();
            let r = post(env, client, 1000).await;
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            (status, t.elapsed())
        }
    }))
    .await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let shed: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(ok + shed.len(), 64, "{results:?}");
    assert!(ok >= 8, "{ok} admitted");
    assert!(!shed.is_empty());
    for (_, took) in &shed {
        assert!(
            *took < Duration::from_millis(900),
            "a shed request waited {took:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    env.assert_healthy().await;
}

/// One principal's share: past its in-flight limit (the workspace default,
/// or its policy's, whichever is smaller) its requests are refused with
/// `429 rate_limited` at once, while other principals go on.
#[tokio::test]
async fn a_principal_past_its_in_flight_limit_is_refused_and_others_are_not() {
    let env = start_custom(Default::default(), |c| {
        c.limits.max_in_flight_per_principal = 2
    })
    .await;
    let client = env.direct_client();
    let (slow, r, took) = two_slow_then_one(&env, &client).await;
    assert_eq!(r.status(), 429);
    assert!(took < Duration::from_millis(500), "refusing took {took:?}");
    assert_eq!(r.headers()["retry-after"], "1");
    let id = event_id(&r);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "rate_limited", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("2 requests in flight"),
        "{v}"
    );
    for r in slow {
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
    }
    let e = env.event(&id).await;
    assert_eq!(
        (e.decision.as_str(), e.code.as_str()),
        ("deny", "rate_limited")
    );
    assert_eq!(
        post(&env, &client, 0).await.status(),
        200,
        "places given back"
    );

    // A policy sets fewer: one; a stream holds it until it ends.
    let def = caracal_gateway::policy::PolicyDefinition {
        max_in_flight: Some(1),
        ..Default::default()
    };
    env.store
        .create_policy(
            &env.agent_id,
            &def,
            &common::authority::change("one at a time"),
        )
        .await
        .unwrap();
    env.wait_for_snapshot().await;
    let stream = slow_stream(&env, &client).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(post(&env, &client, 0).await.status(), 429);
    // Another principal is not held back by this one.
    let (other_id, other) = env
        .register(caracal_gateway::model::PrincipalKind::Agent, "worker-2")
        .await;
    let everything = common::authority::scope(&["*"], common::authority::ALL);
    env.grant(&other_id, &everything, 3600).await;
    env.wait_for_snapshot().await;
    let r = client
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .bearer_auth(&other)
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = stream.bytes().await.unwrap();
    assert_eq!(post(&env, &client, 0).await.status(), 200);
}
