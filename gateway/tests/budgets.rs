//! Budgets, prices and rate limits enforced by the running gateway:
//! reserve the worst case before forwarding, settle the actual cost after,
//! never overspend under concurrency, and admit again what fits.

mod common;

use std::sync::Arc;
use std::time::Duration;

use caracal_gateway::budget::rate::RateLimit;
use caracal_gateway::budget::window::{Period, WindowSpec, WindowType};
use caracal_gateway::money::{parse_amount, Currency, Decimal, Money};
use caracal_gateway::policy::{Budget, PolicyDefinition};
use common::authority::change;
use common::*;
use futures_util::StreamExt;
use serde_json::json;

fn d(s: &str) -> Decimal {
    parse_amount(s).unwrap()
}

/// 1000 USD per million tokens: a token costs 0.001, so costs are easy to
/// reason about.
async fn dear_prices(env: &Env) {
    env.store
        .put_prices(&[dear_price("openai", "gpt-test")])
        .await
        .unwrap();
}

async fn budget(env: &Env, limit: &str, rate: Option<RateLimit>) -> String {
    let def = PolicyDefinition {
        budget: Some(Budget {
            limit: Money::new(d(limit), Currency::USD),
            window: WindowSpec::new(Period::Daily, WindowType::Calendar, "Europe/Berlin").unwrap(),
            max_output_tokens: 64,
        }),
        rate,
        ..PolicyDefinition::default()
    };
    let p = env
        .store
        .create_policy(&env.agent_id, &def, &change("budget test"))
        .await
        .unwrap();
    env.wait_for_snapshot().await;
    p.id
}

/// A workspace with dear prices and a daily budget of `limit` USD.
async fn with_budget(limit: &str) -> Env {
    let env = start().await;
    dear_prices(&env).await;
    budget(&env, limit, None).await;
    env
}

fn chat(max_tokens: u64) -> serde_json::Value {
    json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})
}

async fn call(
    env: &Env,
    client: &reqwest::Client,
    body: &serde_json::Value,
) -> (u16, serde_json::Value, String) {
    let r = client
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .bearer_auth(&env.token)
        .header("x-mock-latency-ms", "40")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let id = event_id(&r);
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    (status, v, id)
}

