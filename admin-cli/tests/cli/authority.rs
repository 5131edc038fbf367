//! Mandates: issued under policies, enforced by the gateway's own decision
//! (dry run), signing keys rotated and listed.

use crate::principal::register;
use crate::support::{Home, Out};

/// A workspace with the openai provider, principals `boss` and `bot`, and
/// a policy for boss over chat.* (create, read) with a 1h maximum.
/// Returns the policy id.
fn setup() -> (Home, String) {
    let home = Home::with_openai_provider();
    register(&home, "boss");
    register(&home, "bot");
    let policy = home.json(&[
        "policy",
        "create",
        "--principal-id",
        "boss",
        "--resource",
        "chat.*",
        "--action",
        "create",
        "--action",
        "read",
        "--max-validity",
        "1h",
        "--change-reason",
        "test",
        "--json",
    ]);
    let id = policy["id"].as_str().unwrap().to_string();
    (home, id)
}

fn mandate_args<'a>(issuer: &'a str, resource: &'a str, valid_for: &'a str) -> Vec<&'a str> {
    vec![
        "authority",
        "mandate",
        "--issuer",
        issuer,
        "--subject",
        "bot",
        "--resource",
        resource,
        "--action",
        "create",
        "--valid-for",
        valid_for,
        "--json",
    ]
}

/// Issues a mandate boss → bot over `chat.completions` create for 15m.
fn issue(home: &Home) -> serde_json::Value {
    let out = home.run(&mandate_args("boss", "chat.completions", "15m"));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("credential"), "warns: {out:?}");
    out.json()
}

fn enforce(home: &Home, token: &str, resource: &str, extra: &[&str]) -> Out {
    let mut args = vec![
        "authority",
        "enforce",
        "--mandate",
        token,
        "--resource",
        resource,
        "--action",
        "create",
        "--json",
    ];
    args.extend_from_slice(extra);
    home.run(&args)
}

