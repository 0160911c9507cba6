//! The serializable forms the API serves and an auditor's tool reads back: a tree
//! head and the two proofs, with every hash as 64 hex digits.
//!
//! ```json
//! {"size": 8, "root_hash": "5dc9da79..."}
//! {"leaf_index": 5, "tree_size": 8, "inclusion_path": ["bc1a0643...", "..."]}
//! {"old_size": 6, "new_size": 8, "consistency_path": ["0ebc5d34...", "..."]}
//! ```
//!
//! No signing here: a signed tree head is another crate's `TreeHead` plus a signature
//! over its canonical bytes.

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::verify::{verify_consistency, verify_inclusion, ProofError};

/// The root of the tree of the first `size` leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    pub size: u64,
    pub root_hash: Hash,
}

/// The audit path of leaf `leaf_index` in the tree of `tree_size` leaves, leaf level
/// first (RFC 6962 §2.1.1 `PATH(m, D[n])`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub inclusion_path: Vec<Hash>,
}

impl InclusionProof {
    /// Checks the proof against a tree head (normally one whose signature the caller
    /// has checked): the head's size must be the proof's, then
    /// [`verify_inclusion`] with the head's size and root.
    pub fn verify(&self, leaf_hash: &Hash, head: &TreeHead) -> Result<(), ProofError> {
        same_size(self.tree_size, head)?;
        verify_inclusion(
            leaf_hash,
            self.leaf_index,
            head.size,
            &self.inclusion_path,
            &head.root_hash,
        )
    }
}

/// The proof that the tree of `old_size` leaves is a prefix of the tree of
/// `new_size` leaves (RFC 6962 §2.1.2 `PROOF(m, D[n])`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub consistency_path: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks the proof between two tree heads: their sizes must be the proof's,
    /// then [`verify_consistency`] with their sizes and roots.
    pub fn verify(&self, old: &TreeHead, new: &TreeHead) -> Result<(), ProofError> {
        same_size(self.old_size, old)?;
        same_size(self.new_size, new)?;
        verify_consistency(
            old.size,
            new.size,
            &old.root_hash,
            &new.root_hash,
            &self.consistency_path,
        )
    }
}

fn same_size(proof: u64, head: &TreeHead) -> Result<(), ProofError> {
    if proof == head.size {
        Ok(())
    } else {
        Err(ProofError::HeadSizeMismatch {
            proof,
            head: head.size,
        })
    }
}