/// A chat completion with one extra (mock control) header.
async fn post_with(env: &Env, header: (&str, &str), body: &serde_json::Value) -> reqwest::Response {
    env.direct_client()
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .bearer_auth(&env.token)
        .header(header.0, header.1)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The worst case of `chat(max)`: every body byte as an input token, plus
/// `max` output tokens, at 0.001 each.
fn estimate(max: u64) -> Decimal {
    let bytes = serde_json::to_vec(&chat(max)).unwrap().len() as u64;
    Decimal::from(bytes + max) * d("0.001")
}

async fn settled_spend(env: &Env) -> (Decimal, usize) {
    let events = env.store.query_ledger(&Default::default()).await.unwrap();
    let mut total = Decimal::ZERO;
    let mut n = 0;
    for e in events
        .iter()
        .filter(|e| e.kind.as_str() == "call" && e.decision.as_str() == "allow")
    {
        total += e
            .cost
            .expect("every allowed call under a budget records a cost");
        n += 1;
    }
    (total, n)
}

#[tokio::test]
async fn sixty_four_concurrent_clients_never_overspend_and_what_fits_is_admitted_again() {
    let env = Arc::new(start().await);
    dear_prices(&env).await;
    let limit = d("2.00");
    budget(&env, "2.00", None).await;
    let client = env.direct_client();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (env, client) = (env.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..3 {
                let (status, body, _) = call(&env, &client, &chat(10)).await;
                if status == 402 {
                    assert_eq!(body["error"], "budget_exceeded", "{body}");
                }
                statuses.push(status);
            }
            statuses
        }));
    }
    let mut allowed = 0;
    let mut refused = 0;
    for t in tasks {
        for s in t.await.unwrap() {
            match s {
                200 => allowed += 1,
                402 => refused += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert!(
        refused > 0,
        "the budget was never reached: {allowed} allowed"
    );
    // Every allowed call is in the ledger with its cost; their sum stays
    // within the limit.
    let rows = env.ledger(allowed + refused).await;
    assert_eq!(rows.len(), allowed + refused);
    let (spent, n) = settled_spend(&env).await;
    assert_eq!(n, allowed);
    assert!(spent <= limit, "spent {spent} of {limit}");
    // Everything settled: calls that fit are admitted again until the
    // remaining budget is below one call's worst case, and only then refused.
    let worst = estimate(10);
    let mut recorded = allowed + refused;
    loop {
        let (spent, _) = settled_spend(&env).await;
        let (status, body, _) = call(&env, &client, &chat(10)).await;
        if limit - spent >= worst {
            assert_eq!(
                status,
                200,
                "falsely refused with {} left: {body}",
                limit - spent
            );
        } else {
            assert_eq!(status, 402, "{body}");
            assert_eq!(body["reserved"], "0.00", "nothing is held any more: {body}");
            break;
        }
        recorded += 1;
        // The next check reads the ledger: wait for this call's row.
        assert_eq!(env.ledger(recorded).await.len(), recorded);
    }
    let (spent, _) = settled_spend(&env).await;
    assert!(spent <= limit);
}

#[tokio::test]
async fn a_refusal_names_the_policy_limit_spent_reserved_window_and_reset() {
    let env = start().await;
    dear_prices(&env).await;
    let policy = budget(&env, "0.05", None).await;
    let client = env.direct_client();
    let (status, body, id) = call(&env, &client, &chat(10)).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"], "budget_exceeded");
    assert_eq!(body["policy_id"], policy.as_str());
    assert_eq!(body["limit"], "0.05");
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["spent"], "0.00");
    assert_eq!(body["reserved"], "0.00");
    assert_eq!(body["window"], "daily/calendar/Europe/Berlin");
    let resets: jiff::Timestamp = body["resets_at"].as_str().unwrap().parse().unwrap();
    let local = resets.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    assert_eq!(
        (local.hour(), local.minute()),
        (0, 0),
        "Berlin midnight: {local}"
    );
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains(&policy) && msg.contains("resets at"), "{msg}");
    let e = env.event(&id).await;
    assert_eq!(e.code.as_str(), "budget_exceeded");
    assert_eq!(env.mock.requests().len(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn actual_usage_is_settled_and_the_difference_released() {
    let env = with_budget("10.00").await;
    let (status, body, id) = call(&env, &env.direct_client(), &chat(10)).await;
    assert_eq!(status, 200, "{body}");
    let e = env.event(&id).await;
    let (input, output) = (e.input_tokens.unwrap(), e.output_tokens.unwrap());
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("usage"));
    assert_eq!(e.cost, Some(Decimal::from(input + output) * d("0.001")));
    assert_eq!(e.reserved, Some(estimate(10)));
    assert!(e.cost.unwrap() < e.reserved.unwrap());
    assert_eq!(e.currency.as_deref(), Some("USD"));
}

#[tokio::test]
async fn streams_get_usage_added_and_hidden_from_a_client_that_did_not_ask() {
    let env = with_budget("10.00").await;
    let body = json!({"model": "gpt-test", "stream": true, "max_tokens": 6,
        "messages": [{"role": "user", "content": "stream please"}]});
    let r = env
        .direct_client()
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .bearer_auth(&env.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = event_id(&r);
    let mut text = String::new();
    let mut s = r.bytes_stream();
    while let Some(chunk) = s.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(!text.contains("\"usage\":{"), "usage event leaked: {text}");
    // The mock sends usage on a stream only when include_usage is set: the
    // gateway asked for it.
    let e = env.event(&id).await;
    assert_eq!(e.usage.map(|u| u.as_str()), Some("found"));
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("usage"));
    assert!(e.cost.unwrap() > Decimal::ZERO);
}

#[tokio::test]
async fn unknown_models_are_refused_never_free() {
    let env = start().await;
    budget(&env, "10.00", None).await;
    let body = json!({"model": "gpt-unlisted", "messages": [{"role": "user", "content": "hi"}]});
    let (status, v, _) = call(&env, &env.direct_client(), &body).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("price_unknown")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("pricebook"), "{v}");
    // Listing models is a read without a model: free, and allowed.
    let r = env
        .direct_client()
        .get(format!("{}/v1/models", env.base_url("openai")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = env.event(&event_id(&r)).await;
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("free"));
    assert_eq!(e.cost, Some(Decimal::ZERO));
}

#[tokio::test]
async fn a_response_without_complete_usage_is_charged_the_reservation() {
    let env = with_budget("10.00").await;
    for (mode, outcome, stream) in [
        ("omit", "missing", false),
        ("malformed", "malformed", false),
        ("partial", "partial", false),
        ("omit", "missing", true),
        ("partial", "partial", true),
    ] {
        let mut body = chat(10);
        body["stream"] = json!(stream);
        let r = post_with(&env, ("x-mock-usage", mode), &body).await;
        assert_eq!(r.status(), 200);
        let id = event_id(&r);
        let _ = r.bytes().await;
        let e = env.event(&id).await;
        assert_eq!(
            e.usage.map(|u| u.as_str()),
            Some(outcome),
            "{mode} stream={stream}"
        );
        assert_eq!(
            e.cost_basis.map(|b| b.as_str()),
            Some("reservation"),
            "{mode}"
        );
        assert_eq!(
            e.cost, e.reserved,
            "{mode}: charged the worst case, never zero"
        );
        assert!(e.cost.unwrap() > Decimal::ZERO);
    }
}

#[tokio::test]
async fn provider_errors_without_usage_are_free_and_release_the_hold() {
    let env = with_budget("0.50").await;
    // Each call's worst case is most of the budget: a held reservation
    // would refuse the next one.
    for _ in 0..3 {
        let r = post_with(&env, ("x-mock-status", "500"), &chat(300)).await;
        assert_eq!(r.status(), 500);
        let e = env.event(&event_id(&r)).await;
        assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("free"));
        assert_eq!(e.cost, Some(Decimal::ZERO));
    }
}

#[tokio::test]
async fn requests_per_minute_are_limited_with_retry_after() {
    let env = start().await;
    dear_prices(&env).await;
    let rate = RateLimit::new(Some(2), None).unwrap();
    budget(&env, "10.00", Some(rate)).await;
    let client = env.direct_client();
    for _ in 0..2 {
        assert_eq!(call(&env, &client, &chat(4)).await.0, 200);
    }
    let r = post_with(&env, ("x-mock-latency-ms", "0"), &chat(4)).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "rate_limited");
    assert_eq!(v["retry_after_secs"], retry);
    // A refused call holds no budget.
    tokio::time::sleep(Duration::from_millis(50)).await;
    env.assert_healthy().await;
}

