//! rustls glue: the ring crypto provider, issued certificate bundles and
//! server configurations built from them.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::CertError;

/// The ring crypto provider, shared. Never the process-default provider.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A certificate issued by a [`crate::CertAuthority`] together with its key.
pub struct IssuedCert {
    /// The leaf certificate alone, PEM.
    pub cert_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Leaf then CA certificate, DER: what a TLS server sends.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key, DER.
    pub key_der: PrivateKeyDer<'static>,
}

impl Clone for IssuedCert {
    fn clone(&self) -> Self {
        Self {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            chain: self.chain.clone(),
            key_der: self.key_der.clone_key(),
        }
    }
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Builds a rustls server configuration (ring provider, safe default protocol
/// versions, no client auth) serving `cert`'s chain and key, offering `alpn`
/// in order of preference. Fails if the key does not fit the provider.
pub fn server_config(cert: &IssuedCert, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, CertError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key_der.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Serves one certificate regardless of SNI (each minted host has its own config).
#[derive(Debug)]
pub(crate) struct FixedCert(pub(crate) Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// When the certificate in `cert_pem` (the first of the file at `path`)
/// stops being valid.
pub fn not_after(
    cert_pem: &str,
    path: &std::path::Path,
) -> Result<std::time::SystemTime, crate::CertError> {
    let params = rcgen::CertificateParams::from_ca_cert_pem(cert_pem).map_err(|source| {
        crate::CertError::Parse {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(params.not_after.into())
}
