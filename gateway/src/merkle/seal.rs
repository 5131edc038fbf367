//! Sealing: the oldest pending events become the next batch, their leaves
//! appended to the tree and the new tree head signed. A batch is due when
//! `ledger.batch_events` events wait or the oldest has waited
//! `ledger.batch_age_secs`; `caracal merkle seal` seals whatever waits.
//!
//! Before extending the tree, sealing checks that the stored tree is the
//! one the last checkpoint signed (its frontier hashes to the signed
//! root): a sealer never signs an extension of a rewritten history.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, LedgerKey};
use super::{tree, MerkleError};
use crate::store::{Batch, Due, MerkleStore, Sealed, Sealing};

/// When batches are sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_events: usize,
    pub max_age: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_events: 1000,
            max_age: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// The policy a workspace's configuration sets.
    pub fn of(config: &caracal_config::Config) -> Self {
        Self {
            max_events: config.ledger_batch_events,
            max_age: config.ledger_batch_age,
        }
    }
}

/// Seals `input` with `key` at `now` (the store calls this under its
/// sealing lock).
pub fn seal_with(key: &LedgerKey, input: Sealing, now: Timestamp) -> Result<Sealed, String> {
    let frontier = tree::Hashes(
        input
            .frontier
            .iter()
            .map(|(k, v)| (*k, tlog_tiles::Hash(*v)))
            .collect(),
    );
    if let Some(last) = &input.last {
        let signed = checkpoint::verify(&last.checkpoint, key.public_key()).map_err(|e| {
            let m = format!(
                "the last checkpoint (batch {}) does not verify with this workspace's ledger key: {e}; \
                 run `caracal merkle verify-range`",
                last.id
            );
            super::failed(Some(&last.id), "signature", &m);
            m
        })?;
        let stored = tree::root(input.size, &frontier).ok();
        if signed.size != input.size || stored != Some(signed.root) {
            let m = format!(
                "the stored tree does not match the last checkpoint (batch {}, {} leaves): \
                 it may have been tampered with; run `caracal merkle verify-range`",
                last.id, signed.size
            );
            super::failed(Some(&last.id), "frontier", &m);
            return Err(m);
        }
    } else if input.size != 0 {
        return Err("the tree has leaves but no checkpoint".into());
    }
    let leaves: Vec<tlog_tiles::Hash> = input
        .leaves
        .iter()
        .map(|l| tlog_tiles::Hash(l.hash))
        .collect();
    let appended = tree::append(input.size, &frontier, &leaves).map_err(|e| e.to_string())?;
    let note = key
        .sign(appended.size, appended.root, now)
        .map_err(|e| e.to_string())?;
    let first_ts_ms = input.leaves.iter().map(|l| l.ts_ms).min().unwrap_or(0);
    let last_ts_ms = input.leaves.iter().map(|l| l.ts_ms).max().unwrap_or(0);
    Ok(Sealed {
        batch: Batch {
            number: input.last.as_ref().map_or(0, |b| b.number + 1),
            id: uuid::Uuid::now_v7().to_string(),
            start: input.size,
            end: appended.size,
            root: appended.root.0,
            checkpoint: note,
            first_ts_ms,
            last_ts_ms,
            sealed_at: now
                .round(jiff::Unit::Millisecond)
                .unwrap_or(now)
                .to_string(),
        },
        stored: appended.stored.into_iter().map(|(k, h)| (k, h.0)).collect(),
    })
}

/// Seals every batch due at `now` (with `force`, everything pending, in
/// batches of at most `policy.max_events`). Returns the batches sealed.
pub async fn seal_due(
    store: &dyn MerkleStore,
    key: &LedgerKey,
    policy: Policy,
    force: bool,
) -> Result<Vec<Batch>, MerkleError> {
    let mut sealed = Vec::new();
    loop {
        let now = crate::clock::now();
        let cut = now
            .checked_sub(jiff::SignedDuration::try_from(policy.max_age).unwrap_or_default())
            .unwrap_or(Timestamp::MIN)
            .as_millisecond();
        let due = Due {
            max_events: policy.max_events.max(1),
            oldest_at_or_before_ms: (!force).then_some(cut),
        };
        let seal = |input: Sealing| seal_with(key, input, crate::clock::now());
        match store.seal_pending(due, &seal).await? {
            Some(b) => {
                metrics::counter!("caracal_merkle_batches_sealed_total").increment(1);
                metrics::gauge!("caracal_merkle_tree_size").set(b.end as f64);
                tracing::info!(batch = %b.id, number = b.number, size = b.end, "sealed a ledger batch");
                sealed.push(b);
            }
            None => return Ok(sealed),
        }
    }
}

/// How often the sealer looks for a due batch.
const TICK: Duration = Duration::from_secs(1);

/// Seals due batches every second until `stop`, then everything pending
/// (what the last writes left). A failure is logged, counted
/// (`caracal_merkle_seal_failures_total`) and retried at the next tick;
/// the events stay pending meanwhile, nothing is lost.
pub fn spawn(
    store: Arc<dyn MerkleStore>,
    key: LedgerKey,
    policy: Policy,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                () = tokio::time::sleep(TICK) => false,
            };
            if let Err(e) = seal_due(&*store, &key, policy, stopping).await {
                metrics::counter!("caracal_merkle_seal_failures_total").increment(1);
                tracing::error!(error = %e, "cannot seal the ledger; its events wait");
            }
            if stopping {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_the_workspace_configuration() {
        let config = caracal_config::Config::parse(
            "[ledger]\nbatch_events = 7\nbatch_age_secs = 3",
            std::path::Path::new("/ws/config.toml"),
        )
        .unwrap();
        assert_eq!(
            Policy::of(&config),
            Policy {
                max_events: 7,
                max_age: Duration::from_secs(3)
            }
        );
    }
}
