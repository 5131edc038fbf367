//! Unit tests of the usage observer: shared helpers and recorded provider
//! bodies here, the tests by framing in submodules.

use super::*;

mod json_bodies;
mod sse_streams;

const CAP: usize = 64 * 1024;

fn run(
    kind: BodyKind,
    dialect: Dialect,
    cap: usize,
    chunks: &[&[u8]],
    complete: bool,
) -> UsageOutcome {
    let mut obs = UsageObserver::new(kind, dialect, cap);
    chunks.iter().for_each(|c| obs.observe(c));
    obs.finish(complete)
}

/// Same outcome whole, split in two at every byte, and byte by byte.
fn at_every_split(kind: BodyKind, dialect: Dialect, body: &str) -> UsageOutcome {
    let body = body.as_bytes();
    let whole = run(kind, dialect, CAP, &[body], true);
    for i in 0..=body.len() {
        let (a, b) = body.split_at(i);
        assert_eq!(
            run(kind, dialect, CAP, &[a, b], true),
            whole,
            "split at {i}"
        );
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(run(kind, dialect, CAP, &bytes, true), whole, "byte by byte");
    whole
}

fn usage(input: u64, output: u64, cached: u64, write: u64, model: &str) -> Usage {
    let model = Some(model.to_owned());
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: write,
        cache_write_1h_tokens: 0,
        server_tool_uses: None,
        model,
    }
}

fn json(body: &str) -> UsageOutcome {
    run(
        BodyKind::Json,
        Dialect::Unknown,
        CAP,
        &[body.as_bytes()],
        true,
    )
}

fn sse(dialect: Dialect, body: &str, complete: bool) -> UsageOutcome {
    run(BodyKind::Sse, dialect, CAP, &[body.as_bytes()], complete)
}

const OPENAI_CHAT: &str = r#"{"id":"chatcmpl-9x","object":"chat.completion","created":1718000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Héllo — wörld ✓"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_1"}"#;
const OPENAI_RESPONSES: &str = r#"{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1-2025-04-14","output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Ça va ✓"}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;
const OPENAI_EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
const ANTHROPIC: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Bonjour ✓"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":6,"service_tier":"standard"}}"#;

const OPENAI_SSE: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé ✓\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);
const RESPONSES_SSE: &str = concat!(
    "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"model\":\"gpt-4.1\",\"output\":[],\"usage\":null}}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi ✓\"}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"model\":\"gpt-4.1\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi ✓\"}]}],\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":48}}}\n\n",
);
const ANTHROPIC_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-haiku-20241022\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n";
const ANTHROPIC_BODY: &str = concat!(
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Grüße ✓\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
);
const ANTHROPIC_DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n";
const ANTHROPIC_STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn anthropic_sse() -> String {
    [
        ANTHROPIC_START,
        ANTHROPIC_BODY,
        ANTHROPIC_DELTA,
        ANTHROPIC_STOP,
    ]
    .concat()
}
#[test]
fn content_types_and_codes() {
    for (ct, want) in [
        (Some("application/json"), BodyKind::Json),
        (Some("Application/JSON; charset=utf-8"), BodyKind::Json),
        (Some("application/problem+json"), BodyKind::Json),
        (Some("text/event-stream;charset=UTF-8"), BodyKind::Sse),
        (Some(" text/event-stream "), BodyKind::Sse),
        (Some("text/plain"), BodyKind::Other),
        (Some("application/jsonl"), BodyKind::Other),
        (Some(""), BodyKind::Other),
        (None, BodyKind::Other),
    ] {
        assert_eq!(BodyKind::from_content_type(ct), want, "{ct:?}");
    }
    assert_eq!(
        run(BodyKind::Other, Dialect::Unknown, 0, &[b"x"], true),
        UsageOutcome::NotApplicable
    );
    let codes = [
        UsageOutcome::Found(Usage::default()).code().as_str(),
        UsageOutcome::Partial(Usage::default(), String::new())
            .code()
            .as_str(),
        UsageOutcome::Missing.code().as_str(),
        UsageOutcome::Malformed(String::new()).code().as_str(),
        UsageOutcome::TooLarge.code().as_str(),
        UsageOutcome::NotApplicable.code().as_str(),
    ];
    assert_eq!(
        codes,
        [
            "found",
            "partial",
            "missing",
            "malformed",
            "too_large",
            "not_applicable"
        ]
    );
    assert_eq!(UsageOutcome::Missing.usage(), None);
}

mod tool_uses {
    use super::*;

    fn uses(outcome: &UsageOutcome) -> Option<Vec<(String, u64)>> {
        let u = outcome.usage().expect("usage found");
        u.server_tool_uses
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
    }

