//! The [`Store`] contract (see `crate::store`): every change to the
//! enforcement state bumps the state version and shows up in `load_state`,
//! a change that fails leaves both alone; the ledger is idempotent by event
//! id and returns every field as written; each concern's errors
//! (`Conflict`, `NotFound`) are the ones its trait documents.
//!
//! Each case takes a constructor of a harness holding a fresh, empty
//! implementation.

use std::collections::BTreeSet;
use std::future::Future;

use crate::authn::hash_token;
use crate::authority::mandate::Claims;
use crate::authority::Scope;
use crate::budget::rate::RateLimit;
use crate::budget::window::{Period, WindowSpec, WindowType};
use crate::error::Code;
use crate::ledger::{
    CostBasis, Decision, EventCode, EventKind, LedgerEvent, Mode, Outcome, UsageCode,
};
use crate::model::{Action, Credential, PatternType, PrincipalKind, ProviderDef, Template};
use crate::money::{parse_amount, Currency, Decimal, Money};
use crate::policy::{Budget, PolicyDefinition};
use crate::pricing::{PriceKind, PriceRow, PriceSource};
use crate::store::{
    Change, LedgerFilter, MandateFilter, MandateRecord, MandateState, NewPrincipal, Revocation,
    Selector, SigningKeyRow, StateRows, Store, StoreError, KEEP_EXPIRED_SECS,
};

/// A store under test, fresh and empty when the harness is made.
pub trait Harness: Send + Sync + 'static {
    fn store(&self) -> &dyn Store;
}

// ---- helpers ----------------------------------------------------------

fn d(s: &str) -> Decimal {
    parse_amount(s).expect("an amount")
}

fn change(reason: &str) -> Change {
    Change {
        changed_by: "ops".into(),
        reason: reason.into(),
    }
}

/// Asserts that a change moved the state version past `*v` and that
/// `load_state` reads the state at the new version; returns that state.
async fn bumped(s: &dyn Store, v: &mut i64, what: &str) -> StateRows {
    let now = s.state_version().await.expect("state_version");
    assert!(now > *v, "{what}: the state version did not move ({now})");
    let rows = s.load_state().await.expect("load_state");
    assert_eq!(
        rows.version, now,
        "{what}: load_state is at another version"
    );
    *v = now;
    rows
}

/// Asserts that the state version is still `v`.
async fn unchanged(s: &dyn Store, v: i64, what: &str) {
    let now = s.state_version().await.expect("state_version");
    assert_eq!(now, v, "{what}: the state version moved");
}

fn conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "{what}: expected a Conflict, got {r:?}"
    );
}

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::NotFound(_))),
        "{what}: expected NotFound, got {r:?}"
    );
}

async fn register(s: &dyn Store, name: &str, kind: PrincipalKind) -> String {
    let new = NewPrincipal {
        kind,
        name: name.into(),
        email: format!("{name}@example.com"),
    };
    s.register_principal(new).await.expect("register").0.id
}

/// The people of the mandate cases: a user `boss`, an agent `bot`, and a
/// policy of boss over `chat.*` (create) that allows delegation.
struct World {
    boss: String,
    bot: String,
    policy: (String, u32),
}

async fn world(s: &dyn Store) -> World {
    let boss = register(s, "boss", PrincipalKind::User).await;
    let bot = register(s, "bot", PrincipalKind::Agent).await;
    let def = PolicyDefinition {
        scope: Scope::new(vec!["chat.*".into()], vec![Action::Create]),
        max_validity_secs: 3600,
        allow_delegation: true,
        max_delegation_depth: 3,
        budget: None,
        rate: None,
        max_in_flight: None,
    };
    let policy = s
        .create_policy(&boss, &def, &change("t"))
        .await
        .expect("create_policy");
    World {
        boss,
        bot,
        policy: (policy.id, policy.version),
    }
}

/// The record of mandate `jti` issued by boss (or, under `parent`, by
/// bot) to bot at `iat`, over `resource`, expiring at `exp`.
fn mandate(
    w: &World,
    jti: &str,
    parent: Option<&MandateRecord>,
    iat: i64,
    exp: i64,
    resource: &str,
) -> MandateRecord {
    let (iss, chain) = match parent {
        Some(p) => {
            let mut chain = p.chain.clone();
            chain.push(p.jti.clone());
            (w.bot.clone(), chain)
        }
        None => (w.boss.clone(), vec![]),
    };
    let claims = Claims {
        iss,
        sub: w.bot.clone(),
        jti: jti.into(),
        iat,
        nbf: iat,
        exp,
        scope: Scope::new(vec![resource.into()], vec![Action::Create]),
        parent: parent.map(|p| p.jti.clone()),
        depth: chain.len() as u32,
        chain,
        ws: None,
    };
    MandateRecord::issued(&claims, &w.policy.0, w.policy.1)
}

async fn insert(
    s: &dyn Store,
    w: &World,
    jti: &str,
    parent: Option<&MandateRecord>,
    iat: i64,
    resource: &str,
) -> MandateRecord {
    let m = mandate(w, jti, parent, iat, 1000, resource);
    s.insert_mandate(&m).await.expect("insert_mandate");
    m
}

fn by(reason: &str) -> Revocation {
    Revocation {
        revoked_by: "op".into(),
        reason: reason.into(),
        at: 500,
    }
}

fn jtis(v: &[MandateRecord]) -> Vec<&str> {
    v.iter().map(|m| m.jti.as_str()).collect()
}

/// The authority rows of mandate `jti` in the ledger, oldest first.
async fn authority_rows(s: &dyn Store, jti: &str) -> Vec<LedgerEvent> {
    let filter = LedgerFilter {
        kind: Some(EventKind::Authority),
        mandate_id: Some(jti.into()),
        ..Default::default()
    };
    s.query_ledger(&filter).await.expect("query_ledger")
}

fn key(kid: &str, byte: u8, retired_at: Option<i64>) -> SigningKeyRow {
    SigningKeyRow {
        kid: kid.into(),
        public_key: [byte; 32],
        created_at: 10,
        retired_at,
    }
}

fn provider(name: &str, base_url: &str) -> ProviderDef {
    ProviderDef {
        name: name.into(),
        template: Template::Openai,
        base_url: base_url.into(),
        hosts: vec![format!("api.{name}.com")],
        credentials: vec![Credential {
            header: "authorization".into(),
            value: "Bearer sk-real".into(),
        }],
        default_headers: vec![("x-version".into(), "1".into())],
        pinned_headers: vec![],
        allow_headers: vec![],
        catalog: crate::catalog::template_catalog(Template::Openai),
        passthrough: true,
        allow_private_network: false,
    }
}

