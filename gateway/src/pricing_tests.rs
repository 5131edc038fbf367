use proptest::prelude::*;

use super::*;
use crate::money::MAX_AMOUNT;

fn d(s: &str) -> Decimal {
    parse_amount(s).unwrap()
}

fn usd(s: &str) -> Money {
    Money::new(d(s), Currency::USD)
}

fn usage(input: u64, cached: u64, write: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: write,
        cache_write_1h_tokens: 0,
        server_tool_uses: None,
        model: None,
    }
}

/// `openai` and `azure` (both OpenAI templates), `claude` (Anthropic) and
/// `local` (generic).
fn providers() -> Vec<(String, Template)> {
    vec![
        ("openai".into(), Template::Openai),
        ("azure".into(), Template::Openai),
        ("claude".into(), Template::Anthropic),
        ("local".into(), Template::Generic),
    ]
}

fn defaults() -> Pricebook {
    Pricebook::build(Vec::new(), &providers())
}

fn set(provider: &str, model: &str, input: &str, output: &str) -> PriceRow {
    PriceRow::model(
        provider,
        model,
        Currency::USD,
        d(input),
        d(output),
        None,
        None,
        PriceSource::Set,
    )
}

#[test]
fn pricing_openai_usage_costs_exactly() {
    let book = defaults();
    // 800 uncached × 0.15 + 200 cached × 0.075 + 50 out × 0.60 = 165 per million.
    let cost = book
        .cost("openai", "gpt-4o-mini", &usage(1000, 200, 0, 50))
        .unwrap();
    assert_eq!(cost, usd("0.000165"));
    // A million in and out of a dated gpt-4o: 2.50 + 10.00.
    let cost = book
        .cost(
            "openai",
            "gpt-4o-2024-08-06",
            &usage(1_000_000, 0, 0, 1_000_000),
        )
        .unwrap();
    assert_eq!(cost, usd("12.50"));
    // Embeddings: input only, 10 000 × 0.02 = 200 per million.
    let cost = book
        .cost("openai", "text-embedding-3-small", &usage(10_000, 0, 0, 0))
        .unwrap();
    assert_eq!(cost, usd("0.0002"));
    assert_eq!(cost.to_string(), "0.0002 USD");
}

#[test]
fn pricing_anthropic_usage_costs_exactly() {
    let book = defaults();
    // 1000 in = 500 plain × 3 + 300 read × 0.30 + 200 written × 3.75;
    // 100 out × 15: 1500 + 90 + 750 + 1500 = 3840 per million.
    let cost = book
        .cost(
            "claude",
            "claude-sonnet-4-20250514",
            &usage(1000, 300, 200, 100),
        )
        .unwrap();
    assert_eq!(cost, usd("0.00384"));
    // Opus: 1000 plain × 15 + 1000 written × 18.75 + 500 out × 75 = 71 250.
    let cost = book
        .cost(
            "claude",
            "claude-opus-4-20250514",
            &usage(2000, 0, 1000, 500),
        )
        .unwrap();
    assert_eq!(cost, usd("0.07125"));
    let haiku = book
        .model_price("claude", "claude-3-5-haiku-latest")
        .unwrap();
    assert_eq!(haiku.name, "claude-3-5-haiku");
    assert_eq!(haiku.cache_write_per_mtok, d("1.00"));
}

#[test]
fn pricing_dated_models_take_the_longest_listed_prefix() {
    let book = defaults();
    let name = |p: &str, m: &str| book.model_price(p, m).map(|mp| mp.name.clone());
    assert_eq!(
        name("openai", "gpt-4o-mini-2024-07-18").unwrap(),
        "gpt-4o-mini"
    );
    assert_eq!(name("openai", "gpt-4o-mini-x").unwrap(), "gpt-4o-mini");
    assert_eq!(name("openai", "gpt-4o-2024-08-06").unwrap(), "gpt-4o");
    assert_eq!(
        name("openai", "gpt-4.1-nano-2025-04-14").unwrap(),
        "gpt-4.1-nano"
    );
    assert_eq!(name("openai", "o3-pro-2025-06-10").unwrap(), "o3-pro");
    assert_eq!(name("openai", "o3-2025-04-16").unwrap(), "o3");
    assert_eq!(
        name("claude", "claude-sonnet-4-20250514").unwrap(),
        "claude-sonnet-4"
    );
    assert_eq!(
        name("claude", "claude-3-7-sonnet-20250219").unwrap(),
        "claude-3-7-sonnet"
    );
    // A prefix counts only when a `-` follows it; lookups are exact otherwise.
    for unknown in ["gpt-4omini", "gpt-4", "GPT-4O", "gpt-4o ", "", "-", "o33"] {
        let r = name("openai", unknown);
        assert!(r.is_err(), "{unknown:?} priced as {r:?}");
    }
    // Anthropic prices are not OpenAI's, whatever the model is called.
    assert!(book.model_price("claude", "gpt-4o").is_err());
}

