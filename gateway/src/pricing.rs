//! The pricebook: what a call costs. Prices per million tokens for every
//! model of every provider, prices per request for resources that are not
//! token-priced, built-in list prices for the OpenAI and Anthropic
//! templates, and the exact arithmetic turning a [`Usage`] into [`Money`].
//!
//! Pure: built from stored rows for a snapshot, read without I/O. A model
//! without a price is an error, never free.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::catalog::valid_resource;
use crate::model::Template;
use crate::money::{parse_amount, Currency, Decimal, Money};
use crate::usage::Usage;

/// The model name standing for every model of a provider that has no
/// price of its own.
pub const ANY_MODEL: &str = "*";

/// One token in millions: prices are per million tokens.
const PER_TOKEN: Decimal = Decimal::from_parts(1, 0, 0, false, 6);

/// What a price row prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceKind {
    /// Token-priced calls of a model (or of every unlisted model: `*`).
    Model,
    /// Calls of a catalog resource, priced per request.
    Resource,
    /// Uses of a tool the provider runs (web search…), priced per use.
    Tool,
}

impl PriceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Resource => "resource",
            Self::Tool => "tool",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "model" => Some(Self::Model),
            "resource" => Some(Self::Resource),
            "tool" => Some(Self::Tool),
            _ => None,
        }
    }
}

/// Where a price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    /// Built into the provider's template (list prices; see [`default_rows`]).
    Default,
    /// Set by `caracal pricebook set`.
    Set,
    /// Set by `caracal pricebook import`.
    Import,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Set => "set",
            Self::Import => "import",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(Self::Default),
            "set" => Some(Self::Set),
            "import" => Some(Self::Import),
            _ => None,
        }
    }
}

/// One price as stored, keyed by (`provider`, `kind`, `name`).
///
/// A `Model` row uses the per-million-token amounts, may have a
/// `context_window` and has no `per_request`; a `Resource` row has
/// `per_request` (per request) and a `Tool` row `per_request` (per use),
/// their token amounts zero and unused. [`PriceRow::validate`] checks this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRow {
    /// The provider's name (not its template).
    pub provider: String,
    pub kind: PriceKind,
    /// A model id, [`ANY_MODEL`], or a catalog resource such as
    /// `images.generations`.
    pub name: String,
    pub currency: Currency,
    #[serde(with = "rust_decimal::serde::str")]
    pub input_per_mtok: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub output_per_mtok: Decimal,
    /// Input read from the prompt cache; `None` = the input price.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub cached_input_per_mtok: Option<Decimal>,
    /// Input written to the prompt cache; `None` = the input price.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub cache_write_per_mtok: Option<Decimal>,
    /// The price of one request (`Resource` rows) or one use (`Tool` rows).
    #[serde(with = "rust_decimal::serde::str_option")]
    pub per_request: Option<Decimal>,
    /// The most input tokens the model reads in one call (`Model` rows):
    /// the bound for a request whose input the body does not carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    pub source: PriceSource,
    /// When it was stored (RFC 3339); `None` for built-in defaults.
    pub updated_at: Option<String>,
}

impl PriceRow {
    /// A token price for `model` (or [`ANY_MODEL`]).
    #[allow(clippy::too_many_arguments)]
    pub fn model(
        provider: &str,
        model: &str,
        currency: Currency,
        input: Decimal,
        output: Decimal,
        cached_input: Option<Decimal>,
        cache_write: Option<Decimal>,
        source: PriceSource,
    ) -> Self {
        Self {
            provider: provider.to_string(),
            kind: PriceKind::Model,
            name: model.to_string(),
            currency,
            input_per_mtok: input,
            output_per_mtok: output,
            cached_input_per_mtok: cached_input,
            cache_write_per_mtok: cache_write,
            per_request: None,
            context_window: None,
            source,
            updated_at: None,
        }
    }

    /// The same row with a context window.
    pub fn with_context_window(mut self, tokens: u64) -> Self {
        self.context_window = Some(tokens);
        self
    }

