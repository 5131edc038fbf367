use std::fs;
use std::path::PathBuf;

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, SanType};

use super::*;

fn paths(dir: &tempfile::TempDir) -> (PathBuf, PathBuf) {
    (dir.path().join("ca/ca.pem"), dir.path().join("ca/ca.key"))
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

#[test]
fn creates_then_reloads_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let (created, was_created) =
        CertAuthority::load_or_create(&cert, &key, "Caracal test CA").unwrap();
    assert!(was_created);
    assert_eq!(fs::read_to_string(&cert).unwrap(), created.cert_pem());

    let (loaded, was_created) = CertAuthority::load_or_create(&cert, &key, "ignored").unwrap();
    assert!(!was_created);
    assert_eq!(loaded.cert_pem(), created.cert_pem());
    assert_eq!(loaded.cert_der(), created.cert_der());
    let again = CertAuthority::load(&cert, &key).unwrap();
    assert_eq!(again.cert_der(), created.cert_der());
}

#[cfg(unix)]
#[test]
fn key_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    CertAuthority::load_or_create(&cert, &key, "Caracal test CA").unwrap();
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn ca_certificate_has_ca_constraints() {
    let ca = CertAuthority::generate("Caracal test CA").unwrap();
    let params = CertificateParams::from_ca_cert_pem(ca.cert_pem()).unwrap();
    assert_eq!(params.is_ca, IsCa::Ca(BasicConstraints::Constrained(0)));
    assert!(params.key_usages.contains(&KeyUsagePurpose::KeyCertSign));
    assert!(params.key_usages.contains(&KeyUsagePurpose::CrlSign));
    let cn = params.distinguished_name.get(&DnType::CommonName).unwrap();
    assert_eq!(cn, &rcgen::DnValue::Utf8String("Caracal test CA".into()));
    let days = (params.not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((3649..=3650).contains(&days), "{days} days left");
}

#[test]
fn missing_files_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let err = CertAuthority::load(&cert, &key).unwrap_err();
    assert!(
        matches!(err, CertError::Io { ref path, .. } if *path == cert),
        "{err}"
    );
}

#[test]
fn garbled_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    CertAuthority::load_or_create(&cert, &key, "Caracal test CA").unwrap();
    let good_cert = fs::read_to_string(&cert).unwrap();
    let good_key = fs::read_to_string(&key).unwrap();

    let bad_der = "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
    for garbage in ["", "garbage", bad_der, good_key.as_str()] {
        fs::write(&cert, garbage).unwrap();
        let err = CertAuthority::load(&cert, &key).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }
    fs::write(&cert, &good_cert).unwrap();
    let bad_key = "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n";
    for garbage in ["", "garbage", bad_key, good_cert.as_str()] {
        fs::write(&key, garbage).unwrap();
        let err = CertAuthority::load(&cert, &key).unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err}");
    }
}

#[test]
fn key_of_another_ca_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    CertAuthority::load_or_create(&cert, &key, "Caracal test CA").unwrap();
    fs::write(&key, new_key().serialize_pem()).unwrap();
    let err = CertAuthority::load(&cert, &key).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn leaf_certificate_is_not_accepted_as_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    let ca = CertAuthority::generate("Caracal test CA").unwrap();
    let leaf_key = new_key();
    let leaf = ca
        .issue(
            &["example.com".into()],
            &leaf_key,
            Duration::from_secs(3600),
        )
        .unwrap();
    fs::create_dir_all(cert.parent().unwrap()).unwrap();
    fs::write(&cert, &leaf.cert_pem).unwrap();
    fs::write(&key, &leaf.key_pem).unwrap();
    let err = CertAuthority::load(&cert, &key).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn half_present_ca_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = paths(&dir);
    CertAuthority::load_or_create(&cert, &key, "Caracal test CA").unwrap();
    fs::remove_file(&key).unwrap();
    let err = CertAuthority::load_or_create(&cert, &key, "Caracal test CA").unwrap_err();
    assert!(
        matches!(err, CertError::Incomplete { ref missing, .. } if *missing == key),
        "{err}"
    );
    assert!(!key.exists());
}

#[test]
fn issues_server_certificates_for_dns_and_ip_names() {
    let ca = CertAuthority::generate("Caracal test CA").unwrap();
    let names = vec![
        "Gateway.Example.".to_string(),
        "127.0.0.1".into(),
        "[::1]".into(),
    ];
    let issued = ca
        .issue(&names, &new_key(), Duration::from_secs(7 * 24 * 3600))
        .unwrap();
    assert_eq!(issued.chain.len(), 2);
    assert_eq!(issued.chain[1], ca.cert_der());

    let params = CertificateParams::from_ca_cert_pem(&issued.cert_pem).unwrap();
    assert_eq!(params.is_ca, IsCa::ExplicitNoCa);
    assert_eq!(
        params.extended_key_usages,
        vec![ExtendedKeyUsagePurpose::ServerAuth]
    );
    assert_eq!(
        params.subject_alt_names,
        vec![
            SanType::DnsName("gateway.example".try_into().unwrap()),
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
            SanType::IpAddress("::1".parse().unwrap()),
        ]
    );
    let now = OffsetDateTime::now_utc();
    assert!((params.not_before - (now - BACKDATE)).abs() < time::Duration::minutes(1));
    assert!(
        (params.not_after - (now + time::Duration::days(7))).abs() < time::Duration::minutes(1)
    );
}

#[test]
fn issued_certificates_never_outlive_the_ca() {
    let ca = CertAuthority::generate("Caracal test CA").unwrap();
    let issued = ca
        .issue(&["a.example".into()], &new_key(), Duration::MAX)
        .unwrap();
    let params = CertificateParams::from_ca_cert_pem(&issued.cert_pem).unwrap();
    assert_eq!(SystemTime::from(params.not_after), ca.not_after());
}

#[test]
fn bad_names_are_rejected() {
    let ca = CertAuthority::generate("Caracal test CA").unwrap();
    let key = new_key();
    let day = Duration::from_secs(86_400);
    assert!(ca.issue(&[], &key, day).is_err());
    assert!(ca.issue(&["*.example.com".into()], &key, day).is_err());
    assert!(ca
        .issue(&["ok.example".into(), "not ok".into()], &key, day)
        .is_err());
    assert!(CertAuthority::generate("").is_err());
}

#[test]
fn long_ca_names_are_truncated_to_64_characters() {
    let long = format!("Caracal workspace CA ({})", "w".repeat(100));
    let ca = CertAuthority::generate(&long).unwrap();
    let params = CertificateParams::from_ca_cert_pem(ca.cert_pem()).unwrap();
    let cn = params.distinguished_name.get(&DnType::CommonName).unwrap();
    let expected: String = long.chars().take(64).collect();
    assert_eq!(cn, &rcgen::DnValue::Utf8String(expected));
}
