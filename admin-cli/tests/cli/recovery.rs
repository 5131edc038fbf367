//! `caracal snapshot` and `caracal replay` on an embedded workspace: the
//! runbook's recovery of the derived state (snapshot, lose it, restore,
//! replay, verify), a snapshot read back from its copy, and the refusals.

use crate::ledger::{record_costs, spender_with_three_calls};
use crate::principal::register;
use crate::support::Home;

async fn sql(home: &Home, statements: &[&str]) {
    use sqlx::Connection;
    let db = home.workspace_dir("demo").join("caracal.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for s in statements {
        sqlx::query(s).execute(&mut c).await.unwrap();
    }
}

/// Totals per currency of a `snapshot show --json`.
fn totals(shown: &serde_json::Value) -> Vec<(String, String, u64)> {
    shown["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["currency"].as_str().unwrap().to_string(),
                t["amount"].as_str().unwrap().to_string(),
                t["calls"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_restore_replay_rebuilds_the_derived_state() {
    let home = Home::with_openai_provider();
    let agent_id = spender_with_three_calls(&home).await;
    let now = jiff::Timestamp::now();
    assert!(home.ok(&["snapshot", "list"]).contains("no snapshots"));
    let snap = home.json(&["snapshot", "create", "--json"]);
    let id = snap["id"].as_str().unwrap().to_string();
    assert_eq!(snap["tree_size"], 3, "{snap}");
    assert_eq!(snap["calls"], 3, "{snap}");
    let copy = home
        .workspace_dir("demo")
        .join("snapshots")
        .join(format!("{id}.json"));
    assert!(copy.is_file());
    let list = home.json(&["snapshot", "list", "--json"]);
    assert_eq!(list[0]["id"], id.as_str(), "{list}");
    assert!(home.ok(&["snapshot", "list"]).contains(&id));
    let shown = home.json(&["snapshot", "show", "--snapshot-id", &id, "--json"]);
    assert_eq!(
        totals(&shown),
        vec![
            ("EUR".to_string(), "2.5".to_string(), 1),
            ("USD".to_string(), "1.25".to_string(), 2)
        ]
    );

    // More calls after the snapshot, then the derived state is lost.
    record_costs(&home, &agent_id, &[(now, "0.75", "USD")]).await;
    sql(&home, &["DELETE FROM spend_minutes"]).await;
    let out = home.ok(&["snapshot", "restore", "--snapshot-id", &id]);
    assert!(out.contains("replay start --from-snapshot"), "{out}");
    let status = home.ok(&["replay", "status"]);
    assert!(status.contains("INCOMPLETE"), "{status}");
    let done = home.json(&["replay", "start", "--from-snapshot", &id, "--json"]);
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["complete"], true, "{done}");
    assert_eq!(done["events"], 1, "{done}");
    let status = home.json(&["replay", "status", "--json"]);
    assert_eq!(status, done);
    // The rebuilt aggregates are the raw ledger's: a new snapshot of them
    // shows every call.
    let after = home.json(&["snapshot", "create", "--json"]);
    let after_id = after["id"].as_str().unwrap().to_string();
    let shown = home.json(&["snapshot", "show", "--snapshot-id", &after_id, "--json"]);
    assert_eq!(
        totals(&shown),
        vec![
            ("EUR".to_string(), "2.5".to_string(), 1),
            ("USD".to_string(), "2".to_string(), 3)
        ]
    );
    let text = home.ok(&["replay", "start", "--from-snapshot", &id]);
    assert!(text.contains("status      done"), "{text}");
    assert!(text.contains("budget counters"), "{text}");
    let verified = home.ok(&[
        "merkle",
        "verify-range",
        "--start-time",
        "2000-01-01T00:00:00Z",
        "--end-time",
        "now",
    ]);
    assert!(verified.contains("verified"), "{verified}");

    // The database lost the snapshot: its copy in the workspace serves.
    sql(
        &home,
        &[&format!("DELETE FROM ledger_snapshots WHERE id = '{id}'")],
    )
    .await;
    home.ok(&["snapshot", "restore", "--snapshot-id", &id]);
    home.ok(&["replay", "start", "--from-snapshot", &id]);
    // A copy whose rows were changed is refused.
    sql(
        &home,
        &[&format!("DELETE FROM ledger_snapshots WHERE id = '{id}'")],
    )
    .await;
    let text = std::fs::read_to_string(&copy).unwrap();
    std::fs::write(&copy, text.replace("\"1.25\"", "\"0.25\"")).unwrap();
    let out = home.fails(1, &["snapshot", "restore", "--snapshot-id", &id]);
    assert!(out.stderr.contains("does not match its digest"), "{out:?}");
    let out = home.fails(1, &["replay", "start", "--from-snapshot", "0000-nope"]);
    assert!(out.stderr.contains("no snapshot 0000-nope"), "{out:?}");
    let out = home.fails(
        1,
        &["snapshot", "show", "--snapshot-id", "../../etc/passwd"],
    );
    assert!(out.stderr.contains("is not a snapshot id"), "{out:?}");
}

/// A replay stops at a row changed after it was sealed, says so, exits 1,
/// and `replay status` reports the failure.
#[tokio::test(flavor = "multi_thread")]
async fn a_replay_over_a_changed_row_fails_and_says_where() {
    let home = Home::with_openai_provider();
    let agent = register(&home, "spender");
    let agent_id = agent["id"].as_str().unwrap().to_string();
    let snap = home.json(&["snapshot", "create", "--json"]);
    let id = snap["id"].as_str().unwrap().to_string();
    let now = jiff::Timestamp::now();
    record_costs(
        &home,
        &agent_id,
        &[(now, "1.00", "USD"), (now, "0.50", "USD")],
    )
    .await;
    home.ok(&["merkle", "seal"]);
    sql(
        &home,
        &["UPDATE ledger_events SET cost = '0.01' WHERE cost = '0.50'"],
    )
    .await;
    let out = home.fails(1, &["replay", "start", "--from-snapshot", &id]);
    assert!(out.stderr.contains("does not verify"), "{out:?}");
    let out = home.fails(1, &["replay", "status"]);
    assert!(out.stdout.contains("status      failed"), "{out:?}");
    assert!(out.stdout.contains("verification_failed"), "{out:?}");
    let out = home.fails(1, &["snapshot", "create"]);
    assert!(out.stderr.contains("does not verify"), "{out:?}");
}
