//! Per-request `x-mock-*` control headers, resolved against the server
//! defaults. Pure: no I/O.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::usage::UsageMode;
use super::MockConfig;

/// Upper bound for the delay headers, in milliseconds (10 minutes).
const MAX_DELAY_MS: u64 = 600_000;
/// Upper bound for `x-mock-chunks`.
const MAX_CHUNKS: usize = 100_000;

/// How one request should be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Controls {
    pub(crate) latency: Duration,
    pub(crate) chunk_delay: Duration,
    pub(crate) chunks: usize,
    pub(crate) status: Option<StatusCode>,
    pub(crate) usage: UsageMode,
    /// `x-mock-usage-json`: the usage object a non-streamed response
    /// reports, verbatim (e.g. the most the request could be billed).
    pub(crate) usage_json: Option<serde_json::Value>,
    pub(crate) gate: Option<String>,
}

impl Controls {
    /// Reads the control headers; absent ones take `defaults`. The error
    /// names the offending header.
    pub(crate) fn from_headers(headers: &HeaderMap, defaults: &MockConfig) -> Result<Self, String> {
        let latency = millis(headers, "x-mock-latency-ms")?.unwrap_or(defaults.latency);
        let chunk_delay = millis(headers, "x-mock-chunk-delay-ms")?.unwrap_or(defaults.chunk_delay);
        let chunks = match text(headers, "x-mock-chunks")? {
            None => defaults.chunks,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= MAX_CHUNKS => n,
                _ => return Err(format!("x-mock-chunks must be 0..={MAX_CHUNKS}, got {v:?}")),
            },
        };
        let status = match text(headers, "x-mock-status")? {
            None => None,
            Some(v) => match v.parse::<u16>() {
                Ok(code @ 400..=599) => StatusCode::from_u16(code).ok(),
                _ => return Err(format!("x-mock-status must be 400..=599, got {v:?}")),
            },
        };
        let usage = match text(headers, "x-mock-usage")? {
            None => UsageMode::Full,
            Some("omit") => UsageMode::Omit,
            Some("malformed") => UsageMode::Malformed,
            Some("partial") => UsageMode::Partial,
            Some(v) => {
                return Err(format!(
                    "x-mock-usage must be omit, malformed or partial, got {v:?}"
                ))
            }
        };
        let gate = match text(headers, "x-mock-gate")? {
            None => None,
            Some("") => return Err("x-mock-gate must not be empty".to_owned()),
            Some(v) => Some(v.to_owned()),
        };
        let usage_json = match text(headers, "x-mock-usage-json")? {
            None => None,
            Some(v) => match serde_json::from_str::<serde_json::Value>(v) {
                Ok(object @ serde_json::Value::Object(_)) => Some(object),
                _ => {
                    return Err(format!(
                        "x-mock-usage-json must be a JSON object, got {v:?}"
                    ))
                }
            },
        };
        Ok(Self {
            latency,
            chunk_delay,
            chunks,
            status,
            usage,
            usage_json,
            gate,
        })
    }

    /// The usage a response reports: `x-mock-usage-json` when given, else
    /// `full` or `partial` (or none) as `x-mock-usage` says.
    pub(crate) fn render_usage(
        &self,
        full: serde_json::Value,
        partial: serde_json::Value,
    ) -> Option<serde_json::Value> {
        self.usage_json
            .clone()
            .or_else(|| self.usage.render(full, partial))
    }
}

/// The trimmed header value, if present; an error if it is not UTF-8.
fn text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| format!("{name} must be visible ASCII")),
    }
}

fn millis(headers: &HeaderMap, name: &str) -> Result<Option<Duration>, String> {
    match text(headers, name)? {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms <= MAX_DELAY_MS => Ok(Some(Duration::from_millis(ms))),
            _ => Err(format!("{name} must be 0..={MAX_DELAY_MS}, got {v:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn absent_headers_take_defaults() {
        let defaults = MockConfig::default();
        let c = Controls::from_headers(&HeaderMap::new(), &defaults).unwrap();
        assert_eq!(c.latency, defaults.latency);
        assert_eq!(c.chunk_delay, defaults.chunk_delay);
        assert_eq!(c.chunks, defaults.chunks);
        assert_eq!(c.status, None);
        assert_eq!(c.usage, UsageMode::Full);
        assert_eq!(c.gate, None);
    }

    #[test]
    fn headers_override_defaults() {
        let h = headers(&[
            ("x-mock-latency-ms", "150"),
            ("x-mock-chunk-delay-ms", "0"),
            ("x-mock-chunks", "3"),
            ("x-mock-status", "429"),
            ("x-mock-usage", "partial"),
            ("x-mock-gate", "g1"),
        ]);
        let c = Controls::from_headers(&h, &MockConfig::default()).unwrap();
        assert_eq!(c.latency, Duration::from_millis(150));
        assert_eq!(c.chunk_delay, Duration::ZERO);
        assert_eq!(c.chunks, 3);
        assert_eq!(c.status, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(c.usage, UsageMode::Partial);
        assert_eq!(c.gate.as_deref(), Some("g1"));
    }

    #[test]
    fn bad_values_are_rejected_with_the_header_name() {
        for (name, value) in [
            ("x-mock-latency-ms", "-1"),
            ("x-mock-latency-ms", "999999999"),
            ("x-mock-chunk-delay-ms", "soon"),
            ("x-mock-chunks", "1000000"),
            ("x-mock-status", "200"),
            ("x-mock-status", "abc"),
            ("x-mock-usage", "sometimes"),
            ("x-mock-gate", ""),
        ] {
            let err = Controls::from_headers(&headers(&[(name, value)]), &MockConfig::default())
                .unwrap_err();
            assert!(err.contains(name), "{err}");
        }
    }
}
