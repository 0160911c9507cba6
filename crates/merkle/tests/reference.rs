//! The tree against RFC 6962's recursive definitions (`common::Reference`) for every
//! tree of 0 to 257 leaves: every root, every inclusion proof, every consistency
//! proof, both from one large tree (past sizes) and from trees of exactly that size.

mod common;

use common::{leaf_hashes, Reference};
use ledger_merkle::{verify_consistency, verify_inclusion, CompactRange, MerkleTree};

const MAX: u64 = 257;

#[test]
fn every_root_and_proof_up_to_257_leaves_is_the_rfcs() {
    let leaves = leaf_hashes(MAX);
    let reference = Reference::new(leaves.clone());
    let big = MerkleTree::from_leaf_hashes(leaves.iter().copied());
    let mut compact = CompactRange::new();

    for n in 0..=MAX {
        let exact = MerkleTree::from_leaf_hashes(leaves[..n as usize].iter().copied());
        let root = reference.mth(0, n);
        assert_eq!(big.root(n), Ok(root), "root({n})");
        assert_eq!(exact.head().root_hash, root, "head of {n}");
        assert_eq!(exact.head().size, n);
        assert_eq!(compact.root(), root, "compact root of {n}");
        assert_eq!(
            big.compact_range(n).as_ref(),
            Ok(&compact),
            "frontier of {n}"
        );

        for i in 0..n {
            let want = reference.path(i, n);
            let got = big.inclusion_proof(i, n).unwrap();
            assert_eq!(got.inclusion_path, want, "PATH({i}, D[{n}])");
            assert_eq!(exact.inclusion_proof(i, n).unwrap(), got);
            verify_inclusion(&leaves[i as usize], i, n, &want, &root)
                .unwrap_or_else(|e| panic!("PATH({i}, D[{n}]) rejected: {e}"));
        }

        for m in 1..=n {
            let want = reference.proof(m, n);
            let got = big.consistency_proof(m, n).unwrap();
            assert_eq!(got.consistency_path, want, "PROOF({m}, D[{n}])");
            assert_eq!(exact.consistency_proof(m, n).unwrap(), got);
            verify_consistency(m, n, &reference.mth(0, m), &root, &want)
                .unwrap_or_else(|e| panic!("PROOF({m}, D[{n}]) rejected: {e}"));
        }

        if n < MAX {
            compact.append(leaves[n as usize]);
        }
    }
}
