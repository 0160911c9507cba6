//! Residue scan: no plaintext personal data in any file the ledger writes, before or
//! after erasure, nor in its output; and an erased customer's wrapped data key is in
//! no file either, so a copy of the data folder taken after erasure cannot open
//! their data.

use ledger_system_tests as common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use ledger_app::demo;
use ledger_crypto::{KeyState, KeyStore, SqliteKeyStore};
use ledger_types::CustomerId;

/// Strings that could turn up by chance in base64 ciphertext (short, base64
/// alphabet only) are left out; everything else is scanned for.
fn scannable(s: &str) -> bool {
    s.len() >= 8
        || s.bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// The needles found in any file under `dir` or in `extra` (what the commands printed).
fn scan(dir: &Path, needles: &[Vec<u8>], extra: &[u8]) -> Vec<String> {
    let mut found = scan_files(dir, needles);
    found.extend(scan_bytes(extra, "ledger output", needles));
    found
}

#[test]
fn no_personal_data_or_destroyed_key_remains_in_any_file_or_output() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = run(&data, &["demo", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut output = out.stdout.clone();
    output.extend(&out.stderr);

    // The same seed regenerates the plaintext the demo sealed.
    let generated = demo::generate(2026, 10_000);
    let by_id: HashMap<String, &demo::DemoCustomer> = generated
        .customers
        .iter()
        .map(|c| (c.id.to_string(), c))
        .collect();
    let all: Vec<Vec<u8>> = generated
        .customers
        .iter()
        .flat_map(|c| c.personal_strings())
        .filter(|s| scannable(s))
        .map(String::into_bytes)
        .collect();
    assert!(
        all.len() > 50_000,
        "expected a rich data set, got {} strings",
        all.len()
    );

    // Before any erasure: no customer's plaintext anywhere.
    let found = scan(&data, &all, &output);
    assert!(
        found.is_empty(),
        "plaintext personal data at rest: {found:?}"
    );

    // Erase three customers; keep their wrapped keys to look for them afterwards.
    let erased: Vec<(String, String)> = (0..3).map(|i| sample(&summary, "erasable", i)).collect();
    let keys = SqliteKeyStore::open(&data.join("keys.sqlite")).unwrap();
    let mut wrapped = Vec::new();
    for (_, c) in &erased {
        match keys.get(CustomerId::parse(c).unwrap()).unwrap() {
            KeyState::Active(w) => wrapped.push(w.as_bytes().to_vec()),
            other => panic!("customer has no key before erasure: {other:?}"),
        }
    }
    drop(keys);
    for (b, c) in &erased {
        let out = run(&data, &["anonymize", "--broadcaster", b, "--customer", c]);
        assert!(out.status.success(), "anonymize failed: {}", stderr(&out));
        output.extend(&out.stdout);
        output.extend(&out.stderr);
    }
    let out = run(&data, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stdout(&out));
    output.extend(&out.stdout);
    output.extend(&out.stderr);

    let mut needles: Vec<Vec<u8>> = erased
        .iter()
        .flat_map(|(_, c)| by_id[c].personal_strings())
        .filter(|s| scannable(s))
        .map(String::into_bytes)
        .collect();
    assert!(needles.len() >= 15);
    needles.extend(wrapped);
    let found = scan(&data, &needles, &output);
    assert!(found.is_empty(), "residue after erasure: {found:?}");

    // And still no plaintext of anyone else.
    let found = scan(&data, &all, &output);
    assert!(
        found.is_empty(),
        "plaintext personal data at rest: {found:?}"
    );
}
