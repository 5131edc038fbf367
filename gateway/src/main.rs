//! `caracal-gateway serve --config FILE`: runs the gateway on its own.
//! `caracal-gateway ledger-writer --config FILE`: runs one ledger writer of
//! a distributed workspace.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists instead of glibc's arenas, whose
/// consolidation showed in the request path's profile (see
/// load-tests/results/2026-11-30-lifecycle-ab.md). The feature
/// `system-allocator` builds with the C allocator instead, for heap
/// profilers that see only malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Caracal gateway: authenticates, enforces and meters AI agents' outbound calls.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway in the foreground until SIGINT/SIGTERM.
    Serve {
        /// Workspace configuration file (config.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Override gateway.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override gateway.metrics_listen.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Run a ledger writer (distributed workspaces) until SIGINT/SIGTERM:
    /// consume spend events and write them to PostgreSQL.
    LedgerWriter {
        /// Workspace configuration file (config.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Where to serve /metrics (default gateway.metrics_listen).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
}

/// How long the process waits at exit, once its work is finished, for
/// blocking calls still running on the runtime's blocking threads. A
/// writer's lag gauge asks the broker with a 10 s timeout per request,
/// several in a row: against an unreachable broker, waiting for them made
/// a stopped writer linger for tens of seconds after it had finished. They
/// hold nothing that must be kept (the writer's batch is stored and its
/// offsets committed before `run` returns).
const EXIT_WAIT: Duration = Duration::from_secs(2);

fn main() -> anyhow::Result<()> {
    caracal_gateway::runtime::without_huge_pages();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve {
                config,
                listen,
                metrics_listen,
            } => serve(config, listen, metrics_listen).await,
            Command::LedgerWriter {
                config,
                metrics_listen,
            } => ledger_writer(config, metrics_listen).await,
        }
    });
    runtime.shutdown_timeout(EXIT_WAIT);
    result
}

async fn serve(
    config: PathBuf,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let config =
        caracal_config::Config::load(&config)?.with_overrides(&caracal_config::Overrides {
            listen,
            metrics_listen,
        });
    caracal_gateway::ops::logging::init(Some(&config.log_file)).context("opening the log file")?;
    let gateway = caracal_gateway::start(config).await?;
    caracal_gateway::runtime::wait_for_signal().await;
    gateway.shutdown().await;
    Ok(())
}

async fn ledger_writer(config: PathBuf, metrics_listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let config = caracal_config::Config::load(&config)?;
    caracal_gateway::ops::logging::init(None).context("starting the logs")?;
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            caracal_gateway::runtime::wait_for_signal().await;
            stop.cancel();
        }
    });
    caracal_gateway::ledger_writer::service::run(&config, metrics_listen, stop).await?;
    Ok(())
}
