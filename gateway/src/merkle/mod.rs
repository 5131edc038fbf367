//! A ledger an auditor can verify: one append-only Merkle tree over every
//! ledger event, in ledger order, RFC 6962 / RFC 9162 shape, sealed in
//! batches into checkpoints signed with the workspace's ledger key (C2SP
//! `tlog-checkpoint`), with inclusion proofs that check offline and
//! consistency proofs between checkpoints.
//!
//! - [`leaf`]: the canonical bytes of an event, what its leaf hashes;
//! - [`tree`]: appending leaves and computing roots from stored hashes;
//! - [`checkpoint`]: the ledger key, signing and verifying checkpoints;
//! - [`seal`]: sealing pending events into batches, and the sealer task;
//! - [`verify`]: recomputing batches from the stored rows;
//! - [`proof`]: inclusion and consistency proofs.
//!
//! `docs/ledger-integrity.md` is the operator's and auditor's guide.

pub mod checkpoint;
pub mod leaf;
pub mod proof;
pub mod seal;
pub mod tree;
pub mod verify;

pub use checkpoint::LedgerKey;

/// What can go wrong outside verification itself (a verification that
/// fails is a report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum MerkleError {
    #[error("{0}")]
    Key(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

impl MerkleError {
    /// A stable code for scripts (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Key(_) => "ledger_key",
            Self::Store(_) => "store",
            Self::NotFound(_) => "not_found",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// Counts a verification failure (`caracal_merkle_verification_failures_total`)
/// and logs it as critical: it may mean the ledger was tampered with.
pub(crate) fn failed(batch: Option<&str>, code: &str, message: &str) {
    metrics::counter!("caracal_merkle_verification_failures_total").increment(1);
    tracing::error!(
        severity = "critical",
        batch = batch.unwrap_or("-"),
        code,
        "ledger verification failed: {message}"
    );
}

/// Counts and logs a proof that did not verify offline (no batch known).
pub fn failed_offline(message: &str) {
    failed(None, "proof", message);
}
