//! Unit tests of request facts, the include_usage rewrite and the usage
//! event stripper.

use proptest::prelude::*;

use super::*;

fn openai(body: &str) -> Result<RequestFacts, RequestError> {
    facts(Dialect::OpenAi, body.as_bytes())
}

fn anthropic(body: &str) -> Result<RequestFacts, RequestError> {
    facts(Dialect::Anthropic, body.as_bytes())
}

const CHAT: &str = r#"{
  "model": "gpt-4o-mini",
  "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hi"}
  ],
  "temperature": 0.2,
  "max_completion_tokens": 300,
  "stream": true,
  "stream_options": {"include_usage": true}
}"#;

const COMPLETIONS: &str =
    r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say hi","max_tokens":16,"stream":false}"#;

const RESPONSES: &str = r#"{"model":"gpt-4.1","input":[{"role":"user","content":[{"type":"input_text","text":"Say hi"}]}],"max_output_tokens":1024,"stream":true,"store":false}"#;

const MESSAGES: &str = r#"{"model":"claude-3-5-haiku-20241022","max_tokens":1024,"system":"Be brief.","messages":[{"role":"user","content":"Say hi"}],"stream":true}"#;

#[test]
fn openai_chat_facts() {
    let f = openai(CHAT).unwrap();
    assert_eq!(
        f,
        RequestFacts {
            model: Some("gpt-4o-mini".into()),
            max_output_tokens: Some(300),
            stream: true,
            include_usage: true,
            input_bytes: CHAT.len() as u64,
            limits: OutputLimits {
                max_completion_tokens: Some(300),
                ..OutputLimits::default()
            },
            ..RequestFacts::default()
        }
    );
}

#[test]
fn openai_completions_facts() {
    let f = openai(COMPLETIONS).unwrap();
    assert_eq!(f.model.as_deref(), Some("gpt-3.5-turbo-instruct"));
    assert_eq!(f.max_output_tokens, Some(16));
    assert!(!f.stream && !f.include_usage);
}

#[test]
fn openai_responses_facts() {
    let f = openai(RESPONSES).unwrap();
    assert_eq!(f.model.as_deref(), Some("gpt-4.1"));
    assert_eq!(f.max_output_tokens, Some(1024));
    assert!(f.stream && !f.include_usage);
}

#[test]
fn anthropic_messages_facts() {
    let f = anthropic(MESSAGES).unwrap();
    assert_eq!(f.model.as_deref(), Some("claude-3-5-haiku-20241022"));
    assert_eq!(f.max_output_tokens, Some(1024));
    assert!(f.stream && !f.include_usage);
    assert_eq!(f.input_bytes, MESSAGES.len() as u64);
}

#[test]
fn anthropic_ignores_openai_only_members() {
    let body = r#"{"model":"claude","max_tokens":10,"max_completion_tokens":"x",
        "max_output_tokens":-1,"stream_options":7,"stream":false}"#;
    let f = anthropic(body).unwrap();
    assert_eq!(f.max_output_tokens, Some(10));
    assert!(!f.include_usage);
    assert_eq!(
        openai(body),
        Err(RequestError::BadField("max_completion_tokens"))
    );
}

#[test]
fn unknown_dialect_reads_openai_names() {
    let f = facts(Dialect::Unknown, MESSAGES.as_bytes()).unwrap();
    assert_eq!(f.max_output_tokens, Some(1024));
    let f = facts(Dialect::Unknown, CHAT.as_bytes()).unwrap();
    assert_eq!(f.max_output_tokens, Some(300));
    assert!(f.include_usage);
}

