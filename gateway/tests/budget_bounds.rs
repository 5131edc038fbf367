//! The worst case reserved before forwarding bounds what the provider can
//! bill, through the running gateway: several outputs, every output-limit
//! field, input the body does not carry, provider-run tools. The mock
//! provider reports the most each request can be billed
//! (`x-mock-usage-json`), and what the ledger settles never exceeds what
//! was reserved, nor a budget its limit.

mod common;

use caracal_gateway::budget::window::{Period, WindowSpec, WindowType};
use caracal_gateway::model::PatternType;
use caracal_gateway::money::{parse_amount, Currency, Decimal, Money};
use caracal_gateway::policy::{Budget, PolicyDefinition};
use caracal_gateway::pricing::{PriceRow, PriceSource};
use common::authority::change;
use common::*;
use serde_json::{json, Value};

fn d(s: &str) -> Decimal {
    parse_amount(s).unwrap()
}

/// 1000 USD per million tokens in and out (a token costs 0.001) for
/// `gpt-test` and `claude-test`; a search costs 0.5.
async fn prices(env: &Env, window: Option<u64>) {
    let model = |provider: &str, name: &str| {
        let row = dear_price(provider, name);
        match window {
            Some(w) => row.with_context_window(w),
            None => row,
        }
    };
    env.store
        .put_prices(&[
            model("openai", "gpt-test"),
            model("anthropic", "claude-test"),
            PriceRow::tool(
                "anthropic",
                "web_search",
                Currency::USD,
                d("0.5"),
                PriceSource::Set,
            ),
        ])
        .await
        .unwrap();
}

/// A daily budget of `limit` USD (default output limit 64), and the
/// allowlist for every operation these tests call.
async fn setup(limit: &str, window: Option<u64>) -> Env {
    let env = start().await;
    prices(&env, window).await;
    for pattern in [
        "https://api.openai.com/v1/*",
        "https://api.anthropic.com/v1/*",
    ] {
        env.store
            .add_allowlist(&env.agent_id, pattern, PatternType::Glob)
            .await
            .unwrap();
    }
    let def = PolicyDefinition {
        budget: Some(Budget {
            limit: Money::new(d(limit), Currency::USD),
            window: WindowSpec::new(Period::Daily, WindowType::Calendar, "UTC").unwrap(),
            max_output_tokens: 64,
        }),
        ..PolicyDefinition::default()
    };
    env.store
        .create_policy(&env.agent_id, &def, &change("bounds test"))
        .await
        .unwrap();
    env.wait_for_snapshot().await;
    env
}

/// POSTs `body` to `path` of `provider`, the mock reporting `usage`.
async fn post(
    env: &Env,
    provider: &str,
    path: &str,
    body: &Value,
    usage: Option<Value>,
) -> (u16, Value, String) {
    let mut req = env
        .direct_client()
        .post(format!("{}{path}", env.base_url(provider)))
        .bearer_auth(&env.token)
        .json(body);
    if let Some(u) = usage {
        req = req.header("x-mock-usage-json", u.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let id = event_id(&r);
    (status, r.json().await.unwrap_or_default(), id)
}

/// The settled cost and the reservation of the call recorded as `id`.
async fn settled(env: &Env, id: &str) -> (Decimal, Decimal) {
    let e = env.event(id).await;
    (
        e.cost.expect("a budgeted call has a cost"),
        e.reserved.expect("a budgeted call has a reservation"),
    )
}

#[tokio::test]
async fn several_outputs_per_request_are_reserved_and_billed() {
    let env = setup("5", None).await;
    let chat = |n: u64| {
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
               "max_tokens": 1000, "n": n})
    };
    // Sixteen choices of up to 1000 tokens: 16 USD, past the 5 USD budget.
    let (status, body, _) = post(&env, "openai", "/v1/chat/completions", &chat(16), None).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"], "budget_exceeded");
    // Four fit; the provider bills all four in full.
    let most = json!({"prompt_tokens": 20, "completion_tokens": 4000, "total_tokens": 4020});
    let (status, body, id) =
        post(&env, "openai", "/v1/chat/completions", &chat(4), Some(most)).await;
    assert_eq!(status, 200, "{body}");
    let (cost, reserved) = settled(&env, &id).await;
    assert_eq!(cost, d("4.02"));
    assert!(cost <= reserved, "settled {cost} > reserved {reserved}");
    // Completions: best_of × prompts.
    let completions =
        json!({"model": "gpt-test", "prompt": ["a", "b"], "best_of": 3, "max_tokens": 200});
    let (status, body, _) = post(&env, "openai", "/v1/completions", &completions, None).await;
    assert_eq!(
        status, 402,
        "6 × 200 tokens do not fit in what is left: {body}"
    );
}

#[tokio::test]
async fn the_legacy_output_limit_is_read() {
    let env = setup("1", None).await;
    // 20 000 tokens to sample: 20 USD, not the 64-token default.
    let legacy = json!({"model": "claude-test", "prompt": "\n\nHuman: hi\n\nAssistant:",
                        "max_tokens_to_sample": 20000});
    let (status, body, _) = post(&env, "anthropic", "/v1/complete", &legacy, None).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"], "budget_exceeded");
    // Without one, the gateway sets the default it reserved for (the unit
    // tests of the price step check the member it writes); the mock has no
    // legacy endpoint, and a 404 without usage is free.
    let unset = json!({"model": "claude-test", "prompt": "\n\nHuman: hi\n\nAssistant:"});
    let (status, _, id) = post(&env, "anthropic", "/v1/complete", &unset, None).await;
    assert_eq!(status, 404);
    assert_eq!(env.mock.requests().last().unwrap().path, "/v1/complete");
    assert_eq!(settled(&env, &id).await.0, Decimal::ZERO);
}

