//! The gateway's own TLS server certificate: kept on disk next to the
//! workspace, reused while valid, reissued when anything about it is off.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::KeyPair;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::UnixTime;
use rustls::sign::CertifiedKey;

use crate::files::{self, Access};
use crate::names::{self, Host};
use crate::tls::{provider, IssuedCert};
use crate::{pem, CertAuthority, CertError};

/// Validity of a newly issued gateway certificate.
const SERVER_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// An existing certificate expiring sooner than this is replaced.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Ensures a gateway server certificate at `cert_path`/`key_path` (leaf PEM,
/// PKCS#8 key PEM). The existing pair is reused if it parses, the key matches,
/// it chains to `ca`, covers every one of `names` and stays valid for 30 more
/// days; otherwise a new ECDSA P-256 key and 1-year certificate are issued and
/// written durably (key 0600). Unreadable files (other than missing) are errors.
pub fn ensure_server_cert(
    ca: &CertAuthority,
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
) -> Result<IssuedCert, CertError> {
    let hosts = names::parse_all(names)?;
    if let Some(existing) = reusable(ca, cert_path, key_path, &hosts)? {
        return Ok(existing);
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let issued = ca.issue(names, &key, SERVER_CERT_VALIDITY)?;
    // Key first: if we stop in between, the old cert no longer matches and is reissued.
    files::write_atomic(key_path, issued.key_pem.as_bytes(), Access::Private)?;
    files::write_atomic(cert_path, issued.cert_pem.as_bytes(), Access::Public)?;
    tracing::info!(cert = %cert_path.display(), names = ?names, "issued gateway server certificate");
    Ok(issued)
}

/// The stored certificate if it can be reused as is; `None` (logged) if it must be reissued.
fn reusable(
    ca: &CertAuthority,
    cert_path: &Path,
    key_path: &Path,
    hosts: &[Host],
) -> Result<Option<IssuedCert>, CertError> {
    let stale = |reason: &dyn std::fmt::Display| {
        tracing::info!(cert = %cert_path.display(), %reason, "gateway server certificate will be reissued");
        Ok(None)
    };
    for path in [cert_path, key_path] {
        if !files::exists(path)? {
            return stale(&format_args!("{} is missing", path.display()));
        }
    }
    let cert_pem = files::read_text(cert_path)?;
    let key_pem = files::read_text(key_path)?;
    files::warn_if_exposed(key_path);

    let leaf = match pem::certs(&cert_pem, cert_path) {
        Ok(mut certs) => certs.swap_remove(0),
        Err(e) => return stale(&e),
    };
    let key_der = match pem::private_key(&key_pem, key_path) {
        Ok(key) => key,
        Err(e) => return stale(&e),
    };
    let signer = match provider()
        .key_provider
        .load_private_key(key_der.clone_key())
    {
        Ok(signer) => signer,
        Err(e) => return stale(&e),
    };
    let chain = vec![leaf, ca.cert_der()];
    if let Err(e) = CertifiedKey::new(chain.clone(), signer).keys_match() {
        return stale(&e);
    }

    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(ca.root_store()?), provider())
            .build()?;
    let now = UnixTime::now();
    let renew_at = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs()) + RENEW_BEFORE);
    for host in hosts {
        let name = host.server_name()?;
        for at in [now, renew_at] {
            if let Err(e) = verifier.verify_server_cert(&chain[0], &[], &name, &[], at) {
                return stale(&format_args!("{}: {e}", host.as_text()));
            }
        }
    }
    Ok(Some(IssuedCert {
        cert_pem,
        key_pem,
        chain,
        key_der,
    }))
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
