//! The verification half of the keyring: public keys by kid, shared by
//! the gateway. No private material.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;

use super::{check_kid, KeyError};

/// Public keys by kid: what verifies mandates. Cheap to clone (one `Arc`),
/// `Send + Sync`, holds no private material.
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<BTreeMap<String, VerifierKey>>,
}

#[derive(Clone)]
struct VerifierKey {
    public: [u8; 32],
    decoding: DecodingKey,
}

impl VerifierKey {
    fn new(public: [u8; 32]) -> Self {
        VerifierKey {
            public,
            decoding: DecodingKey::from_ed_der(&public),
        }
    }
}

impl Verifier {
    /// Infallible constructor for keys already checked by a [`super::Keyring`].
    pub(super) fn from_checked(keys: impl IntoIterator<Item = (String, [u8; 32])>) -> Verifier {
        let keys = keys
            .into_iter()
            .map(|(kid, public)| (kid, VerifierKey::new(public)))
            .collect();
        Verifier {
            keys: Arc::new(keys),
        }
    }

    /// A verifier over raw Ed25519 public keys (e.g. read from a database).
    /// Kids must be well-formed (see [`MAX_KID_LEN`]) and unique.
    pub fn from_public<I, K>(keys: I) -> Result<Verifier, KeyError>
    where
        I: IntoIterator<Item = (K, [u8; 32])>,
        K: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (kid, public) in keys {
            let kid = kid.into();
            check_kid(&kid)?;
            if map.contains_key(&kid) {
                return Err(KeyError::DuplicateKid(kid));
            }
            map.insert(kid, VerifierKey::new(public));
        }
        Ok(Verifier {
            keys: Arc::new(map),
        })
    }

    /// A verifier that knows no key (it refuses every mandate).
    pub fn empty() -> Verifier {
        Verifier::from_checked(std::iter::empty())
    }

    /// Like [`Verifier::from_public`], but leaves out keys with a malformed
    /// or repeated kid and returns why each was left out. For building a
    /// snapshot, where one bad row must not stop every other key verifying.
    pub fn from_public_lenient<I, K>(keys: I) -> (Verifier, Vec<KeyError>)
    where
        I: IntoIterator<Item = (K, [u8; 32])>,
        K: Into<String>,
    {
        let mut map = BTreeMap::new();
        let mut rejected = Vec::new();
        for (kid, public) in keys {
            let kid = kid.into();
            if let Err(e) = check_kid(&kid) {
                rejected.push(e);
                continue;
            }
            match map.entry(kid) {
                std::collections::btree_map::Entry::Occupied(o) => {
                    rejected.push(KeyError::DuplicateKid(o.key().clone()));
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(VerifierKey::new(public));
                }
            }
        }
        let verifier = Verifier {
            keys: Arc::new(map),
        };
        (verifier, rejected)
    }

    /// Every (kid, raw public key), sorted by kid.
    pub fn public_keys(&self) -> Vec<(String, [u8; 32])> {
        self.keys
            .iter()
            .map(|(kid, k)| (kid.clone(), k.public))
            .collect()
    }

    /// Whether `kid` is known.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is known (such a verifier refuses every mandate).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether both share one key map (clones do).
    #[cfg(test)]
    pub(super) fn shares_keys_with(&self, other: &Verifier) -> bool {
        Arc::ptr_eq(&self.keys, &other.keys)
    }

    pub(crate) fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid).map(|k| &k.decoding)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}
