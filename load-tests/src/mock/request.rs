//! Typed access to a provider request's JSON body: lenient about missing
//! fields, strict (400) about wrong types.

use serde_json::{Map, Value};

use super::errors::ApiError;

/// Model name used when the request names none.
const DEFAULT_MODEL: &str = "mock-model";

/// A parsed request body; always a JSON object.
pub(crate) struct JsonRequest {
    obj: Map<String, Value>,
}

impl JsonRequest {
    /// Parses `bytes` as a JSON object, or explains why not.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(obj)) => Ok(Self { obj }),
            Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
            Err(error) => Err(ApiError::bad_request(format!(
                "request body is not valid JSON: {error}"
            ))),
        }
    }

    /// Raw field access; `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// `model`, or `mock-model` when absent.
    pub(crate) fn model(&self) -> Result<String, ApiError> {
        Ok(self.string("model")?.unwrap_or(DEFAULT_MODEL).to_owned())
    }

    /// `stream`, false when absent.
    pub(crate) fn stream(&self) -> Result<bool, ApiError> {
        match self.get("stream") {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(type_error("stream", "a boolean")),
        }
    }

    /// `stream_options.include_usage`, false when absent.
    pub(crate) fn include_usage(&self) -> Result<bool, ApiError> {
        match self.get("stream_options") {
            None => Ok(false),
            Some(Value::Object(opts)) => match opts.get("include_usage") {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(type_error("stream_options.include_usage", "a boolean")),
            },
            Some(_) => Err(type_error("stream_options", "an object")),
        }
    }

    /// The first of `keys` that is present, as a non-negative integer
    /// (e.g. `max_completion_tokens` before `max_tokens`).
    pub(crate) fn first_u64(&self, keys: &[&str]) -> Result<Option<u64>, ApiError> {
        for key in keys {
            if let Some(v) = self.get(key) {
                return v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| type_error(key, "a non-negative integer"));
            }
        }
        Ok(None)
    }

    /// `messages` as a slice; empty when absent.
    pub(crate) fn messages(&self) -> Result<&[Value], ApiError> {
        match self.get("messages") {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(type_error("messages", "an array")),
        }
    }

    fn string(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(type_error(key, "a string")),
        }
    }
}

fn type_error(field: &str, expected: &str) -> ApiError {
    ApiError::bad_request(format!("'{field}' must be {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_objects_and_bad_json() {
        assert!(JsonRequest::parse(b"{not json").is_err());
        assert!(JsonRequest::parse(b"[1,2]").is_err());
        assert!(JsonRequest::parse(b"").is_err());
    }

    #[test]
    fn defaults_and_types() {
        let r = JsonRequest::parse(br#"{"stream": null}"#).unwrap();
        assert_eq!(r.model().unwrap(), "mock-model");
        assert!(!r.stream().unwrap());
        assert!(!r.include_usage().unwrap());
        assert_eq!(r.first_u64(&["max_tokens"]).unwrap(), None);
        assert!(r.messages().unwrap().is_empty());

        let r = JsonRequest::parse(br#"{"model": 3, "stream": "yes", "max_tokens": -1}"#).unwrap();
        assert!(r.model().is_err());
        assert!(r.stream().is_err());
        assert!(r.first_u64(&["max_tokens"]).is_err());
    }

    #[test]
    fn max_tokens_prefers_the_first_key() {
        let r = JsonRequest::parse(br#"{"max_tokens": 9, "max_completion_tokens": 4}"#).unwrap();
        let keys = ["max_completion_tokens", "max_tokens"];
        assert_eq!(r.first_u64(&keys).unwrap(), Some(4));
    }
}
