//! Decodes the few members of a JSON value that carry usage, skipping the
//! rest without keeping it.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The few members of a JSON value the observer reads; everything else is
/// skipped without being kept, and a non-object reads as empty.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) kind: Option<String>,
    pub(super) model: Option<String>,
    pub(super) usage: Option<Value>,
    pub(super) message: Option<Box<Fields>>,
    pub(super) response: Option<Box<Fields>>,
    /// Calls of provider-run tools among the `output` items (Responses
    /// API), by tool; `None` when there was no `output` array.
    pub(super) tool_calls: Option<BTreeMap<String, u64>>,
}

/// The provider-run tool an output item of `kind` is a call of:
/// `web_search_call` is one use of `web_search`. Calls the client runs
/// (functions, custom tools, computer use, shells, patches) are not.
pub(super) fn server_tool_of(kind: &str) -> Option<&str> {
    let tool = kind.strip_suffix("_call")?;
    let client = matches!(
        tool,
        "function" | "custom_tool" | "computer" | "local_shell" | "shell" | "apply_patch"
    );
    (!client && !tool.is_empty()).then_some(tool)
}

/// `output`: in the Responses API an array of items, read for their
/// `type`s only (counting the calls of provider-run tools); anything else
/// (a string elsewhere) is skipped and counts as no `output` array.
struct ToolCallsOrNot(Option<BTreeMap<String, u64>>);

impl<'de> Deserialize<'de> for ToolCallsOrNot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OutputVisitor)
    }
}

struct OutputVisitor;

impl<'de> Visitor<'de> for OutputVisitor {
    type Value = ToolCallsOrNot;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ToolCallsOrNot, A::Error> {
        let mut calls = BTreeMap::new();
        while let Some(item) = seq.next_element::<Fields>()? {
            if let Some(tool) = item.kind.as_deref().and_then(server_tool_of) {
                *calls.entry(tool.to_string()).or_insert(0) += 1;
            }
        }
        Ok(ToolCallsOrNot(Some(calls)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ToolCallsOrNot, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(ToolCallsOrNot(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<ToolCallsOrNot, E> {
        Ok(ToolCallsOrNot(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<ToolCallsOrNot, E> {
        Ok(ToolCallsOrNot(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<ToolCallsOrNot, E> {
        Ok(ToolCallsOrNot(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<ToolCallsOrNot, E> {
        Ok(ToolCallsOrNot(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<ToolCallsOrNot, E> {
        Ok(ToolCallsOrNot(None))
    }

    fn visit_unit<E>(self) -> Result<ToolCallsOrNot, E> {
        Ok(ToolCallsOrNot(None))
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldsVisitor)
    }
}

struct FieldsVisitor;

fn string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => f.kind = string(map.next_value()?),
                "model" => f.model = string(map.next_value()?),
                "usage" => f.usage = Some(map.next_value()?),
                "message" => f.message = Some(map.next_value()?),
                "response" => f.response = Some(map.next_value()?),
                "output" => f.tool_calls = map.next_value::<ToolCallsOrNot>()?.0,
                _ => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(f)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fields, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Fields::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Fields, E> {
        Ok(Fields::default())
    }

    fn visit_unit<E>(self) -> Result<Fields, E> {
        Ok(Fields::default())
    }
}
