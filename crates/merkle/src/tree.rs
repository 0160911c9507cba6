//! The whole tree in memory: every perfect subtree's root, level by level, so that
//! the root and both proofs can be produced for any size the tree has had.
//!
//! `levels[k][i]` is the root of the perfect subtree over leaves `[i·2^k, (i+1)·2^k)`:
//! level 0 holds the leaf hashes, level 1 the hashes of aligned pairs, and so on, and
//! level `k` always holds exactly `size >> k` hashes (levels above the top may exist
//! empty, reserved by [`MerkleTree::with_capacity`]). Appending pushes one leaf hash
//! and one parent per level it completes (one node hash amortized). Truncating cuts
//! every level to `size >> k`.
//!
//! Every node RFC 6962 names in a tree of `n <= size` leaves is a range `[a, b)`
//! where `a` is a multiple of the smallest power of two not below `b - a`: it is
//! either a perfect subtree (one look-up) or a right-edge node `[a, n)`, which is the
//! fold of the perfect subtrees of its binary decomposition (at most 64 look-ups and
//! 63 hashes). A proof walks O(log n) splits, and only one of its siblings can be a
//! right-edge node (below a left turn everything is perfect), so a root or a proof
//! costs O(log n) look-ups and O(log n) hashes.

use std::fmt;

use thiserror::Error;

use crate::compact::CompactRange;
use crate::hash::{empty_root, fold_right_to_left, leaf_hash, node_hash, Hash};
use crate::proof::{ConsistencyProof, InclusionProof, TreeHead};
use crate::verify::{consistency_proof_len, inclusion_proof_len, ProofError};

/// A request the tree cannot answer. Holds sizes only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TreeError {
    #[error("tree size {requested} is beyond the {size} leaves appended")]
    SizeBeyondTree { requested: u64, size: u64 },
    /// No such proof exists, whatever the tree: the refusal a verifier gives for
    /// the same index or sizes (`IndexOutOfRange`, `SizesOutOfOrder`,
    /// `EmptyOldTree`).
    #[error(transparent)]
    NoSuchProof(#[from] ProofError),
}

/// An append-only RFC 6962 Merkle tree over leaf hashes, answering for every size
/// it has had. See the module doc for the layout and costs.
#[derive(Clone)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

/// Two trees are equal when they hold the same leaves (the levels above follow).
impl PartialEq for MerkleTree {
    fn eq(&self, other: &Self) -> bool {
        self.levels[0] == other.levels[0]
    }
}

impl Eq for MerkleTree {}

impl Default for MerkleTree {
    fn default() -> Self {
        MerkleTree {
            levels: vec![Vec::new()],
        }
    }
}

impl fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleTree")
            .field("size", &self.size())
            .field("root", &self.head().root_hash)
            .finish()
    }
}

impl Extend<Hash> for MerkleTree {
    fn extend<I: IntoIterator<Item = Hash>>(&mut self, leaf_hashes: I) {
        for h in leaf_hashes {
            self.append_leaf_hash(h);
        }
    }
}

impl FromIterator<Hash> for MerkleTree {
    fn from_iter<I: IntoIterator<Item = Hash>>(leaf_hashes: I) -> Self {
        let mut tree = MerkleTree::new();
        tree.extend(leaf_hashes);
        tree
    }
}

