//! Allowlists: create, list, delete, and `test` deciding like the gateway.

use crate::principal::register;
use crate::support::Home;

#[test]
fn allowlists_decide_like_the_gateway() {
    let home = Home::with_workspace();
    let id = register(&home, "worker-1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let entry = home.json(&[
        "allowlist",
        "create",
        "--agent-id",
        "worker-1",
        "--pattern",
        "https://api.openai.com/v1/*",
        "--pattern-type",
        "glob",
        "--json",
    ]);
    let entry_id = entry["id"].as_str().unwrap().to_string();
    assert_eq!(entry["principal_id"], id.as_str());
    let regex = home.ok(&[
        "allowlist",
        "create",
        "--agent-id",
        &id,
        "--pattern",
        r"^https://api\.anthropic\.com/.*$",
        "--pattern-type",
        "regex",
    ]);
    assert!(regex.contains("added"), "{regex}");

    let out = home.fails(
        1,
        &[
            "allowlist",
            "create",
            "--agent-id",
            &id,
            "--pattern",
            "(unclosed",
            "--pattern-type",
            "regex",
        ],
    );
    assert!(out.stderr.contains("invalid regex"), "{out:?}");
    home.fails(
        1,
        &[
            "allowlist",
            "create",
            "--agent-id",
            &id,
            "--pattern",
            "a[",
            "--pattern-type",
            "glob",
        ],
    );
    assert!(home
        .fails(
            1,
            &[
                "allowlist",
                "create",
                "--agent-id",
                "nobody",
                "--pattern",
                "x",
                "--pattern-type",
                "glob"
            ]
        )
        .stderr
        .contains("no principal"));

    let list = home.json(&["allowlist", "list", "--agent-id", "worker-1", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(home.ok(&["allowlist", "list"]).contains("worker-1"));

    // The query is stripped and the host normalised before matching.
    let d = home.json(&[
        "allowlist",
        "test",
        "--agent-id",
        "worker-1",
        "--url",
        "https://API.openai.com/v1/models?limit=2",
        "--json",
    ]);
    assert_eq!(
        (d["allowed"].as_bool(), d["entry_id"].as_str()),
        (Some(true), Some(entry_id.as_str())),
        "{d}"
    );
    assert_eq!(d["url"], "https://api.openai.com/v1/models");
    let out = home.fails(
        1,
        &[
            "allowlist",
            "test",
            "--agent-id",
            &id,
            "--url",
            "https://evil.example/v1/models",
            "--json",
        ],
    );
    let d = out.json();
    assert_eq!(
        (d["allowed"].as_bool(), d["code"].as_str()),
        (Some(false), Some("resource_not_allowed")),
        "{d}"
    );
    let out = home.fails(
        1,
        &[
            "allowlist",
            "test",
            "--agent-id",
            &id,
            "--url",
            "https://api.openai.com.evil.example/v1/x",
        ],
    );
    assert!(out.stdout.starts_with("deny"), "{out:?}");
    assert!(home
        .ok(&[
            "allowlist",
            "test",
            "--agent-id",
            &id,
            "--url",
            "https://api.anthropic.com/v1/messages"
        ])
        .starts_with("allow"));
    home.fails(
        1,
        &[
            "allowlist",
            "test",
            "--agent-id",
            &id,
            "--url",
            "api.openai.com/v1",
        ],
    );

    home.ok(&["allowlist", "delete", &entry_id]);
    home.fails(
        1,
        &[
            "allowlist",
            "test",
            "--agent-id",
            &id,
            "--url",
            "https://api.openai.com/v1/models",
        ],
    );
    let other = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] != entry_id.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    home.ok(&["allowlist", "delete", "--id", &other]);
    assert_eq!(
        home.json(&["allowlist", "list", "--json"]),
        serde_json::json!([])
    );
    // No entries left: the workspace default (deny) applies.
    let out = home.fails(
        1,
        &[
            "allowlist",
            "test",
            "--agent-id",
            &id,
            "--url",
            "https://api.anthropic.com/v1/messages",
        ],
    );
    assert!(out.stdout.contains("denies by default"), "{out:?}");
    assert!(home
        .fails(1, &["allowlist", "delete", &other])
        .stderr
        .contains("no allowlist entry"));
}
