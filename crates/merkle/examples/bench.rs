//! Append a million leaves, then time proofs at that size and at past sizes.
//!
//! `cargo run -p ledger-merkle --example bench --release [-- LEAVES]`

use std::time::{Duration, Instant};

use ledger_merkle::{verify_consistency, verify_inclusion, Hash, MerkleTree};

const SAMPLES: usize = 10_001;
/// About the size of a record's canonical bytes (header plus a small sealed payload).
const RECORD_BYTES: usize = 256;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("LEAVES is a number"))
        .unwrap_or(1_000_000);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);

    // Leaf data as the writer would hash it: one record's bytes each.
    let records: Vec<[u8; RECORD_BYTES]> = (0..n)
        .map(|i| {
            let mut r = [0u8; RECORD_BYTES];
            r[..8].copy_from_slice(&i.to_be_bytes());
            r
        })
        .collect();

    let t = Instant::now();
    let mut tree = MerkleTree::new();
    for r in &records {
        tree.append_leaf(r);
    }
    let with_leaf_hashing = t.elapsed();
    let leaves: Vec<Hash> = (0..n).map(|i| tree.leaf(i).unwrap()).collect();
    drop(records);

    let t = Instant::now();
    let mut prehashed = MerkleTree::new();
    for h in &leaves {
        prehashed.append_leaf_hash(*h);
    }
    let node_hashing_only = t.elapsed();
    assert_eq!(prehashed.head(), tree.head());

    println!("leaves: {n}");
    println!(
        "append {RECORD_BYTES}-byte records (leaf hash + nodes): {:.2} s, {:.0} leaves/s",
        with_leaf_hashing.as_secs_f64(),
        n as f64 / with_leaf_hashing.as_secs_f64()
    );
    println!(
        "append precomputed leaf hashes (nodes only):      {:.2} s, {:.0} leaves/s",
        node_hashing_only.as_secs_f64(),
        n as f64 / node_hashing_only.as_secs_f64()
    );
    println!(
        "memory: {:.1} MB ({:.1} bytes/leaf; {:.1} after shrink_to_fit)",
        tree.memory_bytes() as f64 / 1e6,
        tree.memory_bytes() as f64 / n as f64,
        {
            tree.shrink_to_fit();
            tree.memory_bytes() as f64 / n as f64
        }
    );

    let head = tree.head();
    let t = Instant::now();
    for _ in 0..SAMPLES {
        std::hint::black_box(tree.root(n).unwrap());
    }
    println!(
        "root({n}): {:.2} µs",
        t.elapsed().as_secs_f64() * 1e6 / SAMPLES as f64
    );

    let mut make = Vec::with_capacity(SAMPLES);
    let mut check = Vec::with_capacity(SAMPLES);
    let mut lengths = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let i = rng.below(n);
        let t = Instant::now();
        let proof = tree.inclusion_proof(i, n).unwrap();
        make.push(t.elapsed());
        let t = Instant::now();
        verify_inclusion(
            &leaves[i as usize],
            i,
            n,
            &proof.inclusion_path,
            &head.root_hash,
        )
        .unwrap();
        check.push(t.elapsed());
        lengths.push(proof.inclusion_path.len());
    }
    report("inclusion proof at the current size", make, check, lengths);

    let mut make = Vec::with_capacity(SAMPLES);
    let mut lengths = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let size = 1 + rng.below(n);
        let i = rng.below(size);
        let t = Instant::now();
        let proof = tree.inclusion_proof(i, size).unwrap();
        make.push(t.elapsed());
        lengths.push(proof.inclusion_path.len());
    }
    report("inclusion proof at a past size", make, Vec::new(), lengths);

    let mut make = Vec::with_capacity(SAMPLES);
    let mut check = Vec::with_capacity(SAMPLES);
    let mut lengths = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let m = 1 + rng.below(n);
        let old = tree.root(m).unwrap();
        let t = Instant::now();
        let proof = tree.consistency_proof(m, n).unwrap();
        make.push(t.elapsed());
        let t = Instant::now();
        verify_consistency(m, n, &old, &head.root_hash, &proof.consistency_path).unwrap();
        check.push(t.elapsed());
        lengths.push(proof.consistency_path.len());
    }
    report(
        "consistency proof to the current size",
        make,
        check,
        lengths,
    );

    let mut make = Vec::with_capacity(SAMPLES);
    let mut lengths = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let new = 1 + rng.below(n);
        let old = 1 + rng.below(new);
        let t = Instant::now();
        let proof = tree.consistency_proof(old, new).unwrap();
        make.push(t.elapsed());
        lengths.push(proof.consistency_path.len());
    }
    report(
        "consistency proof between past sizes",
        make,
        Vec::new(),
        lengths,
    );

    let proof = tree.inclusion_proof(n / 2, n).unwrap();
    let json = serde_json::to_string(&proof).unwrap();
    println!(
        "JSON of one inclusion proof ({} hashes): {} bytes",
        proof.inclusion_path.len(),
        json.len()
    );
}

fn report(what: &str, make: Vec<Duration>, check: Vec<Duration>, lengths: Vec<usize>) {
    let (lo, hi) = (lengths.iter().min().unwrap(), lengths.iter().max().unwrap());
    print!(
        "{what}: make median {:.2} µs, p99 {:.2} µs",
        percentile(&make, 50),
        percentile(&make, 99)
    );
    if !check.is_empty() {
        print!(
            "; verify median {:.2} µs, p99 {:.2} µs",
            percentile(&check, 50),
            percentile(&check, 99)
        );
    }
    println!("; {lo}..{hi} hashes = {}..{} bytes", lo * 32, hi * 32);
}

fn percentile(samples: &[Duration], p: usize) -> f64 {
    let mut s = samples.to_vec();
    s.sort();
    s[(s.len() - 1) * p / 100].as_secs_f64() * 1e6
}

/// xorshift64*: deterministic indices without a dependency.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}
