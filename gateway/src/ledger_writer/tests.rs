//! The ledger writer against a real broker (tansu, see `test_broker.rs`)
//! and a real PostgreSQL (a database per test, see the store's harness).
//! Each test has its own broker, topics and group.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caracal_load_tests::faults::{Fault, FaultProxy};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::Row;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::kafka::schema;
use crate::ledger::{Decision, EventCode, EventKind, LedgerEvent, Mode};
use crate::money::Decimal;
use crate::store::pg::conformance_tests::{postgres, Postgres};
use crate::store::{minute_of, DeadLetter, MINUTE_MS};
use caracal_load_tests::broker::Broker;

const WAIT: Duration = Duration::from_secs(60);

/// A broker and a database of the test's own, and its topic (with
/// `partitions` partitions) and DLQ topic.
struct Env {
    broker: Broker,
    pg: Postgres,
    topic: String,
    dlq_topic: String,
}

async fn env(partitions: i32) -> Env {
    let broker = Broker::start().await;
    let pg = postgres().await;
    let topic = format!("events-{}", uuid::Uuid::now_v7().simple());
    ensure_topic(&broker.brokers.clone(), &topic, partitions)
        .await
        .expect("creating the events topic");
    Env {
        broker,
        pg,
        dlq_topic: format!("{topic}-dlq"),
        topic,
    }
}

impl Env {
    /// A store reaching the test database through a fault proxy.
    async fn store_behind_proxy(&self) -> (FaultProxy, PgStore) {
        let proxy = FaultProxy::start(server_of(&self.pg.url))
            .await
            .expect("proxy");
        let store = PgStore::connect(&through(&self.pg.url, proxy.addr()))
            .await
            .expect("connect through the proxy");
        (proxy, store)
    }

    fn config(&self) -> WriterConfig {
        let mut c = WriterConfig::new(self.broker.brokers.clone());
        c.topic = self.topic.clone();
        c.dlq_topic = self.dlq_topic.clone();
        c.group_id = format!("{}-group", self.topic);
        c.linger = Duration::from_millis(20);
        c.write_timeout = Duration::from_secs(5);
        c.report_interval = Duration::from_millis(200);
        c.client_overrides = vec![
            ("session.timeout.ms".into(), "10000".into()),
            ("heartbeat.interval.ms".into(), "1000".into()),
        ];
        c
    }

    async fn writer(&self, config: WriterConfig, store: PgStore) -> Running {
        let writer = Arc::new(Writer::new(config, store).await.expect("writer"));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (writer, stop) = (writer.clone(), stop.clone());
            async move { writer.run(stop).await }
        });
        Running { writer, stop, task }
    }

    async fn produce(&self, events: &[LedgerEvent]) {
        let raw: Vec<(Vec<u8>, Vec<u8>)> = events
            .iter()
            .map(|e| (schema::key(e).to_vec(), schema::encode(e)))
            .collect();
        produce_raw(&self.broker.brokers.clone(), &self.topic, &raw).await;
    }

    async fn lag(&self, group: &str) -> Vec<PartitionLag> {
        consumer_lag(&self.broker.brokers.clone(), group, &self.topic)
            .await
            .expect("consumer lag")
    }
}

struct Running {
    writer: Arc<Writer>,
    stop: CancellationToken,
    task: JoinHandle<Totals>,
}

