//! The [`SnapshotSource`] contract: the version moves whenever the state
//! changes, and only then; `load` returns the state at a version no older
//! than one read before it; `changed` resolves within its wait.

use std::future::Future;
use std::time::Duration;

use crate::budget::counters::BoxFuture;
use crate::snapshot::SnapshotSource;

/// A source under test, and a way to change the state behind it.
pub trait Harness: Send + Sync + 'static {
    fn source(&self) -> &dyn SnapshotSource;
    /// Makes one change to the enforcement state (e.g. registers a
    /// principal named `name`), committed when the future resolves.
    fn change(&self, name: &str) -> BoxFuture<()>;
}

/// Waits (at most 5 s) until the source's version differs from `from`.
async fn moved<H: Harness>(h: &H, from: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v = h.source().version().await.expect("version");
        if v != from || tokio::time::Instant::now() >= deadline {
            return v;
        }
        h.source().changed(Duration::from_millis(50)).await;
    }
}

/// A change moves the version; nothing else does.
pub async fn changes_move_the_version<H: Harness, F: Future<Output = H>>(make: impl Fn() -> F) {
    let h = make().await;
    let v0 = h.source().version().await.expect("version");
    assert_eq!(
        h.source().version().await.expect("version"),
        v0,
        "stable without changes"
    );
    h.change("first").await;
    let v1 = moved(&h, v0).await;
    assert_ne!(v1, v0, "a change moves the version");
    h.change("second").await;
    let v2 = moved(&h, v1).await;
    assert_ne!(v2, v1);
}

/// `load` sees the state at least as new as the version read before it.
pub async fn load_is_at_least_as_new_as_the_version<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    h.change("visible").await;
    let v = h.source().version().await.expect("version");
    let rows = h.source().load().await.expect("load");
    assert!(
        rows.version >= v,
        "loaded {} after reading {v}",
        rows.version
    );
    assert!(
        rows.principals.iter().any(|(p, _)| p.name == "visible"),
        "the change is in the rows"
    );
}

/// `changed` resolves within its wait even when nothing changes.
pub async fn changed_resolves_within_its_wait<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let waited = tokio::time::timeout(
        Duration::from_secs(2),
        h.source().changed(Duration::from_millis(100)),
    )
    .await;
    assert!(waited.is_ok(), "changed() did not resolve within its wait");
}

/// Instantiates every case of the snapshot-source suite: `$make` is an
/// expression of type `Fn() -> impl Future<Output = impl Harness>`.
#[macro_export]
macro_rules! snapshot_source_conformance {
    ($make:expr) => {
        $crate::conformance_cases!(snapshot_source, $make;
            changes_move_the_version,
            load_is_at_least_as_new_as_the_version,
            changed_resolves_within_its_wait,
        );
    };
}
