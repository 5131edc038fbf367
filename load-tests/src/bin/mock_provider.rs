#![forbid(unsafe_code)]
//! `caracal-mock-provider`: serves the mock OpenAI/Anthropic provider until
//! Ctrl-C or SIGTERM. Prints `caracal-mock-provider listening on http://ADDR`
//! to stdout once bound; logs go to stderr (`RUST_LOG`, default `info`).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use caracal_load_tests::mock::{self, MockConfig};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Fake OpenAI- and Anthropic-compatible provider (HTTP/1.1 and h2c).
#[derive(Debug, Parser)]
#[command(name = "caracal-mock-provider", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: SocketAddr,
    /// Delay before response headers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 20)]
    chunk_delay_ms: u64,
    /// Content chunks per streamed response.
    #[arg(long, default_value_t = 8)]
    chunks: usize,
    /// Completion tokens per response (capped by the request's max tokens).
    #[arg(long, default_value_t = 16)]
    completion_tokens: u64,
}

impl Args {
    fn config(&self) -> MockConfig {
        MockConfig {
            latency: Duration::from_millis(self.latency_ms),
            chunk_delay: Duration::from_millis(self.chunk_delay_ms),
            chunks: self.chunks,
            completion_tokens: self.completion_tokens,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    // Signals are caught from before the readiness line: a supervisor that
    // stops the mock as soon as it is ready must not kill it outright.
    let shutdown = shutdown_signal()?;
    let handle = mock::start(args.listen, args.config())
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "caracal-mock-provider listening on http://{}",
        handle.addr()
    )?;
    stdout.flush()?;
    drop(stdout);

    shutdown.await.context("waiting for a shutdown signal")?;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

/// Installs the handlers now; the future resolves on Ctrl-C, or on
/// SIGTERM where there is one.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => Ok(()),
                _ = term.recv() => Ok(()),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(tokio::signal::ctrl_c())
    }
}