fn price(name: &str, input: &str) -> PriceRow {
    let mut row = PriceRow::model(
        "openai",
        name,
        Currency::USD,
        d(input),
        d("8.00"),
        Some(d("0.50")),
        None,
        PriceSource::Set,
    );
    row.updated_at = None;
    row
}

/// A call event of `principal` at `ts_ms` (unix milliseconds).
fn call(principal: &str, ts_ms: i64) -> LedgerEvent {
    let mut e = LedgerEvent::new(
        EventKind::Call,
        Mode::BaseUrl,
        Decision::Allow,
        EventCode::OK,
    );
    e.principal_id = Some(principal.into());
    e.ts_ms = ts_ms;
    e.ts = jiff::Timestamp::from_millisecond(ts_ms)
        .expect("a time")
        .to_string();
    e
}

fn costing(mut e: LedgerEvent, cost: &str, currency: &str) -> LedgerEvent {
    e.cost = Some(d(cost));
    e.currency = Some(currency.into());
    e.cost_basis = Some(CostBasis::Usage);
    e
}

fn ids(events: &[LedgerEvent]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

// ---- state ------------------------------------------------------------

/// A fresh store answers, holds no state, and its reads change nothing.
pub async fn a_fresh_store_is_empty<H: Harness, F: Future<Output = H>>(make: impl Fn() -> F) {
    let h = make().await;
    let s = h.store();
    s.ping().await.expect("ping");
    let v = s.state_version().await.expect("state_version");
    let rows = s.load_state().await.expect("load_state");
    assert_eq!(rows.version, v);
    assert!(rows.principals.is_empty() && rows.providers.is_empty());
    assert!(rows.allowlists.is_empty() && rows.policies.is_empty());
    assert!(rows.signing_keys.is_empty() && rows.revoked.is_empty());
    assert!(rows.mandates.is_empty() && rows.prices.is_empty());
    assert!(rows.rejected.is_empty());
    assert!(s.list_principals().await.expect("principals").is_empty());
    assert!(s.list_providers().await.expect("providers").is_empty());
    assert!(s
        .list_allowlists(None)
        .await
        .expect("allowlists")
        .is_empty());
    assert!(s.list_policies(None).await.expect("policies").is_empty());
    assert!(s.list_signing_keys().await.expect("keys").is_empty());
    let all = MandateFilter::default();
    assert!(s.list_mandates(&all).await.expect("mandates").is_empty());
    assert_eq!(s.longest_mandate_validity().await.expect("longest"), 0);
    assert!(s.list_prices().await.expect("prices").is_empty());
    let everything = LedgerFilter::default();
    assert!(s
        .query_ledger(&everything)
        .await
        .expect("ledger")
        .is_empty());
    unchanged(s, v, "reads").await;
}

/// Ledger writes and reads are not enforcement state: they leave the
/// version alone (a running gateway would otherwise rebuild its snapshot
/// on every batch).
pub async fn only_enforcement_changes_move_the_version<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let mut v = s.state_version().await.expect("state_version");
    let p = register(s, "agent", PrincipalKind::Agent).await;
    bumped(s, &mut v, "register").await;
    let events = [costing(call(&p, 1_000), "1", "USD"), call(&p, 2_000)];
    s.insert_ledger_events(&events).await.expect("insert");
    unchanged(s, v, "ledger insert").await;
    s.query_ledger(&LedgerFilter::default())
        .await
        .expect("query");
    s.spend_since(&p, 0).await.expect("spend_since");
    s.load_state().await.expect("load_state");
    s.list_principals().await.expect("principals");
    s.find_principal("agent").await.expect("find");
    unchanged(s, v, "reads").await;
}

// ---- principals -------------------------------------------------------

/// Registration returns a token once, stores its hash in the state,
/// refuses a taken name, and a principal is found by id or name.
pub async fn principals_register_with_unique_names<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let mut v = s.state_version().await.expect("state_version");
    let new = |name: &str, kind| NewPrincipal {
        kind,
        name: name.into(),
        email: format!("{name}@example.com"),
    };
    let (boss, boss_token) = s
        .register_principal(new("boss", PrincipalKind::User))
        .await
        .expect("register boss");
    assert_eq!(
        (boss.name.as_str(), boss.kind, boss.email.as_str()),
        ("boss", PrincipalKind::User, "boss@example.com")
    );
    assert!(!boss.id.is_empty() && !boss_token.is_empty());
    let rows = bumped(s, &mut v, "register boss").await;
    assert_eq!(
        rows.principals,
        vec![(boss.clone(), hash_token(&boss_token).to_vec())]
    );
    let (bot, bot_token) = s
        .register_principal(new("bot", PrincipalKind::Agent))
        .await
        .expect("register bot");
    assert_ne!(bot.id, boss.id);
    assert_ne!(bot_token, boss_token, "every principal has its own token");
    let rows = bumped(s, &mut v, "register bot").await;
    assert!(rows
        .principals
        .contains(&(bot.clone(), hash_token(&bot_token).to_vec())));
    assert_eq!(rows.principals.len(), 2);

    conflict(
        s.register_principal(new("bot", PrincipalKind::User)).await,
        "a taken name",
    );
    unchanged(s, v, "a refused registration").await;

    assert_eq!(s.find_principal(&bot.id).await.expect("by id"), bot);
    assert_eq!(s.find_principal("boss").await.expect("by name"), boss);
    not_found(s.find_principal("nobody").await, "an unknown principal");
    let listed: BTreeSet<String> = s
        .list_principals()
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, BTreeSet::from([boss.id, bot.id]));
}

// ---- providers --------------------------------------------------------

/// Providers are added, refused when the name is taken (unless replacing),
/// replaced, listed by name and removed; each change is in the state.
pub async fn providers_put_replace_and_remove<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let mut v = s.state_version().await.expect("state_version");
    let openai = provider("openai", "https://api.openai.com");
    let anthropic = provider("anthropic", "https://api.anthropic.com");
    s.put_provider(&openai, false).await.expect("put openai");
    bumped(s, &mut v, "put openai").await;
    s.put_provider(&anthropic, false)
        .await
        .expect("put anthropic");
    let rows = bumped(s, &mut v, "put anthropic").await;
    let listed = s.list_providers().await.expect("list");
    assert_eq!(listed, vec![anthropic.clone(), openai.clone()], "by name");
    assert_eq!(rows.providers, listed);
    assert_eq!(s.get_provider("openai").await.expect("get"), openai);

    let moved = provider("openai", "https://proxy.internal");
    conflict(s.put_provider(&moved, false).await, "a taken name");
    unchanged(s, v, "a refused put").await;
    assert_eq!(s.get_provider("openai").await.expect("get"), openai);
    s.put_provider(&moved, true).await.expect("replace");
    let rows = bumped(s, &mut v, "replace").await;
    assert_eq!(s.get_provider("openai").await.expect("get"), moved);
    assert_eq!(rows.providers, vec![anthropic, moved]);

    s.remove_provider("anthropic").await.expect("remove");
    let rows = bumped(s, &mut v, "remove").await;
    assert_eq!(provider_names(&rows.providers), ["openai"]);
    not_found(s.get_provider("anthropic").await, "a removed provider");
    not_found(s.remove_provider("anthropic").await, "removed twice");
    unchanged(s, v, "a failed removal").await;
}

