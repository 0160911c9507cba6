//! The auditor's NDJSON export and its offline verification: an export made before
//! erasure still verifies after it (and its head is still in the log), an export
//! made after erasure holds no personal string of the erased customers, and every
//! kind of edit to an export fails `audit verify --from-export`.

use ledger_system_tests as common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use ledger_app::demo;

fn export(data: &Path, out: &Path) {
    let o = run(data, &["audit", "export", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn verify_file(file: &Path) -> (bool, serde_json::Value) {
    let o = run(
        Path::new("/nonexistent-data-folder-not-needed"),
        &[
            "audit",
            "verify",
            "--from-export",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("no JSON report: {}", stderr(&o)));
    assert_eq!(o.status.success(), v["ok"] == true);
    (o.status.success(), v)
}

fn edited(src: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> std::path::PathBuf {
    let mut lines: Vec<String> = std::fs::read_to_string(src)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    let out = src.with_file_name(name);
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    out
}

fn record(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

#[test]
fn exports_verify_offline_survive_erasure_and_reveal_nothing_of_erased_customers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = demo(&data, 150);
    let before = tmp.path().join("before.ndjson");
    export(&data, &before);
    let (ok, rep_before) = verify_file(&before);
    assert!(ok, "{rep_before}");

    let erased: Vec<(String, String)> = (0..2).map(|i| sample(&s, "erasable", i)).collect();
    for (b, c) in &erased {
        let o = run(&data, &["anonymize", "--broadcaster", b, "--customer", c]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // The old export still verifies, and the log still holds its head.
    let (ok, _) = verify_file(&before);
    assert!(ok);
    let head = format!(
        "{}:{}",
        rep_before["head_position"],
        rep_before["head_log_hash"].as_str().unwrap()
    );
    let o = run(&data, &["audit", "verify", "--expect-head", &head]);
    assert!(o.status.success(), "{}", stdout(&o));

    let after = tmp.path().join("after.ndjson");
    export(&data, &after);
    let (ok, rep_after) = verify_file(&after);
    assert!(ok, "{rep_after}");
    assert_eq!(rep_after["erasures"], 2);
    assert_eq!(rep_after["revenue_digest"], rep_before["revenue_digest"]);

    // No personal string of the erased customers in the export made after erasure.
    let generated = demo::generate(2026, 150);
    let by_id: HashMap<String, &demo::DemoCustomer> = generated
        .customers
        .iter()
        .map(|c| (c.id.to_string(), c))
        .collect();
    let text = std::fs::read_to_string(&after).unwrap();
    let mut checked = 0;
    for (_, c) in &erased {
        for needle in by_id[c].personal_strings() {
            if needle.len() >= 8 || needle.contains(|ch: char| !ch.is_ascii_alphanumeric()) {
                assert!(
                    !text.contains(&needle),
                    "the export holds personal data of {c}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "too few strings scanned: {checked}");
}

#[test]
fn every_kind_of_edit_to_an_export_fails_offline_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    demo(&data, 40);
    let file = tmp.path().join("export.ndjson");
    export(&data, &file);
    assert!(verify_file(&file).0);
    let n = std::fs::read_to_string(&file).unwrap().lines().count();
    let mid = n / 2;

    let one_byte = edited(&file, "byte.ndjson", |l| {
        // Change one character inside a record's payload, keeping the JSON valid.
        let i = (mid..n - 1)
            .find(|i| l[*i].contains("\\\"at\\\":1"))
            .unwrap();
        l[i] = l[i].replacen("\\\"at\\\":1", "\\\"at\\\":2", 1);
    });
    let removed = edited(&file, "removed.ndjson", |l| {
        l.remove(mid);
    });
    let swapped = edited(&file, "swapped.ndjson", |l| l.swap(mid, mid + 1));
    let stream_tail = edited(&file, "stream-tail.ndjson", |l| {
        // The last record of some stream that is not the last record of the log.
        let records: Vec<serde_json::Value> = l[1..n - 2].iter().map(|x| record(x)).collect();
        let mut last_of: HashMap<String, usize> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            last_of.insert(r["stream"].as_str().unwrap().to_owned(), i + 1);
        }
        let victim = *last_of.values().min().unwrap();
        l.remove(victim);
    });
    let log_tail = edited(&file, "log-tail.ndjson", |l| {
        l.remove(n - 2);
    });
    let no_trailer = edited(&file, "no-trailer.ndjson", |l| {
        l.pop();
    });
    for (name, f) in [
        ("one byte", one_byte),
        ("one record removed", removed),
        ("two records swapped", swapped),
        ("last record of a stream removed", stream_tail),
        ("last record of the log removed", log_tail),
        ("trailer removed", no_trailer),
    ] {
        let (ok, report) = verify_file(&f);
        assert!(!ok, "{name}: not detected: {report}");
        assert!(!report["problems"].as_array().unwrap().is_empty(), "{name}");
    }
}
