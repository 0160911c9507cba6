//! Restoring a backup from before some erasures brings none of those customers
//! back: the forget list, kept beside (not in) the data folder, is checked at the
//! next start; the erasures the restored log lacks are re-applied and the keys the
//! restored key store still holds are destroyed again.

use std::path::Path;

use serde_json::json;

mod common;

use common::server::{call, free_port, ledger, start, stop, ADMIN};
use common::{copy_dir, stderr};

const ERASED: usize = 20;

fn tenant(base: &str) -> String {
    let (st, b) = call(
        "POST",
        &format!("{base}/v1/admin/broadcasters"),
        ADMIN,
        Some(json!({"name": "Restore Stream", "integration": "white_label"})),
    );
    assert_eq!(st, 201, "{b}");
    let id = b["broadcaster_id"].as_str().unwrap().to_owned();
    let (st, k) = call(
        "POST",
        &format!("{base}/v1/admin/broadcasters/{id}/api-keys"),
        ADMIN,
        Some(json!({})),
    );
    assert_eq!(st, 201, "{k}");
    k["token"].as_str().unwrap().to_owned()
}

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
    let key = tenant(&s.base);
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
    let key = tenant(&s.base);
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