    /// A per-use price for a tool the provider runs (e.g. `web_search`).
    pub fn tool(
        provider: &str,
        tool: &str,
        currency: Currency,
        per_use: Decimal,
        source: PriceSource,
    ) -> Self {
        Self {
            kind: PriceKind::Tool,
            ..Self::resource(provider, tool, currency, per_use, source)
        }
    }

    /// A per-request price for a catalog resource.
    pub fn resource(
        provider: &str,
        resource: &str,
        currency: Currency,
        per_request: Decimal,
        source: PriceSource,
    ) -> Self {
        Self {
            provider: provider.to_string(),
            kind: PriceKind::Resource,
            name: resource.to_string(),
            currency,
            input_per_mtok: Decimal::ZERO,
            output_per_mtok: Decimal::ZERO,
            cached_input_per_mtok: None,
            cache_write_per_mtok: None,
            per_request: Some(per_request),
            context_window: None,
            source,
            updated_at: None,
        }
    }

    /// `provider model NAME` or `provider resource NAME`, for messages.
    pub fn key(&self) -> String {
        format!("{} {} {}", self.provider, self.kind.as_str(), self.name)
    }

    /// Checks the row can be used: a valid provider name, a valid model id
    /// (or `*`) or resource name, the amounts its kind needs and no others,
    /// every amount within what [`parse_amount`] accepts.
    pub fn validate(&self) -> Result<(), PriceError> {
        let invalid = |reason: String| PriceError::Invalid {
            row: self.key(),
            reason,
        };
        if !crate::provider::valid_name(&self.provider) {
            return Err(invalid("the provider name is not valid".into()));
        }
        match self.kind {
            PriceKind::Model => {
                if self.name != ANY_MODEL && !valid_model(&self.name) {
                    return Err(invalid(
                        "a model id is `*` or 1-128 characters of [A-Za-z0-9._:/@-]".into(),
                    ));
                }
                if self.per_request.is_some() {
                    return Err(invalid(
                        "a model is priced per token, not per request".into(),
                    ));
                }
            }
            PriceKind::Resource => {
                if !valid_resource(&self.name) {
                    return Err(invalid(
                        "a resource is 1-128 characters of [a-z0-9._-]".into(),
                    ));
                }
                if self.per_request.is_none() {
                    return Err(invalid("a resource needs a per-request price".into()));
                }
            }
            PriceKind::Tool => {
                if !valid_tool(&self.name) {
                    return Err(invalid("a tool is 1-64 characters of [a-z0-9_]".into()));
                }
                if self.per_request.is_none() {
                    return Err(invalid("a tool needs a per-use price".into()));
                }
            }
        }
        match (self.kind, self.context_window) {
            (_, None) => {}
            (PriceKind::Model, Some(w)) if (1..=MAX_CONTEXT_WINDOW).contains(&w) => {}
            (PriceKind::Model, Some(_)) => {
                return Err(invalid(format!(
                    "a context window is 1 to {MAX_CONTEXT_WINDOW} tokens"
                )))
            }
            (_, Some(_)) => return Err(invalid("only a model has a context window".into())),
        }
        let amounts = [
            ("input", Some(self.input_per_mtok)),
            ("output", Some(self.output_per_mtok)),
            ("cached input", self.cached_input_per_mtok),
            ("cache write", self.cache_write_per_mtok),
            ("per request", self.per_request),
        ];
        for (field, amount) in amounts {
            if let Some(a) = amount {
                if let Err(e) = parse_amount(&a.to_string()) {
                    return Err(invalid(format!("{field} price: {e}")));
                }
            }
        }
        Ok(())
    }
}

/// The largest context window accepted, in tokens.
pub const MAX_CONTEXT_WINDOW: u64 = 100_000_000;

/// Tool names, as the pricebook keys them: a tool `type` without its
/// version date (`web_search`, `code_execution`).
pub fn valid_tool(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Model ids: what providers use, including `vendor/model` and
/// `model:tag` forms.
pub fn valid_model(m: &str) -> bool {
    (1..=128).contains(&m.len())
        && m.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'@')
        })
}

