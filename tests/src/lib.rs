//! Helpers shared by the system tests in `tests/`: they drive the real `ledger`
//! program as a child process (the CLI commands, `ledger serve` over HTTP), read
//! the files it writes, and scan them for what must not be there.
//!
//! The program under test is this package's `ledger-under-test` binary, which
//! `cargo test` builds first (it is `ledger_cli::main`, the same as `ledger`). With
//! `LEDGER_TEST_BIN=/path/to/ledger` the suites run that binary instead, e.g. an
//! older build, to show a test fails where the fix is missing (README.md).
//!
//! Every command starts with no `LEDGER_*` variable of the caller's environment:
//! only what a test sets reaches the program.

#[cfg(feature = "nats")]
pub mod nats;
pub mod pg;
pub mod server;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aho_corasick::AhoCorasick;

/// The binary's name in this package (`[[bin]]` in Cargo.toml).
const BIN: &str = "ledger-under-test";

/// The `ledger` program the tests run: `LEDGER_TEST_BIN` if set, else this
/// package's `ledger-under-test`, found where Cargo put it (its path from Cargo
/// when the harness was given one, else beside the test binary's `deps` folder).
pub fn ledger_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LEDGER_TEST_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os(format!("CARGO_BIN_EXE_{BIN}")) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut dir = exe
        .parent()
        .expect("the test binary's folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("{BIN}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} not found: run the tests with `cargo test -p ledger-system-tests`, or set LEDGER_TEST_BIN",
        bin.display()
    );
    bin
}

/// Removes every `LEDGER_*` variable inherited from the caller's environment from
/// `cmd`, so that only what a test sets reaches the program.
pub fn clear_ledger_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LEDGER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `ledger --data DATA`, logging at `info`.
pub fn ledger(data: &Path) -> Command {
    let mut c = Command::new(ledger_bin());
    clear_ledger_env(&mut c);
    c.arg("--data").arg(data);
    c.env("LEDGER_LOG", "info");
    c
}

/// Runs `ledger --data DATA ARGS...` to the end.
pub fn run(data: &Path, args: &[&str]) -> Output {
    ledger(data).args(args).output().expect("run ledger")
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

/// Which of `needles` occur in any file under `dir` (recursively), one line per
/// hit: the file and the needle's index (never the needle: it may be personal).
pub fn scan_files<N: AsRef<[u8]>>(dir: &Path, needles: &[N]) -> Vec<String> {
    let ac = AhoCorasick::new(needles).expect("automaton");
    files(dir)
        .into_iter()
        .flat_map(|f| {
            let bytes = std::fs::read(&f).expect("read");
            hits(&ac, &bytes, &f.display().to_string())
        })
        .collect()
}

/// Which of `needles` occur in `bytes` (e.g. what a command printed), as
/// [`scan_files`] reports them, with `what` for the file.
pub fn scan_bytes<N: AsRef<[u8]>>(bytes: &[u8], what: &str, needles: &[N]) -> Vec<String> {
    hits(&AhoCorasick::new(needles).expect("automaton"), bytes, what)
}

fn hits(ac: &AhoCorasick, bytes: &[u8], what: &str) -> Vec<String> {
    ac.find_overlapping_iter(bytes)
        .map(|m| format!("{what} (needle #{})", m.pattern().as_usize()))
        .collect()
}

/// Copies every file under `from` to the same place under `to`.
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
