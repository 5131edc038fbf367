//! `caracal-gateway ledger-writer`: one writer of a distributed
//! workspace, with its metrics endpoint, until a stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use caracal_config::{Config, ConfigError, Deployment, Service};
use tokio_util::sync::CancellationToken;

use super::{Totals, Writer, WriterConfig, WriterError};
use crate::kafka::admin::AdminError;
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
    let Some(writer) = start(&brokers, store, &stop).await? else {
        tracing::info!("ledger writer stopped before it reached Kafka");
        return Ok(Totals::default());
    };
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

/// The longest wait between two attempts to reach Kafka at start.
const START_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Makes the writer, waiting for the broker while it cannot be reached
/// (a writer started before its broker, or during an outage, waits for it
/// as one already running does) and giving up only on errors no retry
/// mends. None when `stop` came first.
async fn start(
    brokers: &str,
    store: PgStore,
    stop: &CancellationToken,
) -> Result<Option<Writer>, WriterError> {
    let mut delay = Duration::from_millis(500);
    loop {
        let attempt = tokio::select! {
            w = Writer::new(WriterConfig::new(brokers), store.clone()) => w,
            _ = stop.cancelled() => return Ok(None),
        };
        match attempt {
            Ok(w) => return Ok(Some(w)),
            Err(e) if unreachable(&e) => {
                tracing::warn!(error = %e, "ledger writer: Kafka at {brokers} cannot be reached; retrying in {delay:?}");
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return Ok(None),
        }
        delay = (delay * 2).min(START_BACKOFF_MAX);
    }
}

/// Whether `e` says only that the broker did not answer (yet).
fn unreachable(e: &WriterError) -> bool {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let code = match e {
        WriterError::Topics(AdminError::Client(k)) | WriterError::Kafka(k) => match k {
            KafkaError::AdminOp(c) | KafkaError::MetadataFetch(c) => *c,
            _ => return false,
        },
        WriterError::Topics(AdminError::Topic { code, .. }) => *code,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotController
            | RDKafkaErrorCode::CoordinatorNotAvailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    #[test]
    fn only_a_broker_that_did_not_answer_is_waited_for() {
        let admin = |c| WriterError::Topics(AdminError::Client(KafkaError::AdminOp(c)));
        assert!(unreachable(&admin(RDKafkaErrorCode::OperationTimedOut)));
        assert!(unreachable(&admin(RDKafkaErrorCode::AllBrokersDown)));
        assert!(unreachable(&WriterError::Topics(AdminError::Topic {
            name: "caracal.dlq".into(),
            code: RDKafkaErrorCode::NotController,
        })));
        // Refusals a retry does not mend end the start.
        assert!(!unreachable(&admin(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(!unreachable(&WriterError::Topics(AdminError::Topic {
            name: "caracal.dlq".into(),
            code: RDKafkaErrorCode::InvalidReplicationFactor,
        })));
        assert!(!unreachable(&WriterError::Topics(AdminError::Invalid {
            name: "caracal.dlq".into(),
            what: "partitions",
        })));
        assert!(!unreachable(&WriterError::Kafka(
            KafkaError::ClientCreation("bad bootstrap.servers".into())
        )));
    }
}