#[test]
fn pricing_unknown_models_are_refused_with_the_fix() {
    let book = defaults();
    let err = book.model_price("openai", "gpt-5").unwrap_err();
    assert_eq!(err.code(), "model_unpriced");
    let msg = err.to_string();
    assert!(
        msg.contains("caracal pricebook set --provider openai --model \"gpt-5\""),
        "{msg}"
    );
    assert!(msg.contains("--model '*'"), "{msg}");
    // Cost and estimate refuse too; a generic or unknown provider has no prices.
    assert!(book.cost("openai", "gpt-5", &Usage::default()).is_err());
    assert!(book.estimate("openai", "gpt-5", 1, 1).is_err());
    assert!(book.model_price("local", "llama3").is_err());
    assert!(book.model_price("nobody", "gpt-4o").is_err());
}

#[test]
fn pricing_star_prices_unlisted_models_only() {
    let rows = vec![
        set("openai", ANY_MODEL, "1", "2"),
        set("local", ANY_MODEL, "0.5", "0.5"),
    ];
    let book = Pricebook::build(rows, &providers());
    let any = book.model_price("openai", "gpt-5").unwrap();
    assert_eq!((any.name.as_str(), any.source), ("*", PriceSource::Set));
    assert_eq!(
        book.cost("openai", "gpt-5", &usage(1_000_000, 0, 0, 1_000_000))
            .unwrap(),
        usd("3")
    );
    // Listed models keep their own price; other providers gain nothing.
    assert_eq!(book.model_price("openai", "gpt-4o").unwrap().name, "gpt-4o");
    assert!(book.model_price("azure", "gpt-5").is_err());
    assert_eq!(book.model_price("local", "llama3").unwrap().name, "*");
}

#[test]
fn pricing_stored_rows_override_defaults_of_that_provider_only() {
    let mut row = set("openai", "gpt-4o", "1.00", "4.00");
    row.cached_input_per_mtok = Some(d("0.10"));
    let book = Pricebook::build(
        vec![row, set("openai", "gpt-4o-2024-08-06", "9", "9")],
        &providers(),
    );
    let p = book.model_price("openai", "gpt-4o").unwrap();
    assert_eq!(p.source, PriceSource::Set);
    assert_eq!(
        (
            p.input_per_mtok,
            p.cached_input_per_mtok,
            p.cache_write_per_mtok
        ),
        (d("1.00"), d("0.10"), d("1.00")),
        "an unset cache write price is the input price"
    );
    // The prefix rule sees the override; an exact row beats the prefix.
    assert_eq!(
        book.model_price("openai", "gpt-4o-2024-05-13")
            .unwrap()
            .input_per_mtok,
        d("1.00")
    );
    assert_eq!(
        book.model_price("openai", "gpt-4o-2024-08-06")
            .unwrap()
            .input_per_mtok,
        d("9")
    );
    // The same template under another name keeps the list price.
    let azure = book.model_price("azure", "gpt-4o").unwrap();
    assert_eq!(
        (azure.input_per_mtok, azure.source),
        (d("2.50"), PriceSource::Default)
    );
    // Effective rows: one per key, the override in place of the default.
    let gpt4o: Vec<_> = book
        .rows()
        .iter()
        .filter(|r| r.provider == "openai" && r.name == "gpt-4o")
        .collect();
    assert_eq!(gpt4o.len(), 1);
    assert_eq!(gpt4o[0].source, PriceSource::Set);
}

