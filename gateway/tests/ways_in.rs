//! The three ways in (HTTPS_PROXY over TLS or plain, base_url, plain HTTP
//! proxy) reach the provider with the provider's credentials, stream, and
//! are enforced identically.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;

fn chat(stream: bool) -> serde_json::Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello to the gateway please"}],
        "max_tokens": 8,
        "stream": stream,
        "stream_options": {"include_usage": true}
    })
}

#[tokio::test]
async fn https_proxy_call_is_intercepted_forwarded_and_recorded() {
    let env = start().await;
    for (scheme, http1) in [("https", true), ("http", true), ("https", false)] {
        let client = env.proxy_client(scheme, http1);
        let resp = client
            .post("https://api.openai.com/v1/chat/completions")
            .bearer_auth("sk-agent-must-not-leak")
            .header("x-api-key", "also-stripped")
            .json(&chat(false))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{scheme} proxy: {e:?}"));
        assert_eq!(resp.status(), 200, "{scheme}");
        let expected = if http1 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        assert_eq!(resp.version(), expected, "ALPN inside the tunnel");
        let event_id = event_id(&resp);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["usage"]["prompt_tokens"], 8);

        let seen = env.mock.requests().last().cloned().unwrap();
        assert_eq!(seen.path, "/v1/chat/completions");
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {OPENAI_KEY}")
        );
        assert!(
            !seen.headers.contains_key("x-api-key"),
            "agent credential forwarded"
        );
        assert!(!seen.headers.contains_key("proxy-authorization"));

        let e = env.event(&event_id).await;
        assert_eq!(e.principal_id.as_deref(), Some(env.agent_id.as_str()));
        assert_eq!(
            (e.decision.as_str(), e.code.as_str(), e.status),
            ("allow", "ok", Some(200))
        );
        assert_eq!(e.provider.as_deref(), Some("openai"));
        assert_eq!(e.resource.as_deref(), Some("chat.completions"));
        assert_eq!(e.action.as_deref(), Some("create"));
        assert_eq!(
            e.url.as_deref(),
            Some("https://api.openai.com/v1/chat/completions")
        );
        assert_eq!((e.input_tokens, e.output_tokens), (Some(8), Some(8)));
        assert_eq!(e.usage.map(|u| u.as_str()), Some("found"));
        assert!(e.request_bytes > 0 && e.response_bytes > 0);
    }
}

