//! The erasure rules through the real binary: receipts, refusals with their codes,
//! idempotent repeats, and a crash between the decision and the key destruction.

use ledger_system_tests as common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;
use ledger_crypto::{KeyState, KeyStore, SqliteKeyStore};
use ledger_types::CustomerId;

fn key_state(data: &std::path::Path, c: &str) -> KeyState {
    let keys = SqliteKeyStore::open(&data.join("keys.sqlite")).unwrap();
    keys.get(CustomerId::parse(c).unwrap()).unwrap()
}

fn refusal_code(data: &std::path::Path, b: &str, c: &str) -> String {
    let out = run(
        data,
        &["anonymize", "--broadcaster", b, "--customer", c, "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "expected a refusal: {}",
        stdout(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["code"].as_str().unwrap().to_owned()
}

#[test]
fn each_refusal_is_reported_with_its_code_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = demo(&data, 400);
    let before = run(&data, &["audit", "verify", "--json"]);
    let before: serde_json::Value = serde_json::from_slice(&before.stdout).unwrap();

    let (b, c) = sample(&s, "active_subscription", 0);
    assert_eq!(refusal_code(&data, &b, &c), "ACTIVE_SUBSCRIPTION");
    let (b, c) = sample(&s, "shared_account", 0);
    assert_eq!(refusal_code(&data, &b, &c), "SHARED_ACROSS_BROADCASTERS");
    let (b, c) = sample(&s, "not_white_label", 0);
    assert_eq!(refusal_code(&data, &b, &c), "NOT_WHITE_LABEL");
    // Another tenant's customer does not exist for the caller.
    let (_, c) = sample(&s, "erasable", 0);
    let (other_b, _) = sample(&s, "not_white_label", 0);
    assert_eq!(refusal_code(&data, &other_b, &c), "NOT_FOUND");
    let unknown = CustomerId::new().to_string();
    let (b, _) = sample(&s, "erasable", 0);
    assert_eq!(refusal_code(&data, &b, &unknown), "NOT_FOUND");

    let after = run(&data, &["audit", "verify", "--json"]);
    let after: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(
        before["head_log_hash"], after["head_log_hash"],
        "a refusal wrote something"
    );
    assert!(matches!(key_state(&data, &c), KeyState::Active(_)));

    let out = run(
        &data,
        &["anonymize", "--broadcaster", &b, "--customer", "nope"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid customer id"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_repeated_erasure_returns_the_first_receipt() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = demo(&data, 200);
    let (b, c) = sample(&s, "erasable", 0);
    let first = run(
        &data,
        &["anonymize", "--broadcaster", &b, "--customer", &c, "--json"],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["customer_id"], c.as_str());
    assert_eq!(first["categories_erased"].as_array().unwrap().len(), 9);
    assert!(matches!(key_state(&data, &c), KeyState::Destroyed { .. }));

    let again = run(
        &data,
        &["anonymize", "--broadcaster", &b, "--customer", &c, "--json"],
    );
    assert!(again.status.success());
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["request_id"], first["request_id"]);
    assert_eq!(again["event_position"], first["event_position"]);

    let audit = run(&data, &["audit", "verify", "--json"]);
    assert!(audit.status.success(), "{}", stdout(&audit));
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(audit["anonymized_customers"], 1);
}

#[test]
fn a_crash_between_the_decision_and_key_destruction_is_finished_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = demo(&data, 200);
    let (b, c) = sample(&s, "erasable", 0);

    let mut child = ledger(&data)
        .args(["anonymize", "--broadcaster", &b, "--customer", &c])
        .env("LEDGER_FAILPOINT", "after-anonymize-append")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let reached = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("failpoint after-anonymize-append reached"));
    assert!(reached, "the process never reached the failpoint");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The decision is durable but the key survived the crash.
    assert!(matches!(key_state(&data, &c), KeyState::Active(_)));

    // The auditor, who only reads, sees the half erasure and changes nothing.
    let audit = run(&data, &["audit", "verify", "--json"]);
    assert!(!audit.status.success(), "{}", stdout(&audit));
    let v: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(v["problems"][0]["code"], "ERASURE_NOT_HONOURED", "{v}");
    assert!(matches!(key_state(&data, &c), KeyState::Active(_)));

    // Restart (any writing command, like `serve`): the reconciler destroys the
    // key before anything else, and the audit is clean.
    let again = run(&data, &["anonymize", "--broadcaster", &b, "--customer", &c]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("reconciler finished erasures"),
        "{}",
        stderr(&again)
    );
    assert!(matches!(key_state(&data, &c), KeyState::Destroyed { .. }));
    let audit = run(&data, &["audit", "verify", "--json"]);
    assert!(audit.status.success(), "{}", stdout(&audit));
    let v: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(v["anonymized_customers"], 1);
}
