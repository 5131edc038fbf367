use super::*;
use jsonwebtoken::{DecodingKey, EncodingKey};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

const T0: i64 = 1_700_000_000;
const NBF: i64 = T0 + 1_000;
const EXP: i64 = T0 + 2_000;

fn scope(resources: &[&str], actions: &[&str]) -> Scope {
    serde_json::from_value(json!({ "resources": resources, "actions": actions })).unwrap()
}

fn claims() -> Claims {
    Claims {
        iss: "user-1".into(),
        sub: "agent-1".into(),
        jti: uuid::Uuid::now_v7().to_string(),
        iat: NBF,
        nbf: NBF,
        exp: EXP,
        scope: scope(&["chat.completions"], &["read", "create"]),
        parent: None,
        chain: vec![],
        depth: 0,
        ws: Some("default".into()),
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    B64URL.encode(bytes)
}

fn parts(token: &str) -> Vec<&str> {
    token.split('.').collect()
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&B64URL.decode(part).unwrap()).unwrap()
}

/// A token with exactly this header and payload, validly signed by the
/// keyring's active key: lets tests reach the checks after the signature.
fn sign_raw(keyring: &Keyring, header: &Value, payload: &Value) -> String {
    let message = format!("{}.{}", b64(header.to_string()), b64(payload.to_string()));
    let (_, key) = keyring.signing_key().unwrap();
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::EdDSA).unwrap();
    format!("{message}.{sig}")
}

fn eddsa_header(keyring: &Keyring) -> Value {
    json!({ "alg": "EdDSA", "typ": "JWT", "kid": keyring.active_kid() })
}

fn setup() -> (Keyring, Verifier, Claims, String) {
    let keyring = Keyring::generate(T0).unwrap();
    let verifier = keyring.verifier();
    let c = claims();
    let token = issue(&keyring, &c).unwrap();
    (keyring, verifier, c, token)
}

/// Asserts `mandate_invalid` and that the message does not echo the token.
fn assert_invalid(verifier: &Verifier, token: &str) -> InvalidReason {
    match verify(verifier, token, NBF, 0) {
        Err(e @ MandateError::Invalid(_)) => {
            assert_eq!(e.code(), "mandate_invalid");
            let msg = e.to_string();
            if token.len() > 16 {
                assert!(!msg.contains(token), "message echoes the token: {msg}");
                for part in token.split('.').filter(|p| p.len() > 16) {
                    assert!(!msg.contains(part), "message echoes a token part: {msg}");
                }
            }
            let MandateError::Invalid(reason) = e else {
                unreachable!()
            };
            reason
        }
        other => panic!("expected mandate_invalid for {:.80?}, got {other:?}", token),
    }
}

#[test]
fn round_trip_with_the_documented_header() {
    let (keyring, verifier, c, token) = setup();
    assert_eq!(verify(&verifier, &token, NBF, 0).unwrap(), c);
    let header = decode_part(parts(&token)[0]);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], keyring.active_kid());
    // Optional claims are omitted when absent and still round-trip.
    let root = Claims {
        ws: None,
        ..claims()
    };
    let token = issue(&keyring, &root).unwrap();
    let payload = decode_part(parts(&token)[1]);
    assert!(payload.get("ws").is_none() && payload.get("parent").is_none());
    assert_eq!(verify(&verifier, &token, NBF, 0).unwrap(), root);
}

#[test]
fn delegated_claims_round_trip() {
    let (keyring, verifier, _, _) = setup();
    let child = Claims {
        parent: Some("m-parent".into()),
        chain: vec!["m-root".into(), "m-parent".into()],
        depth: 2,
        ..claims()
    };
    let token = issue(&keyring, &child).unwrap();
    assert_eq!(verify(&verifier, &token, NBF, 0).unwrap(), child);
}

