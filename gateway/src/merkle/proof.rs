//! Inclusion proofs (one event is leaf n of the tree a checkpoint signs)
//! and consistency proofs (the tree one checkpoint signs is a prefix of the
//! tree another signs), RFC 9162 §2.1.3 and §2.1.4, as JSON files that
//! check offline with only the ledger's public key.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tlog_tiles::{Hash, HashReader};

use super::checkpoint::{self, Verified};
use super::{leaf, MerkleError};
use crate::store::{Batch, BatchFilter, MerkleStore};

/// The `format` of an inclusion proof file.
pub const INCLUSION_FORMAT: &str = "caracal-inclusion-proof/v1";
/// The `format` of a consistency proof file.
pub const CONSISTENCY_FORMAT: &str = "caracal-consistency-proof/v1";

/// An event, where it is in the tree, and the path from its leaf to the
/// root a checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub format: String,
    pub event_id: String,
    /// The event's canonical bytes (see `merkle::leaf`), as text.
    pub event: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Sibling hashes from the leaf up, base64.
    pub audit_path: Vec<String>,
    /// The signed checkpoint of the tree of `tree_size` leaves.
    pub checkpoint: String,
}

/// Two checkpoints and the hashes showing the first tree is a prefix of
/// the second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub format: String,
    pub old_size: u64,
    pub new_size: u64,
    pub old_checkpoint: String,
    pub new_checkpoint: String,
    pub proof: Vec<String>,
}

fn b64(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h.0)
}

fn unb64(s: &str) -> Result<Hash, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("a hash is not base64: {e}"))?;
    Ok(Hash(
        bytes
            .try_into()
            .map_err(|_| "a hash is not 32 bytes".to_string())?,
    ))
}

/// A hash reader behind a reference.
struct Reader<'a>(&'a dyn HashReader);

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.read_hashes(indexes)
    }
}

/// Runs a tlog function that reads stored hashes once: first to learn
/// which, then again with them read from the store.
async fn with_hashes<T>(
    store: &dyn MerkleStore,
    f: impl Fn(&Reader<'_>) -> Result<T, tlog_tiles::Error>,
) -> Result<T, MerkleError> {
    struct Wants(std::sync::Mutex<Vec<u64>>);
    impl HashReader for Wants {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(indexes);
            Err(tlog_tiles::Error::IndexesNotInTree)
        }
    }
    let wants = Wants(std::sync::Mutex::new(Vec::new()));
    // `f` reads through a `&dyn`; tlog's functions take a sized reader.
    if let Ok(v) = f(&Reader(&wants)) {
        return Ok(v);
    }
    let indexes = wants.0.into_inner().unwrap_or_else(|e| e.into_inner());
    let found = store.merkle_hashes(&indexes).await?;
    let hashes = super::tree::Hashes(found.into_iter().map(|(k, v)| (k, Hash(v))).collect());
    f(&Reader(&hashes)).map_err(|e| {
        MerkleError::Invalid(format!(
            "the stored tree cannot give a proof ({e}): run `caracal merkle verify-range`"
        ))
    })
}

/// The latest batch, its checkpoint verified.
async fn latest(
    store: &dyn MerkleStore,
    public_key: &str,
) -> Result<(Batch, Verified), MerkleError> {
    let b = store.latest_batch().await?.ok_or_else(|| {
        MerkleError::NotFound("no batch has been sealed yet: run `caracal merkle seal`".into())
    })?;
    let v = signed(&b, public_key)?;
    Ok((b, v))
}

fn signed(b: &Batch, public_key: &str) -> Result<Verified, MerkleError> {
    checkpoint::verify(&b.checkpoint, public_key).map_err(|e| {
        let m = format!("the checkpoint of batch {} does not verify: {e}", b.id);
        super::failed(Some(&b.id), "signature", &m);
        MerkleError::Invalid(m)
    })
}

/// An inclusion proof of `event_id` against the latest checkpoint. The
/// proof is checked before it is returned.
pub async fn prove(
    store: &dyn MerkleStore,
    public_key: &str,
    event_id: &str,
) -> Result<InclusionProof, MerkleError> {
    let index = store.leaf_index(event_id).await?.ok_or_else(|| {
        MerkleError::NotFound(format!(
            "event {event_id} is not in a sealed batch (unknown, or not sealed yet: `caracal merkle seal` seals now)"
        ))
    })?;
    let (batch, head) = latest(store, public_key).await?;
    let leaf = store
        .leaves(index, index + 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| MerkleError::NotFound(format!("leaf {index} has no row")))?;
    let event = leaf
        .event
        .map_err(|e| MerkleError::Invalid(format!("event {event_id}: {e}")))?;
    let bytes = leaf::canonical(&event);
    let path = with_hashes(store, |r| tlog_tiles::prove_record(head.size, index, r)).await?;
    let proof = InclusionProof {
        format: INCLUSION_FORMAT.into(),
        event_id: event_id.to_string(),
        event: String::from_utf8(bytes).map_err(|e| MerkleError::Invalid(e.to_string()))?,
        leaf_index: index,
        tree_size: head.size,
        audit_path: path.iter().map(b64).collect(),
        checkpoint: batch.checkpoint,
    };
    verify_inclusion(&proof, public_key).map_err(|e| {
        let m = format!("event {event_id} does not verify against the latest checkpoint: {e}");
        super::failed(Some(&batch.id), "inclusion", &m);
        MerkleError::Invalid(m)
    })?;
    Ok(proof)
}

