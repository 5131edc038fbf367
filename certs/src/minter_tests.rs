use rcgen::CertificateParams;
use rustls::RootCertStore;

use super::*;
use crate::test_support::{assert_certificate_rejected, handshake};

fn minter(capacity: usize) -> (Arc<CertAuthority>, LeafMinter) {
    let ca = Arc::new(CertAuthority::generate("Caracal test CA").unwrap());
    let minter = LeafMinter::new(ca.clone(), capacity).unwrap();
    (ca, minter)
}

/// A root store holding ONLY the workspace CA.
fn only(ca: &CertAuthority) -> RootCertStore {
    let roots = ca.root_store().unwrap();
    assert_eq!(roots.len(), 1);
    roots
}

#[test]
fn is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<LeafMinter>();
    check::<CertAuthority>();
}

#[tokio::test]
async fn minted_leaf_verifies_for_a_dns_host_and_negotiates_h2() {
    let (ca, minter) = minter(16);
    let config = minter.server_config_for("api.openai.com").unwrap();
    let alpn = handshake(config, only(&ca), "api.openai.com", &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn minted_leaf_offers_http1_to_http1_clients() {
    let (ca, minter) = minter(16);
    let config = minter.server_config_for("api.openai.com").unwrap();
    let alpn = handshake(config, only(&ca), "api.openai.com", &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn minted_leaf_verifies_for_an_ip_host() {
    let (ca, minter) = minter(16);
    let config = minter.server_config_for("127.0.0.1").unwrap();
    handshake(config, only(&ca), "127.0.0.1", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_server_name_fails_the_handshake() {
    let (ca, minter) = minter(16);
    let config = minter.server_config_for("api.openai.com").unwrap();
    let err = handshake(config.clone(), only(&ca), "api.anthropic.com", &[]).await;
    assert_certificate_rejected(err);
    let err = handshake(config, only(&ca), "127.0.0.1", &[]).await;
    assert_certificate_rejected(err);
}

#[tokio::test]
async fn leaf_from_another_ca_fails_the_handshake() {
    let (_, minter) = minter(16);
    let (stranger, _) = self::minter(1);
    let config = minter.server_config_for("api.openai.com").unwrap();
    assert_certificate_rejected(handshake(config, only(&stranger), "api.openai.com", &[]).await);
}

#[test]
fn cache_hit_returns_the_same_config() {
    let (_, minter) = minter(16);
    let first = minter.server_config_for("api.openai.com").unwrap();
    let second = minter.server_config_for("api.openai.com").unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    let normalised = minter.server_config_for("API.OpenAI.com.").unwrap();
    assert!(Arc::ptr_eq(&first, &normalised));
    assert_eq!(minter.cached_hosts(), 1);

    let other = minter.server_config_for("example.com").unwrap();
    assert!(!Arc::ptr_eq(&first, &other));
    assert_eq!(minter.cached_hosts(), 2);
}

#[test]
fn cache_is_bounded() {
    let (_, minter) = minter(2);
    let a = minter.server_config_for("a.example").unwrap();
    minter.server_config_for("b.example").unwrap();
    minter.server_config_for("c.example").unwrap();
    assert_eq!(minter.cached_hosts(), 2);
    // "a" was least recently used, so it was evicted and is minted again.
    let a_again = minter.server_config_for("a.example").unwrap();
    assert!(!Arc::ptr_eq(&a, &a_again));
    assert_eq!(minter.cached_hosts(), 2);
}

#[test]
fn leaves_have_distinct_serials_and_30_day_validity() {
    let (_, minter) = minter(16);
    let hosts = [
        Host::parse("a.example").unwrap(),
        Host::parse("b.example").unwrap(),
    ];
    let params: Vec<_> = hosts
        .iter()
        .map(|h| {
            let (cert, _) = minter
                .ca
                .sign(std::slice::from_ref(h), &minter.key, LEAF_VALIDITY)
                .unwrap();
            CertificateParams::from_ca_cert_der(cert.der()).unwrap()
        })
        .collect();
    assert_ne!(params[0].serial_number, params[1].serial_number);
    let days = (params[0].not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((29..=30).contains(&days), "{days}");
}

#[test]
fn invalid_hosts_are_errors() {
    let (_, minter) = minter(16);
    for bad in [
        "",
        "*.openai.com",
        "exa mple.com",
        "host:443",
        "a..b",
        "\u{0}",
    ] {
        let err = minter.server_config_for(bad).unwrap_err();
        assert!(
            matches!(err, CertError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(minter.cached_hosts(), 0);
}