fn check_boundaries(skew: i64) {
    let (_, verifier, c, token) = setup();
    let at = |now| verify(&verifier, &token, now, skew);
    assert_eq!(at(NBF - skew).unwrap(), c, "nbf - skew is inside");
    assert_eq!(
        at(NBF - skew - 1).unwrap_err(),
        MandateError::NotYetValid {
            nbf: NBF,
            now: NBF - skew - 1,
            skew
        }
    );
    assert_eq!(at(EXP + skew - 1).unwrap(), c, "exp + skew - 1 is inside");
    let expired = at(EXP + skew).unwrap_err();
    assert_eq!(
        expired,
        MandateError::Expired {
            exp: EXP,
            now: EXP + skew,
            skew
        }
    );
    assert_eq!(expired.code(), "mandate_expired");
    assert_eq!(
        at(NBF - skew - 1).unwrap_err().code(),
        "mandate_not_yet_valid"
    );
    assert!(at(i64::MIN).is_err() && at(i64::MAX).is_err());
}

#[test]
fn exact_time_boundaries_without_skew() {
    check_boundaries(0);
}

#[test]
fn exact_time_boundaries_with_30s_skew() {
    check_boundaries(30);
}

#[test]
fn negative_skew_counts_as_zero_and_extremes_do_not_overflow() {
    let (keyring, verifier, _, token) = setup();
    assert!(verify(&verifier, &token, NBF, -5).is_ok());
    assert!(matches!(
        verify(&verifier, &token, EXP, -5),
        Err(MandateError::Expired { skew: 0, .. })
    ));
    let wide = Claims {
        nbf: i64::MIN,
        exp: i64::MAX,
        ..claims()
    };
    let token = issue(&keyring, &wide).unwrap();
    for now in [i64::MIN, 0, i64::MAX - 1] {
        assert!(verify(&verifier, &token, now, i64::MAX).is_ok());
    }
    assert!(verify(&verifier, &token, i64::MAX, 0).is_err());
}

#[test]
fn time_errors_say_what_and_when() {
    let (_, verifier, _, token) = setup();
    let msg = verify(&verifier, &token, EXP + 30, 30)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("expired") && msg.contains(&EXP.to_string()),
        "{msg}"
    );
    let msg = verify(&verifier, &token, T0, 0).unwrap_err().to_string();
    assert!(
        msg.contains("not yet valid") && msg.contains(&NBF.to_string()),
        "{msg}"
    );
}

#[test]
fn unknown_kid_is_refused_and_named() {
    let (keyring, _, _, token) = setup();
    let other = Keyring::generate(T0).unwrap().verifier();
    let reason = assert_invalid(&other, &token);
    assert_eq!(
        reason,
        InvalidReason::UnknownKid(keyring.active_kid().into())
    );
    let msg = MandateError::from(reason).to_string();
    assert!(
        msg.contains(&format!("unknown signing key kid={}", keyring.active_kid())),
        "{msg}"
    );
    // Attacker-chosen kids are bounded and escaped in the message.
    let mut header = eddsa_header(&keyring);
    header["kid"] = json!(format!("{}\n{}", "x".repeat(100), "y"));
    let token = sign_raw(&keyring, &header, &serde_json::to_value(claims()).unwrap());
    let InvalidReason::UnknownKid(shown) = assert_invalid(&keyring.verifier(), &token) else {
        panic!("expected unknown kid");
    };
    assert!(
        !shown.contains('\n') && shown.chars().count() <= 65,
        "{shown}"
    );
}

#[test]
fn missing_kid_is_refused() {
    let (keyring, verifier, c, _) = setup();
    let payload = serde_json::to_value(&c).unwrap();
    for header in [
        json!({ "alg": "EdDSA", "typ": "JWT" }),
        json!({ "alg": "EdDSA", "typ": "JWT", "kid": null }),
    ] {
        let token = sign_raw(&keyring, &header, &payload);
        assert_eq!(assert_invalid(&verifier, &token), InvalidReason::MissingKid);
    }
    // The same token with the kid verifies: the refusal is about the kid.
    let token = sign_raw(&keyring, &eddsa_header(&keyring), &payload);
    assert!(verify(&verifier, &token, NBF, 0).is_ok());
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let (keyring, verifier, c, _) = setup();
    let public = verifier.public_keys()[0].1;
    let secrets: Vec<Vec<u8>> = vec![
        public.to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(public)
            .into_bytes(),
        B64URL.encode(public).into_bytes(),
    ];
    for secret in secrets {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keyring.active_kid().into());
        let token = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(&secret)).unwrap();
        // It really is a valid HS256 token under that secret...
        let mut hs = Validation::new(Algorithm::HS256);
        hs.validate_exp = false;
        hs.required_spec_claims.clear();
        assert!(
            jsonwebtoken::decode::<Claims>(&token, &DecodingKey::from_secret(&secret), &hs).is_ok()
        );
        // ...and still refused.
        assert_eq!(
            assert_invalid(&verifier, &token),
            InvalidReason::Algorithm("HS256".into())
        );
    }
}

