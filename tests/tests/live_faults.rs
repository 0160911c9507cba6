//! Faults while the real server runs: clients that reset the connection in the
//! middle of an erasure, and an auditor running `audit verify` every 2 s beside
//! eight writers. Neither may leave a customer half erased, and the audit may
//! report no problem that is not there.
//!
//! `LEDGER_TEST_LIVE_AUDIT_SECS` sets how long the live audit runs (default 20;
//! the full run is 60).

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use ledger_system_tests as common;

use common::half_erased;
use common::server::{call, free_port, ledger, start, stop, tenant};

fn register(base: &str, key: &str, n: u64) -> String {
    let (st, r) = call(
        "POST",
        &format!("{base}/v1/customers"),
        key,
        Some(json!({
            "email": format!("live.{n}@example.com"), "password_hash": "argon2id$x",
            "first_name": "Hildegard", "last_name": format!("Tester{n}"),
            "registration_ip": "198.51.100.23"
        })),
    );
    assert_eq!(st, 201, "{r}");
    r["customer_id"].as_str().unwrap().to_owned()
}

#[test]
fn erasures_whose_clients_reset_the_connection_are_never_left_half_done() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, free_port(), None);
    let base = server.base.clone();
    let addr = base.trim_start_matches("http://").to_owned();
    let (_, key) = tenant(&base, "Reset Stream");
    let customers: Vec<String> = (0..300).map(|n| register(&base, &key, n)).collect();

    // Each erasure's client sends the request and hangs up after 0 to 14 ms:
    // some before the decision, some between the decision and the destruction.
    let mut last_sent = Instant::now();
    for (i, c) in customers.iter().enumerate() {
        let mut s = TcpStream::connect(&addr).unwrap();
        let req = format!(
            "POST /v1/customers/{c}/anonymize HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Length: 0\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis((i % 15) as u64));
        drop(s);
        last_sent = Instant::now();
    }
    // Within 2 s of the last reset, no customer is half erased.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(last_sent.elapsed()));
    let half = half_erased(&data);
    assert!(
        half.is_empty(),
        "{} customers half erased 2 s after their client went away: {:?}",
        half.len(),
        &half[..half.len().min(5)]
    );
    // Every erasure that was decided is also finished; the others never started.
    let (st, list) = call("GET", &format!("{base}/v1/erasures"), &key, None);
    assert_eq!(st, 200);
    let decided = list["items"].as_array().unwrap().len();
    eprintln!("{decided} of 300 erasures were decided before their client reset");
    stop(server);
    let audit = ledger(&data, None)
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}

#[test]
fn an_audit_every_two_seconds_beside_eight_writers_finds_no_false_problem() {
    let secs: u64 = std::env::var("LEDGER_TEST_LIVE_AUDIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, free_port(), None);
    let base = server.base.clone();
    let (_, key) = tenant(&base, "Live Audit Stream");
    let stop_flag = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let (base, key, stop_flag, writes) =
                (base.clone(), key.clone(), stop_flag.clone(), writes.clone());
            std::thread::spawn(move || {
                let mut n = w * 1_000_000;
                while !stop_flag.load(Ordering::Relaxed) {
                    n += 1;
                    let c = register(&base, &key, n);
                    let (st, r) = call(
                        "POST",
                        &format!("{base}/v1/customers/{c}/payments"),
                        &key,
                        Some(json!({"offer_id": "live-monthly", "amount": {"minor": 999, "currency": "EUR"}})),
                    );
                    assert_eq!(st, 201, "{r}");
                    // Every other customer is erased at once: erasures land
                    // between the audit's reads of the log, keys and views.
                    if n.is_multiple_of(2) {
                        let (st, r) = call(
                            "POST",
                            &format!("{base}/v1/customers/{c}/anonymize"),
                            &key,
                            None,
                        );
                        assert_eq!(st, 200, "{r}");
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut audits = 0;
    let mut false_problems: Vec<Value> = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let out = ledger(&data, None)
            .args(["audit", "verify", "--json"])
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        audits += 1;
        if !out.status.success() {
            false_problems.push(if report.is_null() {
                json!(String::from_utf8_lossy(&out.stderr))
            } else {
                report["problems"].clone()
            });
        }
        std::thread::sleep(Duration::from_secs(2).saturating_sub(t.elapsed()));
    }
    stop_flag.store(true, Ordering::Relaxed);
    for w in writers {
        w.join()
            .expect("a writer failed: a server request failed beside the audit");
    }
    let written = writes.load(Ordering::Relaxed);
    eprintln!("{audits} audits beside 8 writers ({written} customers written) in {secs} s");
    stop(server);
    assert!(audits >= secs / 3, "only {audits} audits ran");
    assert!(written > 0);
    assert!(
        false_problems.is_empty(),
        "{} of {audits} audits reported problems: {false_problems:?}",
        false_problems.len()
    );
}
