//! Starting and stopping a gateway: opens the store, prepares the CA and
//! certificates, loads the first snapshot, starts the ledger writer, the
//! refresher and both listeners. Used by `caracal-gateway serve`,
//! `caracal up` and the integration tests (on port 0).

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use caracal_certs::{CertAuthority, LeafMinter};
use caracal_config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::counters::{Counters, InProcessCounters};
use crate::budget::rate::{InProcessRateLimiter, RateLimiter};
use crate::ledger::LedgerWriter;
use crate::ops::{health::Health, metrics};
use crate::proxy::{self, Shared, Upstream};
use crate::snapshot::refresh::Refresher;
use crate::snapshot::{SnapshotSource, StoreSource};
use crate::store::{SqliteStore, Store};

/// How often the refresher looks for changes (bounds how long a change
/// takes to reach a running gateway).
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// How long shutdown waits for in-flight calls.
const DRAIN: Duration = Duration::from_secs(10);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store {path}")]
    Store {
        path: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("cannot load the enforcement state: {0}")]
    Snapshot(String),
    #[error(
        "deployment.kind = \"distributed\": this build's gateway serves embedded workspaces only \
         (its distributed replica is not released yet); set kind = \"embedded\""
    )]
    Distributed,
    #[error("certificates: {0}")]
    Certs(#[from] caracal_certs::CertError),
    #[error("upstream TLS: {0}")]
    Upstream(#[from] proxy::upstream::UpstreamError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    shared: Arc<Shared>,
    writer: LedgerWriter,
    refresher: tokio::task::JoinHandle<()>,
    /// The embedded store, kept to close its pool once the ledger is written.
    sqlite: SqliteStore,
}

/// Starts a gateway with `config`; returns once both listeners are bound.
pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
    if config.deployment != caracal_config::Deployment::Embedded {
        return Err(StartError::Distributed);
    }
    let sqlite = SqliteStore::open(&config.database)
        .await
        .map_err(|source| StartError::Store {
            path: config.database.display().to_string(),
            source,
        })?;
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let ca_name = format!(
        "Caracal workspace CA ({})",
        config
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let (ca, created) = CertAuthority::load_or_create(&config.ca_cert, &config.ca_key, &ca_name)?;
    if created {
        tracing::info!(path = %config.ca_cert.display(), "created the workspace CA; clients must trust it (`caracal certs export-ca`)");
    }
    let server_cert = caracal_certs::ensure_server_cert(
        &ca,
        &config.server_cert,
        &config.server_key,
        &config.server_names,
    )?;
    let server_tls = caracal_certs::server_config(&server_cert, &[b"h2", b"http/1.1"])?;
    let ca_not_after = ca.not_after();
    let server_not_after = caracal_certs::not_after(&server_cert.cert_pem, &config.server_cert)?;
    let minter = LeafMinter::new(Arc::new(ca), 10_000)?;

    let counters: Arc<dyn Counters> = Arc::new(InProcessCounters::default());
    let limiter: Arc<dyn RateLimiter> = Arc::new(InProcessRateLimiter::new());
    let source: Arc<dyn SnapshotSource> = Arc::new(StoreSource::new(store.clone()));
    let loader = Refresher {
        source,
        counters: counters.clone(),
        history: Arc::new(store.clone()),
        allowlist_default: config.allowlist_default,
    };
    let snapshot = loader.load().await.map_err(|e| StartError::Snapshot(e.0))?;
    let cell = Arc::new(ArcSwap::from_pointee(snapshot));
    let (writer, sink) = LedgerWriter::start(store.clone());
    let fresh = Arc::new(AtomicBool::new(true));
    let refresher = loader.spawn(cell.clone(), REFRESH_INTERVAL, fresh.clone());
    let upstream = Upstream::new(
        config.limits.upstream_connect_timeout,
        config.upstream_ca_file.as_deref(),
    )?;
    let mut health = Health::default();
    health.guard("snapshot", fresh);
    health.guard("ledger", writer.healthy());
    let expiries = vec![
        ("workspace CA", ca_not_after),
        ("gateway certificate", server_not_after),
    ];
    let tls_ok = Arc::new(AtomicBool::new(crate::ops::health::certificates_ok(
        &expiries,
        config.tls_expiry_margin,
        std::time::SystemTime::now(),
    )));
    health.guard("tls", tls_ok.clone());

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let listener = bind(config.listen).await?;
    let metrics_listener = bind(config.metrics_listen).await?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.metrics_listen,
            source,
        })?;

    let shutdown = CancellationToken::new();
    let shared = Arc::new(Shared {
        config,
        snapshot: cell,
        sink: Arc::new(sink),
        minter,
        upstream,
        health,
        tracker: TaskTracker::new(),
        counters,
        limiter,
        stack: Default::default(),
        shutdown: shutdown.clone(),
        force_close: CancellationToken::new(),
    });
    shared.install_stack();
    tokio::spawn(crate::ops::health::watch_expiry(
        expiries,
        shared.config.tls_expiry_margin,
        tls_ok,
        shutdown.clone(),
    ));
    let handle = metrics::install();
    let budgets = metrics::budget_report(shared.snapshot.clone(), shared.counters.clone());
    tokio::spawn(metrics::serve(
        metrics_listener,
        handle,
        budgets,
        shutdown.clone(),
    ));
    shared.tracker.spawn(proxy::accept_loop(
        shared.clone(),
        listener,
        tokio_rustls::TlsAcceptor::from(server_tls),
    ));
    tracing::info!(%addr, %metrics_addr, "caracal gateway listening");
    Ok(RunningGateway {
        addr,
        metrics_addr,
        shared,
        writer,
        refresher,
        sqlite,
    })
}

impl RunningGateway {
    /// The workspace CA certificate (PEM), for clients in tests.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.shared.config.ca_cert).unwrap_or_default()
    }

    /// Events accepted by the ledger writer but not yet written.
    /// The state version of the snapshot requests are decided on now.
    pub fn snapshot_version(&self) -> i64 {
        self.shared.snapshot.load().version
    }

    pub fn ledger_backlog(&self) -> u64 {
        self.writer.backlog()
    }

    /// Stops accepting, lets in-flight calls finish (up to 10 s), then
    /// writes every remaining ledger event before returning.
    pub async fn shutdown(self) {
        let Self {
            shared,
            writer,
            refresher,
            sqlite,
            ..
        } = self;
        shared.shutdown.cancel();
        shared.tracker.close();
        if tokio::time::timeout(DRAIN, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {DRAIN:?}; closing them");
            shared.force_close.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), shared.tracker.wait()).await;
        }
        refresher.abort();
        shared.remove_stack();
        drop(shared);
        if tokio::time::timeout(DRAIN, writer.finish()).await.is_err() {
            tracing::error!("ledger writer did not drain within {DRAIN:?}");
        }
        sqlite.close().await;
        tracing::info!("caracal gateway stopped");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    /// A distributed workspace is refused by name, never served as if it
    /// were embedded (its calls would be recorded where nobody looks).
    #[tokio::test]
    async fn a_distributed_workspace_is_refused_not_served_embedded() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[gateway]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
                    [deployment]\nkind = \"distributed\"\nredis_url = \"redis://127.0.0.1:6379/\"\n\
                    kafka_brokers = \"127.0.0.1:9092\"";
        let config = caracal_config::Config::parse(text, &dir.path().join("config.toml")).unwrap();
        let Err(e) = super::start(config).await else {
            panic!("started");
        };
        assert!(matches!(e, super::StartError::Distributed), "{e}");
        assert!(
            !dir.path().join("caracal.db").exists(),
            "no SQLite file made"
        );
    }
}