#[test]
fn alg_none_is_refused() {
    let (keyring, verifier, c, _) = setup();
    let payload = b64(serde_json::to_string(&c).unwrap());
    for alg in ["none", "None", "NONE", ""] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": keyring.active_kid() });
        let token = format!("{}.{payload}.", b64(header.to_string()));
        assert_eq!(
            assert_invalid(&verifier, &token),
            InvalidReason::Algorithm(alg.into())
        );
    }
}

#[test]
fn re_headed_tokens_are_refused() {
    let (keyring, verifier, _, token) = setup();
    let p = parts(&token);
    for alg in [
        "HS256", "RS256", "ES256", "PS256", "eddsa", "Ed25519", "EdDSA ",
    ] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": keyring.active_kid() });
        let forged = format!("{}.{}.{}", b64(header.to_string()), p[1], p[2]);
        assert_eq!(
            assert_invalid(&verifier, &forged),
            InvalidReason::Algorithm(alg.into())
        );
    }
    // Same alg, header otherwise changed: the signature covers the header.
    let header = json!({ "alg": "EdDSA", "kid": keyring.active_kid() });
    let forged = format!("{}.{}.{}", b64(header.to_string()), p[1], p[2]);
    assert_eq!(
        assert_invalid(&verifier, &forged),
        InvalidReason::BadSignature
    );
    // A non-string alg, or a critical extension, is malformed.
    for header in [
        json!({ "alg": 1, "kid": keyring.active_kid() }),
        json!({ "alg": "EdDSA", "kid": keyring.active_kid(), "crit": ["exp"] }),
    ] {
        let forged = format!("{}.{}.{}", b64(header.to_string()), p[1], p[2]);
        assert!(matches!(
            assert_invalid(&verifier, &forged),
            InvalidReason::Malformed(_)
        ));
    }
}

#[test]
fn tampered_payload_is_refused() {
    let (_, verifier, _, token) = setup();
    let p = parts(&token);
    let mut payload = decode_part(p[1]);
    payload["scope"] = serde_json::to_value(scope(&["**"], &["read", "create", "delete"])).unwrap();
    let forged = format!("{}.{}.{}", p[0], b64(payload.to_string()), p[2]);
    assert_eq!(
        assert_invalid(&verifier, &forged),
        InvalidReason::BadSignature
    );
    let mut payload = decode_part(p[1]);
    payload["exp"] = json!(EXP + 86_400);
    let forged = format!("{}.{}.{}", p[0], b64(payload.to_string()), p[2]);
    assert_eq!(
        assert_invalid(&verifier, &forged),
        InvalidReason::BadSignature
    );
    // Truncated or missing signature.
    let cut = &token[..token.len() - 4];
    assert!(matches!(
        assert_invalid(&verifier, cut),
        InvalidReason::BadSignature | InvalidReason::Malformed(_)
    ));
    let unsigned = format!("{}.{}.", p[0], p[1]);
    assert!(matches!(
        assert_invalid(&verifier, &unsigned),
        InvalidReason::BadSignature | InvalidReason::Malformed(_)
    ));
}

#[test]
fn another_keyrings_key_under_the_same_kid_is_refused() {
    let (keyring, verifier, c, _) = setup();
    let attacker = Keyring::generate(T0).unwrap();
    let (_, attacker_key) = attacker.signing_key().unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keyring.active_kid().into());
    let token = jsonwebtoken::encode(&header, &c, &attacker_key).unwrap();
    assert_eq!(
        assert_invalid(&verifier, &token),
        InvalidReason::BadSignature
    );
}

