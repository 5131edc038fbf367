//! Delegation, revocation and the mandate views: `caracal authority
//! delegate`, `revoke`, `graph` and `list`, checked against the gateway's
//! own decision (`authority enforce`).

use crate::support::{Home, Out};

fn principal(home: &Home, kind: &str, name: &str) {
    let email = format!("{name}@example.com");
    let args = [
        "principal",
        "register",
        "--type",
        kind,
        "--name",
        name,
        "--email",
        &email,
    ];
    home.ok(&args);
}

fn policy(home: &Home, owner: &str, delegation: &[&str]) {
    let mut args = vec![
        "policy",
        "create",
        "--principal-id",
        owner,
        "--resource",
        "chat.*",
        "--action",
        "create",
        "--max-validity",
        "1h",
        "--change-reason",
        "test",
    ];
    args.extend_from_slice(delegation);
    home.ok(&args);
}

/// A workspace with the openai provider; users alice (policy over chat.*
/// with delegation up to depth 2) and carol (policy without delegation),
/// user bob, agents bot, helper and worker, service svc.
fn setup() -> Home {
    let home = Home::with_openai_provider();
    for (kind, name) in [
        ("user", "alice"),
        ("user", "carol"),
        ("user", "bob"),
        ("agent", "bot"),
        ("agent", "helper"),
        ("agent", "worker"),
        ("service", "svc"),
    ] {
        principal(&home, kind, name);
    }
    policy(
        &home,
        "alice",
        &["--allow-delegation", "--max-delegation-depth", "2"],
    );
    policy(&home, "carol", &[]);
    home
}

