//! The closed loop: `concurrency` workers, each sending one request,
//! reading the whole response body, then sending the next. The open loop
//! (`rate`): one request due every 1/rate seconds, sent when due (or as
//! soon as fewer than `concurrency` are in flight), its latency counted
//! from when it was due.
//!
//! Timeline of a run, from the moment the workers start:
//! `[0, warmup)` requests are sent and their results dropped;
//! `[warmup, warmup + duration]` every request that *finishes* is counted
//! (so throughput is completions over the window, unbiased by the edges);
//! at `warmup + duration` requests still in flight are abandoned.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, Url};
use tokio::task::JoinSet;

use super::summary::{Outcome, Tally};
use super::{build_client, LoadConfig, LoadError, Summary};

/// What every request of a run looks like.
struct Template {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
}

/// Bounds of the measured window.
#[derive(Clone, Copy)]
struct Window {
    begin: Instant,
    end: Instant,
}

/// Runs the load described by `config` and summarises the measured
/// window. Failed requests are counted, never returned as errors.
pub async fn run(config: &LoadConfig) -> Result<Summary, LoadError> {
    if config.duration.is_zero() {
        return Err(LoadError::EmptyWindow);
    }
    let client = build_client(config)?;
    let template = Arc::new(Template {
        method: config.method.as_reqwest(),
        url: config.url.clone(),
        headers: config.request_headers(),
        body: config.body.clone(),
    });
    let start = Instant::now();
    let window = Window {
        begin: start + config.warmup,
        end: start + config.warmup + config.duration,
    };

    if let Some(rate) = config.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(LoadError::Rate(rate));
        }
        let tally = open_loop(client, template, window, rate, config.concurrency.get()).await;
        return Ok(tally.summarize(&config.label, config.duration));
    }
    let mut workers = JoinSet::new();
    for _ in 0..config.concurrency.get() {
        workers.spawn(worker(client.clone(), Arc::clone(&template), window));
    }
    let mut tally = Tally::default();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(worker_tally) => tally.merge(worker_tally),
            Err(error) => tally.record_error(format!("worker task failed: {error}")),
        }
    }
    Ok(tally.summarize(&config.label, config.duration))
}

/// One closed-loop worker until the window ends.
async fn worker(client: Client, template: Arc<Template>, window: Window) -> Tally {
    let mut tally = Tally::default();
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            break;
        }
        let exchange = exchange(&client, &template);
        let Ok(outcome) = tokio::time::timeout_at(window.end.into(), exchange).await else {
            break;
        };
        let done = Instant::now();
        if done >= window.begin {
            tally.record(outcome, done - sent);
        }
    }
    tally
}

/// The open loop until the window ends: request k is due at
/// `start + k / rate`; it waits for one of `in_flight` slots, and its
/// latency runs from when it was due. A dedicated thread keeps the
/// schedule with the OS's sleep (tens of microseconds late at most):
/// tokio's timer has millisecond resolution, which would add up to a
/// millisecond to every latency at rates like 1 000/s.
async fn open_loop(
    client: Client,
    template: Arc<Template>,
    window: Window,
    rate: f64,
    in_flight: usize,
) -> Tally {
    let start = Instant::now();
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let end = window.end;
    let ticker = std::thread::spawn(move || {
        for k in 0u64.. {
            let due = start + std::time::Duration::from_secs_f64(k as f64 / rate);
            if due >= end {
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if due_tx.send(due).is_err() {
                break;
            }
        }
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut requests = JoinSet::new();
    let mut tally = Tally::default();
    while let Some(due) = due_rx.recv().await {
        let (client, template, slots) = (client.clone(), Arc::clone(&template), slots.clone());
        requests.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return None;
            };
            let exchange = exchange(&client, &template);
            let outcome = tokio::time::timeout_at(window.end.into(), exchange)
                .await
                .ok()?;
            let done = Instant::now();
            (done >= window.begin).then(|| (outcome, done - due))
        });
        // Reap what finished, so the set does not grow with the run.
        while let Some(joined) = requests.try_join_next() {
            collect(&mut tally, joined);
        }
    }
    let _ = ticker.join();
    while let Some(joined) = requests.join_next().await {
        collect(&mut tally, joined);
    }
    tally
}

/// Counts one open-loop request: None when it finished outside the
/// window.
fn collect(
    tally: &mut Tally,
    joined: Result<Option<(Outcome, std::time::Duration)>, tokio::task::JoinError>,
) {
    match joined {
        Ok(Some((outcome, latency))) => tally.record(outcome, latency),
        Ok(None) => {}
        Err(error) => tally.record_error(format!("request task failed: {error}")),
    }
}

/// Sends one request and reads its body to the end.
async fn exchange(client: &Client, template: &Template) -> Outcome {
    let mut request = client
        .request(template.method.clone(), template.url.clone())
        .headers(template.headers.clone());
    if let Some(body) = &template.body {
        request = request.body(body.clone());
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Outcome::Error(describe(&error)),
    };
    loop {
        match response.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(error) => return Outcome::Error(describe(&error)),
        }
    }
    let status = response.status();
    if status.is_success() {
        Outcome::Success
    } else {
        Outcome::Status(status.as_u16())
    }
}

/// The error and its sources on one line: reqwest's own message rarely
/// says what actually failed.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
