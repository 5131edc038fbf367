use super::*;

const T0: i64 = 1_700_000_000;

fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn generated_keyring_has_one_active_key_with_a_well_formed_kid() {
    let ring = Keyring::generate(T0).unwrap();
    assert_eq!(ring.keys().len(), 1);
    let key = &ring.keys()[0];
    assert!(key.is_active() && key.has_private_key());
    assert_eq!(key.created_at, T0);
    assert_eq!(ring.active_kid(), key.kid);
    assert!(
        key.kid.starts_with("k-") && key.kid.len() == 18,
        "{}",
        key.kid
    );
    assert!(key.kid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(
        Keyring::generate(T0).unwrap().active_kid(),
        ring.active_kid()
    );
}

#[test]
fn debug_never_prints_private_keys() {
    let ring = Keyring::generate(T0).unwrap();
    let pkcs8 = ring.keys()[0].private_pkcs8.clone().unwrap();
    let printed = format!("{ring:?}");
    assert!(printed.contains("<redacted>"));
    assert!(!printed.contains(&B64.encode(&pkcs8)));
    assert!(!printed.contains(&hex::encode(&pkcs8)));
}

#[test]
fn load_or_create_creates_a_0600_file_then_loads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/mandate-keys.json");
    let (created, was_created) = Keyring::load_or_create(&path, T0).unwrap();
    assert!(was_created);
    assert_eq!(file_mode(&path), 0o600);
    let (loaded, was_created) = Keyring::load_or_create(&path, T0 + 10).unwrap();
    assert!(!was_created);
    assert_eq!(loaded, created);
    assert_eq!(Keyring::load(&path).unwrap(), created);
}

#[test]
fn save_and_load_keep_retired_keys_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.json");
    let (mut ring, _) = Keyring::load_or_create(&path, T0).unwrap();
    ring.rotate(T0 + 100).unwrap();
    ring.save(&path).unwrap();
    assert_eq!(file_mode(&path), 0o600);
    let loaded = Keyring::load(&path).unwrap();
    assert_eq!(loaded, ring);
    assert_eq!(loaded.keys().len(), 2);
    assert_eq!(loaded.keys()[0].retired_at, Some(T0 + 100));
    assert!(!loaded.keys()[0].has_private_key());
}

#[test]
fn missing_file_is_an_error_for_load() {
    let dir = tempfile::tempdir().unwrap();
    let err = Keyring::load(&dir.path().join("nope.json")).unwrap_err();
    assert!(matches!(err, KeyError::Read { .. }), "{err:?}");
}

