//! Test helpers: a real TLS handshake over an in-memory duplex pipe.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::provider;

/// Connects a client trusting only `roots` to `server` as `server_name`,
/// offering `alpn`; exchanges one message each way and returns the ALPN the
/// client negotiated, or the client's error (e.g. certificate rejected).
pub(crate) async fn handshake(
    server: Arc<ServerConfig>,
    roots: RootCertStore,
    server_name: &str,
    alpn: &[&[u8]],
) -> Result<Option<Vec<u8>>, std::io::Error> {
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(server_name.to_owned()).expect("valid test server name");

    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server_side = async move {
        let mut tls = TlsAcceptor::from(server).accept(server_io).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(b"pong").await?;
        tls.shutdown().await
    };
    let client_side = async move {
        let mut tls = TlsConnector::from(Arc::new(client))
            .connect(name, client_io)
            .await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok::<_, std::io::Error>(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
    };
    let run = async {
        let (client, _server) = tokio::join!(client_side, server_side);
        client
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("handshake timed out")
}

/// Asserts that a handshake failed because the client rejected the server certificate.
pub(crate) fn assert_certificate_rejected<T: std::fmt::Debug>(result: Result<T, std::io::Error>) {
    let err = result.expect_err("handshake should fail");
    let tls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    assert!(
        matches!(tls, Some(rustls::Error::InvalidCertificate(_))),
        "expected a certificate error, got {err:?}"
    );
}
