//! The records the workspace keeps of its mandates and of the public
//! halves of its signing keys: what the store persists and what the
//! authority view is built from.

use serde::{Deserialize, Serialize};

use super::mandate::Claims;
use super::Scope;

/// The public half of one mandate signing key, as gateways verify with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRow {
    pub kid: String,
    /// Raw Ed25519 public key.
    #[serde(serialize_with = "hex_key", deserialize_with = "unhex_key")]
    pub public_key: [u8; 32],
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` for the key new mandates are signed with.
    pub retired_at: Option<i64>,
}

impl SigningKeyRow {
    /// The public halves of every key of `keyring`, as they are published.
    pub fn of_keyring(keyring: &super::keys::Keyring) -> Vec<SigningKeyRow> {
        keyring
            .keys()
            .iter()
            .map(|k| SigningKeyRow {
                kid: k.kid.clone(),
                public_key: k.public_key,
                created_at: k.created_at,
                retired_at: k.retired_at,
            })
            .collect()
    }
}

fn hex_key<S: serde::Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(key))
}

fn unhex_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
    let text = String::deserialize(d)?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(&text, &mut key)
        .map_err(|e| serde::de::Error::custom(format!("public key: {e}")))?;
    Ok(key)
}

/// The stored record of an issued mandate: its claims, the policy version
/// that authorised it, and its revocation (if any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MandateRecord {
    pub jti: String,
    pub issuer_id: String,
    pub subject_id: String,
    pub parent_jti: Option<String>,
    pub policy_id: String,
    pub policy_version: u32,
    pub scope: Scope,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub depth: u32,
    /// Ancestor jtis, root first.
    pub chain: Vec<String>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
    pub created_at: String,
}

impl MandateRecord {
    /// The record of a freshly issued mandate with `claims`, authorised by
    /// `policy_id` at `policy_version`.
    pub fn issued(claims: &Claims, policy_id: &str, policy_version: u32) -> Self {
        MandateRecord {
            jti: claims.jti.clone(),
            issuer_id: claims.iss.clone(),
            subject_id: claims.sub.clone(),
            parent_jti: claims.parent.clone(),
            policy_id: policy_id.to_string(),
            policy_version,
            scope: claims.scope.clone(),
            iat: claims.iat,
            nbf: claims.nbf,
            exp: claims.exp,
            depth: claims.depth,
            chain: claims.chain.clone(),
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            created_at: jiff::Timestamp::now().to_string(),
        }
    }
}

/// Where a mandate stands at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MandateState {
    Active,
    /// At or past its `exp`.
    Expired,
    Revoked,
    /// Not revoked itself, but an ancestor is (so it is dead too).
    RevokedByAncestor,
}

impl MandateState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::RevokedByAncestor => "revoked-by-ancestor",
        }
    }
}

impl MandateRecord {
    /// Its state at unix time `now`; `is_revoked` answers for an ancestor
    /// jti. Revocation outranks expiry.
    pub fn state(&self, now: i64, is_revoked: impl Fn(&str) -> bool) -> MandateState {
        if self.revoked_at.is_some() {
            MandateState::Revoked
        } else if self.chain.iter().any(|a| is_revoked(a)) {
            MandateState::RevokedByAncestor
        } else if now >= self.exp {
            MandateState::Expired
        } else {
            MandateState::Active
        }
    }
}

impl MandateRecord {
    /// The claims the mandate was signed with (`ws` is not recorded).
    pub fn claims(&self) -> Claims {
        Claims {
            iss: self.issuer_id.clone(),
            sub: self.subject_id.clone(),
            jti: self.jti.clone(),
            iat: self.iat,
            nbf: self.nbf,
            exp: self.exp,
            scope: self.scope.clone(),
            parent: self.parent_jti.clone(),
            chain: self.chain.clone(),
            depth: self.depth,
            ws: None,
        }
    }
}
