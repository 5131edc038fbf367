//! PEM decoding of certificates and private keys, with errors naming the file.

use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::CertError;

/// The certificates in `pem`, in order; at least one, else an error.
pub(crate) fn certs(pem: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CertError::invalid(path, "malformed PEM"))?;
    if certs.is_empty() {
        return Err(CertError::invalid(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in `pem`.
pub(crate) fn private_key(pem: &str, path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|_| CertError::invalid(path, "malformed PEM"))?
        .ok_or_else(|| CertError::invalid(path, "no PRIVATE KEY block"))
}
