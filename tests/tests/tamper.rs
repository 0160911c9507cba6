//! Tamper tests: any edit of the stored log is reported by `ledger audit verify`
//! with a non-zero exit: a changed byte in any column, a deleted record, two
//! records swapped, the last record of a stream removed, and (with an anchor the
//! auditor recorded) a truncated tail.

use ledger_system_tests as common;

use common::*;
use rusqlite::{params, Connection};

struct Pristine {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    head: String,
}

fn pristine() -> Pristine {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pristine");
    demo(&dir, 60);
    let out = run(&dir, &["audit", "verify", "--json"]);
    assert!(
        out.status.success(),
        "a fresh demo must verify: {}",
        stdout(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let head = format!(
        "{}:{}",
        v["head_position"],
        v["head_log_hash"].as_str().unwrap()
    );
    Pristine {
        _tmp: tmp,
        dir,
        head,
    }
}

/// Copies the pristine store, applies `edit` to its events database, and returns
/// the audit's exit status and JSON report.
fn audit_after(p: &Pristine, name: &str, edit: impl FnOnce(&Connection)) -> serde_json::Value {
    let dir = p.dir.parent().unwrap().join(name);
    copy_dir(&p.dir, &dir);
    {
        let conn = Connection::open(dir.join("events.sqlite")).unwrap();
        edit(&conn);
    }
    let out = run(
        &dir,
        &["audit", "verify", "--json", "--expect-head", &p.head],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{name}: no JSON report: {}", stderr(&out)));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name}: tampering not reported: {report}"
    );
    assert_eq!(report["ok"], false, "{name}");
    assert!(!report["problems"].as_array().unwrap().is_empty(), "{name}");
    report
}

fn head(conn: &Connection) -> i64 {
    conn.query_row("SELECT max(position) FROM events", [], |r| r.get(0))
        .unwrap()
}

fn flip_blob(conn: &Connection, column: &str, position: i64, byte: usize) {
    let mut b: Vec<u8> = conn
        .query_row(
            &format!("SELECT {column} FROM events WHERE position = ?1"),
            [position],
            |r| r.get(0),
        )
        .unwrap();
    b[byte] ^= 0x01;
    conn.execute(
        &format!("UPDATE events SET {column} = ?1 WHERE position = ?2"),
        params![b, position],
    )
    .unwrap();
}

#[test]
fn every_kind_of_edit_to_the_stored_log_is_reported() {
    let p = pristine();

    // One byte of a payload, of an event id, of each hash.
    for (column, byte) in [
        ("payload", 10),
        ("event_id", 3),
        ("hash", 0),
        ("log_hash", 31),
    ] {
        let r = audit_after(&p, &format!("flip-{column}"), |c| {
            let mid = head(c) / 2;
            flip_blob(c, column, mid, byte);
        });
        assert!(!codes(&r).is_empty(), "{column}");
    }
    // Integer and text columns.
    audit_after(&p, "recorded-at", |c| {
        let mid = head(c) / 2;
        c.execute(
            "UPDATE events SET recorded_at = recorded_at + 1 WHERE position = ?1",
            [mid],
        )
        .unwrap();
    });
    audit_after(&p, "event-type", |c| {
        let mid = head(c) / 3;
        c.execute(
            "UPDATE events SET event_type = 'PaymentRefunded' WHERE position = ?1 AND event_type = 'PaymentCaptured'",
            [mid],
        )
        .unwrap();
        c.execute(
            "UPDATE events SET schema_version = 2 WHERE position = ?1",
            [mid],
        )
        .unwrap();
    });

    // A record deleted from the middle of the log.
    audit_after(&p, "delete-middle", |c| {
        let mid = head(c) / 2;
        c.execute("DELETE FROM events WHERE position = ?1", [mid])
            .unwrap();
    });

    // Two records swapped (each keeps its content, they change places).
    audit_after(&p, "swap", |c| {
        let a = head(c) / 2;
        let b = a + 1;
        c.execute_batch(&format!(
            "UPDATE events SET position = -1 WHERE position = {a};
             UPDATE events SET position = {a} WHERE position = {b};
             UPDATE events SET position = {b} WHERE position = -1;"
        ))
        .unwrap();
    });

    // The last record of a stream removed (while the log goes on after it).
    audit_after(&p, "stream-tail", |c| {
        let (pos, _): (i64, String) = c
            .query_row(
                "SELECT position, stream FROM events e
                 WHERE stream LIKE 'customer-%'
                   AND version = (SELECT max(version) FROM events WHERE stream = e.stream)
                   AND position < (SELECT max(position) FROM events)
                 ORDER BY position LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        c.execute("DELETE FROM events WHERE position = ?1", [pos])
            .unwrap();
    });

    // The tail of the whole log removed: caught by the auditor's recorded head.
    let r = audit_after(&p, "log-tail", |c| {
        let h = head(c);
        c.execute("DELETE FROM events WHERE position = ?1", [h])
            .unwrap();
    });
    assert!(codes(&r).contains(&"ANCHOR_MISMATCH".to_string()), "{r}");

    // A whole customer stream removed.
    audit_after(&p, "whole-stream", |c| {
        let s: String = c
            .query_row(
                "SELECT stream FROM events WHERE stream LIKE 'customer-%' ORDER BY position LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        c.execute("DELETE FROM events WHERE stream = ?1", [s])
            .unwrap();
    });
}

#[test]
fn an_untouched_copy_verifies_against_its_anchor() {
    let p = pristine();
    let out = run(&p.dir, &["audit", "verify", "--expect-head", &p.head]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("result: OK"));
}
