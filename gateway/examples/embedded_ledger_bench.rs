//! The embedded ledger writer's throughput: events emitted into the
//! `EmbeddedSink` the data path uses, written by the in-process writer
//! task into a fresh SQLite file (WAL, `synchronous = NORMAL`, as the
//! gateway opens it), timed from the first emit until every row is
//! written, with the sealer running beside it as in the gateway (then the
//! time it takes to seal what it had not reached). Run by
//! `load-tests/bench/embedded-ledger.sh`.
//!
//! Events look like real calls (every column a forwarded call fills), spread
//! over `--principals` principals; one minute of wall time holds
//! `--per-minute` of them, so the per-minute spend aggregates see as many
//! distinct minutes as a real day would at that rate.

use std::sync::Arc;
use std::time::Instant;

#[path = "common/sample_call.rs"]
mod sample_call;

use caracal_gateway::ledger::{EventSink, LedgerEvent, LedgerWriter, Retention};
use caracal_gateway::merkle::checkpoint::LedgerKey;
use caracal_gateway::merkle::seal;
use caracal_gateway::store::{SqliteStore, Store};
use clap::Parser;

/// The allocator the gateway runs with.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Events to write.
    #[arg(long, default_value_t = 500_000)]
    events: usize,
    /// Principals the events are spread over.
    #[arg(long, default_value_t = 1000)]
    principals: usize,
    /// Events per minute of event time.
    #[arg(long, default_value_t = 60_000)]
    per_minute: usize,
}

fn event(i: usize, args: &Args, base: i64) -> LedgerEvent {
    let ts_ms = base + (i as i64 * 60_000) / args.per_minute.max(1) as i64;
    sample_call::call(i, args.principals, ts_ms)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // As the gateway runs.
    caracal_gateway::runtime::without_huge_pages();
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("caracal.db")).await?);
    let base = jiff::Timestamp::now().as_millisecond();
    let events: Vec<LedgerEvent> = (0..args.events).map(|i| event(i, &args, base)).collect();
    let (writer, sink) = LedgerWriter::start(store.clone());
    // The sealer runs beside the writer, as in the gateway: every second it
    // seals what is due, in batches of the default size (1000), on the
    // ledger's connection.
    let key = LedgerKey::parse(&LedgerKey::generate())?;
    let stop = tokio_util::sync::CancellationToken::new();
    let sealer = seal::spawn(store.clone(), key, seal::Policy::default(), stop.clone());
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |k: usize| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    };
    let (cpu0, start) = (cpu(), Instant::now());
    for e in events {
        sink.emit(e, Retention::Keep);
        // The data path emits from many tasks; the writer keeps up or the
        // backlog grows: never past the soft limit the gateway refuses at.
        while writer.backlog() > 40_000 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    while writer.backlog() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_s = cpu() - cpu0;
    writer.finish().await;
    // What the sealer had not reached when the last row was written: on
    // stop it seals everything pending.
    let tail = Instant::now();
    stop.cancel();
    sealer.await?;
    let tail_secs = tail.elapsed().as_secs_f64();
    let total_cpu = cpu() - cpu0;
    let rows = store
        .query_ledger(&caracal_gateway::store::LedgerFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await?
        .len();
    anyhow::ensure!(rows == 1 || args.events == 0, "no rows written");
    let sealed = store.latest_batch().await?.map_or(0, |b| b.end);
    anyhow::ensure!(
        sealed as usize == args.events,
        "sealed {sealed} of {}",
        args.events
    );
    let n = args.events.max(1) as f64;
    println!(
        "{{\"events\": {}, \"seconds\": {secs:.3}, \"events_per_second\": {:.0}, \"cpu_seconds\": {cpu_s:.2}, \"cpu_us_per_event\": {:.2}, \"seal_tail_seconds\": {tail_secs:.3}, \"sealed_per_second\": {:.0}, \"total_cpu_us_per_event\": {:.2}}}",
        args.events,
        args.events as f64 / secs,
        cpu_s * 1e6 / n,
        args.events as f64 / (secs + tail_secs),
        total_cpu * 1e6 / n
    );
    Ok(())
}
