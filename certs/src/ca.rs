//! The workspace certificate authority: created once, kept as two PEM files,
//! and used to sign the gateway server certificate and per-host leaves.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use crate::files::{self, Access};
use crate::names::{self, Host};
use crate::tls::{provider, IssuedCert};
use crate::{pem, CertError};

/// How long a new CA is valid.
const CA_VALIDITY: time::Duration = time::Duration::days(3650);
/// Certificates start this long before "now", to tolerate clock skew.
const BACKDATE: time::Duration = time::Duration::hours(1);
/// Longest common name X.509 allows (characters); longer leaf names go in the SAN only.
const MAX_CN_LEN: usize = 64;

/// A CA certificate and its private key, able to sign server certificates.
pub struct CertAuthority {
    /// The certificate exactly as stored (or generated).
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// rcgen's view of the CA, used only as the issuer when signing.
    issuer: rcgen::Certificate,
    key: KeyPair,
    not_after: OffsetDateTime,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Loads the CA from `cert_path`/`key_path` if both exist; if neither does,
    /// creates one (ECDSA P-256, CA:TRUE pathlen 0, keyCertSign + cRLSign,
    /// 10 years, CN = `common_name`) and writes both files durably (key 0600,
    /// parent directories created). Returns the CA and whether it was created.
    /// If only one file exists, fails with [`CertError::Incomplete`] and writes nothing.
    pub fn load_or_create(
        cert_path: &Path,
        key_path: &Path,
        common_name: &str,
    ) -> Result<(Self, bool), CertError> {
        match (files::exists(cert_path)?, files::exists(key_path)?) {
            (true, true) => Ok((Self::load(cert_path, key_path)?, false)),
            (false, false) => {
                let ca = Self::generate(common_name)?;
                // Key first: a crash in between leaves an Incomplete error, never a cert without its key silently replaced.
                files::write_atomic(key_path, ca.key.serialize_pem().as_bytes(), Access::Private)?;
                files::write_atomic(cert_path, ca.cert_pem.as_bytes(), Access::Public)?;
                tracing::info!(cert = %cert_path.display(), key = %key_path.display(), "created workspace CA");
                Ok((ca, true))
            }
            (true, false) => Err(CertError::Incomplete {
                present: cert_path.to_path_buf(),
                missing: key_path.to_path_buf(),
            }),
            (false, true) => Err(CertError::Incomplete {
                present: key_path.to_path_buf(),
                missing: cert_path.to_path_buf(),
            }),
        }
    }

    /// Loads an existing CA. Fails (never panics) if a file is missing, is not
    /// PEM, the certificate is not a CA, or the key does not match it.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CertError> {
        let cert_pem = files::read_text(cert_path)?;
        let key_pem = files::read_text(key_path)?;
        files::warn_if_exposed(key_path);
        let ca = Self::from_pem(cert_pem, &key_pem, cert_path, key_path)?;
        if ca.not_after <= OffsetDateTime::now_utc() {
            tracing::warn!(cert = %cert_path.display(), "workspace CA has expired; clients will reject its certificates");
        }
        Ok(ca)
    }

    /// Creates a new CA in memory only (nothing is written). A `common_name`
    /// longer than 64 characters (the X.509 limit) is truncated; an empty one is an error.
    pub fn generate(common_name: &str) -> Result<Self, CertError> {
        if common_name.trim().is_empty() {
            return Err(CertError::InvalidName {
                name: common_name.to_owned(),
                problem: "CA common name must not be empty",
            });
        }
        let common_name: String = common_name.chars().take(MAX_CN_LEN).collect();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        // Round-trip through PEM so generated and loaded CAs behave identically.
        let here = Path::new("<generated>");
        Self::from_pem(cert.pem(), &key.serialize_pem(), here, here)
    }

    fn from_pem(
        cert_pem: String,
        key_pem: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, CertError> {
        let mut certs = pem::certs(&cert_pem, cert_path)?;
        if certs.len() != 1 {
            return Err(CertError::invalid(
                cert_path,
                "expected exactly one certificate",
            ));
        }
        let cert_der = certs.remove(0);
        let params =
            CertificateParams::from_ca_cert_der(&cert_der).map_err(|source| CertError::Parse {
                path: cert_path.to_path_buf(),
                source,
            })?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            return Err(CertError::invalid(cert_path, "not a CA certificate"));
        }
        // Reject anything but PKCS#8 up front: rcgen reads only that.
        let _ = pem::private_key(key_pem, key_path)?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|_| CertError::invalid(key_path, "not a supported PKCS#8 private key"))?;
        let pkcs8 = PrivatePkcs8KeyDer::from(key.serialize_der());
        let signer = provider()
            .key_provider
            .load_private_key(pkcs8.into())
            .map_err(|_| CertError::invalid(key_path, "key type not supported by rustls"))?;
        CertifiedKey::new(vec![cert_der.clone()], signer)
            .keys_match()
            .map_err(|_| CertError::invalid(key_path, "key does not match the CA certificate"))?;
        let not_after = params.not_after;
        let issuer = params.self_signed(&key)?;
        Ok(Self {
            cert_pem,
            cert_der,
            issuer,
            key,
            not_after,
        })
    }

    /// The CA certificate in PEM, exactly as stored; what clients must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// When the CA certificate expires; issued certificates never outlive it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after.into()
    }

    /// A root store holding only this CA, for clients and tests.
    pub fn root_store(&self) -> Result<rustls::RootCertStore, CertError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der())?;
        Ok(roots)
    }

    /// Issues a server certificate for `names` (DNS names, or IP literals which
    /// become IP SANs) and the public half of `key`: EKU serverAuth, valid from
    /// one hour ago for `validity` (capped at the CA's own expiry).
    /// `key` must be a local key pair (its PEM is returned).
    pub fn issue(
        &self,
        names: &[String],
        key: &KeyPair,
        validity: Duration,
    ) -> Result<IssuedCert, CertError> {
        if key.as_remote().is_some() {
            return Err(CertError::Generate(rcgen::Error::RemoteKeyError));
        }
        let hosts = names::parse_all(names)?;
        let (cert, _) = self.sign(&hosts, key, validity)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone(), self.cert_der()],
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        })
    }

    /// Signs a leaf for `hosts` (non-empty, already validated); returns it and its expiry.
    pub(crate) fn sign(
        &self,
        hosts: &[Host],
        key: &impl PublicKeyData,
        validity: Duration,
    ) -> Result<(rcgen::Certificate, OffsetDateTime), CertError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.subject_alt_names = hosts.iter().map(Host::san).collect::<Result<_, _>>()?;
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = hosts
            .first()
            .map(Host::as_text)
            .filter(|cn| cn.len() <= MAX_CN_LEN)
        {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        // Random serials: minted leaves share one key, and rcgen would otherwise
        // derive the serial from it, giving every leaf the same serial.
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        params.not_after = time::Duration::try_from(validity)
            .ok()
            .and_then(|v| now.checked_add(v))
            .map_or(self.not_after, |t| t.min(self.not_after));
        let not_after = params.not_after;
        Ok((params.signed_by(key, &self.issuer, &self.key)?, not_after))
    }
}

/// A positive 128-bit random serial number.
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(rustls::Error::from)?;
    // Clear the sign bit and set the next so the encoding is always 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
