//! The distributed deployment end to end, against the real services
//! `scripts/services.sh` provides: two gateway replicas sharing one
//! PostgreSQL database (the CLI's system of record), one Redis prefix
//! (published state, budget counters, rate limits, clock) and one
//! Kafka-protocol broker (spend events). Each test has its own database,
//! prefix, broker and topic.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use caracal_config::Config;
use caracal_gateway::authority::issue::{self, IssueRequest};
use caracal_gateway::authority::Scope;
use caracal_gateway::budget::counters::{CounterId, Counters, Line, DEFAULT_HOLD_TTL};
use caracal_gateway::budget::window::{Period, WindowSpec, WindowType};
use caracal_gateway::kafka::admin::{create_topics, TopicSpec};
use caracal_gateway::model::Principal;
use caracal_gateway::money::{parse_amount, Currency, Decimal, Money};
use caracal_gateway::policy::{Budget, PolicyDefinition};
use caracal_gateway::shared::{self, Keys, RedisCounters};
use caracal_gateway::store::{MandateRecord, PgStore, Revocation, Store};
use caracal_gateway::RunningGateway;
use caracal_load_tests::broker::Broker;
use caracal_load_tests::faults::{server_of, url_through, Fault, FaultProxy};
use caracal_load_tests::mock::{self, MockHandle};
use common::authority::{self, change, Authority};
use serde_json::json;

fn d(s: &str) -> Decimal {
    parse_amount(s).unwrap()
}

/// A fresh database, migrated; its URL.
async fn database() -> (PgStore, String) {
    use sqlx::Connection;
    let admin = std::env::var("CARACAL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("caracal_dist_{}", uuid::Uuid::now_v7().simple());
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is needed ({e}); run scripts/services.sh")
        });
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pg = PgStore::connect(&url).await.unwrap();
    pg.migrate().await.unwrap();
    (pg, url)
}

