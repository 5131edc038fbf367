//! `caracal pricebook`: built-in defaults, set, import (all or nothing),
//! remove, and clear refusals.

use crate::support::Home;

fn price<'a>(list: &'a serde_json::Value, provider: &str, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == provider && p["name"] == name)
        .unwrap_or_else(|| panic!("no price for {provider} {name}: {list:#}"))
}

fn has_price(list: &serde_json::Value, provider: &str, name: &str) -> bool {
    list.as_array()
        .unwrap()
        .iter()
        .any(|p| p["provider"] == provider && p["name"] == name)
}

#[test]
fn pricebook_list_shows_the_template_defaults() {
    let home = Home::with_openai_provider();
    let table = home.ok(&["pricebook", "list"]);
    for want in [
        "gpt-4o-mini",
        "0.075",
        "0.60",
        "default",
        "SOURCE",
        "INPUT/MTOK",
    ] {
        assert!(table.contains(want), "{want:?} missing:\n{table}");
    }
    let list = home.json(&["pricebook", "list", "--json"]);
    let mini = price(&list, "openai", "gpt-4o-mini");
    assert_eq!(mini["kind"], "model");
    assert_eq!(mini["currency"], "USD");
    assert_eq!(mini["input_per_mtok"], "0.15");
    assert_eq!(mini["cached_input_per_mtok"], "0.075");
    assert_eq!(mini["cache_write_per_mtok"], "0.15");
    assert_eq!(mini["output_per_mtok"], "0.60");
    assert_eq!(mini["per_request"], serde_json::Value::Null);
    assert_eq!(mini["source"], "default");
    assert_eq!(mini["updated_at"], serde_json::Value::Null);
    // No `*` default: unlisted models stay unpriced.
    assert!(!has_price(&list, "openai", "*"));

    // Anthropic defaults appear under the provider's own name.
    home.ok(&[
        "provider",
        "add",
        "claude",
        "--template",
        "anthropic",
        "--base-url",
        "https://api.anthropic.com",
        "--credential",
        "sk-ant-test",
    ]);
    let list = home.json(&["pricebook", "list", "--provider", "claude", "--json"]);
    let sonnet = price(&list, "claude", "claude-sonnet-4");
    assert_eq!(sonnet["cache_write_per_mtok"], "3.75");
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["provider"] == "claude"));
    let out = home.fails(1, &["pricebook", "list", "--provider", "nope"]);
    assert!(out.stderr.contains("no provider named \"nope\""), "{out:?}");
}

#[test]
fn pricebook_set_overrides_defaults_and_remove_restores_them() {
    let home = Home::with_openai_provider();
    let out = home.ok(&[
        "pricebook",
        "set",
        "--provider",
        "openai",
        "--model",
        "gpt-4o",
        "--input",
        "2.00",
        "--output",
        "8",
        "--cached-input",
        "0.5",
    ]);
    assert!(
        out.contains(
            "openai model gpt-4o: input 2.00, cached input 0.50, cache write 2.00, output 8.00 USD"
        ),
        "{out}"
    );
    let set = home.json(&[
        "pricebook",
        "set",
        "--provider",
        "openai",
        "--resource",
        "images.generations",
        "--per-request",
        "0.04",
        "--currency",
        "eur",
        "--json",
    ]);
    assert_eq!(set["per_request"], "0.04");
    assert_eq!(set["currency"], "EUR");
    assert_eq!(set["input_per_mtok"], serde_json::Value::Null);
    assert_eq!(set["source"], "set");
    home.ok(&[
        "pricebook",
        "set",
        "--provider",
        "openai",
        "--model",
        "*",
        "--input",
        "5",
        "--output",
        "20",
    ]);

    let list = home.json(&["pricebook", "list", "--json"]);
    let gpt4o = price(&list, "openai", "gpt-4o");
    assert_eq!(gpt4o["source"], "set");
    assert_eq!(gpt4o["input_per_mtok"], "2.00");
    assert!(gpt4o["updated_at"].as_str().is_some());
    assert_eq!(price(&list, "openai", "*")["output_per_mtok"], "20");
    assert_eq!(price(&list, "openai", "gpt-4o-mini")["source"], "default");
    let rows = list.as_array().unwrap();
    assert_eq!(
        rows.iter().filter(|p| p["name"] == "gpt-4o").count(),
        1,
        "the override replaces the default"
    );
    let table = home.ok(&["pricebook", "list"]);
    assert!(
        table.contains("images.generations") && table.contains("set"),
        "{table}"
    );

    let out = home.ok(&[
        "pricebook",
        "remove",
        "--provider",
        "openai",
        "--model",
        "gpt-4o",
    ]);
    assert!(out.contains("built-in default applies again"), "{out}");
    let list = home.json(&["pricebook", "list", "--json"]);
    assert_eq!(price(&list, "openai", "gpt-4o")["source"], "default");
    assert_eq!(price(&list, "openai", "gpt-4o")["input_per_mtok"], "2.50");
    home.ok(&[
        "pricebook",
        "remove",
        "--provider",
        "openai",
        "--resource",
        "images.generations",
    ]);
    assert!(!has_price(
        &home.json(&["pricebook", "list", "--json"]),
        "openai",
        "images.generations"
    ));
    let out = home.fails(
        1,
        &[
            "pricebook",
            "remove",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
        ],
    );
    assert!(out.stderr.contains("no price is set"), "{out:?}");
}

