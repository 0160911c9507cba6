//! Properties over random trees of up to a few thousand leaves: every proof the tree
//! makes verifies; any single-bit change to a proof, a root or a leaf hash is
//! rejected; so is any single-bit change to a leaf index; a single-bit change to a
//! size is rejected exactly when it changes the shape of the verifier's walk (when
//! it does not, the verifier does the same computation, so it cannot tell: the size
//! is bound to the root by the signed tree head, see `vectors.rs`).

mod common;

use std::sync::OnceLock;

use common::{consistency_shape, flip, inclusion_shape, leaf_hashes, Reference};
use ledger_merkle::{verify_consistency, verify_inclusion, CompactRange, Hash, MerkleTree};
use proptest::prelude::*;
use proptest::sample::Index;

const MAX: u64 = 5000;

fn shared() -> &'static (Vec<Hash>, MerkleTree) {
    static TREE: OnceLock<(Vec<Hash>, MerkleTree)> = OnceLock::new();
    TREE.get_or_init(|| {
        let leaves = leaf_hashes(MAX);
        let tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        (leaves, tree)
    })
}

fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX).prop_flat_map(|n| (Just(n), 0..n))
}

fn sizes() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX).prop_flat_map(|n| (1..=n, Just(n)))
}

proptest! {
    #[test]
    fn inclusion_proofs_verify_and_changes_fail(
        (n, i) in size_and_index(),
        element in any::<Index>(),
        bit in 0..256usize,
        index_bit in 0..64u32,
        size_bit in 0..64u32,
    ) {
        let (leaves, tree) = shared();
        let leaf = leaves[i as usize];
        let root = tree.root(n).unwrap();
        let proof = tree.inclusion_proof(i, n).unwrap();
        let path = &proof.inclusion_path;
        prop_assert_eq!(path.len(), inclusion_shape(i, n).len());
        prop_assert_eq!(verify_inclusion(&leaf, i, n, path, &root), Ok(()));
        prop_assert_eq!(proof.verify(&leaf, &tree.tree_head(n).unwrap()), Ok(()));

        if !path.is_empty() {
            let mut bad = path.clone();
            let e = element.index(bad.len());
            bad[e] = flip(&bad[e], bit);
            prop_assert!(verify_inclusion(&leaf, i, n, &bad, &root).is_err());
            prop_assert!(verify_inclusion(&leaf, i, n, &path[1..], &root).is_err());
        }
        let mut longer = path.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, i, n, &longer, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, i, n, path, &flip(&root, bit)).is_err());
        prop_assert!(verify_inclusion(&flip(&leaf, bit), i, n, path, &root).is_err());

        let other_index = i ^ (1 << index_bit);
        prop_assert!(verify_inclusion(&leaf, other_index, n, path, &root).is_err());

        let other_size = n ^ (1 << size_bit);
        let same_walk = i < other_size && inclusion_shape(i, other_size) == inclusion_shape(i, n);
        prop_assert_eq!(
            verify_inclusion(&leaf, i, other_size, path, &root).is_ok(),
            same_walk,
            "size {} -> {}", n, other_size
        );
    }

    #[test]
    fn consistency_proofs_verify_and_changes_fail(
        (m, n) in sizes(),
        element in any::<Index>(),
        bit in 0..256usize,
        old_bit in 0..64u32,
        new_bit in 0..64u32,
    ) {
        let (_, tree) = shared();
        let (old, new) = (tree.root(m).unwrap(), tree.root(n).unwrap());
        let proof = tree.consistency_proof(m, n).unwrap();
        let path = &proof.consistency_path;
        prop_assert_eq!(verify_consistency(m, n, &old, &new, path), Ok(()));
        prop_assert_eq!(
            proof.verify(&tree.tree_head(m).unwrap(), &tree.tree_head(n).unwrap()),
            Ok(())
        );

        if !path.is_empty() {
            let mut bad = path.clone();
            let e = element.index(bad.len());
            bad[e] = flip(&bad[e], bit);
            prop_assert!(verify_consistency(m, n, &old, &new, &bad).is_err());
            prop_assert!(verify_consistency(m, n, &old, &new, &path[1..]).is_err());
        }
        let mut longer = path.clone();
        longer.push(new);
        prop_assert!(verify_consistency(m, n, &old, &new, &longer).is_err());
        prop_assert!(verify_consistency(m, n, &flip(&old, bit), &new, path).is_err());
        prop_assert!(verify_consistency(m, n, &old, &flip(&new, bit), path).is_err());

        let walk = consistency_shape(m, n);
        for (m2, n2) in [(m ^ (1 << old_bit), n), (m, n ^ (1 << new_bit))] {
            let same_walk = 0 < m2 && m2 <= n2 && consistency_shape(m2, n2) == walk;
            prop_assert_eq!(
                verify_consistency(m2, n2, &old, &new, path).is_ok(),
                same_walk,
                "sizes {}..{} -> {}..{}", m, n, m2, n2
            );
        }
    }

    #[test]
    fn building_truncating_and_frontiers_agree((a, b) in sizes()) {
        let (leaves, tree) = shared();
        let fresh = MerkleTree::from_leaf_hashes(leaves[..b as usize].iter().copied());
        prop_assert_eq!(fresh.head(), tree.tree_head(b).unwrap());

        let mut batched = MerkleTree::with_capacity(b as usize);
        batched.append_leaf_hashes(&leaves[..a as usize]);
        batched.append_leaf_hashes(&leaves[a as usize..b as usize]);
        prop_assert_eq!(batched.head(), fresh.head());
        prop_assert_eq!(batched.inclusion_proof(a - 1, b), fresh.inclusion_proof(a - 1, b));

        let mut cut = fresh.clone();
        cut.truncate(a);
        prop_assert_eq!(cut.head(), tree.tree_head(a).unwrap());
        prop_assert_eq!(cut.consistency_proof(a, a).unwrap().consistency_path, vec![]);
        cut.extend(leaves[a as usize..b as usize].iter().copied());
        prop_assert_eq!(&cut, &fresh);
        prop_assert_eq!(cut.head(), fresh.head());
        prop_assert_eq!(cut.consistency_proof(a, b), fresh.consistency_proof(a, b));
        prop_assert_eq!(cut.inclusion_proof(b - 1, b), fresh.inclusion_proof(b - 1, b));

        let mut frontier = CompactRange::new();
        for leaf in &leaves[..a as usize] {
            frontier.append(*leaf);
        }
        prop_assert_eq!(&frontier, &tree.compact_range(a).unwrap());
        prop_assert_eq!(frontier.root(), tree.root(a).unwrap());
        let stored = CompactRange::from_parts(a, frontier.hashes().to_vec()).unwrap();
        prop_assert_eq!(stored, frontier);
    }
}