fn redis_url() -> String {
    std::env::var("CARACAL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Two replicas of one distributed workspace.
struct Cluster {
    replicas: Vec<RunningGateway>,
    store: Arc<dyn Store>,
    redis: redis::aio::ConnectionManager,
    keys: Keys,
    _authority: Authority,
    agent_id: String,
    token: String,
    ca_pem: String,
    _mock: MockHandle,
    _broker: Broker,
    _dirs: Vec<tempfile::TempDir>,
    topic_brokers: String,
    /// The fault proxy every connection to the broker goes through, if any.
    broker_front: Option<FaultProxy>,
    pg_url: String,
    prefix: String,
    ca_dir: std::path::PathBuf,
}

impl Cluster {
    /// Publishes the store's state to Redis, as the CLI does after a change.
    async fn publish(&self) {
        let rows = self.store.load_state().await.unwrap();
        shared::publish(&self.redis, &self.keys, &rows, false)
            .await
            .unwrap();
    }

    /// Publishes, then waits until every replica runs the new state.
    async fn publish_and_wait(&self) {
        self.publish().await;
        let want = self.store.state_version().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for r in &self.replicas {
            while r.snapshot_version() < want {
                assert!(
                    Instant::now() < deadline,
                    "a replica never reached version {want}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    /// A chat completion through replica `i`: status, body, event id.
    async fn call(
        &self,
        client: &reqwest::Client,
        i: usize,
        max_tokens: u64,
    ) -> (u16, serde_json::Value, String) {
        let port = self.replicas[i].addr.port();
        let r = client
            .post(format!("https://127.0.0.1:{port}/openai/v1/chat/completions"))
            .bearer_auth(&self.token)
            .header("x-mock-latency-ms", "20")
            .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let id = common::event_id(&r);
        (status, r.json().await.unwrap_or_default(), id)
    }

    async fn health(&self, i: usize) -> (u16, serde_json::Value) {
        let port = self.replicas[i].addr.port();
        let r = self
            .client()
            .get(format!("https://127.0.0.1:{port}/health"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }
}

/// The config of one replica: Redis reached at `redis`, 1 s staleness,
/// holds that outlive a dead replica by 3 s.
fn replica_config(
    dir: &std::path::Path,
    redis: &str,
    prefix: &str,
    brokers: &str,
    pg: &str,
    ca: &std::path::Path,
) -> Config {
    let text = replica_config_text("127.0.0.1:0", redis, prefix, brokers, pg, ca);
    Config::parse_with_env(&text, &dir.join("config.toml"), |_| None).unwrap()
}

fn replica_config_text(
    listen: &str,
    redis: &str,
    prefix: &str,
    brokers: &str,
    pg: &str,
    ca: &std::path::Path,
) -> String {
    format!(
        r#"
[gateway]
listen = "{listen}"
metrics_listen = "127.0.0.1:0"
[limits]
max_request_body_bytes = 1048576
upstream_response_timeout_secs = 5
[tls]
ca_cert = "{ca}/ca.pem"
ca_key = "{ca}/ca.key"
[deployment]
kind = "distributed"
postgres_url = "{pg}"
redis_url = "{redis}"
redis_prefix = "{prefix}"
kafka_brokers = "{brokers}"
hold_ttl_secs = 3
[snapshot]
max_staleness_ms = 1000
resync_interval_ms = 200
"#,
        ca = ca.display()
    )
}

/// How the replicas reach the broker.
enum Kafka {
    Direct,
    /// Through a fault proxy (`Cluster::broker_front`).
    BehindProxy,
}

/// Starts two replicas; Redis is reached through `redis_front` when given
/// (a fault proxy), else directly.
async fn cluster(redis_front: Option<&FaultProxy>, kafka: Kafka) -> Cluster {
    cluster_with(redis_front, None, kafka).await
}

/// Like [`cluster`], the replicas also reaching PostgreSQL (which they read
/// only to prime a lost budget counter) through `pg_front`.
async fn cluster_with(
    redis_front: Option<&FaultProxy>,
    pg_front: Option<&FaultProxy>,
    kafka: Kafka,
) -> Cluster {
    let (pg, pg_url) = database().await;
    let store: Arc<dyn Store> = Arc::new(pg);
    let mock = mock::start("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let (agent, token) = common::seed(&*store, &mock.base_url()).await;
    let authority = Authority::create(&*store).await;
    let everything = authority::scope(&["*"], authority::ALL);
    // A mandate over everything, recorded: the agent calls with its token.
    grant(&*store, &authority, &agent, &everything).await;
    let redis = shared::connect(&redis_url()).await.unwrap();
    let prefix = format!("caracal-test:{}:", uuid::Uuid::now_v7().simple());
    let keys = Keys::new(&prefix).unwrap();
    let rows = store.load_state().await.unwrap();
    shared::publish(&redis, &keys, &rows, false).await.unwrap();
    let (broker, broker_front) = match kafka {
        Kafka::Direct => (Broker::start().await, None),
        Kafka::BehindProxy => {
            let (b, p) = Broker::behind_proxy().await;
            (b, Some(p))
        }
    };
    create_topics(
        &broker.brokers,
        &[TopicSpec {
            name: "caracal.metering.events".into(),
            partitions: 2,
            replication: 1,
        }],
    )
    .await
    .unwrap();
    let replica_redis = match redis_front {
        Some(p) => format!("redis://{}/", p.addr()),
        None => redis_url(),
    };
    // Both replicas serve with one workspace CA (as replicas behind one
    // load balancer would).
    let ca_dir = tempfile::tempdir().unwrap();
    let mut dirs = vec![];
    let mut replicas = vec![];
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let config = replica_config(
            dir.path(),
            &replica_redis,
            &prefix,
            &broker.brokers,
            &through(&pg_url, pg_front),
            ca_dir.path(),
        );
        replicas.push(
            caracal_gateway::start(config)
                .await
                .expect("a replica starts"),
        );
        dirs.push(dir);
    }
    let ca_pem = replicas[0].ca_pem();
    let ca_path = ca_dir.path().to_path_buf();
    dirs.push(ca_dir);
    Cluster {
        replicas,
        store,
        redis,
        keys,
        _authority: authority,
        agent_id: agent.id,
        token,
        ca_pem,
        _mock: mock,
        topic_brokers: broker.brokers.clone(),
        broker_front,
        pg_url,
        prefix,
        ca_dir: ca_path,
        _broker: broker,
        _dirs: dirs,
    }
}

/// `url` through the fault proxy `front`, when given.
fn through(url: &str, front: Option<&FaultProxy>) -> String {
    match front {
        Some(front) => url_through(url, front.addr()),
        None => url.to_string(),
    }
}

/// Issues and records a root mandate from `ops` to `subject`, as `caracal
/// authority issue` does.
async fn grant(store: &dyn Store, authority: &Authority, subject: &Principal, scope: &Scope) {
    let policies = store.list_policies(None).await.unwrap();
    let issued = issue::issue(
        &policies,
        &IssueRequest {
            issuer: &authority.ops,
            subject,
            scope,
            validity_secs: 3600,
            now: authority::now(),
            workspace: None,
        },
    )
    .unwrap();
    let record = MandateRecord::issued(&issued.claims, &issued.policy_id, issued.policy_version);
    store.insert_mandate(&record).await.unwrap();
}

/// Every replica serves, and a revocation made in the system of record and
/// published reaches both within a second (the distribution is printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_reaches_both_replicas_within_a_second() {
    let c = cluster(None, Kafka::Direct).await;
    let client = c.client();
    for i in 0..2 {
        let (status, body, _) = c.call(&client, i, 5).await;
        assert_eq!(status, 200, "replica {i}: {body}");
    }
    let mandates = c.store.list_mandates(&Default::default()).await.unwrap();
    let agents: Vec<_> = mandates
        .iter()
        .filter(|m| m.subject_id == c.agent_id)
        .collect();
    assert_eq!(agents.len(), 1);
    let started = Instant::now();
    c.store
        .revoke_mandate(
            &agents[0].jti,
            false,
            &Revocation {
                revoked_by: "test".into(),
                reason: "test revocation".into(),
                at: authority::now(),
            },
        )
        .await
        .unwrap();
    c.publish().await;
    let mut took = vec![];
    for i in 0..2 {
        loop {
            let (status, body, _) = c.call(&client, i, 5).await;
            if status == 403 {
                assert_eq!(body["error"], "mandate_revoked", "{body}");
                took.push(started.elapsed());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "replica {i} still admits after 1 s"
            );
        }
    }
    // Both replicas report the version they run (`caracal cache status`).
    let want = c.store.state_version().await.unwrap();
    loop {
        let now = caracal_gateway::clock::now().as_millisecond();
        let reports = shared::replicas(&c.redis, &c.keys, now, Duration::from_secs(30))
            .await
            .unwrap();
        if reports.len() == 2 && reports.iter().all(|r| r.version == want && r.fresh) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the replicas do not report version {want}: {reports:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "revocation enforced by replica 0 after {:?}, replica 1 after {:?}",
        took[0], took[1]
    );
}

/// 64 concurrent clients split across both replicas never overspend one
/// shared budget; every call and refusal is produced to Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_budget_is_never_overspent_across_replicas() {
    let c = Arc::new(cluster(None, Kafka::Direct).await);
    let limit = d("2.00");
    let plan_line = dear_budget(&c, limit).await;
    let client = c.client();
    let mut tasks = vec![];
    for n in 0..64 {
        let (c, client) = (c.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = vec![];
            for _ in 0..3 {
                let (status, body, id) = c.call(&client, n % 2, 10).await;
                if status == 402 {
                    assert_eq!(body["error"], "budget_exceeded", "{body}");
                }
                assert!(status == 200 || status == 402, "{status}: {body}");
                seen.push((status, id));
            }
            seen
        }));
    }
    let mut seen = vec![];
    for t in tasks {
        seen.extend(t.await.unwrap());
    }
    let allowed = seen.iter().filter(|(s, _)| *s == 200).count();
    assert!(
        allowed > 0 && allowed < seen.len(),
        "{allowed} of {} allowed",
        seen.len()
    );
    // The shared counters: settled spend within the limit, nothing held
    // once the last settles (sent as each response body ends) arrive.
    let standing = || c.settled(&plan_line);
    let s = standing().await;
    assert!(s.spent <= limit, "spent {} of {limit}", s.spent);
    assert_eq!(
        s.reserved,
        Decimal::ZERO,
        "nothing is held once calls settled"
    );
    // Calls that fit are admitted again, on either replica, until what is
    // left is below one call's worst case; only then refused.
    let mut i = 0;
    loop {
        let before = standing().await;
        let (status, body, id) = c.call(&client, i % 2, 10).await;
        seen.push((status, id));
        i += 1;
        if status == 402 {
            let left = limit - before.spent;
            let wanted = d(body["requested"].as_str().expect("the refused amount"));
            assert!(
                left < wanted,
                "falsely refused with {left} left for {wanted}: {body}"
            );
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(i < 200, "the budget is never reached");
    }
    assert!(standing().await.spent <= limit);
    // Every call and refusal is on the topic, by its event id.
    let ids: std::collections::HashSet<String> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(
        ids.len(),
        seen.len(),
        "every response carries its own event id"
    );
    let found = read_event_ids(&c.topic_brokers, ids.len()).await;
    let missing: Vec<_> = ids.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "{} events never reached Kafka: {:?}",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
}

/// 1000 USD per million tokens (a token costs 0.001) and a daily budget
/// of `limit` for the agent, published; the budget's counter line.
async fn dear_budget(c: &Cluster, limit: Decimal) -> Line {
    c.store
        .put_prices(&[common::dear_price("openai", "gpt-test")])
        .await
        .unwrap();
    let spec = WindowSpec::new(Period::Daily, WindowType::Calendar, "UTC").unwrap();
    let def = PolicyDefinition {
        budget: Some(Budget {
            limit: Money::new(limit, Currency::USD),
            window: spec.clone(),
            max_output_tokens: 64,
        }),
        ..PolicyDefinition::default()
    };
    let policy = c
        .store
        .create_policy(&c.agent_id, &def, &change("shared budget"))
        .await
        .unwrap();
    c.publish_and_wait().await;
    Line {
        id: CounterId::new(&policy.id, &spec),
        policy_version: policy.version,
        limit,
        currency: Currency::USD,
        spec,
    }
}

impl Cluster {
    /// Where `line` stands once nothing is held any more: a replica settles
    /// a call as its response body ends, after the client has it, so the
    /// last settles may still be on their way (5 s at most).
    async fn settled(&self, line: &Line) -> caracal_gateway::budget::counters::Standing {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.standing(line).await;
            if s.reserved == Decimal::ZERO || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Where the agent's budget `line` stands in Redis, on the shared clock.
    async fn standing(&self, line: &Line) -> caracal_gateway::budget::counters::Standing {
        let counters = RedisCounters::new(
            self.redis.clone(),
            self.keys.clone(),
            DEFAULT_HOLD_TTL,
            Arc::new(NoHistory),
        );
        counters
            .standing(&self.agent_id, line, caracal_gateway::clock::now())
            .await
            .unwrap()
    }
}

struct NoHistory;

impl caracal_gateway::snapshot::SpendHistory for NoHistory {
    fn spend_since(
        &self,
        _: &str,
        _: i64,
    ) -> caracal_gateway::budget::counters::BoxFuture<
        Result<Vec<caracal_gateway::store::Spend>, caracal_gateway::snapshot::SourceError>,
    > {
        Box::pin(std::future::ready(Ok(vec![])))
    }
}

/// The event ids on the spend topic (waits until `n` distinct, 20 s at most).
async fn read_event_ids(brokers: &str, n: usize) -> std::collections::HashSet<String> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message;
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["caracal.metering.events"]).unwrap();
    let mut ids = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.len() < n && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            let event = caracal_gateway::kafka::schema::decode(m.payload().unwrap_or_default())
                .expect("a spend event");
            ids.insert(event.id);
        }
    }
    ids
}

/// Redis cut off: both replicas refuse with `not_ready` within the
/// staleness bound (1 s here) and `/health` names `snapshot` and `redis`;
/// when it returns they serve again by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_fail_closed_without_redis_and_recover() {
    let target = server_of(&redis_url(), 6379);
    let proxy = FaultProxy::start(target).await.unwrap();
    let c = cluster(Some(&proxy), Kafka::Direct).await;
    let client = c.client();
    assert_eq!(c.call(&client, 0, 5).await.0, 200);
    proxy.set(Fault::Blackhole);
    let cut = Instant::now();
    for i in 0..2 {
        loop {
            let (status, body, _) = c.call(&client, i, 5).await;
            if status == 503 {
                assert_eq!(body["error"], "not_ready", "{body}");
                break;
            }
            assert!(
                cut.elapsed() < Duration::from_secs(4),
                "replica {i} still admits {:?} after Redis was cut: {status} {body}",
                cut.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (status, health) = c.health(0).await;
    assert_eq!(status, 503);
    let failing = health["failing"].to_string();
    assert!(failing.contains("snapshot"), "{health}");
    proxy.set(Fault::Pass);
    let back = Instant::now();
    for i in 0..2 {
        loop {
            let (status, _, _) = c.call(&client, i, 5).await;
            if status == 200 {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(15),
                "replica {i} did not recover"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // /health follows within its guards' next check (the `redis` guard is
    // the replica's next report).
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in 0..2 {
        loop {
            let (status, health) = c.health(i).await;
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {i} still unhealthy: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The broker cut off for 30 s under load: no call waits on Kafka (each is
/// answered as fast as before), events spool on the replicas and drain when
/// it returns, and every call's event reaches the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_blocks_no_call_and_loses_no_event() {
    let c = Arc::new(cluster(None, Kafka::BehindProxy).await);
    let client = c.client();
    let front = c.broker_front.as_ref().expect("behind a proxy");
    let mut ids = std::collections::HashSet::new();
    for i in 0..4 {
        let (status, body, id) = c.call(&client, i % 2, 5).await;
        assert_eq!(status, 200, "{body}");
        ids.insert(id);
    }
    front.set(Fault::Blackhole);
    let cut = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut n = 0;
    while cut.elapsed() < Duration::from_secs(30) {
        let mut batch = vec![];
        for i in 0..8 {
            let (c, client) = (c.clone(), client.clone());
            batch.push(tokio::spawn(async move {
                let sent = Instant::now();
                let r = c.call(&client, i % 2, 5).await;
                (r, sent.elapsed())
            }));
        }
        for t in batch {
            let ((status, body, id), took) = t.await.unwrap();
            assert_eq!(
                status, 200,
                "a call was refused while Kafka was away: {body}"
            );
            slowest = slowest.max(took);
            ids.insert(id);
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{n} calls while the broker was cut off for 30 s; slowest {slowest:?}");
    // The mock answers in 20 ms; nothing waited on the broker's timeouts.
    assert!(
        slowest < Duration::from_secs(2),
        "a call waited on Kafka: {slowest:?}"
    );
    front.set(Fault::Pass);
    let found = read_event_ids(&c.topic_brokers, ids.len()).await;
    let missing: Vec<_> = ids.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events lost: {:?}",
        missing.len(),
        ids.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
}

/// A replica killed with SIGKILL while its calls hold budget: nobody
/// settles them, their holds count for nothing once `hold_ttl_secs` (3 s
/// here) passes, and nothing is charged for them; the other replicas admit
/// what fits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replicas_holds_expire_and_charge_nothing() {
    let c = Arc::new(cluster(None, Kafka::Direct).await);
    let limit = d("2.00");
    let line = dear_budget(&c, limit).await;
    // A third replica, as its own process.
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        replica_config_text(
            &format!("127.0.0.1:{port}"),
            &redis_url(),
            &c.prefix,
            &c.topic_brokers,
            &c.pg_url,
            &c.ca_dir,
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_caracal-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = c.client();
    let url = format!("https://127.0.0.1:{port}/openai/v1/chat/completions");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("https://127.0.0.1:{port}/health"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "the replica process did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Calls that take 30 s at the provider: their holds stay in Redis.
    let mut calls = vec![];
    for _ in 0..5 {
        let (client, url, token) = (client.clone(), url.clone(), c.token.clone());
        calls.push(tokio::spawn(async move {
            let _ = client
                .post(url)
                .bearer_auth(token)
                .header("x-mock-latency-ms", "30000")
                .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}))
                .send()
                .await;
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.standing(&line).await;
        if s.reserved > Decimal::ZERO && calls.iter().all(|t| !t.is_finished()) {
            // Held past one renewal round (every second), then killed.
            if Instant::now() + Duration::from_secs(8) > deadline {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the calls never held budget");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = c.standing(&line).await.reserved;
    assert!(held > Decimal::ZERO);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = Instant::now();
    loop {
        let s = c.standing(&line).await;
        if s.reserved == Decimal::ZERO {
            assert_eq!(
                s.spent,
                Decimal::ZERO,
                "nothing is charged for the killed calls"
            );
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "{held} still held {:?} after the kill",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{held} held by the killed replica was free again {:?} after SIGKILL",
        killed.elapsed()
    );
    // The survivors admit calls against the whole budget again.
    let (status, body, _) = c.call(&client, 0, 10).await;
    assert_eq!(status, 200, "{body}");
}

/// Two replicas and two ledger writers (one consumer group) sharing one
/// PostgreSQL: every admitted call and every refusal is in the ledger
/// exactly once, counted by the `x-caracal-event-id` the clients saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_and_refusal_is_in_the_postgres_ledger_once() {
    use caracal_gateway::ledger_writer::{Writer, WriterConfig};
    let c = Arc::new(cluster(None, Kafka::Direct).await);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = vec![];
    for _ in 0..2 {
        let pg = PgStore::connect(&c.pg_url).await.unwrap();
        let writer = Writer::new(WriterConfig::new(c.topic_brokers.clone()), pg)
            .await
            .expect("a writer starts");
        let stop = stop.clone();
        writers.push(tokio::spawn(async move { writer.run(stop).await }));
    }
    let client = c.client();
    let mut tasks = vec![];
    for n in 0..16 {
        let (c, client) = (c.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = vec![];
            for k in 0..10 {
                let port = c.replicas[(n + k) % 2].addr.port();
                // Every third call asks for what the allowlist refuses.
                let path = if k % 3 == 0 { "/v1/embeddings" } else { "/v1/chat/completions" };
                let r = client
                    .post(format!("https://127.0.0.1:{port}/openai{path}"))
                    .bearer_auth(&c.token)
                    .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "input": "x", "max_tokens": 5}))
                    .send()
                    .await
                    .unwrap();
                let expected = if k % 3 == 0 { 403 } else { 200 };
                assert_eq!(r.status().as_u16(), expected);
                ids.push(common::event_id(&r));
            }
            ids
        }));
    }
    let mut seen = vec![];
    for t in tasks {
        seen.extend(t.await.unwrap());
    }
    let pg = PgStore::connect(&c.pg_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let counts: std::collections::HashMap<String, i64> = loop {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, COUNT(*) FROM ledger_events WHERE kind = 'call' GROUP BY id",
        )
        .fetch_all(&pg_pool(&c.pg_url).await)
        .await
        .unwrap();
        if rows.len() >= seen.len() || Instant::now() > deadline {
            break rows.into_iter().collect();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(pg);
    for id in &seen {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "event {id} is in the ledger {:?} times",
            counts.get(id)
        );
    }
    assert_eq!(counts.len(), seen.len(), "no event the clients did not see");
    stop.cancel();
    for w in writers {
        w.await.unwrap();
    }
}

async fn pg_pool(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url).await.unwrap()
}

/// PostgreSQL cut off: the replicas keep enforcing (they serve from Redis
/// and Kafka, a budget included), the writer waits and retries, and once
/// the database answers again every event is in the ledger exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_keep_enforcing_without_postgres_and_the_writer_catches_up() {
    use caracal_gateway::ledger_writer::{Writer, WriterConfig};
    let (pg, _) = database().await;
    drop(pg);
    let admin = std::env::var("CARACAL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let target = server_of(&admin, 5432);
    let front = FaultProxy::start(target).await.unwrap();
    let c = Arc::new(cluster_with(None, Some(&front), Kafka::Direct).await);
    let line = dear_budget(&c, d("2.00")).await;
    let writer_store = PgStore::connect(&through(&c.pg_url, Some(&front)))
        .await
        .unwrap();
    let writer = Writer::new(WriterConfig::new(c.topic_brokers.clone()), writer_store)
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let run = {
        let stop = stop.clone();
        tokio::spawn(async move { writer.run(stop).await })
    };
    front.set(Fault::Blackhole);
    let client = c.client();
    let mut ids = vec![];
    for i in 0..20 {
        let (status, body, id) = c.call(&client, i % 2, 5).await;
        assert!(
            status == 200 || status == 402,
            "refused without PostgreSQL: {status} {body}"
        );
        ids.push(id);
    }
    let s = c.standing(&line).await;
    assert!(
        s.spent > Decimal::ZERO && s.spent <= d("2.00"),
        "the budget kept counting: {s:?}"
    );
    // Still nothing written: the writer cannot reach the database.
    tokio::time::sleep(Duration::from_millis(500)).await;
    front.set(Fault::Reset);
    tokio::time::sleep(Duration::from_millis(200)).await;
    front.set(Fault::Pass);
    let pool = pg_pool(&c.pg_url).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts: std::collections::HashMap<String, i64> = loop {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, COUNT(*) FROM ledger_events WHERE kind = 'call' GROUP BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if rows.len() >= ids.len() || Instant::now() > deadline {
            break rows.into_iter().collect();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "event {id}: {:?}", counts.get(id));
    }
    stop.cancel();
    run.await.unwrap();
}

/// A ledger writer process on a database of its own, with Kafka at
/// `brokers`; its metrics port.
async fn writer_process(brokers: &str, dir: &std::path::Path) -> (std::process::Child, u16) {
    let (_pg, pg_url) = database().await;
    let key = dir.join("ledger.key");
    std::fs::write(&key, caracal_gateway::merkle::LedgerKey::generate()).unwrap();
    let metrics = common::free_port();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\nsigning_key = \"{}\"\n[deployment]\nkind = \"distributed\"\n\
             postgres_url = \"{pg_url}\"\nredis_url = \"{}\"\nkafka_brokers = \"{brokers}\"\n",
            key.display(),
            redis_url()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_caracal-gateway"))
        .args(["ledger-writer", "--config"])
        .arg(&config)
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, metrics)
}

/// The writer's metrics once they contain `needle`.
async fn writer_metrics_with(child: &mut std::process::Child, metrics: u16, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics")).await {
            if r.text().await.unwrap_or_default().contains(needle) {
                return;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the writer exited early"
        );
        assert!(
            Instant::now() < deadline,
            "the writer's metrics never showed {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A ledger writer started while its broker cannot be reached waits for
/// it (it does not exit), and a stop meanwhile ends it at once. Before, it
/// ignored the stop until its first request to the broker timed out (30 s),
/// then exited with that error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waits_for_an_unreachable_broker_and_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let dead = common::free_port();
    let (mut child, metrics) = writer_process(&format!("127.0.0.1:{dead}"), dir.path()).await;
    // Serving metrics: connected to PostgreSQL, reaching for Kafka.
    writer_metrics_with(&mut child, metrics, "").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let took = common::stop_within(&mut child, Duration::from_secs(8)).await;
    eprintln!("the writer exited {took:?} after SIGTERM");
}

/// A running writer whose broker goes silent stops promptly: the broker
/// requests its lag gauge has in flight (10 s timeouts, several in a row)
/// do not hold the process once its work is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_writer_stops_promptly_when_its_broker_goes_silent() {
    let (broker, proxy) = Broker::behind_proxy().await;
    create_topics(
        &broker.brokers,
        &[TopicSpec::new("caracal.metering.events", 3, 1)],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, metrics) = writer_process(&broker.brokers, dir.path()).await;
    // Assigned its partitions and reading their lag.
    writer_metrics_with(&mut child, metrics, "caracal_kafka_consumer_lag").await;
    proxy.set(Fault::Blackhole);
    // Past the next lag reading (every 5 s), which now waits on the broker.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let took = common::stop_within(&mut child, Duration::from_secs(8)).await;
    eprintln!("the writer exited {took:?} after SIGTERM");
}