/// Checks an inclusion proof with only the public key: the checkpoint's
/// signature, then the event's leaf up the audit path to its root.
pub fn verify_inclusion(p: &InclusionProof, public_key: &str) -> Result<Verified, String> {
    if p.format != INCLUSION_FORMAT {
        return Err(format!(
            "unknown proof format {:?} (expected {INCLUSION_FORMAT})",
            p.format
        ));
    }
    let head = checkpoint::verify(&p.checkpoint, public_key).map_err(|e| e.to_string())?;
    if head.size != p.tree_size {
        return Err(format!(
            "the proof is for a tree of {} leaves, its checkpoint signs {}",
            p.tree_size, head.size
        ));
    }
    if p.leaf_index >= p.tree_size {
        return Err(format!(
            "leaf {} is not in a tree of {} leaves",
            p.leaf_index, p.tree_size
        ));
    }
    let event: serde_json::Value =
        serde_json::from_str(&p.event).map_err(|e| format!("the event is not JSON: {e}"))?;
    if event.get("id").and_then(|v| v.as_str()) != Some(p.event_id.as_str()) {
        return Err(format!("the event in the proof is not {}", p.event_id));
    }
    if p.audit_path.len() > 64 {
        return Err("the audit path is longer than any tree's".into());
    }
    let path = p
        .audit_path
        .iter()
        .map(|s| unb64(s))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = tlog_tiles::record_hash(p.event.as_bytes());
    tlog_tiles::check_record(&path, p.tree_size, head.root, p.leaf_index, leaf)
        .map_err(|_| "the event is not in the tree the checkpoint signs".to_string())?;
    Ok(head)
}

/// Where a consistency proof starts.
#[derive(Debug, Clone)]
pub enum From {
    /// The batch whose tree has this many leaves.
    Size(u64),
    /// A checkpoint saved earlier (a note text).
    Checkpoint(String),
}

/// A consistency proof from `from` to the checkpoint of `to` leaves (the
/// latest when None), checked.
pub async fn consistency(
    store: &dyn MerkleStore,
    public_key: &str,
    from: From,
    to: Option<u64>,
) -> Result<ConsistencyProof, MerkleError> {
    let (new_batch, new) = match to {
        None => latest(store, public_key).await?,
        Some(size) => {
            let b = by_size(store, size).await?;
            let v = signed(&b, public_key)?;
            (b, v)
        }
    };
    let (old_note, old) = match from {
        From::Size(size) => {
            let b = by_size(store, size).await?;
            let v = signed(&b, public_key)?;
            (b.checkpoint, v)
        }
        From::Checkpoint(note) => {
            let v = checkpoint::verify(&note, public_key).map_err(|e| {
                MerkleError::Invalid(format!("the saved checkpoint does not verify: {e}"))
            })?;
            (note, v)
        }
    };
    let fail = |m: String| {
        super::failed(Some(&new_batch.id), "consistency", &m);
        MerkleError::Invalid(m)
    };
    if old.size > new.size {
        return Err(fail(format!(
            "the log has {} leaves, fewer than the {} of the older checkpoint: its history was truncated",
            new.size, old.size
        )));
    }
    let proof = if old.size == 0 || old.size == new.size {
        Vec::new()
    } else {
        with_hashes(store, |r| tlog_tiles::prove_tree(new.size, old.size, r))
            .await
            .map_err(|e| {
                fail(format!(
                    "no consistency proof from {} to {} leaves: {e}",
                    old.size, new.size
                ))
            })?
    };
    let p = ConsistencyProof {
        format: CONSISTENCY_FORMAT.into(),
        old_size: old.size,
        new_size: new.size,
        old_checkpoint: old_note,
        new_checkpoint: new_batch.checkpoint.clone(),
        proof: proof.iter().map(b64).collect(),
    };
    verify_consistency(&p, public_key).map_err(fail)?;
    Ok(p)
}

async fn by_size(store: &dyn MerkleStore, size: u64) -> Result<Batch, MerkleError> {
    store
        .batches(&BatchFilter {
            end: Some(size),
            ..Default::default()
        })
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| MerkleError::NotFound(format!("no checkpoint has a tree of {size} leaves")))
}

