//! Mandate tokens: signed JWTs (`alg: EdDSA`, `kid` header) carrying who
//! may do what, when, and under which delegation chain.
//!
//! [`issue`] signs [`Claims`] with a [`Keyring`]'s active key; [`verify`]
//! checks a token against a [`Verifier`] at a given time. Both are pure: the
//! clock is a parameter. Revocation, scope coverage and delegation rules are
//! decided elsewhere, over the verified claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{Keyring, Verifier};
use super::Scope;

/// Longest token [`verify`] parses, in bytes; [`issue`] refuses to produce
/// a longer one.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The only JWS algorithm accepted (Ed25519).
pub const ALGORITHM: &str = "EdDSA";

/// The claims of a mandate. Unknown claims are ignored on decode; every
/// field except `parent` and `ws` is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer principal id.
    pub iss: String,
    /// Subject principal id: who may act under the mandate.
    pub sub: String,
    /// Mandate id (a UUID v7 string).
    pub jti: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Not before, unix seconds (inclusive).
    pub nbf: i64,
    /// Expiry, unix seconds (exclusive).
    pub exp: i64,
    pub scope: Scope,
    /// The parent mandate's jti; `None` for a root mandate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Ancestor jtis, root first; empty for a root mandate.
    pub chain: Vec<String>,
    /// Number of ancestors (0 for a root mandate).
    pub depth: u32,
    /// Workspace name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<String>,
}

impl Claims {
    /// Checks what any well-formed mandate satisfies: non-empty `iss`,
    /// `sub` and `jti`; `nbf < exp`; `depth == chain.len()`;
    /// `parent == chain.last()`; chain entries non-empty, distinct and
    /// different from `jti`. [`issue`] and [`verify`] both enforce it.
    pub fn check_shape(&self) -> Result<(), InvalidReason> {
        let bad = |msg: String| Err(InvalidReason::Claims(msg));
        for (name, value) in [("iss", &self.iss), ("sub", &self.sub), ("jti", &self.jti)] {
            if value.is_empty() {
                return bad(format!("{name} is empty"));
            }
        }
        if self.nbf >= self.exp {
            return bad(format!("exp {} is not after nbf {}", self.exp, self.nbf));
        }
        if usize::try_from(self.depth).ok() != Some(self.chain.len()) {
            return bad(format!(
                "depth {} does not match a chain of {} ancestors",
                self.depth,
                self.chain.len()
            ));
        }
        if self.parent.as_ref() != self.chain.last() {
            return bad("parent is not the last ancestor of chain".into());
        }
        let mut seen = std::collections::HashSet::new();
        for ancestor in &self.chain {
            if ancestor.is_empty() || ancestor == &self.jti || !seen.insert(ancestor) {
                return bad("chain has an empty, repeated or self-referencing entry".into());
            }
        }
        Ok(())
    }
}

/// Why a mandate was refused or could not be issued. `Display` names the
/// reason and never includes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MandateError {
    #[error("mandate invalid: {0}")]
    Invalid(#[from] InvalidReason),
    #[error(
        "mandate expired: valid until {} (exclusive), now {}, clock skew allowance {skew}s",
        fmt_time(*exp),
        fmt_time(*now)
    )]
    Expired { exp: i64, now: i64, skew: i64 },
    #[error(
        "mandate not yet valid: valid from {}, now {}, clock skew allowance {skew}s",
        fmt_time(*nbf),
        fmt_time(*now)
    )]
    NotYetValid { nbf: i64, now: i64, skew: i64 },
    /// Issuance only: the keyring could not sign.
    #[error("cannot sign mandate: {0}")]
    Signing(String),
}

impl MandateError {
    /// Stable machine-readable code: `mandate_invalid`, `mandate_expired`,
    /// `mandate_not_yet_valid`, or (issuance only) `mandate_signing_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "mandate_invalid",
            Self::Expired { .. } => "mandate_expired",
            Self::NotYetValid { .. } => "mandate_not_yet_valid",
            Self::Signing(_) => "mandate_signing_failed",
        }
    }
}

/// Which way a token is invalid (all map to `mandate_invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    #[error("token is {len} bytes, longer than the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0} is not allowed (only EdDSA)")]
    Algorithm(String),
    #[error("no kid header")]
    MissingKid,
    #[error("unknown signing key kid={0}")]
    UnknownKid(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("bad claims: {0}")]
    Claims(String),
}

/// Signs `claims` with the keyring's active key: header
/// `{alg: EdDSA, typ: JWT, kid: <active kid>}`. Refuses claims that fail
/// [`Claims::check_shape`] and tokens longer than [`MAX_TOKEN_LEN`].
pub fn issue(keyring: &Keyring, claims: &Claims) -> Result<String, MandateError> {
    claims.check_shape()?;
    let (kid, key) = keyring
        .signing_key()
        .ok_or_else(|| MandateError::Signing("the keyring has no active private key".into()))?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("JWT".into());
    header.kid = Some(kid.to_string());
    let token = jsonwebtoken::encode(&header, claims, &key)
        .map_err(|e| MandateError::Signing(e.to_string()))?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(InvalidReason::TooLong {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        }
        .into());
    }
    Ok(token)
}

