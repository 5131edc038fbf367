//! `caracal up --detach`, `status`, `down` and `logs`, including one real
//! call through a detached gateway that must reach the ledger.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use caracal_load_tests::mock::{self, MockConfig};

use crate::support::{free_port, Home};

#[test]
fn status_down_and_logs_when_not_running() {
    let home = Home::with_workspace();
    let out = home.fails(1, &["status"]);
    assert!(out.stdout.contains("not running"), "{out:?}");
    let s = home.fails(1, &["status", "--json"]).json();
    assert_eq!(
        (s["running"].as_bool(), s["healthy"].as_bool()),
        (Some(false), Some(false)),
        "{s}"
    );
    assert!(home.ok(&["down"]).contains("not running"));

    // A pid file naming no live process is stale: reported and removed.
    let pid_file = home.workspace_dir("demo").join("run/gateway.pid");
    std::fs::write(&pid_file, "4000000\n").unwrap();
    assert!(home.fails(1, &["status"]).stdout.contains("not running"));
    assert!(home.ok(&["down"]).contains("stale pid file"));
    assert!(!pid_file.exists());

    let out = home.fails(1, &["logs"]);
    assert!(
        out.stderr.contains("no log file") && out.stderr.contains("caracal up"),
        "{out:?}"
    );
    let log = home.workspace_dir("demo").join("logs/gateway.log");
    let text: String = (1..=300).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&log, text).unwrap();
    assert_eq!(home.ok(&["logs", "-n", "2"]), "line 299\nline 300\n");
    let default = home.ok(&["logs"]);
    assert_eq!(default.lines().count(), 200);
    assert!(default.starts_with("line 101\n"));
}

/// Stops the gateway if the test fails half-way.
struct Stop<'a>(&'a Home);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["down"]);
    }
}

/// A plain-HTTP base_url request through the gateway; returns the status.
fn get(port: u16, path: &str, token: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {resp:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn up_detach_status_call_ledger_down() {
    let mock = mock::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap();
    let home = Home::with_workspace();
    home.ok(&[
        "provider",
        "add",
        "m",
        "--template",
        "openai",
        "--base-url",
        &mock.base_url(),
        "--allow-private-network",
        "--credential",
        "sk-test-0123456789abcdef",
    ]);
    let reg = home.json(&[
        "principal",
        "register",
        "--type",
        "agent",
        "--name",
        "worker",
        "--email",
        "w@example.com",
        "--json",
    ]);
    let token = reg["token"].as_str().unwrap();
    home.ok(&[
        "allowlist",
        "create",
        "--agent-id",
        "worker",
        "--pattern",
        "https://api.openai.com/*",
        "--pattern-type",
        "glob",
    ]);

    // The gateway needs a mandate covering the call: ops (a user) issues
    // one under its policy.
    home.ok(&[
        "principal",
        "register",
        "--type",
        "user",
        "--name",
        "ops",
        "--email",
        "o@example.com",
    ]);
    home.ok(&[
        "policy",
        "create",
        "--principal-id",
        "ops",
        "--resource",
        "models.list",
        "--action",
        "read",
        "--max-validity",
        "1h",
        "--change-reason",
        "the worker lists models",
    ]);
    let mandate = home.json(&[
        "authority",
        "mandate",
        "--issuer",
        "ops",
        "--subject",
        "worker",
        "--resource",
        "models.list",
        "--action",
        "read",
        "--valid-for",
        "30m",
        "--json",
    ]);

    let (port, metrics_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{metrics_port}");
    let _stop = Stop(&home);
    let out = home.ok(&[
        "up",
        "--detach",
        "--listen",
        &listen,
        "--metrics-listen",
        &metrics,
    ]);
    let pid: u32 = out
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    assert!(out.contains(&format!("on https://{listen}")), "{out}");
    let pid_file = home.workspace_dir("demo").join("run/gateway.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );

    let s = home.json(&["status", "--json"]);
    assert_eq!(
        (
            s["running"].as_bool(),
            s["healthy"].as_bool(),
            s["pid"].as_u64()
        ),
        (Some(true), Some(true), Some(u64::from(pid))),
        "{s}"
    );
    assert_eq!(
        (s["listen"].as_str(), s["health"]["status"].as_str()),
        (Some(listen.as_str()), Some("ok")),
        "{s}"
    );
    assert!(home.ok(&["status"]).contains("running (pid"));
    let again = home.fails(1, &["up", "--detach", "--listen", &listen]);
    assert!(
        again
            .stderr
            .contains(&format!("already running (pid {pid})")),
        "{again:?}"
    );

    // One allowed call and one unauthenticated one; both reach the ledger.
    assert_eq!(get(port, "/m/v1/models", token), 200);
    assert_eq!(get(port, "/m/v1/models", "cct_wrong"), 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = home.json(&["ledger", "query", "--kind", "call", "--json"]);
        if events.as_array().unwrap().len() >= 2 || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let allowed = events
        .iter()
        .find(|e| e["decision"] == "allow")
        .expect("an allowed event");
    assert_eq!(
        (allowed["provider"].as_str(), allowed["resource"].as_str()),
        (Some("m"), Some("models.list"))
    );
    assert_eq!(
        (allowed["principal_id"].as_str(), allowed["status"].as_u64()),
        (reg["id"].as_str(), Some(200))
    );
    assert_eq!(allowed["mandate_id"], mandate["id"], "{allowed}");
    let mine = home.json(&[
        "ledger",
        "query",
        "--agent-id",
        "worker",
        "--kind",
        "call",
        "--limit",
        "5",
        "--json",
    ]);
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    let table = home.ok(&["ledger", "query"]);
    assert!(
        table.contains("models.list")
            && table.contains("worker")
            && table.contains("unauthenticated"),
        "{table}"
    );
    assert!(home.ok(&["logs", "-n", "50"]).contains("listening"));

    let out = home.ok(&["down"]);
    assert!(
        out.contains(&format!("gateway stopped (pid {pid})")),
        "{out}"
    );
    assert!(!pid_file.exists());
    assert!(home.fails(1, &["status"]).stdout.contains("not running"));
    mock.shutdown().await;
}
