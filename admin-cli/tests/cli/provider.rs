//! `caracal provider`: templates, validation, masking, and `provider test`
//! against the mock provider.

use crate::support::Home;

pub const SECRET: &str = "sk-proj-0123456789SECRETabcd";

fn find<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
}

#[test]
fn templates_fill_in_hosts_credentials_and_catalogs() {
    let home = Home::with_workspace();
    let out = home.ok(&[
        "provider",
        "add",
        "openai",
        "--template",
        "openai",
        "--base-url",
        "https://api.openai.com",
        "--credential",
        SECRET,
    ]);
    assert!(
        out.contains("chat.completions") && out.contains("create"),
        "catalog shown: {out}"
    );
    assert!(!out.contains(SECRET), "{out}");
    let mut cmd = home.command(&[
        "provider",
        "add",
        "claude",
        "--template",
        "anthropic",
        "--base-url",
        "https://api.anthropic.com",
    ]);
    cmd.env(
        "CARACAL_PROVIDER_CREDENTIAL",
        "sk-ant-api03-ANTHROPICSECRETwxyz",
    );
    assert_eq!(Home::run_cmd(cmd).code, 0);
    let out = home.fails(
        1,
        &[
            "provider",
            "add",
            "gen",
            "--template",
            "generic",
            "--base-url",
            "https://api.example.com",
            "--credential",
            "k",
        ],
    );
    assert!(out.stderr.contains("--credential-header"), "{out:?}");
    home.ok(&[
        "provider",
        "add",
        "gen",
        "--template",
        "generic",
        "--base-url",
        "https://api.example.com/base",
        "--credential",
        "GENERICSECRET-0123456789",
        "--credential-header",
        "X-Api-Token",
        "--default-header",
        "x-org: acme",
        "--operation",
        "POST /v1/rerank=rerank:create",
        "--passthrough",
    ]);

    let out = home.run(&["provider", "list", "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    for secret in [SECRET, "ANTHROPICSECRET", "GENERICSECRET"] {
        assert!(
            !out.stdout.contains(secret),
            "secret {secret} shown: {}",
            out.stdout
        );
    }
    let list = out.json();
    let openai = find(&list, "openai");
    assert_eq!(openai["hosts"], serde_json::json!(["api.openai.com"]));
    assert_eq!(openai["credentials"][0]["name"], "authorization");
    assert_eq!(openai["credentials"][0]["value"], "Bearer sk-…abcd");
    let claude = find(&list, "claude");
    assert_eq!(claude["hosts"], serde_json::json!(["api.anthropic.com"]));
    assert_eq!(claude["credentials"][0]["name"], "x-api-key");
    assert_eq!(claude["default_headers"][0]["name"], "anthropic-version");
    assert_eq!(claude["default_headers"][0]["value"], "2023-06-01");
    let gen = find(&list, "gen");
    assert_eq!(gen["hosts"], serde_json::json!(["api.example.com"]));
    assert_eq!(gen["credentials"][0]["name"], "x-api-token");
    assert_eq!(gen["passthrough"], true);
    let table = home.ok(&["provider", "list"]);
    assert!(
        table.contains("claude") && !table.contains("ANTHROPICSECRET"),
        "{table}"
    );

    let show = home.json(&["provider", "show", "gen", "--json"]);
    assert_eq!(
        show["catalog"],
        serde_json::json!([{"method": "POST", "path": "/v1/rerank", "resource": "rerank", "action": "create"}])
    );
    assert_eq!(show["operations"]["rerank"], serde_json::json!(["create"]));
    let show = home.json(&["provider", "show", "claude", "--json"]);
    assert!(show["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"] == "/v1/messages" && e["action"] == "create"));
    assert!(home
        .ok(&["provider", "show", "openai"])
        .contains("/v1/embeddings"));
}

