//! The analysts' and consumers' commands of the real program, with no KEK:
//! `ledger revenue --format csv|ndjson|json`, whose CSV the stand-alone Python
//! verifier turns into the same digest as `ledger revenue --digest`, and `ledger
//! events tail`, whose public events hold no personal value of any demo customer.

use ledger_system_tests as common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use ledger_app::demo;

#[test]
fn revenue_exports_and_the_event_feed_need_no_kek_and_hold_no_personal_value() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let summary = demo(&data, 300);
    let (b, c) = sample(&summary, "erasable", 0);
    let out = run(&data, &["anonymize", "--broadcaster", &b, "--customer", &c]);
    assert!(out.status.success(), "{}", stderr(&out));
    // No KEK from here on: the file is gone and no variable names one.
    std::fs::remove_file(data.join("kek.hex")).unwrap();

    // Revenue: CSV through the Python verifier equals the digest.
    let digest = run(&data, &["revenue", "--digest"]);
    assert!(digest.status.success(), "{}", stderr(&digest));
    let digest = stdout(&digest).trim().to_owned();
    let csv = run(&data, &["revenue", "--format", "csv"]);
    assert!(csv.status.success(), "{}", stderr(&csv));
    assert!(stderr(&csv).contains(&digest));
    let file = tmp.path().join("revenue.csv");
    std::fs::write(&file, &csv.stdout).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/verify_revenue_digest.py");
    let py = Command::new("python3")
        .arg(&script)
        .args(["--expect", &digest])
        .arg(&file)
        .output()
        .expect("python3 must be installed to run the revenue digest verifier");
    assert!(py.status.success(), "{}", stderr(&py));
    assert_eq!(stdout(&py).trim(), digest);
    let nd = run(
        &data,
        &["revenue", "--format", "ndjson", "--currency", "EUR"],
    );
    assert!(nd.status.success(), "{}", stderr(&nd));
    for line in stdout(&nd).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            (v["currency"].as_str(), v["exponent"].as_u64()),
            (Some("EUR"), Some(2))
        );
        assert_eq!(v["day"].as_str().unwrap().len(), 10);
    }
    let json = run(&data, &["revenue", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["canonical_form"], "ledger-revenue-v1");

    // The feed: every line a public event, in position order, nothing personal.
    let tail = run(&data, &["events", "tail"]);
    assert!(tail.status.success(), "{}", stderr(&tail));
    let text = stdout(&tail);
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() > 1_000, "{}", events.len());
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    let kinds: BTreeSet<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains("customer.anonymized"), "{kinds:?}");
    assert!(kinds.contains("payment.captured"));
    let needles: Vec<String> = demo::generate(2026, 300)
        .customers
        .iter()
        .flat_map(|c| c.personal_strings())
        .filter(|s| s.len() >= 6)
        .collect();
    assert!(needles.len() > 1_000);
    let found = scan_bytes(text.as_bytes(), "events tail", &needles);
    assert!(
        found.is_empty(),
        "{} personal values in the feed",
        found.len()
    );
    // Resuming after a position gives the rest; a type filter keeps that type.
    let mid = positions[positions.len() / 2];
    let rest = run(&data, &["events", "tail", "--after", &mid.to_string()]);
    let rest_text = stdout(&rest);
    let rest_lines: Vec<&str> = rest_text.lines().collect();
    let expected: Vec<&str> = text
        .lines()
        .zip(&positions)
        .filter(|(_, p)| **p > mid)
        .map(|(l, _)| l)
        .collect();
    assert_eq!(rest_lines, expected);
    let erased = run(&data, &["events", "tail", "--types", "customer.anonymized"]);
    let lines: Vec<String> = stdout(&erased).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&c));
    let bad = run(&data, &["events", "tail", "--types", "payment"]);
    assert!(!bad.status.success());
}
