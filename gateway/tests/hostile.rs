//! Hostile and malformed input: each gets a clear refusal with a stable
//! code (or a closed connection where HTTP allows nothing else), never a
//! panic, and the gateway keeps serving.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn malformed_connect_lines_are_rejected() {
    let env = start().await;
    let auth = env.basic();
    for line in [
        "CONNECT api.openai.com HTTP/1.1".to_string(),
        "CONNECT :443 HTTP/1.1".to_string(),
        "CONNECT [::1 HTTP/1.1".to_string(),
        "CONNECT api.openai.com:99999 HTTP/1.1".to_string(),
        "CONNECT api..openai.com:443 HTTP/1.1".to_string(),
        "CONNECT exa%6dple.com:443 HTTP/1.1".to_string(),
        "CONNECT  HTTP/1.1".to_string(),
        "CONNECT /v1/models HTTP/1.1".to_string(),
    ] {
        let req = format!("{line}\r\nHost: x\r\nProxy-Authorization: Basic {auth}\r\n\r\n");
        let resp = env.raw(req.as_bytes(), WAIT).await;
        let status = status_of(&resp);
        assert!(status == 400 || resp.is_empty(), "{line:?} -> {resp:?}");
        if !resp.is_empty() && !code_of(&resp).is_empty() {
            assert_eq!(code_of(&resp), "bad_request", "{line:?}");
        }
    }
    for garbage in [
        &b"\x00\x01\x02\x03garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"CONNECT\r\n\r\n",
    ] {
        let resp = env.raw(garbage, WAIT).await;
        assert!(
            resp.is_empty() || status_of(&resp) == 400,
            "{garbage:?} -> {resp:?}"
        );
    }
    env.assert_healthy().await;
}

#[tokio::test]
async fn missing_or_garbled_proxy_credentials_get_407() {
    let env = start().await;
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cases = [
        String::new(),
        "Proxy-Authorization: Basic\r\n".into(),
        "Proxy-Authorization: Basic %%%\r\n".into(),
        format!("Proxy-Authorization: Basic {}\r\n", b64("no-colon")),
        format!(
            "Proxy-Authorization: Basic {}\r\n",
            b64(&format!("{}:cct_wrong", env.agent_id))
        ),
        format!(
            "Proxy-Authorization: Basic {}\r\n",
            b64(&format!("someone-else:{}", env.token))
        ),
        "Proxy-Authorization: Bearer\r\n".into(),
        "Proxy-Authorization: Negotiate abc\r\n".into(),
        "Proxy-Authorization: Basic \u{e9}\u{e9}\r\n".into(),
    ];
    for header in cases {
        let req = format!(
            "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n{header}\r\n"
        );
        let resp = env.raw(req.as_bytes(), WAIT).await;
        assert_eq!(status_of(&resp), 407, "{header:?} -> {resp}");
        assert_eq!(code_of(&resp), "unauthenticated", "{header:?}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("proxy-authenticate: basic"),
            "{resp}"
        );
    }
    // A control character is not even a header: the parser refuses it.
    let req = "CONNECT api.openai.com:443 HTTP/1.1\r\nProxy-Authorization: \u{7f}\r\n\r\n";
    let resp = env.raw(req.as_bytes(), WAIT).await;
    assert!(resp.is_empty() || status_of(&resp) == 400, "{resp}");
    // The same for plain absolute-form requests.
    let resp = env
        .raw(
            b"GET http://api.openai.com/v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
            WAIT,
        )
        .await;
    assert_eq!(status_of(&resp), 407, "{resp}");
    env.assert_healthy().await;
}

