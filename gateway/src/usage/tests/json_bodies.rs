//! JSON bodies, and the missing, partial and malformed outcomes.

use super::*;

#[test]
fn json_bodies_at_every_split() {
    use Dialect::*;
    let chat = usage(19, 10, 3, 0, "gpt-4o-2024-08-06");
    // An output without tool calls: no provider-run tool was used.
    let responses = Usage {
        server_tool_uses: Some(Default::default()),
        ..usage(36, 87, 0, 0, "gpt-4.1-2025-04-14")
    };
    let embeddings = usage(8, 0, 0, 0, "text-embedding-3-small");
    let anthropic = usage(2112, 6, 2000, 100, "claude-sonnet-4-20250514");
    for (dialect, body, want) in [
        (OpenAi, OPENAI_CHAT, &chat),
        (OpenAi, OPENAI_RESPONSES, &responses),
        (OpenAi, OPENAI_EMBEDDINGS, &embeddings),
        (Anthropic, ANTHROPIC, &anthropic),
    ] {
        for d in [dialect, Unknown] {
            assert_eq!(
                at_every_split(BodyKind::Json, d, body),
                UsageOutcome::Found(want.clone()),
                "{d:?} {body}"
            );
        }
    }
}

#[test]
fn missing_and_null_usage() {
    assert_eq!(
        json(r#"{"error":{"type":"overloaded_error","message":"Overloaded"}}"#),
        UsageOutcome::Missing
    );
    assert_eq!(json(r#"{"model":"m","usage":null}"#), UsageOutcome::Missing);
    assert_eq!(json("[1,2]"), UsageOutcome::Missing);
    assert_eq!(json(" \n"), UsageOutcome::Missing);
    // OpenAI stream without stream_options.include_usage: usage null everywhere.
    let (head, _) = OPENAI_SSE.split_at(OPENAI_SSE.find("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[]").unwrap());
    let no_usage = format!("{head}data: [DONE]\n\n");
    assert_eq!(
        at_every_split(BodyKind::Sse, Dialect::OpenAi, &no_usage),
        UsageOutcome::Missing
    );
    assert_eq!(
        sse(
            Dialect::Unknown,
            ": keep-alive\n\nevent: ping\ndata: {}\n\n",
            true
        ),
        UsageOutcome::Missing
    );
}

#[test]
fn partial_usage_names_what_is_missing() {
    let only_input = json(r#"{"model":"gpt-4o","usage":{"prompt_tokens":5}}"#);
    assert_eq!(only_input.code().as_str(), "partial");
    assert_eq!(only_input.usage(), Some(&usage(5, 0, 0, 0, "gpt-4o")));
    assert!(matches!(&only_input, UsageOutcome::Partial(_, r) if r.contains("output")));
    let only_output = run(
        BodyKind::Json,
        Dialect::Anthropic,
        CAP,
        &[br#"{"usage":{"output_tokens":4}}"#],
        true,
    );
    assert!(
        matches!(&only_output, UsageOutcome::Partial(u, r) if u.output_tokens == 4 && r.contains("input"))
    );
    // Embeddings-like usage whose total is more than its prompt lacks an output count.
    assert_eq!(
        json(r#"{"usage":{"prompt_tokens":5,"total_tokens":9}}"#)
            .code()
            .as_str(),
        "partial"
    );
}

#[test]
fn malformed_usage_and_invalid_json() {
    for body in [
        r#"{"usage":"12"}"#,
        r#"{"usage":[1]}"#,
        r#"{"usage":{}}"#,
        r#"{"usage":{"prompt_tokens":-1,"completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":"10","completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":1e30,"completion_tokens":2}}"#,
        r#"{"usage":{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":7}}"#,
        r#"{"usage":{"input_tokens":1,"output_tokens":2,"cache_read_input_tokens":true}}"#,
        r#"{"usage":{"prompt_tokens":1,"#,
        "not json",
        "{} {}",
    ] {
        assert_eq!(json(body).code().as_str(), "malformed", "{body}");
    }
    let cut = run(
        BodyKind::Json,
        Dialect::OpenAi,
        CAP,
        &[&OPENAI_CHAT.as_bytes()[..40]],
        false,
    );
    assert!(matches!(cut, UsageOutcome::Malformed(r) if r.contains("cut off")));
    // A malformed report in a stream wins over good ones.
    let bad = format!("data: {{\"usage\":{{\"prompt_tokens\":-3}}}}\n\n{OPENAI_SSE}");
    assert_eq!(
        sse(Dialect::OpenAi, &bad, true).code().as_str(),
        "malformed"
    );
    // Hostile nesting is skipped or an error, never a stack overflow.
    let deep =
        |open: &str, close: &str| format!("{}{}", open.repeat(100_000), close.repeat(100_000));
    let big = |body: &str, kind| run(kind, Dialect::Unknown, 1 << 21, &[body.as_bytes()], true);
    assert_eq!(big(&deep("[", "]"), BodyKind::Json), UsageOutcome::Missing);
    assert_eq!(
        big(&format!("{{\"usage\":{}}}", deep("[", "]")), BodyKind::Json)
            .code()
            .as_str(),
        "malformed"
    );
    assert_eq!(
        big(
            &format!(
                "{}1{}",
                "{\"message\":".repeat(100_000),
                "}".repeat(100_000)
            ),
            BodyKind::Json
        )
        .code()
        .as_str(),
        "malformed"
    );
    assert_eq!(
        big(
            &format!("data: {}", deep("{\"usage\":", "}")),
            BodyKind::Sse
        ),
        UsageOutcome::Missing
    );
}

#[test]
fn json_larger_than_cap_is_too_large() {
    let n = OPENAI_CHAT.len();
    let found = run(
        BodyKind::Json,
        Dialect::OpenAi,
        n,
        &[OPENAI_CHAT.as_bytes()],
        true,
    );
    assert_eq!(found.code().as_str(), "found");
    let (a, b) = OPENAI_CHAT.as_bytes().split_at(n / 2);
    let mut obs = UsageObserver::new(BodyKind::Json, Dialect::OpenAi, n - 1);
    obs.observe(a);
    obs.observe(b);
    assert!(matches!(&obs.state, State::Json { buf, overflow: true } if buf.capacity() == 0));
    obs.observe(b);
    assert_eq!(obs.finish(true), UsageOutcome::TooLarge);
}

#[test]
fn huge_counts_do_not_overflow() {
    let body = format!(
        r#"{{"usage":{{"input_tokens":{m},"output_tokens":{m},"cache_read_input_tokens":{m},"cache_creation_input_tokens":{m}}}}}"#,
        m = u64::MAX
    );
    assert_eq!(json(&body).usage().map(|u| u.input_tokens), Some(u64::MAX));
}