#[test]
fn pricebook_set_refuses_clearly() {
    let home = Home::with_openai_provider();
    let set = |extra: &[&str]| {
        let mut args = vec!["pricebook", "set"];
        args.extend_from_slice(extra);
        let out = home.run(&args);
        assert_ne!(out.code, 0, "{extra:?} accepted: {out:?}");
        out.stderr
    };
    let model = |provider: &'static str, input: &'static str| {
        vec![
            "--provider",
            provider,
            "--model",
            "gpt-4o",
            "--input",
            input,
            "--output",
            "1",
        ]
    };
    let err = set(&model("nope", "1"));
    assert!(
        err.contains("--provider: no provider named \"nope\""),
        "{err}"
    );
    for (bad, why) in [
        ("abc", "is not a decimal amount"),
        ("-1", "is negative"),
        ("1e3", "is not a decimal amount"),
        ("0.0000000001", "decimal places"),
        ("2000000000", "is larger than"),
    ] {
        let err = set(&model("openai", bad));
        assert!(
            err.contains("--input:") && err.contains(why),
            "{bad}: {err}"
        );
    }
    let err = set(&[
        "--provider",
        "openai",
        "--resource",
        "messages",
        "--per-request",
        "1",
    ]);
    assert!(
        err.contains("\"messages\" is not in the catalog of provider \"openai\"")
            && err.contains("images.generations"),
        "{err}"
    );
    let err = set(&[
        "--provider",
        "openai",
        "--model",
        "gpt 4o",
        "--input",
        "1",
        "--output",
        "1",
    ]);
    assert!(
        err.contains("--model:") && err.contains("not a model id"),
        "{err}"
    );
    let err = set(&[
        "--provider",
        "openai",
        "--model",
        "gpt-4o",
        "--input",
        "1",
        "--output",
        "1",
        "--currency",
        "dollars",
    ]);
    assert!(
        err.contains("--currency:") && err.contains("three letters"),
        "{err}"
    );
    // Flag combinations clap refuses: a model needs --input and --output;
    // per-token prices do not go with --resource.
    set(&["--provider", "openai", "--model", "gpt-4o", "--input", "1"]);
    set(&[
        "--provider",
        "openai",
        "--resource",
        "images.generations",
        "--per-request",
        "1",
        "--input",
        "1",
    ]);
    set(&["--provider", "openai"]);
    // Nothing was stored by any of these.
    let list = home.json(&["pricebook", "list", "--json"]);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["source"] == "default"));
}