#[tokio::test]
async fn private_targets_are_refused_in_every_numeric_form() {
    let env = start().await;
    let auth = env.basic();
    for target in [
        "127.0.0.1:443",
        "2130706433:443",
        "0x7f000001:443",
        "0177.0.0.1:443",
        "127.1:443",
        "0x7f.0.0.1:443",
        "[::ffff:127.0.0.1]:443",
        "[::ffff:7f00:1]:443",
        "[::1]:443",
        "localhost:443",
        "10.0.0.8:443",
        "192.168.1.1:443",
        "172.16.0.1:443",
        "169.254.169.254:80",
        "2852039166:80",
        "0xa9fea9fe:80",
        "[fd00:ec2::254]:80",
        "metadata.google.internal:80",
        "[fe80::1]:443",
        "0.0.0.0:443",
    ] {
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n");
        let resp = env.raw(req.as_bytes(), WAIT).await;
        assert_eq!(status_of(&resp), 403, "{target} -> {resp}");
        assert_eq!(code_of(&resp), "destination_forbidden", "{target}");
        // The plain-proxy way in refuses them too.
        let req = format!(
            "GET http://{target}/v1/models HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
        );
        let resp = env.raw(req.as_bytes(), WAIT).await;
        assert_eq!(status_of(&resp), 403, "GET {target} -> {resp}");
        assert_eq!(code_of(&resp), "destination_forbidden", "GET {target}");
    }
    env.assert_healthy().await;
}

#[tokio::test]
async fn unknown_provider_hosts_are_refused() {
    let env = start().await;
    let auth = env.basic();
    for target in [
        "example.com:443",
        "api.openai.com.evil.example:443",
        "8.8.8.8:443",
    ] {
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n");
        let resp = env.raw(req.as_bytes(), WAIT).await;
        assert_eq!(status_of(&resp), 403, "{target} -> {resp}");
        assert_eq!(code_of(&resp), "provider_unknown", "{target}");
    }
    let events = env.ledger(3).await;
    assert!(events
        .iter()
        .all(|e| e.decision.as_str() == "deny" && e.code.as_str() == "provider_unknown"));
    assert!(events
        .iter()
        .all(|e| e.principal_id.as_deref() == Some(env.agent_id.as_str())));
}

#[tokio::test]
async fn oversized_headers_and_bodies_are_refused() {
    let env = start().await;
    let client = env.direct_client();
    let url = format!("{}/v1/chat/completions", env.base_url("openai"));
    // Headers over the limit (32 KiB by default).
    let resp = client
        .post(&url)
        .bearer_auth(&env.token)
        .header("x-padding", "a".repeat(40 * 1024))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "headers_too_large"
    );
    // Far over: hyper's own limit closes with 431 before any handler runs.
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let resp = env.raw(huge.as_bytes(), WAIT).await;
    assert!(resp.is_empty() || status_of(&resp) == 431, "{resp}");

    // Declared body over the limit (1 MiB in tests).
    let before = env.mock.requests().len();
    let resp = client
        .post(&url)
        .bearer_auth(&env.token)
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "body_too_large"
    );
    assert_eq!(
        env.mock.requests().len(),
        before,
        "oversized body forwarded"
    );

    // Streamed (chunked, no length) body over the limit.
    let chunks =
        futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 64 * 1024])));
    let resp = client
        .post(&url)
        .bearer_auth(&env.token)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    match resp {
        Ok(r) => {
            assert_eq!(r.status(), 413);
            assert_eq!(
                r.json::<serde_json::Value>().await.unwrap()["error"],
                "body_too_large"
            );
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
    }
    env.assert_healthy().await;
}

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off() {
    let env = start().await;
    // Silent: connects and sends nothing.
    let mut silent = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    // Slow: sends half a request line, then stalls.
    let mut slow = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    slow.write_all(b"CONNECT api.openai.com:443 HTT")
        .await
        .unwrap();
    // The header read timeout is 1 s in tests: both get closed.
    for s in [&mut silent, &mut slow] {
        let out = read_some(s, Duration::from_secs(5)).await;
        assert!(out.is_empty() || status_of(&out) == 408, "{out}");
    }
    // Slow body: headers promptly, then the body stalls past idle_timeout (2 s).
    let mut stalled = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    let req = format!(
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{{\"model\":",
        env.token
    );
    stalled.write_all(req.as_bytes()).await.unwrap();
    let out = read_some(&mut stalled, Duration::from_secs(8)).await;
    assert!(out.is_empty() || status_of(&out) >= 400, "{out}");
    env.assert_healthy().await;
}

/// The header read timeout (1 s in tests) runs from the first byte of a
/// head, not while a keep-alive connection idles between requests: an idle
/// connection lives until the idle timeout (2 s) and serves the next
/// request; a head that starts and stalls is still cut off at the header
/// read timeout, before the idle timeout.
#[tokio::test]
async fn keep_alive_idles_past_the_header_timeout_but_not_a_slow_head() {
    let env = start().await;
    let req = format!(
        "GET /openai/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        env.token
    );
    let mut s = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let out = read_some(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&out), 200, "{out}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    s.write_all(req.as_bytes()).await.unwrap();
    let out = read_some(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&out), 200, "idle for 1.5 s: {out}");

    s.write_all(b"GET /openai/v1/mo").await.unwrap();
    let started = std::time::Instant::now();
    let out = read_some(&mut s, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(out.is_empty() || status_of(&out) == 408, "{out}");
    assert!(
        waited < Duration::from_millis(1_800),
        "a stalled head is cut off at the header read timeout, not the idle timeout: {waited:?}"
    );
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    env.assert_healthy().await;
}

#[tokio::test]
async fn fronting_inside_a_tunnel_is_refused() {
    let env = start().await;
    // A tunnel to api.openai.com carrying a request for another host.
    let req = format!(
        "CONNECT api.openai.com:80 HTTP/1.1\r\nHost: api.openai.com:80\r\nProxy-Authorization: Basic {}\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n",
        env.basic()
    );
    let resp = env.raw_until(req.as_bytes(), "}", WAIT).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let inner = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(status_of(inner), 421, "{resp}");
    assert_eq!(code_of(inner), "host_mismatch");
}

/// A name in /etc/hosts (other than localhost) that points at loopback.
fn loopback_alias() -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|l| {
        let mut parts = l.split('#').next()?.split_whitespace();
        let addr: std::net::IpAddr = parts.next()?.parse().ok()?;
        if !addr.is_loopback() {
            return None;
        }
        parts
            .find(|n| {
                !n.contains("localhost")
                    && !n.contains("loopback")
                    && n.parse::<std::net::IpAddr>().is_err()
            })
            .map(str::to_string)
    })
}