fn provider_names(v: &[ProviderDef]) -> Vec<&str> {
    v.iter().map(|p| p.name.as_str()).collect()
}

// ---- allowlists -------------------------------------------------------

/// Entries are added for a principal, listed for one or all, and deleted.
pub async fn allowlists_add_list_and_delete<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let w = world(s).await;
    let mut v = s.state_version().await.expect("state_version");
    let mut added = Vec::new();
    for (who, pattern, kind) in [
        (&w.bot, "https://api.openai.com/v1/*", PatternType::Glob),
        (&w.bot, r"^https://api\.anthropic\.com/", PatternType::Regex),
        (&w.boss, "https://example.com/*", PatternType::Glob),
    ] {
        let e = s.add_allowlist(who, pattern, kind).await.expect("add");
        assert_eq!(
            (e.principal_id.as_str(), e.pattern.as_str(), e.pattern_type),
            (who.as_str(), pattern, kind)
        );
        let rows = bumped(s, &mut v, "add").await;
        assert!(rows.allowlists.contains(&e), "{e:?} is in the state");
        added.push(e);
    }
    let set = |v: Vec<crate::model::AllowlistEntry>| -> BTreeSet<String> {
        v.into_iter().map(|e| e.id).collect()
    };
    let all = s.list_allowlists(None).await.expect("list all");
    assert_eq!(all.len(), 3);
    for e in &added {
        assert!(all.contains(e), "{e:?} is listed");
    }
    let bots = s.list_allowlists(Some(&w.bot)).await.expect("list bot");
    assert_eq!(
        set(bots),
        BTreeSet::from([added[0].id.clone(), added[1].id.clone()])
    );
    let boss = s.list_allowlists(Some(&w.boss)).await.expect("list boss");
    assert_eq!(boss, vec![added[2].clone()]);

    s.delete_allowlist(&added[0].id).await.expect("delete");
    let rows = bumped(s, &mut v, "delete").await;
    assert!(!rows.allowlists.contains(&added[0]));
    assert_eq!(rows.allowlists.len(), 2);
    let bots = s.list_allowlists(Some(&w.bot)).await.expect("list bot");
    assert_eq!(bots, vec![added[1].clone()]);
    not_found(s.delete_allowlist(&added[0].id).await, "deleted twice");
    unchanged(s, v, "a failed delete").await;
}

// ---- policies ---------------------------------------------------------

/// Policies start at version 1; a change stores the next version and keeps
/// the definition when none is given; lists and the state hold the latest
/// version of each; history holds them all, oldest first.
pub async fn policies_get_versions_and_history<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let boss = register(s, "boss", PrincipalKind::User).await;
    let bot = register(s, "bot", PrincipalKind::Agent).await;
    let mut v = s.state_version().await.expect("state_version");
    let first = PolicyDefinition {
        scope: Scope::new(vec!["chat.*".into()], vec![Action::Create]),
        max_validity_secs: 3600,
        allow_delegation: false,
        max_delegation_depth: 0,
        budget: None,
        rate: None,
        max_in_flight: None,
    };
    let p1 = s
        .create_policy(&bot, &first, &change("start"))
        .await
        .expect("create");
    assert_eq!((p1.version, p1.active), (1, true));
    assert_eq!(
        (p1.principal_id.as_str(), &p1.definition),
        (bot.as_str(), &first)
    );
    assert_eq!(
        (p1.changed_by.as_str(), p1.change_reason.as_str()),
        ("ops", "start")
    );
    let rows = bumped(s, &mut v, "create").await;
    assert_eq!(rows.policies, vec![p1.clone()]);

    let second = PolicyDefinition {
        scope: Scope::new(
            vec!["chat.*".into(), "embeddings".into()],
            vec![Action::Create, Action::Read],
        ),
        max_validity_secs: 7200,
        allow_delegation: true,
        max_delegation_depth: 2,
        budget: Some(Budget {
            limit: Money {
                amount: d("12.50"),
                currency: Currency::USD,
            },
            window: WindowSpec::new(Period::Daily, WindowType::Calendar, "Europe/Paris")
                .expect("a window"),
            max_output_tokens: 4096,
        }),
        rate: Some(RateLimit {
            requests_per_minute: Some(60),
            tokens_per_minute: None,
        }),
        max_in_flight: Some(8),
    };
    let p2 = s
        .change_policy(&p1.id, Some(&second), true, &change("widen"))
        .await
        .expect("change");
    assert_eq!((p2.id.as_str(), p2.version), (p1.id.as_str(), 2));
    assert_eq!(p2.definition, second);
    let rows = bumped(s, &mut v, "change").await;
    assert_eq!(rows.policies, vec![p2.clone()], "only the latest version");

    let p3 = s
        .change_policy(&p1.id, None, false, &change("pause"))
        .await
        .expect("disable");
    assert_eq!((p3.version, p3.active), (3, false));
    assert_eq!(p3.definition, second, "no definition keeps the current one");
    assert_eq!(p3.principal_id, bot);
    let rows = bumped(s, &mut v, "disable").await;
    assert_eq!(rows.policies, vec![p3.clone()]);

    let history = s.policy_history(&p1.id).await.expect("history");
    assert_eq!(history, vec![p1.clone(), p2, p3.clone()]);

    let other = s
        .create_policy(&boss, &first, &change("boss"))
        .await
        .expect("create for boss");
    let rows = bumped(s, &mut v, "create for boss").await;
    assert_eq!(rows.policies.len(), 2);
    assert!(rows.policies.contains(&p3) && rows.policies.contains(&other));
    let all = s.list_policies(None).await.expect("list");
    assert_eq!(all.len(), 2);
    assert!(all.contains(&p3) && all.contains(&other));
    assert_eq!(s.list_policies(Some(&bot)).await.expect("bot's"), vec![p3]);
    assert_eq!(
        s.list_policies(Some(&boss)).await.expect("boss's"),
        vec![other]
    );
    assert!(s
        .list_policies(Some("nobody"))
        .await
        .expect("none")
        .is_empty());

    not_found(
        s.change_policy("nope", None, true, &change("x")).await,
        "changing an unknown policy",
    );
    not_found(
        s.policy_history("nope").await,
        "an unknown policy's history",
    );
    not_found(
        s.create_policy("nobody", &first, &change("x")).await,
        "a policy for an unknown principal",
    );
    unchanged(s, v, "failed policy changes").await;
}