impl MerkleTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty tree with room for `leaves` leaves at every level, so that
    /// appending them never reallocates (about `64 × leaves` bytes up front).
    pub fn with_capacity(leaves: usize) -> Self {
        let levels = (0..=usize::BITS - leaves.leading_zeros())
            .map(|k| Vec::with_capacity(leaves >> k))
            .collect();
        MerkleTree { levels }
    }

    /// A tree built from leaf hashes in order: how a writer rebuilds it at start
    /// from the stored records (two SHA-256 per record with the leaf hash).
    pub fn from_leaf_hashes<I: IntoIterator<Item = Hash>>(leaf_hashes: I) -> Self {
        leaf_hashes.into_iter().collect()
    }

    /// The number of leaves appended.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// Appends one leaf, given as its leaf hash ([`leaf_hash`]); returns its index.
    pub fn append_leaf_hash(&mut self, leaf_hash: Hash) -> u64 {
        let index = self.size();
        self.levels[0].push(leaf_hash);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let row = &self.levels[level];
            let parent = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(parent);
        }
        index
    }

    /// Appends one leaf given as its data; returns its index.
    pub fn append_leaf(&mut self, data: &[u8]) -> u64 {
        self.append_leaf_hash(leaf_hash(data))
    }

    /// Appends leaf hashes in order (a committed batch).
    pub fn append_leaf_hashes(&mut self, leaf_hashes: &[Hash]) {
        self.levels[0].reserve(leaf_hashes.len());
        self.extend(leaf_hashes.iter().copied());
    }

    /// Forgets every leaf from `size` on (a writer whose batch did not commit). Does
    /// nothing if the tree is not larger than `size`.
    pub fn truncate(&mut self, size: u64) {
        if size >= self.size() {
            return;
        }
        for (k, row) in self.levels.iter_mut().enumerate() {
            row.truncate(to_index(size >> k));
        }
        while self.levels.len() > 1 && self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// The leaf hash at `index`, if appended.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels[0].get(i).copied())
    }

    /// The current tree head.
    pub fn head(&self) -> TreeHead {
        TreeHead {
            size: self.size(),
            root_hash: self.range_root(0, self.size()),
        }
    }

    /// `MTH(D[0:size])`: the root when the tree had `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, TreeError> {
        self.check_size(size)?;
        Ok(self.range_root(0, size))
    }

    /// The tree head when the tree had `size` leaves.
    pub fn tree_head(&self, size: u64) -> Result<TreeHead, TreeError> {
        Ok(TreeHead {
            size,
            root_hash: self.root(size)?,
        })
    }

    /// The audit path of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, TreeError> {
        self.check_size(size)?;
        let len = inclusion_proof_len(index, size)?;
        // Walk down from the root, taking the sibling of the half that holds the leaf.
        let (mut start, mut end) = (0, size);
        let mut path = Vec::with_capacity(len);
        while end - start > 1 {
            let mid = start + split(end - start);
            if index < mid {
                path.push(self.range_root(mid, end));
                end = mid;
            } else {
                path.push(self.range_root(start, mid));
                start = mid;
            }
        }
        debug_assert_eq!(path.len(), len);
        path.reverse();
        Ok(InclusionProof {
            leaf_index: index,
            tree_size: size,
            inclusion_path: path,
        })
    }

    /// The proof that the tree of `old_size` leaves is a prefix of the tree of
    /// `new_size` leaves (RFC 6962 §2.1.2). Empty when the sizes are equal; an old
    /// size of 0 is refused, as [`crate::verify_consistency`] refuses it.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, TreeError> {
        self.check_size(new_size)?;
        let len = consistency_proof_len(old_size, new_size)?;
        // SUBPROOF(m, D[start:end], whole_old_tree) of RFC 6962, unrolled: `old_size`
        // stays an absolute leaf count, the range narrows around it.
        let (mut start, mut end) = (0, new_size);
        let mut whole_old_tree = true;
        let mut path = Vec::with_capacity(len);
        while old_size != end {
            let mid = start + split(end - start);
            if old_size <= mid {
                path.push(self.range_root(mid, end));
                end = mid;
            } else {
                path.push(self.range_root(start, mid));
                start = mid;
                whole_old_tree = false;
            }
        }
        if !whole_old_tree {
            path.push(self.range_root(start, end));
        }
        debug_assert_eq!(path.len(), len);
        path.reverse();
        Ok(ConsistencyProof {
            old_size,
            new_size,
            consistency_path: path,
        })
    }

    /// The frontier of the tree of `size` leaves, for a writer that goes on from
    /// there without the whole tree.
    pub fn compact_range(&self, size: u64) -> Result<CompactRange, TreeError> {
        self.check_size(size)?;
        let mut hashes: Vec<Hash> = pieces_right_to_left(0, size)
            .map(|(level, index)| self.node(level, index))
            .collect();
        hashes.reverse();
        Ok(CompactRange::from_parts(size, hashes).expect("one hash per set bit of the size"))
    }

    /// Bytes held by the hash arrays (capacity, not length): about 64 per leaf.
    pub fn memory_bytes(&self) -> usize {
        self.levels
            .iter()
            .map(|row| row.capacity() * std::mem::size_of::<Hash>())
            .sum()
    }

    /// Releases the spare capacity the arrays' growth left behind.
    pub fn shrink_to_fit(&mut self) {
        for row in &mut self.levels {
            row.shrink_to_fit();
        }
    }

    fn check_size(&self, size: u64) -> Result<(), TreeError> {
        if size > self.size() {
            return Err(TreeError::SizeBeyondTree {
                requested: size,
                size: self.size(),
            });
        }
        Ok(())
    }

    fn node(&self, level: u32, index: u64) -> Hash {
        self.levels[level as usize][to_index(index)]
    }

    /// `MTH(D[start:end])` for a range that is a node of some tree of this tree's
    /// leaves (see the module doc); the empty root for an empty range.
    fn range_root(&self, start: u64, end: u64) -> Hash {
        fold_right_to_left(
            pieces_right_to_left(start, end).map(|(level, index)| self.node(level, index)),
        )
        .unwrap_or_else(empty_root)
    }
}

/// RFC 6962's split: the largest power of two smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// The perfect subtrees `(level, index at that level)` that make up `[start, end)`,
/// right to left, smallest first, for a `start` that is a multiple of the largest.
fn pieces_right_to_left(start: u64, end: u64) -> impl Iterator<Item = (u32, u64)> {
    let mut width = end - start;
    let mut piece_end = end;
    std::iter::from_fn(move || {
        if width == 0 {
            return None;
        }
        let level = width.trailing_zeros();
        let piece_start = piece_end - (1 << level);
        width &= width - 1;
        piece_end = piece_start;
        Some((level, piece_start >> level))
    })
}

/// A position in a level array. Every index used is below the tree's size, which is
/// the length of a `Vec`, so it fits a `usize`.
fn to_index(i: u64) -> usize {
    i as usize
}
