//! SSE streams: framing, cut-off streams and the per-event cap.

use super::*;

#[test]
fn sse_streams_at_every_split() {
    use Dialect::*;
    let anthropic = anthropic_sse();
    for (dialect, body, want) in [
        (OpenAi, OPENAI_SSE, usage(9, 2, 0, 0, "gpt-4o-mini")),
        (
            OpenAi,
            RESPONSES_SSE,
            Usage {
                server_tool_uses: Some(Default::default()),
                ..usage(37, 11, 5, 0, "gpt-4.1")
            },
        ),
        (
            Anthropic,
            anthropic.as_str(),
            usage(35, 15, 10, 0, "claude-3-5-haiku-20241022"),
        ),
    ] {
        for d in [dialect, Unknown] {
            let found = UsageOutcome::Found(want.clone());
            assert_eq!(at_every_split(BodyKind::Sse, d, body), found, "{d:?}");
            let crlf = body.replace('\n', "\r\n");
            assert_eq!(at_every_split(BodyKind::Sse, d, &crlf), found, "{d:?} CRLF");
            assert_eq!(
                at_every_split(BodyKind::Sse, d, &body.replace('\n', "\r")),
                found,
                "{d:?} CR"
            );
        }
    }
}

#[test]
fn anthropic_stream_cut_off() {
    let partial = |body: &str, complete| match sse(Dialect::Anthropic, body, complete) {
        UsageOutcome::Partial(u, reason) => (u, reason),
        other => panic!("{other:?}"),
    };
    let model = "claude-3-5-haiku-20241022";
    let (u, reason) = partial(&[ANTHROPIC_START, ANTHROPIC_BODY].concat(), false);
    assert_eq!(u, usage(35, 1, 10, 0, model));
    assert!(
        reason.contains("lower bound") && reason.contains("cut off"),
        "{reason}"
    );
    let error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let (_, reason) = partial(&[ANTHROPIC_START, error].concat(), true);
    assert!(reason.contains("error event"), "{reason}");
    let (u, reason) = partial(&[ANTHROPIC_START, ANTHROPIC_DELTA].concat(), false);
    assert_eq!(u, usage(35, 15, 10, 0, model));
    assert!(reason.contains("message_stop"), "{reason}");
    // A complete stream whose message_stop is missing still has final counts.
    assert_eq!(
        sse(
            Dialect::Anthropic,
            &[ANTHROPIC_START, ANTHROPIC_DELTA].concat(),
            true
        )
        .code()
        .as_str(),
        "found"
    );
    // Cut off before any usage, or mid-event: nothing invented.
    assert_eq!(
        sse(Dialect::Anthropic, &ANTHROPIC_START[..60], false),
        UsageOutcome::Missing
    );
    assert_eq!(sse(Dialect::Anthropic, "", false), UsageOutcome::Missing);
}

#[test]
fn openai_stream_cut_after_usage_chunk_is_found() {
    let cut = OPENAI_SSE.trim_end_matches("data: [DONE]\n\n");
    assert_eq!(sse(Dialect::OpenAi, cut, false).code().as_str(), "found");
}

#[test]
fn newer_anthropic_delta_carries_cumulative_input() {
    let delta = "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":30,\"cache_creation_input_tokens\":4,\"cache_read_input_tokens\":10,\"output_tokens\":20}}\n\n";
    let body = [ANTHROPIC_START, delta, ANTHROPIC_STOP].concat();
    assert_eq!(
        sse(Dialect::Unknown, &body, true),
        UsageOutcome::Found(usage(44, 20, 10, 4, "claude-3-5-haiku-20241022"))
    );
}

