//! `caracal provider test` against the mock provider.

use caracal_load_tests::mock::{self, MockConfig};

use crate::provider::SECRET;
use crate::support::{free_port, Home};

#[tokio::test(flavor = "multi_thread")]
async fn provider_test_reaches_the_upstream_with_the_credential() {
    let mock = mock::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap();
    let home = Home::with_workspace();
    let base = mock.base_url();
    home.ok(&[
        "provider",
        "add",
        "m",
        "--template",
        "openai",
        "--base-url",
        &base,
        "--allow-private-network",
        "--credential",
        SECRET,
    ]);
    let report = home.json(&["provider", "test", "m", "--json"]);
    assert_eq!(
        (
            report["reachable"].as_bool(),
            report["status"].as_u64(),
            report["ok"].as_bool()
        ),
        (Some(true), Some(200), Some(true)),
        "{report}"
    );
    assert_eq!(report["url"], format!("{base}/v1/models"));
    let seen = mock.requests();
    let req = seen
        .iter()
        .find(|r| r.path == "/v1/models")
        .expect("the mock saw GET /v1/models");
    assert_eq!(
        req.headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {SECRET}").as_str())
    );

    // A rejected credential (the mock answers 401 when told to) fails.
    home.ok(&[
        "provider",
        "add",
        "m",
        "--template",
        "openai",
        "--base-url",
        &base,
        "--allow-private-network",
        "--credential",
        SECRET,
        "--default-header",
        "x-mock-status: 401",
        "--replace",
    ]);
    let out = home.fails(1, &["provider", "test", "m"]);
    assert!(
        out.stdout.contains("401") && out.stdout.contains("rejected the credential"),
        "{out:?}"
    );

    // Nothing listening: unreachable, exit 1.
    let closed = format!("http://127.0.0.1:{}", free_port());
    home.ok(&[
        "provider",
        "add",
        "gone",
        "--template",
        "generic",
        "--base-url",
        &closed,
        "--allow-private-network",
    ]);
    let out = home.fails(1, &["provider", "test", "gone", "--json"]);
    let report = out.json();
    assert_eq!(report["reachable"], false);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("connect"),
        "{report}"
    );
    mock.shutdown().await;
}