// ---- mandates ---------------------------------------------------------

/// Mandates are recorded with their issue in the ledger, found by id,
/// listed by subject or issuer; a repeated id or a missing issuer,
/// subject, parent or policy version is refused without a change.
pub async fn mandates_insert_get_and_list<H: Harness, F: Future<Output = H>>(make: impl Fn() -> F) {
    let h = make().await;
    let s = h.store();
    let w = world(s).await;
    let mut v = s.state_version().await.expect("state_version");
    let root = mandate(&w, "m-1", None, 100, 1000, "chat.completions");
    s.insert_mandate(&root).await.expect("insert");
    bumped(s, &mut v, "insert").await;
    assert_eq!(s.get_mandate("m-1").await.expect("get"), root);
    let rows = authority_rows(s, "m-1").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].decision, rows[0].code, rows[0].mode),
        (
            Decision::Allow,
            EventCode::Done(Outcome::MandateIssued),
            Mode::Cli
        )
    );
    assert_eq!(rows[0].principal_id.as_deref(), Some(w.bot.as_str()));

    conflict(s.insert_mandate(&root).await, "a repeated jti");
    let mut bad = mandate(&w, "m-2", None, 100, 1000, "chat.completions");
    bad.subject_id = "nobody".into();
    not_found(s.insert_mandate(&bad).await, "an unknown subject");
    let mut bad = mandate(&w, "m-2", None, 100, 1000, "chat.completions");
    bad.issuer_id = "nobody".into();
    not_found(s.insert_mandate(&bad).await, "an unknown issuer");
    let mut bad = mandate(&w, "m-2", None, 100, 1000, "chat.completions");
    bad.policy_id = "nope".into();
    not_found(s.insert_mandate(&bad).await, "an unknown policy");
    let mut bad = mandate(&w, "m-2", None, 100, 1000, "chat.completions");
    bad.policy_version = w.policy.1 + 1;
    not_found(s.insert_mandate(&bad).await, "an unknown policy version");
    let mut bad = mandate(&w, "m-2", Some(&root), 100, 1000, "chat.completions");
    bad.parent_jti = Some("ghost".into());
    not_found(s.insert_mandate(&bad).await, "an unknown parent");
    unchanged(s, v, "refused inserts").await;
    not_found(s.get_mandate("m-2").await, "a refused mandate");
    assert!(
        authority_rows(s, "m-2").await.is_empty(),
        "nothing recorded"
    );

    let child = mandate(&w, "m-2", Some(&root), 110, 2000, "chat.completions");
    s.insert_mandate(&child).await.expect("delegate");
    bumped(s, &mut v, "delegate").await;
    let rows = authority_rows(s, "m-2").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].code, EventCode::Done(Outcome::MandateDelegated));
    assert_eq!(s.get_mandate("m-2").await.expect("get"), child);
    assert_eq!(s.longest_mandate_validity().await.expect("longest"), 1890);

    let filter = |subject: Option<&str>, issuer: Option<&str>| MandateFilter {
        subject_id: subject.map(Into::into),
        issuer_id: issuer.map(Into::into),
    };
    let list = |f: MandateFilter| async move { s.list_mandates(&f).await.expect("list") };
    assert_eq!(
        list(filter(None, None)).await,
        vec![root.clone(), child.clone()],
        "oldest first"
    );
    assert_eq!(
        list(filter(Some(&w.bot), None)).await,
        vec![root.clone(), child.clone()]
    );
    assert_eq!(list(filter(None, Some(&w.boss))).await, vec![root.clone()]);
    assert_eq!(list(filter(None, Some(&w.bot))).await, vec![child]);
    assert!(list(filter(Some(&w.boss), None)).await.is_empty());
    assert!(list(filter(Some(&w.bot), Some("nobody"))).await.is_empty());
}

/// The state holds mandates not expired, or expired within
/// [`KEEP_EXPIRED_SECS`], revoked or not, and the revoked jtis.
pub async fn load_state_keeps_mandates_expired_within_a_day<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let w = world(s).await;
    let now = jiff::Timestamp::now().as_second();
    let live = mandate(&w, "live", None, now - 60, now + 3600, "chat.completions");
    let recent = mandate(
        &w,
        "recent",
        None,
        now - KEEP_EXPIRED_SECS,
        now - KEEP_EXPIRED_SECS + 600,
        "chat.completions",
    );
    let old = mandate(
        &w,
        "old",
        None,
        now - 3 * KEEP_EXPIRED_SECS,
        now - KEEP_EXPIRED_SECS - 600,
        "chat.completions",
    );
    let mut v = s.state_version().await.expect("state_version");
    for m in [&live, &recent, &old] {
        s.insert_mandate(m).await.expect("insert");
    }
    let rows = bumped(s, &mut v, "inserts").await;
    let mut held = rows.mandates.clone();
    held.sort_by(|a, b| a.jti.cmp(&b.jti));
    assert_eq!(held, vec![live.clone(), recent.clone()]);
    assert!(rows.revoked.is_empty());
    assert!(rows.rejected.is_empty());

    s.revoke_mandate("live", false, &by("leak"))
        .await
        .expect("revoke");
    let rows = bumped(s, &mut v, "revoke").await;
    assert_eq!(rows.revoked, vec!["live".to_string()]);
    let held = rows
        .mandates
        .iter()
        .find(|m| m.jti == "live")
        .expect("a revoked mandate stays in the state");
    assert_eq!(held.revoked_at, Some(500));
    assert_eq!(held.revoke_reason.as_deref(), Some("leak"));
}

