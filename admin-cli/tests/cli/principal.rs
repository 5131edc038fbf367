//! Principals and agents: tokens shown once, never listed.

use crate::support::Home;

pub fn register(home: &Home, name: &str) -> serde_json::Value {
    let email = format!("{name}@example.com");
    let out = home.run(&[
        "principal",
        "register",
        "--type",
        "agent",
        "--name",
        name,
        "--email",
        &email,
        "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("cannot be shown again"), "{out:?}");
    out.json()
}

#[test]
fn principals_get_a_token_once() {
    let home = Home::with_workspace();
    let p = register(&home, "worker-1");
    assert!(p["token"].as_str().unwrap().starts_with("cct_"), "{p}");
    assert_eq!(
        (p["type"].as_str(), p["name"].as_str()),
        (Some("agent"), Some("worker-1"))
    );
    assert_eq!(p["email"], "worker-1@example.com");
    assert!(!p["id"].as_str().unwrap().is_empty());

    let human = home.ok(&[
        "principal",
        "register",
        "--type",
        "user",
        "--name",
        "alice",
        "--email",
        "a@example.com",
    ]);
    assert!(
        human.contains("cct_") && human.contains("cannot be shown again"),
        "{human}"
    );
    let agent = home.json(&[
        "agent",
        "create",
        "--name",
        "bot",
        "--description",
        "My AI agent",
        "--owner",
        "o@example.com",
        "--json",
    ]);
    assert_eq!(
        (agent["type"].as_str(), agent["email"].as_str()),
        (Some("agent"), Some("o@example.com"))
    );
    assert_eq!(agent["description"], "My AI agent");

    let out = home.run(&["principal", "list", "--json"]);
    assert!(
        !out.stdout.contains("cct_"),
        "tokens listed: {}",
        out.stdout
    );
    let names: Vec<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["worker-1", "alice", "bot"]);
    assert!(home.ok(&["principal", "list"]).contains("alice"));

    assert!(home
        .fails(
            1,
            &[
                "principal",
                "register",
                "--type",
                "agent",
                "--name",
                "worker-1",
                "--email",
                "w@example.com"
            ]
        )
        .stderr
        .contains("already exists"));
    home.fails(
        1,
        &[
            "principal",
            "register",
            "--type",
            "agent",
            "--name",
            "x",
            "--email",
            "not-an-email",
        ],
    );
    home.fails(
        2,
        &[
            "principal",
            "register",
            "--type",
            "robot",
            "--name",
            "x",
            "--email",
            "x@example.com",
        ],
    );
}
