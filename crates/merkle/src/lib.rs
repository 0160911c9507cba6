//! The Merkle tree over the log's records (RFC 6962 §2.1), its proofs, and their
//! verification.
//!
//! The hash chains of ADR 0003 let an auditor who replays the whole log detect any
//! edit. They cannot show someone who holds only one record (a data subject with
//! an erasure receipt) that the record is in the log, or show an auditor that
//! today's log extends yesterday's without the log in hand. A Merkle tree can: a
//! signed tree head `(size, root)` commits to every record up to `size`, an
//! **inclusion proof** (O(log n) hashes) shows one record is among them, and a
//! **consistency proof** shows a later head extends an earlier one.
//!
//! # What this crate owns
//! - Hashing exactly as RFC 6962: [`leaf_hash`] is `SHA-256(0x00 || data)`,
//!   [`node_hash`] is `SHA-256(0x01 || left || right)`, the empty tree's root is
//!   `SHA-256("")`, and a tree of `n` leaves splits at the largest power of two
//!   smaller than `n`. Any RFC 6962 verifier (Certificate Transparency's,
//!   transparency-dev's) accepts our proofs.
//! - [`MerkleTree`]: appended to one leaf hash at a time or by batch, it answers
//!   [`root`](MerkleTree::root), [`inclusion_proof`](MerkleTree::inclusion_proof) and
//!   [`consistency_proof`](MerkleTree::consistency_proof) for **every size it has
//!   had**, not only the current one, because a signed head names a past size.
//! - [`CompactRange`]: the frontier (at most 64 hashes) from which a writer can go
//!   on appending and compute the current root without the whole tree.
//! - [`verify_inclusion`] and [`verify_consistency`]: RFC 9162's verification
//!   algorithms, usable without the tree, with [`ProofError`] saying why a proof
//!   failed.
//! - [`TreeHead`], [`InclusionProof`], [`ConsistencyProof`]: serde forms with hashes
//!   as hex, for the API to serve and an auditor's tool to read.
//!
//! # What it must not do
//! No I/O, no logging, no clock, no signing (another crate signs tree heads). It
//! knows nothing of events, streams, stores or HTTP: a leaf is whatever bytes the
//! caller hashes with [`leaf_hash`]; which bytes of a record those are is the
//! writer's documented choice, not this crate's.
//!
//! # Memory, costs, and rebuilding at start
//! The tree keeps the root of every complete aligned subtree, level by level
//! (module `tree`): 32 bytes per leaf at level 0 and less than 32 more above, so
//! **about 64 bytes per leaf** (64 MB per million records), plus the slack of
//! `Vec` growth unless [`MerkleTree::with_capacity`] was used. Appending costs one
//! node hash amortized; a root or a proof at any size costs O(log n) look-ups and
//! O(log n) hashes (microseconds at a million leaves, see `examples/bench.rs`).
//!
//! The tree is kept only in memory. A writer rebuilds it at start from the stored
//! records in log order, `MerkleTree::from_leaf_hashes(records.map(leaf_hash))`,
//! two SHA-256 per record, and should check that the rebuilt
//! `root(head.size)` equals the last tree head it signed. Should the log outgrow
//! memory, the levels are append-only arrays keyed by `(level, index)` and can move
//! to a table behind the same methods.
//!
//! # Why it is shaped this way
//! Pure, so that the writer, the HTTP API and an offline verifier share one
//! implementation and it can be tested exhaustively against the RFC's recursive
//! definition and published test vectors. Own code rather than a Merkle crate:
//! see ADR 0014 (past sizes, precomputed leaf hashes, no second `sha2`).

mod compact;
mod hash;
mod proof;
mod tree;
mod verify;

pub use compact::{CompactRange, CompactRangeError};
pub use hash::{empty_root, leaf_hash, node_hash, Hash, HashParseError};
pub use proof::{ConsistencyProof, InclusionProof, TreeHead};
pub use tree::{MerkleTree, TreeError};
pub use verify::{verify_consistency, verify_inclusion, ProofError};
