//! Ledger writer throughput: produces N spend events to a fresh topic on a
//! Kafka broker, then times, one after the other, over the same messages:
//! - `count`:  a consumer that only counts them (what the broker and
//!   librdkafka deliver);
//! - `decode`: the same, decoding each (what decoding adds);
//! - `writer`: ledger writers (the library's `Writer`, as the binary runs
//!   it), from their start until every row is in PostgreSQL.
//!
//! Each phase reads with a group of its own. The database is a fresh one
//! on the server at `--postgres-url`, dropped at the end. Run through
//! `load-tests/bench/ledger-writer.sh`.

#[path = "common/sample_call.rs"]
mod sample_call;

use std::time::{Duration, Instant};

use caracal_gateway::kafka::schema;
use caracal_gateway::ledger_writer::{ensure_topic, Writer, WriterConfig};
use caracal_gateway::store::PgStore;
use clap::Parser;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// A PostgreSQL server where this user may create databases.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    #[arg(long, default_value_t = 500_000)]
    events: usize,
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Writers in the group (at most one per partition does work).
    #[arg(long, default_value_t = 1)]
    writers: usize,
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Principals the events are spread over.
    #[arg(long, default_value_t = 1000)]
    principals: usize,
    /// Skip the count and decode phases.
    #[arg(long)]
    writer_only: bool,
    /// Skip the writer phase.
    #[arg(long)]
    no_writer: bool,
    /// librdkafka settings (KEY=VALUE) for every consumer.
    #[arg(long = "consumer-set", value_parser = key_value)]
    consumer_set: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topic = format!("bench-{}", uuid::Uuid::now_v7().simple());
    ensure_topic(&args.brokers, &topic, args.partitions).await?;

    let started = Instant::now();
    let last_ts = produce(&args, &topic).await?;
    report("produce", args.events, started.elapsed());

    if !args.writer_only {
        let t = consume(&args, &topic, false).await?;
        report("count", args.events, t);
        let t = consume(&args, &topic, true).await?;
        report("decode", args.events, t);
    }

    if args.no_writer {
        return Ok(());
    }
    let name = format!("caracal_bench_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&args.postgres_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let result = write(
        &args,
        &topic,
        &with_database(&args.postgres_url, &name),
        last_ts,
    )
    .await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    let (elapsed, batches, cpu) = result?;
    report("writer", args.events, elapsed);
    println!("writer batches: {batches}");
    println!(
        "writer phase CPU seconds: writer {:.1}, postgres {:.1}, tansu {:.1}, everything else {:.1} \
         (of {:.1} wall-clock seconds x {} cores)",
        cpu.own,
        cpu.postgres,
        cpu.tansu,
        cpu.other,
        elapsed.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}

/// CPU seconds used, from /proc (Linux): by this process, by PostgreSQL's
/// processes, by tansu, and by every other process.
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    own: f64,
    postgres: f64,
    tansu: f64,
    other: f64,
}

impl Cpu {
    fn now() -> Cpu {
        let me = std::process::id().to_string();
        let mut cpu = Cpu::default();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state … utime stime (fields 14 and 15).
            let Some((head, tail)) = stat.rsplit_once(") ") else {
                continue;
            };
            let comm = head.split_once(" (").map_or("", |(_, c)| c);
            let fields: Vec<&str> = tail.split_whitespace().collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let secs = (ticks(11) + ticks(12)) / 100.0;
            if name == me {
                cpu.own += secs;
            } else if comm == "postgres" {
                cpu.postgres += secs;
            } else if comm == "tansu" {
                cpu.tansu += secs;
            } else {
                cpu.other += secs;
            }
        }
        cpu
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            own: self.own - before.own,
            postgres: self.postgres - before.postgres,
            tansu: self.tansu - before.tansu,
            other: self.other - before.other,
        }
    }
}

fn report(phase: &str, n: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{phase:>8}: {n} events in {secs:.2} s = {:.0} events/s",
        n as f64 / secs
    );
}

/// N call events, a millisecond apart, over `principals` principals;
/// answers the last one's time.
async fn produce(args: &Args, topic: &str) -> anyhow::Result<i64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let base = jiff::Timestamp::now().as_millisecond() - args.events as i64;
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..args.events {
        let e = sample_call::call(i, args.principals, base + i as i64);
        let payload = schema::encode(&e);
        let key = schema::key(&e).to_vec();
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        // The queue holds 1 000 000 messages and at most 10 000 wait.
        let delivery = producer.send_result(record).map_err(|(e, _)| e)?;
        pending.push(delivery);
        if pending.len() == 10_000 {
            for d in pending.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending.drain(..) {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(base + args.events as i64 - 1)
}

/// Reads every message with a group of its own (decoding each if asked).
async fn consume(args: &Args, topic: &str, decode: bool) -> anyhow::Result<Duration> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", format!("{topic}-count-{decode}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // As the writer sets it (see `Writer::new`).
        .set("fetch.wait.max.ms", "25");
    for (k, v) in &args.consumer_set {
        config.set(k, v);
    }
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    let started = Instant::now();
    let mut n = 0;
    while n < args.events {
        let m = consumer.recv().await?;
        if decode {
            schema::decode(m.payload().unwrap_or_default())?;
        }
        n += 1;
    }
    Ok(started.elapsed())
}

/// Starts the writers and waits for every row; the time from their start,
/// the batches they wrote, and the CPU time used meanwhile.
async fn write(
    args: &Args,
    topic: &str,
    url: &str,
    last_ts: i64,
) -> anyhow::Result<(Duration, u64, Cpu)> {
    let store = PgStore::connect(url).await?;
    store.migrate().await?;
    let pool = sqlx::PgPool::connect(url).await?;
    let stop = CancellationToken::new();
    let cpu = Cpu::now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.writers {
        let mut config = WriterConfig::new(&args.brokers);
        config.topic = topic.to_string();
        config.group_id = format!("{topic}-writers");
        config.dlq_topic = format!("{topic}-dlq");
        config.batch_size = args.batch;
        config.client_overrides = args.consumer_set.clone();
        let writer = Writer::new(config, store.clone()).await?;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move { writer.run(stop).await }));
    }
    // Polling must not load the database it measures: the newest row's
    // time is one index probe; rows are counted (a scan) only once the
    // last event produced is in.
    let target = args.events as i64;
    loop {
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(ts_ms) FROM ledger_events")
            .fetch_one(&pool)
            .await?;
        if newest >= Some(last_ts) && store.ledger_rows().await? >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let cpu = Cpu::now().since(cpu);
    stop.cancel();
    let mut batches = 0;
    for t in tasks {
        batches += t.await?.batches;
    }
    store.close().await;
    Ok((elapsed, batches, cpu))
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[start..].find('/') {
        Some(slash) => &base[..start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}