    #[test]
    fn responses_output_calls_of_provider_run_tools_are_counted() {
        let body = r#"{"object":"response","model":"gpt-4.1","output":[
            {"type":"web_search_call","id":"ws_1","status":"completed"},
            {"type":"function_call","name":"f","arguments":"{}"},
            {"type":"web_search_call","id":"ws_2","status":"completed"},
            {"type":"file_search_call","id":"fs_1","queries":["q"]},
            {"type":"message","content":[{"type":"output_text","text":"done"}]}
        ],"usage":{"input_tokens":10,"output_tokens":5,"total_tokens":15}}"#;
        let outcome = run(
            BodyKind::Json,
            Dialect::OpenAi,
            CAP,
            &[body.as_bytes()],
            true,
        );
        assert_eq!(
            uses(&outcome),
            Some(vec![("file_search".into(), 1), ("web_search".into(), 2)])
        );
        // No output array: nothing reported (the reservation's count holds).
        let plain = r#"{"object":"chat.completion","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let outcome = run(
            BodyKind::Json,
            Dialect::OpenAi,
            CAP,
            &[plain.as_bytes()],
            true,
        );
        assert_eq!(uses(&outcome), None);
        // An output array without tool calls: none used.
        let none =
            r#"{"output":[{"type":"message"}],"usage":{"input_tokens":1,"output_tokens":1}}"#;
        let outcome = run(
            BodyKind::Json,
            Dialect::OpenAi,
            CAP,
            &[none.as_bytes()],
            true,
        );
        assert_eq!(uses(&outcome), Some(vec![]));
        // `output` of another shape is skipped.
        let other = r#"{"output":"text","usage":{"input_tokens":1,"output_tokens":1}}"#;
        let outcome = run(
            BodyKind::Json,
            Dialect::OpenAi,
            CAP,
            &[other.as_bytes()],
            true,
        );
        assert_eq!(uses(&outcome), None);
    }

    #[test]
    fn the_completed_event_of_a_stream_reports_the_calls() {
        let stream = concat!(
            "event: response.created\n",
            "data: {\"type\":\"response.created\",\"response\":{\"output\":[],\"usage\":null}}\n\n",
            "event: response.completed\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-4.1\",",
            "\"output\":[{\"type\":\"web_search_call\"},{\"type\":\"message\"}],",
            "\"usage\":{\"input_tokens\":3,\"output_tokens\":4,\"total_tokens\":7}}}\n\n",
        );
        let outcome = sse(Dialect::OpenAi, stream, true);
        assert_eq!(uses(&outcome), Some(vec![("web_search".into(), 1)]));
    }

    #[test]
    fn anthropic_reports_server_tool_use_in_its_usage() {
        let body = r#"{"type":"message","usage":{"input_tokens":10,"output_tokens":5,
            "server_tool_use":{"web_search_requests":3,"web_fetch_requests":1,"note":"x"}}}"#;
        let outcome = run(
            BodyKind::Json,
            Dialect::Anthropic,
            CAP,
            &[body.as_bytes()],
            true,
        );
        assert_eq!(
            uses(&outcome),
            Some(vec![("web_fetch".into(), 1), ("web_search".into(), 3)])
        );
        let bad = r#"{"usage":{"input_tokens":1,"output_tokens":1,"server_tool_use":{"web_search_requests":-1}}}"#;
        let outcome = run(
            BodyKind::Json,
            Dialect::Anthropic,
            CAP,
            &[bad.as_bytes()],
            true,
        );
        assert!(matches!(outcome, UsageOutcome::Malformed(_)), "{outcome:?}");
    }

    #[test]
    fn client_run_calls_are_not_provider_tools() {
        use crate::usage::fields::server_tool_of;
        assert_eq!(server_tool_of("web_search_call"), Some("web_search"));
        assert_eq!(server_tool_of("mcp_call"), Some("mcp"));
        for client in [
            "function_call",
            "computer_call",
            "local_shell_call",
            "custom_tool_call",
            "message",
            "_call",
        ] {
            assert_eq!(server_tool_of(client), None, "{client}");
        }
    }
}

#[test]
fn hour_long_cache_writes_are_read_apart() {
    // An Anthropic body whose hour-long writes are `hour`.
    let read = |hour: &str| {
        let body = format!(
            r#"{{"type":"message","usage":{{"input_tokens":10,"output_tokens":5,
            "cache_creation_input_tokens":300,"cache_read_input_tokens":0,
            "cache_creation":{{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":{hour}}}}}}}"#
        );
        run(
            BodyKind::Json,
            Dialect::Anthropic,
            CAP,
            &[body.as_bytes()],
            true,
        )
    };
    let u = read("200").usage().cloned().unwrap();
    assert_eq!((u.cache_write_tokens, u.cache_write_1h_tokens), (300, 200));
    // Never more than the writes it is part of.
    assert_eq!(read("900").usage().unwrap().cache_write_1h_tokens, 300);
    let bad = read("\"x\"");
    assert!(matches!(bad, UsageOutcome::Malformed(_)), "{bad:?}");
}
