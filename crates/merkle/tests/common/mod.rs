//! RFC 6962 §2.1, written as the RFC states it: recursive, top-down, with nothing
//! stored but the leaf hashes. The tests hold the tree to it.

#![allow(dead_code)] // each test file uses a part

use std::cell::RefCell;
use std::collections::HashMap;

use ledger_merkle::{empty_root, leaf_hash, node_hash, Hash};

/// The largest power of two smaller than `n` (`n >= 2`).
pub fn split(n: u64) -> u64 {
    let mut k = 1;
    while k < n - k {
        k *= 2;
    }
    k
}

/// The RFC's definitions over `D = leaves`, with `MTH` memoized by range.
pub struct Reference {
    leaves: Vec<Hash>,
    memo: RefCell<HashMap<(u64, u64), Hash>>,
}

impl Reference {
    pub fn new(leaves: Vec<Hash>) -> Self {
        Reference {
            leaves,
            memo: RefCell::new(HashMap::new()),
        }
    }

    /// `MTH(D[a:b])`.
    pub fn mth(&self, a: u64, b: u64) -> Hash {
        if let Some(h) = self.memo.borrow().get(&(a, b)) {
            return *h;
        }
        let h = match b - a {
            0 => empty_root(),
            1 => self.leaves[a as usize],
            n => {
                let k = split(n);
                node_hash(&self.mth(a, a + k), &self.mth(a + k, b))
            }
        };
        self.memo.borrow_mut().insert((a, b), h);
        h
    }

    /// `PATH(m, D[0:n])`.
    pub fn path(&self, m: u64, n: u64) -> Vec<Hash> {
        self.path_in(m, 0, n)
    }

    fn path_in(&self, m: u64, a: u64, b: u64) -> Vec<Hash> {
        if b - a == 1 {
            return Vec::new();
        }
        let k = split(b - a);
        if m < k {
            let mut p = self.path_in(m, a, a + k);
            p.push(self.mth(a + k, b));
            p
        } else {
            let mut p = self.path_in(m - k, a + k, b);
            p.push(self.mth(a, a + k));
            p
        }
    }

    /// `PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true)`.
    pub fn proof(&self, m: u64, n: u64) -> Vec<Hash> {
        self.subproof(m, 0, n, true)
    }

    fn subproof(&self, m: u64, a: u64, b: u64, whole: bool) -> Vec<Hash> {
        if m == b - a {
            return if whole {
                Vec::new()
            } else {
                vec![self.mth(a, b)]
            };
        }
        let k = split(b - a);
        if m <= k {
            let mut p = self.subproof(m, a, a + k, whole);
            p.push(self.mth(a + k, b));
            p
        } else {
            let mut p = self.subproof(m - k, a + k, b, false);
            p.push(self.mth(a, a + k));
            p
        }
    }
}

/// The turns `PATH(m, D[0:n])` takes from the root down (`true`: into the left
/// half). A verifier's computation is fixed by this shape alone, so two
/// `(index, size)` pairs with one shape accept the same proofs.
pub fn inclusion_shape(m: u64, n: u64) -> Vec<bool> {
    assert!(m < n, "no leaf {m} in a tree of {n}");
    let mut turns = Vec::new();
    let (mut m, mut n) = (m, n);
    while n > 1 {
        let k = split(n);
        if m < k {
            turns.push(true);
            n = k;
        } else {
            turns.push(false);
            m -= k;
            n -= k;
        }
    }
    turns
}

/// The turns `SUBPROOF(m, D[0:n], true)` takes, and whether it ends by emitting
/// the old tree's last subtree (it does unless the old tree is a perfect subtree).
pub fn consistency_shape(m: u64, n: u64) -> (Vec<bool>, bool) {
    assert!(0 < m && m <= n, "no consistency proof from {m} to {n}");
    let mut turns = Vec::new();
    let (mut m, mut n, mut whole) = (m, n, true);
    while m != n {
        let k = split(n);
        if m <= k {
            turns.push(true);
            n = k;
        } else {
            turns.push(false);
            m -= k;
            n -= k;
            whole = false;
        }
    }
    (turns, !whole)
}

/// Leaf data of varying lengths (0 to 6 bytes after the index), so that leaf
/// hashing sees more than one length.
pub fn leaf_data(i: u64) -> Vec<u8> {
    let mut d = i.to_be_bytes().to_vec();
    d.extend((0..(i % 7) as u8).map(|j| j.wrapping_mul(37)));
    d
}

pub fn leaf_hashes(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&leaf_data(i))).collect()
}

/// `h` with bit `bit` (0..256) flipped.
pub fn flip(h: &Hash, bit: usize) -> Hash {
    let mut b = *h.as_bytes();
    b[bit / 8] ^= 1 << (bit % 8);
    Hash::from_bytes(b)
}
