//! The policy snapshot: everything a decision reads, immutable, held in an
//! `ArcSwap` and replaced whole. A request never waits on the database:
//! the refresher ([`refresh`]) learns of changes from a [`SnapshotSource`]
//! and rebuilds, keeping the last good snapshot when a rebuild fails.

pub mod refresh;
pub mod source;

pub use refresh::{spend_in_window, SpendHistory};
pub use source::{SnapshotSource, SourceError, StoreSource};

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use caracal_config::AllowlistDefault;

use crate::allowlist::Allowlists;
use crate::authn::{hash_token, BadCredentials, Presented};
use crate::authority::view::AuthorityView;
use crate::budget::charge::Plan;
use crate::model::Principal;
use crate::pricing::Pricebook;
use crate::provider::Provider;
use crate::store::StateRows;

/// One consistent view of the enforcement state.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    principals: HashMap<String, Arc<Principal>>,
    by_token: HashMap<[u8; 32], Arc<Principal>>,
    providers: HashMap<String, Arc<Provider>>,
    by_host: HashMap<String, Arc<Provider>>,
    pub allowlists: Allowlists,
    /// Keys, revocations, recorded mandates and policies: what mandate
    /// decisions read.
    pub authority: AuthorityView,
    /// What every call costs: stored prices over the templates' defaults
    /// (shared, so a call in flight keeps its prices, not the snapshot).
    pub pricebook: Arc<Pricebook>,
    /// Budgets and rate limits by principal id (principals with neither
    /// are absent).
    pub budgets: HashMap<String, Arc<Plan>>,
    /// In-flight limits set by policies, by principal id.
    pub in_flight: HashMap<String, u32>,
}

impl Snapshot {
    /// Builds a snapshot. Rows that cannot be used (an invalid provider, an
    /// allowlist pattern that does not compile) are left out, which can only
    /// deny more, and are returned as warnings.
    pub fn build(rows: StateRows, allowlist_default: AllowlistDefault) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let mut principals = HashMap::new();
        let mut by_token = HashMap::new();
        for (p, hash) in rows.principals {
            let p = Arc::new(p);
            match <[u8; 32]>::try_from(hash.as_slice()) {
                Ok(h) => {
                    by_token.insert(h, p.clone());
                }
                Err(_) => warnings.push(format!(
                    "principal {}: token hash is not 32 bytes; it cannot authenticate",
                    p.id
                )),
            }
            principals.insert(p.id.clone(), p);
        }
        // Defaults follow each stored provider's template, valid or not:
        // a price can only matter for a provider that is usable.
        let templates: Vec<_> = rows
            .providers
            .iter()
            .map(|d| (d.name.clone(), d.template))
            .collect();
        let pricebook = Arc::new(Pricebook::build(rows.prices, &templates));
        let budgets = crate::budget::plans(&rows.policies);
        let in_flight = crate::budget::in_flight_limits(&rows.policies);
        let mut providers = HashMap::new();
        let mut by_host = HashMap::new();
        for def in rows.providers {
            let name = def.name.clone();
            match Provider::new(def) {
                Ok(p) => {
                    let p = Arc::new(p);
                    for h in &p.def.hosts {
                        if let Some(other) = by_host.insert(h.clone(), p.clone()) {
                            warnings.push(format!(
                                "host {h} is claimed by providers {} and {}; {} wins",
                                other.name(),
                                p.name(),
                                p.name()
                            ));
                        }
                    }
                    providers.insert(name, p);
                }
                Err(e) => warnings.push(format!("provider {name:?} left out: {e}")),
            }
        }
        let (allowlists, rejected) = Allowlists::compile(&rows.allowlists, allowlist_default);
        warnings.extend(
            rejected
                .into_iter()
                .map(|(id, e)| format!("allowlist entry {id} left out: {e}")),
        );
        let (authority, rejected) = AuthorityView::from_rows(
            rows.signing_keys,
            rows.mandates,
            rows.revoked,
            rows.policies,
        );
        warnings.extend(rejected);
        warnings.extend(rows.rejected.into_iter().map(|r| format!("mandate {r}")));
        (
            Self {
                version: rows.version,
                principals,
                by_token,
                providers,
                by_host,
                allowlists,
                authority,
                pricebook,
                budgets,
                in_flight,
            },
            warnings,
        )
    }

    /// The principal owning the presented token. A Basic user part must
    /// name that same principal (by id or name).
    pub fn authenticate(&self, presented: &Presented) -> Result<&Arc<Principal>, BadCredentials> {
        let principal = self
            .by_token
            .get(&hash_token(&presented.token))
            .ok_or_else(|| BadCredentials("the token identifies no principal".into()))?;
        if let Some(user) = &presented.user {
            if user != &principal.id && user != &principal.name {
                return Err(BadCredentials(
                    "the proxy user name does not match the token's principal".into(),
                ));
            }
        }
        Ok(principal)
    }

    pub fn principal(&self, id: &str) -> Option<&Arc<Principal>> {
        self.principals.get(id)
    }

    /// The provider agents reach under this (normalised) host name.
    pub fn provider_for_host(&self, host: &str) -> Option<&Arc<Provider>> {
        self.by_host.get(host)
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.get(name)
    }

    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }
}

/// The shared, swappable snapshot.
pub type SnapshotCell = Arc<ArcSwap<Snapshot>>;
