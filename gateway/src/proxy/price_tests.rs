//! The budget bound, end to end without sockets: a request is judged and
//! priced as the price step does it, then a simulated provider bills the
//! most the forwarded request allows. What is settled never exceeds what
//! was reserved, and a budget is never overspent.
//!
//! The simulated provider reads the forwarded body on its own terms (the
//! members each real API reads, with the provider's defaults taken at
//! their worst), and knows from the generator which input the body does
//! not carry; it shares no code with the gateway's request parsing.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{json, Value};

use super::judge;
use crate::budget::charge::{self, Charge, Ending, Plan, Reservation, Unpriceable};
use crate::budget::counters::{CounterId, Counters, InProcessCounters, Line, ReservationId};
use crate::budget::window::{Period, WindowSpec, WindowType};
use crate::model::{Action, Template};
use crate::money::{parse_amount, Currency, Decimal};
use crate::pricing::{PriceRow, PriceSource, Pricebook};
use crate::usage::{Dialect, Usage, UsageCode};

/// Output a provider generates when the request sets no limit: far more
/// than any budget's default, so a missing limit cannot hide.
const PROVIDER_DEFAULT_OUTPUT: u64 = 100_000;
/// Input Anthropic documents adding for tools (tool-use system prompt,
/// computer use, text editor and bash definitions together).
const DOCUMENTED_TOOLS_PROMPT: u64 = 2_500;

fn book() -> Pricebook {
    Pricebook::build(
        vec![PriceRow::model(
            "local",
            "*",
            Currency::USD,
            parse_amount("1").unwrap(),
            parse_amount("2").unwrap(),
            None,
            None,
            PriceSource::Set,
        )],
        &[
            ("openai".into(), Template::Openai),
            ("claude".into(), Template::Anthropic),
            ("local".into(), Template::Generic),
        ],
    )
}