#[test]
fn rotation_keeps_old_tokens_verifying_until_pruned() {
    let (mut keyring, old_verifier, c, before) = setup();
    let old_kid = keyring.active_kid().to_string();
    let new_kid = keyring.rotate(T0 + 10).unwrap();
    let after = issue(&keyring, &c).unwrap();
    assert_eq!(decode_part(parts(&after)[0])["kid"], new_kid.as_str());
    assert_eq!(decode_part(parts(&before)[0])["kid"], old_kid.as_str());

    let verifier = keyring.verifier();
    assert_eq!(verify(&verifier, &before, NBF, 0).unwrap(), c);
    assert_eq!(verify(&verifier, &after, NBF, 0).unwrap(), c);
    // A gateway still holding the pre-rotation verifier does not know the new kid.
    assert!(matches!(
        assert_invalid(&old_verifier, &after),
        InvalidReason::UnknownKid(_)
    ));

    // Kept while retired for at most keep_for, dropped afterwards.
    let keep = Duration::from_secs(3_600);
    assert!(keyring.prune(T0 + 10 + 3_600, keep).is_empty());
    assert!(verify(&keyring.verifier(), &before, NBF, 0).is_ok());
    assert_eq!(keyring.prune(T0 + 10 + 3_601, keep), vec![old_kid]);
    let pruned = keyring.verifier();
    assert!(matches!(
        assert_invalid(&pruned, &before),
        InvalidReason::UnknownKid(_)
    ));
    assert!(verify(&pruned, &after, NBF, 0).is_ok());
}

#[test]
fn verifier_from_exported_public_keys_verifies() {
    let (_, verifier, c, token) = setup();
    let rebuilt = Verifier::from_public(verifier.public_keys()).unwrap();
    assert_eq!(verify(&rebuilt, &token, NBF, 0).unwrap(), c);
}

#[test]
fn every_required_claim_is_required_and_unknown_ones_are_ignored() {
    let (keyring, verifier, c, _) = setup();
    let full = serde_json::to_value(&c).unwrap();
    for field in [
        "iss", "sub", "jti", "iat", "nbf", "exp", "scope", "chain", "depth",
    ] {
        let mut payload = full.clone();
        payload.as_object_mut().unwrap().remove(field);
        let token = sign_raw(&keyring, &eddsa_header(&keyring), &payload);
        let reason = assert_invalid(&verifier, &token);
        assert_eq!(
            reason,
            InvalidReason::Claims(format!("missing field `{field}`")),
            "{field}"
        );
    }
    let mut payload = full.clone();
    payload.as_object_mut().unwrap().remove("ws");
    payload["aud"] = json!("someone");
    payload["extra"] = json!({ "nested": [1, 2] });
    let token = sign_raw(&keyring, &eddsa_header(&keyring), &payload);
    assert_eq!(
        verify(&verifier, &token, NBF, 0).unwrap(),
        Claims { ws: None, ..c }
    );
}

#[test]
fn malformed_claims_are_refused_on_issue_and_verify() {
    let (keyring, verifier, _, _) = setup();
    let bad = [
        Claims {
            sub: String::new(),
            ..claims()
        },
        Claims {
            exp: NBF,
            ..claims()
        },
        Claims {
            depth: 1,
            ..claims()
        },
        Claims {
            parent: Some("p".into()),
            ..claims()
        },
        Claims {
            chain: vec!["r".into()],
            depth: 1,
            ..claims()
        },
        Claims {
            chain: vec!["r".into(), "r".into()],
            depth: 2,
            parent: Some("r".into()),
            ..claims()
        },
    ];
    for c in bad {
        let err = issue(&keyring, &c).unwrap_err();
        assert!(
            matches!(err, MandateError::Invalid(InvalidReason::Claims(_))),
            "{c:?}: {err:?}"
        );
        let token = sign_raw(
            &keyring,
            &eddsa_header(&keyring),
            &serde_json::to_value(&c).unwrap(),
        );
        assert!(
            matches!(assert_invalid(&verifier, &token), InvalidReason::Claims(_)),
            "{c:?}"
        );
    }
    // Wrong types, and a payload that is not an object, even when signed.
    for payload in [
        json!([1, 2, 3]),
        json!("claims"),
        json!(null),
        json!({ "iat": "soon" }),
    ] {
        let token = sign_raw(&keyring, &eddsa_header(&keyring), &payload);
        assert!(matches!(
            assert_invalid(&verifier, &token),
            InvalidReason::Claims(_)
        ));
    }
}

