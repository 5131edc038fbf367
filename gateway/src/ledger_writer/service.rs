//! `caracal-gateway ledger-writer`: one writer of a distributed
//! workspace, with its metrics endpoint, until a stop.

use std::net::SocketAddr;
use std::sync::Arc;

use caracal_config::{Config, ConfigError, Deployment, Service};
use tokio_util::sync::CancellationToken;

use super::{Totals, Writer, WriterConfig, WriterError};
use crate::ops::metrics;
use crate::store::{PgStore, StoreError};

/// Why the writer could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the ledger writer runs only in a distributed workspace (deployment.mode = \"distributed\")")]
    NotDistributed,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("PostgreSQL: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Writer(#[from] WriterError),
    #[error(
        "ledger signing key: {0} (every ledger writer seals batches with the workspace's key: \
             mount it at ledger.signing_key or set CARACAL_LEDGER_KEY_FILE)"
    )]
    LedgerKey(#[from] crate::merkle::MerkleError),
    #[error("binding the metrics listener {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Connects to the workspace's PostgreSQL (migrating it) and Kafka, serves
/// `/metrics` on `metrics_listen` (the workspace's by default), and writes
/// until `stop`; then finishes the batch in hand and returns.
pub async fn run(
    config: &Config,
    metrics_listen: Option<SocketAddr>,
    stop: CancellationToken,
) -> Result<Totals, ServiceError> {
    let Deployment::Distributed(services) = &config.deployment else {
        return Err(ServiceError::NotDistributed);
    };
    let postgres = services.need(Service::Postgres)?;
    let brokers = services.need(Service::Kafka)?;
    // Read, never made here: every writer must sign with the same key.
    let key = crate::merkle::LedgerKey::load(&config.ledger_key)?;
    let store = PgStore::connect(&postgres).await?;
    store.migrate().await?;

    let addr = metrics_listen.unwrap_or(config.metrics_listen);
    let listener = metrics::bind(addr)
        .await
        .map_err(|source| ServiceError::Metrics { addr, source })?;
    // The writer has no budgets to report.
    let budgets: metrics::BudgetReport = Arc::new(|_: &str| {
        Box::pin(async {
            serde_json::json!({"error": "not_found", "message": "a ledger writer holds no budgets"})
        })
    });
    tokio::spawn(metrics::serve(
        listener,
        metrics::install(),
        budgets,
        stop.clone(),
    ));

    let sealing = store.clone();
    let writer = Writer::new(WriterConfig::new(brokers), store).await?;
    tracing::info!(
        postgres = %caracal_config::redact_url(&postgres), metrics = %addr,
        "ledger writer consuming {} in group {}", super::EVENTS_TOPIC, super::GROUP
    );
    // Sealing takes the database's advisory lock: with several writers,
    // one seals at a time, in one order.
    let stop_sealing = CancellationToken::new();
    let sealer = crate::merkle::seal::spawn(
        Arc::new(sealing),
        key,
        crate::merkle::seal::Policy::of(config),
        stop_sealing.clone(),
    );
    let totals = writer.run(stop).await;
    stop_sealing.cancel();
    let _ = sealer.await;
    tracing::info!(?totals, "ledger writer stopped");
    Ok(totals)
}
