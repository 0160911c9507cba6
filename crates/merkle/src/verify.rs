//! Proof verification without the tree, as an auditor's tool or a data subject runs
//! it: the algorithms of RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency),
//! which check the proofs RFC 6962 §2.1.1 and §2.1.2 define.
//!
//! Both walk the proof bottom-up with two cursors, `fn` (the node being proved)
//! and `sn` (the last node of the tree), shifted right one level per step: the
//! low bit of `fn` says whether the sibling is on the left, and `fn == sn` means the
//! node is on the right edge, where a level may have no sibling at all. Everything
//! here is public data (roots, proofs), so comparisons need not be constant-time.
//!
//! A proof binds a leaf (or an old root) to a root; the tree *size* only shapes the
//! walk. Two sizes can give the same shape (index 0 has the same path in trees of 5
//! and of 7 leaves), so a proof made for one size can verify at the other against
//! the same root. That is inherent to RFC 6962: the size is bound to the root by the
//! signed tree head, which is why [`crate::InclusionProof::verify`] and
//! [`crate::ConsistencyProof::verify`] take [`crate::TreeHead`]s.

use thiserror::Error;

use crate::hash::{node_hash, Hash};

/// Why a proof was not accepted. Holds sizes and counts only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyOldTree,
    #[error("the proof has {got} hashes, these sizes need {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the proof is for tree size {proof}, the tree head has size {head}")]
    HeadSizeMismatch { proof: u64, head: u64 },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("the proof does not lead to the old root")]
    OldRootMismatch,
    #[error("the proof does not lead to the new root")]
    NewRootMismatch,
}

/// Checks that the leaf whose hash is `leaf_hash` is at `index` in the tree of
/// `size` leaves whose root is `root`, given its audit path (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let want = inclusion_proof_len(index, size)?;
    check_len(proof, want)?;
    let mut r = *leaf_hash;
    let ends_at_root = walk(index, size - 1, proof, |sibling, on_left| {
        r = if on_left {
            node_hash(sibling, &r)
        } else {
            node_hash(&r, sibling)
        };
    });
    if !ends_at_root {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the
/// tree of `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots. An old size of 0 is refused
/// (`EmptyOldTree`): every tree extends the empty one, so such a proof would say
/// nothing about `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let want = consistency_proof_len(old_size, new_size)?;
    check_len(proof, want)?;
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::NewRootMismatch)
        };
    }
    // Step 2: if the old tree is a perfect subtree, its root is the first node of the
    // walk and the proof leaves it out.
    let (seed, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    // Step 4: start above the levels where the old tree's last leaf is a right child.
    let shift = (old_size - 1).trailing_ones();
    let (mut fr, mut sr) = (seed, seed);
    let ends_at_root = walk(
        (old_size - 1) >> shift,
        (new_size - 1) >> shift,
        rest,
        |sibling, on_left| {
            if on_left {
                fr = node_hash(sibling, &fr);
                sr = node_hash(sibling, &sr);
            } else {
                sr = node_hash(&sr, sibling);
            }
        },
    );
    if !ends_at_root {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

/// The walk both RFC 9162 algorithms share: for each hash of `path`, bottom-up,
/// calls `step(hash, on_left)` with whether that sibling is on the left of the node
/// `fn_` (then the node is a right child or on the right edge), and climbs. Returns
/// whether the walk ended at the root (`sn == 0`) exactly when the path ran out.
fn walk(mut fn_: u64, mut sn: u64, path: &[Hash], mut step: impl FnMut(&Hash, bool)) -> bool {
    for sibling in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            step(sibling, true);
            // On the right edge: skip the levels where the node has no sibling.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            step(sibling, false);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0
}

fn check_len(proof: &[Hash], want: usize) -> Result<(), ProofError> {
    if proof.len() == want {
        Ok(())
    } else {
        Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        })
    }
}

/// The number of hashes in the audit path of leaf `index` in a tree of `size`: one
/// per level below the point where the leaf's path leaves the right edge (`inner`:
/// the bits in which `index` and `size - 1` differ), plus one per left sibling on
/// the right edge above it (the set bits of `index` above `inner`).
pub(crate) fn inclusion_proof_len(index: u64, size: u64) -> Result<usize, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    Ok((inner + border) as usize)
}

/// The number of hashes in the consistency proof from `old_size` to `new_size`:
/// the audit path of the old tree's last leaf in the new tree, where the levels
/// below the old tree's last perfect subtree collapse into that subtree's root
/// (one hash), which itself is left out when it is the whole old tree.
pub(crate) fn consistency_proof_len(old_size: u64, new_size: u64) -> Result<usize, ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if old_size == new_size {
        return Ok(0);
    }
    let path = inclusion_proof_len(old_size - 1, new_size)?;
    let below = old_size.trailing_zeros() as usize;
    let seed = usize::from(!old_size.is_power_of_two());
    Ok(path - below + seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_lengths_of_small_trees() {
        assert_eq!(inclusion_proof_len(0, 1), Ok(0));
        assert_eq!(inclusion_proof_len(0, 5), Ok(3));
        assert_eq!(inclusion_proof_len(4, 5), Ok(1));
        assert_eq!(inclusion_proof_len(2, 3), Ok(1));
        assert_eq!(inclusion_proof_len(5, 8), Ok(3));
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), Ok(63));
        assert_eq!(inclusion_proof_len(0, u64::MAX), Ok(64));
        assert_eq!(consistency_proof_len(6, 8), Ok(3));
        assert_eq!(consistency_proof_len(2, 5), Ok(2));
        assert_eq!(consistency_proof_len(1, 8), Ok(3));
        assert_eq!(consistency_proof_len(6, 7), Ok(3));
        assert_eq!(consistency_proof_len(4, 4), Ok(0));
        assert_eq!(consistency_proof_len(0, 4), Err(ProofError::EmptyOldTree));
    }
}
