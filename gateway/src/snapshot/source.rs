//! The snapshot-source seam: how a gateway learns that the enforcement
//! state changed, and reads it. The embedded deployment polls the SQLite
//! store's state version ([`StoreSource`]); the distributed one reads state
//! published in Redis, woken by pub/sub and resynced periodically. Every
//! implementation passes the conformance suite in
//! `crate::conformance::snapshot_source`.

use std::sync::Arc;
use std::time::Duration;

use crate::budget::counters::BoxFuture;
use crate::store::{StateRows, Store, StoreError};

/// The source could not be read: the snapshot in use can no longer be
/// confirmed current.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot source unavailable: {0}")]
pub struct SourceError(pub String);

impl From<StoreError> for SourceError {
    fn from(e: StoreError) -> Self {
        SourceError(e.to_string())
    }
}

/// Where snapshots come from.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The version of the state the source holds now. It changes whenever
    /// anything a snapshot holds changes.
    fn version(&self) -> BoxFuture<Result<i64, SourceError>>;

    /// The whole state, read consistently (its `version` says which).
    fn load(&self) -> BoxFuture<Result<StateRows, SourceError>>;

    /// Resolves when the state may have changed, or after `max_wait` at
    /// the latest (so a missed notification costs at most one interval).
    fn changed(&self, max_wait: Duration) -> BoxFuture<()>;
}

/// The embedded source: the workspace's store, polled (SQLite cannot
/// notify another process).
#[derive(Clone)]
pub struct StoreSource {
    store: Arc<dyn Store>,
}

impl StoreSource {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

impl SnapshotSource for StoreSource {
    fn version(&self) -> BoxFuture<Result<i64, SourceError>> {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.state_version().await?) })
    }

    fn load(&self) -> BoxFuture<Result<StateRows, SourceError>> {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.load_state().await?) })
    }

    fn changed(&self, max_wait: Duration) -> BoxFuture<()> {
        // SQLite cannot notify another process: poll.
        Box::pin(tokio::time::sleep(max_wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PrincipalKind;
    use crate::store::{NewPrincipal, PrincipalStore, SqliteStore};

    struct Embedded {
        _dir: tempfile::TempDir,
        store: SqliteStore,
        source: StoreSource,
    }

    impl crate::conformance::snapshot_source::Harness for Embedded {
        fn source(&self) -> &dyn SnapshotSource {
            &self.source
        }

        fn change(&self, name: &str) -> BoxFuture<()> {
            let store = self.store.clone();
            let name = name.to_string();
            Box::pin(async move {
                store
                    .register_principal(NewPrincipal {
                        kind: PrincipalKind::Agent,
                        name,
                        email: "a@example.com".into(),
                    })
                    .await
                    .expect("register");
            })
        }
    }

    async fn embedded() -> Embedded {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("state.db"))
            .await
            .expect("store");
        Embedded {
            source: StoreSource::new(Arc::new(store.clone())),
            store,
            _dir: dir,
        }
    }

    crate::snapshot_source_conformance!(embedded);
}
