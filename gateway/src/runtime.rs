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

use std::sync::atomic::Ordering;

use caracal_config::{Deployment, Distributed, Service};
use jiff::SignedDuration;
use redis::aio::ConnectionManager;

use crate::budget::counters::{Counters, InProcessCounters, DEFAULT_HOLD_TTL};
use crate::budget::rate::{InProcessRateLimiter, RateLimiter};
use crate::kafka::{KafkaConfig, KafkaPublisher};
use crate::ledger::{EventSink, LedgerWriter};
use crate::ops::{health::Health, metrics};
use crate::proxy::{self, Shared, Upstream};
use crate::shared::{
    Keys, RedisClock, RedisCounters, RedisRateLimiter, RedisSource, ReplicaReport,
};
use crate::snapshot::refresh::Refresher;
use crate::snapshot::SpendHistory;
use crate::snapshot::{SnapshotSource, StoreSource};
use crate::store::{PgStore, SqliteStore, Store};

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
    #[error("distributed deployment: {0}")]
    Distributed(String),
    #[error("ledger signing key: {0}")]
    LedgerKey(#[from] crate::merkle::MerkleError),
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
    ledger: Ledger,
    refresher: tokio::task::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Where the data path's seams lead: the embedded deployment's in-process
/// ones, or the distributed deployment's Redis and Kafka ones.
struct Backends {
    counters: Arc<dyn Counters>,
    limiter: Arc<dyn RateLimiter>,
    source: Arc<dyn SnapshotSource>,
    history: Arc<dyn SpendHistory>,
    sink: Arc<dyn EventSink>,
    ledger: Ledger,
    /// Health guards beyond `snapshot` and `tls`.
    guards: Vec<(&'static str, Arc<AtomicBool>)>,
    /// The counters prime an unknown counter themselves before reserving.
    counters_prime_lazily: bool,
    /// How long the snapshot may go unconfirmed, and how often it is checked.
    max_staleness: Option<Duration>,
    resync: Duration,
    /// Background tasks of the backends, stopped at shutdown.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The distributed replica's report to `caracal cache status`, and the
    /// `redis` health guard it keeps.
    report: Option<(ConnectionManager, Keys, Arc<AtomicBool>)>,
}

/// Who writes the ledger, for shutdown.
enum Ledger {
    Embedded {
        writer: LedgerWriter,
        sqlite: SqliteStore,
        /// Seals the Merkle log's batches; told to stop (and seal what is
        /// left) once the writer has drained.
        sealer: (tokio::task::JoinHandle<()>, CancellationToken),
    },
    Kafka {
        publisher: KafkaPublisher,
        postgres: Option<PgStore>,
    },
}

async fn embedded(config: &Config) -> Result<Backends, StartError> {
    let sqlite = SqliteStore::open(&config.database)
        .await
        .map_err(|source| StartError::Store {
            path: config.database.display().to_string(),
            source,
        })?;
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let key = crate::merkle::LedgerKey::load_or_create(&config.ledger_key)?;
    let (writer, sink) = LedgerWriter::start(store.clone());
    let stop_sealing = CancellationToken::new();
    let sealer = crate::merkle::seal::spawn(
        Arc::new(sqlite.clone()),
        key,
        crate::merkle::seal::Policy::of(config),
        stop_sealing.clone(),
    );
    Ok(Backends {
        counters: Arc::new(InProcessCounters::default()),
        limiter: Arc::new(InProcessRateLimiter::new()),
        source: Arc::new(StoreSource::new(store.clone())),
        history: Arc::new(store),
        sink: Arc::new(sink),
        guards: vec![("ledger", writer.healthy())],
        ledger: Ledger::Embedded {
            writer,
            sqlite,
            sealer: (sealer, stop_sealing),
        },
        counters_prime_lazily: false,
        max_staleness: None,
        resync: REFRESH_INTERVAL,
        tasks: Vec::new(),
        report: None,
    })
}

/// A replica of the distributed deployment: state, budgets and rate limits
/// in Redis, spend events to Kafka (spooled locally while it cannot take
/// them). PostgreSQL, if configured, is read only to prime a budget
/// counter Redis does not know.
async fn distributed(config: &Config, d: &Distributed) -> Result<Backends, StartError> {
    let need = |s| {
        d.need(s)
            .map_err(|e| StartError::Distributed(e.to_string()))
    };
    let redis_url = need(Service::Redis)?;
    let brokers = need(Service::Kafka)?;
    let redis = |e: crate::shared::SharedError| {
        StartError::Distributed(format!(
            "Redis at {}: {e}",
            caracal_config::redact_url(&redis_url)
        ))
    };
    let conn = crate::shared::connect(&redis_url).await.map_err(redis)?;
    let keys = Keys::new(&d.redis_prefix).map_err(redis)?;
    let clock = RedisClock::sync(&conn).await.map_err(|e| redis(e.into()))?;
    let mut tasks = vec![clock.install(conn.clone())];
    let postgres = match &d.postgres_url {
        Some(url) => Some(
            PgStore::connect(url)
                .await
                .map_err(|source| StartError::Store {
                    path: caracal_config::redact_url(url),
                    source,
                })?,
        ),
        None => None,
    };
    // The per-minute spend aggregates the ledger writers keep: one indexed
    // range read per counter primed.
    let history: Arc<dyn SpendHistory> = match &postgres {
        Some(pg) => Arc::new(pg.clone()),
        None => Arc::new(NoLedger),
    };
    crate::kafka::describe_metrics();
    let source = RedisSource::new(&redis_url, conn.clone(), &keys).map_err(|e| redis(e.into()))?;
    let mut kafka = KafkaConfig::new(brokers, &d.spool_dir);
    kafka.spool_max_bytes = d.spool_max_bytes;
    let (publisher, sink) = KafkaPublisher::start(kafka)
        .map_err(|e| StartError::Distributed(format!("spend events: {e}")))?;
    let sink = Arc::new(sink);
    let events = Arc::new(AtomicBool::new(true));
    let redis_ok = Arc::new(AtomicBool::new(true));
    tasks.push(watch(events.clone(), {
        let sink = sink.clone();
        move || sink.accepting()
    }));
    Ok(Backends {
        counters: Arc::new(RedisCounters::new(
            conn.clone(),
            keys.clone(),
            SignedDuration::try_from(d.hold_ttl).unwrap_or(DEFAULT_HOLD_TTL),
            history.clone(),
        )),
        limiter: Arc::new(RedisRateLimiter::new(conn.clone(), keys.clone())),
        source: Arc::new(source),
        history,
        sink,
        guards: vec![("events", events), ("redis", redis_ok.clone())],
        ledger: Ledger::Kafka {
            publisher,
            postgres,
        },
        counters_prime_lazily: true,
        max_staleness: Some(config.snapshot_max_staleness),
        resync: config.snapshot_resync,
        tasks,
        report: Some((conn, keys, redis_ok)),
    })
}

/// Sets `flag` to `check()` every 100 ms.
fn watch(
    flag: Arc<AtomicBool>,
    check: impl Fn() -> bool + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            flag.store(check(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// A replica configured without PostgreSQL cannot prime a budget counter
/// Redis lost: its principal's calls are refused until it is primed.
struct NoLedger;

impl SpendHistory for NoLedger {
    fn spend_since(
        &self,
        _principal: &str,
        _since_ms: i64,
    ) -> crate::budget::counters::BoxFuture<
        Result<Vec<crate::store::Spend>, crate::snapshot::SourceError>,
    > {
        Box::pin(std::future::ready(Err(crate::snapshot::SourceError(
            "this replica has no deployment.postgres_url to prime budget counters from".into(),
        ))))
    }
}

/// Starts a gateway with `config`; returns once both listeners are bound.
pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
    let backends = match &config.deployment {
        Deployment::Embedded => embedded(&config).await?,
        Deployment::Distributed(d) => distributed(&config, d).await?,
    };
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

    let Backends {
        counters,
        limiter,
        source,
        history,
        sink,
        ledger,
        guards,
        counters_prime_lazily,
        max_staleness,
        resync,
        mut tasks,
        report,
    } = backends;
    let loader = Refresher {
        source,
        counters: counters.clone(),
        history,
        allowlist_default: config.allowlist_default,
        counters_prime_lazily,
    };
    let snapshot = loader.load().await.map_err(|e| StartError::Snapshot(e.0))?;
    let cell = Arc::new(ArcSwap::from_pointee(snapshot));
    let fresh = Arc::new(AtomicBool::new(true));
    let refresher = loader.spawn(cell.clone(), resync, fresh.clone(), max_staleness);
    let upstream = Upstream::new(
        config.limits.upstream_connect_timeout,
        config.upstream_ca_file.as_deref(),
    )?;
    let mut health = Health::default();
    health.guard("snapshot", fresh.clone());
    for (name, flag) in guards {
        health.guard(name, flag);
    }
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

    if let Some((conn, keys, redis_ok)) = report {
        tasks.push(report_replica(
            conn,
            keys,
            addr,
            cell.clone(),
            fresh.clone(),
            redis_ok,
        ));
    }

    let shutdown = CancellationToken::new();
    let shared = Arc::new(Shared {
        config,
        snapshot: cell,
        sink,
        minter,
        upstream,
        health,
        tracker: TaskTracker::new(),
        counters,
        limiter,
        snapshot_current: max_staleness.map(|_| fresh.clone()),
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
        ledger,
        refresher,
        tasks,
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
        match &self.ledger {
            Ledger::Embedded { writer, .. } => writer.backlog(),
            Ledger::Kafka { publisher, .. } => publisher.backlog(),
        }
    }

    /// Stops accepting, lets in-flight calls finish (up to 10 s), then
    /// writes every remaining ledger event before returning.
    pub async fn shutdown(self) {
        let Self {
            shared,
            ledger,
            refresher,
            tasks,
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
        for task in tasks {
            task.abort();
        }
        shared.remove_stack();
        drop(shared);
        match ledger {
            Ledger::Embedded {
                writer,
                sqlite,
                sealer: (sealer, stop_sealing),
            } => {
                if tokio::time::timeout(DRAIN, writer.finish()).await.is_err() {
                    tracing::error!("ledger writer did not drain within {DRAIN:?}");
                }
                // The last events are sealed now rather than at the next start.
                stop_sealing.cancel();
                if tokio::time::timeout(DRAIN, sealer).await.is_err() {
                    tracing::error!("the ledger sealer did not finish within {DRAIN:?}");
                }
                sqlite.close().await;
            }
            Ledger::Kafka {
                publisher,
                postgres,
            } => {
                // What Kafka does not take in time stays spooled on disk.
                publisher.finish().await;
                if let Some(pg) = postgres {
                    pg.close().await;
                }
            }
        }
        tracing::info!("caracal gateway stopped");
    }
}

/// Turns transparent huge pages off for this process, first thing in
/// `main`. Where the kernel's THP mode is `always`, every 2 MiB of the
/// allocator's arenas that is touched at all is backed by a whole huge page:
/// about 20 MiB resident at idle (and more per thread) that a proxy holding
/// thousands of small connections gains nothing from. mimalloc does the same
/// when its `allow_thp` option is off. Failing (an old kernel) changes
/// nothing else.
pub fn without_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
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

/// How often a replica reports its snapshot version to Redis.
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Reports this replica's snapshot version for `caracal cache status`;
/// `redis_ok` says whether the last report reached Redis.
fn report_replica(
    conn: ConnectionManager,
    keys: Keys,
    listen: SocketAddr,
    cell: crate::snapshot::SnapshotCell,
    fresh: Arc<AtomicBool>,
    redis_ok: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let replica = format!("{host}/{listen}/{}", std::process::id());
    tokio::spawn(async move {
        loop {
            let report = ReplicaReport {
                replica: replica.clone(),
                version: cell.load().version,
                reported_ms: crate::clock::now().as_millisecond(),
                fresh: fresh.load(Ordering::Relaxed),
            };
            let reached = crate::shared::report_replica(&conn, &keys, &report).await;
            if let Err(e) = &reached {
                tracing::warn!(error = %e, "cannot reach Redis to report this replica's version");
            }
            redis_ok.store(reached.is_ok(), Ordering::Relaxed);
            let pause = if reached.is_ok() {
                REPORT_EVERY
            } else {
                Duration::from_millis(250)
            };
            // A new snapshot or a change of freshness is reported at once.
            let until = tokio::time::Instant::now() + pause;
            while tokio::time::Instant::now() < until
                && cell.load().version == report.version
                && fresh.load(Ordering::Relaxed) == report.fresh
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
}
