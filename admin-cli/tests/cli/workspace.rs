//! Workspaces, resolution errors and usage errors.

use crate::support::Home;

#[test]
fn commands_without_a_workspace_say_how_to_create_one() {
    let home = Home::empty();
    assert!(home.ok(&["workspace", "list"]).contains("no workspaces"));
    assert_eq!(
        home.json(&["workspace", "list", "--json"]),
        serde_json::json!([])
    );
    for args in [
        &["workspace", "current"][..],
        &["provider", "list"],
        &["status"],
        &["ledger", "query"],
    ] {
        let out = home.fails(1, args);
        assert!(
            out.stderr.contains("caracal workspace create"),
            "{args:?}: {out:?}"
        );
        assert!(!out.stderr.contains("panicked"), "{out:?}");
    }
}

#[test]
fn create_use_current_list() {
    let home = Home::empty();
    let out = home.ok(&["workspace", "create", "demo"]);
    assert!(out.contains("demo is now the active workspace"), "{out}");
    let out = home.ok(&["workspace", "create", "two"]);
    assert!(
        !out.contains("now the active"),
        "the second workspace must not become active: {out}"
    );
    assert!(home.workspace_dir("two").join("config.toml").is_file());

    let list = home.json(&["workspace", "list", "--json"]);
    let names: Vec<(&str, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["name"].as_str().unwrap(), w["active"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, vec![("demo", true), ("two", false)]);
    let table = home.ok(&["workspace", "list"]);
    assert!(
        table.lines().any(|l| l.contains('*') && l.contains("demo")),
        "{table}"
    );

    let cur = home.json(&["workspace", "current", "--json"]);
    assert_eq!(cur["name"], "demo");
    assert_eq!(
        cur["path"],
        home.workspace_dir("demo").display().to_string()
    );

    home.ok(&["workspace", "use", "two"]);
    assert_eq!(
        home.json(&["workspace", "current", "--json"])["name"],
        "two"
    );
    // --workspace and CARACAL_WORKSPACE override the active one.
    let cur = home.json(&["--workspace", "demo", "workspace", "current", "--json"]);
    assert_eq!(
        (cur["name"].as_str(), cur["active"].as_bool()),
        (Some("demo"), Some(false))
    );
    let mut cmd = home.command(&["workspace", "current", "--json"]);
    cmd.env("CARACAL_WORKSPACE", "demo");
    assert_eq!(Home::run_cmd(cmd).json()["name"], "demo");
}

#[test]
fn workspace_errors() {
    let home = Home::with_workspace();
    assert!(home
        .fails(1, &["workspace", "create", "demo"])
        .stderr
        .contains("already exists"));
    assert!(home
        .fails(1, &["workspace", "create", "a/b"])
        .stderr
        .contains("invalid workspace name"));
    let out = home.fails(1, &["workspace", "use", "nope"]);
    assert!(
        out.stderr.contains("does not exist") && out.stderr.contains("demo"),
        "{out:?}"
    );
    let out = home.fails(1, &["--workspace", "nope", "provider", "list"]);
    assert!(
        out.stderr.contains("caracal workspace create nope"),
        "{out:?}"
    );
}

#[test]
fn no_workspace_selected_says_which_exist() {
    let home = Home::with_workspace();
    std::fs::remove_file(home.root().join("active")).unwrap();
    let out = home.fails(1, &["workspace", "current"]);
    assert!(out.stderr.contains("no workspace is selected"), "{out:?}");
    assert!(
        out.stderr.contains("caracal workspace use") && out.stderr.contains("demo"),
        "{out:?}"
    );
    // Creating another while none is active makes that one active.
    assert!(home
        .ok(&["workspace", "create", "next"])
        .contains("now the active"));
}

#[test]
fn usage_errors_exit_2_and_help_explains() {
    let home = Home::with_workspace();
    home.fails(2, &["frobnicate"]);
    home.fails(2, &["provider", "add", "x"]);
    home.fails(
        2,
        &[
            "provider",
            "add",
            "x",
            "--template",
            "nope",
            "--base-url",
            "https://x",
        ],
    );
    home.fails(2, &["up", "--listen", "not-an-address"]);
    home.fails(2, &["ledger", "query", "--limit", "0"]);
    home.fails(2, &["allowlist", "delete"]);
    let help = home.ok(&["provider", "add", "--help"]);
    assert!(
        help.contains("CARACAL_PROVIDER_CREDENTIAL") && help.contains("--allow-private-network"),
        "{help}"
    );
    let help = home.ok(&["allowlist", "test", "--help"]);
    assert!(help.contains("query"), "{help}");
}
