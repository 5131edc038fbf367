//! Short runs against the in-process mock provider.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::*;
use crate::load::{header_map, parse_header, Method};
use crate::mock::{self, MockConfig};

fn config(url: &str) -> LoadConfig {
    LoadConfig {
        url: url.parse().unwrap(),
        method: Method::Post,
        body: Some(Bytes::from_static(
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#,
        )),
        headers: HeaderMap::new(),
        proxy: None,
        ca_file: None,
        concurrency: NonZeroUsize::new(2).unwrap(),
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(300),
        timeout: Duration::from_secs(5),
        http1: true,
        label: "test".into(),
    }
}

#[tokio::test]
async fn counts_successes_against_the_mock() {
    let mock = mock::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap();
    let url = format!("{}/v1/chat/completions", mock.base_url());
    let summary = run(&config(&url)).await.unwrap();

    assert!(summary.ok > 0, "{summary:?}");
    assert_eq!((summary.errors, summary.non_2xx), (0, 0), "{summary:?}");
    assert_eq!(summary.requests, summary.ok);
    assert_eq!(summary.duration_s, 0.3);
    let (p50, p99, max) = (
        summary.p50_ms.unwrap(),
        summary.p99_ms.unwrap(),
        summary.max_ms.unwrap(),
    );
    assert!(p50 <= p99 && p99 <= max, "{summary:?}");
    // The mock saw the JSON body with its content type.
    let seen = mock.requests();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(request.path, "/v1/chat/completions");
        assert_eq!(request.headers["content-type"], "application/json");
    }
    mock.shutdown().await;
}

#[tokio::test]
async fn counts_error_statuses_separately() {
    let mock = mock::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap();
    let mut config = config(&format!("{}/v1/chat/completions", mock.base_url()));
    config.headers = header_map([parse_header("x-mock-status: 503").unwrap()]);
    let summary = run(&config).await.unwrap();

    assert_eq!(summary.ok, 0);
    assert!(summary.non_2xx > 0, "{summary:?}");
    assert_eq!(summary.statuses["503"], summary.non_2xx);
    assert_eq!((summary.rps, summary.p50_ms), (0.0, None));
    mock.shutdown().await;
}

#[tokio::test]
async fn counts_connection_failures_without_failing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = config(&format!("http://{addr}/"));
    config.concurrency = NonZeroUsize::MIN;
    config.warmup = Duration::ZERO;
    config.duration = Duration::from_millis(100);
    let summary = run(&config).await.unwrap();

    assert_eq!(summary.ok, 0);
    assert!(summary.errors > 0, "{summary:?}");
    assert!(!summary.error_kinds.is_empty());
}

#[tokio::test]
async fn refuses_an_empty_window_and_a_missing_ca_file() {
    let mut empty = config("http://127.0.0.1:1/");
    empty.duration = Duration::ZERO;
    assert!(matches!(run(&empty).await, Err(LoadError::EmptyWindow)));

    let mut no_ca = config("https://127.0.0.1:1/");
    no_ca.ca_file = Some("/nonexistent/caracal-ca.pem".into());
    assert!(matches!(run(&no_ca).await, Err(LoadError::Read { .. })));
}