#[test]
fn openai_takes_the_largest_ceiling() {
    let f = openai(r#"{"max_completion_tokens":100,"max_tokens":200}"#).unwrap();
    assert_eq!(f.max_output_tokens, Some(200));
    let f = openai(r#"{"max_completion_tokens":300,"max_tokens":200}"#).unwrap();
    assert_eq!(f.max_output_tokens, Some(300));
    let f = openai(r#"{"max_completion_tokens":null,"max_tokens":200}"#).unwrap();
    assert_eq!(f.max_output_tokens, Some(200));
    let f = openai(r#"{"max_output_tokens":5,"max_tokens":null}"#).unwrap();
    assert_eq!(f.max_output_tokens, Some(5));
}

#[test]
fn absent_and_null_members_are_defaults() {
    let empty = RequestFacts {
        input_bytes: 2,
        ..RequestFacts::default()
    };
    assert_eq!(openai("{}"), Ok(empty.clone()));
    assert_eq!(anthropic("{}"), Ok(empty));
    let nulls = r#"{"model":null,"max_tokens":null,"max_completion_tokens":null,
        "max_output_tokens":null,"stream":null,"stream_options":null}"#;
    for f in [openai(nulls).unwrap(), anthropic(nulls).unwrap()] {
        assert_eq!(f.model, None);
        assert_eq!(f.max_output_tokens, None);
        assert!(!f.stream && !f.include_usage);
    }
    let f = openai(r#"{"stream":true,"stream_options":{"include_usage":null}}"#).unwrap();
    assert!(f.stream && !f.include_usage);
    let f = openai(r#"{"stream":true,"stream_options":{"include_usage":false}}"#).unwrap();
    assert!(!f.include_usage);
}

#[test]
fn wrong_types_are_bad_fields() {
    use RequestError::BadField;
    for (body, field) in [
        (r#"{"model":42}"#, "model"),
        (r#"{"model":["gpt-4o"]}"#, "model"),
        (r#"{"model":{"name":"gpt-4o"}}"#, "model"),
        (r#"{"model":true}"#, "model"),
        (r#"{"stream":"true"}"#, "stream"),
        (r#"{"stream":1}"#, "stream"),
        (r#"{"max_tokens":"100"}"#, "max_tokens"),
        (r#"{"max_tokens":true}"#, "max_tokens"),
        (r#"{"max_completion_tokens":[1]}"#, "max_completion_tokens"),
        (r#"{"max_output_tokens":{}}"#, "max_output_tokens"),
        (r#"{"stream_options":true}"#, "stream_options"),
        (r#"{"stream_options":"include_usage"}"#, "stream_options"),
        (
            r#"{"stream_options":{"include_usage":"yes"}}"#,
            "stream_options.include_usage",
        ),
        (
            r#"{"stream_options":{"include_usage":1}}"#,
            "stream_options.include_usage",
        ),
    ] {
        assert_eq!(openai(body), Err(BadField(field)), "{body}");
    }
    assert_eq!(
        anthropic(r#"{"max_tokens":"1"}"#),
        Err(BadField("max_tokens"))
    );
    assert_eq!(anthropic(r#"{"stream":"yes"}"#), Err(BadField("stream")));
}

#[test]
fn token_counts_must_be_small_non_negative_integers() {
    use RequestError::BadField;
    let ok = |n: &str| openai(&format!(r#"{{"max_tokens":{n}}}"#));
    assert_eq!(ok("0").unwrap().max_output_tokens, Some(0));
    assert_eq!(ok("10000000").unwrap().max_output_tokens, Some(10_000_000));
    for n in [
        "10000001",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999999999999",
        "-1",
        "-0.0",
        "1.5",
        "100.0",
        "1e3",
    ] {
        assert_eq!(ok(n), Err(BadField("max_tokens")), "{n}");
        let body = format!(r#"{{"max_tokens":{n}}}"#);
        assert_eq!(anthropic(&body), Err(BadField("max_tokens")), "{n}");
    }
    // Valid JSON grammar, but beyond what serde_json reads.
    assert_eq!(ok("1e400"), Err(RequestError::NotJson));
}

#[test]
fn model_is_at_most_256_characters() {
    let body = |m: &str| format!(r#"{{"model":"{m}"}}"#);
    let long = "m".repeat(MAX_MODEL_CHARS);
    assert_eq!(openai(&body(&long)).unwrap().model, Some(long.clone()));
    // Characters, not bytes.
    let wide = "é".repeat(MAX_MODEL_CHARS);
    assert_eq!(openai(&body(&wide)).unwrap().model, Some(wide));
    let too_long = body(&"m".repeat(MAX_MODEL_CHARS + 1));
    assert_eq!(openai(&too_long), Err(RequestError::BadField("model")));
    // Escapes are decoded before counting.
    let escaped = body(&r"\u0041".repeat(MAX_MODEL_CHARS));
    assert_eq!(openai(&escaped).unwrap().model, Some("A".repeat(256)));
}

#[test]
fn non_objects_are_not_json() {
    for body in [
        "",
        " ",
        "null",
        "true",
        "42",
        "\"model\"",
        "[]",
        r#"[{"model":"x"}]"#,
        r#"["gpt", 1]"#,
    ] {
        assert_eq!(openai(body), Err(RequestError::NotJson), "{body:?}");
        assert_eq!(anthropic(body), Err(RequestError::NotJson), "{body:?}");
    }
}

#[test]
fn garbage_is_not_json() {
    let mut bodies: Vec<Vec<u8>> = [
        "{",
        "{\"model\":",
        "{\"model\":\"gpt\"",
        "{\"model\":\"gpt\"} trailing",
        "{\"model\":\"gpt\"}{}",
        "{model:\"gpt\"}",
        "{'model':'gpt'}",
        "{\"a\":1,}",
        "\u{FEFF}{\"model\":\"gpt\"}",
        "{\"a\":\"\u{1}\"}",
        "GET / HTTP/1.1\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // Invalid UTF-8, inside an ignored string and at the top.
    bodies.push(b"{\"messages\":\"\xff\xfe\"}".to_vec());
    bodies.push(b"\xff{}".to_vec());
    bodies.push(vec![0; 64]);
    for body in bodies {
        assert_eq!(
            facts(Dialect::OpenAi, &body),
            Err(RequestError::NotJson),
            "{body:?}"
        );
        assert_eq!(add_include_usage(&body), Err(RequestError::NotJson));
    }
}

#[test]
fn deep_nesting_neither_overflows_nor_misleads() {
    // Skipped members are skipped without recursion, at any depth.
    let deep = format!(
        r#"{{"messages":{}{},"max_tokens":7}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(openai(&deep).unwrap().max_output_tokens, Some(7));
    assert_eq!(add_include_usage(deep.as_bytes()), Ok(None));
    let streaming = deep.replace(r#""max_tokens":7"#, r#""stream":true"#);
    let out = add_include_usage(streaming.as_bytes()).unwrap().unwrap();
    assert!(out.starts_with(br#"{"stream_options":{"include_usage":true},"messages":[[["#));
    // Members the gateway reads stop at serde_json's depth limit.
    for field in ["model", "stream_options", "max_tokens"] {
        let deep = format!(r#"{{"{field}":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert_eq!(openai(&deep), Err(RequestError::NotJson), "{field}");
    }
    let unclosed = format!(r#"{{"messages":{}"#, "[".repeat(100_000));
    assert_eq!(openai(&unclosed), Err(RequestError::NotJson));
}

#[test]
fn duplicate_members_are_refused() {
    assert_eq!(
        openai(r#"{"model":"cheap","model":"expensive"}"#),
        Err(RequestError::DuplicateField("model"))
    );
    assert_eq!(
        anthropic(r#"{"max_tokens":1,"max_tokens":100000}"#),
        Err(RequestError::DuplicateField("max_tokens"))
    );
    // Others may repeat; the gateway does not read them.
    assert!(openai(r#"{"temperature":1,"temperature":2}"#).is_ok());
}

#[test]
fn errors_name_the_field_and_have_codes() {
    let e = openai(r#"{"max_completion_tokens":-5}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "request field `max_completion_tokens` must be an integer from 0 to 10000000"
    );
    assert_eq!(e.code(), "bad_field");
    let e = openai(r#"{"stream_options":[]}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "request field `stream_options` must be an object"
    );
    let e = openai(r#"{"model":1}"#).unwrap_err();
    assert!(e.to_string().contains("`model`"), "{e}");
    assert_eq!(RequestError::NotJson.code(), "not_json");
    assert_eq!(
        RequestError::DuplicateField("model").code(),
        "duplicate_field"
    );
}

fn rewritten(body: &str) -> String {
    let out = add_include_usage(body.as_bytes())
        .unwrap()
        .expect("a rewrite");
    String::from_utf8(out).unwrap()
}

/// The rewrite changes nothing but `stream_options.include_usage`.
fn same_but_usage(before: &str, after: &str) {
    let mut a: Value = serde_json::from_str(before).unwrap();
    let b: Value = serde_json::from_str(after).unwrap();
    let options = a
        .as_object_mut()
        .unwrap()
        .entry("stream_options")
        .or_insert(Value::Null);
    if options.is_null() {
        *options = serde_json::json!({});
    }
    options["include_usage"] = Value::Bool(true);
    assert_eq!(a, b);
}

#[test]
fn include_usage_is_added_without_touching_the_rest() {
    let body = r#"{"model":"gpt-4o-mini", "seed": 123456789012345678901234567890,
  "messages":[{"role":"user","content":"{\"stream_options\":1}"}],
  "temperature":1.10, "stream":true}"#;
    let out = rewritten(body);
    assert_eq!(
        out,
        body.replacen('{', r#"{"stream_options":{"include_usage":true},"#, 1)
    );
    let f = openai(&out).unwrap();
    assert!(f.stream && f.include_usage);
    assert_eq!(f.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(add_include_usage(out.as_bytes()), Ok(None));
}

#[test]
fn include_usage_keeps_other_stream_options() {
    let body = r#"{"stream":true,"stream_options":{"chunk_size":4, "x":[1,{"include_usage":false}]},"model":"m"}"#;
    let out = rewritten(body);
    assert_eq!(
        out,
        r#"{"stream":true,"stream_options":{"include_usage":true,"chunk_size":4, "x":[1,{"include_usage":false}]},"model":"m"}"#
    );
    same_but_usage(body, &out);

    let body = r#"{"stream":true,"stream_options": { } }"#;
    let out = rewritten(body);
    assert_eq!(
        out,
        r#"{"stream":true,"stream_options": {"include_usage":true } }"#
    );
    same_but_usage(body, &out);
}

#[test]
fn include_usage_false_or_null_becomes_true() {
    for (body, want) in [
        (
            r#"{"stream":true,"stream_options":{"include_usage":false,"o":1}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true,"o":1}}"#,
        ),
        (
            r#"{"stream_options" : { "o":1 , "include_usage" : null } , "stream":true}"#,
            r#"{"stream_options" : { "o":1 , "include_usage" : true } , "stream":true}"#,
        ),
        (
            r#"{"stream":true,"stream_options":null}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        // Escaped key names are the same key.
        (
            r#"{"stream":true,"stream_opt\u0069ons":{"include_\u0075sage":false}}"#,
            r#"{"stream":true,"stream_opt\u0069ons":{"include_\u0075sage":true}}"#,
        ),
    ] {
        assert_eq!(rewritten(body), want, "{body}");
        assert!(openai(want).unwrap().include_usage);
    }
}

#[test]
fn include_usage_left_alone_when_not_needed() {
    for body in [
        COMPLETIONS,
        CHAT,
        "{}",
        r#"{"stream":false,"stream_options":{"include_usage":false}}"#,
        r#"{"stream":null}"#,
        r#"{"stream":true,"stream_options":{"include_usage":true,"x":1}}"#,
    ] {
        assert_eq!(add_include_usage(body.as_bytes()), Ok(None), "{body}");
    }
    let out = rewritten(RESPONSES);
    same_but_usage(RESPONSES, &out);
    let out = rewritten(MESSAGES);
    same_but_usage(MESSAGES, &out);
}

#[test]
fn include_usage_refuses_bad_bodies() {
    use RequestError::*;
    for (body, want) in [
        (
            r#"{"stream":true,"stream_options":[]}"#,
            BadField("stream_options"),
        ),
        (
            r#"{"stream":true,"stream_options":"x"}"#,
            BadField("stream_options"),
        ),
        (r#"{"stream":"yes"}"#, BadField("stream")),
        (
            r#"{"stream":true,"stream_options":{"include_usage":0}}"#,
            BadField("stream_options.include_usage"),
        ),
        (
            r#"{"stream":true,"stream_options":{},"stream_options":{}}"#,
            DuplicateField("stream_options"),
        ),
        ("[]", NotJson),
    ] {
        assert_eq!(add_include_usage(body.as_bytes()), Err(want), "{body}");
    }
}

const EVENTS: [&str; 6] = [
    "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\\n\\ndata: {}\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
];
const USAGE_EVENT: usize = 4;

const CAP: usize = 64 * 1024;

fn stream() -> String {
    EVENTS.concat()
}

fn without_usage() -> String {
    let mut events = EVENTS.to_vec();
    events.remove(USAGE_EVENT);
    events.concat()
}

fn strip(cap: usize, chunks: &[&[u8]]) -> Vec<u8> {
    let mut s = UsageChunkStripper::new(cap);
    let mut out: Vec<u8> = chunks.iter().flat_map(|c| s.push(c)).collect();
    out.extend(s.finish());
    out
}

/// The stripped stream whole, split in two at every byte, and byte by byte
/// all agree with `want`.
fn strips_at_every_split(body: &str, want: &str) {
    let body = body.as_bytes();
    assert_eq!(String::from_utf8_lossy(&strip(CAP, &[body])), want, "whole");
    for i in 0..=body.len() {
        let (a, b) = body.split_at(i);
        assert_eq!(
            String::from_utf8_lossy(&strip(CAP, &[a, b])),
            want,
            "split at {i}"
        );
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(
        String::from_utf8_lossy(&strip(CAP, &bytes)),
        want,
        "byte by byte"
    );
}

#[test]
fn stripper_drops_the_usage_event_at_every_split() {
    strips_at_every_split(&stream(), &without_usage());
}

#[test]
fn stripper_handles_crlf_and_cr_framing() {
    for eol in ["\r\n", "\r"] {
        let body = stream().replace('\n', eol);
        strips_at_every_split(&body, &without_usage().replace('\n', eol));
    }
    // Mixed line ends within one stream.
    let body = [
        EVENTS[0],
        &EVENTS[USAGE_EVENT].replace("\n\n", "\r\n\n"),
        EVENTS[5],
    ]
    .concat();
    strips_at_every_split(&body, &[EVENTS[0], EVENTS[5]].concat());
    let body = [
        EVENTS[0],
        &EVENTS[USAGE_EVENT].replace("\n\n", "\n\r\n"),
        "\n",
    ]
    .concat();
    strips_at_every_split(&body, &[EVENTS[0], "\n"].concat());
}

#[test]
fn stripper_passes_a_stream_without_usage_unchanged() {
    let body = without_usage();
    strips_at_every_split(&body, &body);
    let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n: ping\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    strips_at_every_split(anthropic, anthropic);
}

#[test]
fn stripper_keeps_near_misses() {
    for event in [
        "data: {\"choices\":[],\"usage\":null}\n\n",
        "data: {\"choices\":[{}],\"usage\":{\"total_tokens\":1}}\n\n",
        "data: {\"usage\":{\"total_tokens\":1}}\n\n",
        "data: {\"choices\":[]}\n\n",
        "data: {\"choices\":{},\"usage\":{}}\n\n",
        "data: {\"choices\":[],\"usage\":{},\"choices\":[]}\n\n",
        "data: [[],{}]\n\n",
        "data: {\"choices\":[],\"usage\":{}}x\n\n",
        "data: {\"choices\":[],\"usage\":{}\n\n",
        "data:{\"choices\":[]\n\n",
        "datum: {\"choices\":[],\"usage\":{}}\n\n",
        ": {\"choices\":[],\"usage\":{}}\n\n",
        "\u{FEFF}data: {\"choices\":[],\"usage\":{}}\n\n",
    ] {
        let body = [EVENTS[0], event, EVENTS[5]].concat();
        strips_at_every_split(&body, &body);
    }
}

#[test]
fn stripper_drops_other_spellings_of_the_usage_event() {
    for event in [
        "data:{\"choices\":[],\"usage\":{\"total_tokens\":1}}\n\n",
        "data: \t {\"choices\" : [ ] , \"usage\" : 0}\n\n",
        "data: {\"choices\":[],\ndata: \"usage\":{}}\n\n",
        "data:\ndata: {\"choices\":[],\"usage\":{}}\n\n",
        "id: 7\nevent: chunk\n: comment\ndata: {\"choices\":[],\"usage\":{}}\n\n",
    ] {
        let body = [EVENTS[0], event, EVENTS[5]].concat();
        strips_at_every_split(&body, &[EVENTS[0], EVENTS[5]].concat());
    }
}

#[test]
fn stripper_holds_only_an_undecided_event() {
    let mut s = UsageChunkStripper::new(CAP);
    let (a, b) = EVENTS[1].split_at(40);
    assert_eq!(s.push(a.as_bytes()), b"");
    assert_eq!(s.push(b.as_bytes()), EVENTS[1].as_bytes());
    // Data that cannot open an object passes on at once.
    assert_eq!(s.push(b"data: [DO"), b"data: [DO");
    assert_eq!(s.push(b"NE]\n"), b"NE]\n");
    assert_eq!(s.push(b"\n"), b"\n");
    // Comments and other fields wait for the data.
    assert_eq!(s.push(b": ping\nevent: x\n"), b"");
    assert_eq!(s.push(b"data: hello\n"), b": ping\nevent: x\ndata: hello\n");
    assert_eq!(s.push(b"\n: tail"), b"\n");
    assert_eq!(s.finish(), b": tail");
}

#[test]
fn stripper_returns_an_unfinished_event_at_the_end() {
    let usage = EVENTS[USAGE_EVENT].trim_end();
    let body = [EVENTS[0], usage].concat();
    strips_at_every_split(&body, &body);
}

#[test]
fn stripper_gives_up_beyond_the_cap() {
    let body = stream();
    let cap = EVENTS[USAGE_EVENT].len() - 1;
    for i in 0..=body.len() {
        let (a, b) = body.as_bytes().split_at(i);
        assert_eq!(strip(cap, &[a, b]), body.as_bytes(), "split at {i}");
    }
    // An event that fits is still filtered.
    let cap = EVENTS[USAGE_EVENT].len();
    assert_eq!(strip(cap, &[body.as_bytes()]), without_usage().as_bytes());
    // Once given up, a later usage event passes too.
    let body = [EVENTS[0], EVENTS[USAGE_EVENT], EVENTS[5]].concat();
    assert_eq!(
        strip(EVENTS[0].len() - 1, &[body.as_bytes()]),
        body.as_bytes()
    );
    assert_eq!(strip(0, &[body.as_bytes()]), body.as_bytes());
}

/// Pieces of streams that hold no usage event, line ends and odd bytes
/// included.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(
            EVENTS
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != USAGE_EVENT)
                .map(|(_, e)| e.as_bytes().to_vec())
                .collect::<Vec<_>>()
        ),
        prop::sample::select(vec![
            b"\n".to_vec(),
            b"\r".to_vec(),
            b"\r\n".to_vec(),
            b"data: ".to_vec(),
            b"data:{".to_vec(),
            b"data: {\"choices\":[],".to_vec(),
            b"\"usage\":null}".to_vec(),
            b": comment".to_vec(),
            b"event: x".to_vec(),
            b"\xEF\xBB\xBF".to_vec(),
        ]),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn chunked(body: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([body.len()]) {
        chunks.push(body[at..c].to_vec());
        at = c;
    }
    chunks
}

fn strip_chunks(cap: usize, chunks: &[Vec<u8>]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    strip(cap, &chunks)
}

proptest! {
    #[test]
    fn stripper_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        cap in 0usize..600,
    ) {
        let out = strip_chunks(cap, &chunked(&body, &cuts));
        prop_assert!(out.len() <= body.len());
    }

    #[test]
    fn stripper_passes_streams_without_usage_unchanged(
        pieces in prop::collection::vec(piece(), 0..24),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        cap in prop_oneof![Just(CAP), 0usize..700],
    ) {
        let body = pieces.concat();
        prop_assert_eq!(strip_chunks(cap, &chunked(&body, &cuts)), body.clone());
        let bytes: Vec<Vec<u8>> = body.chunks(1).map(<[u8]>::to_vec).collect();
        prop_assert_eq!(strip_chunks(cap, &bytes), body);
    }

    #[test]
    fn stripper_drops_only_usage_events(
        events in prop::collection::vec((0..EVENTS.len(), prop::sample::select(vec!["\n", "\r\n", "\r"])), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let framed: Vec<(usize, String)> = events
            .iter()
            .map(|&(i, eol)| (i, EVENTS[i].replace('\n', eol)))
            .collect();
        let body: String = framed.iter().map(|(_, e)| e.as_str()).collect();
        let want: String = framed
            .iter()
            .filter(|(i, _)| *i != USAGE_EVENT)
            .map(|(_, e)| e.as_str())
            .collect();
        let out = strip_chunks(CAP, &chunked(body.as_bytes(), &cuts));
        prop_assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn facts_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = facts(Dialect::OpenAi, &body);
        let _ = facts(Dialect::Anthropic, &body);
        let _ = add_include_usage(&body);
    }

    #[test]
    fn include_usage_rewrite_is_valid(
        extra in prop::collection::btree_map("x_[a-z_]{0,10}", any::<i64>(), 0..6),
        options in prop::option::of(prop::collection::btree_map("[a-z_]{1,14}", any::<bool>(), 0..4)),
        usage in prop::option::of(prop::option::of(any::<bool>())),
    ) {
        let mut body = serde_json::Map::new();
        for (k, v) in extra {
            body.insert(k, v.into());
        }
        body.insert("stream".into(), true.into());
        if let Some(options) = options {
            let mut options: serde_json::Map<String, Value> =
                options.into_iter().map(|(k, v)| (k, v.into())).collect();
            if let Some(usage) = usage {
                options.insert("include_usage".into(), usage.map_or(Value::Null, Value::Bool));
            }
            body.insert("stream_options".into(), options.into());
        }
        let text = serde_json::to_string(&body).unwrap();
        let already = facts(Dialect::OpenAi, text.as_bytes()).unwrap().include_usage;
        match add_include_usage(text.as_bytes()).unwrap() {
            None => prop_assert!(already),
            Some(out) => {
                prop_assert!(!already);
                same_but_usage(&text, std::str::from_utf8(&out).unwrap());
            }
        }
    }
}

#[test]
fn an_output_cap_is_added_only_when_none_is_set() {
    let body = br#"{"model":"gpt-4o","messages":[],"seed":123456789012345678901234567890}"#;
    let out = cap_output_tokens(Dialect::OpenAi, body, "max_completion_tokens", 64)
        .unwrap()
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"max_completion_tokens":64,"model":"gpt-4o","messages":[],"seed":123456789012345678901234567890}"#
    );
    assert_eq!(
        facts(Dialect::OpenAi, &out).unwrap().max_output_tokens,
        Some(64)
    );
    // Already limited (any of the dialect's fields): left alone.
    for limited in [
        &br#"{"model":"m","max_tokens":5}"#[..],
        br#"{"model":"m","max_output_tokens":5}"#,
        br#"{"model":"m","max_completion_tokens":5}"#,
    ] {
        assert_eq!(
            cap_output_tokens(Dialect::OpenAi, limited, "max_completion_tokens", 64).unwrap(),
            None
        );
    }
    // A null limit is replaced, an empty object gets the lone member.
    let out = cap_output_tokens(
        Dialect::Anthropic,
        br#" {"max_tokens": null}"#,
        "max_tokens",
        9,
    )
    .unwrap()
    .unwrap();
    assert_eq!(std::str::from_utf8(&out).unwrap(), r#" {"max_tokens": 9}"#);
    let out = cap_output_tokens(Dialect::OpenAi, b"{}", "max_tokens", 9)
        .unwrap()
        .unwrap();
    assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{"max_tokens":9}"#);
    assert!(cap_output_tokens(Dialect::OpenAi, b"[1]", "max_tokens", 9).is_err());
}

// ------------------------------------------------------------ budget bounds

#[test]
fn several_outputs_multiply() {
    let outputs = |body: &str| openai(body).unwrap().outputs;
    assert_eq!(outputs(CHAT), 1);
    assert_eq!(outputs(r#"{"model":"m","n":16,"max_tokens":1000}"#), 16);
    // best_of is what completions generates (and bills); n at most that.
    assert_eq!(outputs(r#"{"model":"m","n":2,"best_of":5}"#), 5);
    assert_eq!(outputs(r#"{"model":"m","n":5,"best_of":2}"#), 5);
    // n: 0 and null are one output (the provider refuses 0, bills nothing).
    assert_eq!(outputs(r#"{"model":"m","n":0}"#), 1);
    assert_eq!(outputs(r#"{"model":"m","n":null}"#), 1);
    // Completions: each prompt of a batch gets its own outputs.
    assert_eq!(outputs(r#"{"model":"m","prompt":["a","b","c"],"n":2}"#), 6);
    assert_eq!(
        outputs(r#"{"model":"m","prompt":[[1,2],[3]],"best_of":3}"#),
        6
    );
    // One token array is one prompt.
    assert_eq!(outputs(r#"{"model":"m","prompt":[1,2,3]}"#), 1);
    assert_eq!(outputs(COMPLETIONS), 1);
    // Saturates rather than wraps.
    let huge = format!(r#"{{"n":{},"prompt":["a","b"]}}"#, u64::MAX);
    assert_eq!(outputs(&huge), u64::MAX);
    for (body, field) in [
        (r#"{"n":1.5}"#, "n"),
        (r#"{"n":-1}"#, "n"),
        (r#"{"n":"16"}"#, "n"),
        (r#"{"best_of":true}"#, "best_of"),
    ] {
        assert_eq!(openai(body), Err(RequestError::BadField(field)), "{body}");
    }
    assert_eq!(
        openai(r#"{"n":1,"n":16}"#),
        Err(RequestError::DuplicateField("n"))
    );
}

#[test]
fn every_output_limit_of_the_dialect_counts() {
    // Anthropic's legacy Text Completions limit.
    let legacy = r#"{"model":"claude-2.1","prompt":"\n\nHuman: hi\n\nAssistant:","max_tokens_to_sample":20000}"#;
    assert_eq!(anthropic(legacy).unwrap().max_output_tokens, Some(20_000));
    // Whichever the provider reads, the largest is the bound.
    assert_eq!(
        anthropic(r#"{"max_tokens":10,"max_tokens_to_sample":300}"#)
            .unwrap()
            .max_output_tokens,
        Some(300)
    );
    assert_eq!(
        anthropic(r#"{"max_tokens_to_sample":"x"}"#),
        Err(RequestError::BadField("max_tokens_to_sample"))
    );
    // OpenAI has no such member: not read, not validated.
    assert_eq!(
        openai(r#"{"max_tokens_to_sample":"x","max_tokens":5}"#)
            .unwrap()
            .max_output_tokens,
        Some(5)
    );
    assert_eq!(
        facts(Dialect::Unknown, legacy.as_bytes())
            .unwrap()
            .max_output_tokens,
        Some(20_000)
    );
}

#[test]
fn input_the_body_does_not_carry_is_found() {
    let unseen = |body: &str| openai(body).unwrap().unseen_input;
    assert_eq!(unseen(CHAT), None);
    assert_eq!(unseen(RESPONSES), None);
    for (body, what) in [
        (
            r#"{"model":"gpt-4.1","previous_response_id":"resp_1","input":"go on"}"#,
            "previous_response_id",
        ),
        (
            r#"{"model":"gpt-4.1","conversation":"conv_1"}"#,
            "conversation",
        ),
        // A stored prompt (Responses API) is an object.
        (
            r#"{"model":"gpt-4.1","prompt":{"id":"pmpt_1","version":"2"}}"#,
            "prompt",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBOR"}}]}]}"#,
            "image_url",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#,
            "file",
        ),
        // A server-run tool's results become input.
        (
            r#"{"model":"gpt-4.1","tools":[{"type":"web_search"}],"max_tool_calls":2}"#,
            "tools",
        ),
    ] {
        assert_eq!(unseen(body), Some(what), "{body}");
    }
    let claude = anthropic(
        r#"{"model":"claude-sonnet-4","max_tokens":10,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://example.com/a.pdf"}}]}]}"#,
    )
    .unwrap();
    assert_eq!(claude.unseen_input, Some("document"));
}

#[test]
fn tools_the_provider_runs_are_told_apart_from_client_tools() {
    let f = anthropic(
        r#"{"model":"claude-sonnet-4","max_tokens":100,"tools":[
            {"name":"get_weather","input_schema":{"type":"object"}},
            {"type":"custom","name":"c","input_schema":{"type":"object"}},
            {"type":"bash_20250124","name":"bash"},
            {"type":"text_editor_20250429","name":"str_replace_based_edit_tool"},
            {"type":"web_search_20250305","name":"web_search","max_uses":3},
            {"type":"web_fetch_20250910","name":"web_fetch"}
        ]}"#,
    )
    .unwrap();
    assert!(f.tools);
    assert_eq!(
        f.server_tools,
        vec![
            ServerTool {
                name: "web_search".into(),
                max_uses: Some(3)
            },
            ServerTool {
                name: "web_fetch".into(),
                max_uses: None
            },
        ]
    );
    let f = openai(
        r#"{"model":"gpt-4.1","tools":[{"type":"function","name":"f"},
            {"type":"web_search_preview_2025_03_11"},{"type":"file_search","vector_store_ids":["vs_1"]}],
            "max_tool_calls":4}"#,
    )
    .unwrap();
    assert_eq!(f.max_tool_calls, Some(4));
    let names: Vec<&str> = f.server_tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["web_search_preview", "file_search"]);
    // Search models search once per request; MCP servers as many times as
    // the model likes.
    let f = openai(r#"{"model":"gpt-4o-search-preview","web_search_options":{}}"#).unwrap();
    assert_eq!(f.server_tools[0].max_uses, Some(1));
    // A search model searches even unasked.
    let f = openai(r#"{"model":"gpt-4o-mini-search-preview"}"#).unwrap();
    assert_eq!(f.server_tools.len(), 1);
    assert_eq!(f.server_tools[0].name, "web_search");
    let f =
        anthropic(r#"{"max_tokens":1,"mcp_servers":[{"type":"url","url":"https://x"}]}"#).unwrap();
    assert_eq!(f.server_tools[0].name, "mcp");
    assert_eq!(f.server_tools[0].max_uses, None);
    // Only client tools: input the body carries, plus a tools prompt.
    let f =
        openai(r#"{"model":"m","tools":[{"type":"function","function":{"name":"f"}}]}"#).unwrap();
    assert!(f.tools && f.server_tools.is_empty() && f.unseen_input.is_none());
    for body in [
        r#"{"tools":{}}"#,
        r#"{"tools":["web_search"]}"#,
        r#"{"tools":[{"type":7}]}"#,
    ] {
        assert_eq!(openai(body), Err(RequestError::BadField("tools")), "{body}");
    }
    assert_eq!(
        anthropic(r#"{"tools":[{"type":"web_search_20250305","max_uses":-1}]}"#),
        Err(RequestError::BadField("tools.max_uses"))
    );
    assert_eq!(
        openai(r#"{"web_search_options":true}"#),
        Err(RequestError::BadField("web_search_options"))
    );
}

#[test]
fn tool_names_drop_their_version_date() {
    for (kind, name) in [
        ("web_search_20250305", "web_search"),
        ("web_search_preview_2025_03_11", "web_search_preview"),
        ("code_execution_20250825", "code_execution"),
        ("web_search", "web_search"),
        ("file_search", "file_search"),
        ("x_2025", "x_2025"),
        ("_20250305", ""),
    ] {
        assert_eq!(tool_name(kind), name, "{kind}");
    }
}

#[test]
fn a_key_named_twice_inside_a_member_read_is_refused() {
    // The gateway would read one copy, a provider maybe the other.
    for (body, member) in [
        (
            r#"{"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}"#,
            "stream_options",
        ),
        (
            r#"{"tools":[{"type":"web_search_20250305","name":"w","type":"custom"}]}"#,
            "tools",
        ),
        (r#"{"prompt":[{"a":1,"a":2}]}"#, "prompt"),
    ] {
        assert_eq!(
            openai(body),
            Err(RequestError::DuplicateField(member)),
            "{body}"
        );
    }
    assert_eq!(
        add_include_usage(
            br#"{"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}"#
        ),
        Err(RequestError::DuplicateField("stream_options"))
    );
    // The same key in different objects is not a duplicate.
    assert!(
        openai(r#"{"tools":[{"type":"function","name":"a"},{"type":"function","name":"b"}]}"#)
            .is_ok()
    );
}