/// Key sync makes the stored keys exactly the keyring's: adds, updates
/// retirement, prunes; bumps only when something changed; a kid never
/// changes its public key.
pub async fn signing_keys_mirror_the_keyring<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let mut v = s.state_version().await.expect("state_version");
    let keys = vec![key("k-a", 1, None)];
    assert!(s.sync_signing_keys(&keys).await.expect("sync"));
    let rows = bumped(s, &mut v, "first key").await;
    assert_eq!(rows.signing_keys, keys);
    assert!(!s.sync_signing_keys(&keys).await.expect("sync again"));
    unchanged(s, v, "the same keys").await;

    // Rotation retires k-a and adds k-b; pruning later drops k-a.
    let rotated = vec![key("k-a", 1, Some(20)), key("k-b", 2, None)];
    assert!(s.sync_signing_keys(&rotated).await.expect("rotate"));
    let rows = bumped(s, &mut v, "rotation").await;
    assert_eq!(rows.signing_keys, rotated);
    assert_eq!(s.list_signing_keys().await.expect("list"), rotated);
    let pruned = vec![key("k-b", 2, None)];
    assert!(s.sync_signing_keys(&pruned).await.expect("prune"));
    let rows = bumped(s, &mut v, "pruning").await;
    assert_eq!(rows.signing_keys, pruned);
    assert_eq!(s.list_signing_keys().await.expect("list"), pruned);

    conflict(
        s.sync_signing_keys(&[key("k-b", 9, None)]).await,
        "another public key under a kid",
    );
    unchanged(s, v, "a refused sync").await;
    assert_eq!(s.list_signing_keys().await.expect("list"), pruned);
}

// ---- revocation -------------------------------------------------------

/// Revoking one mandate, then its tree: the first reason is kept,
/// descendants are revoked only with cascade, each newly revoked mandate
/// gets one ledger row, and revoking nothing new changes nothing.
pub async fn revoking_one_mandate_with_and_without_cascade<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let w = world(s).await;
    let root = insert(s, &w, "r", None, 100, "chat.completions").await;
    let child = insert(s, &w, "c", Some(&root), 110, "chat.completions").await;
    insert(s, &w, "g", Some(&child), 120, "chat.completions").await;
    insert(s, &w, "other", None, 130, "chat.completions").await;

    let mut v = s.state_version().await.expect("state_version");
    let done = s
        .revoke_mandate("c", false, &by("leak"))
        .await
        .expect("revoke c");
    assert_eq!(jtis(&done.revoked), ["c"]);
    assert!(done.already.is_empty());
    let rows = bumped(s, &mut v, "revoke c").await;
    assert_eq!(rows.revoked, vec!["c".to_string()]);
    let g = s.get_mandate("g").await.expect("g");
    assert_eq!(g.revoked_at, None, "no cascade");
    assert_eq!(
        g.state(0, |j| rows.revoked.iter().any(|r| r == j)),
        MandateState::RevokedByAncestor
    );
    let c_rows = authority_rows(s, "c").await;
    let revoked_rows: Vec<_> = c_rows
        .iter()
        .filter(|e| e.code == Code::MandateRevoked)
        .collect();
    assert_eq!(revoked_rows.len(), 1, "{c_rows:?}");
    assert_eq!(revoked_rows[0].decision, Decision::Deny);

    let done = s
        .revoke_mandate("r", true, &by("incident"))
        .await
        .expect("revoke r");
    assert_eq!(jtis(&done.revoked), ["r", "g"]);
    assert_eq!(jtis(&done.already), ["c"]);
    let rows = bumped(s, &mut v, "revoke r").await;
    let revoked: BTreeSet<&str> = rows.revoked.iter().map(String::as_str).collect();
    assert_eq!(revoked, BTreeSet::from(["c", "g", "r"]));
    let g = s.get_mandate("g").await.expect("g");
    assert_eq!(
        (
            g.revoked_at,
            g.revoke_reason.as_deref(),
            g.revoked_by.as_deref()
        ),
        (Some(500), Some("incident"), Some("op"))
    );
    assert_eq!(
        s.get_mandate("other").await.expect("other").revoked_at,
        None
    );
    let c = s.get_mandate("c").await.expect("c");
    assert_eq!(c.revoke_reason.as_deref(), Some("leak"), "the first reason");
    let count = |rows: Vec<LedgerEvent>| {
        rows.iter()
            .filter(|e| e.code == Code::MandateRevoked)
            .count()
    };
    assert_eq!(
        count(authority_rows(s, "c").await),
        1,
        "c is not revoked twice"
    );
    assert_eq!(count(authority_rows(s, "g").await), 1);

    // Again: nothing new, no state change, no new rows.
    let done = s.revoke_mandate("r", true, &by("x")).await.expect("again");
    assert!(done.revoked.is_empty());
    assert_eq!(done.already.len(), 3);
    unchanged(s, v, "nothing newly revoked").await;
    assert_eq!(count(authority_rows(s, "r").await), 1);

    not_found(
        s.revoke_mandate("nope", false, &by("x")).await,
        "an unknown mandate",
    );
    unchanged(s, v, "a failed revocation").await;
}

/// What `selector` would revoke (a dry run).
async fn selected(s: &dyn Store, selector: Selector) -> Vec<String> {
    let r = s
        .revoke_matching(&selector, &by("x"), true)
        .await
        .expect("dry run");
    r.revoked.into_iter().map(|m| m.jti).collect()
}

