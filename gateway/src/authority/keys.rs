//! Mandate signing keys of a workspace: Ed25519 (JWT `alg: EdDSA`).
//!
//! A [`Keyring`] holds exactly one active signing key plus retired keys that
//! still verify the mandates they signed until [`Keyring::prune`] drops them.
//! It lives in one JSON file (mode 0600, written atomically). The gateway
//! holds only a [`Verifier`]: public keys by `kid`, no private material.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jsonwebtoken::EncodingKey;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};

#[path = "keys_file.rs"]
mod file;
#[path = "keys_verifier.rs"]
mod verifier;

pub use verifier::Verifier;

use file::{describe_json_error, KeyFileEntry, KeyringFile};

/// Version of the keyring file format written by [`Keyring::save`].
pub const KEYRING_FORMAT_VERSION: u32 = 1;

/// Longest accepted `kid`.
pub const MAX_KID_LEN: usize = 64;

/// Why a keyring or verifier could not be loaded, built or saved.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read keyring {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot save keyring")]
    Write(#[source] caracal_config::ConfigError),
    #[error(
        "keyring {path} is unreadable ({reason}); it was left untouched: \
         restore it from a backup, or move it aside to create a new keyring \
         (mandates signed by the old keys will then stop verifying)"
    )]
    Garbled { path: PathBuf, reason: String },
    #[error("invalid keyring: {0}")]
    Invalid(String),
    #[error("invalid key id {0:?}: expected 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    BadKid(String),
    #[error("duplicate key id {0:?}")]
    DuplicateKid(String),
    #[error("cannot generate a signing key: the system random source failed")]
    Random,
}

