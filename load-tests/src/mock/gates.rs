//! Named gates that hold a stream back until a test lets it continue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Counting gates by name: each release lets exactly one wait through,
/// whether the release comes before or after the wait.
#[derive(Default)]
pub(crate) struct Gates {
    by_name: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Gates {
    fn gate(&self, name: &str) -> Arc<Semaphore> {
        let mut map = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            map.entry(name.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(0))),
        )
    }

    /// Adds one pass to gate `name`.
    pub(crate) fn release(&self, name: &str) {
        self.gate(name).add_permits(1);
        tracing::debug!(gate = name, "gate released");
    }

    /// Takes one pass from gate `name`; false if none came within `timeout`.
    pub(crate) async fn wait(&self, name: &str, timeout: Duration) -> bool {
        match tokio::time::timeout(timeout, self.gate(name).acquire_owned()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn wait_times_out_without_release() {
        let gates = Gates::default();
        assert!(!gates.wait("g", SHORT).await);
    }

    #[tokio::test]
    async fn releases_are_counted_one_per_wait() {
        let gates = Gates::default();
        gates.release("g");
        gates.release("g");
        assert!(gates.wait("g", SHORT).await);
        assert!(gates.wait("g", SHORT).await);
        assert!(!gates.wait("g", SHORT).await);
    }

    #[tokio::test]
    async fn gates_are_independent() {
        let gates = Gates::default();
        gates.release("a");
        assert!(!gates.wait("b", SHORT).await);
        assert!(gates.wait("a", SHORT).await);
    }
}