#[tokio::test]
async fn input_from_server_side_state_is_priced_from_the_context_window() {
    // A window of 200 000 tokens: 200 USD of input at most.
    let env = setup("5", Some(200_000)).await;
    let follow_up = json!({"model": "gpt-test", "previous_response_id": "resp_0123456789",
                           "input": "and now?", "max_output_tokens": 10});
    let (status, body, _) = post(&env, "openai", "/v1/responses", &follow_up, None).await;
    assert_eq!(
        status, 402,
        "106 bytes that can bring 200 000 tokens: {body}"
    );
    assert_eq!(body["error"], "budget_exceeded");
    // Images are billed by their pixels, not their bytes.
    let image = json!({"model": "gpt-test", "max_tokens": 10, "messages": [{"role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]});
    let (status, _, _) = post(&env, "openai", "/v1/chat/completions", &image, None).await;
    assert_eq!(status, 402);
    // A small window fits, and the bill of a full window settles within it.
    let env = setup("5", Some(2_000)).await;
    let full = json!({"input_tokens": 2000, "output_tokens": 10, "total_tokens": 2010});
    let (status, body, id) = post(&env, "openai", "/v1/responses", &follow_up, Some(full)).await;
    assert_eq!(status, 200, "{body}");
    let (cost, reserved) = settled(&env, &id).await;
    assert_eq!(cost, d("2.01"));
    assert!(cost <= reserved, "settled {cost} > reserved {reserved}");
}

#[tokio::test]
async fn input_that_cannot_be_bounded_is_refused_with_its_reason() {
    // No context window for the model: nothing bounds the stored state.
    let env = setup("1000", None).await;
    let follow_up = json!({"model": "gpt-test", "previous_response_id": "resp_1", "input": "go"});
    let (status, body, id) = post(&env, "openai", "/v1/responses", &follow_up, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "input_unbounded");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("previous_response_id"),
        "{body}"
    );
    assert_eq!(env.event(&id).await.code.as_str(), "input_unbounded");
    // An operation billed otherwise than by tokens, with no per-request price.
    let image = json!({"model": "dall-e-3", "prompt": "a cat", "n": 10});
    let (status, body, _) = post(&env, "openai", "/v1/images/generations", &image, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "output_unbounded");
    assert_eq!(env.mock.requests().len(), 0, "nothing reached the provider");
}

#[tokio::test]
async fn provider_run_tools_are_bounded_reserved_and_billed_per_use() {
    let env = setup("1000", Some(1_000)).await;
    let search = |max_uses: Option<u64>| {
        let mut tool = json!({"type": "web_search_20250305", "name": "web_search"});
        if let Some(m) = max_uses {
            tool["max_uses"] = m.into();
        }
        json!({"model": "claude-test", "max_tokens": 10, "tools": [tool],
               "messages": [{"role": "user", "content": "news?"}]})
    };
    let (status, body, _) = post(&env, "anthropic", "/v1/messages", &search(None), None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "tool_unbounded");
    // Two searches at most: three rounds of the 1 000-token window and the
    // 10-token limit (3.03 USD) and two uses (1 USD).
    let used = json!({"input_tokens": 3000, "output_tokens": 30,
                      "server_tool_use": {"web_search_requests": 2}});
    let (status, body, id) = post(
        &env,
        "anthropic",
        "/v1/messages",
        &search(Some(2)),
        Some(used),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (cost, reserved) = settled(&env, &id).await;
    assert_eq!(reserved, d("4.03"));
    assert_eq!(cost, d("4.03"));
    // Fewer uses reported, fewer paid.
    let once = json!({"input_tokens": 100, "output_tokens": 5,
                      "server_tool_use": {"web_search_requests": 1}});
    let (_, _, id) = post(
        &env,
        "anthropic",
        "/v1/messages",
        &search(Some(2)),
        Some(once),
    )
    .await;
    assert_eq!(settled(&env, &id).await.0, d("0.605"));
    // A tool without a price is refused under a budget.
    let code = json!({"model": "claude-test", "max_tokens": 10,
        "tools": [{"type": "code_execution_20250825", "name": "code_execution", "max_uses": 1}],
        "messages": [{"role": "user", "content": "run"}]});
    let (status, body, _) = post(&env, "anthropic", "/v1/messages", &code, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "price_unknown");
}

#[tokio::test]
async fn calls_without_a_budget_are_billed_their_tool_uses_in_the_ledger() {
    let env = start().await;
    prices(&env, None).await;
    env.wait_for_snapshot().await;
    let ask = json!({"model": "claude-test", "max_tokens": 10,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": "news?"}]});
    let used = json!({"input_tokens": 100, "output_tokens": 10,
                      "server_tool_use": {"web_search_requests": 3}});
    let (status, body, id) = post(&env, "anthropic", "/v1/messages", &ask, Some(used)).await;
    assert_eq!(status, 200, "no budget, no bound needed: {body}");
    let e = env.event(&id).await;
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("usage"));
    assert_eq!(e.cost, Some(d("1.61")), "110 tokens and three searches");
    // A use the pricebook has no price for: unpriced, not a partial cost.
    let unknown = json!({"input_tokens": 100, "output_tokens": 10,
                         "server_tool_use": {"code_execution_requests": 1}});
    let (_, _, id) = post(&env, "anthropic", "/v1/messages", &ask, Some(unknown)).await;
    let e = env.event(&id).await;
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("unpriced"));
    assert_eq!(e.cost, None);
}