/// A root mandate from `issuer` to `subject` over chat.completions create for 30m; its id and token.
fn mandate(home: &Home, issuer: &str, subject: &str) -> (String, String) {
    let v = home.json(&[
        "authority",
        "mandate",
        "--issuer",
        issuer,
        "--subject",
        subject,
        "--resource",
        "chat.completions",
        "--action",
        "create",
        "--valid-for",
        "30m",
        "--json",
    ]);
    (
        v["id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

fn delegate_args<'a>(
    from: &'a str,
    to: &'a str,
    resource: &'a str,
    valid: &'a str,
) -> Vec<&'a str> {
    vec![
        "authority",
        "delegate",
        "--from",
        from,
        "--to",
        to,
        "--resource",
        resource,
        "--action",
        "create",
        "--valid-for",
        valid,
        "--json",
    ]
}

/// Delegates over chat.completions for `valid` (shorter at each level, so
/// a child never outlives its parent by landing on a later second); the
/// child's id and token.
fn delegate(home: &Home, from: &str, to: &str, valid: &str) -> (String, String) {
    let v = home.json(&delegate_args(from, to, "chat.completions", valid));
    (
        v["id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

/// A refused delegation: exit 1 and its message on stderr.
fn refused(home: &Home, args: &[&str], message: &str) {
    let out = home.fails(1, args);
    assert!(out.stderr.contains("delegation refused"), "{out:?}");
    assert!(out.stderr.contains(message), "{message}: {out:?}");
}

fn enforce(home: &Home, token: &str, principal: &str) -> Out {
    home.run(&[
        "authority",
        "enforce",
        "--mandate",
        token,
        "--resource",
        "chat.completions",
        "--action",
        "create",
        "--principal",
        principal,
        "--json",
    ])
}

fn code(out: &Out) -> String {
    out.json()["code"].as_str().unwrap().to_string()
}

/// Each mandate's state by id, from `authority list --json`.
fn states(home: &Home) -> std::collections::HashMap<String, String> {
    let list = home.json(&["authority", "list", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_delegated_mandate_works_for_its_subject() {
    let home = setup();
    let (root, _) = mandate(&home, "alice", "bot");
    let out = home.run(&delegate_args(&root, "helper", "chat.completions", "10m"));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("credential"), "{out:?}");
    let child = out.json();
    assert_eq!(child["parent"], root.as_str());
    assert_eq!(child["depth"], 1);
    assert_eq!(child["chain"], serde_json::json!([root]));
    let token = child["token"].as_str().unwrap();

    let out = enforce(&home, token, "helper");
    assert_eq!((out.code, code(&out)), (0, "allow".to_string()), "{out:?}");
    // Not for its delegator.
    assert_eq!(
        code(&enforce(&home, token, "bot")),
        "mandate_wrong_principal"
    );

    // The text form names the parent.
    let mut args = delegate_args(&root, "worker", "chat.completions", "5m");
    args.pop();
    let text = home.ok(&args);
    assert!(
        text.contains(&format!("parent:   {root} (depth 1)")),
        "{text}"
    );
}

#[test]
fn each_delegation_rule_refuses_with_its_own_message() {
    let home = setup();
    let (root, _) = mandate(&home, "alice", "bot");
    // `chat.*` looks narrow but covers more than the parent's chat.completions.
    refused(
        &home,
        &delegate_args(&root, "helper", "chat.*", "10m"),
        "exceeds the parent's",
    );
    refused(
        &home,
        &delegate_args(&root, "helper", "chat.completions", "45m"),
        "after its parent expires",
    );
    // agent → user.
    refused(
        &home,
        &delegate_args(&root, "bob", "chat.completions", "10m"),
        "cannot delegate to a user",
    );
    // service → agent.
    let (held_by_service, _) = mandate(&home, "alice", "svc");
    refused(
        &home,
        &delegate_args(&held_by_service, "bot", "chat.completions", "10m"),
        "a service cannot delegate",
    );
    // Depth: the policy allows 2 below the root.
    let (one, _) = delegate(&home, &root, "helper", "10m");
    let (two, _) = delegate(&home, &one, "worker", "5m");
    refused(
        &home,
        &delegate_args(&two, "bot", "chat.completions", "5m"),
        "exceeds the policy's maximum of 2",
    );
    // A policy without delegation.
    let (carols, _) = mandate(&home, "carol", "bot");
    refused(
        &home,
        &delegate_args(&carols, "helper", "chat.completions", "10m"),
        "does not allow delegation",
    );
    // An unknown parent.
    let out = home.fails(
        1,
        &delegate_args("nope", "helper", "chat.completions", "10m"),
    );
    assert!(out.stderr.contains("no mandate with id"), "{out:?}");
}

#[test]
fn revoking_a_parent_revokes_its_descendants_with_or_without_cascade() {
    let home = setup();
    let (root, _) = mandate(&home, "alice", "bot");
    let (child, child_token) = delegate(&home, &root, "helper", "10m");
    let (grandchild, grandchild_token) = delegate(&home, &child, "worker", "5m");

    // Revoking the child alone: the grandchild is refused too.
    let v = home.json(&[
        "authority",
        "revoke",
        "--mandate-id",
        &child,
        "--reason",
        "leaked",
        "--json",
    ]);
    assert_eq!(v["revoked"].as_array().unwrap().len(), 1);
    let out = enforce(&home, &child_token, "helper");
    assert_eq!((out.code, code(&out)), (1, "mandate_revoked".to_string()));
    let out = enforce(&home, &grandchild_token, "worker");
    assert_eq!(code(&out), "mandate_revoked");
    let s = states(&home);
    assert_eq!(s[&root], "active");
    assert_eq!(s[&child], "revoked");
    assert_eq!(s[&grandchild], "revoked-by-ancestor");
    // A revoked mandate cannot be delegated.
    refused(
        &home,
        &delegate_args(&grandchild, "bot", "chat.completions", "1m"),
        &format!("mandate {child} is revoked"),
    );

    // Cascade from the root marks every descendant; the child keeps its first revocation.
    let v = home.json(&[
        "authority",
        "revoke",
        "--mandate-id",
        &root,
        "--cascade",
        "--reason",
        "incident",
        "--json",
    ]);
    let ids = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("revoked"), vec![root.clone(), grandchild.clone()]);
    assert_eq!(ids("already_revoked"), vec![child.clone()]);
    assert!(states(&home).values().all(|s| s == "revoked"));

    // Again: not an error, and it says so.
    let text = home.ok(&[
        "authority",
        "revoke",
        "--mandate-id",
        &root,
        "--reason",
        "again",
    ]);
    assert!(text.contains("revoked 0 mandates"), "{text}");
    assert!(
        text.contains(&format!("mandate {root} was already revoked")) && text.contains("incident"),
        "{text}"
    );
    // A reason is required; --cascade needs --mandate-id.
    home.fails(2, &["authority", "revoke", "--mandate-id", &root]);
    home.fails(
        2,
        &[
            "authority",
            "revoke",
            "--subject",
            "bot",
            "--cascade",
            "--reason",
            "x",
        ],
    );
    let out = home.fails(
        1,
        &[
            "authority",
            "revoke",
            "--mandate-id",
            &root,
            "--reason",
            " ",
        ],
    );
    assert!(out.stderr.contains("say why"), "{out:?}");
}

#[test]
fn bulk_revocation_dry_runs_then_revokes() {
    let home = setup();
    let (root, root_token) = mandate(&home, "alice", "bot");
    let (child, child_token) = delegate(&home, &root, "helper", "10m");
    let (other, other_token) = mandate(&home, "alice", "worker");

    let dry = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["authority", "revoke"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--dry-run", "--reason", "incident", "--json"]);
        let v = home.json(&all);
        assert_eq!(v["dry_run"], true);
        v["revoked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(dry(&["--subject", "helper"]), vec![child.clone()]);
    assert_eq!(
        dry(&["--issuer", "alice"]),
        vec![root.clone(), other.clone()]
    );
    assert_eq!(dry(&["--issuer", "bot"]), vec![child.clone()]);
    assert_eq!(dry(&["--resource", "chat.*"]).len(), 3);
    assert!(dry(&["--resource", "embeddings"]).is_empty());
    assert_eq!(dry(&["--issued-before", "2200-01-01T00:00:00Z"]).len(), 3);
    assert!(dry(&["--older-than", "1h"]).is_empty());
    let text = home.ok(&[
        "authority",
        "revoke",
        "--issuer",
        "alice",
        "--dry-run",
        "--reason",
        "incident",
    ]);
    assert!(
        text.contains("would revoke 2 mandates (dry run: nothing changed)"),
        "{text}"
    );
    assert!(text.contains(&root) && text.contains(&other), "{text}");

    // Nothing changed.
    assert!(states(&home).values().all(|s| s == "active"));
    assert_eq!(code(&enforce(&home, &root_token, "bot")), "allow");

    let v = home.json(&[
        "authority",
        "revoke",
        "--issuer",
        "alice",
        "--reason",
        "incident",
        "--json",
    ]);
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["revoked"].as_array().unwrap().len(), 2);
    for (token, who) in [
        (&root_token, "bot"),
        (&other_token, "worker"),
        (&child_token, "helper"),
    ] {
        assert_eq!(code(&enforce(&home, token, who)), "mandate_revoked");
    }
    let s = states(&home);
    assert_eq!(s[&child], "revoked-by-ancestor");
    // A bulk revocation needs a reason.
    home.fails(2, &["authority", "revoke", "--subject", "bot"]);
}

#[test]
fn the_graph_shows_the_tree_from_its_root_with_states() {
    let home = setup();
    let (root, _) = mandate(&home, "alice", "bot");
    let (child, _) = delegate(&home, &root, "helper", "10m");
    let (grandchild, _) = delegate(&home, &child, "worker", "5m");
    let (sibling, _) = delegate(&home, &root, "worker", "10m");
    home.ok(&[
        "authority",
        "revoke",
        "--mandate-id",
        &child,
        "--reason",
        "leaked",
    ]);

    let v = home.json(&["authority", "graph", "--mandate-id", &grandchild, "--json"]);
    assert_eq!(v["id"], root.as_str());
    assert_eq!(v["state"], "active");
    assert_eq!(v["issuer_name"], "alice");
    assert_eq!(v["subject_name"], "bot");
    assert_eq!(v["depth"], 0);
    let kids = v["children"].as_array().unwrap();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0]["id"], child.as_str());
    assert_eq!(kids[0]["state"], "revoked");
    assert_eq!(kids[1]["id"], sibling.as_str());
    assert_eq!(kids[1]["state"], "active");
    let gc = &kids[0]["children"][0];
    assert_eq!(gc["id"], grandchild.as_str());
    assert_eq!(gc["state"], "revoked-by-ancestor");
    assert_eq!(gc["subject_name"], "worker");
    assert_eq!(gc["depth"], 2);
    assert!(gc["children"].as_array().unwrap().is_empty());

    let text = home.ok(&["authority", "graph", "--mandate-id", &child]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with(&format!("{root} [active] alice -> bot")),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!("  {child} [revoked] bot -> helper")),
        "{text}"
    );
    assert!(
        lines[1].ends_with("  <"),
        "the asked-for mandate is marked: {text}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "    {grandchild} [revoked-by-ancestor] helper -> worker"
        )),
        "{text}"
    );
    assert!(
        lines[3].starts_with(&format!("  {sibling} [active]")),
        "{text}"
    );

    // The list: filters and a table.
    let mine = home.json(&["authority", "list", "--subject", "worker", "--json"]);
    assert_eq!(mine.as_array().unwrap().len(), 2);
    let by_bot = home.json(&["authority", "list", "--issuer", "bot", "--json"]);
    assert_eq!(by_bot.as_array().unwrap().len(), 2);
    let table = home.ok(&["authority", "list"]);
    assert!(
        table.contains("STATE") && table.contains("revoked-by-ancestor"),
        "{table}"
    );
    let out = home.fails(1, &["authority", "graph", "--mandate-id", "nope"]);
    assert!(out.stderr.contains("no mandate with id"), "{out:?}");
}
