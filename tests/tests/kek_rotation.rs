//! KEK rotation through the real binary: every data key re-wrapped, the default
//! KEK file replaced, sealed data still readable, the old KEK refused at start, and
//! an erasure after the rotation still honoured.

use ledger_system_tests as common;

use common::*;

#[test]
fn rotating_the_kek_keeps_every_customer_readable_and_the_old_kek_opens_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = demo(&data, 150);
    let (b, c) = sample(&s, "erasable", 0);
    let export = |data: &std::path::Path, extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["export-customer", "--broadcaster", &b, "--customer", &c]);
        run(data, &args)
    };
    let before = export(&data, &[]);
    assert!(before.status.success(), "{}", stderr(&before));

    let old_kek = std::fs::read_to_string(data.join("kek.hex")).unwrap();
    let old_file = tmp.path().join("old-kek.hex");
    std::fs::write(&old_file, &old_kek).unwrap();
    let new_file = tmp.path().join("new-kek.hex");
    let new_kek = "ab".repeat(32);
    std::fs::write(&new_file, format!("{new_kek}\n")).unwrap();

    // A bad new key is refused without echoing it, and changes nothing.
    let bad = tmp.path().join("bad-kek.hex");
    std::fs::write(&bad, "not-a-key-0123").unwrap();
    let out = run(
        &data,
        &["kek", "rotate", "--new-kek-file", bad.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("not-a-key-0123"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(data.join("kek.hex")).unwrap(),
        old_kek
    );

    let out = run(
        &data,
        &[
            "kek",
            "rotate",
            "--new-kek-file",
            new_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("re-wrapped 150 data keys"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read_to_string(data.join("kek.hex"))
            .unwrap()
            .trim(),
        new_kek,
        "the KEK file in the data folder now holds the new key"
    );

    // The same personal data opens with the new KEK; the audit is clean.
    let after = export(&data, &[]);
    assert!(after.status.success(), "{}", stderr(&after));
    let json = |o: &std::process::Output| {
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["exported_at"] = serde_json::Value::Null;
        v
    };
    assert_eq!(
        json(&before),
        json(&after),
        "the same personal data, opened"
    );
    assert_eq!(json(&after)["erased"], false);
    let audit = run(&data, &["audit", "verify"]);
    assert!(audit.status.success(), "{}", stdout(&audit));

    // Started with the old KEK, ledger refuses at once and says why.
    let out = export(&data, &["--kek-file", old_file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not open the stored data key"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(old_kek.trim()));
    // The audit needs no keys: it warns and still checks the log.
    let audit = run(
        &data,
        &["--kek-file", old_file.to_str().unwrap(), "audit", "verify"],
    );
    assert!(audit.status.success(), "{}", stdout(&audit));
    assert!(
        stderr(&audit).contains("warning: the key-encryption key does not open"),
        "{}",
        stderr(&audit)
    );

    // Erasure still works after a rotation.
    let out = run(&data, &["anonymize", "--broadcaster", &b, "--customer", &c]);
    assert!(out.status.success(), "{}", stderr(&out));
    let audit = run(&data, &["audit", "verify"]);
    assert!(audit.status.success(), "{}", stdout(&audit));
}
