//! `GET /health` of a running gateway over TLS, trusting only the
//! workspace CA: what `caracal status` reports and `caracal up --detach`
//! waits for. Also plain-HTTP JSON GETs on its metrics listener
//! (`/budgets`), which serves no TLS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use caracal_config::Config;
use caracal_gateway::ops::health::HealthReport;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// How long one probe may take, from connect to the whole body.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Largest answer [`get_json`] reads.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// The name the gateway's server certificate always covers.
const SERVER_NAME: &str = "localhost";

/// The health report of the gateway listening at `config.listen`. A 503
/// answer is still a report (with `failing` filled in); any other answer,
/// or none within 2 s, is an error.
pub async fn probe_health(config: &Config) -> anyhow::Result<HealthReport> {
    probe_health_at(config.listen, &config.ca_cert).await
}

/// Like [`probe_health`], for an explicit listen address and CA file.
pub async fn probe_health_at(listen: SocketAddr, ca_cert: &Path) -> anyhow::Result<HealthReport> {
    let addr = connect_addr(listen);
    let tls = client_config(ca_cert)?;
    tokio::time::timeout(TIMEOUT, get_health(addr, tls))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {addr} within {} s", TIMEOUT.as_secs()))?
}

/// Where to connect for a listen address: a wildcard listener is reached
/// over loopback.
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

fn client_config(ca_cert: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let read_err = || format!("cannot read the workspace CA {}", ca_cert.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_cert).with_context(read_err)? {
        roots
            .add(cert.with_context(read_err)?)
            .with_context(read_err)?;
    }
    if roots.is_empty() {
        bail!("{}: no certificate found", read_err());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn get_health(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<HealthReport> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let name = ServerName::try_from(SERVER_NAME)?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .with_context(|| {
            format!("TLS handshake with {addr} failed (is it this workspace's gateway?)")
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(conn);
    let request = http::Request::get("/health")
        .header(http::header::HOST, SERVER_NAME)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await.context("GET /health")?;
    let status = response.status();
    let body = Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the /health answer: {e}"))?
        .to_bytes();
    if status != http::StatusCode::OK && status != http::StatusCode::SERVICE_UNAVAILABLE {
        bail!("/health answered {status}");
    }
    serde_json::from_slice(&body)
        .with_context(|| format!("/health answered {status} with an unexpected body"))
}

/// `GET path_and_query` over plain HTTP/1.1 at `addr` (a wildcard address
/// is reached over loopback), expecting 200 and a JSON body of at most
/// 1 MiB; all within 2 s.
pub async fn get_json(addr: SocketAddr, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
    let addr = connect_addr(addr);
    tokio::time::timeout(TIMEOUT, plain_get_json(addr, path_and_query))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {addr} within {} s", TIMEOUT.as_secs()))?
}

async fn plain_get_json(
    addr: SocketAddr,
    path_and_query: &str,
) -> anyhow::Result<serde_json::Value> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(conn);
    let request = http::Request::get(path_and_query)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {path_and_query}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer to GET {path_and_query}: {e}"))?
        .to_bytes();
    if status != http::StatusCode::OK {
        let detail = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        bail!("GET {path_and_query} answered {status}: {}", detail.trim());
    }
    serde_json::from_slice(&body)
        .with_context(|| format!("GET {path_and_query} answered with a body that is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        assert_eq!(
            connect_addr("0.0.0.0:8443".parse().unwrap()),
            "127.0.0.1:8443".parse().unwrap()
        );
        assert_eq!(
            connect_addr("[::]:1".parse().unwrap()),
            "[::1]:1".parse().unwrap()
        );
        assert_eq!(
            connect_addr("10.0.0.2:9".parse().unwrap()),
            "10.0.0.2:9".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn a_missing_ca_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = probe_health_at("127.0.0.1:1".parse().unwrap(), &dir.path().join("ca.pem"))
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read the workspace CA"),
            "{err:#}"
        );
    }

    /// A one-connection HTTP/1.1 server answering every request with `status`
    /// and `body`.
    async fn serve_once(status: u16, body: Vec<u8>) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = tcp.write_all(head.as_bytes()).await;
            let _ = tcp.write_all(&body).await;
        });
        addr
    }

    #[tokio::test]
    async fn plain_json_gets_read_bounded_answers() {
        let addr = serve_once(200, br#"{"budgets":[]}"#.to_vec()).await;
        let v = get_json(addr, "/budgets?principal=a").await.unwrap();
        assert_eq!(v, serde_json::json!({"budgets": []}));

        let addr = serve_once(400, br#"{"error":"bad_request"}"#.to_vec()).await;
        let err = get_json(addr, "/budgets").await.unwrap_err();
        assert!(format!("{err:#}").contains("400"), "{err:#}");

        let addr = serve_once(200, vec![b' '; MAX_JSON_BODY + 1]).await;
        assert!(get_json(addr, "/budgets").await.is_err());

        let addr = serve_once(200, b"not json".to_vec()).await;
        assert!(get_json(addr, "/budgets").await.is_err());
    }

    #[tokio::test]
    async fn nothing_listening_is_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let err = get_json(addr, "/budgets").await.unwrap_err();
        assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
    }
}
