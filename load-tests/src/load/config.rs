//! What one load run does: the validated settings and the parsers that
//! turn command-line strings into them.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Url;

use super::LoadError;

/// Settings of one run (closed loop, or open loop with `rate`).
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where every request goes.
    pub url: Url,
    pub method: Method,
    /// Sent with every request; `None` sends no body.
    pub body: Option<Bytes>,
    /// Sent with every request. See [`LoadConfig::request_headers`].
    pub headers: HeaderMap,
    /// HTTP or HTTPS proxy; credentials in its userinfo are sent as
    /// `Proxy-Authorization: Basic` (on `CONNECT` for `https` targets).
    pub proxy: Option<Url>,
    /// When set, the only trusted roots (for the target and the proxy);
    /// otherwise the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Workers, each with at most one request in flight (closed loop);
    /// with `rate`, the most requests in flight at once.
    pub concurrency: NonZeroUsize,
    /// Open loop: requests are due at this constant rate (per second),
    /// whatever the responses do, and each one's latency is measured from
    /// when it was due, so a stalled server shows in the percentiles
    /// instead of slowing the load (no coordinated omission).
    pub rate: Option<f64>,
    /// Time before the measured window; results are discarded.
    pub warmup: Duration,
    /// Length of the measured window; must be more than zero.
    pub duration: Duration,
    /// Per-request limit; a request over it counts as an error.
    pub timeout: Duration,
    /// Only HTTP/1.1 (otherwise HTTP/2 is used where ALPN offers it).
    pub http1: bool,
    /// Name of the run in the summary.
    pub label: String,
}

impl LoadConfig {
    /// The configured headers, plus `content-type: application/json` when
    /// there is a body and no content type was given.
    pub fn request_headers(&self) -> HeaderMap {
        let mut headers = self.headers.clone();
        if self.body.is_some() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        headers
    }
}

/// The request methods the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        }
    }
}

impl FromStr for Method {
    type Err = LoadError;

    /// `GET` or `POST`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("GET") {
            Ok(Method::Get)
        } else if s.eq_ignore_ascii_case("POST") {
            Ok(Method::Post)
        } else {
            Err(LoadError::Method(s.to_owned()))
        }
    }
}

/// One `Name: value` header from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: HeaderValue,
}

/// Parses `Name: value`; whitespace around the value is dropped.
pub fn parse_header(s: &str) -> Result<Header, LoadError> {
    let invalid = || LoadError::Header(s.to_owned());
    let (name, value) = s.split_once(':').ok_or_else(invalid)?;
    Ok(Header {
        name: HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?,
        value: HeaderValue::from_str(value.trim()).map_err(|_| invalid())?,
    })
}

/// Collects headers into a map; a repeated name keeps every value.
pub fn header_map(headers: impl IntoIterator<Item = Header>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for header in headers {
        map.append(header.name, header.value);
    }
    map
}

/// Parses `500ms`, `10s`, `1.5s`, `2m`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, LoadError> {
    let invalid = || LoadError::Duration(s.to_owned());
    let trimmed = s.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

/// The request body from `--body` or `--body-file` (at most one is given).
pub fn load_body(
    body: Option<String>,
    body_file: Option<&Path>,
) -> Result<Option<Bytes>, LoadError> {
    match (body, body_file) {
        (Some(body), _) => Ok(Some(Bytes::from(body))),
        (None, Some(path)) => std::fs::read(path)
            .map(|bytes| Some(Bytes::from(bytes)))
            .map_err(|source| LoadError::Read {
                path: path.to_owned(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "s", "10h", "-1s", "1..2s", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn headers_split_on_the_first_colon() {
        let h = parse_header("Authorization:  Bearer a:b ").unwrap();
        assert_eq!(h.name, "authorization");
        assert_eq!(h.value, "Bearer a:b");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(parse_header(": x").is_err());
    }

    #[test]
    fn methods_parse_in_any_case() {
        assert_eq!("post".parse::<Method>().unwrap(), Method::Post);
        assert_eq!("GET".parse::<Method>().unwrap(), Method::Get);
        assert!("PUT".parse::<Method>().is_err());
    }

    #[test]
    fn a_body_defaults_to_json_unless_a_content_type_is_given() {
        let mut config = LoadConfig {
            url: "http://127.0.0.1:1/".parse().unwrap(),
            method: Method::Post,
            body: Some(Bytes::from_static(b"{}")),
            headers: HeaderMap::new(),
            proxy: None,
            ca_file: None,
            concurrency: NonZeroUsize::MIN,
            rate: None,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            http1: false,
            label: "t".into(),
        };
        assert_eq!(config.request_headers()[CONTENT_TYPE], "application/json");
        config.headers = header_map([parse_header("content-type: text/plain").unwrap()]);
        assert_eq!(config.request_headers()[CONTENT_TYPE], "text/plain");
        config.body = None;
        config.headers.clear();
        assert!(config.request_headers().is_empty());
    }

    #[test]
    fn body_comes_from_the_string_or_the_file() {
        assert_eq!(load_body(Some("{}".into()), None).unwrap().unwrap(), "{}");
        assert!(load_body(None, None).unwrap().is_none());
        let missing = Path::new("/nonexistent/caracal-load-body.json");
        assert!(matches!(
            load_body(None, Some(missing)),
            Err(LoadError::Read { .. })
        ));
    }
}
