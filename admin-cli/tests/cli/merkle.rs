//! `caracal merkle` on an embedded workspace: seal, verify, prove, check a
//! proof in an empty home, and catch a row changed in the SQLite file.

use crate::ledger::spender_with_three_calls;
use crate::support::Home;

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_ledger_verifies_proves_offline_and_catches_tampering() {
    let home = Home::with_openai_provider();
    spender_with_three_calls(&home).await;
    assert!(home.ok(&["merkle", "seal"]).contains("sealed batch"));
    assert!(home.ok(&["merkle", "seal"]).contains("nothing to seal"));
    let status = home.json(&["merkle", "status", "--json"]);
    assert!(status["tree_size"].as_u64().unwrap() >= 3, "{status}");
    assert_eq!(status["pending"], 0, "{status}");
    let batch_id = status["latest_batch"]["id"].as_str().unwrap().to_string();
    let range = [
        "merkle",
        "verify-range",
        "--start-time",
        "2000-01-01T00:00:00Z",
        "--end-time",
        "now",
    ];
    assert!(home.ok(&range).contains("verified"));
    let report = home.json(&[&range[..], &["--json"]].concat());
    assert_eq!(report["ok"], true, "{report}");

    // A proof, checked where there is no workspace at all.
    let dir = tempfile::tempdir().unwrap();
    let (pk, proof, saved) = (
        dir.path().join("ledger.pub"),
        dir.path().join("proof.json"),
        dir.path().join("checkpoint.txt"),
    );
    let events = home.json(&["ledger", "query", "--agent-id", "spender", "--json"]);
    let victim = events[1]["id"].as_str().unwrap().to_string();
    home.ok(&["merkle", "public-key", "--out", pk.to_str().unwrap()]);
    home.ok(&[
        "merkle",
        "prove",
        "--event-id",
        &victim,
        "--out",
        proof.to_str().unwrap(),
    ]);
    std::fs::write(
        &saved,
        status["latest_batch"]["checkpoint"].as_str().unwrap(),
    )
    .unwrap();
    let auditor = Home::empty();
    let verify = [
        "merkle",
        "verify-proof",
        "--proof",
        proof.to_str().unwrap(),
        "--public-key",
        pk.to_str().unwrap(),
    ];
    assert!(auditor.ok(&verify).contains("verified: event"));
    // The same proof with the event's cost changed does not verify.
    let text = std::fs::read_to_string(&proof).unwrap();
    std::fs::write(&proof, text.replace("0.25", "0.20")).unwrap();
    let out = auditor.fails(1, &verify);
    assert!(out.stdout.contains("DOES NOT VERIFY"), "{out:?}");

    // A row changed in the database: its batch fails, naming it.
    let db = home.workspace_dir("demo").join("caracal.db");
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE ledger_events SET cost = '0.01' WHERE id = ?")
            .bind(&victim)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let out = home.fails(1, &["merkle", "verify-batch", "--batch-id", &batch_id]);
    assert!(out.stdout.contains("DOES NOT VERIFY"), "{out:?}");
    assert!(out.stdout.contains(&victim), "{out:?}");
    let out = home.fails(1, &range);
    assert!(out.stdout.contains("LEDGER VERIFICATION FAILED"), "{out:?}");
    let out = home.fails(1, &[&range[..], &["--json"]].concat());
    let report = out.json();
    assert_eq!(
        report["batches"][0]["first_bad_event"],
        victim.as_str(),
        "{report}"
    );
    // The tree itself was not rewritten: consistent with the saved checkpoint.
    assert!(home
        .ok(&[
            "merkle",
            "consistency",
            "--checkpoint",
            saved.to_str().unwrap()
        ])
        .contains("consistent"));
    home.fails(2, &["merkle", "consistency"]);
    let out = home.fails(1, &["merkle", "verify-batch", "--batch-id", "nope"]);
    assert!(out.stderr.contains("no batch nope"), "{out:?}");
}

/// A workspace made before the Merkle log (no ledger key) gets its key on
/// first use; an empty ledger seals nothing and verifies.
#[test]
fn an_older_workspace_gets_its_ledger_key_and_an_empty_ledger_verifies() {
    let home = Home::with_workspace();
    let key = home.workspace_dir("demo").join("keys/ledger.key");
    std::fs::remove_file(&key).unwrap();
    let status = home.json(&["merkle", "status", "--json"]);
    assert!(key.is_file());
    assert_eq!(status["tree_size"], 0, "{status}");
    assert_eq!(status["latest_batch"], serde_json::Value::Null, "{status}");
    assert!(home.ok(&["merkle", "seal"]).contains("nothing to seal"));
    let out = home.ok(&[
        "merkle",
        "verify-range",
        "--start-time",
        "2000-01-01T00:00:00Z",
        "--end-time",
        "now",
    ]);
    assert!(out.contains("0 batches"), "{out}");
    let out = home.fails(1, &["merkle", "prove", "--event-id", "x"]);
    assert!(out.stderr.contains("not in a sealed batch"), "{out:?}");
    let out = home.fails(
        1,
        &[
            "merkle",
            "verify-range",
            "--start-time",
            "now",
            "--end-time",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert!(out.stderr.contains("is after"), "{out:?}");
    let out = home.fails(
        1,
        &[
            "merkle",
            "verify-range",
            "--start-time",
            "yesterday",
            "--end-time",
            "now",
        ],
    );
    assert!(out.stderr.contains("is not a time"), "{out:?}");
}
