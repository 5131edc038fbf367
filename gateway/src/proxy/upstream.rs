//! Connections to providers: pooled hyper clients over rustls, with a DNS
//! resolver that refuses private, loopback, link-local and metadata
//! addresses (so a public-looking name cannot resolve its way inside),
//! except for providers explicitly allowed to reach a private network.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::respond::Body;
use crate::destination;

/// The resolver's refusal, found again in the client's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to forbidden addresses ({reason})")]
pub struct ForbiddenResolution {
    pub host: String,
    pub reason: String,
}

/// DNS resolution through the system resolver, optionally guarded.
#[derive(Clone)]
pub struct Resolver {
    guarded: bool,
}

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guarded = self.guarded;
        Box::pin(async move {
            let host = name.as_str().to_string();
            if guarded {
                if let Some(reason) = destination::classify_name(&host) {
                    return Err(forbidden(&host, reason.to_string()));
                }
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !guarded {
                return Ok(addrs.into_iter());
            }
            let mut last_reason = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match destination::classify(a.ip()) {
                    Some(r) => {
                        last_reason = Some(r.to_string());
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                return Err(match last_reason {
                    Some(reason) => forbidden(&host, reason),
                    None => std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{host} has no addresses"),
                    ),
                });
            }
            Ok(allowed.into_iter())
        })
    }
}

fn forbidden(host: &str, reason: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        ForbiddenResolution {
            host: host.to_string(),
            reason,
        },
    )
}

/// Finds a resolver refusal anywhere in an error's source chain.
pub fn forbidden_in<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ForbiddenResolution> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(f) = e.downcast_ref::<ForbiddenResolution>() {
            return Some(f);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(f) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<ForbiddenResolution>())
            {
                return Some(f);
            }
        }
        cur = e.source();
    }
    None
}

pub type HttpClient = Client<HttpsConnector<HttpConnector<Resolver>>, Body>;

/// The two upstream clients: guarded (the default) and open (providers
/// with `allow_private_network`).
#[derive(Clone)]
pub struct Upstream {
    pub guarded: HttpClient,
    pub open: HttpClient,
}

/// Errors building the upstream TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot read upstream CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("upstream TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl Upstream {
    /// Builds both clients: system roots plus `extra_ca` (PEM) if given.
    pub fn new(
        connect_timeout: Duration,
        extra_ca: Option<&std::path::Path>,
    ) -> Result<Self, UpstreamError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca {
            let ca_err = |message: String| UpstreamError::CaFile {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots
                    .add(cert.map_err(|e| ca_err(e.to_string()))?)
                    .map_err(|e| ca_err(e.to_string()))?;
                n += 1;
            }
            if n == 0 {
                return Err(ca_err("no certificates found".into()));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let build = |guarded: bool| {
            let mut http = HttpConnector::new_with_resolver(Resolver { guarded });
            http.enforce_http(false);
            http.set_connect_timeout(Some(connect_timeout));
            http.set_nodelay(true);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .build(https)
        };
        Ok(Self {
            guarded: build(true),
            open: build(false),
        })
    }

    pub fn client(&self, allow_private: bool) -> &HttpClient {
        if allow_private {
            &self.open
        } else {
            &self.guarded
        }
    }
}