#[test]
fn pricing_invalid_rows_unprice_their_key_instead_of_falling_back() {
    let mut negative = set("openai", "gpt-4o", "1", "1");
    negative.input_per_mtok = -Decimal::ONE;
    let mut huge = set("openai", "o3", "1", "1");
    huge.output_per_mtok = Decimal::MAX;
    let book = Pricebook::build(vec![negative, huge], &providers());
    assert!(book.model_price("openai", "gpt-4o").is_err());
    assert!(book.model_price("openai", "o3-2025-04-16").is_err());
    assert!(book.model_price("openai", "gpt-4o-mini").is_ok());
}

#[test]
fn pricing_rows_validate() {
    let ok = set("openai", "gpt-4o", "1", "2");
    assert!(ok.validate().is_ok());
    let res = PriceRow::resource(
        "openai",
        "images.generations",
        Currency::USD,
        d("0.04"),
        PriceSource::Set,
    );
    assert!(res.validate().is_ok());
    let bad = [
        PriceRow {
            provider: "Open AI".into(),
            ..ok.clone()
        },
        PriceRow {
            name: "gpt 4o".into(),
            ..ok.clone()
        },
        PriceRow {
            name: "gpt-*".into(),
            ..ok.clone()
        },
        PriceRow {
            per_request: Some(d("1")),
            ..ok.clone()
        },
        PriceRow {
            cached_input_per_mtok: Some(MAX_AMOUNT + Decimal::ONE),
            ..ok.clone()
        },
        PriceRow {
            cache_write_per_mtok: Some(Decimal::new(1, 12)),
            ..ok.clone()
        },
        PriceRow {
            per_request: None,
            ..res.clone()
        },
        PriceRow {
            name: "Images".into(),
            ..res.clone()
        },
    ];
    for row in bad {
        let err = row.validate().unwrap_err();
        assert_eq!(err.code(), "price_invalid");
        assert!(err.to_string().starts_with("price "), "{err}");
    }
}

#[test]
fn pricing_resources_are_priced_per_request() {
    let mut eur = PriceRow::resource(
        "openai",
        "images.generations",
        "EUR".parse().unwrap(),
        d("0.04"),
        PriceSource::Import,
    );
    eur.updated_at = Some("2026-01-01T00:00:00Z".into());
    let book = Pricebook::build(vec![eur], &providers());
    let price = book.request_price("openai", "images.generations").unwrap();
    assert_eq!(price.to_string(), "0.04 EUR");
    assert!(book.request_price("openai", "audio.speech").is_none());
    assert!(book.request_price("azure", "images.generations").is_none());
}

#[test]
fn pricing_costs_are_in_the_row_currency() {
    let mut row = set("openai", "gpt-4o", "2", "8");
    row.currency = "EUR".parse().unwrap();
    let book = Pricebook::build(vec![row], &providers());
    let cost = book
        .cost("openai", "gpt-4o", &usage(1000, 0, 0, 1000))
        .unwrap();
    assert_eq!(cost.to_string(), "0.01 EUR");
    let estimate = book.estimate("openai", "gpt-4o", 1000, 1000).unwrap();
    assert_eq!(estimate.currency.as_str(), "EUR");
}

#[test]
fn pricing_defaults_are_valid_and_have_no_star() {
    for template in [Template::Openai, Template::Anthropic] {
        let rows = default_rows("p", template);
        assert!(!rows.is_empty());
        for r in &rows {
            r.validate().unwrap();
            assert_eq!(r.source, PriceSource::Default);
            assert_eq!(r.currency, Currency::USD);
            assert_ne!(r.name, ANY_MODEL);
            assert!(r.updated_at.is_none());
        }
    }
    assert!(default_rows("p", Template::Generic).is_empty());
    let book = defaults();
    let mini = book.model_price("openai", "gpt-4o-mini").unwrap();
    assert_eq!(
        (
            mini.input_per_mtok,
            mini.cached_input_per_mtok,
            mini.cache_write_per_mtok,
            mini.output_per_mtok
        ),
        (d("0.15"), d("0.075"), d("0.15"), d("0.60"))
    );
}