/// Checks a consistency proof with only the public key.
pub fn verify_consistency(p: &ConsistencyProof, public_key: &str) -> Result<(), String> {
    if p.format != CONSISTENCY_FORMAT {
        return Err(format!(
            "unknown proof format {:?} (expected {CONSISTENCY_FORMAT})",
            p.format
        ));
    }
    let old = checkpoint::verify(&p.old_checkpoint, public_key)
        .map_err(|e| format!("old checkpoint: {e}"))?;
    let new = checkpoint::verify(&p.new_checkpoint, public_key)
        .map_err(|e| format!("new checkpoint: {e}"))?;
    if (old.size, new.size) != (p.old_size, p.new_size) {
        return Err("the sizes do not match the checkpoints".into());
    }
    if old.size > new.size {
        return Err(format!(
            "the newer checkpoint has {} leaves, fewer than the older's {}",
            new.size, old.size
        ));
    }
    if old.size == new.size {
        return if old.root == new.root {
            Ok(())
        } else {
            Err(
                "two checkpoints of the same size with different roots: the history was rewritten"
                    .into(),
            )
        };
    }
    if old.size == 0 {
        return Ok(());
    }
    if p.proof.len() > 128 {
        return Err("the proof is longer than any tree's".into());
    }
    let proof = p
        .proof
        .iter()
        .map(|s| unb64(s))
        .collect::<Result<Vec<_>, _>>()?;
    tlog_tiles::check_tree(&proof, new.size, new.root, old.size, old.root).map_err(|_| {
        "the older tree is not a prefix of the newer: the history was rewritten".to_string()
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::merkle::LedgerKey;

    fn key() -> LedgerKey {
        static KEY: std::sync::OnceLock<LedgerKey> = std::sync::OnceLock::new();
        KEY.get_or_init(|| LedgerKey::parse(&LedgerKey::generate()).unwrap())
            .clone()
    }

    fn hash(seed: u8) -> String {
        b64(&tlog_tiles::record_hash(&[seed]))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any proof, even under a validly signed checkpoint, is answered
        /// with a verdict: never a panic, never a pass for a made-up path.
        #[test]
        fn made_up_inclusion_proofs_never_panic_or_pass(
            size in prop_oneof![1u64..64, Just(u64::MAX), any::<u64>()],
            index in any::<u64>(),
            path in proptest::collection::vec(any::<u8>(), 0..70),
        ) {
            let k = key();
            let note = k.sign(size, tlog_tiles::record_hash(b"root"), jiff::Timestamp::UNIX_EPOCH).unwrap();
            let p = InclusionProof {
                format: INCLUSION_FORMAT.into(),
                event_id: "e".into(),
                event: r#"{"id":"e"}"#.into(),
                leaf_index: index % size.max(1),
                tree_size: size,
                audit_path: path.iter().map(|s| hash(*s)).collect(),
                checkpoint: note,
            };
            prop_assert!(verify_inclusion(&p, k.public_key()).is_err());
        }

        #[test]
        fn made_up_consistency_proofs_never_panic_or_pass(
            old in any::<u64>(),
            new in any::<u64>(),
            path in proptest::collection::vec(any::<u8>(), 0..130),
        ) {
            let k = key();
            let sign = |n: u64, seed: &[u8]| {
                k.sign(n, tlog_tiles::record_hash(seed), jiff::Timestamp::UNIX_EPOCH).unwrap()
            };
            let p = ConsistencyProof {
                format: CONSISTENCY_FORMAT.into(),
                old_size: old,
                new_size: new,
                old_checkpoint: sign(old, b"a"),
                new_checkpoint: sign(new, b"b"),
                proof: path.iter().map(|s| hash(*s)).collect(),
            };
            // Only the empty tree is a prefix of anything without a proof
            // (equal sizes here have different roots).
            prop_assert_eq!(verify_consistency(&p, k.public_key()).is_ok(), old == 0 && new > 0);
        }
    }

    #[test]
    fn malformed_proof_files_are_refused_with_a_reason() {
        let k = key();
        let note = k
            .sign(
                1,
                tlog_tiles::record_hash(b"x"),
                jiff::Timestamp::UNIX_EPOCH,
            )
            .unwrap();
        let good = InclusionProof {
            format: INCLUSION_FORMAT.into(),
            event_id: "x".into(),
            event: r#"{"id":"x"}"#.into(),
            leaf_index: 0,
            tree_size: 1,
            audit_path: vec![],
            checkpoint: note,
        };
        let cases: Vec<(InclusionProof, &str)> = vec![
            (
                InclusionProof {
                    format: "v0".into(),
                    ..good.clone()
                },
                "unknown proof format",
            ),
            (
                InclusionProof {
                    tree_size: 2,
                    ..good.clone()
                },
                "checkpoint signs",
            ),
            (
                InclusionProof {
                    event: "not json".into(),
                    ..good.clone()
                },
                "not JSON",
            ),
            (
                InclusionProof {
                    event_id: "y".into(),
                    ..good.clone()
                },
                "not y",
            ),
            (
                InclusionProof {
                    audit_path: vec!["%%".into()],
                    ..good.clone()
                },
                "base64",
            ),
            (
                InclusionProof {
                    audit_path: vec!["AAAA".into()],
                    ..good.clone()
                },
                "32 bytes",
            ),
            (
                InclusionProof {
                    checkpoint: "junk".into(),
                    ..good.clone()
                },
                "signed note",
            ),
        ];
        for (p, why) in cases {
            let err = verify_inclusion(&p, k.public_key()).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
        // The leaf of {"id":"x"} is not record_hash("x"): not in the tree.
        assert!(verify_inclusion(&good, k.public_key())
            .unwrap_err()
            .contains("not in the tree"));
    }
}