/// Bulk revocation selects by issuer, subject, issue time and resource;
/// a dry run changes nothing; a delegation tree is its root and every
/// descendant.
pub async fn bulk_revocation_selects_dry_runs_and_trees<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let w = world(s).await;
    let root = insert(s, &w, "r", None, 100, "chat.completions").await;
    let child = insert(s, &w, "c", Some(&root), 110, "chat.*").await;
    insert(s, &w, "e", None, 200, "embeddings").await;
    let v = s.state_version().await.expect("state_version");

    assert_eq!(
        selected(s, Selector::Issuer(w.boss.clone())).await,
        ["r", "e"]
    );
    assert_eq!(selected(s, Selector::Issuer(w.bot.clone())).await, ["c"]);
    assert_eq!(
        selected(s, Selector::Subject(w.bot.clone())).await,
        ["r", "c", "e"]
    );
    assert_eq!(selected(s, Selector::IssuedBefore(110)).await, ["r"]);
    assert_eq!(
        selected(s, Selector::Resource("chat.*".into())).await,
        ["r", "c"]
    );
    // An exact name selects the entries that cover it.
    assert_eq!(
        selected(s, Selector::Resource("chat.completions".into())).await,
        ["r", "c"]
    );
    assert_eq!(
        selected(s, Selector::Resource("embeddings".into())).await,
        ["e"]
    );
    assert!(selected(s, Selector::Resource("images".into()))
        .await
        .is_empty());

    // The dry runs changed nothing.
    unchanged(s, v, "dry runs").await;
    assert!(s.load_state().await.expect("state").revoked.is_empty());
    assert_eq!(s.get_mandate("r").await.expect("r").revoked_at, None);
    for jti in ["r", "c", "e"] {
        let rows = authority_rows(s, jti).await;
        assert!(
            rows.iter().all(|e| e.code != Code::MandateRevoked),
            "a dry run records nothing: {rows:?}"
        );
    }
    let mut v = v;
    let done = s
        .revoke_matching(&Selector::Resource("chat.*".into()), &by("x"), false)
        .await
        .expect("revoke");
    assert_eq!(jtis(&done.revoked), ["r", "c"]);
    let rows = bumped(s, &mut v, "bulk revocation").await;
    let revoked: BTreeSet<&str> = rows.revoked.iter().map(String::as_str).collect();
    assert_eq!(revoked, BTreeSet::from(["c", "r"]));
    let again = s
        .revoke_matching(&Selector::Resource("chat.*".into()), &by("y"), false)
        .await
        .expect("again");
    assert!(again.revoked.is_empty());
    assert_eq!(jtis(&again.already), ["r", "c"]);
    unchanged(s, v, "nothing newly revoked").await;

    let tree = s.mandate_tree(&child.jti).await.expect("tree of c");
    assert_eq!(jtis(&tree), ["r", "c"]);
    let tree = s.mandate_tree("r").await.expect("tree of r");
    assert_eq!(jtis(&tree), ["r", "c"]);
    let tree = s.mandate_tree("e").await.expect("tree of e");
    assert_eq!(jtis(&tree), ["e"]);
    not_found(s.mandate_tree("nope").await, "an unknown mandate's tree");
}

// ---- pricebook --------------------------------------------------------

/// Prices are stored with their time, listed by provider, kind and name,
/// replaced and deleted; every change is in the state.
pub async fn prices_round_trip_and_bump_the_state_version<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let mut v = s.state_version().await.expect("state_version");
    let image = PriceRow::resource(
        "openai",
        "images.generations",
        "EUR".parse().expect("a currency"),
        d("0.040"),
        PriceSource::Import,
    );
    let search = PriceRow::tool(
        "openai",
        "web_search",
        "USD".parse().expect("a currency"),
        d("0.025"),
        PriceSource::Set,
    );
    let stored = s
        .put_prices(&[
            image,
            search,
            price("gpt-4o", "2.50").with_context_window(128_000),
        ])
        .await
        .expect("put");
    assert!(stored.iter().all(|p| p.updated_at.is_some()));
    let rows = bumped(s, &mut v, "put").await;
    let listed = s.list_prices().await.expect("list");
    assert_eq!(rows.prices, listed);
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].context_window, Some(128_000));
    assert_eq!(
        (listed[2].kind, listed[2].name.as_str()),
        (PriceKind::Tool, "web_search")
    );
    assert_eq!(
        listed[2].per_request.map(|p| p.to_string()).as_deref(),
        Some("0.025")
    );
    for p in &stored {
        assert!(listed.contains(p), "{p:?} is listed as stored");
    }
    assert_eq!(
        (listed[0].kind, listed[0].name.as_str()),
        (PriceKind::Model, "gpt-4o")
    );
    assert_eq!(listed[0].input_per_mtok.to_string(), "2.50");
    assert_eq!(
        listed[0]
            .cached_input_per_mtok
            .map(|p| p.to_string())
            .as_deref(),
        Some("0.50")
    );
    assert_eq!(listed[0].cache_write_per_mtok, None);
    assert_eq!(
        listed[1].per_request.map(|p| p.to_string()).as_deref(),
        Some("0.040")
    );
    assert_eq!(listed[1].currency.as_str(), "EUR");
    assert_eq!(listed[1].source, PriceSource::Import);

    // Upsert replaces; delete removes; deleting again is NotFound.
    s.put_prices(&[price("gpt-4o", "1")])
        .await
        .expect("replace");
    let rows = bumped(s, &mut v, "replace").await;
    let listed = s.list_prices().await.expect("list");
    assert_eq!(rows.prices, listed);
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].input_per_mtok.to_string(), "1");
    assert_eq!(listed[0].context_window, None, "replaced whole");
    // A price is keyed by provider, kind and name: the model's name under
    // another kind is not it.
    not_found(
        s.delete_price("openai", PriceKind::Resource, "gpt-4o")
            .await,
        "another kind",
    );
    unchanged(s, v, "a delete of another kind").await;
    assert_eq!(s.list_prices().await.expect("list").len(), 3);
    s.delete_price("openai", PriceKind::Model, "gpt-4o")
        .await
        .expect("delete");
    let rows = bumped(s, &mut v, "delete").await;
    assert_eq!(rows.prices.len(), 2);
    assert_eq!(rows.prices[0].kind, PriceKind::Resource);
    not_found(
        s.delete_price("openai", PriceKind::Model, "gpt-4o").await,
        "deleted twice",
    );
    unchanged(s, v, "a failed delete").await;
}

/// A batch of prices is stored whole or not at all: an invalid row, a row
/// given twice or a built-in default refuses the batch as a `Conflict`.
pub async fn price_writes_are_all_or_nothing<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    s.put_prices(&[price("gpt-4o", "2")]).await.expect("put");
    let v = s.state_version().await.expect("state_version");
    let mut bad = price("o3", "1");
    bad.name = "o 3".into();
    for batch in [
        vec![price("gpt-4o", "9"), bad],
        vec![price("o3", "1"), price("o3", "2")],
        vec![PriceRow {
            source: PriceSource::Default,
            ..price("o3", "1")
        }],
    ] {
        conflict(s.put_prices(&batch).await, "a bad batch");
    }
    let listed = s.list_prices().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].input_per_mtok.to_string(), "2");
    unchanged(s, v, "refused batches").await;
}

// ---- ledger -----------------------------------------------------------