/// The true context windows of the models the generator uses.
fn window(model: &str) -> u64 {
    match model {
        "gpt-4o-mini" => 128_000,
        "gpt-4.1" => 1_047_576,
        "o3-pro" => 200_000,
        "claude-sonnet-4" => 1_000_000,
        "claude-opus-4" => 200_000,
        _ => panic!("no window for {model}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Chat,
    Completions,
    Responses,
    Embeddings,
    Messages,
    Complete,
}

impl Op {
    fn route(self) -> (&'static str, Dialect, &'static str) {
        match self {
            Op::Chat => ("openai", Dialect::OpenAi, "chat.completions"),
            Op::Completions => ("openai", Dialect::OpenAi, "completions"),
            Op::Responses => ("openai", Dialect::OpenAi, "responses"),
            Op::Embeddings => ("openai", Dialect::OpenAi, "embeddings"),
            Op::Messages => ("claude", Dialect::Anthropic, "messages"),
            Op::Complete => ("claude", Dialect::Anthropic, "completions"),
        }
    }
}

/// A generated request, and what the generator knows about it.
#[derive(Debug, Clone)]
struct Generated {
    op: Op,
    body: Value,
    /// The body refers to input it does not carry.
    unseen: bool,
    /// Uses of provider-run tools the request allows (`None`: unbounded).
    tool_uses: Option<u64>,
    tools: bool,
}

fn arb_request() -> impl Strategy<Value = Generated> {
    let op = prop_oneof![
        Just(Op::Chat),
        Just(Op::Completions),
        Just(Op::Responses),
        Just(Op::Embeddings),
        Just(Op::Messages),
        Just(Op::Complete),
    ];
    (
        op,
        any::<u8>(),
        proptest::option::of(0u64..40_000),
        proptest::option::of(0u64..20),
        proptest::option::of(0u64..20),
        1usize..4,
        "\\PC{0,120}",
        any::<bool>(),
        proptest::option::of(proptest::option::of(0u64..6)),
        any::<bool>(),
    )
        .prop_map(
            |(op, pick, limit, n, best_of, prompts, text, refer, tool, stream)| {
                build(
                    op, pick, limit, n, best_of, prompts, text, refer, tool, stream,
                )
            },
        )
}

#[allow(clippy::too_many_arguments)]
fn build(
    op: Op,
    pick: u8,
    limit: Option<u64>,
    n: Option<u64>,
    best_of: Option<u64>,
    prompts: usize,
    text: String,
    refer: bool,
    tool: Option<Option<u64>>,
    stream: bool,
) -> Generated {
    let openai = ["gpt-4o-mini", "gpt-4.1", "o3-pro"];
    let claude = ["claude-sonnet-4", "claude-opus-4"];
    let model = match op {
        Op::Embeddings => "text-embedding-3-small",
        Op::Messages | Op::Complete => claude[pick as usize % claude.len()],
        _ => openai[pick as usize % openai.len()],
    };
    let mut body = json!({ "model": model });
    let mut unseen = false;
    let mut tool_uses = Some(0);
    let mut tools = false;
    let set = |body: &mut Value, k: &str, v: Value| {
        body[k] = v;
    };
    match op {
        Op::Chat => {
            let mut content = json!([{ "type": "text", "text": text }]);
            if refer {
                content.as_array_mut().unwrap().push(json!({
                    "type": "image_url", "image_url": { "url": "https://example.com/huge.png" }
                }));
                unseen = true;
            }
            set(
                &mut body,
                "messages",
                json!([{ "role": "user", "content": content }]),
            );
            if let Some(l) = limit {
                set(
                    &mut body,
                    if pick.is_multiple_of(2) {
                        "max_tokens"
                    } else {
                        "max_completion_tokens"
                    },
                    l.into(),
                );
            }
            if let Some(n) = n {
                set(&mut body, "n", n.into());
            }
            if tool.is_some() {
                set(&mut body, "web_search_options", json!({}));
                tool_uses = Some(1);
                unseen = true;
            }
        }
        Op::Completions => {
            let prompt = match prompts {
                1 => Value::String(text),
                k => Value::Array(vec![Value::String(text); k]),
            };
            set(&mut body, "prompt", prompt);
            if let Some(l) = limit {
                set(&mut body, "max_tokens", l.into());
            }
            if let Some(n) = n {
                set(&mut body, "n", n.into());
            }
            if let Some(b) = best_of {
                set(&mut body, "best_of", b.into());
            }
        }
        Op::Responses => {
            set(&mut body, "input", Value::String(text));
            if refer {
                set(&mut body, "previous_response_id", "resp_abc".into());
                unseen = true;
            }
            if let Some(l) = limit {
                set(&mut body, "max_output_tokens", l.into());
            }
            if let Some(max) = tool {
                set(&mut body, "tools", json!([{ "type": "web_search" }]));
                tools = true;
                unseen = true;
                tool_uses = max;
                if let Some(m) = max {
                    set(&mut body, "max_tool_calls", m.into());
                }
            }
        }
        Op::Embeddings => {
            set(&mut body, "input", Value::String(text));
        }
        Op::Messages => {
            let mut content = json!([{ "type": "text", "text": text }]);
            if pick.is_multiple_of(5) {
                content[0]["cache_control"] = json!({ "type": "ephemeral", "ttl": "1h" });
            }
            if refer {
                content.as_array_mut().unwrap().push(json!({
                    "type": "document", "source": { "type": "url", "url": "https://example.com/a.pdf" }
                }));
                unseen = true;
            }
            set(
                &mut body,
                "messages",
                json!([{ "role": "user", "content": content }]),
            );
            if let Some(l) = limit {
                set(&mut body, "max_tokens", l.into());
            }
            let mut list = vec![json!({ "type": "bash_20250124", "name": "bash" })];
            if let Some(max) = tool {
                let mut search = json!({ "type": "web_search_20250305", "name": "web_search" });
                if let Some(m) = max {
                    search["max_uses"] = m.into();
                }
                list.push(search);
                unseen = true;
                tool_uses = max;
            }
            if pick.is_multiple_of(3) || tool.is_some() {
                set(&mut body, "tools", Value::Array(list));
                tools = true;
            }
        }
        Op::Complete => {
            set(
                &mut body,
                "prompt",
                format!("\n\nHuman: {text}\n\nAssistant:").into(),
            );
            if let Some(l) = limit {
                set(&mut body, "max_tokens_to_sample", l.into());
            }
        }
    }
    if stream && op != Op::Embeddings {
        set(&mut body, "stream", true.into());
    }
    Generated {
        op,
        body,
        unseen,
        tool_uses,
        tools,
    }
}

/// The simulated provider: the most it bills for `forwarded`, read as the
/// real API reads it.
fn max_bill(g: &Generated, forwarded: &[u8]) -> Usage {
    let body: Value = serde_json::from_slice(forwarded).expect("forwarded JSON");
    let int = |k: &str| body.get(k).and_then(Value::as_u64);
    let limit = |keys: &[&str]| {
        keys.iter()
            .filter_map(|k| int(k))
            .max()
            .unwrap_or(PROVIDER_DEFAULT_OUTPUT)
    };
    let (per_output, outputs) = match g.op {
        Op::Chat => (
            limit(&["max_tokens", "max_completion_tokens"]),
            int("n").unwrap_or(1).max(1),
        ),
        Op::Completions => {
            let prompts = match &body["prompt"] {
                Value::Array(p) => p.len() as u64,
                _ => 1,
            };
            let choices = int("n")
                .unwrap_or(1)
                .max(int("best_of").unwrap_or(1))
                .max(1);
            (limit(&["max_tokens"]), choices * prompts)
        }
        Op::Responses => (limit(&["max_output_tokens"]), 1),
        Op::Embeddings => (0, 1),
        Op::Messages => (limit(&["max_tokens"]), 1),
        Op::Complete => (limit(&["max_tokens_to_sample"]), 1),
    };
    let model = body["model"].as_str().unwrap();
    let uses = g.tool_uses.expect("admitted only when bounded");
    let rounds = uses + 1;
    let input = if g.unseen {
        window(model)
    } else {
        forwarded.len() as u64 + if g.tools { DOCUMENTED_TOOLS_PROMPT } else { 0 }
    };
    let input = input * rounds;
    let anthropic = matches!(g.op, Op::Messages | Op::Complete);
    Usage {
        input_tokens: input,
        output_tokens: per_output * outputs * rounds,
        cached_input_tokens: 0,
        // All input written to the cache: the dearest way to bill it (for
        // an hour, when the request asks for that).
        cache_write_tokens: if anthropic { input } else { 0 },
        cache_write_1h_tokens: if anthropic && body.to_string().contains(r#""ttl":"1h""#) {
            input
        } else {
            0
        },
        server_tool_uses: anthropic.then(|| BTreeMap::from([("web_search".to_string(), uses)])),
        model: Some(model.to_string()),
    }
}

fn plan(max_output_tokens: u64) -> Plan {
    Plan {
        lines: Vec::new(),
        rates: Vec::new(),
        max_output_tokens,
    }
}

/// Judged and priced as the price step does it.
fn admit(
    book: &Arc<Pricebook>,
    g: &Generated,
    plan: &Plan,
) -> Result<(Bytes, charge::Priced), Unpriceable> {
    let (provider, dialect, resource) = g.op.route();
    let body = Bytes::from(serde_json::to_vec(&g.body).unwrap());
    let judged = judge(dialect, resource, body, Some(plan)).expect("generated bodies are valid");
    let priced = charge::price(
        book,
        provider,
        dialect,
        resource,
        Action::Create,
        judged.facts.as_ref(),
        plan.max_output_tokens,
    )?;
    Ok((judged.body, priced))
}

fn settle(book: &Arc<Pricebook>, priced: charge::Priced, usage: &Usage) -> Decimal {
    let charge = Charge {
        prices: book.clone(),
        priced,
        ticket: None,
        reservation: None,
    };
    let settled = charge.settle(
        Ending {
            status: Some(200),
            usage_code: Some(UsageCode::Found),
            usage: Some(usage),
        },
        Timestamp::now(),
    );
    settled.cost.expect("a budgeted call has a cost")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Settled ≤ reserved for every request the gateway admits; and it
    /// refuses only what it cannot bound.
    #[test]
    fn settled_never_exceeds_reserved(g in arb_request(), default_out in 1u64..8192) {
        let book = Arc::new(book());
        match admit(&book, &g, &plan(default_out)) {
            Ok((forwarded, priced)) => {
                let reserved = priced.estimate.amount;
                let usage = max_bill(&g, &forwarded);
                let settled = settle(&book, priced, &usage);
                prop_assert!(
                    settled <= reserved,
                    "settled {settled} > reserved {reserved}\nsent {}\nforwarded {}\nbilled {usage:?}",
                    g.body, String::from_utf8_lossy(&forwarded)
                );
            }
            Err(Unpriceable::ToolUnbounded { .. }) => prop_assert_eq!(g.tool_uses, None),
            Err(e) => prop_assert!(false, "refused {}: {e}", g.body),
        }
    }
}

/// Many concurrent calls under one budget, each billed the most it allows:
/// total settled spend stays within the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_max_bills_stay_within_the_limit() {
    let book = Arc::new(book());
    let counters: Arc<dyn Counters> =
        Arc::new(InProcessCounters::new(SignedDuration::from_secs(600)));
    let spec = WindowSpec::new(Period::Daily, WindowType::Calendar, "UTC").unwrap();
    let limit = parse_amount("5").unwrap();
    let line = Line {
        id: CounterId::new("budget-1", &spec),
        policy_version: 1,
        limit,
        currency: Currency::USD,
        spec,
    };
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let requests: Vec<Generated> = (0..400)
        .map(|_| arb_request().new_tree(&mut runner).unwrap().current())
        .collect();
    let mut tasks = Vec::new();
    for g in requests {
        let (book, counters, line) = (book.clone(), counters.clone(), line.clone());
        tasks.push(tokio::spawn(async move {
            let Ok((forwarded, priced)) = admit(&book, &g, &plan(256)) else {
                return false;
            };
            let hold = counters
                .reserve(
                    "agent",
                    ReservationId::new(),
                    &[line],
                    priced.estimate.amount,
                    Timestamp::now(),
                )
                .await;
            let Ok(hold) = hold else { return false };
            tokio::task::yield_now().await;
            let usage = max_bill(&g, &forwarded);
            let charge = Charge {
                prices: book.clone(),
                priced,
                ticket: None,
                reservation: Some(Reservation::new(hold, counters.clone())),
            };
            charge.settle(
                Ending {
                    status: Some(200),
                    usage_code: Some(UsageCode::Found),
                    usage: Some(&usage),
                },
                Timestamp::now(),
            );
            true
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    let standing = counters
        .standing("agent", &line, Timestamp::now())
        .await
        .unwrap();
    assert!(admitted > 0, "some calls fit");
    assert_eq!(standing.reserved, Decimal::ZERO, "every hold settled");
    assert!(
        standing.spent <= limit,
        "spent {} of a {limit} budget over {admitted} calls",
        standing.spent
    );
}

// ------------------------------------------------------------ refusals

fn price_of(
    provider: &str,
    dialect: Dialect,
    resource: &str,
    body: &str,
) -> Result<charge::Priced, Unpriceable> {
    let book = book();
    let judged = judge(
        dialect,
        resource,
        Bytes::from(body.to_string()),
        Some(&plan(100)),
    )
    .unwrap();
    charge::price(
        &book,
        provider,
        dialect,
        resource,
        Action::Create,
        judged.facts.as_ref(),
        100,
    )
}

#[test]
fn what_cannot_be_bounded_is_refused_with_a_code_that_says_why() {
    let search = r#"{"model":"claude-sonnet-4","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#;
    let code = r#"{"model":"claude-sonnet-4","max_tokens":5,"tools":[{"type":"code_execution_20250825","name":"code_execution","max_uses":1}]}"#;
    type Case = (
        &'static str,
        Dialect,
        &'static str,
        &'static str,
        fn(&Unpriceable) -> bool,
    );
    let cases: [Case; 6] = [
        // A generic provider: the gateway knows no output limit of it.
        (
            "local",
            Dialect::Unknown,
            "chat",
            r#"{"model":"llama3","max_tokens":5}"#,
            |e| matches!(e, Unpriceable::OutputUnbounded { .. }),
        ),
        // An operation that bills otherwise than by tokens.
        (
            "openai",
            Dialect::OpenAi,
            "images.generations",
            r#"{"model":"dall-e-3","n":10}"#,
            |e| matches!(e, Unpriceable::OutputUnbounded { .. }),
        ),
        // Input from a previous response, and a model without a context window.
        (
            "openai",
            Dialect::OpenAi,
            "responses",
            r#"{"model":"text-embedding-3-small","previous_response_id":"r"}"#,
            |e| {
                matches!(
                    e,
                    Unpriceable::InputUnbounded {
                        what: "previous_response_id",
                        ..
                    }
                )
            },
        ),
        // A provider-run tool without a bound on its uses.
        ("claude", Dialect::Anthropic, "messages", search, |e| {
            matches!(e, Unpriceable::ToolUnbounded { .. })
        }),
        // A provider-run tool the pricebook has no price for.
        ("claude", Dialect::Anthropic, "messages", code, |e| {
            matches!(e, Unpriceable::ToolUnpriced { .. })
        }),
        // A service tier billed above the standard prices.
        (
            "openai",
            Dialect::OpenAi,
            "chat.completions",
            r#"{"model":"gpt-4o-mini","service_tier":"priority"}"#,
            |e| matches!(e, Unpriceable::Tier { .. }),
        ),
    ];
    for (provider, dialect, resource, body, want) in cases {
        let e = price_of(provider, dialect, resource, body);
        assert!(e.as_ref().is_err_and(want), "{resource} {body}: {e:?}");
    }
    for tier in ["auto", "default", "flex"] {
        let body = format!(r#"{{"model":"gpt-4o-mini","service_tier":"{tier}"}}"#);
        assert!(
            price_of("openai", Dialect::OpenAi, "chat.completions", &body).is_ok(),
            "{tier}"
        );
    }
}

#[test]
fn reservations_count_what_the_provider_can_bill() {
    let tokens = |body: &str, resource: &str, dialect: Dialect, provider: &str| {
        price_of(provider, dialect, resource, body).unwrap().tokens
    };
    let chat = |body: &str| tokens(body, "chat.completions", Dialect::OpenAi, "openai");
    let one = chat(r#"{"model":"gpt-4o-mini","max_tokens":1000}"#);
    let sixteen = chat(r#"{"model":"gpt-4o-mini","max_tokens":1000,"n":16}"#);
    assert_eq!(
        sixteen - one,
        15 * 1000 + 7,
        "15 more outputs, and the 7 bytes of ,\"n\":16"
    );
    // The legacy limit, not the budget's default of 100.
    let legacy = tokens(
        r#"{"model":"claude-opus-4","prompt":"x","max_tokens_to_sample":20000}"#,
        "completions",
        Dialect::Anthropic,
        "claude",
    );
    assert!(legacy >= 20_000, "{legacy}");
    // 106 bytes that refer to a previous response: the context window.
    let stored = tokens(
        r#"{"model":"gpt-4o-mini","previous_response_id":"resp_0123456789","input":"and now?","max_output_tokens":10}"#,
        "responses",
        Dialect::OpenAi,
        "openai",
    );
    assert_eq!(stored, 128_000 + 10);
    // Three searches: four rounds of the whole window and the limit.
    let searched = price_of(
        "claude",
        Dialect::Anthropic,
        "messages",
        r#"{"model":"claude-opus-4","max_tokens":10,"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":3}]}"#,
    )
    .unwrap();
    assert_eq!(searched.tokens, 4 * (200_000 + 10));
    // 4 × (200 000 × 18.75 + 10 × 75) / 10^6 + 3 × 0.01 for the searches.
    assert_eq!(searched.estimate.amount, parse_amount("15.033").unwrap());
    // Reads are free, whatever model they name.
    let counted = charge::price(
        &book(),
        "claude",
        Dialect::Anthropic,
        "messages.count_tokens",
        Action::Read,
        judge(
            Dialect::Anthropic,
            "messages.count_tokens",
            Bytes::from_static(br#"{"model":"claude-opus-4"}"#),
            None,
        )
        .unwrap()
        .facts
        .as_ref(),
        100,
    )
    .unwrap();
    assert_eq!(counted.estimate.amount, Decimal::ZERO);
}

#[test]
fn tool_uses_are_settled_as_reported_else_as_reserved() {
    let book = Arc::new(book());
    let body = r#"{"model":"claude-opus-4","max_tokens":10,"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":3}]}"#;
    let priced = || price_of("claude", Dialect::Anthropic, "messages", body).unwrap();
    let usage = |uses: Option<u64>| Usage {
        input_tokens: 1_000_000,
        output_tokens: 0,
        server_tool_uses: uses.map(|n| BTreeMap::from([("web_search".to_string(), n)])),
        model: Some("claude-opus-4".into()),
        ..Usage::default()
    };
    // 1M input tokens at 15/M = 15, plus the searches at 0.01 each.
    assert_eq!(
        settle(&book, priced(), &usage(Some(2))),
        parse_amount("15.02").unwrap()
    );
    assert_eq!(
        settle(&book, priced(), &usage(Some(0))),
        parse_amount("15").unwrap()
    );
    // Not reported: as many as allowed.
    assert_eq!(
        settle(&book, priced(), &usage(None)),
        parse_amount("15.03").unwrap()
    );
}

#[test]
fn only_the_limit_the_operation_honours_counts() {
    // A lenient upstream ignores the Responses API's member on a chat call:
    // the budget's limit is written in, and priced.
    let body = Bytes::from_static(br#"{"model":"gpt-4o-mini","max_output_tokens":1}"#);
    let judged = judge(Dialect::OpenAi, "chat.completions", body, Some(&plan(77))).unwrap();
    let sent: Value = serde_json::from_slice(&judged.body).unwrap();
    assert_eq!(sent["max_completion_tokens"], 77, "{sent}");
    assert_eq!(judged.facts.unwrap().max_output_tokens, Some(77));
    // The honoured one is kept as sent.
    let body =
        Bytes::from_static(br#"{"model":"gpt-4o-mini","max_tokens":5,"max_output_tokens":900}"#);
    let judged = judge(
        Dialect::OpenAi,
        "chat.completions",
        body.clone(),
        Some(&plan(77)),
    )
    .unwrap();
    assert_eq!(judged.body, body);
    assert_eq!(judged.facts.unwrap().max_output_tokens, Some(5));
}

#[test]
fn a_request_without_an_output_limit_gets_its_operations_own() {
    for (dialect, resource, field) in [
        (Dialect::OpenAi, "chat.completions", "max_completion_tokens"),
        (Dialect::OpenAi, "completions", "max_tokens"),
        (Dialect::OpenAi, "responses", "max_output_tokens"),
        (Dialect::Anthropic, "messages", "max_tokens"),
        (Dialect::Anthropic, "completions", "max_tokens_to_sample"),
    ] {
        let judged = judge(
            dialect,
            resource,
            Bytes::from_static(br#"{"model":"m"}"#),
            Some(&plan(77)),
        )
        .unwrap();
        let sent: Value = serde_json::from_slice(&judged.body).unwrap();
        assert_eq!(sent[field], 77, "{resource}: {sent}");
        assert_eq!(judged.facts.unwrap().input_bytes, judged.body.len() as u64);
    }
}
