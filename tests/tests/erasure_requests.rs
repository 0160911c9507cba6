//! Erasure requests through the real `ledger serve` (issue 12):
//!
//! - the platform operator erases a shared account end to end, on SQLite and on
//!   PostgreSQL: refused while any broadcaster has an active subscription (every
//!   one listed with its broadcaster), then done once they are terminated; every
//!   linked broadcaster sees the receipt, marked as the operator's; `audit verify`
//!   is clean and counts the request on time;
//! - deferred requests survive a real `kill -9` while their subscriptions are
//!   being terminated: after a restart every request is completed exactly once
//!   (one `CustomerAnonymized` per customer, one `ErasureCompleted` per request),
//!   no key survives, and `audit verify` is clean.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use ledger_system_tests as common;

use common::server::{audit, call, free_port, ledger, start, stop, wait_ok, Server, ADMIN};

/// `ledger demo` on the store under test; the summary.
fn demo(data: &Path, store: Option<&str>, customers: usize) -> Value {
    let out = ledger(data, store)
        .args(["demo", "--customers", &customers.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A fresh API key for broadcaster `b`, from the admin endpoint.
fn key_for(base: &str, b: &str) -> String {
    let (st, k) = call(
        "POST",
        &format!("{base}/v1/admin/broadcasters/{b}/api-keys"),
        ADMIN,
        Some(json!({})),
    );
    assert_eq!(st, 201, "{k}");
    k["token"].as_str().unwrap().to_owned()
}

#[test]
fn the_operator_erases_a_shared_account_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    operator_story(&dir.path().join("data"), None);
}

#[test]
fn the_operator_erases_a_shared_account_end_to_end_on_postgres() {
    let Some(db) = common::pg::TestDatabase::create("operator") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    operator_story(&dir.path().join("data"), Some(db.url()));
}

fn operator_story(data: &Path, store: Option<&str>) {
    let summary = demo(data, store, 300);
    let s = start(data, free_port(), store);
    let base = s.base.clone();
    let (b, c) = common::sample(&summary, "shared_account", 0);
    let path = format!("{base}/v1/admin/customers/{c}/anonymize");

    // No broadcaster may erase it.
    let bkey = key_for(&base, &b);
    let (st, body) = call(
        "POST",
        &format!("{base}/v1/customers/{c}/anonymize"),
        &bkey,
        None,
    );
    assert_eq!(st, 409, "{body}");

    // Give the account an active subscription with the sample's broadcaster, so
    // the operator is refused first whatever the demo made.
    let (st, sub) = call(
        "POST",
        &format!("{base}/v1/customers/{c}/subscriptions"),
        &bkey,
        Some(json!({"offer_id": "premium-monthly"})),
    );
    assert_eq!(st, 201, "{sub}");
    let (st, refused) = call("POST", &path, ADMIN, Some(json!({"reference": "OPS-12"})));
    assert_eq!(st, 409, "{refused}");
    assert_eq!(refused["code"], "ACTIVE_SUBSCRIPTION");
    let blocking = refused["details"]["broadcasters"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!blocking.is_empty(), "{refused}");
    // Every broadcaster terminates its own.
    for entry in &blocking {
        let who = entry["broadcaster_id"].as_str().unwrap();
        let k = key_for(&base, who);
        for sid in entry["subscriptions"].as_array().unwrap() {
            let sid = sid.as_str().unwrap();
            let (st, t) = call(
                "POST",
                &format!("{base}/v1/customers/{c}/subscriptions/{sid}/terminate"),
                &k,
                Some(json!({})),
            );
            assert_eq!(st, 200, "{t}");
        }
    }
    let (st, done) = call("POST", &path, ADMIN, Some(json!({"reference": "OPS-12"})));
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["requested_by"]["kind"], "operator");
    assert_eq!(done["receipt"]["erased_by"]["kind"], "operator");
    assert_eq!(done["receipt"]["data_key_destroyed"], true);

    // Every linked broadcaster (each one that had a subscription, and the
    // sample's) sees the receipt among its own, marked as the operator's.
    let mut linked: BTreeSet<String> = blocking
        .iter()
        .map(|e| e["broadcaster_id"].as_str().unwrap().to_owned())
        .collect();
    linked.insert(b.clone());
    for who in &linked {
        let k = key_for(&base, who);
        let (st, list) = call("GET", &format!("{base}/v1/erasures"), &k, None);
        assert_eq!(st, 200, "{list}");
        let mine: Vec<&Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["customer_id"] == c.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{who}: {list}");
        assert_eq!(mine[0]["erased_by"]["kind"], "operator");
    }
    let (st, summary) = call("GET", &format!("{base}/v1/customers/{c}"), &bkey, None);
    assert_eq!(st, 200, "{summary}");
    assert_eq!(summary["status"], "erased");
    stop(s);

    // The CLI lists and shows it, read from the log.
    let out = ledger(data, store)
        .args(["erasure-requests", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["request_id"], done["request_id"]);
    assert_eq!(listed[0]["reference"], "OPS-12");
    let id = done["request_id"].as_str().unwrap();
    let out = ledger(data, store)
        .args(["erasure-requests", "show", id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["receipt"]["erased_by"]["kind"], "operator");
    let out = ledger(data, store)
        .args(["erasure-requests", "list", "--status", "lost"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let report = audit(data, store);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["erasure_requests"]["total"], 1, "{report}");
    assert_eq!(report["erasure_requests"]["by_status"]["completed"], 1);
    assert_eq!(report["erasure_requests"]["on_time_rate"], 1.0);
}

/// Sends SIGKILL (a real `kill -9`) and reaps the child.
fn kill9(mut s: Server) {
    let pid = s.child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -KILL");
    let _ = s.child.wait();
}

/// How many records of `event_type` a stream holds (read-only, beside a server).
fn count(data: &Path, stream: &str, event_type: &str) -> i64 {
    let ro = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let db = rusqlite::Connection::open_with_flags(data.join("events.sqlite"), ro).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM events WHERE stream = ?1 AND event_type = ?2",
        [stream, event_type],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn deferred_requests_survive_kill_9_and_complete_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let summary = demo(&data, None, 600);
    let port = free_port();
    let s = start(&data, port, None);
    let base = s.base.clone();

    // Every customer with an active subscription gets an erasure request: each is
    // deferred, waiting for its subscriptions.
    let samples = summary["samples"]["active_subscription"]
        .as_array()
        .unwrap()
        .clone();
    assert!(samples.len() >= 4, "{summary}");
    let mut requests = Vec::new();
    for pair in &samples {
        let (b, c) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        let k = key_for(&base, b);
        let (st, r) = call(
            "POST",
            &format!("{base}/v1/erasure-requests"),
            &k,
            Some(json!({"customer_id": c})),
        );
        assert_eq!(st, 200, "{r}");
        if r["status"] != "deferred" {
            // Another blocker too (a shared account): refused, recorded, not ours.
            assert_eq!(r["status"], "refused", "{r}");
            continue;
        }
        requests.push((k, c.to_owned(), r));
    }
    assert!(requests.len() >= 2, "{requests:?}");

    // Terminate their subscriptions from a thread, and kill -9 the server
    // partway, at a point that varies from run to run.
    let terminations: Vec<(String, String, String)> = requests
        .iter()
        .flat_map(|(k, c, r)| {
            r["waiting_for"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (k.clone(), c.clone(), s.as_str().unwrap().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let worker = {
        let base = base.clone();
        std::thread::spawn(move || {
            for (k, c, sid) in terminations {
                let url = format!("{base}/v1/customers/{c}/subscriptions/{sid}/terminate");
                if common::server::try_call_with("POST", &url, &k, Some(json!({})), &[]).is_err() {
                    break; // the server is gone
                }
            }
        })
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::thread::sleep(Duration::from_millis(20 + u64::from(nanos % 200)));
    kill9(s);
    let _ = worker.join();

    // Restart; terminate whatever the kill left active (the broadcaster retries),
    // and the process completes every request by itself.
    let s = start(&data, free_port(), None);
    let base = s.base.clone();
    wait_ok(&format!("{base}/healthz"), "the restarted server");
    for (k, c, r) in &requests {
        for sid in r["waiting_for"].as_array().unwrap() {
            let sid = sid.as_str().unwrap();
            let (st, body) = call(
                "POST",
                &format!("{base}/v1/customers/{c}/subscriptions/{sid}/terminate"),
                k,
                Some(json!({})),
            );
            assert!(
                st == 200 || (st == 409 && body["code"] == "SUBSCRIPTION_NOT_ACTIVE"),
                "{st} {body}"
            );
        }
    }
    let started = Instant::now();
    for (k, _, r) in &requests {
        let id = r["request_id"].as_str().unwrap();
        loop {
            let (st, now) = call("GET", &format!("{base}/v1/erasure-requests/{id}"), k, None);
            assert_eq!(st, 200, "{now}");
            if now["status"] == "completed" {
                assert_eq!(now["receipt"]["data_key_destroyed"], true, "{now}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "request {id} never completed: {now}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    stop(s);

    // Exactly once each, no key left, audit clean.
    for (_, c, r) in &requests {
        let id = r["request_id"].as_str().unwrap();
        assert_eq!(
            count(&data, &format!("customer-{c}"), "CustomerAnonymized"),
            1
        );
        assert_eq!(
            count(&data, &format!("erasure-request-{id}"), "ErasureCompleted"),
            1
        );
    }
    assert!(common::half_erased(&data).is_empty());
    let report = audit(&data, None);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["erasure_requests"]["by_status"]["completed"],
        requests.len() as u64,
        "{report}"
    );
}
