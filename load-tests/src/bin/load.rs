#![forbid(unsafe_code)]
//! `caracal-load`: an HTTP load generator, closed loop (N workers) or open
//! loop (`--rate`: requests at a constant rate). Prints a summary of
//! the measured window to stdout (`--json`: one JSON object); progress
//! goes to stderr.

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use caracal_load_tests::load::{self, Header, LoadConfig, Method};
use clap::Parser;
use reqwest::Url;

/// HTTP load: N workers, each sending a request, reading the whole body,
/// and sending the next (closed loop); or, with --rate, requests sent at a
/// constant rate whatever the responses do (open loop).
#[derive(Debug, Parser)]
#[command(name = "caracal-load", version)]
struct Args {
    /// Target URL.
    #[arg(long)]
    url: Url,
    /// GET or POST.
    #[arg(long, default_value = "GET")]
    method: Method,
    /// Request body (JSON unless a content-type header says otherwise).
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the request body from this file.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Extra request header, 'Name: value'; repeatable.
    #[arg(long = "header", short = 'H', value_parser = load::parse_header)]
    headers: Vec<Header>,
    /// HTTP or HTTPS proxy, credentials in the userinfo
    /// (https://USER:PASS@HOST:PORT).
    #[arg(long)]
    proxy: Option<Url>,
    /// Trust only the certificates in this PEM file (target and proxy).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Concurrent workers (requests in flight); with --rate, the most
    /// requests in flight at once.
    #[arg(long, default_value = "16")]
    concurrency: NonZeroUsize,
    /// Open loop: send requests at this constant rate (per second) and
    /// measure each one's latency from when it was due, so a slow server
    /// cannot slow the load down and hide its latency.
    #[arg(long)]
    rate: Option<f64>,
    /// Length of the measured window (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = load::parse_duration)]
    duration: Duration,
    /// Load before the measured window, not counted.
    #[arg(long, default_value = "2s", value_parser = load::parse_duration)]
    warmup: Duration,
    /// Per-request timeout; a request over it counts as an error.
    #[arg(long, default_value = "30s", value_parser = load::parse_duration)]
    timeout: Duration,
    /// Force HTTP/1.1.
    #[arg(long)]
    http1: bool,
    /// Name of this run in the output (default: the URL).
    #[arg(long)]
    label: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn config(self) -> anyhow::Result<LoadConfig> {
        let body = load::load_body(self.body, self.body_file.as_deref())?;
        Ok(LoadConfig {
            label: self.label.unwrap_or_else(|| self.url.to_string()),
            url: self.url,
            method: self.method,
            body,
            headers: load::header_map(self.headers),
            proxy: self.proxy,
            ca_file: self.ca_file,
            concurrency: self.concurrency,
            rate: self.rate,
            warmup: self.warmup,
            duration: self.duration,
            timeout: self.timeout,
            http1: self.http1,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let json = args.json;
    let config = args.config()?;
    match config.rate {
        Some(rate) => eprintln!(
            "caracal-load: {}: {rate}/s (at most {} in flight), warm-up {:?}, measuring {:?}",
            config.label, config.concurrency, config.warmup, config.duration
        ),
        None => eprintln!(
            "caracal-load: {}: {} workers, warm-up {:?}, measuring {:?}",
            config.label, config.concurrency, config.warmup, config.duration
        ),
    }
    let summary = load::run(&config)
        .await
        .with_context(|| format!("run {:?}", config.label))?;

    let mut stdout = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut stdout, &summary)?;
        writeln!(stdout)?;
    } else {
        summary.write_text(&mut stdout)?;
    }
    stdout.flush()?;
    Ok(())
}
