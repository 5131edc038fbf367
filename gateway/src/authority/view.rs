//! What the mandate decision reads besides the token: the workspace's
//! verifying keys, its revocations, the mandates it recorded and the
//! current version of every policy. The gateway builds one per snapshot,
//! `caracal authority enforce` one per run, from the same rows, so both
//! decide alike.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::keys::Verifier;
use super::mandate::Claims;
use super::record::{MandateRecord, SigningKeyRow};
use super::scope::CompiledScope;
use crate::policy::Policy;

/// A recorded mandate, ready to be decided on.
#[derive(Debug)]
pub struct Held {
    pub claims: Arc<Claims>,
    /// The policy that authorised it (for a delegated mandate, its root's).
    pub policy_id: String,
    pub(super) scope: CompiledScope,
}

/// The current version of a policy with its scope compiled.
#[derive(Debug)]
pub(super) struct PolicyView {
    pub policy: Policy,
    pub scope: CompiledScope,
}

/// The authority half of a snapshot. Cheap to read from many threads.
#[derive(Debug)]
pub struct AuthorityView {
    verifier: Verifier,
    revoked: HashSet<String>,
    mandates: HashMap<String, Arc<Held>>,
    /// Per subject, the mandates it holds, latest expiry first.
    by_subject: HashMap<String, Vec<Arc<Held>>>,
    policies: HashMap<String, PolicyView>,
    /// Tokens whose signature already verified under this view's keys, by
    /// SHA-256, with their claims and kid. It lives and dies with the view
    /// (so with the keys); time, revocation and policy are still judged on
    /// every call.
    verified: Mutex<Generations>,
}

/// A token whose signature verified.
#[derive(Debug)]
pub(super) struct Verified {
    pub claims: Arc<Claims>,
    pub kid: String,
}

/// Most verified tokens remembered per view.
const VERIFIED_CAP: usize = 4096;

/// A bounded memory in two generations: new entries go into the young
/// one; when it is full, the old generation is forgotten and the young one
/// becomes old. A token used again is promoted back into the young one, so
/// tokens in use are never forgotten in bulk, and at most
/// [`VERIFIED_CAP`] are held.
#[derive(Debug, Default)]
struct Generations {
    young: HashMap<[u8; 32], Arc<Verified>>,
    old: HashMap<[u8; 32], Arc<Verified>>,
}

impl Generations {
    fn get(&mut self, key: &[u8; 32]) -> Option<Arc<Verified>> {
        if let Some(v) = self.young.get(key) {
            return Some(v.clone());
        }
        let v = self.old.remove(key)?;
        self.insert(*key, v.clone());
        Some(v)
    }

    fn insert(&mut self, key: [u8; 32], v: Arc<Verified>) {
        if self.young.len() >= VERIFIED_CAP / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, v);
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

impl Default for AuthorityView {
    fn default() -> Self {
        Self::new(Verifier::empty(), Vec::new(), Vec::new(), Vec::new())
    }
}

impl AuthorityView {
    /// Builds the view. Scope entries that do not parse cover nothing (a
    /// mandate or policy can only cover less than it says, never more).
    pub fn new(
        verifier: Verifier,
        mandates: impl IntoIterator<Item = MandateRecord>,
        revoked: impl IntoIterator<Item = String>,
        policies: impl IntoIterator<Item = Policy>,
    ) -> Self {
        let mut by_jti = HashMap::new();
        let mut by_subject: HashMap<String, Vec<Arc<Held>>> = HashMap::new();
        for record in mandates {
            let held = Arc::new(Held {
                scope: record.scope.compile_lenient(),
                policy_id: record.policy_id.clone(),
                claims: Arc::new(record.claims()),
            });
            by_subject
                .entry(held.claims.sub.clone())
                .or_default()
                .push(held.clone());
            by_jti.insert(held.claims.jti.clone(), held);
        }
        for list in by_subject.values_mut() {
            list.sort_by(|a, b| (b.claims.exp, &b.claims.jti).cmp(&(a.claims.exp, &a.claims.jti)));
        }
        let policies = policies
            .into_iter()
            .map(|policy| {
                let scope = policy.definition.scope.compile_lenient();
                (policy.id.clone(), PolicyView { policy, scope })
            })
            .collect();
        Self {
            verifier,
            revoked: revoked.into_iter().collect(),
            mandates: by_jti,
            by_subject,
            policies,
            verified: Mutex::new(Generations::default()),
        }
    }

    /// The remembered verification of `token`, if any.
    pub(super) fn verified(&self, token: &str) -> Option<Arc<Verified>> {
        let key = digest(token);
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
    }

    /// Remembers that `token`'s signature verified.
    pub(super) fn remember(&self, token: &str, verified: Arc<Verified>) {
        let key = digest(token);
        let mut memory = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        memory.insert(key, verified);
    }

    /// Verified tokens remembered now.
    pub fn remembered(&self) -> usize {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Builds the view from stored rows. Keys that cannot be used are left
    /// out (mandates signed with them then fail to verify) and reported.
    pub fn from_rows(
        signing_keys: Vec<SigningKeyRow>,
        mandates: Vec<MandateRecord>,
        revoked: Vec<String>,
        policies: Vec<Policy>,
    ) -> (Self, Vec<String>) {
        let (verifier, bad_keys) =
            Verifier::from_public_lenient(signing_keys.into_iter().map(|k| (k.kid, k.public_key)));
        let rejected = bad_keys
            .into_iter()
            .map(|e| format!("signing key left out: {e}"))
            .collect();
        (Self::new(verifier, mandates, revoked, policies), rejected)
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Whether mandate `jti` itself is revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains(jti)
    }

    /// The recorded mandate `jti`, if this view holds it.
    pub fn mandate(&self, jti: &str) -> Option<&Arc<Held>> {
        self.mandates.get(jti)
    }

    /// The mandates `principal_id` holds (any state), latest expiry first.
    pub fn held_by(&self, principal_id: &str) -> &[Arc<Held>] {
        self.by_subject.get(principal_id).map_or(&[], Vec::as_slice)
    }

    pub(super) fn policy(&self, id: &str) -> Option<&PolicyView> {
        self.policies.get(id)
    }

    /// Number of recorded mandates in the view.
    pub fn mandate_count(&self) -> usize {
        self.mandates.len()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(jti: &str) -> Arc<Verified> {
        Arc::new(Verified {
            claims: Arc::new(Claims {
                iss: "i".into(),
                sub: "s".into(),
                jti: jti.into(),
                iat: 0,
                nbf: 0,
                exp: 1,
                scope: crate::authority::Scope {
                    resources: vec![],
                    actions: vec![],
                },
                parent: None,
                chain: vec![],
                depth: 0,
                ws: None,
            }),
            kid: "k".into(),
        })
    }

    #[test]
    fn the_verified_memory_is_bounded_and_keeps_tokens_in_use() {
        let view = AuthorityView::default();
        view.remember("hot", verified("hot"));
        for i in 0..VERIFIED_CAP * 3 {
            view.remember(&format!("cold-{i}"), verified("cold"));
            // The hot token is used all along: never forgotten.
            if i % 100 == 0 {
                assert!(
                    view.verified("hot").is_some(),
                    "forgot the hot token at {i}"
                );
            }
            assert!(view.remembered() <= VERIFIED_CAP);
        }
        assert!(view.verified("hot").is_some());
        // The newest cold ones are still there, the oldest are not.
        assert!(view
            .verified(&format!("cold-{}", VERIFIED_CAP * 3 - 1))
            .is_some());
        assert!(view.verified("cold-0").is_none());
    }
}