#[tokio::test]
async fn base_url_mode_uses_the_bearer_token_and_provider_prefix() {
    let env = start().await;
    let client = env.direct_client();
    let resp = client
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .bearer_auth(&env.token)
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = env.mock.requests().last().cloned().unwrap();
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );

    // Anthropic SDKs send the key as x-api-key.
    let resp = client
        .post(format!("{}/v1/messages", env.base_url("anthropic")))
        .header("x-api-key", &env.token)
        .json(&json!({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi there"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = env.mock.requests().last().cloned().unwrap();
    assert_eq!(seen.headers["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    let id = event_id(&resp);
    let _ = resp.bytes().await.unwrap();
    let e = env.event(&id).await;
    assert_eq!(e.resource.as_deref(), Some("messages"));
    assert_eq!(
        e.url.as_deref(),
        Some("https://api.anthropic.com/v1/messages")
    );
    assert_eq!((e.input_tokens, e.output_tokens), (Some(2), Some(5)));

    // No credentials: 401 with a JSON code, never forwarded.
    let before = env.mock.requests().len();
    let resp = client
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(env.mock.requests().len(), before);
}

#[tokio::test]
async fn plain_http_proxy_requests_are_enforced_the_same_way() {
    let env = start().await;
    let client = env.proxy_client("http", true);
    let resp = client
        .get("http://api.openai.com/v1/models?limit=2&secret=s3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the allowlist matches without the query"
    );
    let id = event_id(&resp);
    let seen = env.mock.requests().last().cloned().unwrap();
    assert_eq!(seen.path, "/v1/models");
    assert_eq!(
        seen.query.as_deref(),
        Some("limit=2&secret=s3"),
        "query forwarded"
    );
    let e = env.event(&id).await;
    assert_eq!(
        e.url.as_deref(),
        Some("http://api.openai.com/v1/models"),
        "no query in the ledger"
    );
    assert_eq!(e.mode.as_str(), "http_proxy");
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );
    // Same allowlist decision as in the other modes: embeddings are not allowed.
    let resp = client
        .post("http://api.openai.com/v1/embeddings")
        .json(&json!({"input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "resource_not_allowed");
}

#[tokio::test]
async fn the_same_denials_in_every_mode() {
    let env = start().await;
    let proxied = env.proxy_client("https", true);
    let direct = env.direct_client();
    let cases = [
        // (path, expected code)
        ("/v1/embeddings", "resource_not_allowed"),
        ("/v1/not-in-catalog", "operation_unknown"),
    ];
    for (path, code) in cases {
        let via_proxy = proxied
            .post(format!("https://api.openai.com{path}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let via_base = direct
            .post(format!("{}{path}", env.base_url("openai")))
            .bearer_auth(&env.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        for resp in [via_proxy, via_base] {
            assert_eq!(resp.status(), 403, "{path}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"], code, "{path}");
        }
    }
    let resp = direct
        .get(format!("{}/v1/models", env.base_url("nope")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "provider_unknown"
    );
}

/// Reads the stream until `needle` has arrived, returns what was read.
async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    seen: &mut String,
    needle: &str,
) {
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("chunk did not arrive")
            .expect("stream ended early")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn sse_chunks_reach_the_agent_before_the_provider_sends_the_next() {
    let env = start().await;
    let proxied = env.proxy_client("https", false);
    let direct = env.direct_client();
    for (mode, req) in [
        (
            "proxy",
            proxied.post("https://api.openai.com/v1/chat/completions"),
        ),
        (
            "base_url",
            direct
                .post(format!("{}/v1/chat/completions", env.base_url("openai")))
                .bearer_auth(&env.token),
        ),
    ] {
        let gate = format!("gate-{mode}");
        let resp = req
            .header("x-mock-gate", &gate)
            .header("x-mock-chunks", "3")
            .json(&chat(true))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = event_id(&resp);
        let mut stream = resp.bytes_stream();
        let mut seen = String::new();
        // The first content chunk arrives while the mock holds the second.
        read_until(&mut stream, &mut seen, "\"content\"").await;
        let contents = seen.matches("\"content\"").count();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), stream.next())
                .await
                .is_err(),
            "{mode}: more data arrived before the gate opened"
        );
        env.mock.release_gate(&gate);
        let mut more = String::new();
        read_until(&mut stream, &mut more, "\"content\"").await;
        assert!(contents >= 1);
        env.mock.release_gate(&gate);
        read_until(&mut stream, &mut more, "[DONE]").await;
        let e = env.event(&id).await;
        assert_eq!(e.usage.map(|u| u.as_str()), Some("found"), "{mode}");
        assert_eq!(e.output_tokens, Some(8));
    }
}

#[tokio::test]
async fn interception_uses_a_leaf_the_client_verifies_against_the_workspace_ca() {
    let env = start().await;
    // A client trusting a different CA must refuse the minted leaf.
    let other = caracal_certs::CertAuthority::generate("someone else").unwrap();
    let url = format!(
        "https://{}:{}@127.0.0.1:{}",
        env.agent_id,
        env.token,
        env.gw.addr.port()
    );
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(other.cert_pem().as_bytes()).unwrap())
        .add_root_certificate(env.ca()) // to trust the proxy itself
        .proxy(reqwest::Proxy::all(&url).unwrap())
        .build()
        .unwrap();
    assert!(client
        .get("https://api.openai.com/v1/models")
        .send()
        .await
        .is_ok());
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(other.cert_pem().as_bytes()).unwrap())
        .proxy(reqwest::Proxy::all(url.replace("https://", "http://")).unwrap())
        .build()
        .unwrap();
    let err = client
        .get("https://api.openai.com/v1/models")
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );
}

/// A TLS connection to the gateway's listener offering `alpn` (empty: no
/// ALPN extension at all), then one unauthenticated base_url request in
/// HTTP/2 (`h2`) or HTTP/1.1. Returns the protocol TLS negotiated, and the
/// response's version, status and `error` code.
async fn call_offering(
    env: &Env,
    alpn: &[&[u8]],
    h2: bool,
) -> (Option<Vec<u8>>, http::Version, u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut env.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    let path = "/openai/v1/models";
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://127.0.0.1:{}{path}", env.gw.addr.port()))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(
                http::header::HOST,
                format!("127.0.0.1:{}", env.gw.addr.port()),
            )
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        send.send_request(req).await.unwrap()
    };
    let (version, status) = (resp.version(), resp.status().as_u16());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let code = body["error"].as_str().unwrap_or_default().to_string();
    (negotiated, version, status, code)
}

/// A connection that names its protocol by ALPN is served in it from its
/// first byte; one that names none is told by what it sends (HTTP/2's
/// preface or an HTTP/1.1 head). Every way, the request reaches the stack.
#[tokio::test]
async fn each_protocol_a_client_names_or_speaks_is_served() {
    let env = start().await;
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    // (ALPN offered, speaks HTTP/2, ALPN negotiated, version served)
    type Case<'a> = (&'a [&'a [u8]], bool, Option<&'a [u8]>, http::Version);
    let cases: [Case; 5] = [
        (both, true, Some(b"h2"), http::Version::HTTP_2),
        (
            &[b"http/1.1"],
            false,
            Some(b"http/1.1"),
            http::Version::HTTP_11,
        ),
        (&[b"h2"], true, Some(b"h2"), http::Version::HTTP_2),
        (&[], false, None, http::Version::HTTP_11),
        (&[], true, None, http::Version::HTTP_2),
    ];
    for (offered, h2, negotiated, version) in cases {
        let got = call_offering(&env, offered, h2).await;
        assert_eq!(
            got,
            (
                negotiated.map(<[u8]>::to_vec),
                version,
                401,
                "unauthenticated".to_string()
            ),
            "offering {offered:?}, speaking {}",
            if h2 { "h2" } else { "HTTP/1.1" }
        );
    }
}
