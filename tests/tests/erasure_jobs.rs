//! Bulk erasure jobs through the real `ledger serve` (issue 12, part 4): a job of
//! every customer of a demo data set, filed by the platform operator, and a real
//! `kill -9` of the server while it runs:
//!
//! - at a random moment (twice: once during the first run, once during the
//!   recovery after the restart), and
//! - at the two exact steps of a chunk where a crash leaves the most half done
//!   (`LEDGER_FAILPOINT=job-after-file`: requests filed and erasures appended, keys
//!   not destroyed; `job-after-destroy`: keys destroyed, requests not completed).
//!
//! After the restart the job ends by itself, and then: every item has exactly one
//! request (one `ErasureRequested`), every request ended at most once and every
//! request the job settled as completed exactly once, every customer has at most
//! one `CustomerAnonymized`, no customer is half erased (an erasure without its
//! key destroyed, or a key destroyed without an erasure), and `audit verify` is
//! clean.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use ledger_system_tests as common;

use common::server::{audit, call, free_port, ledger, start, stop, wait_ok, Server, ADMIN};

const JOB: &str = "0000000a-0000-4000-8000-00000000c0de";

fn read_only(data: &Path, file: &str) -> rusqlite::Connection {
    let ro = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    rusqlite::Connection::open_with_flags(data.join(file), ro).unwrap()
}

/// Every customer id in the log (read-only, beside a server).
fn customers(data: &Path) -> Vec<String> {
    let db = read_only(data, "events.sqlite");
    let mut stmt = db
        .prepare(
            "SELECT DISTINCT stream FROM events WHERE stream LIKE 'customer-%' ORDER BY stream",
        )
        .unwrap();
    let v: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|s| s.unwrap().trim_start_matches("customer-").to_owned())
        .collect();
    v
}