#[tokio::test]
async fn a_restarted_gateway_counts_recorded_spend_and_holds_nothing() {
    let env = with_budget("1.00").await;
    let client = env.direct_client();
    for _ in 0..3 {
        assert_eq!(call(&env, &client, &chat(10)).await.0, 200);
    }
    // One more call is in flight when the gateway is stopped: shutdown
    // lets it finish, settles it and writes its row.
    let in_flight = {
        let client = env.direct_client();
        let url = format!("{}/v1/chat/completions", env.base_url("openai"));
        let token = env.token.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("x-mock-latency-ms", "300")
                .json(&chat(10))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let env = env.restart().await;
    assert_eq!(in_flight.await.unwrap().ok(), Some(200));
    let (spent, n) = settled_spend(&env).await;
    assert_eq!(n, 4);
    let report: serde_json::Value = reqwest::get(format!(
        "http://{}/budgets?principal={}",
        env.gw.metrics_addr, env.agent_id
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let b = &report["budgets"][0];
    // Nothing is held by the new process; it primed its counter with
    // every cost the ledger recorded, the in-flight call's included.
    assert_eq!(b["reserved"], "0.00", "{report}");
    assert_eq!(
        b["spent"],
        caracal_gateway::money::fmt_amount(spent),
        "{report}"
    );
    let client = env.direct_client();
    let (status, body, _) = call(&env, &client, &chat(10)).await;
    let left = d("1.00") - spent;
    assert_eq!(status == 200, left >= estimate(10), "{left} left: {body}");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_charged_the_reservation() {
    let env = with_budget("10.00").await;
    let body = serde_json::to_string(&chat(10)).unwrap();
    env.leave_before_the_answer(&body).await;
    let e = env.ledger(1).await.remove(0);
    assert_eq!(e.code.as_str(), "client_cancelled");
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("reservation"));
    assert_eq!(e.cost, Some(estimate(10)));
}

#[tokio::test]
async fn budgets_hold_through_https_proxy_too() {
    let env = with_budget("0.20").await;
    let client = env.proxy_client("https", false);
    let send = || {
        client
            .post("https://api.openai.com/v1/chat/completions")
            .json(&chat(10))
            .send()
    };
    let r = send().await.unwrap();
    assert_eq!(r.status(), 200);
    let e = env.event(&event_id(&r)).await;
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("usage"));
    // Spend until the budget refuses, over one HTTP/2 tunnel.
    let mut last = 200;
    for _ in 0..20 {
        let r = send().await.unwrap();
        last = r.status().as_u16();
        if last == 402 {
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"], "budget_exceeded");
            break;
        }
    }
    assert_eq!(last, 402);
    let (spent, _) = settled_spend(&env).await;
    assert!(spent <= d("0.20"), "{spent}");
}

#[tokio::test]
async fn a_request_without_an_output_limit_gets_the_one_its_reservation_assumed() {
    // The provider would write 500 tokens; the budget assumes 64 for
    // requests that set no limit, and the gateway makes that the limit.
    let env = start_with(caracal_load_tests::mock::MockConfig {
        completion_tokens: 500,
        ..Default::default()
    })
    .await;
    dear_prices(&env).await;
    budget(&env, "10.00", None).await;
    for (dialect_path, body) in [
        (
            "openai/v1/chat/completions",
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "openai/v1/chat/completions",
            json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ] {
        let r = env
            .direct_client()
            .post(format!(
                "https://127.0.0.1:{}/{dialect_path}",
                env.gw.addr.port()
            ))
            .bearer_auth(&env.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = event_id(&r);
        let _ = r.bytes().await;
        let e = env.event(&id).await;
        assert_eq!(e.output_tokens, Some(64), "{body}");
        assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("usage"));
        assert!(e.cost.unwrap() <= e.reserved.unwrap(), "{e:?}");
    }
}

/// A call refused by its budget gives its rate-limit admission back: budget
/// refusals do not use up the principal's requests per minute.
#[tokio::test]
async fn budget_refusals_do_not_use_up_the_rate_limit() {
    let env = start().await;
    dear_prices(&env).await;
    let rate = RateLimit::new(Some(2), Some(1_000_000)).unwrap();
    // Far too small for any call: every call is refused by the budget.
    budget(&env, "0.001", Some(rate)).await;
    let client = env.direct_client();
    for i in 0..5 {
        let (status, v, _) = call(&env, &client, &chat(4)).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (402, Some("budget_exceeded")),
            "call {i}: {v}"
        );
    }
}

#[tokio::test]
async fn calls_without_a_budget_are_priced_in_the_ledger_or_marked_unpriced() {
    let env = start().await;
    dear_prices(&env).await;
    env.wait_for_snapshot().await;
    let client = env.direct_client();
    let (status, _, id) = call(&env, &client, &chat(10)).await;
    assert_eq!(status, 200);
    let e = env.event(&id).await;
    let tokens = e.input_tokens.unwrap() + e.output_tokens.unwrap();
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("usage"));
    assert_eq!(e.cost, Some(Decimal::from(tokens) * d("0.001")));
    assert_eq!(e.reserved, None, "nothing was reserved without a budget");
    // A model the pricebook does not know: forwarded (no budget applies),
    // recorded as unpriced rather than free.
    let unknown = json!({"model": "gpt-unlisted", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, id) = call(&env, &client, &unknown).await;
    assert_eq!(status, 200);
    let e = env.event(&id).await;
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("unpriced"));
    assert_eq!(e.cost, None);
}