/// Hostile counts saturate: the uncached part of the input is clamped to
/// zero when cached + written exceed the input, the cached and written
/// parts are billed as reported, and nothing wraps or panics. With any
/// price a row may hold, even u64::MAX of everything is representable;
/// only an unvalidated price could overflow, and that is an error.
#[test]
fn pricing_hostile_token_counts_saturate_and_never_panic() {
    let book = defaults();
    let max = u64::MAX;
    // Cached (0.075) + written (0.15) + output (0.60) = 0.825 per token-million.
    let cost = book
        .cost("openai", "gpt-4o-mini", &usage(max, max, max, max))
        .unwrap();
    let exact = Decimal::from_str_exact("15218563860810.380082375").unwrap();
    assert_eq!(cost, Money::new(exact, Currency::USD));
    // More cached than input: billed for the cached tokens reported.
    let cost = book
        .cost("openai", "gpt-4o-mini", &usage(100, 1_000_000, 0, 0))
        .unwrap();
    assert_eq!(cost, usd("0.075"));
    // The dearest price a row may hold, on every count.
    let top = MAX_AMOUNT.to_string();
    let mut row = set("openai", "gpt-4o", &top, &top);
    row.cached_input_per_mtok = Some(MAX_AMOUNT);
    row.cache_write_per_mtok = Some(MAX_AMOUNT);
    let book = Pricebook::build(vec![row], &providers());
    let cost = book
        .cost("openai", "gpt-4o", &usage(max, max / 2, max / 2, max))
        .unwrap();
    assert!(cost.amount > Decimal::ZERO);
    assert!(book.estimate("openai", "gpt-4o", max, max).is_ok());
    // A price no row may hold cannot silently wrap either.
    let unvalidated = ModelPrice {
        name: "x".into(),
        currency: Currency::USD,
        input_per_mtok: Decimal::MAX,
        output_per_mtok: Decimal::MAX,
        cached_input_per_mtok: Decimal::MAX,
        cache_write_per_mtok: Decimal::MAX,
        context_window: None,
        source: PriceSource::Set,
    };
    assert_eq!(unvalidated.cost(&usage(max, 0, 0, max)), None);
    assert_eq!(unvalidated.estimate(max, max), None);
    assert_eq!(
        overflow("p", "x").code(),
        "price_overflow",
        "Pricebook::cost maps None to this error"
    );
}

fn price() -> impl Strategy<Value = Decimal> {
    (0u64..=100_000_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m as i64, s))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the prices, no consistent usage within the maxima costs
    /// more than the estimate.
    #[test]
    fn pricing_estimate_bounds_every_cost_within_the_maxima(
        input in price(),
        output in price(),
        cached in proptest::option::of(price()),
        write in proptest::option::of(price()),
        max_in in 0u64..=1_000_000_000_000,
        max_out in 0u64..=1_000_000_000_000,
        fractions in (0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0),
    ) {
        let mut row = set("openai", ANY_MODEL, "0", "0");
        row.input_per_mtok = input;
        row.output_per_mtok = output;
        row.cached_input_per_mtok = cached;
        row.cache_write_per_mtok = write;
        let book = Pricebook::build(vec![row], &providers());
        // Proportions only pick the counts; the money arithmetic stays exact.
        let part = |n: u64, f: f64| ((n as f64) * f) as u64;
        let in_tokens = part(max_in, fractions.0).min(max_in);
        let cached_tokens = part(in_tokens, fractions.1).min(in_tokens);
        let write_tokens = part(in_tokens - cached_tokens, fractions.2).min(in_tokens - cached_tokens);
        let out_tokens = part(max_out, fractions.3).min(max_out);
        let u = usage(in_tokens, cached_tokens, write_tokens, out_tokens);
        let cost = book.cost("openai", "any-model", &u).unwrap();
        let estimate = book.estimate("openai", "any-model", max_in, max_out).unwrap();
        prop_assert_eq!(cost.currency, estimate.currency);
        prop_assert!(cost.amount <= estimate.amount, "{} > {} for {:?}", cost, estimate, u);
    }
}

