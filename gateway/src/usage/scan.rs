//! What a request body asks the provider to bring in besides its own
//! bytes: a walk over the whole JSON tree (without keeping it) that finds
//! the first member referring to input the body does not carry.
//!
//! The budget bound "every body byte is at most one input token" holds only
//! for text the body carries. It fails when the provider adds input from
//! its own state (`previous_response_id`, `conversation`, a stored
//! `prompt`, a `container`, vector stores), fetches it (file ids, image,
//! file and document URLs, MCP servers), or bills media by their size in
//! pixels or seconds rather than by their bytes (images, files, audio, even
//! inline). A request with any of these is priced from the model's context
//! window instead (see `budget::charge`).
//!
//! The rule is a list of member names and `type` values, matched at any
//! depth: a false match (a tool schema with a property named `source`)
//! costs a larger reservation, never an under-charge.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Nesting below which the walk goes on; deeper values are skipped without
/// recursion and count as unseen input (no provider's request schema nests
/// content this deep, so such a body is priced from the context window).
const MAX_DEPTH: u8 = 64;

/// Member names that bring in input the body does not carry.
const KEYS: &[&str] = &[
    // Server-side state (OpenAI Responses, Assistants-like state).
    "previous_response_id",
    "conversation",
    "container",
    "vector_store_ids",
    // Content fetched or stored elsewhere, or media billed by size.
    "file_id",
    "file_url",
    "file_data",
    "image_url",
    "input_audio",
    "audio",
    // Anthropic image and document blocks carry their content in `source`
    // (base64, a URL or a file id).
    "source",
    // Tool servers the provider calls.
    "mcp_servers",
    "server_url",
];

/// `type` values of content blocks whose tokens do not follow their bytes.
const TYPES: &[&str] = &[
    "image",
    "image_url",
    "input_image",
    "document",
    "file",
    "input_file",
    "input_audio",
    "container_upload",
    // A stored item of an earlier response or conversation (Responses API).
    "item_reference",
];

/// The member (or `type` value) that makes the input unseen, if any.
pub(super) fn unseen_key(key: &str) -> Option<&'static str> {
    KEYS.iter().copied().find(|k| *k == key)
}

fn unseen_type(value: &str) -> Option<&'static str> {
    TYPES.iter().copied().find(|t| *t == value)
}

/// A seed that walks any JSON value, recording in `found` the first
/// member name or `type` value of [`KEYS`] / [`TYPES`]. Keeps nothing else.
/// Nesting is bounded by serde_json's recursion limit.
pub(super) struct Scan<'a> {
    pub(super) found: &'a mut Option<&'static str>,
    /// The value being walked is that of a `type` member.
    pub(super) type_value: bool,
    /// How deep the value is.
    pub(super) depth: u8,
}

impl<'a> Scan<'a> {
    /// A walk of a value at the top of a body's members.
    pub(super) fn new(found: &'a mut Option<&'static str>) -> Self {
        Scan {
            found,
            type_value: false,
            depth: 1,
        }
    }

    /// Past [`MAX_DEPTH`]: found, and the rest skipped.
    fn too_deep(&mut self) -> bool {
        if self.depth < MAX_DEPTH {
            return false;
        }
        self.found.get_or_insert("nesting");
        true
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key, matched without keeping it.
struct Key<'a>(&'a mut Option<&'static str>, &'a mut bool);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, key: &str) -> Result<(), E> {
        if self.0.is_none() {
            *self.0 = unseen_key(key);
        }
        *self.1 = key == "type";
        Ok(())
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        if self.too_deep() {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        let mut type_key = false;
        while map
            .next_key_seed(Key(&mut *self.found, &mut type_key))?
            .is_some()
        {
            map.next_value_seed(Scan {
                found: &mut *self.found,
                type_value: type_key,
                depth: self.depth + 1,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if self.too_deep() {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        while seq
            .next_element_seed(Scan {
                found: &mut *self.found,
                type_value: false,
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        if self.type_value && self.found.is_none() {
            *self.found = unseen_type(v);
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// [`Scan`] over a value already decoded.
pub(super) fn scan_value(v: &serde_json::Value, found: &mut Option<&'static str>) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                if found.is_some() {
                    return;
                }
                *found = unseen_key(key);
                match value {
                    Value::String(s) if key == "type" => *found = unseen_type(s),
                    _ => scan_value(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| scan_value(i, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(body: &str) -> Option<&'static str> {
        let mut found = None;
        let mut de = serde_json::Deserializer::from_str(body);
        Scan::new(&mut found).deserialize(&mut de).unwrap();
        found
    }

    #[test]
    fn text_only_requests_carry_all_their_input() {
        for body in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"image"}]}]}"#,
            r#"{"model":"m","input":"describe source code","tools":[{"type":"function","name":"f"}]}"#,
            r#"[1,2,{"a":{"b":[null,true,1.5,-3]}}]"#,
        ] {
            assert_eq!(scan(body), None, "{body}");
        }
    }

    #[test]
    fn references_to_input_elsewhere_are_found_at_any_depth() {
        for (body, want) in [
            (
                r#"{"previous_response_id":"resp_1","input":"go"}"#,
                "previous_response_id",
            ),
            (r#"{"conversation":"conv_1"}"#, "conversation"),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x"}}]}]}"#,
                "image_url",
            ),
            (
                r#"{"input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}"#,
                "input_file",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x"}}]}]}"#,
                "image",
            ),
            (
                r#"{"messages":[{"content":[{"type":"document","source":{"type":"file","file_id":"f"}}]}]}"#,
                "document",
            ),
            (r#"{"mcp_servers":[{"url":"https://x"}]}"#, "mcp_servers"),
            (r#"{"a":[[[{"b":{"file_data":"JVBERi0"}}]]]}"#, "file_data"),
            // An escaped key is the same key.
            (
                r#"{"previous_response\u005fid":"r"}"#,
                "previous_response_id",
            ),
        ] {
            assert_eq!(scan(body), Some(want), "{body}");
        }
    }

    #[test]
    fn deep_nesting_is_skipped_without_recursion_and_counts_as_unseen() {
        let shallow = format!("{}{}", "[".repeat(62), "]".repeat(62));
        assert_eq!(scan(&shallow), None);
        for deep in [
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000)),
        ] {
            assert_eq!(scan(&deep), Some("nesting"));
        }
    }
}