/// Re-inserting an event id is a no-op: a retried batch never double
/// counts, and the first write of an id is the one kept.
pub async fn ledger_inserts_are_idempotent_by_event_id<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let batch: Vec<LedgerEvent> = (1..=3)
        .map(|i| costing(call("agent", i * 1_000), "1.25", "USD"))
        .collect();
    s.insert_ledger_events(&batch).await.expect("insert");
    s.insert_ledger_events(&[]).await.expect("an empty batch");
    let mut retried = batch.clone();
    retried[0].cost = Some(d("99"));
    retried[0].detail = Some("rewritten".into());
    retried.push(costing(call("agent", 4_000), "0.75", "USD"));
    s.insert_ledger_events(&retried).await.expect("retry");
    s.insert_ledger_events(&retried).await.expect("retry again");
    let twice = costing(call("agent", 5_000), "0.25", "USD");
    s.insert_ledger_events(&[twice.clone(), twice])
        .await
        .expect("an id twice in one batch");

    let got = s
        .query_ledger(&LedgerFilter::default())
        .await
        .expect("query");
    assert_eq!(got.len(), 5, "each event once: {:?}", ids(&got));
    assert_eq!(got[0], batch[0], "the first write of an id is kept");
    assert_eq!(
        s.pending().await.expect("pending"),
        (5, Some(1_000)),
        "each event queued for sealing once"
    );
    let spent: Decimal = s
        .spend_since("agent", 0)
        .await
        .expect("spend_since")
        .iter()
        .map(|sp| sp.amount)
        .sum();
    assert_eq!(spent, d("4.75"));
}

/// A batch larger than one statement (the stores cut batches into
/// multi-row statements, and the spend aggregates into statements of a few
/// hundred keys) counts each event once: an id repeated far apart in the
/// batch, across statements, is inserted, queued for sealing and added to
/// the aggregates once, with its first write kept.
pub async fn a_batch_of_many_statements_counts_each_event_once<
    H: Harness,
    F: Future<Output = H>,
>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    // 600 events, 300 principals, over ten minutes: about 600 distinct
    // (principal, minute) aggregate keys.
    let mut batch: Vec<LedgerEvent> = (0..600)
        .map(|i| {
            costing(
                call(&format!("agent-{}", i % 300), i * 1_000),
                "0.01",
                "USD",
            )
        })
        .collect();
    let mut again = batch[5].clone();
    again.cost = Some(d("99"));
    batch.insert(200, batch[5].clone());
    batch.insert(450, again);
    s.insert_ledger_events(&batch).await.expect("insert");

    let got = s
        .query_ledger(&LedgerFilter::default())
        .await
        .expect("query");
    assert_eq!(got.len(), 600, "each event once");
    assert_eq!(got[5], batch[5], "the first write of an id is kept");
    assert_eq!(
        s.pending().await.expect("pending").0,
        600,
        "each event queued for sealing once"
    );
    // agent-5 made events 5 and 305, a cent each, whatever the repeats.
    let minutes = s
        .spend_by_minute_since("agent-5", 0)
        .await
        .expect("minutes");
    let sum: Decimal = minutes.iter().map(|m| m.amount).sum();
    assert_eq!(sum, d("0.02"), "{minutes:?}");
    let mut total = Decimal::ZERO;
    for p in 0..300 {
        for m in s
            .spend_by_minute_since(&format!("agent-{p}"), 0)
            .await
            .expect("minutes")
        {
            total += m.amount;
        }
    }
    assert_eq!(total, d("6.00"));
}

/// Every field of an event reads back as written: the typed ones (kind,
/// mode, decision, code, usage, cost basis), exact decimals with their
/// scale, large counts, and absent values as absent.
pub async fn ledger_events_round_trip_every_field<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let mut full = call("agent-1", 1_700_000_000_123);
    full.mode = Mode::Proxy;
    full.provider = Some("openai".into());
    full.resource = Some("chat.completions".into());
    full.action = Some("create".into());
    full.method = Some("POST".into());
    full.url = Some("https://api.openai.com/v1/chat/completions?x=1".into());
    full.decision = Decision::Error;
    full.code = Code::UpstreamTimeout.into();
    full.status = Some(504);
    full.request_bytes = 12_345;
    full.response_bytes = i64::MAX as u64;
    full.duration_ms = 1_234;
    full.duration_us = 1_234_567;
    full.model = Some("gpt-4o-2024-08-06".into());
    full.input_tokens = Some(1_000_000);
    full.output_tokens = Some(0);
    full.cached_input_tokens = Some(42);
    full.usage = Some(UsageCode::Partial);
    full.detail = Some("upstream took too long — «ok»".into());
    full.mandate_id = Some("m-1".into());
    full.cost = Some(d("0.000123450"));
    full.currency = Some("EUR".into());
    full.cost_basis = Some(CostBasis::Reservation);
    full.reserved = Some(d("12.50"));

    let mut authority = LedgerEvent::new(
        EventKind::Authority,
        Mode::Cli,
        Decision::Allow,
        Outcome::MandateDelegated,
    );
    authority.ts_ms = 1_700_000_000_124;
    let mut refused = call("agent-2", 1_700_000_000_125);
    refused.decision = Decision::Deny;
    refused.code = Code::BudgetExceeded.into();
    refused.usage = Some(UsageCode::NotApplicable);
    refused.cost_basis = Some(CostBasis::Free);
    let bare = call("agent-3", 1_700_000_000_126);

    let written = vec![full, authority, refused, bare];
    s.insert_ledger_events(&written).await.expect("insert");
    let got = s
        .query_ledger(&LedgerFilter::default())
        .await
        .expect("query");
    assert_eq!(got, written);
    for (g, w) in got.iter().zip(&written) {
        let text = |x: Option<Decimal>| x.map(|x| x.to_string());
        assert_eq!(text(g.cost), text(w.cost), "cost keeps its scale");
        assert_eq!(
            text(g.reserved),
            text(w.reserved),
            "reserved keeps its scale"
        );
    }
}

