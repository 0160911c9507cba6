//! The frontier of a tree: what a writer needs to go on appending and to compute
//! the current root, without the rest of the tree.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hash::{empty_root, fold_right_to_left, node_hash, Hash};

/// The roots of the perfect subtrees that cover leaves `[0, size)`, largest (leftmost)
/// first: one per set bit of `size`, so never more than 64 hashes (2 KiB). Appending
/// a leaf costs one node hash amortized (as many as the trailing one bits of the old
/// size); the root costs one node hash per hash held, less one.
///
/// Serialized as `{"size": 7, "hashes": ["...", "...", "..."]}`; reading it back
/// checks that the count matches the size.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "Parts")]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

/// A compact range's hashes do not match its size.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a compact range of size {size} holds {want} hashes, not {got}")]
pub struct CompactRangeError {
    pub size: u64,
    pub got: usize,
    pub want: usize,
}

#[derive(Deserialize)]
struct Parts {
    size: u64,
    hashes: Vec<Hash>,
}

impl TryFrom<Parts> for CompactRange {
    type Error = CompactRangeError;
    fn try_from(p: Parts) -> Result<Self, Self::Error> {
        CompactRange::from_parts(p.size, p.hashes)
    }
}

impl CompactRange {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frontier stored earlier (see [`CompactRange::hashes`]). The hashes are taken
    /// on trust; the count must be the number of set bits of `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, CompactRangeError> {
        let want = size.count_ones() as usize;
        if hashes.len() != want {
            return Err(CompactRangeError {
                size,
                got: hashes.len(),
                want,
            });
        }
        Ok(CompactRange { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtree roots, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf, given as its leaf hash ([`crate::leaf_hash`]).
    ///
    /// # Panics
    /// If the range already covers `u64::MAX` leaves.
    pub fn append(&mut self, leaf_hash: Hash) {
        let merges = self.size.trailing_ones();
        self.size = self.size.checked_add(1).expect("tree size overflow");
        self.hashes.push(leaf_hash);
        for _ in 0..merges {
            let right = self.hashes.pop().expect("a merge has two subtrees");
            let left = self.hashes.pop().expect("a merge has two subtrees");
            self.hashes.push(node_hash(&left, &right));
        }
    }

    /// `MTH(D[0:size])`, RFC 6962's root of the leaves appended so far.
    pub fn root(&self) -> Hash {
        fold_right_to_left(self.hashes.iter().rev().copied()).unwrap_or_else(empty_root)
    }
}
