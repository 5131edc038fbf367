//! A bounded log of the requests the mock has seen.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use http::HeaderMap;

/// How many requests [`Recorder`] keeps.
const CAPACITY: usize = 1000;

/// One request as it arrived, before its body was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// Lowercased header name to value; repeated headers joined by `", "`.
    pub headers: BTreeMap<String, String>,
}

/// Keeps the last [`CAPACITY`] requests in arrival order.
#[derive(Default)]
pub(crate) struct Recorder {
    log: Mutex<VecDeque<RecordedRequest>>,
}

impl Recorder {
    pub(crate) fn push(&self, request: RecordedRequest) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == CAPACITY {
            log.pop_front();
        }
        log.push_back(request);
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }
}

/// Headers as a sorted map; non-UTF-8 bytes are replaced lossily.
pub(crate) fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> RecordedRequest {
        RecordedRequest {
            method: "GET".into(),
            path: path.into(),
            query: None,
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn keeps_only_the_last_capacity_requests() {
        let recorder = Recorder::default();
        for i in 0..CAPACITY + 5 {
            recorder.push(req(&format!("/{i}")));
        }
        let log = recorder.snapshot();
        assert_eq!(log.len(), CAPACITY);
        assert_eq!(log[0].path, "/5");
        assert_eq!(log[CAPACITY - 1].path, format!("/{}", CAPACITY + 4));
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", "1".parse().unwrap());
        headers.append("x-a", "2".parse().unwrap());
        assert_eq!(header_map(&headers)["x-a"], "1, 2");
    }
}
