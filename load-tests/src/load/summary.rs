//! Counting outcomes and summarising them: exact percentiles over every
//! recorded latency, no histogram buckets.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

/// Distinct error messages kept per run; the rest are counted under
/// [`OTHER_ERRORS`].
const MAX_ERROR_KINDS: usize = 8;
const OTHER_ERRORS: &str = "(other errors)";

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response, body read to the end.
    Success,
    /// A response outside 2xx, body read to the end.
    Status(u16),
    /// No complete response: connect, TLS, protocol, body or timeout
    /// failure, described with its error chain.
    Error(String),
}

/// Outcomes counted by one or more workers; merged at the end of a run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Latency of each successful request, in nanoseconds.
    latencies_ns: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    error_count: u64,
}

impl Tally {
    /// Counts one finished request; only successes contribute a latency.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Success => self
                .latencies_ns
                .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)),
            Outcome::Status(code) => *self.statuses.entry(code).or_default() += 1,
            Outcome::Error(message) => self.record_error(message),
        }
    }

    /// Counts one failed request.
    pub fn record_error(&mut self, message: String) {
        self.error_count += 1;
        self.add_error_kind(message, 1);
    }

    /// Adds `other`'s counts to this one.
    pub fn merge(&mut self, other: Tally) {
        self.latencies_ns.extend(other.latencies_ns);
        for (code, n) in other.statuses {
            *self.statuses.entry(code).or_default() += n;
        }
        self.error_count += other.error_count;
        for (message, n) in other.errors {
            self.add_error_kind(message, n);
        }
    }

    /// Counts `n` errors under `message`, or under [`OTHER_ERRORS`] once
    /// [`MAX_ERROR_KINDS`] messages are known.
    fn add_error_kind(&mut self, message: String, n: u64) {
        let known = self.errors.len() < MAX_ERROR_KINDS || self.errors.contains_key(&message);
        let key = if known {
            message
        } else {
            OTHER_ERRORS.to_owned()
        };
        *self.errors.entry(key).or_default() += n;
    }

    /// Summarises the requests counted over a measured window of `window`.
    pub fn summarize(mut self, label: &str, window: Duration) -> Summary {
        self.latencies_ns.sort_unstable();
        let sorted = &self.latencies_ns;
        let ok = sorted.len() as u64;
        let non_2xx = self.statuses.values().sum::<u64>();
        let duration_s = window.as_secs_f64();
        let rps = if duration_s > 0.0 {
            ok as f64 / duration_s
        } else {
            0.0
        };
        let ms = |p: f64| percentile(sorted, p).map(nanos_to_ms);
        Summary {
            label: label.to_owned(),
            requests: ok + non_2xx + self.error_count,
            ok,
            errors: self.error_count,
            non_2xx,
            duration_s,
            rps: round(rps, 1),
            p50_ms: ms(50.0),
            p90_ms: ms(90.0),
            p99_ms: ms(99.0),
            max_ms: sorted.last().copied().map(nanos_to_ms),
            statuses: self
                .statuses
                .into_iter()
                .map(|(code, n)| (code.to_string(), n))
                .collect(),
            error_kinds: self.errors,
        }
    }
}

/// The result of one run; serialised as the `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub label: String,
    /// Requests that finished inside the measured window, any outcome.
    pub requests: u64,
    /// Of those, 2xx responses read to the end.
    pub ok: u64,
    /// Of those, requests without a complete response.
    pub errors: u64,
    /// Of those, complete responses outside 2xx.
    pub non_2xx: u64,
    /// Length of the measured window.
    pub duration_s: f64,
    /// Successful (2xx) requests per second of the window.
    pub rps: f64,
    /// Latency percentiles of the successful requests (nearest rank);
    /// `null` when there were none.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Count of each non-2xx status code.
    pub statuses: BTreeMap<String, u64>,
    /// Count of each distinct error message (at most a few kinds).
    pub error_kinds: BTreeMap<String, u64>,
}