#[test]
fn tools_are_priced_per_use_with_the_prefix_rule() {
    let book = defaults();
    assert_eq!(book.tool_price("claude", "web_search"), Some(usd("0.01")));
    assert_eq!(book.tool_price("openai", "web_search"), Some(usd("0.025")));
    // A variant not listed takes the price of the tool it extends.
    assert_eq!(
        book.tool_price("openai", "web_search_preview"),
        Some(usd("0.025"))
    );
    // Not listed at all (billed by container time): no price.
    assert_eq!(book.tool_price("claude", "code_execution"), None);
    assert_eq!(book.tool_price("local", "web_search"), None);
    // A stored price replaces the default; a listed variant is its own.
    let book = Pricebook::build(
        vec![
            PriceRow::tool(
                "claude",
                "web_search",
                Currency::USD,
                d("0.02"),
                PriceSource::Set,
            ),
            PriceRow::tool(
                "openai",
                "web_search_preview",
                Currency::USD,
                d("0.03"),
                PriceSource::Set,
            ),
        ],
        &providers(),
    );
    assert_eq!(book.tool_price("claude", "web_search"), Some(usd("0.02")));
    assert_eq!(
        book.tool_price("openai", "web_search_preview"),
        Some(usd("0.03"))
    );
    assert_eq!(book.tool_price("openai", "web_search"), Some(usd("0.025")));
}

#[test]
fn context_windows_ship_with_the_template_models() {
    let book = defaults();
    let window = |p: &str, m: &str| book.model_price(p, m).unwrap().context_window;
    assert_eq!(window("openai", "gpt-4o-mini-2024-07-18"), Some(128_000));
    assert_eq!(window("openai", "gpt-4.1"), Some(1_047_576));
    assert_eq!(
        window("claude", "claude-sonnet-4-20250514"),
        Some(1_000_000)
    );
    assert_eq!(window("openai", "text-embedding-3-small"), None);
    // A stored row without a window has none, even over a default with one.
    let book = Pricebook::build(vec![set("openai", "gpt-4o", "1", "1")], &providers());
    assert_eq!(
        book.model_price("openai", "gpt-4o").unwrap().context_window,
        None
    );
}

#[test]
fn tool_rows_and_context_windows_are_validated() {
    let tool =
        |name: &str| PriceRow::tool("openai", name, Currency::USD, d("0.01"), PriceSource::Set);
    assert!(tool("web_search").validate().is_ok());
    for bad in ["", "Web_Search", "web-search", &"a".repeat(65)] {
        assert!(tool(bad).validate().is_err(), "{bad:?}");
    }
    let mut no_price = tool("web_search");
    no_price.per_request = None;
    assert!(no_price.validate().is_err());
    let model = set("openai", "m", "1", "1");
    assert!(model.clone().with_context_window(1).validate().is_ok());
    assert!(model
        .clone()
        .with_context_window(MAX_CONTEXT_WINDOW)
        .validate()
        .is_ok());
    assert!(model.clone().with_context_window(0).validate().is_err());
    assert!(model
        .with_context_window(MAX_CONTEXT_WINDOW + 1)
        .validate()
        .is_err());
    let mut resource = PriceRow::resource(
        "openai",
        "images.generations",
        Currency::USD,
        d("0.04"),
        PriceSource::Set,
    );
    resource.context_window = Some(10);
    assert!(resource.validate().is_err(), "only models have a window");
    assert_eq!(PriceKind::parse("tool"), Some(PriceKind::Tool));
    assert_eq!(PriceKind::Tool.as_str(), "tool");
}

#[test]
fn hour_long_cache_writes_cost_twice_the_input() {
    let book = defaults();
    // claude-sonnet-4: input 3, 5-minute writes 3.75; hour-long writes 6.
    let u = Usage {
        input_tokens: 1_000_000,
        cache_write_tokens: 1_000_000,
        cache_write_1h_tokens: 400_000,
        ..usage(0, 0, 0, 0)
    };
    let cost = book.cost("claude", "claude-sonnet-4", &u).unwrap();
    assert_eq!(cost, usd("4.65"), "600k at 3.75 and 400k at 6");
    let p = book.model_price("claude", "claude-sonnet-4").unwrap();
    assert_eq!(p.estimate(1_000_000, 0), Some(usd("3.75")));
    assert_eq!(p.estimate_with(1_000_000, 0, true), Some(usd("6")));
}
