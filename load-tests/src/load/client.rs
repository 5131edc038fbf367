//! The one HTTP client a run shares between its workers.

use std::path::Path;

use reqwest::{redirect, Certificate, Client, Proxy};

use super::{LoadConfig, LoadError};

/// Builds a pooled keep-alive client for `config`: the given proxy only
/// (the `*_PROXY` environment is ignored), the given roots only when a CA
/// file is set, no redirects (a 3xx counts as non-2xx).
pub fn build_client(config: &LoadConfig) -> Result<Client, LoadError> {
    let mut builder = Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(config.concurrency.get())
        .tcp_nodelay(true)
        .timeout(config.timeout)
        .redirect(redirect::Policy::none())
        .user_agent(concat!("caracal-load/", env!("CARGO_PKG_VERSION")));
    if let Some(proxy) = &config.proxy {
        builder = builder.proxy(Proxy::all(proxy.as_str()).map_err(LoadError::Proxy)?);
    }
    if let Some(path) = &config.ca_file {
        builder = builder.tls_built_in_root_certs(false);
        for cert in read_certificates(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if config.http1 {
        builder = builder.http1_only();
    }
    builder.build().map_err(LoadError::Client)
}

/// Every certificate in the PEM file at `path`; at least one.
fn read_certificates(path: &Path) -> Result<Vec<Certificate>, LoadError> {
    let pem = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|source| LoadError::Certificate {
        path: path.to_owned(),
        source,
    })?;
    if certs.is_empty() {
        return Err(LoadError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}