/// Why a price could not be found, computed or stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error(
        "no price for model {model:?} of provider {provider:?}: set one with \
         `caracal pricebook set --provider {provider} --model {model:?} --input AMOUNT --output AMOUNT`, \
         or a price for all its unlisted models with `--model '*'`"
    )]
    UnknownModel { provider: String, model: String },
    #[error("the cost of model {model:?} of provider {provider:?} for this usage is too large to represent")]
    Overflow { provider: String, model: String },
    #[error("price {row}: {reason}")]
    Invalid { row: String, reason: String },
}

impl PriceError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownModel { .. } => "model_unpriced",
            Self::Overflow { .. } => "price_overflow",
            Self::Invalid { .. } => "price_invalid",
        }
    }
}

/// The effective token prices of a model, every amount resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// The entry that priced the model: its own id, a shorter id it
    /// extends (`gpt-4o-mini` for `gpt-4o-mini-2024-07-18`), or `*`.
    pub name: String,
    pub currency: Currency,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    pub cached_input_per_mtok: Decimal,
    pub cache_write_per_mtok: Decimal,
    /// The most input tokens one call reads, if known.
    pub context_window: Option<u64>,
    pub source: PriceSource,
}

impl ModelPrice {
    fn from_row(row: &PriceRow) -> Self {
        Self {
            name: row.name.clone(),
            currency: row.currency,
            input_per_mtok: row.input_per_mtok,
            output_per_mtok: row.output_per_mtok,
            cached_input_per_mtok: row.cached_input_per_mtok.unwrap_or(row.input_per_mtok),
            cache_write_per_mtok: row.cache_write_per_mtok.unwrap_or(row.input_per_mtok),
            context_window: row.context_window,
            source: row.source,
        }
    }

    /// The cost of `usage`: uncached input, cached input, cache writes and
    /// output, each at its price. Token counts that contradict each other
    /// (cached + written > input) are billed as reported for the cached and
    /// written parts, the uncached part saturating at zero: never less than
    /// any reported part. `None` when the result cannot be represented,
    /// which validated prices rule out even for `u64::MAX` counts (see the
    /// tests). The result may exceed `money::MAX_AMOUNT`.
    pub fn cost(&self, usage: &Usage) -> Option<Money> {
        let uncached = usage
            .input_tokens
            .saturating_sub(usage.cached_input_tokens)
            .saturating_sub(usage.cache_write_tokens);
        let hour = usage.cache_write_1h_tokens.min(usage.cache_write_tokens);
        let amount = per_million(&[
            (uncached, self.input_per_mtok),
            (usage.cached_input_tokens, self.cached_input_per_mtok),
            (usage.cache_write_tokens - hour, self.cache_write_per_mtok),
            (hour, self.cache_write_1h_per_mtok()),
            (usage.output_tokens, self.output_per_mtok),
        ])?;
        Some(Money::new(amount, self.currency))
    }

    /// Cache writes of an hour: twice the input price (Anthropic's rate),
    /// or the cache-write price when that is dearer.
    pub fn cache_write_1h_per_mtok(&self) -> Decimal {
        let twice = self
            .input_per_mtok
            .checked_mul(Decimal::TWO)
            .unwrap_or(Decimal::MAX);
        twice.max(self.cache_write_per_mtok)
    }

    /// The most a call of at most `max_input_tokens` in and
    /// `max_output_tokens` out can cost: all input at the dearest input
    /// price (plain, cached or written; written for an hour when
    /// `hour_cache`), all output at the output price.
    pub fn estimate(&self, max_input_tokens: u64, max_output_tokens: u64) -> Option<Money> {
        self.estimate_with(max_input_tokens, max_output_tokens, false)
    }

