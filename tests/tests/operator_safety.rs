//! Operator mistakes, on the real binary: a second writer on a data folder, CLI
//! writes and a KEK rotation beside a running server, a mistyped `--data` or
//! `--kek-file`, read-only commands beside the server, and the permissions of
//! every file the service writes.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use ledger_system_tests as common;

use common::server::{call, free_port, ledger, start, stop, ADMIN};
use common::{demo, files, sample, stderr, stdout};

fn out(data: &Path, args: &[&str]) -> std::process::Output {
    ledger(data, None)
        .args(args)
        .env("LEDGER_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_second_writer_is_refused_beside_a_running_server_and_readers_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = demo(&data, 120);
    let (b, c) = sample(&s, "erasable", 0);
    let (b2, c2) = sample(&s, "erasable", 1);
    let server = start(&data, free_port(), None);
    let base = server.base.clone();

    // A second server on the same folder is refused, naming the first one's pid.
    let second = ledger(&data, None)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("LEDGER_ADMIN_KEY", ADMIN)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let why = stderr(&second);
    let pid = format!("pid {}", server.child.id());
    assert!(why.contains(&pid) && why.contains("HTTP API"), "{why}");

    // Writing commands are refused the same way, and change nothing.
    for args in [
        vec!["anonymize", "--broadcaster", &b, "--customer", &c],
        vec!["projections", "rebuild"],
        vec!["demo", "--customers", "5"],
    ] {
        let o = out(&data, &args);
        assert!(!o.status.success(), "{args:?} ran beside serve");
        assert!(stderr(&o).contains(&pid), "{args:?}: {}", stderr(&o));
    }
    let new_kek = dir.path().join("new-kek.hex");
    std::fs::write(&new_kek, "ab".repeat(32)).unwrap();
    let o = out(
        &data,
        &["kek", "rotate", "--new-kek-file", new_kek.to_str().unwrap()],
    );
    assert!(!o.status.success(), "kek rotate ran beside serve");
    assert!(stderr(&o).contains(&pid), "{}", stderr(&o));

    // The server's own writes still work: the refused CLI did not disturb it.
    let (st, k) = call(
        "POST",
        &format!("{base}/v1/admin/broadcasters/{b2}/api-keys"),
        ADMIN,
        Some(json!({})),
    );
    assert_eq!(st, 201, "{k}");
    let key = k["token"].as_str().unwrap().to_owned();
    let (st, r) = call(
        "POST",
        &format!("{base}/v1/customers/{c2}/anonymize"),
        &key,
        None,
    );
    assert_eq!(st, 200, "{r}");

    // Read-only commands work beside it.
    for args in [
        vec!["audit", "verify", "--json"],
        vec!["revenue", "--json"],
        vec!["erasures", "--json"],
        vec!["export-customer", "--broadcaster", &b, "--customer", &c],
    ] {
        let o = out(&data, &args);
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    }
    let export = dir.path().join("log.ndjson");
    let o = out(
        &data,
        &["audit", "export", "--out", export.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = out(&data, &["erasures", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["customer_id"] == c2),
        "the reader sees the server's erasure: {list}"
    );
    stop(server);

    // Every file the service wrote is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the data folder");
        for f in files(&data) {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", f.display());
        }
    }
}

#[test]
fn read_only_commands_never_create_or_change_anything() {
    let dir = tempfile::tempdir().unwrap();
    // A mistyped folder: an error, and nothing created, not even its parent.
    let typo = dir.path().join("ledger-dtaa").join("deeper");
    for args in [
        vec!["audit", "verify"],
        vec!["audit", "export", "--out", "/dev/null"],
        vec!["revenue"],
        vec!["erasures"],
        vec!["anonymize", "--broadcaster", "x", "--customer", "y"],
    ] {
        let o = out(&typo, &args);
        assert!(
            !o.status.success(),
            "{args:?} succeeded on a missing folder"
        );
        if args[0] != "anonymize" {
            assert!(
                stderr(&o).contains("no data folder"),
                "{args:?}: {}",
                stderr(&o)
            );
        }
    }
    assert!(
        !dir.path().join("ledger-dtaa").exists(),
        "something was created"
    );

    // A real folder, stopped: read-only commands leave every byte as it was.
    let data = dir.path().join("data");
    let s = demo(&data, 50);
    let (b, c) = sample(&s, "erasable", 0);
    let snapshot = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = files(d)
            .into_iter()
            .map(|f| (f.display().to_string(), std::fs::read(&f).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&data);
    for args in [
        vec!["audit", "verify"],
        vec!["revenue", "--rows"],
        vec!["erasures"],
        vec!["export-customer", "--broadcaster", &b, "--customer", &c],
    ] {
        let o = out(&data, &args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let after = snapshot(&data);
    let changed: Vec<&String> = before
        .iter()
        .zip(&after)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| &x.0)
        .collect();
    assert_eq!(before.len(), after.len(), "files were added or removed");
    assert!(changed.is_empty(), "read-only commands changed {changed:?}");

    // A missing --kek-file is an error, and no KEK is created there.
    let missing = dir.path().join("kek-typo.hex");
    let o = out(
        &data,
        &[
            "--kek-file",
            missing.to_str().unwrap(),
            "export-customer",
            "--broadcaster",
            &b,
            "--customer",
            &c,
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no key-encryption key"),
        "{}",
        stderr(&o)
    );
    assert!(!missing.exists(), "a KEK was created at the mistyped path");
    // serve and demo create what is missing, and say so.
    let fresh = dir.path().join("fresh");
    let o = out(&fresh, &["demo", "--customers", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("created the data folder"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("created a new key-encryption key"),
        "{}",
        stderr(&o)
    );
    std::thread::sleep(Duration::from_millis(10));
}