#[test]
fn sse_framing_details() {
    let want = UsageOutcome::Found(usage(3, 4, 0, 0, "m"));
    // No space after the colon, comments, multi-line data joined by LF, a BOM, no final blank line.
    let body = "\u{feff}: hi\ndata:{\"model\":\"m\",\n: mid-event comment\ndata: \"usage\":{\"prompt_tokens\":3,\ndata:\"completion_tokens\":4}}";
    assert_eq!(at_every_split(BodyKind::Sse, Dialect::OpenAi, body), want);
    // That last event is only trusted when the body ended properly.
    assert_eq!(sse(Dialect::OpenAi, body, false), UsageOutcome::Missing);
    // `event:` names the event when the data has no `type`.
    let named = "event: message_delta\ndata: {\"usage\":{\"output_tokens\":7}}\n\n";
    assert_eq!(
        sse(
            Dialect::Anthropic,
            &[ANTHROPIC_START, named].concat(),
            false
        )
        .code()
        .as_str(),
        "partial"
    );
    // Dialects only read their own shapes.
    assert_ne!(
        sse(Dialect::OpenAi, &anthropic_sse(), true).code().as_str(),
        "found"
    );
    assert_eq!(
        sse(Dialect::Anthropic, RESPONSES_SSE, true),
        UsageOutcome::Missing
    );
}

#[test]
fn sse_line_longer_than_cap_is_skipped_in_bounded_memory() {
    let cap = 512;
    let huge = "x".repeat(100_000);
    let body = format!(
        ": {huge}\ndata: {{\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":1}},\"pad\":\"{huge}\"}}\n\n\
         data: {{\"a\":1}}\ndata: \"{huge}\"\n\nevent: {huge}\ndata: {{}}\n\n{OPENAI_SSE}"
    );
    let mut obs = UsageObserver::new(BodyKind::Sse, Dialect::OpenAi, cap);
    for chunk in body.as_bytes().chunks(1000) {
        obs.observe(chunk);
        let State::Sse(sse) = &obs.state else {
            unreachable!()
        };
        assert!(sse.held() <= cap && sse.line.capacity() <= cap && sse.data.capacity() <= cap);
    }
    assert_eq!(
        obs.finish(true),
        UsageOutcome::Found(usage(9, 2, 0, 0, "gpt-4o-mini"))
    );
    // When the only usage-bearing event was too large, say so.
    let only_big = format!("data: {{\"usage\":{{\"prompt_tokens\":1}},\"pad\":\"{huge}\"}}\n\n");
    assert_eq!(
        run(
            BodyKind::Sse,
            Dialect::OpenAi,
            cap,
            &[only_big.as_bytes()],
            true
        ),
        UsageOutcome::TooLarge
    );
    assert_eq!(
        run(
            BodyKind::Sse,
            Dialect::OpenAi,
            0,
            &[OPENAI_SSE.as_bytes()],
            true
        ),
        UsageOutcome::TooLarge
    );
}

/// Found by the `usage_sse` fuzz target: a chunk ending in the CR of a CRLF
/// lost the CR, so the LF opening the next chunk read as a blank line and
/// ended the event early.
#[test]
fn a_crlf_split_between_its_cr_and_lf_is_one_line_end() {
    let body = b"data: {\"usage\":\r\ndata: {\"prompt_tokens\":3,\"completion_tokens\":2}}\r\n\r\n";
    let at = body.iter().position(|&b| b == b'\r').unwrap() + 1;
    let (a, b) = body.split_at(at);
    let want = UsageOutcome::Found(Usage {
        input_tokens: 3,
        output_tokens: 2,
        ..Usage::default()
    });
    assert_eq!(
        run(BodyKind::Sse, Dialect::OpenAi, CAP, &[body], true),
        want
    );
    assert_eq!(
        run(BodyKind::Sse, Dialect::OpenAi, CAP, &[a, b], true),
        want
    );
    // The fuzzer's input: an oversized line, cut off after its CRLF.
    let chunks: [&[u8]; 3] = [b"", b"\xff\xff\xff\r", b"\n"];
    let whole = chunks.concat();
    assert_eq!(
        run(BodyKind::Sse, Dialect::OpenAi, 2, &chunks, false),
        run(BodyKind::Sse, Dialect::OpenAi, 2, &[&whole], false),
    );
}