    /// [`ModelPrice::estimate`], with hour-long cache writes possible.
    pub fn estimate_with(
        &self,
        max_input_tokens: u64,
        max_output_tokens: u64,
        hour_cache: bool,
    ) -> Option<Money> {
        let mut input = self
            .input_per_mtok
            .max(self.cached_input_per_mtok)
            .max(self.cache_write_per_mtok);
        if hour_cache {
            input = input.max(self.cache_write_1h_per_mtok());
        }
        let amount = per_million(&[
            (max_input_tokens, input),
            (max_output_tokens, self.output_per_mtok),
        ])?;
        Some(Money::new(amount, self.currency))
    }
}

/// Σ tokens × price per million; `None` on `Decimal` overflow. Exact
/// unless a product needs more than 28 significant digits (counts near
/// `u64::MAX` times prices with many decimals), where `Decimal` rounds the
/// last digits rather than fail.
fn per_million(terms: &[(u64, Decimal)]) -> Option<Decimal> {
    let mut sum = Decimal::ZERO;
    for &(tokens, price) in terms {
        sum = sum.checked_add(Decimal::from(tokens).checked_mul(price)?)?;
    }
    // Multiplying by 10^-6 only moves the decimal point: exact.
    sum.checked_mul(PER_TOKEN)
}

#[derive(Debug, Clone, Default)]
struct ProviderPrices {
    models: HashMap<String, ModelPrice>,
    any_model: Option<ModelPrice>,
    resources: HashMap<String, Money>,
    tools: HashMap<String, Money>,
}

/// Every effective price of a snapshot: template defaults overridden by
/// stored rows. Immutable.
#[derive(Debug, Clone, Default)]
pub struct Pricebook {
    providers: HashMap<String, ProviderPrices>,
    rows: Vec<PriceRow>,
}

impl Pricebook {
    /// Builds the pricebook from stored `rows` and the `providers`' names
    /// and templates. A stored row replaces the default with the same
    /// (provider, kind, name). A row that fails [`PriceRow::validate`]
    /// leaves its key unpriced, the default it replaced included: falling
    /// back to a cheaper default could under-charge, refusing cannot. The
    /// store never holds such rows.
    pub fn build(rows: Vec<PriceRow>, providers: &[(String, Template)]) -> Pricebook {
        let mut effective: BTreeMap<(String, PriceKind, String), PriceRow> = BTreeMap::new();
        let defaults = providers
            .iter()
            .flat_map(|(name, template)| default_rows(name, *template));
        for row in defaults.chain(rows) {
            effective.insert((row.provider.clone(), row.kind, row.name.clone()), row);
        }
        let mut book = Pricebook::default();
        for row in effective.into_values() {
            if let Err(e) = row.validate() {
                tracing::warn!("{e}; left out of the pricebook");
                continue;
            }
            let p = book.providers.entry(row.provider.clone()).or_default();
            match row.kind {
                PriceKind::Model if row.name == ANY_MODEL => {
                    p.any_model = Some(ModelPrice::from_row(&row))
                }
                PriceKind::Model => {
                    p.models
                        .insert(row.name.clone(), ModelPrice::from_row(&row));
                }
                PriceKind::Resource => {
                    if let Some(amount) = row.per_request {
                        p.resources
                            .insert(row.name.clone(), Money::new(amount, row.currency));
                    }
                }
                PriceKind::Tool => {
                    if let Some(amount) = row.per_request {
                        p.tools
                            .insert(row.name.clone(), Money::new(amount, row.currency));
                    }
                }
            }
            book.rows.push(row);
        }
        book
    }

    /// Every effective price, sorted by provider, kind and name.
    pub fn rows(&self) -> &[PriceRow] {
        &self.rows
    }