#[tokio::test]
async fn names_that_resolve_to_private_addresses_are_refused_upstream() {
    let env = start().await;
    let Some(alias) = loopback_alias() else {
        panic!("this test needs a non-localhost name for 127.0.0.1 in /etc/hosts (Debian adds the host name)");
    };
    let port = env.mock.addr().port();
    let mut def = provider(
        "internal",
        caracal_gateway::model::Template::Openai,
        &format!("http://{alias}:{port}"),
        "internal.example.com",
    );
    def.allow_private_network = false;
    env.store.put_provider(&def, false).await.unwrap();
    env.store
        .add_allowlist(
            &env.agent_id,
            "https://internal.example.com/*",
            caracal_gateway::model::PatternType::Glob,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let client = env.direct_client();
    let before = env.mock.requests().len();
    let resp = client
        .get(format!("{}/v1/models", env.base_url("internal")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "{alias} resolves to loopback");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "destination_forbidden", "{body}");
    assert_eq!(
        env.mock.requests().len(),
        before,
        "the request reached the private address"
    );
    // Explicitly allowed, the same provider works.
    def.allow_private_network = true;
    env.store.put_provider(&def, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let resp = client
        .get(format!("{}/v1/models", env.base_url("internal")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn ambiguous_paths_are_refused_before_forwarding() {
    let env = start().await;
    let before = env.mock.requests().len();
    for path in [
        "/v1/models/../../admin",
        "/v1/%2e%2e/admin",
        "/v1//models",
        "/v1/models%2f..%2fadmin",
        "/v1\\models",
    ] {
        let req = format!(
            "GET /openai{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            env.token
        );
        let resp = env.raw(req.as_bytes(), WAIT).await;
        assert!(
            status_of(&resp) == 400 || resp.is_empty(),
            "{path} -> {resp}"
        );
        if !resp.is_empty() {
            assert_eq!(code_of(&resp), "bad_request", "{path}");
        }
    }
    assert_eq!(
        env.mock.requests().len(),
        before,
        "an ambiguous path was forwarded"
    );
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_still_leaves_a_ledger_row() {
    let env = start().await;
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    env.leave_before_the_answer(body).await;
    let events = env.ledger(1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(
        (e.decision.as_str(), e.code.as_str()),
        ("error", "client_cancelled")
    );
    assert_eq!(e.resource.as_deref(), Some("chat.completions"));
    assert_eq!(e.request_bytes, body.len() as u64);
    assert_eq!(
        env.mock.requests().len(),
        1,
        "the provider did receive the call"
    );
}

#[tokio::test]
async fn a_provider_stream_that_stalls_is_cut_off_and_recorded() {
    let env = start().await;
    let client = env.direct_client();
    let resp = client
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .bearer_auth(&env.token)
        .header("x-mock-gate", "never-released")
        .json(&serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = event_id(&resp);
    // The provider sends one chunk and then nothing; the gateway's idle
    // limit (upstream_response_timeout, 5 s in tests) ends the stream.
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(15), resp.bytes()).await;
    assert!(result.expect("the stream was never cut off").is_err());
    assert!(started.elapsed() >= Duration::from_secs(4));
    let e = env.event(&id).await;
    assert_eq!(e.decision.as_str(), "allow");
    assert!(
        e.detail.as_deref().unwrap_or("").contains("stalled"),
        "{e:?}"
    );
    assert!(e.response_bytes > 0);
}

#[tokio::test]
async fn an_http2_connection_that_never_sends_a_request_is_closed() {
    let env = start().await;
    let mut s = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    // Connection preface and an empty SETTINGS frame, then nothing.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("idle HTTP/2 connection still open after 10 s"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn tunnels_count_against_max_connections() {
    let env = start_custom(Default::default(), |c| c.limits.max_connections = 2).await;
    let open_tunnel = || async {
        let mut s = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
        let req = format!(
            "CONNECT api.openai.com:80 HTTP/1.1\r\nHost: api.openai.com:80\r\nProxy-Authorization: Basic {}\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
            env.basic()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        while !String::from_utf8_lossy(&seen).contains("\"data\"") {
            use tokio::io::AsyncReadExt;
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "tunnel closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        s
    };
    let first = open_tunnel().await;
    let second = open_tunnel().await;
    // Both tunnels are open and idle (idle_timeout is 2 s): no place left.
    let refused = env
        .raw(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(1),
        )
        .await;
    assert!(
        refused.is_empty(),
        "a third connection was served: {refused}"
    );
    drop((first, second));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = env
        .raw(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(status_of(&served), 200, "{served}");
}

/// Requests hyper's parser rejects before any handler runs get the JSON
/// error shape with a stable code (not a bare status), and are counted.
#[tokio::test]
async fn parser_refusals_have_the_json_shape_and_a_code() {
    let env = start().await;
    // The metrics recorder is the process's: other tests count too.
    let counted = || async {
        env.metrics()
            .await
            .lines()
            .find_map(|l| {
                l.strip_prefix("caracal_gateway_malformed_requests_total{status=\"400\"} ")
            })
            .map_or(0, |n| n.trim().parse::<u64>().unwrap())
    };
    let before = counted().await;
    for (raw, status, code) in [
        (
            &b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"[..],
            400,
            "bad_request",
        ),
        (
            b"GET /v1/mo dels HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "bad_request",
        ),
        (b"\x00\x01\x02\x03garbage\r\n\r\n", 400, "bad_request"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            400,
            "bad_request",
        ),
    ] {
        let resp = env.raw(raw, WAIT).await;
        assert_eq!(status_of(&resp), status, "{raw:?} -> {resp:?}");
        assert_eq!(code_of(&resp), code, "{raw:?} -> {resp:?}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{resp}"
        );
    }
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let resp = env.raw(huge.as_bytes(), WAIT).await;
    if !resp.is_empty() {
        assert_eq!(status_of(&resp), 431, "{resp}");
        assert_eq!(code_of(&resp), "headers_too_large", "{resp}");
    }
    assert!(counted().await >= before + 4, "each refusal is counted");
    env.assert_healthy().await;
}
