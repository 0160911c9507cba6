//! Helpers for tests that drive the real `ledger` binary.
#![allow(dead_code)]

pub mod pg;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn ledger(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ledger"));
    c.arg("--data").arg(data);
    c.env_remove("LEDGER_KEK")
        .env_remove("LEDGER_KEK_FILE")
        .env_remove("LEDGER_FAILPOINT");
    c.env("LEDGER_LOG", "info");
    c
}

pub fn run(data: &Path, args: &[&str]) -> Output {
    let out = ledger(data).args(args).output().expect("run ledger");
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `ledger demo --json` and returns the parsed summary.
pub fn demo(data: &Path, customers: usize) -> serde_json::Value {
    let out = run(
        data,
        &["demo", "--customers", &customers.to_string(), "--json"],
    );
    assert!(out.status.success(), "demo failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("demo prints JSON")
}

/// The first (broadcaster, customer) of a sample list in the demo summary.
pub fn sample(summary: &serde_json::Value, list: &str, i: usize) -> (String, String) {
    let pair = &summary["samples"][list][i];
    (
        pair[0].as_str().expect("broadcaster id").to_owned(),
        pair[1].as_str().expect("customer id").to_owned(),
    )
}

/// The problem codes of an audit report (`--json`), in order.
pub fn codes(report: &serde_json::Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for f in files(from) {
        let rel = f.strip_prefix(from).expect("prefix");
        let dst = to.join(rel);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).expect("mkdir");
        }
        std::fs::copy(&f, &dst).expect("copy");
    }
}

/// Customers with a `CustomerAnonymized` in the log, read straight from the file
/// (read-only) while the server runs.
pub fn erased_in_log(data: &Path) -> Vec<String> {
    let ro = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let events = rusqlite::Connection::open_with_flags(data.join("events.sqlite"), ro).unwrap();
    let mut stmt = events
        .prepare("SELECT stream FROM events WHERE event_type = 'CustomerAnonymized'")
        .unwrap();
    let streams: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    streams
        .into_iter()
        .filter_map(|s| s.strip_prefix("customer-").map(str::to_owned))
        .collect()
}

/// Customers with a `CustomerAnonymized` in the log whose data key still exists,
/// read straight from the files (read-only) while the server runs.
pub fn half_erased(data: &Path) -> Vec<String> {
    let ro = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let keys = rusqlite::Connection::open_with_flags(data.join("keys.sqlite"), ro).unwrap();
    erased_in_log(data)
        .into_iter()
        .filter(|id| {
            let Ok(uuid) = uuid::Uuid::parse_str(id) else {
                return false;
            };
            keys.query_row(
                "SELECT COUNT(*) > 0 FROM data_keys WHERE customer_id = ?1",
                [&uuid.as_bytes()[..]],
                |r| r.get(0),
            )
            .unwrap()
        })
        .collect()
}