    /// The price of `model`: its own, else that of the longest listed
    /// model it extends with `-…` (dated snapshots: `gpt-4o-mini-2024-07-18`
    /// is priced as `gpt-4o-mini`, not `gpt-4o`), else the provider's `*`.
    /// Lookups are case-sensitive.
    pub fn model_price(&self, provider: &str, model: &str) -> Result<&ModelPrice, PriceError> {
        let unknown = || PriceError::UnknownModel {
            provider: provider.to_string(),
            model: model.to_string(),
        };
        let p = self.providers.get(provider).ok_or_else(unknown)?;
        if let Some(price) = p.models.get(model) {
            return Ok(price);
        }
        let extended = model
            .rmatch_indices('-')
            .find_map(|(i, _)| p.models.get(&model[..i]));
        extended.or(p.any_model.as_ref()).ok_or_else(unknown)
    }

    /// The exact cost of `usage` (see [`ModelPrice::cost`]), in the
    /// currency of the model's price.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Result<Money, PriceError> {
        self.model_price(provider, model)?
            .cost(usage)
            .ok_or_else(|| overflow(provider, model))
    }

    /// The worst-case cost of a call (see [`ModelPrice::estimate`]): at
    /// least [`Pricebook::cost`] of any usage within the maxima.
    pub fn estimate(
        &self,
        provider: &str,
        model: &str,
        max_input_tokens: u64,
        max_output_tokens: u64,
    ) -> Result<Money, PriceError> {
        self.model_price(provider, model)?
            .estimate(max_input_tokens, max_output_tokens)
            .ok_or_else(|| overflow(provider, model))
    }

    /// The price of one use of `tool`: its own, else that of the longest
    /// listed tool it extends with `_…` (`web_search_preview` is priced as
    /// `web_search` unless listed itself).
    pub fn tool_price(&self, provider: &str, tool: &str) -> Option<Money> {
        let tools = &self.providers.get(provider)?.tools;
        tools.get(tool).copied().or_else(|| {
            tool.rmatch_indices('_')
                .find_map(|(i, _)| tools.get(&tool[..i]).copied())
        })
    }

    /// The price of one request of `resource`, if it has one.
    pub fn request_price(&self, provider: &str, resource: &str) -> Option<Money> {
        self.providers
            .get(provider)?
            .resources
            .get(resource)
            .copied()
    }
}

fn overflow(provider: &str, model: &str) -> PriceError {
    PriceError::Overflow {
        provider: provider.to_string(),
        model: model.to_string(),
    }
}

/// (model, input, cached input, cache write, output, context window): USD
/// per million tokens, and tokens.
type ListPrice = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
    Option<u64>,
);

/// OpenAI list prices. Cache writes cost the input price. The `-pro`,
/// `-deep-research` and `-realtime-preview` variants are listed because
/// the prefix rule would otherwise price them as their cheaper base model.
/// Embeddings have no context window: their requests never refer to input
/// elsewhere, and several inputs of a request are read separately.
const OPENAI: &[ListPrice] = &[
    ("gpt-4o", "2.50", Some("1.25"), None, "10.00", Some(128_000)),
    (
        "gpt-4o-mini",
        "0.15",
        Some("0.075"),
        None,
        "0.60",
        Some(128_000),
    ),
    (
        "gpt-4o-realtime-preview",
        "5.00",
        Some("2.50"),
        None,
        "20.00",
        Some(128_000),
    ),
    (
        "gpt-4o-mini-realtime-preview",
        "0.60",
        Some("0.30"),
        None,
        "2.40",
        Some(128_000),
    ),
    (
        "gpt-4.1",
        "2.00",
        Some("0.50"),
        None,
        "8.00",
        Some(1_047_576),
    ),
    (
        "gpt-4.1-mini",
        "0.40",
        Some("0.10"),
        None,
        "1.60",
        Some(1_047_576),
    ),
    (
        "gpt-4.1-nano",
        "0.10",
        Some("0.025"),
        None,
        "0.40",
        Some(1_047_576),
    ),
    ("o3", "2.00", Some("0.50"), None, "8.00", Some(200_000)),
    ("o3-pro", "20.00", None, None, "80.00", Some(200_000)),
    (
        "o3-deep-research",
        "10.00",
        Some("2.50"),
        None,
        "40.00",
        Some(200_000),
    ),
    (
        "o4-mini",
        "1.10",
        Some("0.275"),
        None,
        "4.40",
        Some(200_000),
    ),
    (
        "o4-mini-deep-research",
        "2.00",
        Some("0.50"),
        None,
        "8.00",
        Some(200_000),
    ),
    ("text-embedding-3-small", "0.02", None, None, "0", None),
    ("text-embedding-3-large", "0.13", None, None, "0", None),
];