#[test]
fn oversized_tokens_are_refused_before_parsing_and_never_issued() {
    let (keyring, verifier, _, token) = setup();
    let huge = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
    assert!(matches!(
        assert_invalid(&verifier, &huge),
        InvalidReason::TooLong { .. }
    ));
    assert!(matches!(
        assert_invalid(&verifier, &"a".repeat(1 << 20)),
        InvalidReason::TooLong { .. }
    ));
    let many: Vec<String> = (0..1_000).map(|i| format!("resource.{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let big = Claims {
        scope: scope(&many, &["read"]),
        ..claims()
    };
    let err = issue(&keyring, &big).unwrap_err();
    assert!(
        matches!(err, MandateError::Invalid(InvalidReason::TooLong { .. })),
        "{err:?}"
    );
}

#[test]
fn hostile_inputs_are_invalid_without_panicking() {
    let (_, verifier, _, token) = setup();
    let p = parts(&token);
    let not_objects = ["[]", "\"x\"", "1", "null", "{", "{\"alg\":null}"];
    let mut inputs: Vec<String> = vec![
        "".into(),
        ".".into(),
        "..".into(),
        "...".into(),
        "a.b".into(),
        "a.b.c".into(),
        "a.b.c.d".into(),
        "!!!.@@@.###".into(),
        "Bearer x.y.z".into(),
        " \n\t".into(),
        "é.ü.ß".into(),
        format!("{token}\n"),
        format!(" {token}"),
        format!("{token}.x"),
        format!("{}.{}", p[0], p[1]),
        format!("{}=.{}.{}", p[0], p[1], p[2]),
    ];
    inputs.extend(
        not_objects
            .iter()
            .map(|h| format!("{}.{}.{}", b64(h), p[1], p[2])),
    );
    for input in &inputs {
        assert_invalid(&verifier, input);
        assert!(
            peek_unverified(input).is_none() || input.starts_with(p[0]),
            "{input:?}"
        );
    }
}

#[test]
fn peek_reads_kid_and_jti_without_verifying() {
    let (keyring, _, c, token) = setup();
    let expected = Some((keyring.active_kid().to_string(), c.jti.clone()));
    assert_eq!(peek_unverified(&token), expected);
    // Even for a token nothing would accept (tampered signature).
    let forged = format!("{}xx", &token[..token.len() - 2]);
    assert_eq!(peek_unverified(&forged), expected);
    assert_eq!(peek_unverified(""), None);
    assert_eq!(peek_unverified(&"a".repeat(MAX_TOKEN_LEN + 1)), None);
}

#[test]
fn codes_are_stable() {
    assert_eq!(
        MandateError::from(InvalidReason::BadSignature).code(),
        "mandate_invalid"
    );
    assert_eq!(
        MandateError::Expired {
            exp: 0,
            now: 0,
            skew: 0
        }
        .code(),
        "mandate_expired"
    );
    assert_eq!(
        MandateError::NotYetValid {
            nbf: 0,
            now: 0,
            skew: 0
        }
        .code(),
        "mandate_not_yet_valid"
    );
    assert_eq!(
        MandateError::Signing("x".into()).code(),
        "mandate_signing_failed"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,300}") {
        let verifier = Keyring::generate(T0).unwrap().verifier();
        prop_assert!(verify(&verifier, &s, NBF, 30).is_err());
        let _ = peek_unverified(&s);
    }

    #[test]
    fn any_single_character_change_is_refused(index in 0usize..2_000, c in proptest::char::any()) {
        let (_, verifier, _, token) = setup();
        let index = index % token.len();
        let mut forged = token.clone();
        forged.replace_range(index..index + 1, &c.to_string());
        prop_assume!(forged != token);
        let err = verify(&verifier, &forged, NBF, 0).unwrap_err();
        prop_assert_eq!(err.code(), "mandate_invalid");
    }
}