/// One signing key. The private half is never printed (`Debug` redacts it)
/// and is dropped when the key is retired.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// Key id carried in the JWT `kid` header (`k-` + 16 hex chars when generated).
    pub kid: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` for the active key.
    pub retired_at: Option<i64>,
    /// Raw Ed25519 public key.
    pub public_key: [u8; 32],
    private_pkcs8: Option<Vec<u8>>,
}

impl KeyEntry {
    /// Whether this is the signing key (not retired).
    pub fn is_active(&self) -> bool {
        self.retired_at.is_none()
    }

    /// Whether the private half is held (always true for the active key).
    pub fn has_private_key(&self) -> bool {
        self.private_pkcs8.is_some()
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .field("public_key", &hex::encode(self.public_key))
            .field(
                "private_pkcs8",
                &self.private_pkcs8.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The signing keys of one workspace.
///
/// Invariants (checked on load, kept by every method): at least one key,
/// kids are unique and well-formed, exactly one key is active and it holds
/// its private key, and every private key matches its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<KeyEntry>,
}

impl Keyring {
    /// A new keyring with one freshly generated active key created at `now`.
    pub fn generate(now: i64) -> Result<Keyring, KeyError> {
        Ok(Keyring {
            keys: vec![generate_key(now)?],
        })
    }

    /// Loads the keyring at `path`, or, when no file exists there, generates
    /// one and saves it (mode 0600). Returns whether it was created.
    ///
    /// An existing file that cannot be read or parsed is an error and is
    /// never overwritten. Two processes creating the same keyring at the
    /// same moment are not coordinated: create it once, at workspace setup.
    pub fn load_or_create(path: &Path, now: i64) -> Result<(Keyring, bool), KeyError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok((Self::from_file_bytes(path, &bytes)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keyring = Self::generate(now)?;
                keyring.save(path)?;
                Ok((keyring, true))
            }
            Err(source) => Err(KeyError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Loads the keyring at `path`; a missing file is an error.
    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_file_bytes(path, &bytes)
    }

    /// Writes the keyring to `path` atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let file = KeyringFile {
            version: KEYRING_FORMAT_VERSION,
            keys: self
                .keys
                .iter()
                .map(|k| KeyFileEntry {
                    kid: k.kid.clone(),
                    created_at: k.created_at,
                    retired_at: k.retired_at,
                    public_key: B64.encode(k.public_key),
                    private_pkcs8: k.private_pkcs8.as_ref().map(|p| B64.encode(p)),
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| KeyError::Invalid(format!("cannot serialise: {e}")))?;
        bytes.push(b'\n');
        caracal_config::fs::write_atomic(path, &bytes, 0o600).map_err(KeyError::Write)
    }

    /// Makes a freshly generated key (created at `now`) the active one and
    /// returns its kid. The previous active key is retired at `now`: its
    /// private half is dropped, its public half keeps verifying until pruned.
    pub fn rotate(&mut self, now: i64) -> Result<String, KeyError> {
        let mut key = generate_key(now)?;
        while self.keys.iter().any(|k| k.kid == key.kid) {
            key = generate_key(now)?;
        }
        for old in self.keys.iter_mut().filter(|k| k.is_active()) {
            old.retired_at = Some(now);
            old.private_pkcs8 = None;
        }
        let kid = key.kid.clone();
        self.keys.push(key);
        Ok(kid)
    }

    /// Drops the retired keys retired more than `keep_for` before `now`
    /// (a key retired exactly `keep_for` ago is kept) and returns their kids.
    /// The active key is never dropped. Pass the longest mandate validity
    /// plus the verification clock skew, so that every key stays until the
    /// last mandate it signed has expired.
    pub fn prune(&mut self, now: i64, keep_for: Duration) -> Vec<String> {
        let keep = duration_secs_ceil(keep_for);
        let mut dropped = Vec::new();
        self.keys.retain(|k| match k.retired_at {
            Some(retired) if i128::from(now) - i128::from(retired) > keep => {
                dropped.push(k.kid.clone());
                false
            }
            _ => true,
        });
        dropped
    }

    /// The kid new mandates are signed with.
    pub fn active_kid(&self) -> &str {
        self.active().map(|k| k.kid.as_str()).unwrap_or_default()
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> &[KeyEntry] {
        &self.keys
    }

    /// The public keys of every key in the ring, active and retired.
    pub fn verifier(&self) -> Verifier {
        Verifier::from_checked(self.keys.iter().map(|k| (k.kid.clone(), k.public_key)))
    }

    /// The active kid and its signing key (`None` only if the invariant
    /// were broken).
    pub(crate) fn signing_key(&self) -> Option<(&str, EncodingKey)> {
        let active = self.active()?;
        let pkcs8 = active.private_pkcs8.as_ref()?;
        Some((active.kid.as_str(), EncodingKey::from_ed_der(pkcs8)))
    }

    fn active(&self) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.is_active())
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Keyring, KeyError> {
        let garbled = |reason: String| KeyError::Garbled {
            path: path.to_path_buf(),
            reason,
        };
        let file: KeyringFile =
            serde_json::from_slice(bytes).map_err(|e| garbled(describe_json_error(&e)))?;
        if file.version != KEYRING_FORMAT_VERSION {
            return Err(garbled(format!(
                "format version {} is not supported (expected {KEYRING_FORMAT_VERSION})",
                file.version
            )));
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        for entry in file.keys {
            keys.push(entry.into_key().map_err(&garbled)?);
        }
        Self::from_entries(keys).map_err(|e| garbled(e.to_string()))
    }

    fn from_entries(keys: Vec<KeyEntry>) -> Result<Keyring, KeyError> {
        let mut seen = HashSet::new();
        for k in &keys {
            check_kid(&k.kid)?;
            if !seen.insert(k.kid.as_str()) {
                return Err(KeyError::DuplicateKid(k.kid.clone()));
            }
            if let Some(pkcs8) = &k.private_pkcs8 {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| {
                    KeyError::Invalid(format!("private key of {} is not Ed25519 PKCS#8", k.kid))
                })?;
                if pair.public_key().as_ref() != k.public_key {
                    return Err(KeyError::Invalid(format!(
                        "private key of {} does not match its public key",
                        k.kid
                    )));
                }
            }
        }
        let active: Vec<&KeyEntry> = keys.iter().filter(|k| k.is_active()).collect();
        match active.as_slice() {
            [one] if one.has_private_key() => Ok(Keyring { keys }),
            [one] => Err(KeyError::Invalid(format!(
                "active key {} has no private key",
                one.kid
            ))),
            [] => Err(KeyError::Invalid("no active signing key".into())),
            many => Err(KeyError::Invalid(format!(
                "{} active signing keys, expected exactly one",
                many.len()
            ))),
        }
    }
}
/// Kids are 1..=64 chars of `[A-Za-z0-9._-]`.
fn check_kid(kid: &str) -> Result<(), KeyError> {
    let ok = !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadKid(kid.chars().take(MAX_KID_LEN).collect()))
    }
}

fn generate_key(now: i64) -> Result<KeyEntry, KeyError> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeyError::Random)?;
    let public_key: [u8; 32] = pair
        .public_key()
        .as_ref()
        .try_into()
        .map_err(|_| KeyError::Invalid("Ed25519 public key is not 32 bytes".into()))?;
    let mut id = [0u8; 8];
    rng.fill(&mut id).map_err(|_| KeyError::Random)?;
    Ok(KeyEntry {
        kid: format!("k-{}", hex::encode(id)),
        created_at: now,
        retired_at: None,
        public_key,
        private_pkcs8: Some(pkcs8.as_ref().to_vec()),
    })
}

/// Whole seconds of `d`, rounded up (so a fraction keeps a key longer).
fn duration_secs_ceil(d: Duration) -> i128 {
    i128::from(d.as_secs()) + i128::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
