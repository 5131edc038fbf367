//! Policies: created against the workspace's catalogs, versioned with who
//! and why, listed, shown and their history.

use crate::principal::register;
use crate::support::Home;

fn home_with_provider() -> Home {
    let home = Home::with_openai_provider();
    register(&home, "worker-1");
    home
}

#[test]
fn policies_are_validated_against_the_catalog() {
    let home = home_with_provider();
    let base = [
        "policy",
        "create",
        "--principal-id",
        "worker-1",
        "--max-validity",
        "1h",
        "--change-reason",
        "test",
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        args
    }
    // Unknown resource: the error lists the valid ones.
    let out = home.fails(
        1,
        &with(
            &base,
            &["--resource", "chat.completion", "--action", "create"],
        ),
    );
    assert!(
        out.stderr.contains("unknown resource \"chat.completion\""),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("chat.completions"),
        "valid resources listed: {out:?}"
    );
    // An action no matched resource offers.
    let out = home.fails(
        1,
        &with(&base, &["--resource", "embeddings", "--action", "delete"]),
    );
    assert!(out.stderr.contains("action delete"), "{out:?}");
    // Bad pattern, bad action, bad duration, missing reason.
    let out = home.fails(1, &with(&base, &["--resource", "re:(", "--action", "read"]));
    assert!(out.stderr.contains("re:("), "{out:?}");
    home.fails(
        2,
        &with(&base, &["--resource", "embeddings", "--action", "erase"]),
    );
    let out = home.fails(
        2,
        &[
            "policy",
            "create",
            "--principal-id",
            "worker-1",
            "--resource",
            "embeddings",
            "--action",
            "create",
            "--max-validity",
            "soon",
            "--change-reason",
            "x",
        ],
    );
    assert!(out.stderr.contains("not a duration"), "{out:?}");
    let out = home.fails(
        1,
        &[
            "policy",
            "create",
            "--principal-id",
            "worker-1",
            "--resource",
            "embeddings",
            "--action",
            "create",
            "--max-validity",
            "1h",
            "--change-reason",
            " ",
        ],
    );
    assert!(out.stderr.contains("--change-reason"), "{out:?}");
    // No such principal.
    let out = home.fails(
        1,
        &[
            "policy",
            "create",
            "--principal-id",
            "nobody",
            "--resource",
            "embeddings",
            "--action",
            "create",
            "--max-validity",
            "1h",
            "--change-reason",
            "x",
        ],
    );
    assert!(out.stderr.contains("nobody"), "{out:?}");
    assert_eq!(
        home.json(&["policy", "list", "--json"]),
        serde_json::json!([])
    );
}