/// Anthropic list prices: cache reads at a tenth of the input price, cache
/// writes (5-minute) at 1.25 times. Claude Sonnet 4 reads up to a million
/// tokens when a request enables its long context.
const ANTHROPIC: &[ListPrice] = &[
    (
        "claude-opus-4",
        "15",
        Some("1.50"),
        Some("18.75"),
        "75",
        Some(200_000),
    ),
    (
        "claude-sonnet-4",
        "3",
        Some("0.30"),
        Some("3.75"),
        "15",
        Some(1_000_000),
    ),
    (
        "claude-3-7-sonnet",
        "3",
        Some("0.30"),
        Some("3.75"),
        "15",
        Some(200_000),
    ),
    (
        "claude-3-5-haiku",
        "0.80",
        Some("0.08"),
        Some("1.00"),
        "4",
        Some(200_000),
    ),
];

/// Per-use list prices (USD) of the tools the provider runs. Where a tool's
/// price depends on the model, the dearest. A tool not listed (OpenAI's
/// image generation, Anthropic's code execution, billed by container time)
/// is refused under a budget until an operator prices it.
const OPENAI_TOOLS: &[(&str, &str)] = &[
    ("web_search", "0.025"),
    ("file_search", "0.0025"),
    ("code_interpreter", "0.03"),
    // Remote MCP servers: only the tokens of their results are billed.
    ("mcp", "0"),
];
const ANTHROPIC_TOOLS: &[(&str, &str)] = &[
    ("web_search", "0.01"),
    // Only the tokens of the fetched content are billed.
    ("web_fetch", "0"),
    ("mcp", "0"),
];

fn list_prices(table: &[ListPrice], tools: &[(&str, &str)]) -> Vec<PriceRow> {
    let amount = |s: &str| parse_amount(s).expect("built-in prices are valid amounts");
    let models = table
        .iter()
        .map(|&(model, input, cached, write, output, window)| {
            let row = PriceRow::model(
                "",
                model,
                Currency::USD,
                amount(input),
                amount(output),
                cached.map(amount),
                write.map(amount),
                PriceSource::Default,
            );
            match window {
                Some(w) => row.with_context_window(w),
                None => row,
            }
        });
    let tools = tools.iter().map(|&(tool, per_use)| {
        PriceRow::tool(
            "",
            tool,
            Currency::USD,
            amount(per_use),
            PriceSource::Default,
        )
    });
    models.chain(tools).collect()
}

static OPENAI_ROWS: LazyLock<Vec<PriceRow>> = LazyLock::new(|| list_prices(OPENAI, OPENAI_TOOLS));
static ANTHROPIC_ROWS: LazyLock<Vec<PriceRow>> =
    LazyLock::new(|| list_prices(ANTHROPIC, ANTHROPIC_TOOLS));

/// The built-in prices of a provider named `provider` of `template`.
///
/// These are the providers' public list prices at the time of writing, in
/// USD per million tokens; they change, and negotiated prices differ:
/// operators should set their own (`caracal pricebook set` or `import`).
/// There is no `*` default: a model not listed is refused until an
/// operator prices it. The generic template has no prices.
pub fn default_rows(provider: &str, template: Template) -> Vec<PriceRow> {
    let table: &[PriceRow] = match template {
        Template::Openai => &OPENAI_ROWS,
        Template::Anthropic => &ANTHROPIC_ROWS,
        Template::Generic => &[],
    };
    table
        .iter()
        .map(|r| PriceRow {
            provider: provider.to_string(),
            ..r.clone()
        })
        .collect()
}

#[cfg(test)]
#[path = "pricing_tests.rs"]
mod tests;
