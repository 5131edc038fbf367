//! Deterministic token arithmetic and generated completion text. Pure.

use serde_json::Value;

/// Completion text is generated with at most this many words, whatever
/// the token count claims, so a huge `--completion-tokens` stays cheap.
const MAX_WORDS: u64 = 65_536;

const WORDS: &[&str] = &[
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "the",
    "gateway", "meters", "every", "token", "it", "sees",
];

/// How usage is reported, from `x-mock-usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UsageMode {
    /// The real, complete usage object.
    Full,
    /// No usage field at all.
    Omit,
    /// A usage field that is not an object.
    Malformed,
    /// A usage object with only the prompt/input count.
    Partial,
}

impl UsageMode {
    /// The usage value to send, or `None` to leave the field out.
    pub(crate) fn render(self, full: Value, partial: Value) -> Option<Value> {
        match self {
            UsageMode::Full => Some(full),
            UsageMode::Omit => None,
            UsageMode::Malformed => Some(Value::String("malformed".to_owned())),
            UsageMode::Partial => Some(partial),
        }
    }
}

/// Unicode scalar values of the text in `value`: strings count whole,
/// arrays sum their items, objects count their `text` or else their
/// `content`; anything else counts 0.
pub(crate) fn content_chars(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.chars().count() as u64,
        Value::Array(items) => items.iter().map(content_chars).sum(),
        Value::Object(map) => match (map.get("text"), map.get("content")) {
            (Some(text @ Value::String(_)), _) => content_chars(text),
            (_, Some(content)) => content_chars(content),
            _ => 0,
        },
        _ => 0,
    }
}

/// Characters of every `messages[].content`.
pub(crate) fn messages_chars(messages: &[Value]) -> u64 {
    messages
        .iter()
        .filter_map(|m| m.get("content"))
        .map(content_chars)
        .sum()
}

/// Prompt tokens for `chars` characters: `ceil(chars / 4)`, at least 1.
pub(crate) fn prompt_tokens(chars: u64) -> u64 {
    chars.div_ceil(4).max(1)
}

/// Completion tokens: the configured count, capped by the request's max.
pub(crate) fn completion_tokens(requested_max: Option<u64>, configured: u64) -> u64 {
    requested_max.map_or(configured, |max| max.min(configured))
}

/// Generated completion text and its split into stream chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Completion {
    /// The whole text, as a non-streamed response carries it.
    pub(crate) text: String,
    /// Exactly `chunks` pieces whose concatenation is `text`; pieces may be
    /// empty when there are fewer words than chunks.
    pub(crate) pieces: Vec<String>,
}

/// One word per token (capped at [`MAX_WORDS`]) spread evenly over
/// `chunks` pieces. With 0 chunks the text is still produced.
pub(crate) fn completion(tokens: u64, chunks: usize) -> Completion {
    let words = tokens.min(MAX_WORDS) as usize;
    let word = |i: usize| {
        let w = WORDS[i % WORDS.len()];
        if i == 0 {
            w.to_owned()
        } else {
            format!(" {w}")
        }
    };
    let pieces: Vec<String> = (0..chunks)
        .map(|c| {
            (c * words / chunks..(c + 1) * words / chunks)
                .map(word)
                .collect()
        })
        .collect();
    let text = (0..words).map(word).collect();
    Completion { text, pieces }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_tokens_round_up_and_never_reach_zero() {
        assert_eq!(prompt_tokens(0), 1);
        assert_eq!(prompt_tokens(1), 1);
        assert_eq!(prompt_tokens(4), 1);
        assert_eq!(prompt_tokens(5), 2);
        assert_eq!(prompt_tokens(39), 10);
    }

    #[test]
    fn content_chars_handles_strings_parts_and_unicode() {
        let messages = json!([
            {"role": "system", "content": "abcd"},
            {"role": "user", "content": [
                {"type": "text", "text": "héllo"},
                {"type": "image_url", "image_url": {"url": "http://x"}}
            ]},
            {"role": "assistant", "content": null},
        ]);
        assert_eq!(messages_chars(messages.as_array().unwrap()), 9);
        let responses_input = json!([
            {"role": "user", "content": [{"type": "input_text", "text": "12345"}]}
        ]);
        assert_eq!(content_chars(&responses_input), 5);
    }

    #[test]
    fn completion_tokens_are_capped_by_max() {
        assert_eq!(completion_tokens(None, 16), 16);
        assert_eq!(completion_tokens(Some(5), 16), 5);
        assert_eq!(completion_tokens(Some(100), 16), 16);
    }

    #[test]
    fn pieces_concatenate_to_the_text() {
        for (tokens, chunks) in [(16, 8), (5, 3), (2, 8), (0, 4), (16, 1)] {
            let c = completion(tokens, chunks);
            assert_eq!(c.pieces.len(), chunks);
            assert_eq!(c.pieces.concat(), c.text, "{tokens}/{chunks}");
            assert_eq!(c.text.split_whitespace().count() as u64, tokens);
        }
        assert_eq!(completion(16, 0).pieces.len(), 0);
    }

    #[test]
    fn usage_modes_render() {
        let (full, partial) = (json!({"a": 1, "b": 2}), json!({"a": 1}));
        assert_eq!(
            UsageMode::Full.render(full.clone(), partial.clone()),
            Some(full.clone())
        );
        assert_eq!(UsageMode::Omit.render(full.clone(), partial.clone()), None);
        assert!(UsageMode::Malformed
            .render(full.clone(), partial.clone())
            .is_some_and(|v| !v.is_object()));
        assert_eq!(
            UsageMode::Partial.render(full, partial.clone()),
            Some(partial)
        );
    }
}