/// The reference and the tree agree on a few larger random trees too (past sizes
/// of the shared tree), beyond the exhaustive 0..=257 of `reference.rs`.
#[test]
fn reference_agrees_on_the_shared_tree_at_a_few_sizes() {
    let (leaves, tree) = shared();
    let reference = Reference::new(leaves.clone());
    for n in [258, 1000, 1023, 1024, 1025, 4095, 4096, 4097, MAX] {
        assert_eq!(tree.root(n), Ok(reference.mth(0, n)));
        for i in [0, 1, n / 3, n / 2, n - 2, n - 1] {
            assert_eq!(
                tree.inclusion_proof(i, n).unwrap().inclusion_path,
                reference.path(i, n)
            );
        }
        for m in [1, 2, 3, n / 2, n - 1, n] {
            assert_eq!(
                tree.consistency_proof(m, n).unwrap().consistency_path,
                reference.proof(m, n)
            );
        }
    }
}

/// Exhaustively for trees of up to 128 leaves: a single-bit change to a size is
/// accepted exactly when the verifier's walk keeps its shape, and that does happen
/// (so the rule the property tests check is not vacuous).
#[test]
fn size_changes_are_accepted_only_when_the_walk_is_the_same() {
    let (leaves, tree) = shared();
    let (mut same_inclusion, mut same_consistency) = (0, 0);
    for n in 1..=128u64 {
        let root = tree.root(n).unwrap();
        for i in 0..n {
            let path = tree.inclusion_proof(i, n).unwrap().inclusion_path;
            for bit in 0..64 {
                let n2 = n ^ (1 << bit);
                let same = i < n2 && inclusion_shape(i, n2) == inclusion_shape(i, n);
                let ok = verify_inclusion(&leaves[i as usize], i, n2, &path, &root).is_ok();
                assert_eq!(ok, same, "leaf {i}, size {n} -> {n2}");
                same_inclusion += usize::from(same);
            }
        }
        for m in 1..=n {
            let old = tree.root(m).unwrap();
            let path = tree.consistency_proof(m, n).unwrap().consistency_path;
            for bit in 0..64 {
                for (m2, n2) in [(m ^ (1 << bit), n), (m, n ^ (1 << bit))] {
                    let same =
                        0 < m2 && m2 <= n2 && consistency_shape(m2, n2) == consistency_shape(m, n);
                    let ok = verify_consistency(m2, n2, &old, &root, &path).is_ok();
                    assert_eq!(ok, same, "sizes {m}..{n} -> {m2}..{n2}");
                    same_consistency += usize::from(same);
                }
            }
        }
    }
    assert!(same_inclusion > 0 && same_consistency > 0);
}
