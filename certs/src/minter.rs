//! Per-host leaf certificates for TLS interception inside CONNECT tunnels:
//! minted on demand from the workspace CA and cached per host.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rcgen::KeyPair;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::ServerConfig;
use time::OffsetDateTime;

use crate::cache::HostCache;
use crate::names::Host;
use crate::tls::{provider, FixedCert};
use crate::{CertAuthority, CertError};

/// Validity of a minted leaf.
const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// A cached leaf this close to expiry is minted again.
const REMINT_BEFORE: time::Duration = time::Duration::days(1);
/// ALPN offered inside intercepted tunnels, in order of preference.
const LEAF_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// TLS sessions remembered across all minted hosts (rustls checks SNI on resumption).
const SESSION_CACHE_SIZE: usize = 4096;

/// Mints and caches per-host TLS server configurations signed by the workspace CA.
///
/// All leaves share one ECDSA P-256 key generated at construction, so minting
/// costs one signature. Leaves are valid 30 days and reminted within a day of
/// expiry; at most `capacity` hosts are cached, least recently used evicted.
pub struct LeafMinter {
    ca: Arc<CertAuthority>,
    key: KeyPair,
    signer: Arc<dyn SigningKey>,
    sessions: Arc<dyn StoresServerSessions>,
    cache: Mutex<HostCache<Arc<ServerConfig>>>,
}

impl std::fmt::Debug for LeafMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafMinter")
            .field("ca", &self.ca)
            .field("cached_hosts", &self.cached_hosts())
            .finish_non_exhaustive()
    }
}

impl LeafMinter {
    /// A minter signing with `ca`, caching up to `capacity` hosts (minimum 1).
    pub fn new(ca: Arc<CertAuthority>, capacity: usize) -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let signer = provider()
            .key_provider
            .load_private_key(PrivatePkcs8KeyDer::from(key.serialize_der()).into())?;
        Ok(Self {
            ca,
            key,
            signer,
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            cache: Mutex::new(HostCache::new(capacity)),
        })
    }

    /// The server configuration for `host` (a DNS name, or an IP literal which
    /// gets an IP SAN), offering ALPN h2 then http/1.1. The host is normalised
    /// (lowercase, trailing dot and IPv6 brackets removed); repeated calls for
    /// the same host return the same `Arc` until the leaf nears expiry or is
    /// evicted. Invalid hosts yield [`CertError::InvalidName`].
    pub fn server_config_for(&self, host: &str) -> Result<Arc<ServerConfig>, CertError> {
        let host = Host::parse(host)?;
        let key = host.as_text();
        let now = OffsetDateTime::now_utc();
        if let Some(config) = self.lock().get(&key, now) {
            return Ok(config);
        }
        // Mint without holding the lock; if another caller won the race, use theirs.
        let (config, not_after) = self.mint(&host)?;
        let mut cache = self.lock();
        if let Some(existing) = cache.get(&key, now) {
            return Ok(existing);
        }
        cache.insert(key, config.clone(), not_after - REMINT_BEFORE);
        tracing::debug!(host = %host.as_text(), "minted leaf certificate");
        Ok(config)
    }

    /// Number of hosts currently cached.
    pub fn cached_hosts(&self) -> usize {
        self.lock().len()
    }

    fn mint(&self, host: &Host) -> Result<(Arc<ServerConfig>, OffsetDateTime), CertError> {
        let (leaf, not_after) =
            self.ca
                .sign(std::slice::from_ref(host), &self.key, LEAF_VALIDITY)?;
        let chain = vec![leaf.der().clone(), self.ca.cert_der()];
        let certified = Arc::new(CertifiedKey::new(chain, self.signer.clone()));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCert(certified)));
        config.alpn_protocols = LEAF_ALPN.iter().map(|p| p.to_vec()).collect();
        config.session_storage = self.sessions.clone();
        Ok((Arc::new(config), not_after))
    }

    /// The cache, even if a panicking thread poisoned the lock (its state is always consistent).
    fn lock(&self) -> MutexGuard<'_, HostCache<Arc<ServerConfig>>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
#[path = "minter_tests.rs"]
mod tests;
