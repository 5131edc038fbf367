//! `caracal-gateway serve --config FILE` runs on its own: it becomes healthy,
//! reports bad configuration clearly, and stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{free_port, stop_within};

#[tokio::test]
async fn serve_runs_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let (port, metrics) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_caracal-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ca_path = dir.path().join("ca/ca.pem");
    let started = Instant::now();
    let healthy = loop {
        assert!(child.try_wait().unwrap().is_none(), "gateway exited early");
        if let Ok(pem) = std::fs::read(&ca_path) {
            let client = reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .build()
                .unwrap();
            if let Ok(r) = client
                .get(format!("https://localhost:{port}/health"))
                .send()
                .await
            {
                break r.status();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(healthy, 200);
    assert!(
        dir.path().join("caracal.db").exists(),
        "embedded database in the workspace"
    );
    assert!(std::fs::read_to_string(dir.path().join("logs/gateway.log"))
        .unwrap()
        .contains("listening"));
    stop_within(&mut child, Duration::from_secs(15)).await;
}

#[test]
fn bad_configuration_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[gateway]\nlisten = \"not an address\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_caracal-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.listen") && !stderr.contains("panicked"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_caracal-gateway"))
        .args(["serve", "--config", "/nonexistent/config.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.toml"));
}
