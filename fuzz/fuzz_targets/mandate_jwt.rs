//! Fuzzes `authority::mandate::verify` and `peek_unverified` on arbitrary tokens and on tokens validly signed over fuzzed header/payload JSON; asserts an accepted mandate has a sound shape, lies in its time window, and peeks as its own kid and jti, that time refusals are consistent with the window, that a valid signature is never reported bad, and that errors never echo the token.
#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use caracal_gateway::authority::keys::Verifier;
use caracal_gateway::authority::mandate::{
    peek_unverified, verify, InvalidReason, MandateError, MAX_TOKEN_LEN,
};
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The fixed key's id.
const KID: &str = "k-fuzz";
/// The fixed verification time (2023-11-14); payloads choose their window.
const NOW: i64 = 1_700_000_000;

/// A fixed Ed25519 key, so a crashing input reproduces.
static KEY: LazyLock<Ed25519KeyPair> = LazyLock::new(|| {
    Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("a 32-byte seed is a key")
});

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let public: [u8; 32] = KEY.public_key().as_ref().try_into().expect("32 bytes");
    Verifier::from_public([(KID, public)]).expect("a well-formed kid")
});

// Input: a mode byte (% 3: 0 raw token, 1 header JSON, 0xff, payload JSON,
// signed, 2 payload JSON under the fixed key's header, signed), a skew byte
// (value - 64 seconds), then the rest.
fuzz_target!(|data: &[u8]| {
    let [mode, skew, rest @ ..] = data else {
        return;
    };
    // Negative skews too: they count as 0.
    let skew = i64::from(*skew) - 64;
    match mode % 3 {
        0 => run(&String::from_utf8_lossy(rest), skew, false),
        1 => {
            // Header JSON, then (after a 0xff byte) payload JSON.
            let mut parts = rest.splitn(2, |&b| b == 0xff);
            let header = parts.next().unwrap_or_default();
            let payload = parts.next().unwrap_or_default();
            run(&sign(header, payload), skew, false);
        }
        _ => {
            let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{KID}"}}"#);
            run(&sign(header.as_bytes(), rest), skew, true);
        }
    }
});

/// `header.payload.signature`, signed with the fixed key.
fn sign(header: &[u8], payload: &[u8]) -> String {
    let message = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let signature = KEY.sign(message.as_bytes());
    format!("{message}.{}", B64URL.encode(signature.as_ref()))
}

/// Verifies `token` and checks the outcome; `trusted_header` says the
/// token carries the fixed key's valid header and signature.
fn run(token: &str, skew: i64, trusted_header: bool) {
    let result = verify(&VERIFIER, token, NOW, skew);
    let window = i128::from(skew.max(0));
    match &result {
        Ok(claims) => {
            assert!(token.len() <= MAX_TOKEN_LEN);
            assert_eq!(claims.check_shape(), Ok(()), "{claims:?}");
            let [nbf, exp, now] = [claims.nbf, claims.exp, NOW].map(i128::from);
            assert!(nbf - window <= now && now < exp + window, "{claims:?}");
            assert_eq!(
                peek_unverified(token),
                Some((KID.to_string(), claims.jti.clone()))
            );
        }
        Err(MandateError::Expired { exp, now, skew }) => {
            assert_eq!(*now, NOW);
            assert!(i128::from(*now) >= i128::from(*exp) + i128::from(*skew));
        }
        Err(MandateError::NotYetValid { nbf, now, skew }) => {
            assert_eq!(*now, NOW);
            assert!(i128::from(*now) < i128::from(*nbf) - i128::from(*skew));
        }
        Err(MandateError::Invalid(reason)) => {
            if token.len() > MAX_TOKEN_LEN {
                assert!(
                    matches!(reason, InvalidReason::TooLong { .. }),
                    "{reason:?}"
                );
            }
            if trusted_header && token.len() <= MAX_TOKEN_LEN {
                assert!(
                    matches!(
                        reason,
                        InvalidReason::Claims(_) | InvalidReason::Malformed(_)
                    ),
                    "a validly signed token refused as {reason:?}"
                );
            }
        }
        Err(e @ MandateError::Signing(_)) => panic!("verify reported an issuance error: {e}"),
    }
    if let Err(e) = result {
        // `Display` names the reason and never includes the token (a token
        // of a few characters may occur in any text).
        let message = e.to_string();
        assert!(
            token.len() <= 16 || !message.contains(token),
            "{message:?} echoes the token"
        );
    }
}
