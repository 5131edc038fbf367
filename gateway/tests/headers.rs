//! The header policy through the running gateway: an agent cannot choose
//! what the injected key bills under, enable beta features, send cookies or
//! override the authorised method; pinned headers carry the operator's
//! values; what is dropped is counted.

mod common;

use caracal_gateway::model::Template;
use common::*;

/// An OpenAI-template provider in front of the mock's echo endpoint
/// (passthrough), with `OpenAI-Project` pinned.
async fn env_with(template: Template, allow: &[&str]) -> Env {
    let env = start().await;
    env.add_echo_provider(template, |def| {
        def.pinned_headers = vec![("OpenAI-Project".into(), "proj_operator".into())];
        def.allow_headers = allow.iter().map(|a| a.to_string()).collect();
    })
    .await;
    env
}

/// What the upstream received, for a request with the agent's `headers`.
async fn forwarded(env: &Env, headers: &[(&str, &str)]) -> serde_json::Value {
    let mut req = env
        .direct_client()
        .post(format!("{}/_mock/echo/x", env.base_url("echo")))
        .bearer_auth(&env.token)
        .body("{}");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["headers"].clone()
}

const HOSTILE: [(&str, &str); 9] = [
    ("OpenAI-Organization", "org-agent"),
    ("OpenAI-Project", "proj_agent"),
    ("anthropic-beta", "context-1m-2025-08-07"),
    ("Cookie", "session=agent"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-Method-Override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("x-goog-api-key", "agent-key"),
    ("X-Unlisted", "1"),
];

#[tokio::test]
async fn agents_cannot_steer_billing_features_cookies_or_methods() {
    let env = env_with(Template::Openai, &[]).await;
    let mut sent = HOSTILE.to_vec();
    sent.extend([
        ("Content-Type", "application/json"),
        ("OpenAI-Beta", "assistants=v2"),
        ("X-Stainless-Lang", "python"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("Idempotency-Key", "k1"),
    ]);
    let seen = forwarded(&env, &sent).await;
    assert_eq!(seen["openai-project"], "proj_operator", "{seen}");
    // The provider's own credential (masked in the echo, as it should be).
    let got = env.mock.requests().last().unwrap().headers.clone();
    assert_eq!(got["authorization"], format!("Bearer {OPENAI_KEY}"));
    for gone in [
        "openai-organization",
        "anthropic-beta",
        "cookie",
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
        "x-goog-api-key",
        "x-unlisted",
    ] {
        assert!(
            seen.get(gone).is_none(),
            "{gone} reached the provider: {seen}"
        );
    }
    for kept in [
        "content-type",
        "openai-beta",
        "x-stainless-lang",
        "traceparent",
        "idempotency-key",
    ] {
        assert!(seen.get(kept).is_some(), "{kept} was dropped: {seen}");
    }
    let metrics = env.metrics().await;
    for reason in ["stripped", "not_allowed", "pinned", "credential"] {
        let needle =
            format!("caracal_gateway_request_headers_dropped_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&needle), "{needle} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn the_operator_chooses_what_else_goes_through() {
    let env = env_with(Template::Anthropic, &["anthropic-beta", "x-team-*"]).await;
    let seen = forwarded(
        &env,
        &[
            ("anthropic-beta", "tools-2024"),
            ("x-team-id", "7"),
            ("cookie", "a=1"),
            ("openai-organization", "o"),
        ],
    )
    .await;
    assert_eq!(seen["anthropic-beta"], "tools-2024");
    assert_eq!(seen["x-team-id"], "7");
    assert!(seen.get("cookie").is_none(), "the strip list holds: {seen}");
    assert!(seen.get("openai-organization").is_none());
    // A generic provider lets everything but the strip list through.
    let env = env_with(Template::Generic, &[]).await;
    let seen = forwarded(&env, &HOSTILE).await;
    assert_eq!(seen["x-unlisted"], "1");
    assert_eq!(seen["openai-organization"], "org-agent");
    assert_eq!(seen["openai-project"], "proj_operator", "pinned still wins");
    for gone in ["cookie", "x-http-method-override", "x-goog-api-key"] {
        assert!(seen.get(gone).is_none(), "{gone}: {seen}");
    }
}
