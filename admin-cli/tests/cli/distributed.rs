//! A distributed workspace's control plane against the real PostgreSQL
//! and Redis (`scripts/services.sh`): each test gets its own database and
//! Redis key prefix.

use crate::principal::register;
use crate::support::{free_port, Home};

fn postgres_admin_url() -> String {
    std::env::var("CARACAL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("CARACAL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A new, empty database; its URL.
fn fresh_database() -> String {
    let admin = postgres_admin_url();
    let name = format!("caracal_cli_{}", uuid::Uuid::now_v7().simple());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {admin} is needed by this test ({e}); run scripts/services.sh"
                )
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
    });
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

fn redis_keys(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_connection().unwrap();
    redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut c)
        .unwrap()
}

fn redis_del(keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: i64 = redis::cmd("DEL").arg(keys).query(&mut c).unwrap();
}

/// A distributed workspace `prod` on a fresh database and prefix.
fn distributed_home() -> (Home, String) {
    let (home, prefix, _) = distributed_home_on();
    (home, prefix)
}

/// The same, with the database's URL.
fn distributed_home_on() -> (Home, String, String) {
    let home = Home::empty();
    let db = fresh_database();
    let prefix = format!("caracal-test:{}:", uuid::Uuid::now_v7().simple());
    let out = home.ok(&[
        "workspace",
        "create",
        "prod",
        "--postgres-url",
        &db,
        "--redis-url",
        &redis_url(),
        "--redis-prefix",
        &prefix,
        "--kafka-brokers",
        "127.0.0.1:9092",
    ]);
    assert!(out.contains("db migrate"), "{out}");
    (home, prefix, db)
}