#[test]
fn bad_definitions_are_refused_with_the_reason() {
    let home = Home::with_workspace();
    let add = |extra: &[&str]| {
        let mut args = vec!["provider", "add", "p", "--template", "openai"];
        args.extend_from_slice(extra);
        home.run(&args)
    };
    let out = add(&["--base-url", "not a url"]);
    assert!(out.code == 1 && out.stderr.contains("base URL"), "{out:?}");
    let out = add(&["--base-url", "http://127.0.0.1:9300"]);
    assert!(
        out.code == 1 && out.stderr.contains("--allow-private-network"),
        "{out:?}"
    );
    for (op, needle) in [
        ("POST/v1/x=y", "no space"),
        ("POST /v1/x", "'='"),
        ("POST /v1/x=y:fly", "read, create, update or delete"),
        ("POST v1/x=y", "path must start with '/'"),
        ("POST /v1/x=Bad Resource", "resource"),
    ] {
        let out = add(&["--base-url", "https://x.example", "--operation", op]);
        assert!(
            out.code == 1 && out.stderr.contains(needle),
            "{op}: {out:?}"
        );
    }
    assert!(add(&[
        "--base-url",
        "https://x.example",
        "--default-header",
        "nocolon"
    ])
    .stderr
    .contains("Name: value"));
    assert!(home
        .fails(
            1,
            &[
                "provider",
                "add",
                "Bad_Name",
                "--template",
                "openai",
                "--base-url",
                "https://x"
            ]
        )
        .stderr
        .contains("provider name"));
    assert_eq!(
        home.json(&["provider", "list", "--json"]),
        serde_json::json!([]),
        "nothing stored"
    );

    assert_eq!(
        add(&[
            "--base-url",
            "http://127.0.0.1:9300",
            "--allow-private-network"
        ])
        .code,
        0
    );
    let out = add(&["--base-url", "https://x.example"]);
    assert!(out.code == 1 && out.stderr.contains("--replace"), "{out:?}");
    assert_eq!(
        add(&["--base-url", "https://x.example", "--replace"]).code,
        0
    );
    assert_eq!(
        home.json(&["provider", "show", "p", "--json"])["base_url"],
        "https://x.example"
    );
    home.ok(&["provider", "remove", "p"]);
    assert!(home
        .fails(1, &["provider", "show", "p"])
        .stderr
        .contains("no provider named"));
    home.fails(1, &["provider", "remove", "p"]);
}

#[test]
fn pinned_and_allowed_headers_are_set_shown_and_changed() {
    let home = Home::with_workspace();
    home.ok(&[
        "provider",
        "add",
        "openai",
        "--template",
        "openai",
        "--base-url",
        "https://api.openai.com",
        "--credential",
        SECRET,
        "--header",
        "OpenAI-Project: proj_x",
        "--allow-header",
        "x-team-*",
    ]);
    let show = home.json(&["provider", "show", "openai", "--json"]);
    assert_eq!(
        show["pinned_headers"][0]["name"], "openai-project",
        "{show}"
    );
    assert_eq!(show["pinned_headers"][0]["value"], "proj_x");
    assert_eq!(show["allow_headers"][0], "x-team-*");
    let out = home.ok(&[
        "provider",
        "update",
        "openai",
        "--header",
        "openai-project: proj_y",
        "--header",
        "OpenAI-Organization: org_1",
        "--disallow-header",
        "x-team-*",
        "--allow-header",
        "anthropic-beta",
    ]);
    assert!(out.contains("openai-project: proj_y"), "{out}");
    assert!(out.contains("openai-organization: org_1"), "{out}");
    assert!(out.contains("and anthropic-beta"), "{out}");
    let show = home.json(&["provider", "show", "openai", "--json"]);
    assert_eq!(
        show["pinned_headers"].as_array().unwrap().len(),
        2,
        "{show}"
    );
    assert_eq!(show["allow_headers"], serde_json::json!(["anthropic-beta"]));
    home.ok(&[
        "provider",
        "update",
        "openai",
        "--unpin",
        "OPENAI-ORGANIZATION",
    ]);
    let show = home.json(&["provider", "show", "openai", "--json"]);
    assert_eq!(show["pinned_headers"].as_array().unwrap().len(), 1);
    for (args, want) in [
        (vec!["--unpin", "x-nope"], "pins no such header"),
        (
            vec!["--disallow-header", "x-nope"],
            "does not let it through",
        ),
        (vec!["--allow-header", "cookie"], "always drops"),
        (
            vec!["--header", "authorization: Bearer other"],
            "cannot be pinned",
        ),
        (vec!["--header", "no colon"], "header"),
        (vec![], "nothing to change"),
    ] {
        let mut all = vec!["provider", "update", "openai"];
        all.extend(args.iter().copied());
        let out = home.fails(1, &all);
        assert!(out.stderr.contains(want), "{all:?}: {out:?}");
    }
    let out = home.fails(1, &["provider", "update", "nobody", "--allow-header", "x"]);
    assert!(out.stderr.contains("nobody"), "{out:?}");
}