#[test]
fn pricebook_import_applies_all_or_nothing() {
    let home = Home::with_openai_provider();
    let file = home.root().join("prices.json");
    let good = r#"{"price": [
        {"provider": "openai", "model": "gpt-4o", "input": "1.00", "output": "4.00",
         "cached_input": "0.25", "cache_write": "1.10"},
        {"provider": "openai", "model": "ft:gpt-4o-mini:acme", "input": "0.30", "output": "1.20"},
        {"provider": "openai", "resource": "images.generations", "per_request": "0.04",
         "currency": "USD"}
    ]}"#;
    std::fs::write(&file, good).unwrap();
    let out = home.ok(&["pricebook", "import", file.to_str().unwrap()]);
    assert!(out.contains("imported 3 prices"), "{out}");
    let list = home.json(&["pricebook", "list", "--json"]);
    let gpt4o = price(&list, "openai", "gpt-4o");
    assert_eq!(gpt4o["source"], "import");
    assert_eq!(gpt4o["cache_write_per_mtok"], "1.10");
    assert_eq!(
        price(&list, "openai", "ft:gpt-4o-mini:acme")["input_per_mtok"],
        "0.30"
    );
    assert_eq!(
        price(&list, "openai", "images.generations")["per_request"],
        "0.04"
    );

    // One bad entry among good ones: nothing changes, every problem named.
    let bad = r#"{"price": [
        {"provider": "openai", "model": "gpt-4o", "input": "9", "output": "9"},
        {"provider": "openai", "model": "o3", "input": "abc", "output": "1"},
        {"provider": "openai", "model": "o4-mini", "input": 1.5, "output": "1"},
        {"provider": "nope", "model": "x", "input": "1", "output": "1"},
        {"provider": "openai", "resource": "messages", "per_request": "1"},
        {"provider": "openai", "model": "o3", "input": "1", "output": "1", "colour": "red"},
        {"provider": "openai", "model": "gpt-4o", "input": "1", "output": "1"},
        {"provider": "openai", "model": "o3", "output": "1"}
    ]}"#;
    std::fs::write(&file, bad).unwrap();
    let out = home.fails(1, &["pricebook", "import", file.to_str().unwrap()]);
    for want in [
        "nothing imported",
        "price[1].input: \"abc\" is not a decimal amount",
        "price[2].input: write amounts as strings",
        "price[3].provider: no provider named \"nope\"",
        "price[4].resource: \"messages\" is not in the catalog",
        "price[5]: unknown field \"colour\"",
        "price[6]: openai model gpt-4o is priced already by price[0]",
        "price[7].input: missing",
    ] {
        assert!(
            out.stderr.contains(want),
            "{want:?} missing: {}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("price[0]."), "{}", out.stderr);
    let after = home.json(&["pricebook", "list", "--json"]);
    assert_eq!(after, list, "a refused import changes nothing");

    for (text, why) in [
        ("not json", "not a JSON document"),
        (
            r#"[{"provider": "openai"}]"#,
            "expected {\"price\": [ ... ]}",
        ),
        (r#"{"price": []}"#, "empty"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = home.fails(1, &["pricebook", "import", file.to_str().unwrap()]);
        assert!(out.stderr.contains(why), "{text}: {out:?}");
    }
    let out = home.fails(1, &["pricebook", "import", "/nonexistent/prices.json"]);
    assert!(out.stderr.contains("cannot read"), "{out:?}");
}

#[test]
fn pricebook_prices_tools_per_use_and_models_with_a_context_window() {
    let home = Home::with_openai_provider();
    let list = home.json(&["pricebook", "list", "--json"]);
    let search = price(&list, "openai", "web_search");
    assert_eq!(search["kind"], "tool");
    assert_eq!(search["per_use"], "0.025");
    assert_eq!(price(&list, "openai", "gpt-4o")["context_window"], 128000);
    let out = home.ok(&[
        "pricebook",
        "set",
        "--provider",
        "openai",
        "--tool",
        "web_search",
        "--per-use",
        "0.01",
    ]);
    assert!(
        out.contains("openai tool web_search: 0.01 USD per use"),
        "{out}"
    );
    let out = home.ok(&[
        "pricebook",
        "set",
        "--provider",
        "openai",
        "--model",
        "gpt-x",
        "--input",
        "1",
        "--output",
        "2",
        "--context-window",
        "32000",
    ]);
    assert!(out.contains("context window 32000 tokens"), "{out}");
    let list = home.json(&["pricebook", "list", "--json"]);
    assert_eq!(price(&list, "openai", "web_search")["per_use"], "0.01");
    assert_eq!(price(&list, "openai", "gpt-x")["context_window"], 32000);
    let table = home.ok(&["pricebook", "list"]);
    assert!(
        table.contains("CONTEXT") && table.contains("32000"),
        "{table}"
    );
    for (args, want) in [
        (
            vec!["--tool", "Web-Search", "--per-use", "1"],
            "--tool: \"Web-Search\" is not a tool name",
        ),
        (
            vec![
                "--model",
                "m",
                "--input",
                "1",
                "--output",
                "1",
                "--context-window",
                "0",
            ],
            "--context-window: \"0\" is not a number of tokens",
        ),
        (
            vec![
                "--model",
                "m",
                "--input",
                "1",
                "--output",
                "1",
                "--context-window",
                "lots",
            ],
            "--context-window: \"lots\"",
        ),
    ] {
        let mut all = vec!["pricebook", "set", "--provider", "openai"];
        all.extend(args);
        let out = home.fails(1, &all);
        assert!(out.stderr.contains(want), "{all:?}: {out:?}");
    }
    // --per-use needs --tool; a tool and a model at once is refused.
    home.fails(
        2,
        &["pricebook", "set", "--provider", "openai", "--per-use", "1"],
    );
    home.fails(
        2,
        &[
            "pricebook",
            "set",
            "--provider",
            "openai",
            "--tool",
            "t",
            "--per-use",
            "1",
            "--model",
            "m",
        ],
    );
    // Imported too, and removed.
    let file = home.root().join("tools.json");
    std::fs::write(
        &file,
        r#"{"price": [{"provider": "openai", "tool": "file_search", "per_use": "0.004"},
                      {"provider": "openai", "model": "gpt-y", "input": "1", "output": "1", "context_window": "8000"}]}"#,
    )
    .unwrap();
    home.ok(&["pricebook", "import", file.to_str().unwrap()]);
    let list = home.json(&["pricebook", "list", "--json"]);
    assert_eq!(price(&list, "openai", "file_search")["per_use"], "0.004");
    assert_eq!(price(&list, "openai", "gpt-y")["context_window"], 8000);
    let out = home.ok(&[
        "pricebook",
        "remove",
        "--provider",
        "openai",
        "--tool",
        "file_search",
    ]);
    assert!(out.contains("the built-in default applies again"), "{out}");
}
