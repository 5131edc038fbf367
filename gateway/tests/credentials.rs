//! An agent never receives the provider credential the gateway injects,
//! even from an upstream that reflects the request: in a JSON body, in a
//! body streamed in small chunks (the secret split across them), and in
//! response headers — through each way in.

mod common;

use caracal_gateway::model::Template;
use common::*;

/// A passthrough provider in front of the mock's echo endpoint, whose
/// credential is `Bearer OPENAI_KEY`.
async fn echo_env() -> Env {
    let env = start().await;
    env.add_echo_provider(Template::Openai, |_| {}).await;
    env
}

/// Asserts the response carries no trace of the credential, and that the
/// upstream did receive it (so the reflection was there to mask).
async fn assert_masked(way: &str, resp: reqwest::Response) {
    assert_eq!(resp.status(), 200, "{way}");
    for (name, value) in resp.headers() {
        let v = String::from_utf8_lossy(value.as_bytes());
        assert!(!v.contains(OPENAI_KEY), "{way}: header {name}: {v}");
    }
    let reflected = resp
        .headers()
        .get("x-echo-authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.text().await.unwrap();
    assert!(!body.contains(OPENAI_KEY), "{way}: {body}");
    assert!(!body.contains("sk-upstream"), "{way}: {body}");
    let described: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stars = "*".repeat(format!("Bearer {OPENAI_KEY}").len());
    assert_eq!(
        described["headers"]["authorization"], stars,
        "{way}: {body}"
    );
    assert_eq!(reflected.as_deref(), Some(stars.as_str()), "{way}");
}

#[tokio::test]
async fn a_reflecting_upstream_never_hands_the_agent_the_credential() {
    let env = echo_env().await;
    for chunk in [None, Some("1"), Some("7")] {
        let add = |r: reqwest::RequestBuilder| {
            let r = r.header("x-mock-echo-headers", "1");
            match chunk {
                Some(n) => r.header("x-mock-echo-chunk", n),
                None => r,
            }
        };
        let resp = add(env
            .direct_client()
            .get(format!("{}/_mock/echo/a", env.base_url("echo")))
            .bearer_auth(&env.token))
        .send()
        .await
        .unwrap();
        assert_masked(&format!("base_url, chunks {chunk:?}"), resp).await;
        for (scheme, url) in [
            ("https", "https://echo.example.com/_mock/echo/b"),
            ("http", "http://echo.example.com/_mock/echo/c"),
        ] {
            for http1 in [true, false] {
                if scheme == "http" && !http1 {
                    continue;
                }
                let client = env.proxy_client(scheme, http1);
                let resp = add(client.get(url)).send().await.unwrap();
                assert_masked(
                    &format!("proxy {url}, http1 {http1}, chunks {chunk:?}"),
                    resp,
                )
                .await;
            }
        }
    }
    // The upstream got the credential each time: it was injected, then masked.
    let seen = env.mock.requests();
    assert!(seen.len() >= 12);
    assert!(seen
        .iter()
        .all(|r| r.headers.get("authorization").map(String::as_str)
            == Some(&format!("Bearer {OPENAI_KEY}"))));
}