/// Migrate, check, change, publish: every change reaches Redis under
/// PostgreSQL's state version; a state Redis lost is published again by
/// `cache sync`.
#[test]
fn changes_are_committed_to_postgres_then_published_to_redis() {
    let (home, prefix) = distributed_home();
    let out = home.fails(1, &["principal", "list"]);
    assert!(out.stderr.contains("caracal db migrate"), "{out:?}");
    let out = home.fails(1, &["db", "health-check"]);
    assert!(out.stdout.contains("migrations pending"), "{out:?}");
    assert!(home
        .ok(&["db", "migrate"])
        .contains("migrated the database"));
    assert!(home.ok(&["db", "migrate"]).contains("already at migration"));
    let h = home.json(&["db", "health-check", "--json"]);
    assert_eq!(h["healthy"], true, "{h}");
    assert_eq!(h["ledger_rows"], 0, "{h}");

    register(&home, "worker-1");
    let status = home.json(&["cache", "status", "--json"]);
    assert_eq!(status["published"], status["database"], "{status}");
    assert_eq!(status["in_sync"], true, "{status}");
    let listed = home.json(&["principal", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Redis loses its data: replicas would have nothing; sync restores it.
    redis_del(&redis_keys(&prefix));
    let out = home.fails(1, &["cache", "status", "--json"]);
    assert_eq!(out.json()["published"], serde_json::Value::Null, "{out:?}");
    assert!(home
        .ok(&["cache", "sync"])
        .contains("published state version"));
    assert_eq!(home.json(&["cache", "status", "--json"])["in_sync"], true);
}

/// A change made while Redis is down stays committed, and the command
/// fails saying the replicas were not told and how to tell them.
#[test]
fn a_change_redis_cannot_take_is_committed_and_reported() {
    let (home, _) = distributed_home();
    home.ok(&["db", "migrate"]);
    let mut cmd = home.command(&[
        "principal",
        "register",
        "--type",
        "agent",
        "--name",
        "w",
        "--email",
        "w@example.com",
    ]);
    cmd.env(
        "CARACAL_REDIS_URL",
        format!("redis://127.0.0.1:{}/", free_port()),
    );
    let out = Home::run_cmd(cmd);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("committed to PostgreSQL"), "{out:?}");
    assert!(out.stderr.contains("caracal cache sync"), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    // Committed: the next command (Redis back) publishes it too.
    let listed = home.json(&["principal", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(home.json(&["cache", "status", "--json"])["in_sync"], true);
}

/// `db reset` needs --confirm; with it the database is empty again and the
/// replicas are told.
#[test]
fn reset_needs_confirmation() {
    let (home, _) = distributed_home();
    home.ok(&["db", "migrate"]);
    register(&home, "worker-1");
    let out = home.fails(1, &["db", "reset"]);
    assert!(out.stderr.contains("--confirm"), "{out:?}");
    assert_eq!(
        home.json(&["principal", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    home.ok(&["db", "reset", "--confirm"]);
    assert_eq!(
        home.json(&["principal", "list", "--json"]),
        serde_json::json!([])
    );
    assert_eq!(home.json(&["cache", "status", "--json"])["in_sync"], true);
}

/// Bad settings are refused before anything is written; `db` and `cache`
/// on an embedded workspace say what they are for.
#[test]
fn bad_distributed_settings_are_refused() {
    let home = Home::empty();
    for (flag, value, needle) in [
        ("--redis-url", "http://cache", "not a redis://"),
        ("--postgres-url", "mysql://u:pw@db/x", "u:***@db"),
        ("--kafka-brokers", "k1", "not host:port"),
    ] {
        let out = home.fails(1, &["workspace", "create", "bad", flag, value]);
        assert!(out.stderr.contains(needle), "{out:?}");
        assert!(!out.stderr.contains("pw@"), "{out:?}");
        assert!(!home.workspace_dir("bad").exists());
    }
    home.ok(&["workspace", "create", "local"]);
    let out = home.fails(1, &["db", "health-check"]);
    assert!(out.stderr.contains("is embedded"), "{out:?}");
    let out = home.fails(1, &["cache", "sync"]);
    assert!(out.stderr.contains("is embedded"), "{out:?}");
}

/// A migrated distributed workspace with agent `worker-1` under a daily
/// budget of 10.00 USD; its prefix, database URL and agent id.
fn budgeted_worker() -> (Home, String, String, String) {
    let (home, prefix, db) = distributed_home_on();
    home.ok(&["db", "migrate"]);
    home.add_openai_provider();
    let agent = register(&home, "worker-1");
    let agent_id = agent["id"].as_str().unwrap().to_string();
    home.ok(&[
        "policy",
        "create",
        "--agent-id",
        "worker-1",
        "--limit",
        "10.00",
        "--currency",
        "USD",
        "--time-window",
        "daily",
        "--change-reason",
        "test",
    ]);
    (home, prefix, db, agent_id)
}

/// Calls of `principal` costing `costs` (USD) now, as ledger writers
/// store them.
fn calls_costing(principal: &str, costs: &[&str]) -> Vec<caracal_gateway::ledger::LedgerEvent> {
    use caracal_gateway::ledger::{CostBasis, Decision, EventCode, EventKind, LedgerEvent, Mode};
    let now = jiff::Timestamp::now().as_millisecond();
    costs
        .iter()
        .map(|cost| {
            let mut e = LedgerEvent::new(
                EventKind::Call,
                Mode::BaseUrl,
                Decision::Allow,
                EventCode::OK,
            );
            e.principal_id = Some(principal.to_string());
            e.ts_ms = now;
            e.ts = jiff::Timestamp::from_millisecond(now).unwrap().to_string();
            e.cost = Some(caracal_gateway::money::parse_amount(cost).unwrap());
            e.currency = Some("USD".into());
            e.cost_basis = Some(CostBasis::Usage);
            e
        })
        .collect()
}

/// `ledger query --time-window` in a distributed workspace reads what the
/// ledger writers stored (their per-minute aggregates) and what the
/// replicas share in Redis: the spend counted there before its ledger rows
/// arrive, and the amounts held for calls in flight.
#[test]
fn spending_reads_the_ledger_and_the_counters_the_replicas_share() {
    use caracal_gateway::budget::counters::{Counters, ReservationId};
    use caracal_gateway::money::parse_amount;
    use caracal_gateway::store::{LedgerStore, PgStore, Store};

    let (home, prefix, db, agent_id) = budgeted_worker();
    let spending = |home: &Home| {
        let rows = home.json(&[
            "ledger",
            "query",
            "--agent-id",
            "worker-1",
            "--time-window",
            "daily",
            "--json",
        ]);
        let rows = rows.as_array().unwrap().clone();
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows[0].clone()
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (store, lines) = runtime.block_on(async {
        let pg = PgStore::connect(&db).await.unwrap();
        // Two calls the writers stored.
        pg.insert_ledger_events(&calls_costing(&agent_id, &["1.25", "0.75"]))
            .await
            .unwrap();
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(pg);
        let policies = store.list_policies(Some(&agent_id)).await.unwrap();
        let plans = caracal_gateway::budget::plans(&policies);
        (store, plans[&agent_id].lines.clone())
    });
    // No replica has counted anything yet: the ledger is all there is.
    let row = spending(&home);
    assert_eq!(row["spent"], "2.00", "{row}");
    assert_eq!(row["spent_source"], "ledger", "{row}");
    assert_eq!(row["reserved"], "0.00", "{row}");
    assert_eq!(row["remaining"], "8.00", "{row}");

    // A replica settles a call whose ledger row is not written yet, and
    // holds 1.5 for a call in flight.
    let counters = runtime.block_on(async {
        let conn = caracal_gateway::shared::connect(&redis_url())
            .await
            .unwrap();
        let keys = caracal_gateway::shared::Keys::new(&prefix).unwrap();
        let counters = caracal_gateway::shared::RedisCounters::new(
            conn,
            keys,
            jiff::SignedDuration::from_secs(60),
            std::sync::Arc::new(store.clone()),
        );
        let now = jiff::Timestamp::now();
        let d = |s: &str| parse_amount(s).unwrap();
        let settled = counters
            .reserve(&agent_id, ReservationId::new(), &lines, d("1"), now)
            .await
            .unwrap();
        counters.settle(&settled, d("0.5"), now).await.unwrap();
        counters
            .reserve(&agent_id, ReservationId::new(), &lines, d("1.5"), now)
            .await
            .unwrap();
        counters
    });
    let row = spending(&home);
    assert_eq!(row["spent"], "2.50", "{row}");
    assert_eq!(row["spent_source"], "gateway", "{row}");
    assert_eq!(row["reserved"], "1.50", "{row}");
    assert_eq!(row["remaining"], "6.00", "{row}");
    let text = home.ok(&[
        "ledger",
        "query",
        "--agent-id",
        "worker-1",
        "--time-window",
        "daily",
    ]);
    assert!(text.contains("2.50 USD (the gateways' count)"), "{text}");

    // Redis unreachable: the ledger's figure, and a note saying why
    // nothing reserved is counted.
    let mut cmd = home.command(&[
        "ledger",
        "query",
        "--agent-id",
        "worker-1",
        "--time-window",
        "daily",
        "--json",
    ]);
    cmd.env(
        "CARACAL_REDIS_URL",
        format!("redis://127.0.0.1:{}/", free_port()),
    );
    let out = Home::run_cmd(cmd);
    assert_eq!(out.code, 0, "{out:?}");
    let row = out.json()[0].clone();
    assert_eq!(row["spent"], "2.00", "{row}");
    assert_eq!(row["spent_source"], "ledger", "{row}");
    let notes = row["notes"].to_string();
    assert!(notes.contains("Redis did not answer"), "{row}");
    drop(counters);
    redis_del(&redis_keys(&prefix));
}

/// The runbook's recovery on PostgreSQL: snapshot, more calls, the
/// aggregates lost, restore (a replica primes a counter from the ledger's
/// rows meanwhile, not from them), replay: the ledger's totals again.
/// After `db reset` the snapshot's checkpoint is not in the ledger and
/// restore says so.
#[test]
fn snapshot_restore_replay_on_postgres() {
    use caracal_gateway::budget::counters::{Counters, ReservationId};
    use caracal_gateway::money::parse_amount;
    use caracal_gateway::store::{LedgerStore, PgStore, Store};

    let (home, prefix, db, agent_id) = budgeted_worker();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pg = runtime.block_on(PgStore::connect(&db)).unwrap();
    let insert = |costs: &[&str]| {
        runtime
            .block_on(pg.insert_ledger_events(&calls_costing(&agent_id, costs)))
            .unwrap();
    };
    insert(&["1.25", "0.75"]);
    let snap = home.json(&["snapshot", "create", "--json"]);
    let id = snap["id"].as_str().unwrap().to_string();
    assert_eq!(snap["calls"], 2, "{snap}");
    insert(&["0.50"]);
    runtime.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query("DELETE FROM spend_minutes")
            .execute(&mut c)
            .await
            .unwrap();
    });
    home.ok(&["snapshot", "restore", "--snapshot-id", &id]);

    // A replica priming this principal's counter now reads the ledger's
    // rows, not the incomplete aggregates: 2.50 spent, not the snapshot's
    // 2.00.
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(pg.clone());
    let lines = runtime.block_on(async {
        let policies = store.list_policies(Some(&agent_id)).await.unwrap();
        caracal_gateway::budget::plans(&policies)[&agent_id]
            .lines
            .clone()
    });
    let counters = runtime.block_on(async {
        let conn = caracal_gateway::shared::connect(&redis_url())
            .await
            .unwrap();
        caracal_gateway::shared::RedisCounters::new(
            conn,
            caracal_gateway::shared::Keys::new(&prefix).unwrap(),
            jiff::SignedDuration::from_secs(60),
            std::sync::Arc::new(store.clone()),
        )
    });
    let spent_after_a_reservation = || {
        let hold = runtime
            .block_on(counters.reserve(
                &agent_id,
                ReservationId::new(),
                &lines,
                parse_amount("0.01").unwrap(),
                jiff::Timestamp::now(),
            ))
            .unwrap();
        let standing = runtime
            .block_on(counters.standing(&agent_id, &lines[0], jiff::Timestamp::now()))
            .unwrap();
        runtime
            .block_on(counters.release(&hold, jiff::Timestamp::now()))
            .unwrap();
        // The principal's counters forgotten: the next reservation primes.
        let principal_keys: Vec<String> = redis_keys(&prefix)
            .into_iter()
            .filter(|k| k.contains("{p:"))
            .collect();
        assert!(!principal_keys.is_empty());
        redis_del(&principal_keys);
        (standing.spent, standing.reserved)
    };
    let d = |s: &str| parse_amount(s).unwrap();
    assert_eq!(spent_after_a_reservation(), (d("2.50"), d("0.01")));
    // A report says the aggregates are being rebuilt.
    let out = home.fails(
        1,
        &[
            "ledger",
            "query",
            "--agent-id",
            "worker-1",
            "--time-window",
            "daily",
        ],
    );
    assert!(out.stderr.contains("replay start"), "{out:?}");

    let done = home.json(&["replay", "start", "--from-snapshot", &id, "--json"]);
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["calls"], 1, "{done}");
    let row = home.json(&[
        "ledger",
        "query",
        "--agent-id",
        "worker-1",
        "--time-window",
        "daily",
        "--json",
    ])[0]
        .clone();
    assert_eq!(row["spent"], "2.50", "{row}");
    // Primed from the rebuilt aggregates.
    assert_eq!(spent_after_a_reservation(), (d("2.50"), d("0.01")));

    // After `db reset` the ledger is not the one the snapshot was taken of.
    home.ok(&["db", "reset", "--confirm"]);
    let out = home.fails(1, &["snapshot", "restore", "--snapshot-id", &id]);
    assert!(
        out.stderr
            .contains("restore the database from its backup first"),
        "{out:?}"
    );
    drop(counters);
    redis_del(&redis_keys(&prefix));
}
