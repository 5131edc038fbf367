//! The ledger's filters and the workspace CA.

use crate::support::Home;

#[test]
fn ledger_query_validates_its_filters() {
    let home = Home::with_workspace();
    assert_eq!(
        home.json(&["ledger", "query", "--json"]),
        serde_json::json!([])
    );
    assert!(home.ok(&["ledger", "query"]).contains("no ledger events"));
    let out = home.fails(1, &["ledger", "query", "--start-time", "yesterday"]);
    assert!(
        out.stderr.contains("--start-time") && out.stderr.contains("RFC 3339"),
        "{out:?}"
    );
    let out = home.fails(
        1,
        &[
            "ledger",
            "query",
            "--start-time",
            "now",
            "--end-time",
            "2024-01-01T00:00:00Z",
        ],
    );
    assert!(out.stderr.contains("after"), "{out:?}");
    let range = [
        "ledger",
        "query",
        "--start-time",
        "2024-01-01T00:00:00Z",
        "--end-time",
        "now",
        "--limit",
        "5",
        "--json",
    ];
    assert_eq!(home.json(&range), serde_json::json!([]));
    assert!(home
        .fails(1, &["ledger", "query", "--agent-id", "nobody"])
        .stderr
        .contains("no principal"));
}

#[test]
fn export_ca_creates_the_ca_once() {
    let home = Home::with_workspace();
    let first = home.run(&["certs", "export-ca"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.starts_with("-----BEGIN CERTIFICATE-----"),
        "{first:?}"
    );
    assert!(first
        .stdout
        .trim_end()
        .ends_with("-----END CERTIFICATE-----"));
    assert!(first.stderr.contains("created the workspace CA"));
    assert!(home.workspace_dir("demo").join("ca/ca.pem").is_file());
    let second = home.run(&["certs", "export-ca"]);
    assert_eq!(second.stdout, first.stdout, "the CA must be stable");
    assert!(second.stderr.is_empty(), "{second:?}");
}

/// Agent `spender` with three calls recorded now (1.00 and 0.25 USD, 2.50
/// EUR); its id.
pub(crate) async fn spender_with_three_calls(home: &Home) -> String {
    let agent = crate::principal::register(home, "spender");
    let agent_id = agent["id"].as_str().unwrap().to_string();
    let now = jiff::Timestamp::now();
    record_costs(
        home,
        &agent_id,
        &[
            (now, "1.00", "USD"),
            (now, "0.25", "USD"),
            (now, "2.50", "EUR"),
        ],
    )
    .await;
    agent_id
}

/// Ledger rows with costs for `principal_id`, written straight into the
/// workspace database as the gateway would.
pub(crate) async fn record_costs(
    home: &Home,
    principal_id: &str,
    costs: &[(jiff::Timestamp, &str, &str)],
) {
    use caracal_gateway::ledger::{Decision, EventCode, EventKind, LedgerEvent, Mode};
    use caracal_gateway::store::prelude::*;
    let path = home.workspace_dir("demo").join("caracal.db");
    let store = caracal_gateway::store::SqliteStore::open(&path)
        .await
        .unwrap();
    let events: Vec<LedgerEvent> = costs
        .iter()
        .map(|(at, cost, currency)| {
            let mut e = LedgerEvent::new(
                EventKind::Call,
                Mode::BaseUrl,
                Decision::Allow,
                EventCode::OK,
            );
            e.principal_id = Some(principal_id.to_string());
            e.ts = at.to_string();
            e.ts_ms = at.as_millisecond();
            e.cost = Some(caracal_gateway::money::parse_amount(cost).unwrap());
            e.currency = Some(currency.to_string());
            e.cost_basis = Some(caracal_gateway::ledger::CostBasis::Usage);
            e
        })
        .collect();
    store.insert_ledger_events(&events).await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_window_reports_the_current_budget_window_from_the_ledger() {
    use jiff::{tz::TimeZone, ToSpan};
    // Not across midnight: the test's "today" must be the CLI's.
    let mut now = jiff::Timestamp::now();
    let mut today = now.to_zoned(TimeZone::UTC).start_of_day().unwrap();
    let mut tomorrow = today.checked_add(1.day()).unwrap();
    if tomorrow.timestamp().duration_since(now).as_secs() < 30 {
        tokio::time::sleep(std::time::Duration::from_secs(31)).await;
        now = jiff::Timestamp::now();
        today = now.to_zoned(TimeZone::UTC).start_of_day().unwrap();
        tomorrow = today.checked_add(1.day()).unwrap();
    }
    let midnight = today.timestamp();

    let home = Home::with_openai_provider();
    let agent = crate::principal::register(&home, "spender");
    let agent_id = agent["id"].as_str().unwrap().to_string();
    home.ok(&[
        "policy",
        "create",
        "--agent-id",
        "spender",
        "--limit",
        "5.00",
        "--currency",
        "USD",
        "--time-window",
        "daily",
        "--change-reason",
        "x",
    ]);
    record_costs(
        &home,
        &agent_id,
        &[
            (midnight - 1.second(), "2.00", "USD"), // yesterday
            (midnight, "1.25", "USD"),
            (now, "0.50", "USD"),
            (now, "0.30", "EUR"), // another currency than the budget's
        ],
    )
    .await;

    let query = [
        "ledger",
        "query",
        "--agent-id",
        "spender",
        "--time-window",
        "daily",
    ];
    let v = home.json(&[&query[..], &["--json"]].concat());
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    let r = &rows[0];
    assert_eq!(r["principal"], agent_id.as_str());
    assert_eq!(r["principal_name"], "spender");
    assert!(r["policy_id"].is_string(), "{r}");
    assert_eq!(r["policy_version"], 1);
    assert_eq!(r["period"], "daily");
    assert_eq!(r["window_type"], "calendar");
    assert_eq!(r["timezone"], "UTC");
    assert_eq!(r["currency"], "USD");
    assert_eq!(r["limit"], "5.00");
    assert_eq!(r["spent"], "1.75", "only today's USD costs: {r}");
    assert_eq!(r["spent_source"], "ledger");
    assert_eq!(r["reserved"], "0.00");
    assert_eq!(r["remaining"], "3.25");
    assert_eq!(r["window_start"], midnight.to_string());
    assert_eq!(r["window_end"], tomorrow.timestamp().to_string());
    assert_eq!(r["resets_at"], tomorrow.timestamp().to_string());
    assert_eq!(r["resets_at_local"], tomorrow.to_string());
    assert_eq!(
        r["notes"],
        serde_json::json!(["gateway not running: nothing is reserved"])
    );

    let out = home.run(&query);
    assert_eq!(out.code, 0, "{out:?}");
    for want in [
        "daily spending of spender",
        "limit 5.00 USD",
        "spent      1.75 USD (from the ledger)",
        "reserved   0.00 USD",
        "remaining  3.25 USD",
    ] {
        assert!(out.stdout.contains(want), "{want:?} missing: {out:?}");
    }
    assert!(
        out.stdout
            .contains(&format!("resets at  {}", tomorrow.timestamp())),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("gateway not running: nothing is reserved"),
        "{out:?}"
    );

    // No monthly budget: the UTC calendar month, spend per currency.
    let v = home.json(&[
        "ledger",
        "query",
        "--agent-id",
        "spender",
        "--time-window",
        "monthly",
        "--json",
    ]);
    let rows = v.as_array().unwrap();
    assert!(
        rows.iter().all(|r| r["policy_id"].is_null()
            && r["limit"].is_null()
            && r["timezone"] == "UTC"
            && r["notes"][0].as_str().unwrap().contains("no budget policy")),
        "{v}"
    );
    let eur: Vec<_> = rows.iter().filter(|r| r["currency"] == "EUR").collect();
    assert_eq!(eur.len(), 1, "{v}");
    assert_eq!(eur[0]["spent"], "0.30");
    let out = home.ok(&[
        "ledger",
        "query",
        "--agent-id",
        "spender",
        "--time-window",
        "monthly",
    ]);
    assert!(
        out.contains("no budget policy with a monthly window applies"),
        "{out}"
    );
}

#[test]
fn time_window_needs_an_agent_and_a_period() {
    let home = Home::with_workspace();
    let out = home.fails(2, &["ledger", "query", "--time-window", "daily"]);
    assert!(out.stderr.contains("--agent-id"), "{out:?}");
    let out = home.fails(
        2,
        &[
            "ledger",
            "query",
            "--agent-id",
            "x",
            "--time-window",
            "yearly",
        ],
    );
    assert!(
        out.stderr.contains("yearly") && out.stderr.contains("hourly, daily, weekly or monthly"),
        "{out:?}"
    );
    for other in [
        &["--limit", "5"][..],
        &["--kind", "call"],
        &["--start-time", "now"],
        &["--end-time", "now"],
        &["--mandate-id", "m"],
    ] {
        let args = [
            &[
                "ledger",
                "query",
                "--agent-id",
                "x",
                "--time-window",
                "daily",
            ][..],
            other,
        ]
        .concat();
        let out = home.fails(2, &args);
        assert!(out.stderr.contains("cannot be used with"), "{out:?}");
    }
    assert!(home
        .fails(
            1,
            &[
                "ledger",
                "query",
                "--agent-id",
                "nobody",
                "--time-window",
                "hourly"
            ]
        )
        .stderr
        .contains("no principal"));
}
