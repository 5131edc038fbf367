//! Health, echo, 404, h2c, request recording and shutdown.

mod common;

use bytes::Bytes;
use common::json_body;
use futures_util::stream;

#[tokio::test]
async fn health_is_ok() {
    let mock = common::start().await;
    let res = common::client()
        .get(format!("{}/health", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_body(res, 200).await,
        serde_json::json!({"status": "ok"})
    );
}

#[tokio::test]
async fn echo_returns_headers_and_counts_a_streamed_body() {
    let mock = common::start().await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(vec![b'a'; 1000])),
        Ok(Bytes::from(vec![b'b'; 234])),
    ];
    let res = common::client()
        .post(format!(
            "{}/_mock/echo/v1/chat/completions?x=1&y=2",
            mock.base_url()
        ))
        .header("Authorization", "Bearer sk-upstream")
        .header("X-Custom", "kept")
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let echo = json_body(res, 200).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/_mock/echo/v1/chat/completions");
    assert_eq!(echo["query"], "x=1&y=2");
    assert_eq!(echo["headers"]["authorization"], "Bearer sk-upstream");
    assert_eq!(echo["headers"]["x-custom"], "kept");
    assert!(echo["headers"].get("x-caracal-secret").is_none());
    assert_eq!(echo["body_bytes"], 1234);

    let recorded = mock.requests();
    let last = recorded.last().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, "/_mock/echo/v1/chat/completions");
    assert_eq!(last.query.as_deref(), Some("x=1&y=2"));
    assert_eq!(last.headers["authorization"], "Bearer sk-upstream");
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_405_in_openai_shape() {
    let mock = common::start().await;
    let res = common::client()
        .get(format!("{}/v2/nothing", mock.base_url()))
        .send()
        .await
        .unwrap();
    let body = json_body(res, 404).await;
    assert_eq!(body["error"]["type"], "not_found_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v2/nothing"));

    let res = common::client()
        .get(format!("{}/v1/chat/completions", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "POST");
    assert!(json_body(res, 405).await["error"].is_object());
}

#[tokio::test]
async fn serves_h2c_with_prior_knowledge() {
    let mock = common::start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = client
        .get(format!("{}/_mock/echo/h2", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(json_body(res, 200).await["version"], "HTTP/2.0");
}

#[tokio::test]
async fn requests_are_recorded_in_arrival_order() {
    let mock = common::start().await;
    let client = common::client();
    for path in ["/health", "/v1/models", "/nope"] {
        client
            .get(format!("{}{path}", mock.base_url()))
            .header("X-Seq", path)
            .send()
            .await
            .unwrap();
    }
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/health", "/v1/models", "/nope"]);
    assert_eq!(mock.requests()[1].headers["x-seq"], "/v1/models");
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let mock = common::start().await;
    let base = mock.base_url();
    assert!(common::client()
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok());
    mock.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(format!("{base}/health")).send().await.is_err());
}