impl Running {
    async fn stop(self) -> Totals {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the writer stops")
            .expect("the writer task")
    }
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

async fn produce_raw(brokers: &str, topic: &str, messages: &[(Vec<u8>, Vec<u8>)]) {
    let producer = producer(brokers);
    let sends = messages.iter().map(|(key, payload)| {
        producer.send(
            FutureRecord::to(topic)
                .key(key.as_slice())
                .payload(payload.as_slice()),
            Duration::from_secs(30),
        )
    });
    for result in futures_util::future::join_all(sends).await {
        result.map_err(|(e, _)| e).expect("produce");
    }
}

/// Waits until `check` holds, polling; panics naming `what` after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 2026-11-30T10:00:00Z.
const BASE_MS: i64 = 1_796_032_800_000;

/// `n` call events of `principals` principals, spread over a few minutes,
/// with costs of up to 9 decimals (the most money has).
fn calls(n: usize, principals: usize) -> Vec<LedgerEvent> {
    (0..n)
        .map(|i| {
            let mut e = LedgerEvent::new(
                EventKind::Call,
                Mode::BaseUrl,
                Decision::Allow,
                EventCode::OK,
            );
            let ts = BASE_MS + (i as i64) * 997;
            e.ts_ms = ts;
            e.ts = jiff::Timestamp::from_millisecond(ts).unwrap().to_string();
            e.principal_id = Some(format!("agent-{}", i % principals));
            e.cost = Some(Decimal::new(123_456_789 + (i as i64) * 7_777, 9));
            e.currency = Some(if i % 7 == 0 { "EUR" } else { "USD" }.into());
            e
        })
        .collect()
}

/// The events' cost per (principal, minute, currency), as the aggregates
/// should hold it.
fn expected_minutes(events: &[LedgerEvent]) -> BTreeMap<(String, i64, String), (Decimal, i64)> {
    let mut sums: BTreeMap<(String, i64, String), (Decimal, i64)> = BTreeMap::new();
    for e in events {
        let (Some(p), Some(cost)) = (&e.principal_id, e.cost) else {
            continue;
        };
        let key = (
            p.clone(),
            minute_of(e.ts_ms),
            e.currency.clone().unwrap_or_default(),
        );
        let entry = sums.entry(key).or_default();
        entry.0 += cost;
        entry.1 += 1;
    }
    sums
}

async fn minutes(store: &PgStore) -> BTreeMap<(String, i64, String), (Decimal, i64)> {
    sqlx::query("SELECT principal_id, minute_ms, currency, amount::text AS amount, calls FROM spend_minutes")
        .fetch_all(store.pool())
        .await
        .expect("spend_minutes")
        .iter()
        .map(|r| {
            let amount: String = r.get("amount");
            (
                (r.get("principal_id"), r.get("minute_ms"), r.get("currency")),
                (Decimal::from_str_exact(&amount).unwrap(), r.get("calls")),
            )
        })
        .collect()
}

/// Every event of `events` is in the ledger once, nothing else is, and
/// the aggregates are the exact sums of their costs.
async fn assert_exactly_once(store: &PgStore, events: &[LedgerEvent]) {
    let rows: Vec<String> = sqlx::query_scalar("SELECT id FROM ledger_events ORDER BY id")
        .fetch_all(store.pool())
        .await
        .expect("ids");
    let mut ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(rows.len(), ids.len(), "ledger rows");
    assert_eq!(rows, ids, "ledger ids");
    let mut unique = events.to_vec();
    unique.sort_by(|a, b| a.id.cmp(&b.id));
    unique.dedup_by(|a, b| a.id == b.id);
    assert_eq!(
        minutes(store).await,
        expected_minutes(&unique),
        "aggregates"
    );
    // And against the rows themselves, in SQL.
    let mismatched: i64 = sqlx::query_scalar(
        "WITH l AS (
             SELECT principal_id, ts_ms - (((ts_ms % 60000) + 60000) % 60000) AS minute_ms,
                    COALESCE(currency, '') AS currency, SUM(cost::numeric) AS amount, COUNT(*) AS calls
             FROM ledger_events
             WHERE kind = 'call' AND cost IS NOT NULL AND principal_id IS NOT NULL
             GROUP BY 1, 2, 3)
         SELECT COUNT(*) FROM l FULL JOIN spend_minutes s USING (principal_id, minute_ms, currency)
         WHERE l.amount IS DISTINCT FROM s.amount OR l.calls IS DISTINCT FROM s.calls",
    )
    .fetch_one(store.pool())
    .await
    .expect("aggregates against rows");
    assert_eq!(mismatched, 0, "aggregates differing from the ledger rows");
}

