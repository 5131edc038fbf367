//! The ledger's Merkle tree, RFC 6962 / RFC 9162 shape, kept as the
//! "stored hashes" of Crosby and Wallach (as Go's `sumdb/tlog`, which the
//! `tlog_tiles` crate ports): every complete subtree's hash at a dense
//! index, so appending a leaf writes about two hashes and a root, an
//! inclusion proof or a consistency proof reads O(log n) of them.
//!
//! Nothing here trusts the stored hashes it is given: appending checks
//! that the frontier it extends hashes to the root a signed checkpoint
//! names, and every node it needs beyond that frontier it computes.

use std::collections::HashMap;

use tlog_tiles::{
    stored_hash_index, stored_hashes_for_record_hash, sub_tree_index, tree_hash, Hash, HashReader,
};

/// The stored indexes of the complete subtrees a tree of `size` leaves is
/// made of (its frontier): what its root, and every leaf appended after
/// it, are computed from.
pub fn frontier_indexes(size: u64) -> Vec<u64> {
    if size == 0 {
        return Vec::new();
    }
    sub_tree_index(0, size, Vec::new())
}

/// Stored hashes known by index: read from the database or computed.
#[derive(Debug, Default, Clone)]
pub struct Hashes(pub HashMap<u64, Hash>);

impl HashReader for Hashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// The root of the tree of `size` leaves whose frontier `hashes` holds.
pub fn root(size: u64, hashes: &Hashes) -> Result<Hash, tlog_tiles::Error> {
    tree_hash(size, hashes)
}

/// What appending leaves to a tree gives: the hashes to store (by index)
/// and the new root.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub stored: Vec<(u64, Hash)>,
    pub root: Hash,
    pub size: u64,
}

/// Appends `leaves` to the tree of `size` leaves whose frontier is in
/// `frontier`, computing every other node.
pub fn append(
    size: u64,
    frontier: &Hashes,
    leaves: &[Hash],
) -> Result<Appended, tlog_tiles::Error> {
    let mut known = Hashes(
        frontier_indexes(size)
            .into_iter()
            .map(|i| {
                frontier
                    .0
                    .get(&i)
                    .map(|h| (i, *h))
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect::<Result<_, _>>()?,
    );
    let mut stored = Vec::with_capacity(leaves.len() * 2);
    for (k, leaf) in leaves.iter().enumerate() {
        let n = size + k as u64;
        let hashes = stored_hashes_for_record_hash(n, *leaf, &known)?;
        let first = stored_hash_index(0, n);
        for (j, h) in hashes.into_iter().enumerate() {
            let index = first + j as u64;
            known.0.insert(index, h);
            stored.push((index, h));
        }
    }
    let end = size + leaves.len() as u64;
    Ok(Appended {
        root: tree_hash(end, &known)?,
        stored,
        size: end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_tiles::{node_hash, record_hash};

    /// RFC 6962's MTH, straight from its definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => tlog_tiles::EMPTY_HASH,
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(mth(&leaves[..k]), mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| record_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn appending_in_batches_gives_rfc_6962_roots() {
        let all = leaves(70);
        for batch in [1, 2, 3, 7, 16, 70] {
            let mut db = Hashes::default();
            let mut size = 0u64;
            for chunk in all.chunks(batch) {
                let a = append(size, &db, chunk).unwrap();
                db.0.extend(a.stored.iter().copied());
                size = a.size;
                assert_eq!(
                    a.root,
                    mth(&all[..size as usize]),
                    "batch {batch}, size {size}"
                );
                assert_eq!(root(size, &db).unwrap(), a.root);
            }
        }
    }

    #[test]
    fn a_missing_frontier_hash_is_an_error_not_a_guess() {
        let all = leaves(5);
        let a = append(0, &Hashes::default(), &all).unwrap();
        let mut db = Hashes(a.stored.into_iter().collect());
        let idx = frontier_indexes(5);
        db.0.remove(&idx[0]);
        assert!(append(5, &db, &leaves(1)).is_err());
        assert!(root(5, &db).is_err());
    }
}
