//! Response framing from a hostile or sloppy upstream: what the client
//! reads is the body the upstream sent, whatever its headers claim.

mod common;

use caracal_gateway::model::{PatternType, Template};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that answers every request with `response`, verbatim.
async fn raw_upstream(response: &'static [u8]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                // Reads the request head and its declared body, then answers.
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn transfer_encoding_wins_over_content_length_and_the_length_is_dropped() {
    // Content-Length says 5; the chunked body is 26 bytes.
    let port = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\
          transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          1a\r\n{\"id\":\"x\",\"object\":\"list\"}\r\n0\r\n\r\n",
    )
    .await;
    let env = start().await;
    env.store
        .put_provider(
            &provider(
                "sloppy",
                Template::Openai,
                &format!("http://127.0.0.1:{port}"),
                "sloppy.example.com",
            ),
            false,
        )
        .await
        .unwrap();
    env.store
        .add_allowlist(
            &env.agent_id,
            "https://sloppy.example.com/*",
            PatternType::Glob,
        )
        .await
        .unwrap();
    env.wait_for_snapshot().await;
    let r = env
        .direct_client()
        .get(format!("{}/v1/models", env.base_url("sloppy")))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("content-length").is_none_or(|v| v == "26"),
        "{:?}",
        r.headers()
    );
    assert_eq!(r.text().await.unwrap(), r#"{"id":"x","object":"list"}"#);
}