async fn rows(store: &PgStore) -> i64 {
    store.ledger_rows().await.expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_once_with_exact_aggregates() {
    let env = env(1).await;
    let events = calls(3000, 5);
    env.produce(&events).await;
    let w = env.writer(env.config(), env.pg.store.clone()).await;
    eventually("3000 rows", || async { rows(&env.pg.store).await == 3000 }).await;
    let totals = w.stop().await;
    assert_eq!(totals.inserted, 3000);
    assert_eq!(totals.dead_letters, 0);
    assert_exactly_once(&env.pg.store, &events).await;

    // What a replica primes from: one Spend per minute and currency,
    // summing to the principal's costs exactly.
    let history = env.pg.store.clone();
    let spend = crate::snapshot::SpendHistory::spend_since(&history, "agent-1", BASE_MS)
        .await
        .expect("aggregated spend");
    let total: Decimal = spend.iter().map(|s| s.amount).sum();
    let want: Decimal = events
        .iter()
        .filter(|e| e.principal_id.as_deref() == Some("agent-1"))
        .filter_map(|e| e.cost)
        .sum();
    assert_eq!(total, want);
    assert!(spend.iter().all(|s| s.ts_ms % MINUTE_MS == 0));
    let rows = crate::store::LedgerStore::spend_since(&env.pg.store, "agent-1", BASE_MS + 120_000)
        .await
        .expect("spend rows");
    let from_rows: Decimal = rows.iter().map(|s| s.amount).sum();
    let aggregated: Decimal = env
        .pg
        .store
        .spend_aggregated_since("agent-1", BASE_MS + 120_000)
        .await
        .expect("aggregated")
        .iter()
        .map(|s| s.amount)
        .sum();
    assert_eq!(
        aggregated, from_rows,
        "from a whole minute on, the two agree exactly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_events_are_written_once_and_counted_once() {
    let env = env(1).await;
    let events = calls(2000, 3);
    env.produce(&events).await;
    env.produce(&events[..1500]).await;
    let config = env.config();
    let group = config.group_id.clone();
    let w = env.writer(config, env.pg.store.clone()).await;
    eventually("every message committed", || async {
        env.lag(&group)
            .await
            .iter()
            .all(|l| l.lag == 0 && l.committed == Some(3500))
    })
    .await;
    let totals = w.stop().await;
    assert_eq!((totals.inserted, totals.duplicates), (2000, 1500));
    assert_exactly_once(&env.pg.store, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_in_a_group_share_a_two_partition_topic() {
    let env = env(2).await;
    let config = env.config();
    let a = env.writer(config.clone(), env.pg.store.clone()).await;
    let b = env.writer(config, env.pg.store.clone()).await;
    eventually("each writer has a partition", || async {
        a.writer.assigned().len() == 1 && b.writer.assigned().len() == 1
    })
    .await;
    let events = calls(4000, 20);
    env.produce(&events).await;
    eventually("4000 rows", || async { rows(&env.pg.store).await == 4000 }).await;
    let (ta, tb) = (a.stop().await, b.stop().await);
    assert!(ta.inserted > 0 && tb.inserted > 0, "{ta:?} {tb:?}");
    assert_eq!(ta.inserted + tb.inserted, 4000);
    assert_exactly_once(&env.pg.store, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_queue_and_the_writer_goes_on() {
    let env = env(1).await;
    let good = calls(4, 2);
    let newer = String::from_utf8(schema::encode(&good[1]))
        .unwrap()
        .replacen("\"schema\":1", "\"schema\":2", 1)
        .into_bytes();
    // A NUL in a text column: valid JSON, refused by PostgreSQL.
    let mut refused = good[2].clone();
    refused.detail = Some("nul\u{0}byte".into());
    let raw = vec![
        (b"agent-0".to_vec(), schema::encode(&good[0])),
        (b"agent-1".to_vec(), b"\xff\xfe not json".to_vec()),
        (b"agent-1".to_vec(), newer),
        (b"agent-0".to_vec(), schema::encode(&refused)),
        (b"agent-1".to_vec(), schema::encode(&good[3])),
    ];
    produce_raw(&env.broker.brokers.clone(), &env.topic, &raw).await;
    let config = env.config();
    let group = config.group_id.clone();
    let w = env.writer(config, env.pg.store.clone()).await;
    eventually("the good events and three dead letters", || async {
        rows(&env.pg.store).await == 2
            && env.pg.store.dead_letter_count().await.unwrap() == 3
            && env.lag(&group).await[0].lag == 0
    })
    .await;
    let letters = dlq_list(&env.pg.store, None).await.expect("dlq list");
    let mut by_offset: Vec<(i64, &str, Option<&str>)> = letters
        .iter()
        .map(|l| (l.offset, l.reason.as_str(), l.event_id.as_deref()))
        .collect();
    by_offset.sort();
    assert_eq!(
        by_offset,
        [
            (1, "malformed", None),
            (2, "unknown_schema_version", Some(good[1].id.as_str())),
            (3, "rejected", Some(good[2].id.as_str())),
        ]
    );
    let rejected = &letters.iter().find(|l| l.offset == 3).unwrap();
    assert!(rejected.error.contains("0x00"), "{}", rejected.error);
    assert_eq!(rejected.payload.as_deref(), Some(&raw[3].1[..]));

    // Each is on the DLQ topic too, with its reason.
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.broker.brokers.clone())
        .set("group.id", format!("{}-reader", env.dlq_topic))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dlq reader");
    reader.subscribe(&[&env.dlq_topic]).expect("subscribe");
    let mut reasons = Vec::new();
    while reasons.len() < 3 {
        let m = tokio::time::timeout(WAIT, reader.recv())
            .await
            .expect("a message on the DLQ topic")
            .expect("dlq message");
        let headers = m.headers().expect("headers");
        let reason = headers
            .iter()
            .find(|h| h.key == "reason")
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("a reason header");
        reasons.push(reason);
    }
    reasons.sort();
    assert_eq!(reasons, ["malformed", "rejected", "unknown_schema_version"]);

    // The writer goes on.
    let later = calls(10, 2);
    env.produce(&later).await;
    eventually("later events", || async { rows(&env.pg.store).await == 12 }).await;

    // Retrying what still cannot be stored keeps it, one attempt more.
    let retried = dlq_retry(&env.pg.store, &RetryTarget::All)
        .await
        .expect("retry");
    assert_eq!(retried.len(), 3);
    assert!(retried.iter().all(|r| !r.stored && r.error.is_some()));
    assert!(dlq_list(&env.pg.store, None)
        .await
        .unwrap()
        .iter()
        .all(|l| l.attempts == 2 && l.retried_at.is_some()));

    // A letter whose payload is (now) valid is stored and leaves the queue.
    let mut fixed = calls(1, 1).remove(0);
    fixed.principal_id = Some("agent-9".into());
    env.pg
        .store
        .insert_dead_letter(&DeadLetter {
            topic: env.topic.clone(),
            partition: 0,
            offset: 1000,
            event_id: Some(fixed.id.clone()),
            key: Some(b"agent-9".to_vec()),
            payload: Some(schema::encode(&fixed)),
            reason: "rejected".into(),
            error: "was refused once".into(),
            first_seen: jiff::Timestamp::now().to_string(),
            attempts: 1,
            retried_at: None,
        })
        .await
        .expect("insert a dead letter");
    assert_eq!(dlq_get(&env.pg.store, &fixed.id).await.unwrap().len(), 1);
    let retried = dlq_retry(&env.pg.store, &RetryTarget::Event(fixed.id.clone()))
        .await
        .expect("retry");
    assert_eq!(retried.len(), 1);
    assert!(retried[0].stored, "{:?}", retried[0]);
    assert!(dlq_get(&env.pg.store, &fixed.id).await.unwrap().is_empty());
    assert_eq!(env.pg.store.dead_letter_count().await.unwrap(), 3);
    let totals = w.stop().await;
    assert_eq!(totals.dead_letters, 3);
    let mut all = vec![good[0].clone(), good[3].clone(), fixed];
    all.extend(later);
    assert_exactly_once(&env.pg.store, &all).await;
}

/// The store's URL with its server replaced by `proxy`.
fn through(url: &str, proxy: std::net::SocketAddr) -> String {
    caracal_load_tests::faults::url_through(url, proxy)
}

fn server_of(url: &str) -> std::net::SocketAddr {
    caracal_load_tests::faults::server_of(url, 5432)
}

/// How many messages the group committed, over the topic's partitions.
async fn committed(env: &Env, group: &str) -> i64 {
    env.lag(group)
        .await
        .iter()
        .filter_map(|l| l.committed)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_off_then_back_loses_nothing_and_commits_nothing_unstored() {
    let env = env(1).await;
    let (proxy, store) = env.store_behind_proxy().await;
    let config = env.config();
    let group = config.group_id.clone();
    let w = env.writer(config, store).await;
    let first = calls(1000, 4);
    env.produce(&first).await;
    eventually("the first events committed", || async {
        committed(&env, &group).await == 1000
    })
    .await;

    proxy.set(Fault::Blackhole);
    let second = calls(1000, 4);
    env.produce(&second).await;
    // While the database is unreachable, offsets stay at what is stored.
    let observe = Instant::now() + Duration::from_secs(4);
    while Instant::now() < observe {
        let (stored, done) = (rows(&env.pg.store).await, committed(&env, &group).await);
        assert!(done <= stored, "committed {done} with {stored} rows stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rows(&env.pg.store).await, 1000);
    proxy.set(Fault::Reset);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set(Fault::Pass);
    eventually("everything committed", || async {
        committed(&env, &group).await == 2000
    })
    .await;
    let totals = w.stop().await;
    assert_eq!(totals.dead_letters, 0);
    let mut all = first;
    all.extend(second);
    assert_exactly_once(&env.pg.store, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_before_its_database_commit_leaves_its_batch_to_the_next() {
    let env = env(1).await;
    let (proxy, store) = env.store_behind_proxy().await;
    let config = env.config();
    let group = config.group_id.clone();
    let a = env.writer(config.clone(), store).await;
    eventually("writer a has the partition", || async {
        !a.writer.assigned().is_empty()
    })
    .await;
    proxy.set(Fault::Blackhole);
    let events = calls(1500, 3);
    env.produce(&events).await;
    eventually("writer a reads the events", || async {
        a.writer.received() == 1500
    })
    .await;
    // Writer a is stuck writing them: kill it.
    a.task.abort();
    let _ = a.task.await;
    drop(a.writer);
    assert_eq!(rows(&env.pg.store).await, 0);
    assert_eq!(committed(&env, &group).await, 0);

    let b = env.writer(config, env.pg.store.clone()).await;
    eventually("everything committed", || async {
        committed(&env, &group).await == 1500
    })
    .await;
    let totals = b.stop().await;
    assert_eq!(totals.inserted, 1500);
    proxy.set(Fault::Pass);
    assert_exactly_once(&env.pg.store, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_between_its_database_and_offset_commits_causes_no_duplicate() {
    let env = env(1).await;
    let events = calls(3000, 3);
    env.produce(&events).await;
    let mut config = env.config();
    let group = config.group_id.clone();
    config.batch_size = 1000;
    config.crash_after_store = true;
    let a = env.writer(config.clone(), env.pg.store.clone()).await;
    let ta = tokio::time::timeout(WAIT, a.task)
        .await
        .expect("writer a stops after one batch")
        .expect("task");
    drop(a.writer);
    assert_eq!(ta.batches, 0);
    let stored = rows(&env.pg.store).await;
    assert!(stored > 0, "writer a stored its batch");
    assert_eq!(committed(&env, &group).await, 0);

    config.crash_after_store = false;
    let b = env.writer(config, env.pg.store.clone()).await;
    eventually("everything committed", || async {
        committed(&env, &group).await == 3000
    })
    .await;
    let tb = b.stop().await;
    assert_eq!(tb.inserted, 3000 - stored as u64);
    assert_eq!(tb.duplicates, stored as u64);
    assert_exactly_once(&env.pg.store, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_goes_to_zero() {
    let env = env(2).await;
    let events = calls(600, 6);
    // One record per batch: tansu answers the latest offset of a partition
    // as its last batch's first offset + 1, so with batches of several
    // records its high watermark would be short of the end.
    let producer = producer(&env.broker.brokers.clone());
    for e in &events {
        let payload = schema::encode(e);
        let record = FutureRecord::to(&env.topic)
            .key(schema::key(e))
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    let config = env.config();
    let group = config.group_id.clone();
    let before = env.lag(&group).await;
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|l| l.committed.is_none()));
    assert_eq!(before.iter().map(|l| l.lag).sum::<i64>(), 600);
    assert_eq!(before.iter().map(|l| l.high_watermark).sum::<i64>(), 600);
    let w = env.writer(config, env.pg.store.clone()).await;
    eventually("no lag", || async {
        env.lag(&group).await.iter().all(|l| l.lag == 0)
    })
    .await;
    w.stop().await;
    let after = env.lag(&group).await;
    assert!(after
        .iter()
        .all(|l| l.committed == Some(l.high_watermark) && l.lag == 0));
    assert!(matches!(
        consumer_lag(&env.broker.brokers.clone(), &group, "no-such-topic").await,
        Err(LagError::NoTopic(_)) | Err(LagError::Kafka(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_joining_mid_stream_takes_partitions_over_without_loss_or_duplicates() {
    let env = env(2).await;
    let mut config = env.config();
    config.batch_size = 500;
    let group = config.group_id.clone();
    let events = calls(8000, 40);
    let a = env.writer(config.clone(), env.pg.store.clone()).await;
    eventually("writer a has both partitions", || async {
        a.writer.assigned().len() == 2
    })
    .await;
    env.produce(&events[..4000]).await;
    eventually("writer a is under way", || async {
        rows(&env.pg.store).await > 0
    })
    .await;
    // A rebalance while writer a may have batches in hand: it finishes
    // them and commits only the partitions it still has; b redelivers from
    // the last commit, and the ledger skips what a already wrote.
    let b = env.writer(config, env.pg.store.clone()).await;
    eventually("one partition each", || async {
        a.writer.assigned().len() == 1 && b.writer.assigned().len() == 1
    })
    .await;
    env.produce(&events[4000..]).await;
    eventually("everything committed", || async {
        committed(&env, &group).await == 8000
    })
    .await;
    let (ta, tb) = (a.stop().await, b.stop().await);
    assert!(tb.inserted > 0, "{tb:?}");
    assert_eq!(ta.inserted + tb.inserted, 8000, "{ta:?} {tb:?}");
    assert_exactly_once(&env.pg.store, &events).await;
}