/// Asserts a denial with `code` and returns the last reason.
fn denied(out: &Out, code: &str) -> String {
    assert_eq!(out.code, 1, "{out:?}");
    let v = out.json();
    assert_eq!(v["decision"], "deny", "{out:?}");
    assert_eq!(v["code"], code, "{out:?}");
    v["reasons"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_mandate_issued_under_a_policy_is_allowed() {
    let (home, policy) = setup();
    let m = issue(&home);
    let bot = home.json(&["principal", "list", "--json"]);
    let bot_id = bot
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bot")
        .unwrap()["id"]
        .clone();
    assert_eq!(m["subject"], bot_id);
    assert_eq!(m["policy_id"], policy.as_str());
    assert!(m["exp"].as_i64().unwrap() > m["iat"].as_i64().unwrap());
    let token = m["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);

    let out = enforce(&home, token, "chat.completions", &["--principal", "bot"]);
    assert_eq!(out.code, 0, "{out:?}");
    let v = out.json();
    assert_eq!(
        (v["decision"].as_str(), v["code"].as_str()),
        (Some("allow"), Some("allow"))
    );
    assert_eq!(v["mandate_id"], m["id"]);
    let reasons = v["reasons"].to_string();
    assert!(reasons.contains("signature verified (kid k-"), "{reasons}");
    assert!(reasons.contains("subject matches principal"), "{reasons}");
    assert!(reasons.contains("via entry chat.completions"), "{reasons}");

    // The text form: allow and the reasons.
    let text = home.ok(&[
        "authority",
        "enforce",
        "--mandate",
        token,
        "--resource",
        "chat.completions",
        "--action",
        "create",
    ]);
    assert!(text.starts_with("allow\n"), "{text}");
    assert!(text.contains("  - not revoked"), "{text}");
    // The human issue output prints the token once, with the expiry.
    let out = home.run(&mandate_args("boss", "chat.completions", "15m")[..12]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("expires:") && out.stdout.contains("token:\neyJ"),
        "{out:?}"
    );
}

#[test]
fn issuance_beyond_the_policy_is_refused_with_the_reason() {
    let (home, policy) = setup();
    // Scope beyond the policy.
    let out = home.fails(1, &mandate_args("boss", "embeddings", "15m"));
    assert!(
        out.stderr.contains("not within any active policy"),
        "{out:?}"
    );
    assert!(out.stderr.contains("`embeddings`"), "{out:?}");
    // Validity beyond the maximum.
    let out = home.fails(1, &mandate_args("boss", "chat.completions", "2h"));
    assert!(out.stderr.contains("maximum of 3600s"), "{out:?}");
    // An issuer without a policy.
    let out = home.fails(1, &mandate_args("bot", "chat.completions", "15m"));
    assert!(out.stderr.contains("no active policy"), "{out:?}");
    // An unknown subject.
    let mut args = mandate_args("boss", "chat.completions", "15m");
    args[5] = "ghost";
    let out = home.fails(1, &args);
    assert!(out.stderr.contains("ghost"), "{out:?}");
    // A disabled policy authorises nothing.
    home.ok(&["policy", "disable", &policy, "--change-reason", "incident"]);
    let out = home.fails(1, &mandate_args("boss", "chat.completions", "15m"));
    assert!(out.stderr.contains("no active policy"), "{out:?}");
}

#[test]
fn enforce_denies_with_each_code() {
    let (home, _) = setup();
    let m = issue(&home);
    let token = m["token"].as_str().unwrap();

    let why = denied(&enforce(&home, token, "embeddings", &[]), "scope_exceeded");
    assert!(why.contains("no resource entry matches"), "{why}");
    let why = denied(
        &enforce(&home, token, "chat.completions", &["--principal", "boss"]),
        "mandate_wrong_principal",
    );
    assert!(why.contains("presented by"), "{why}");
    let far = ["--at", "2200-01-01T00:00:00Z"];
    denied(
        &enforce(&home, token, "chat.completions", &far),
        "mandate_expired",
    );
    let past = ["--at", "2001-01-01T00:00:00Z"];
    denied(
        &enforce(&home, token, "chat.completions", &past),
        "mandate_not_yet_valid",
    );
    let why = denied(
        &enforce(&home, "not.a-token", "chat.completions", &[]),
        "mandate_invalid",
    );
    assert!(why.contains("malformed"), "{why}");

    // Signed by another workspace's keyring: its kid is unknown here.
    let (elsewhere, _) = setup();
    let foreign = issue(&elsewhere);
    let why = denied(
        &enforce(
            &home,
            foreign["token"].as_str().unwrap(),
            "chat.completions",
            &[],
        ),
        "mandate_invalid",
    );
    assert!(why.contains("unknown signing key"), "{why}");
}

#[test]
fn rotation_keeps_earlier_mandates_verifying() {
    let (home, _) = setup();
    let before = issue(&home);
    let keys = home.json(&["authority", "keys", "list", "--json"]);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let old_kid = keys[0]["kid"].as_str().unwrap().to_string();

    let rotated = home.json(&["authority", "keys", "rotate", "--json"]);
    assert_eq!(rotated["retired"], old_kid.as_str());
    assert_ne!(rotated["active"], old_kid.as_str());
    assert!(rotated["pruned"].as_array().unwrap().is_empty());

    let token = before["token"].as_str().unwrap();
    let out = enforce(&home, token, "chat.completions", &[]);
    assert_eq!(out.code, 0, "old mandate still verifies: {out:?}");
    assert!(out.stdout.contains(&old_kid), "{out:?}");
    let after = issue(&home);
    let out = enforce(
        &home,
        after["token"].as_str().unwrap(),
        "chat.completions",
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(rotated["active"].as_str().unwrap()),
        "{out:?}"
    );

    // The list: two keys, one active, only public material.
    let out = home.run(&["authority", "keys", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let keys = out.json();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k["active"] == true).count(), 1);
    assert!(!out.stdout.to_lowercase().contains("private"), "{out:?}");
    assert!(!out.stdout.contains("pkcs8"), "{out:?}");
    let ring =
        std::fs::read_to_string(home.workspace_dir("demo").join("keys/mandates.json")).unwrap();
    let ring: serde_json::Value = serde_json::from_str(&ring).unwrap();
    for key in ring["keys"].as_array().unwrap() {
        if let Some(private) = key["private_pkcs8"].as_str() {
            assert!(!out.stdout.contains(private));
            assert!(!out.stdout.contains(&private[..24]));
        }
    }
    let table = home.ok(&["authority", "keys", "list"]);
    assert!(
        table.contains("active") && table.contains("retired"),
        "{table}"
    );
}

#[test]
fn issuance_and_revocation_are_recorded_in_the_ledger() {
    let (home, _policy) = setup();
    let issued = issue(&home);
    let id = issued["id"].as_str().unwrap().to_string();
    // A dry run records nothing; the real revocation does.
    home.ok(&[
        "authority",
        "revoke",
        "--subject",
        "bot",
        "--dry-run",
        "--reason",
        "drill",
    ]);
    home.ok(&[
        "authority",
        "revoke",
        "--mandate-id",
        &id,
        "--reason",
        "incident 7",
    ]);
    let events = home.json(&["ledger", "query", "--kind", "authority", "--json"]);
    let codes: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        vec!["mandate_issued", "mandate_revoked"],
        "{events:#}"
    );
    let bot = home.json(&["principal", "list", "--json"]);
    let bot_id = bot
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bot")
        .unwrap()["id"]
        .clone();
    for e in events.as_array().unwrap() {
        assert_eq!(e["kind"], "authority");
        assert_eq!(e["mode"], "cli");
        assert_eq!(e["principal_id"], bot_id);
        assert!(e["detail"].as_str().unwrap().contains(&id), "{e}");
    }
    assert!(events[1]["detail"].as_str().unwrap().contains("incident 7"));
    assert_eq!(
        home.json(&["ledger", "query", "--kind", "call", "--json"]),
        serde_json::json!([])
    );
}

#[test]
fn enforce_without_a_token_judges_the_principals_recorded_mandates() {
    let (home, policy) = setup();
    let judge = |resource: &str| {
        home.run(&[
            "authority",
            "enforce",
            "--principal",
            "bot",
            "--resource",
            resource,
            "--action",
            "create",
            "--json",
        ])
    };
    let why = denied(&judge("chat.completions"), "mandate_missing");
    assert!(why.contains("holds none"), "{why}");
    let m = issue(&home);
    let out = judge("chat.completions");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["mandate_id"], m["id"]);
    let why = denied(&judge("embeddings"), "scope_exceeded");
    assert!(why.contains("closest: mandate"), "{why}");
    // Neither a token nor a principal: nothing to judge.
    let out = home.run(&[
        "authority",
        "enforce",
        "--resource",
        "chat.completions",
        "--action",
        "create",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    // Disabling the policy stops the mandate issued under it.
    home.ok(&["policy", "disable", &policy, "--change-reason", "incident"]);
    let why = denied(&judge("chat.completions"), "policy_disabled");
    assert!(why.contains(&policy), "{why}");
}

#[test]
fn the_ledger_follows_one_mandate() {
    let (home, _) = setup();
    let first = issue(&home);
    let second = issue(&home);
    let id = first["id"].as_str().unwrap();
    home.ok(&[
        "authority",
        "revoke",
        "--mandate-id",
        id,
        "--reason",
        "done",
    ]);
    let events = home.json(&["ledger", "query", "--mandate-id", id, "--json"]);
    let codes: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["mandate_issued", "mandate_revoked"]);
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["mandate_id"] == first["id"]));
    let other = home.json(&[
        "ledger",
        "query",
        "--mandate-id",
        second["id"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(other.as_array().unwrap().len(), 1);
}
