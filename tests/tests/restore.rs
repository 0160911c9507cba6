//! Restoring a backup from before some erasures brings none of those customers
//! back: the forget list, kept beside (not in) the data folder, is checked at the
//! next start; the erasures the restored log lacks are re-applied and the keys the
//! restored key store still holds are destroyed again.

use std::path::Path;

use serde_json::json;

use ledger_system_tests as common;

use common::server::{call, free_port, ledger, start, stop, tenant};
use common::{copy_dir, stderr};

const ERASED: usize = 20;

/// How many of `customers` the API still serves with personal data.
fn readable(base: &str, key: &str, customers: &[String]) -> usize {
    customers
        .iter()
        .filter(|c| {
            let (st, v) = call("GET", &format!("{base}/v1/customers/{c}"), key, None);
            assert_eq!(st, 200, "{v}");
            !v["profile"].is_null()
        })
        .count()
}

fn replace_dir(backup: &Path, data: &Path) {
    std::fs::remove_dir_all(data).unwrap();
    copy_dir(backup, data);
}

#[test]
fn restoring_a_backup_from_before_twenty_erasures_brings_none_of_them_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let backup = tmp.path().join("backup");
    let port = free_port();

    // Customers are registered; the folder is backed up (server stopped).
    let s = start(&data, port, None);
    let (_, key) = tenant(&s.base, "Restore Stream");
    let customers: Vec<String> = (0..ERASED)
        .map(|n| {
            let (st, r) = call(
                "POST",
                &format!("{}/v1/customers", s.base),
                &key,
                Some(json!({"email": format!("restore.{n}@example.com"), "password_hash": "argon2id$x",
                            "first_name": "Gertrud", "last_name": format!("Backup{n}")})),
            );
            assert_eq!(st, 201, "{r}");
            r["customer_id"].as_str().unwrap().to_owned()
        })
        .collect();
    stop(s);
    copy_dir(&data, &backup);

    // They are erased.
    let s = start(&data, port, None);
    for c in &customers {
        let (st, r) = call(
            "POST",
            &format!("{}/v1/customers/{c}/anonymize", s.base),
            &key,
            None,
        );
        assert_eq!(st, 200, "{r}");
    }
    assert_eq!(readable(&s.base, &key, &customers), 0);
    stop(s);
    let list = tmp.path().join("data.forget-list.ndjson");
    let entries = std::fs::read_to_string(&list).unwrap();
    assert_eq!(entries.lines().count(), ERASED, "one entry per erasure");

    // The old backup is restored over the data folder; the forget list, beside
    // it, is not. The server starts: none of the twenty is readable.
    replace_dir(&backup, &data);
    let s = start(&data, port, None);
    let logs = s.logs.clone();
    assert_eq!(
        readable(&s.base, &key, &customers),
        0,
        "customers erased after the backup came back"
    );
    let logs = stop(s) + &logs.lock().unwrap();
    assert!(logs.contains("erasures re-applied"), "{logs}");

    // The log and the key store honour every erasure: the audit is clean, and a
    // restore check now finds nothing to repair.
    let audit = ledger(&data, None)
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(audit.status.success(), "{report}");
    assert_eq!(report["anonymized_customers"], ERASED as u64);
    let check = ledger(&data, None)
        .args(["restore-check", "--json"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let r: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(r["customers_on_list"], ERASED as u64);
    assert_eq!(r["erasures_reapplied"], 0);
    assert_eq!(r["keys_destroyed"], 0);

    // Restoring only an old key store (the log is current): the keys go again, at
    // once (the log's erasures are enough for the reconciler).
    let keys = data.join("keys.sqlite");
    std::fs::copy(backup.join("keys.sqlite"), &keys).unwrap();
    for f in ["keys.sqlite-wal", "keys.sqlite-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let check = ledger(&data, None)
        .args(["restore-check", "--json"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(
        stderr(&check).contains("reconciler finished erasures"),
        "{}",
        stderr(&check)
    );
    let audit = ledger(&data, None)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}

#[test]
fn a_key_store_older_than_the_log_costs_one_customer_its_profile_not_the_server_its_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let s = start(&data, port, None);
    let (_, key) = tenant(&s.base, "Restore Stream");
    stop(s);
    let old_keys = tmp.path().join("keys-before.sqlite");
    std::fs::copy(data.join("keys.sqlite"), &old_keys).unwrap();
    let s = start(&data, port, None);
    let (st, r) = call(
        "POST",
        &format!("{}/v1/customers", s.base),
        &key,
        Some(
            json!({"email": "late.joiner@example.com", "password_hash": "argon2id$x",
                    "first_name": "Walburga", "last_name": "Latejoiner"}),
        ),
    );
    assert_eq!(st, 201, "{r}");
    let c = r["customer_id"].as_str().unwrap().to_owned();
    stop(s);
    std::fs::copy(&old_keys, data.join("keys.sqlite")).unwrap();

    // The server starts, and serves the customer without a profile.
    let s = start(&data, port, None);
    let (st, v) = call("GET", &format!("{}/v1/customers/{c}", s.base), &key, None);
    assert_eq!(st, 200, "{v}");
    assert!(v["profile"].is_null(), "{v}");
    stop(s);
    // The auditor is told which customer lost its key.
    let audit = ledger(&data, None)
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    assert!(!audit.status.success());
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["code"], "DATA_KEY_MISSING");
    assert_eq!(problems[0]["stream"], format!("customer-{c}"));
}

/// The EUR net revenue the API reports for the caller.
fn eur_net(base: &str, key: &str) -> i64 {
    let (st, v) = call("GET", &format!("{base}/v1/revenue"), key, None);
    assert_eq!(st, 200, "{v}");
    v["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["currency"] == "EUR")
        .map_or(0, |r| r["net"].as_i64().unwrap())
}

fn pay(base: &str, key: &str, c: &str, minor: i64) {
    let (st, r) = call(
        "POST",
        &format!("{base}/v1/customers/{c}/payments"),
        key,
        Some(json!({"offer_id": "restore-monthly", "amount": {"minor": minor, "currency": "EUR"}})),
    );
    assert_eq!(st, 201, "{r}");
}

#[test]
fn views_restored_ahead_of_the_log_are_found_out_and_folded_again_so_no_payment_vanishes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let old_log = tmp.path().join("old-log");
    let port = free_port();
    let s = start(&data, port, None);
    let (_, key) = tenant(&s.base, "Restore Stream");
    let (st, r) = call(
        "POST",
        &format!("{}/v1/customers", s.base),
        &key,
        Some(
            json!({"email": "views.ahead@example.com", "password_hash": "argon2id$x",
                    "first_name": "Ottilie", "last_name": "Viewsahead"}),
        ),
    );
    assert_eq!(st, 201, "{r}");
    let c = r["customer_id"].as_str().unwrap().to_owned();
    pay(&s.base, &key, &c, 1_000);
    stop(s);
    // The log is backed up here; the views only later, after more payments (the
    // order an online backup of events, then keys, then views can give).
    std::fs::create_dir_all(&old_log).unwrap();
    std::fs::copy(data.join("events.sqlite"), old_log.join("events.sqlite")).unwrap();
    let s = start(&data, port, None);
    for _ in 0..5 {
        pay(&s.base, &key, &c, 2_000);
    }
    stop(s);
    std::fs::copy(old_log.join("events.sqlite"), data.join("events.sqlite")).unwrap();

    // The auditor is told.
    let audit = ledger(&data, None)
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(!audit.status.success(), "{report}");
    assert_eq!(
        report["problems"][0]["code"], "VIEWS_AHEAD_OF_LOG",
        "{report}"
    );

    // The server folds the views again from the log, and a new payment counts.
    let s = start(&data, port, None);
    assert_eq!(
        eur_net(&s.base, &key),
        1_000,
        "revenue is the restored log's"
    );
    pay(&s.base, &key, &c, 50_000);
    assert_eq!(eur_net(&s.base, &key), 51_000, "the new payment vanished");
    let logs = stop(s);
    assert!(
        logs.contains("VIEWS_AHEAD_OF_LOG"),
        "the start log says why"
    );
    let audit = ledger(&data, None)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}

#[test]
fn views_folded_from_another_log_are_found_out_by_the_hash_at_their_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let port = free_port();
    // Two stores with the same number of events but different contents.
    for (dir, minor) in [(&a, 1_000), (&b, 7_000)] {
        let s = start(dir, port, None);
        let (_, key) = tenant(&s.base, "Restore Stream");
        let (st, r) = call(
            "POST",
            &format!("{}/v1/customers", s.base),
            &key,
            Some(
                json!({"email": "other.log@example.com", "password_hash": "argon2id$x",
                        "first_name": "Ottilie", "last_name": "Otherlog"}),
            ),
        );
        assert_eq!(st, 201, "{r}");
        pay(&s.base, &key, r["customer_id"].as_str().unwrap(), minor);
        stop(s);
    }
    std::fs::copy(b.join("views.sqlite"), a.join("views.sqlite")).unwrap();
    let audit = ledger(&a, None)
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(
        report["problems"][0]["code"], "VIEWS_FROM_ANOTHER_LOG",
        "{report}"
    );
    let s = start(&a, port, None);
    let logs = stop(s);
    assert!(logs.contains("VIEWS_FROM_ANOTHER_LOG"), "{logs}");
    let audit = ledger(&a, None).args(["audit", "verify"]).output().unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}
