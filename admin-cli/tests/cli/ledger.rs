//! The ledger's filters and the workspace CA.

use crate::support::Home;

#[test]
fn ledger_query_validates_its_filters() {
    let home = Home::with_workspace();
    assert_eq!(
        home.json(&["ledger", "query", "--json"]),
        serde_json::json!([])
    );
    assert!(home.ok(&["ledger", "query"]).contains("no ledger events"));
    let out = home.fails(1, &["ledger", "query", "--start-time", "yesterday"]);
    assert!(
        out.stderr.contains("--start-time") && out.stderr.contains("RFC 3339"),
        "{out:?}"
    );
    let out = home.fails(
        1,
        &[
            "ledger",
            "query",
            "--start-time",
            "now",
            "--end-time",
            "2024-01-01T00:00:00Z",
        ],
    );
    assert!(out.stderr.contains("after"), "{out:?}");
    let range = [
        "ledger",
        "query",
        "--start-time",
        "2024-01-01T00:00:00Z",
        "--end-time",
        "now",
        "--limit",
        "5",
        "--json",
    ];
    assert_eq!(home.json(&range), serde_json::json!([]));
    assert!(home
        .fails(1, &["ledger", "query", "--agent-id", "nobody"])
        .stderr
        .contains("no principal"));
}

#[test]
fn export_ca_creates_the_ca_once() {
    let home = Home::with_workspace();
    let first = home.run(&["certs", "export-ca"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.starts_with("-----BEGIN CERTIFICATE-----"),
        "{first:?}"
    );
    assert!(first
        .stdout
        .trim_end()
        .ends_with("-----END CERTIFICATE-----"));
    assert!(first.stderr.contains("created the workspace CA"));
    assert!(home.workspace_dir("demo").join("ca/ca.pem").is_file());
    let second = home.run(&["certs", "export-ca"]);
    assert_eq!(second.stdout, first.stdout, "the CA must be stable");
    assert!(second.stderr.is_empty(), "{second:?}");
}
