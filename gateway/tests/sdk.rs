//! Unmodified official SDKs through the gateway. The SDKs are installed
//! once, pinned, by `scripts/sdk-venv.sh` (which this test calls).

mod common;

use std::process::Command;

use common::*;

/// The python of the SDK environment, installed on first use.
fn sdk_python() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(format!("{root}/scripts/sdk-venv.sh"))
        .output()
        .expect("scripts/sdk-venv.sh runs");
    assert!(
        out.status.success(),
        "scripts/sdk-venv.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A principal without any budget streams a chat completion with the
/// official OpenAI SDK through HTTPS_PROXY, without asking for usage: the
/// gateway asks for it on the way up and hides it on the way down, so the
/// client sees exactly what it asked for and the ledger row has tokens
/// and a cost.
#[tokio::test]
async fn an_unbudgeted_sdk_stream_through_https_proxy_is_priced() {
    let env = start().await;
    let python = sdk_python();
    let ca = env.dir.path().join("ca-for-sdk.pem");
    std::fs::write(&ca, &env.ca_pem).unwrap();
    let proxy = format!(
        "http://{}:{}@127.0.0.1:{}",
        env.agent_id,
        env.token,
        env.gw.addr.port()
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../load-tests/sdk/openai_stream.py"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HTTPS_PROXY", &proxy)
            .env("SSL_CERT_FILE", &ca)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the SDK call failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(out.stdout.trim_ascii()).expect("one JSON line");
    assert!(report["chunks"].as_u64().unwrap() > 1, "{report}");
    assert_eq!(
        report["usage_seen"], false,
        "usage leaked to the client: {report}"
    );
    assert!(!report["text"].as_str().unwrap().is_empty(), "{report}");

    let events = env.ledger(1).await;
    let e = events.last().expect("a ledger row");
    assert_eq!(e.mode.as_str(), "proxy");
    assert_eq!(e.decision.as_str(), "allow");
    assert_eq!(e.usage.map(|u| u.as_str()), Some("found"), "{e:?}");
    assert!(
        e.input_tokens.unwrap() > 0 && e.output_tokens.unwrap() > 0,
        "{e:?}"
    );
    assert_eq!(e.cost_basis.map(|b| b.as_str()), Some("usage"), "{e:?}");
    assert!(
        e.cost.is_some_and(|c| c > rust_decimal::Decimal::ZERO),
        "{e:?}"
    );
    assert_eq!(e.currency.as_deref(), Some("USD"));
    // (The mock, like OpenAI, streams usage only when the request asks
    // for it: usage found in the row proves the gateway asked.)
}