impl Summary {
    /// A few human-readable lines.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3} ms"));
        writeln!(out, "{}", self.label)?;
        writeln!(
            out,
            "  requests {} (ok {}, non-2xx {}, errors {}) in {:.1} s: {:.1} ok/s",
            self.requests, self.ok, self.non_2xx, self.errors, self.duration_s, self.rps
        )?;
        writeln!(
            out,
            "  latency p50 {}  p90 {}  p99 {}  max {}",
            ms(self.p50_ms),
            ms(self.p90_ms),
            ms(self.p99_ms),
            ms(self.max_ms)
        )?;
        for (code, n) in &self.statuses {
            writeln!(out, "  status {code}: {n}")?;
        }
        for (message, n) in &self.error_kinds {
            writeln!(out, "  error ({n}x): {message}")?;
        }
        Ok(())
    }
}

/// The nearest-rank `p`th percentile (0 < p <= 100) of ascending
/// `sorted`: the smallest sample with at least `p`% of samples at or
/// below it. `None` for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn nanos_to_ms(nanos: u64) -> f64 {
    round(nanos as f64 / 1e6, 3)
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 90.0), Some(90));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 100.0), Some(100));
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 51.0), Some(3));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[3, 9], 0.0), Some(3));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_counts_every_outcome_and_times_only_successes() {
        let mut tally = Tally::default();
        for ms in [4, 1, 3, 2] {
            tally.record(Outcome::Success, Duration::from_millis(ms));
        }
        tally.record(Outcome::Status(503), Duration::from_millis(500));
        tally.record(Outcome::Status(503), Duration::from_millis(500));
        tally.record(Outcome::Error("refused".into()), Duration::from_secs(9));

        let s = tally.summarize("t", Duration::from_secs(2));
        assert_eq!((s.requests, s.ok, s.non_2xx, s.errors), (7, 4, 2, 1));
        assert_eq!(s.rps, 2.0);
        assert_eq!(s.p50_ms, Some(2.0));
        assert_eq!(s.p90_ms, Some(4.0));
        assert_eq!(s.max_ms, Some(4.0));
        assert_eq!(s.statuses["503"], 2);
        assert_eq!(s.error_kinds["refused"], 1);
    }

    #[test]
    fn merging_adds_counts_and_samples() {
        let mut a = Tally::default();
        a.record(Outcome::Success, Duration::from_micros(1500));
        a.record(Outcome::Error("x".into()), Duration::ZERO);
        let mut b = Tally::default();
        b.record(Outcome::Success, Duration::from_micros(500));
        b.record(Outcome::Error("x".into()), Duration::ZERO);
        b.record(Outcome::Status(404), Duration::ZERO);
        a.merge(b);

        let s = a.summarize("m", Duration::from_secs(1));
        assert_eq!((s.requests, s.ok, s.non_2xx, s.errors), (5, 2, 1, 2));
        assert_eq!(s.p50_ms, Some(0.5));
        assert_eq!(s.max_ms, Some(1.5));
        assert_eq!(s.error_kinds["x"], 2);
    }

    #[test]
    fn no_successes_give_null_latencies_and_zero_rps() {
        let s = Tally::default().summarize("empty", Duration::from_secs(1));
        assert_eq!((s.requests, s.rps), (0, 0.0));
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (None, None, None));
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["p99_ms"].is_null());
        for key in [
            "label",
            "requests",
            "errors",
            "non_2xx",
            "duration_s",
            "rps",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
        ] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
    }

    #[test]
    fn error_kinds_are_capped() {
        let mut tally = Tally::default();
        for i in 0..MAX_ERROR_KINDS + 3 {
            tally.record_error(format!("e{i}"));
        }
        tally.record_error("e0".into());
        let s = tally.summarize("e", Duration::from_secs(1));
        assert_eq!(s.errors, MAX_ERROR_KINDS as u64 + 4);
        assert_eq!(s.error_kinds.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(s.error_kinds["e0"], 2);
        assert_eq!(s.error_kinds[OTHER_ERRORS], 3);
    }

    #[test]
    fn text_output_names_the_counts() {
        let mut tally = Tally::default();
        tally.record(Outcome::Success, Duration::from_millis(1));
        let mut out = Vec::new();
        tally
            .summarize("direct", Duration::from_secs(1))
            .write_text(&mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("direct\n"), "{text}");
        assert!(
            text.contains("requests 1 (ok 1, non-2xx 0, errors 0)"),
            "{text}"
        );
        assert!(text.contains("p50 1.000 ms"), "{text}");
    }
}
