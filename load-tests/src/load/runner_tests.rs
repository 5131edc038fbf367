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
        rate: None,
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

/// The open loop sends at the rate asked, whatever the server does, and
/// counts a stalled server's delay in the latency of every request due
/// meanwhile.
#[tokio::test]
async fn the_open_loop_keeps_its_rate_and_counts_from_when_due() {
    let mock = mock::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap();
    let url = format!("{}/v1/chat/completions", mock.base_url());
    let mut c = config(&url);
    c.rate = Some(200.0);
    c.concurrency = NonZeroUsize::new(8).unwrap();
    c.duration = Duration::from_millis(500);
    let summary = run(&c).await.unwrap();
    assert_eq!((summary.errors, summary.non_2xx), (0, 0), "{summary:?}");
    // 200/s over 0.5 s: about 100 requests, not as many as the mock can do.
    assert!((80..=120).contains(&summary.ok), "{summary:?}");

    // One slot, and a server that takes 50 ms a request: the requests due
    // meanwhile wait, and their latency says so.
    c.headers = header_map([parse_header("x-mock-latency-ms: 50").unwrap()]);
    c.concurrency = NonZeroUsize::new(1).unwrap();
    c.rate = Some(100.0);
    let summary = run(&c).await.unwrap();
    assert!(summary.p99_ms.unwrap() > 200.0, "{summary:?}");
    assert!(summary.ok < 20, "{summary:?}");
    mock.shutdown().await;
}

#[tokio::test]
async fn a_rate_of_zero_is_refused() {
    let mut c = config("http://127.0.0.1:9/");
    c.rate = Some(0.0);
    assert!(matches!(run(&c).await, Err(LoadError::Rate(_))));
    c.rate = Some(f64::NAN);
    assert!(matches!(run(&c).await, Err(LoadError::Rate(_))));
}
