use std::fs;
use std::path::PathBuf;

use super::*;
use crate::server_config;
use crate::test_support::{assert_certificate_rejected, handshake};

fn paths(dir: &tempfile::TempDir) -> (PathBuf, PathBuf) {
    (
        dir.path().join("tls/gateway.pem"),
        dir.path().join("tls/gateway.key"),
    )
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn test_ca() -> CertAuthority {
    CertAuthority::generate("Caracal test CA").unwrap()
}

#[test]
fn reuses_a_valid_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let ca = test_ca();
    let first = ensure_server_cert(&ca, &cert, &key, &names(&["localhost", "127.0.0.1"])).unwrap();
    assert_eq!(fs::read_to_string(&cert).unwrap(), first.cert_pem);
    assert_eq!(fs::read_to_string(&key).unwrap(), first.key_pem);

    let second = ensure_server_cert(&ca, &cert, &key, &names(&["localhost", "127.0.0.1"])).unwrap();
    assert_eq!(second.cert_pem, first.cert_pem);
    assert_eq!(second.key_pem, first.key_pem);
    assert_eq!(second.chain, first.chain);
    // A subset of the covered names is still covered.
    let subset = ensure_server_cert(&ca, &cert, &key, &names(&["LOCALHOST."])).unwrap();
    assert_eq!(subset.cert_pem, first.cert_pem);
}

#[cfg(unix)]
#[test]
fn server_key_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    ensure_server_cert(&test_ca(), &cert, &key, &names(&["localhost"])).unwrap();
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn reissues_when_names_change() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let ca = test_ca();
    let first = ensure_server_cert(&ca, &cert, &key, &names(&["localhost"])).unwrap();
    let second =
        ensure_server_cert(&ca, &cert, &key, &names(&["localhost", "gw.internal"])).unwrap();
    assert_ne!(second.cert_pem, first.cert_pem);
    assert_eq!(fs::read_to_string(&cert).unwrap(), second.cert_pem);
}

#[test]
fn reissues_when_signed_by_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let old = ensure_server_cert(&test_ca(), &cert, &key, &names(&["localhost"])).unwrap();
    let ca = test_ca();
    let new = ensure_server_cert(&ca, &cert, &key, &names(&["localhost"])).unwrap();
    assert_ne!(new.cert_pem, old.cert_pem);
    assert_eq!(new.chain[1], ca.cert_der());
}

#[test]
fn reissues_when_expiring_within_30_days() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let ca = test_ca();
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let short = ca
        .issue(
            &names(&["localhost"]),
            &key_pair,
            Duration::from_secs(10 * 24 * 3600),
        )
        .unwrap();
    fs::create_dir_all(cert.parent().unwrap()).unwrap();
    fs::write(&cert, &short.cert_pem).unwrap();
    fs::write(&key, &short.key_pem).unwrap();
    let renewed = ensure_server_cert(&ca, &cert, &key, &names(&["localhost"])).unwrap();
    assert_ne!(renewed.cert_pem, short.cert_pem);

    // The same files with a long validity are kept.
    let long = ca
        .issue(
            &names(&["localhost"]),
            &key_pair,
            Duration::from_secs(40 * 24 * 3600),
        )
        .unwrap();
    fs::write(&cert, &long.cert_pem).unwrap();
    fs::write(&key, &long.key_pem).unwrap();
    let kept = ensure_server_cert(&ca, &cert, &key, &names(&["localhost"])).unwrap();
    assert_eq!(kept.cert_pem, long.cert_pem);
}

#[test]
fn reissues_over_garbled_or_mismatched_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let ca = test_ca();
    let first = ensure_server_cert(&ca, &cert, &key, &names(&["localhost"])).unwrap();

    fs::write(&cert, "not a certificate").unwrap();
    let second = ensure_server_cert(&ca, &cert, &key, &names(&["localhost"])).unwrap();
    assert_ne!(second.cert_pem, first.cert_pem);

    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    fs::write(&key, other.serialize_pem()).unwrap();
    let third = ensure_server_cert(&ca, &cert, &key, &names(&["localhost"])).unwrap();
    assert_ne!(third.cert_pem, second.cert_pem);
    assert_ne!(third.key_pem, other.serialize_pem());
}

#[test]
fn invalid_names_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let ca = test_ca();
    assert!(ensure_server_cert(&ca, &cert, &key, &[]).is_err());
    assert!(ensure_server_cert(&ca, &cert, &key, &names(&["bad name"])).is_err());
    assert!(!cert.exists());
}

#[tokio::test]
async fn gateway_certificate_verifies_against_the_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let ca = test_ca();
    let issued = ensure_server_cert(&ca, &cert, &key, &names(&["localhost", "127.0.0.1"])).unwrap();
    let config = server_config(&issued, &[b"http/1.1"]).unwrap();

    let alpn = handshake(
        config.clone(),
        ca.root_store().unwrap(),
        "localhost",
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    handshake(config.clone(), ca.root_store().unwrap(), "127.0.0.1", &[])
        .await
        .unwrap();

    let err = handshake(
        config.clone(),
        ca.root_store().unwrap(),
        "other.example",
        &[],
    )
    .await;
    assert_certificate_rejected(err);
    let stranger = test_ca();
    let err = handshake(config, stranger.root_store().unwrap(), "localhost", &[]).await;
    assert_certificate_rejected(err);
}
