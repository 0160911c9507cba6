//! End to end: the real `ledger serve` binary on a free port with a temporary data
//! folder, driven over HTTP through the whole story (register, subscribe, pay,
//! refused erasure, terminate, erase, tombstone, revenue digest unchanged, audit
//! verify clean), stopped with SIGTERM and started again to check nothing was lost.

use std::path::Path;

use serde_json::json;

use ledger_system_tests as common;

use common::scan_files;
use common::server::{call, free_port, ledger, start, stop, tenant, ADMIN};

const EMAIL: &str = "ada.e2e@example.com";

#[test]
fn the_whole_story_over_http_survives_a_sigterm_restart() {
    let dir = tempfile::tempdir().unwrap();
    story(&dir.path().join("data"), None);
}

#[test]
fn the_whole_story_over_http_survives_a_sigterm_restart_on_postgres() {
    let Some(db) = common::pg::TestDatabase::create("e2e") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    story(&dir.path().join("data"), Some(db.url()));
}

fn story(data: &Path, store: Option<&str>) {
    let data = data.to_path_buf();
    let port = free_port();
    let s = start(&data, port, store);
    let base = s.base.clone();

    // The operator creates a white-label broadcaster and its key.
    let (bid, key) = tenant(&base, "E2E Stream");

    // The CLI issues a key while the server runs; the server accepts it at once.
    let out = ledger(&data, store)
        .args(["api-key", "create", "--broadcaster", &bid, "--label", "cli"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let cli_key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token (shown once): "))
        .unwrap()
        .to_owned();
    assert_eq!(
        call("GET", &format!("{base}/v1/erasures"), &cli_key, None).0,
        200
    );

    // Register, subscribe, pay.
    let (st, r) = call(
        "POST",
        &format!("{base}/v1/customers"),
        &key,
        Some(json!({
        "email": EMAIL, "password_hash": "argon2id$v=19$abc", "first_name": "Ada", "last_name": "Lovelace",
        "address": "10 Downing Street", "registration_ip": "198.51.100.77"})),
    );
    assert_eq!(st, 201, "{r}");
    let c = r["customer_id"].as_str().unwrap().to_owned();
    let (st, r) = call(
        "POST",
        &format!("{base}/v1/customers/{c}/subscriptions"),
        &key,
        Some(json!({"offer_id": "premium"})),
    );
    assert_eq!(st, 201);
    let sid = r["subscription_id"].as_str().unwrap().to_owned();
    let (st, _) = call(
        "POST",
        &format!("{base}/v1/customers/{c}/payments"),
        &key,
        Some(
            json!({"offer_id": "premium", "subscription_id": sid, "amount": {"minor": 999, "currency": "EUR"}, "payer_ip": "198.51.100.78"}),
        ),
    );
    assert_eq!(st, 201);
    let (_, summary) = call("GET", &format!("{base}/v1/customers/{c}"), &key, None);
    assert_eq!(summary["profile"]["email"], EMAIL);
    let (_, rev) = call("GET", &format!("{base}/v1/revenue"), &key, None);
    let digest = rev["digest"].as_str().unwrap().to_owned();
    assert_eq!(rev["totals"][0]["net"], 999);

    // Refused erasure, terminate, erase.
    let (st, r) = call("DELETE", &format!("{base}/v1/customers/{c}"), &key, None);
    assert_eq!((st, r["code"].as_str()), (409, Some("ACTIVE_SUBSCRIPTION")));
    assert_eq!(r["details"]["subscriptions"][0], sid.as_str());
    let (st, _) = call(
        "POST",
        &format!("{base}/v1/customers/{c}/subscriptions/{sid}/terminate"),
        &key,
        None,
    );
    assert_eq!(st, 200);
    let (st, receipt) = call("DELETE", &format!("{base}/v1/customers/{c}"), &key, None);
    assert_eq!(st, 200, "{receipt}");
    assert_eq!(
        receipt["revenue_digest_before"],
        receipt["revenue_digest_after"]
    );
    assert_eq!(receipt["data_key_destroyed"], true);

    // Tombstone, revenue unchanged, audit clean.
    let (_, t) = call("GET", &format!("{base}/v1/customers/{c}"), &key, None);
    assert_eq!(
        (t["status"].as_str(), t["profile"].is_null()),
        (Some("erased"), true)
    );
    let (_, rev) = call("GET", &format!("{base}/v1/revenue"), &key, None);
    assert_eq!(rev["digest"], digest.as_str());
    let (st, audit) = call("GET", &format!("{base}/v1/audit/verify"), ADMIN, None);
    assert_eq!((st, audit["ok"].as_bool()), (200, Some(true)), "{audit}");
    let (st, _) = call("GET", &format!("{base}/metrics"), ADMIN, None);
    assert_eq!(st, 200);

    let logs = stop(s);
    assert!(
        !logs.contains(EMAIL) && !logs.contains("Lovelace") && !logs.contains("198.51.100.7"),
        "no personal data in the server's logs"
    );

    // Restart: nothing lost, keys still valid, the erasure still honoured.
    let s = start(&data, port, store);
    let (st, t) = call("GET", &format!("{base}/v1/customers/{c}"), &key, None);
    assert_eq!((st, t["status"].as_str()), (200, Some("erased")));
    assert_eq!(t["tombstone"]["request_id"], receipt["request_id"]);
    assert_eq!(t["payment_count"], 1);
    let (_, rev) = call("GET", &format!("{base}/v1/revenue"), &key, None);
    assert_eq!(rev["digest"], digest.as_str());
    let (_, e) = call("GET", &format!("{base}/v1/erasures"), &cli_key, None);
    assert_eq!(e["items"][0]["customer_id"], c.as_str());
    let (st, again) = call(
        "POST",
        &format!("{base}/v1/customers/{c}/anonymize"),
        &key,
        None,
    );
    assert_eq!((st, &again["request_id"]), (200, &receipt["request_id"]));
    let (_, audit) = call("GET", &format!("{base}/v1/audit/verify"), ADMIN, None);
    assert_eq!(audit["ok"], true, "{audit}");
    assert_eq!(
        audit["events"], 6,
        "broadcaster, register, subscribe, pay, terminate, anonymize"
    );
    stop(s);

    // No file the service wrote holds the erased customer's email in plaintext.
    assert!(scan_files(&data, &[EMAIL]).is_empty());
    // On PostgreSQL: no key left in the live table, no plaintext in any table.
    if let Some(url) = store {
        let c = uuid::Uuid::parse_str(&c).unwrap();
        let keys = common::pg::query_i64(
            url,
            "SELECT count(*) FROM ledger_data_keys WHERE customer_id = $1",
            c,
        );
        assert_eq!(
            keys, 0,
            "the erased customer's wrapped key is still in the table"
        );
        let hits = common::pg::query_i64(
            url,
            "SELECT (SELECT count(*) FROM events WHERE position(convert_to($1::text, 'UTF8') in payload) > 0)
                  + (SELECT count(*) FROM ledger_customer_views WHERE strpos(view, $1::text) > 0)",
            EMAIL,
        );
        assert_eq!(hits, 0, "plaintext email in a PostgreSQL table");
    }
}

/// The signal handlers are in place before the first request can be answered: a
/// SIGTERM right after the first `/healthz` answer is a graceful stop (exit 0,
/// "stopped cleanly"), never the default action that kills the process.
#[test]
fn a_sigterm_right_after_the_first_answer_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        let s = start(&dir.path().join("data"), free_port(), None);
        stop(s);
    }
}