/// Writes `contents`, loads, and checks that the file was refused and left as it was.
fn assert_garbled(contents: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.json");
    std::fs::write(&path, contents).unwrap();
    let err = Keyring::load_or_create(&path, T0).unwrap_err();
    assert!(matches!(err, KeyError::Garbled { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        contents,
        "file was overwritten"
    );
    err.to_string()
}

fn valid_file_json() -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.json");
    Keyring::load_or_create(&path, T0).unwrap();
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn garbled_files_are_refused_and_never_overwritten() {
    assert_garbled(b"");
    assert_garbled(b"not json");
    assert_garbled(b"{\"version\": 1, \"keys\": [");
    assert_garbled(b"[]");
    assert_garbled(b"{}");
    assert_garbled(b"{\"version\": 1, \"keys\": []}");
    assert_garbled(&[0xff, 0xfe, 0x00]);

    let msg = assert_garbled(b"{\"version\": 2, \"keys\": []}");
    assert!(msg.contains("version 2"), "{msg}");

    let mut v = valid_file_json();
    v["keys"][0]["public_key"] = "!!!not base64".into();
    assert_garbled(v.to_string().as_bytes());

    let mut v = valid_file_json();
    v["keys"][0]["public_key"] = B64.encode([1u8; 31]).into();
    let msg = assert_garbled(v.to_string().as_bytes());
    assert!(msg.contains("31 bytes"), "{msg}");

    let mut v = valid_file_json();
    v["keys"][0]["private_pkcs8"] = B64.encode(b"garbage").into();
    assert_garbled(v.to_string().as_bytes());

    let mut v = valid_file_json();
    v["keys"][0]["kid"] = "bad kid/with slash".into();
    assert_garbled(v.to_string().as_bytes());

    let mut v = valid_file_json();
    v["surprise"] = 1.into();
    assert_garbled(v.to_string().as_bytes());
}

#[test]
fn garbled_errors_do_not_echo_key_material() {
    let mut v = valid_file_json();
    let secret = v["keys"][0]["private_pkcs8"].as_str().unwrap().to_string();
    // A private key put where a number belongs must not show up in the message.
    v["keys"][0]["created_at"] = secret.clone().into();
    let msg = assert_garbled(v.to_string().as_bytes());
    assert!(!msg.contains(&secret[30..]), "{msg}");
}

#[test]
fn structural_invariants_are_checked_on_load() {
    // A private key that belongs to another public key.
    let mut v = valid_file_json();
    let other = valid_file_json();
    v["keys"][0]["private_pkcs8"] = other["keys"][0]["private_pkcs8"].clone();
    let msg = assert_garbled(v.to_string().as_bytes());
    assert!(msg.contains("does not match"), "{msg}");

    // No active key.
    let mut v = valid_file_json();
    v["keys"][0]["retired_at"] = T0.into();
    let msg = assert_garbled(v.to_string().as_bytes());
    assert!(msg.contains("no active"), "{msg}");

    // Two active keys.
    let mut v = valid_file_json();
    let second = valid_file_json()["keys"][0].clone();
    v["keys"].as_array_mut().unwrap().push(second);
    let msg = assert_garbled(v.to_string().as_bytes());
    assert!(msg.contains("2 active"), "{msg}");

    // Duplicate kid.
    let mut v = valid_file_json();
    let mut dup = v["keys"][0].clone();
    dup["retired_at"] = T0.into();
    v["keys"].as_array_mut().unwrap().push(dup);
    let msg = assert_garbled(v.to_string().as_bytes());
    assert!(msg.contains("duplicate"), "{msg}");

    // Active key without its private half.
    let mut v = valid_file_json();
    v["keys"][0]
        .as_object_mut()
        .unwrap()
        .remove("private_pkcs8");
    let msg = assert_garbled(v.to_string().as_bytes());
    assert!(msg.contains("no private key"), "{msg}");
}

#[test]
fn rotate_retires_the_old_key_and_keeps_it_for_verification() {
    let mut ring = Keyring::generate(T0).unwrap();
    let old = ring.active_kid().to_string();
    let new = ring.rotate(T0 + 50).unwrap();
    assert_ne!(old, new);
    assert_eq!(ring.active_kid(), new);
    assert_eq!(ring.keys().iter().filter(|k| k.is_active()).count(), 1);
    let old_entry = ring.keys().iter().find(|k| k.kid == old).unwrap();
    assert_eq!(old_entry.retired_at, Some(T0 + 50));
    assert!(!old_entry.has_private_key());
    let verifier = ring.verifier();
    assert!(verifier.contains(&old) && verifier.contains(&new));
    assert_eq!(ring.signing_key().unwrap().0, new);
}

#[test]
fn prune_drops_only_keys_retired_longer_than_keep_for() {
    let mut ring = Keyring::generate(T0).unwrap();
    let a = ring.active_kid().to_string();
    let b = ring.rotate(T0 + 100).unwrap(); // a retired at T0+100
    let c = ring.rotate(T0 + 200).unwrap(); // b retired at T0+200
    let keep = Duration::from_secs(1000);

    // Exactly keep_for after a's retirement: kept.
    assert!(ring.prune(T0 + 1100, keep).is_empty());
    assert_eq!(ring.keys().len(), 3);

    // One second later: a goes, b (retired 901 s ago) stays, active c stays.
    assert_eq!(ring.prune(T0 + 1101, keep), vec![a.clone()]);
    let kids: Vec<_> = ring.keys().iter().map(|k| k.kid.clone()).collect();
    assert_eq!(kids, vec![b.clone(), c.clone()]);
    assert!(!ring.verifier().contains(&a));

    // Far in the future: only the active key remains, whatever keep_for.
    assert_eq!(ring.prune(i64::MAX, Duration::ZERO), vec![b]);
    assert_eq!(ring.prune(i64::MAX, Duration::ZERO), Vec::<String>::new());
    assert_eq!(ring.active_kid(), c);
}

#[test]
fn prune_rounds_fractional_keep_for_up() {
    let mut ring = Keyring::generate(T0).unwrap();
    ring.rotate(T0).unwrap();
    assert!(ring
        .prune(T0 + 11, Duration::from_millis(10_500))
        .is_empty());
    assert_eq!(ring.prune(T0 + 12, Duration::from_millis(10_500)).len(), 1);
}

#[test]
fn verifier_from_public_round_trips_and_refuses_bad_kids() {
    let mut ring = Keyring::generate(T0).unwrap();
    ring.rotate(T0 + 1).unwrap();
    let exported = ring.verifier().public_keys();
    assert_eq!(exported.len(), 2);
    assert!(exported.windows(2).all(|w| w[0].0 < w[1].0));
    let rebuilt = Verifier::from_public(exported.clone()).unwrap();
    assert_eq!(rebuilt.public_keys(), exported);
    assert_eq!(rebuilt.len(), 2);

    let dup = vec![("k-a", [1u8; 32]), ("k-a", [2u8; 32])];
    assert!(matches!(
        Verifier::from_public(dup),
        Err(KeyError::DuplicateKid(_))
    ));
    for bad in ["", "has space", "slash/", &"x".repeat(65)] {
        let err = Verifier::from_public([(bad, [0u8; 32])]).unwrap_err();
        assert!(matches!(err, KeyError::BadKid(_)), "{bad:?}: {err:?}");
    }
    assert!(Verifier::from_public(Vec::<(String, [u8; 32])>::new())
        .unwrap()
        .is_empty());
}

#[test]
fn verifier_is_cheap_to_share_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Verifier>();
    let verifier = Keyring::generate(T0).unwrap().verifier();
    let clone = verifier.clone();
    assert!(verifier.shares_keys_with(&clone));
    assert!(!format!("{verifier:?}").contains("decoding"));
}
