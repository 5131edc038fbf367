//! `caracal-gateway serve --config FILE`: runs the gateway on its own.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists instead of glibc's arenas, whose
/// consolidation showed in the request path's profile (see
/// load-tests/results/2026-11-30-lifecycle-ab.md).
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Serve {
        config,
        listen,
        metrics_listen,
    } = Cli::parse().command;
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