/// Verifies `token` at unix time `now`, allowing `skew` seconds of clock
/// difference (a negative skew counts as 0). In order:
///
/// 1. at most [`MAX_TOKEN_LEN`] bytes, three dot-separated parts, a JSON
///    object header;
/// 2. header `alg` is exactly `EdDSA` (anything else is refused before any
///    key is used), `kid` is present and known to `verifier`;
/// 3. the Ed25519 signature verifies under that kid's key;
/// 4. the payload is an object with every required claim, and
///    [`Claims::check_shape`] holds;
/// 5. time: valid iff `nbf - skew <= now < exp + skew`; otherwise
///    `NotYetValid` (now before the window) or `Expired`.
///
/// Never panics on hostile input; every failure of 1–4 is `Invalid`.
pub fn verify(
    verifier: &Verifier,
    token: &str,
    now: i64,
    skew: i64,
) -> Result<Claims, MandateError> {
    let header = parse_header(token)?;
    if header.alg != ALGORITHM {
        return Err(InvalidReason::Algorithm(printable(&header.alg)).into());
    }
    if header.crit.is_some() {
        return Err(
            InvalidReason::Malformed("critical header extensions are not supported").into(),
        );
    }
    let kid = header.kid.ok_or(InvalidReason::MissingKid)?;
    let key = verifier
        .decoding_key(&kid)
        .ok_or_else(|| InvalidReason::UnknownKid(printable(&kid)))?;

    let mut validation = Validation::new(Algorithm::EdDSA);
    // Time is checked below against `now`; jsonwebtoken would read the clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map_err(|e| map_jwt_error(e.kind()))?
        .claims;
    claims.check_shape()?;

    check_window(claims.nbf, claims.exp, now, skew)?;
    Ok(claims)
}

/// The time rule of every mandate: valid iff `nbf - skew <= now < exp +
/// skew` (a negative skew counts as 0). Shared by [`verify`] and the
/// decision over recorded mandates.
pub fn check_window(nbf: i64, exp: i64, now: i64, skew: i64) -> Result<(), MandateError> {
    let skew = skew.max(0);
    let (now_w, skew_w) = (i128::from(now), i128::from(skew));
    if now_w < i128::from(nbf) - skew_w {
        return Err(MandateError::NotYetValid { nbf, now, skew });
    }
    if now_w >= i128::from(exp) + skew_w {
        return Err(MandateError::Expired { exp, now, skew });
    }
    Ok(())
}

/// The header `kid` and the `jti` claim of a token, read WITHOUT verifying
/// anything. For diagnostics and logs only: never use it to decide
/// whether a call is allowed, or to look anything up that grants access.
pub fn peek_unverified(token: &str) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Jti {
        jti: String,
    }
    let header = parse_header(token).ok()?;
    let mut parts = token.split('.');
    let payload = parts.nth(1)?;
    let bytes = B64URL.decode(payload).ok()?;
    let jti = serde_json::from_slice::<Jti>(&bytes).ok()?.jti;
    Some((header.kid?, jti))
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Step 1 of [`verify`]: length, shape, and the header as a JSON object.
fn parse_header(token: &str) -> Result<RawHeader, InvalidReason> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(InvalidReason::TooLong {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(InvalidReason::Malformed(
            "expected three dot-separated parts",
        ));
    };
    let bytes = B64URL
        .decode(header)
        .map_err(|_| InvalidReason::Malformed("header is not base64url"))?;
    serde_json::from_slice::<RawHeader>(&bytes)
        .map_err(|_| InvalidReason::Malformed("header is not a JSON object with a string alg"))
}

fn map_jwt_error(kind: &ErrorKind) -> InvalidReason {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => InvalidReason::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            InvalidReason::Malformed("algorithm does not match the key")
        }
        ErrorKind::Json(e) => InvalidReason::Claims(describe_claims_error(e)),
        ErrorKind::Base64(_) => InvalidReason::Malformed("a part is not base64url"),
        ErrorKind::Utf8(_) => InvalidReason::Malformed("payload is not UTF-8"),
        _ => InvalidReason::Malformed("token could not be decoded"),
    }
}

/// serde's message for missing/unknown fields, otherwise a generic one
/// (serde would quote attacker-chosen values).
fn describe_claims_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("missing field") || msg.starts_with("duplicate field") {
        // Drop serde_json's " at line L column C" suffix.
        match msg.find(" at line ") {
            Some(cut) => msg[..cut].to_string(),
            None => msg,
        }
    } else if e.is_data() {
        format!(
            "payload is not a valid claims object (column {})",
            e.column()
        )
    } else {
        "payload is not JSON".into()
    }
}

/// Attacker-supplied text made safe for a message: at most 64 chars, escaped.
fn printable(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("{}{more}", cut.escape_debug())
}

fn fmt_time(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => format!("{t} ({secs})"),
        Err(_) => secs.to_string(),
    }
}

#[cfg(test)]
#[path = "mandate_tests.rs"]
mod tests;
