//! What a budgeted call costs the shared Redis: runs CALLS reservations,
//! each settled, through the distributed deployment's budget counters
//! (`RedisCounters`, the gateway's own code and scripts) from CONCURRENCY
//! tasks spread over PRINCIPALS principals with LINES budget lines each,
//! under a fresh key prefix, and reads Redis's own statistics before and
//! after: the CPU its main thread spent per call, the scripts' time per
//! call, and how many commands the scripts ran per call. Redis is one
//! thread for every replica of a deployment, so its time per call is what
//! bounds budgeted calls per second across all of them.
//!
//! Prints one JSON object. Assumes nothing else uses the Redis meanwhile
//! (its statistics are server-wide). Run through
//! `load-tests/bench/redis-counters.sh`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use caracal_gateway::budget::counters::{BoxFuture, CounterId, Counters, Line, ReservationId};
use caracal_gateway::budget::window::{Period, WindowSpec, WindowType};
use caracal_gateway::money::{Currency, Decimal};
use caracal_gateway::shared::{connect, Keys, RedisCounters};
use caracal_gateway::snapshot::{SourceError, SpendHistory};
use caracal_gateway::store::Spend;
use clap::Parser;
use jiff::SignedDuration;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis_url: String,
    /// Reserve + settle pairs.
    #[arg(long, default_value_t = 50_000)]
    calls: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 100)]
    principals: usize,
    /// Budget lines of each principal (a daily and a monthly limit are
    /// two; each is a counter every call reserves in).
    #[arg(long, default_value_t = 1)]
    lines: usize,
}

/// No spend recorded yet: every counter primes to zero.
struct NoHistory;

impl SpendHistory for NoHistory {
    fn spend_since(&self, _: &str, _: i64) -> BoxFuture<Result<Vec<Spend>, SourceError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// `INFO commandstats` and `INFO cpu` as numbers: calls and µs by command,
/// and the main thread's CPU seconds.
async fn redis_stats(
    conn: &mut redis::aio::ConnectionManager,
) -> anyhow::Result<(BTreeMap<String, (u64, u64)>, f64)> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut commands = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| -> u64 {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        commands.insert(name.to_string(), (field("calls="), field("usec=")));
    }
    let cpu: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let seconds = |key: &str| -> f64 {
        cpu.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let main = seconds("used_cpu_sys_main_thread:") + seconds("used_cpu_user_main_thread:");
    Ok((commands, main))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.calls > 0 && args.concurrency > 0 && args.principals > 0 && args.lines > 0
    );
    let conn = connect(&args.redis_url).await?;
    let prefix = format!("caracal-counters-bench-{}:", std::process::id());
    let counters = Arc::new(RedisCounters::new(
        conn.clone(),
        Keys::new(&prefix)?,
        SignedDuration::from_mins(1),
        Arc::new(NoHistory),
    ));
    let periods = [Period::Daily, Period::Monthly, Period::Weekly];
    let lines: Vec<Line> = (0..args.lines)
        .map(|i| {
            let spec = WindowSpec::new(periods[i % periods.len()], WindowType::Calendar, "UTC")
                .expect("a valid window");
            Line {
                id: CounterId::new(&format!("policy-{i}"), &spec),
                policy_version: 1,
                limit: Decimal::from(1_000_000_000),
                currency: Currency::USD,
                spec,
            }
        })
        .collect();
    let lines = Arc::new(lines);
    let amount: Decimal = "0.0025".parse()?;
    let actual: Decimal = "0.0019".parse()?;

    // Every counter primed before measuring (priming is once per counter).
    for p in 0..args.principals {
        let principal = format!("bench-{p}");
        let now = caracal_gateway::clock::now();
        let hold = counters
            .reserve(&principal, ReservationId::new(), &lines, amount, now)
            .await
            .map_err(|e| anyhow::anyhow!("priming reserve: {e:?}"))?;
        counters.release(&hold, now).await?;
    }

    let mut stats_conn = conn.clone();
    let (before, cpu_before) = redis_stats(&mut stats_conn).await?;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (counters, lines, next) = (counters.clone(), lines.clone(), next.clone());
        let (calls, principals) = (args.calls, args.principals);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= calls {
                    return Ok::<_, anyhow::Error>(());
                }
                let principal = format!("bench-{}", i % principals);
                let now = caracal_gateway::clock::now();
                let hold = counters
                    .reserve(&principal, ReservationId::new(), &lines, amount, now)
                    .await
                    .map_err(|e| anyhow::anyhow!("reserve: {e:?}"))?;
                counters
                    .settle(&hold, actual, caracal_gateway::clock::now())
                    .await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (after, cpu_after) = redis_stats(&mut stats_conn).await?;

    let calls = args.calls as f64;
    let delta = |name: &str| -> (u64, u64) {
        let (c1, u1) = after.get(name).copied().unwrap_or_default();
        let (c0, u0) = before.get(name).copied().unwrap_or_default();
        (c1.saturating_sub(c0), u1.saturating_sub(u0))
    };
    let (scripts, script_us) = delta("evalsha");
    // Commands the scripts ran: everything but the scripts themselves and
    // this program's INFO.
    let mut inner = BTreeMap::new();
    for name in after.keys() {
        if name == "evalsha" || name == "info" || name.starts_with("script") {
            continue;
        }
        let (c, _) = delta(name);
        if c > 0 {
            inner.insert(name.clone(), c as f64 / calls);
        }
    }
    let commands_per_call: f64 = inner.values().sum();
    let result = serde_json::json!({
        "calls": args.calls,
        "concurrency": args.concurrency,
        "principals": args.principals,
        "lines": args.lines,
        "calls_per_second": calls / elapsed,
        "redis_cpu_us_per_call": (cpu_after - cpu_before) * 1e6 / calls,
        "scripts_per_call": scripts as f64 / calls,
        "script_us_per_call": script_us as f64 / calls,
        "commands_per_call": commands_per_call,
        "commands": inner,
    });
    println!("{result}");

    // Leave nothing behind.
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut stats_conn)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut stats_conn)
                .await?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(())
}