#[test]
fn every_change_is_a_version_with_who_and_why() {
    let home = home_with_provider();
    let created = home.json(&[
        "policy",
        "create",
        "--agent-id",
        "worker-1",
        "--resource",
        "chat.completions",
        "--resource",
        "models.*",
        "--action",
        "create",
        "--action",
        "read",
        "--max-validity",
        "1h",
        "--allow-delegation",
        "--max-delegation-depth",
        "2",
        "--change-reason",
        "initial grant",
        "--json",
    ]);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["version"], 1);
    assert_eq!(created["definition"]["max_validity_secs"], 3600);
    assert_eq!(created["definition"]["max_delegation_depth"], 2);
    let mut cmd = home.command(&[
        "policy",
        "update",
        &id,
        "--max-validity",
        "15m",
        "--no-delegation",
        "--change-reason",
        "tighten",
        "--json",
    ]);
    cmd.env("CARACAL_OPERATOR", "alice");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let updated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["changed_by"], "alice");
    assert_eq!(updated["definition"]["max_validity_secs"], 900);
    assert_eq!(updated["definition"]["allow_delegation"], false);
    assert_eq!(
        updated["definition"]["scope"]["resources"],
        serde_json::json!(["chat.completions", "models.*"])
    );
    home.ok(&["policy", "disable", &id, "--change-reason", "incident 42"]);
    let history = home.json(&["policy", "history", &id, "--json"]);
    let versions: Vec<(i64, bool, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["active"].as_bool().unwrap(),
                v["change_reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            (1, true, "initial grant".into()),
            (2, true, "tighten".into()),
            (3, false, "incident 42".into())
        ]
    );
    let shown = home.json(&["policy", "show", &id, "--json"]);
    assert_eq!(
        (shown["version"].as_i64(), shown["active"].as_bool()),
        (Some(3), Some(false))
    );
    let listed = home.json(&["policy", "list", "--principal-id", "worker-1", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(home.ok(&["policy", "history", &id]).contains("incident 42"));
    home.fails(1, &["policy", "show", "no-such-policy"]);
}

#[test]
fn budget_policies_are_created_validated_and_versioned() {
    let home = home_with_provider();
    fn create<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "policy",
            "create",
            "--agent-id",
            "worker-1",
            "--change-reason",
            "Initial budget allocation",
        ];
        args.extend_from_slice(extra);
        args
    }
    let p = home.json(&create(&[
        "--limit",
        "100.00",
        "--currency",
        "usd",
        "--time-window",
        "daily",
        "--window-type",
        "calendar",
        "--timezone",
        "europe/berlin",
        "--requests-per-minute",
        "60",
        "--json",
    ]));
    let b = &p["definition"]["budget"];
    assert_eq!(b["limit"]["amount"], "100.00", "{p}");
    assert_eq!(b["limit"]["currency"], "USD");
    assert_eq!(b["window"]["timezone"], "Europe/Berlin");
    assert_eq!(b["max_output_tokens"], 4096);
    assert_eq!(p["definition"]["rate"]["requests_per_minute"], 60);
    assert!(home
        .ok(&["policy", "list"])
        .contains("100.00 USD daily calendar (Europe/Berlin)"));
    // An update keeps what it does not name and is a new version.
    let id = p["id"].as_str().unwrap();
    let u = home.json(&[
        "policy",
        "update",
        id,
        "--limit",
        "50",
        "--change-reason",
        "tighter",
        "--json",
    ]);
    assert_eq!(u["version"], 2);
    assert_eq!(u["definition"]["budget"]["limit"]["amount"], "50");
    assert_eq!(
        u["definition"]["budget"]["window"]["timezone"],
        "Europe/Berlin"
    );
    // An in-flight limit alone is a policy.
    let f = home.json(&create(&["--max-in-flight", "4", "--json"]));
    assert_eq!(f["definition"]["max_in_flight"], 4, "{f}");
    assert!(home.ok(&["policy", "list"]).contains("4 in flight"));
    // Bad input: each refused with a message naming it.
    for (extra, needle) in [
        (
            &["--limit", "abc", "--time-window", "daily"][..],
            "not a decimal amount",
        ),
        (&["--limit", "-5", "--time-window", "daily"][..], "negative"),
        (
            &["--limit", "5", "--time-window", "fortnightly"][..],
            "fortnightly",
        ),
        (
            &["--limit", "5", "--time-window", "daily", "--currency", "US"][..],
            "currency",
        ),
        (
            &[
                "--limit",
                "5",
                "--time-window",
                "daily",
                "--timezone",
                "Mars/Olympus",
            ][..],
            "Mars/Olympus",
        ),
        (&["--limit", "5"][..], "--time-window"),
        (&["--time-window", "daily"][..], "--limit"),
        (&["--requests-per-minute", "0"][..], "requests_per_minute"),
        (
            &["--max-in-flight", "0"][..],
            "--max-in-flight must be between 1",
        ),
        (&["--max-in-flight", "many"][..], "--max-in-flight"),
        (&[][..], "a policy needs a scope"),
    ] {
        let out = home.run(&create(extra));
        assert_ne!(out.code, 0, "{extra:?} was accepted");
        assert!(out.stderr.contains(needle), "{extra:?}: {}", out.stderr);
    }
}