/// Queries filter by principal, kind, mandate and an inclusive time
/// range, return events oldest first, and stop at the limit.
pub async fn query_ledger_filters_and_orders<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let mut a1 = call("alice", 1_000);
    a1.mandate_id = Some("m-1".into());
    let b2 = call("bob", 2_000);
    let mut a3 = LedgerEvent::new(
        EventKind::Authority,
        Mode::Cli,
        Decision::Allow,
        Outcome::MandateIssued,
    );
    a3.principal_id = Some("alice".into());
    a3.mandate_id = Some("m-1".into());
    a3.ts_ms = 3_000;
    let mut a4 = call("alice", 4_000);
    a4.mandate_id = Some("m-2".into());
    let b5 = call("bob", 5_000);
    // Written out of order, in two batches.
    s.insert_ledger_events(&[a4.clone(), b2.clone()])
        .await
        .expect("insert");
    s.insert_ledger_events(&[b5.clone(), a1.clone(), a3.clone()])
        .await
        .expect("insert");

    let q = |f: LedgerFilter| async move { s.query_ledger(&f).await.expect("query") };
    let all = q(LedgerFilter::default()).await;
    assert_eq!(
        ids(&all),
        ids(&[a1.clone(), b2.clone(), a3.clone(), a4.clone(), b5.clone()]),
        "oldest first"
    );
    let alice = q(LedgerFilter {
        principal_id: Some("alice".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&alice), ids(&[a1.clone(), a3.clone(), a4.clone()]));
    let calls = q(LedgerFilter {
        kind: Some(EventKind::Call),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&calls),
        ids(&[a1.clone(), b2.clone(), a4.clone(), b5.clone()])
    );
    let authority = q(LedgerFilter {
        kind: Some(EventKind::Authority),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&authority), ids(&[a3.clone()]));
    let m1 = q(LedgerFilter {
        mandate_id: Some("m-1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&m1), ids(&[a1.clone(), a3.clone()]));
    let range = q(LedgerFilter {
        start_ms: Some(2_000),
        end_ms: Some(4_000),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&range),
        ids(&[b2.clone(), a3.clone(), a4.clone()]),
        "both bounds inclusive"
    );
    let from = q(LedgerFilter {
        start_ms: Some(4_000),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&from), ids(&[a4.clone(), b5.clone()]));
    let until = q(LedgerFilter {
        end_ms: Some(1_000),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&until), ids(&[a1.clone()]));
    let first_two = q(LedgerFilter {
        limit: Some(2),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&first_two), ids(&[a1.clone(), b2.clone()]));
    let combined = q(LedgerFilter {
        principal_id: Some("alice".into()),
        kind: Some(EventKind::Call),
        start_ms: Some(1_001),
        limit: Some(5),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&combined), ids(&[a4]));
    let nobody = q(LedgerFilter {
        principal_id: Some("carol".into()),
        ..Default::default()
    })
    .await;
    assert!(nobody.is_empty());
}

/// The spend of a principal from a bound on: only its call events with a
/// cost, at or after the bound, oldest first, with amount and currency.
pub async fn spend_since_counts_only_costed_calls_from_the_bound<
    H: Harness,
    F: Future<Output = H>,
>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    let mut authority = LedgerEvent::new(
        EventKind::Authority,
        Mode::Cli,
        Decision::Allow,
        Outcome::MandateIssued,
    );
    authority.principal_id = Some("alice".into());
    authority.ts_ms = 2_500;
    let authority = costing(authority, "100", "USD");
    let events = [
        costing(call("alice", 3_000), "0.003", "EUR"),
        costing(call("alice", 1_000), "1", "USD"),
        costing(call("alice", 1_999), "2", "USD"),
        costing(call("alice", 2_000), "0.25", "USD"),
        call("alice", 2_200),
        authority,
        costing(call("bob", 2_100), "7", "USD"),
    ];
    s.insert_ledger_events(&events).await.expect("insert");
    let spend = s.spend_since("alice", 2_000).await.expect("spend_since");
    let got: Vec<(i64, String, &str)> = spend
        .iter()
        .map(|sp| (sp.ts_ms, sp.amount.to_string(), sp.currency.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2_000, "0.25".to_string(), "USD"),
            (3_000, "0.003".to_string(), "EUR"),
        ]
    );
    assert!(s
        .spend_since("alice", 3_001)
        .await
        .expect("spend_since")
        .is_empty());
    assert_eq!(s.spend_since("bob", 0).await.expect("bob").len(), 1);
    assert!(s.spend_since("carol", 0).await.expect("carol").is_empty());
}

/// `spend_by_minute_since` may sum a minute's costs, never move one out of
/// its minute or currency: per minute and currency, its amounts add up to
/// the ledger's costs there, from the minute holding the bound on.
pub async fn spend_by_minute_sums_each_minute_exactly<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let s = h.store();
    const M: i64 = 60_000;
    let events = [
        costing(call("alice", 10 * M - 1), "5", "USD"),
        costing(call("alice", 10 * M), "0.1", "USD"),
        costing(call("alice", 10 * M + 59_999), "0.2", "USD"),
        costing(call("alice", 10 * M + 30_000), "1", "EUR"),
        costing(call("alice", 11 * M), "0.000001", "USD"),
        call("alice", 11 * M + 1),
        costing(call("bob", 10 * M), "7", "USD"),
    ];
    s.insert_ledger_events(&events).await.expect("insert");
    let totals = |spend: Vec<crate::store::Spend>| {
        let mut by: std::collections::BTreeMap<(i64, String), crate::money::Decimal> =
            Default::default();
        for sp in spend {
            assert!(sp.ts_ms >= 10 * M, "{sp:?} is before the bound's minute");
            *by.entry((sp.ts_ms - sp.ts_ms.rem_euclid(M), sp.currency))
                .or_default() += sp.amount;
        }
        by.into_iter()
            .map(|((m, c), a)| (m, c, a.to_string()))
            .collect::<Vec<_>>()
    };
    let want = vec![
        (10 * M, "EUR".to_string(), "1".to_string()),
        (10 * M, "USD".to_string(), "0.3".to_string()),
        (11 * M, "USD".to_string(), "0.000001".to_string()),
    ];
    // A bound inside a minute counts that minute whole (more spend, never less).
    for since in [10 * M, 10 * M + 1] {
        let got = s
            .spend_by_minute_since("alice", since)
            .await
            .expect("spend");
        assert_eq!(totals(got), want, "since {since}");
    }
    let got = s
        .spend_by_minute_since("alice", 11 * M)
        .await
        .expect("spend");
    assert_eq!(totals(got), want[2..].to_vec());
    assert!(s
        .spend_by_minute_since("carol", 0)
        .await
        .expect("carol")
        .is_empty());
}

/// Instantiates every case of the store suite: `$make` is an expression of
/// type `Fn() -> impl Future<Output = impl Harness>`.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::conformance_cases!(store, $make;
            a_fresh_store_is_empty,
            only_enforcement_changes_move_the_version,
            principals_register_with_unique_names,
            providers_put_replace_and_remove,
            allowlists_add_list_and_delete,
            policies_get_versions_and_history,
            mandates_insert_get_and_list,
            load_state_keeps_mandates_expired_within_a_day,
            signing_keys_mirror_the_keyring,
            revoking_one_mandate_with_and_without_cascade,
            bulk_revocation_selects_dry_runs_and_trees,
            prices_round_trip_and_bump_the_state_version,
            price_writes_are_all_or_nothing,
            ledger_inserts_are_idempotent_by_event_id,
            a_batch_of_many_statements_counts_each_event_once,
            ledger_events_round_trip_every_field,
            query_ledger_filters_and_orders,
            spend_since_counts_only_costed_calls_from_the_bound,
            spend_by_minute_sums_each_minute_exactly,
        );
    };
}