/// How many records of each `event_type` each stream with `prefix` holds.
fn counts(data: &Path, prefix: &str) -> BTreeMap<(String, String), i64> {
    let db = read_only(data, "events.sqlite");
    let mut stmt = db
        .prepare(
            "SELECT stream, event_type, COUNT(*) FROM events WHERE stream LIKE ?1 \
             GROUP BY stream, event_type",
        )
        .unwrap();
    let v = stmt
        .query_map([format!("{prefix}%")], |r| {
            Ok(((r.get(0)?, r.get(1)?), r.get(2)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    v
}

/// Customers whose key was destroyed (the key store's tombstones).
fn destroyed(data: &Path) -> Vec<String> {
    let db = read_only(data, "keys.sqlite");
    let mut stmt = db
        .prepare("SELECT customer_id FROM destroyed_keys")
        .unwrap();
    let v = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| uuid::Uuid::from_slice(&b.unwrap()).unwrap().to_string())
        .collect();
    v
}

/// How far the job got, as its stream says (for the test's output).
fn progress(data: &Path) -> String {
    let job = counts(data, &format!("erasure-job-{JOB}"));
    let n = |t: &str| {
        job.get(&(format!("erasure-job-{JOB}"), t.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    format!(
        "{} chunks begun, {} settled, finished: {}",
        n("ErasureJobChunkStarted"),
        n("ErasureJobItemsSettled"),
        n("ErasureJobFinished")
    )
}

fn kill9(child: &mut Child) {
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -KILL");
    let _ = child.wait();
}

/// A moment that varies from run to run, up to `max_ms`.
fn random_ms(max_ms: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) % max_ms.max(1)
}

fn job(base: &str) -> Value {
    let (st, j) = call("GET", &format!("{base}/v1/erasure-jobs/{JOB}"), ADMIN, None);
    assert_eq!(st, 200, "{j}");
    j
}

fn ended(j: &Value) -> bool {
    matches!(j["state"].as_str(), Some("succeeded" | "partially_failed"))
}

/// `ledger serve` with a failpoint armed, the job of `ids` submitted to it;
/// returns once the failpoint is reached (the runner is parked there), or after
/// 20 s without.
fn serve_until_failpoint(data: &Path, failpoint: &str, ids: &[String]) -> (Child, bool) {
    let port = free_port();
    let mut child = ledger(data, None)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("LEDGER_ADMIN_KEY", ADMIN)
        .env("LEDGER_FAILPOINT", failpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = format!("failpoint {failpoint} reached");
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains(&needle) {
                let _ = tx.send(());
                seen.clear();
            }
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    wait_ok(&format!("{base}/healthz"), "the server");
    submit(&base, ids);
    let reached = rx.recv_timeout(Duration::from_secs(20)).is_ok();
    (child, reached)
}

/// Restarts the server and waits for the job to end; returns the server and the
/// job.
fn resume(data: &Path) -> (Server, Value) {
    let s = start(data, free_port(), None);
    wait_ok(&format!("{}/healthz", s.base), "the restarted server");
    let started = Instant::now();
    loop {
        let j = job(&s.base);
        if ended(&j) {
            return (s, j);
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the job never ended: {j}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check(data: &Path, ids: &[String], j: &Value) {
    let c = &j["counts"];
    assert_eq!(c["pending"], 0, "{j}");
    assert_eq!(c["cancelled"], 0, "{j}");
    let completed = c["completed"].as_u64().unwrap();
    assert!(completed > 0, "{j}");
    let total = completed
        + c["deferred"].as_u64().unwrap()
        + c["refused"].as_u64().unwrap()
        + c["not_found"].as_u64().unwrap();
    assert_eq!(total, ids.len() as u64, "{j}");

    // One request per item, each ended at most once; as many completed as the job says.
    let requests = counts(data, "erasure-request-");
    let mut filed = BTreeMap::<String, (i64, i64, i64)>::new();
    for ((stream, t), n) in &requests {
        let e = filed.entry(stream.clone()).or_default();
        match t.as_str() {
            "ErasureRequested" => e.0 += n,
            "ErasureCompleted" => e.1 += n,
            "ErasureRefused" | "ErasureCancelled" => e.2 += n,
            _ => {}
        }
    }
    assert_eq!(filed.len(), ids.len(), "one request per item");
    for (stream, (req, done, other)) in &filed {
        assert_eq!(*req, 1, "{stream} received {req} times");
        assert!(done + other <= 1, "{stream} ended {} times", done + other);
    }
    let done = filed.values().filter(|(_, d, _)| *d == 1).count() as u64;
    assert_eq!(done, completed, "completed requests vs the job's count");

    // At most one erasure per customer; never half erased, either way round.
    let erased: Vec<String> = counts(data, "customer-")
        .into_iter()
        .filter(|((_, t), _)| t == "CustomerAnonymized")
        .map(|((s, _), n)| {
            assert_eq!(n, 1, "{s} anonymized {n} times");
            s.trim_start_matches("customer-").to_owned()
        })
        .collect();
    assert_eq!(erased.len() as u64, completed);
    assert!(
        common::half_erased(data).is_empty(),
        "an erasure with a live key"
    );
    let mut gone = destroyed(data);
    gone.sort();
    let mut erased = erased;
    erased.sort();
    assert_eq!(
        gone, erased,
        "a destroyed key without an erasure, or the reverse"
    );

    let report = audit(data, None);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["erasure_requests"]["by_status"]["completed"], completed,
        "{report}"
    );
}

/// The job of all the customers `ids`, submitted to `base` by the operator.
fn submit(base: &str, ids: &[String]) {
    let (st, j) = call(
        "POST",
        &format!("{base}/v1/erasure-jobs"),
        ADMIN,
        Some(json!({ "customer_ids": ids, "job_id": JOB, "reference": "OPS-CRASH" })),
    );
    assert_eq!(st, 201, "{j}");
}

#[test]
fn a_bulk_job_survives_kill_9_at_random_moments_and_erases_each_customer_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::demo(&data, 1_500);
    let ids = customers(&data);
    assert!(ids.len() >= 1_000, "{}", ids.len());

    let mut s = start(&data, free_port(), None);
    submit(&s.base, &ids);
    // Killed while it runs, at a moment that varies from run to run.
    std::thread::sleep(Duration::from_millis(random_ms(800)));
    kill9(&mut s.child);
    eprintln!("killed at: {}", progress(&data));

    // Killed again during the recovery, then left to finish.
    let mut s = start(&data, free_port(), None);
    std::thread::sleep(Duration::from_millis(random_ms(500)));
    kill9(&mut s.child);
    eprintln!("killed again at: {}", progress(&data));
    let (s, j) = resume(&data);
    stop(s);
    check(&data, &ids, &j);
}

#[test]
fn a_bulk_job_survives_kill_9_between_filing_destroying_and_completing() {
    for failpoint in ["job-after-file", "job-after-destroy"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        common::demo(&data, 400);
        let ids = customers(&data);

        let (mut child, reached) = serve_until_failpoint(&data, failpoint, &ids);
        assert!(reached, "{failpoint} was never reached");
        kill9(&mut child);
        let (s, j) = resume(&data);
        stop(s);
        check(&data, &ids, &j);
    }
}
