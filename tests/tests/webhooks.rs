//! Signed webhooks (issue 13, ADR 0028) against real receivers (an axum server on
//! loopback that checks every Standard Webhooks signature): every event of the
//! endpoint's scope arrives, signed, in order per customer, also after the
//! receiver was down a while; a `kill -9` during delivery loses nothing and a
//! message delivered twice keeps its `webhook-id`; a receiver answering 500 or too
//! late, a TLS failure and a DNS failure are retried and listed while another
//! endpoint keeps flowing; an endpoint failing for too long is disabled with its
//! reason; a tenant's endpoint never sees another tenant's events; bad input is
//! refused with a code and changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use ledger_system_tests::server::{
    call, feed_of, free_port, start_with, stop, tenant, wait_until, Server, ADMIN,
};
use ledger_system_tests::webhook::{Mode, Receiver};

/// Every message of `expected` was answered 2xx by the receiver.
fn all_answered(r: &Receiver, expected: &[Value]) -> bool {
    let ok: HashSet<String> = r
        .received()
        .into_iter()
        .filter(|m| m.status == 200)
        .map(|m| m.id)
        .collect();
    expected
        .iter()
        .all(|e| ok.contains(e["id"].as_str().unwrap()))
}

/// A server taking loopback receivers, retrying at least once a second.
fn serve(data: &std::path::Path, more: &[&str]) -> Server {
    let mut args = vec![
        "--allow-private-webhooks",
        "--webhook-max-retry-interval-secs",
        "1",
    ];
    args.extend_from_slice(more);
    start_with(data, free_port(), None, &args)
}

/// Registers an endpoint for `token`'s scope; returns (id, secret).
fn endpoint(base: &str, token: &str, url: &str, types: Option<&[&str]>) -> (String, String) {
    let mut body = json!({ "url": url, "description": "test receiver" });
    if let Some(t) = types {
        body["event_types"] = json!(t);
    }
    let (st, e) = call(
        "POST",
        &format!("{base}/v1/webhook-endpoints"),
        token,
        Some(body),
    );
    assert_eq!(st, 201, "{e}");
    let secret = e["secret"].as_str().expect("the secret, once").to_owned();
    assert!(secret.starts_with("whsec_"), "{e}");
    (e["endpoint_id"].as_str().unwrap().to_owned(), secret)
}

fn register(base: &str, key: &str, n: usize) -> String {
    let (st, r) = call(
        "POST",
        &format!("{base}/v1/customers"),
        key,
        Some(json!({
            "email": format!("hook.{n}@example.com"), "password_hash": "argon2id$x",
            "first_name": "Wilhelmina", "last_name": format!("Hookfield{n}"),
            "registration_ip": "198.51.100.77"
        })),
    );
    assert_eq!(st, 201, "{r}");
    r["customer_id"].as_str().unwrap().to_owned()
}

/// A customer with a subscription and a payment: four events of its own.
fn customer_with_history(base: &str, key: &str, n: usize) -> String {
    let c = register(base, key, n);
    let (st, s) = call(
        "POST",
        &format!("{base}/v1/customers/{c}/subscriptions"),
        key,
        Some(json!({ "offer_id": "monthly" })),
    );
    assert_eq!(st, 201, "{s}");
    let (st, p) = call(
        "POST",
        &format!("{base}/v1/customers/{c}/payments"),
        key,
        Some(json!({ "offer_id": "monthly", "amount": { "minor": 999, "currency": "EUR" } })),
    );
    assert_eq!(st, 201, "{p}");
    c
}

fn attempts(base: &str, token: &str, id: &str) -> Vec<Value> {
    let (st, a) = call(
        "GET",
        &format!("{base}/v1/webhook-endpoints/{id}/attempts?limit=500"),
        token,
        None,
    );
    assert_eq!(st, 200, "{a}");
    a["items"].as_array().unwrap().clone()
}

fn endpoint_state(base: &str, token: &str, id: &str) -> Value {
    let (st, e) = call(
        "GET",
        &format!("{base}/v1/webhook-endpoints/{id}"),
        token,
        None,
    );
    assert_eq!(st, 200, "{e}");
    e
}

/// Every message was signed with the endpoint's secret, each of `expected`
/// arrived (at least once, with its feed line as its body), nothing else did,
/// and each customer's messages first arrived in log order.
fn assert_delivered(r: &Receiver, expected: &[Value]) {
    let got = r.received();
    assert!(got.iter().all(|m| m.verified), "every signature checks out");
    let by_id: HashMap<&str, &Value> = expected
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    let mut seen = HashSet::new();
    let mut last_per_customer: BTreeMap<String, u64> = BTreeMap::new();
    for m in got.iter().filter(|m| m.status == 200) {
        let e = by_id
            .get(m.id.as_str())
            .unwrap_or_else(|| panic!("an unexpected message {}", m.body));
        assert_eq!(&m.body, *e, "the body is the feed's line, under its id");
        if !seen.insert(m.id.clone()) {
            continue; // a duplicate: same id, same body
        }
        if let Some(c) = m.body["customer_id"].as_str() {
            let p = m.body["position"].as_u64().unwrap();
            let last = last_per_customer.entry(c.to_owned()).or_default();
            assert!(p > *last, "customer {c}: {p} after {last}");
            *last = p;
        }
    }
    let missing: Vec<&&str> = by_id.keys().filter(|id| !seen.contains(**id)).collect();
    assert!(missing.is_empty(), "{} never arrived", missing.len());
}

#[test]
fn every_event_arrives_signed_in_order_per_customer_also_after_the_receiver_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let (_, key) = tenant(&s.base, "Hooked Broadcaster");
    let mut r = Receiver::start();
    let (id, secret) = endpoint(&s.base, &key, &r.url(), None);
    r.set_secret(&secret);
    let (_, e) = call(
        "GET",
        &format!("{}/v1/webhook-endpoints/{id}", s.base),
        &key,
        None,
    );
    assert!(e.get("secret").is_none(), "the secret is shown once: {e}");
    let from = e["delivered_up_to"].as_u64().unwrap();

    for n in 0..20 {
        customer_with_history(&s.base, &key, n);
    }
    let expected = feed_of(&s.base, &key, from);
    assert!(expected.len() >= 60, "{} events", expected.len());
    wait_until(60, "every event delivered", || r.count() >= expected.len());
    assert_delivered(&r, &expected);

    // The receiver goes away; writes go on and are retried; it comes back.
    r.down();
    let started = Instant::now();
    for n in 20..30 {
        customer_with_history(&s.base, &key, n);
    }
    assert!(started.elapsed() < Duration::from_secs(20), "writes waited");
    wait_until(30, "failed attempts listed", || {
        attempts(&s.base, &key, &id)
            .iter()
            .any(|a| a["outcome"] == "failed" && a["error"] == "CONNECT_FAILED")
    });
    let e = endpoint_state(&s.base, &key, &id);
    assert!(e["failing_since"].is_string(), "{e}");
    std::thread::sleep(Duration::from_secs(2));
    r.up();
    let expected = feed_of(&s.base, &key, from);
    wait_until(60, "the backlog delivered", || all_answered(&r, &expected));
    assert_delivered(&r, &expected);
    wait_until(30, "the endpoint recovered", || {
        endpoint_state(&s.base, &key, &id)["failing_since"].is_null()
    });
    let a = attempts(&s.base, &key, &id);
    assert!(a
        .iter()
        .any(|a| a["trigger"] == "retry" && a["outcome"] == "succeeded"));
    assert!(a
        .iter()
        .all(|a| a.get("body").is_none() && a["latency_ms"].is_u64()));
    let logs = stop(s);
    assert!(!logs.contains("Hookfield"), "no personal value in the logs");
}

#[test]
fn a_kill_during_delivery_loses_nothing_and_a_repeated_message_keeps_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), &["--demo", "--demo-customers", "300"]);
    let r = Receiver::start();
    r.set_mode(Mode::Slow(Duration::from_millis(5)));
    // A platform-wide endpoint (the operator's), then the whole log again: a
    // backlog of thousands of messages.
    let (id, secret) = endpoint(&s.base, ADMIN, &r.url(), None);
    r.set_secret(&secret);
    let (st, e) = call(
        "POST",
        &format!("{}/v1/webhook-endpoints/{id}/redeliver", s.base),
        ADMIN,
        Some(json!({ "position": 0, "mode": "after" })),
    );
    assert_eq!(st, 202, "{e}");
    wait_until(120, "the first deliveries", || r.count() > 200);
    let at_kill = r.count();
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    r.set_mode(Mode::Ok);
    let s = serve(dir.path(), &[]);
    let expected = feed_of(&s.base, ADMIN, 0);
    assert!(
        at_kill < expected.len(),
        "killed while delivering: {at_kill} of {}",
        expected.len()
    );
    wait_until(180, "every event delivered after the restart", || {
        all_answered(&r, &expected)
    });
    assert_delivered(&r, &expected);
    stop(s);
}

#[test]
fn failing_receivers_are_retried_and_listed_while_another_endpoint_keeps_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--webhook-timeout-secs", "1"]);
    let (_, key) = tenant(&s.base, "Many Receivers");
    let good = Receiver::start();
    let failing = Receiver::start();
    failing.set_mode(Mode::Fail);
    let slow = Receiver::start();
    slow.set_mode(Mode::Slow(Duration::from_secs(3)));
    let (good_id, secret) = endpoint(&s.base, &key, &good.url(), None);
    good.set_secret(&secret);
    let (failing_id, secret) = endpoint(&s.base, &key, &failing.url(), None);
    failing.set_secret(&secret);
    let (slow_id, _) = endpoint(&s.base, &key, &slow.url(), None);
    // TLS to a server that speaks plain HTTP; a name that does not resolve.
    let tls_url = format!("https://127.0.0.1:{}/hooks", good.port);
    let (tls_id, _) = endpoint(&s.base, &key, &tls_url, None);
    let (dns_id, _) = endpoint(&s.base, &key, "https://ledger-test.invalid/hooks", None);
    let from = endpoint_state(&s.base, &key, &good_id)["delivered_up_to"]
        .as_u64()
        .unwrap();

    for n in 0..10 {
        customer_with_history(&s.base, &key, n);
    }
    let expected = feed_of(&s.base, &key, from);
    wait_until(60, "the good endpoint served", || {
        good.count() >= expected.len()
    });
    assert_delivered(&good, &expected);
    for (id, code) in [
        (&failing_id, "HTTP_STATUS"),
        (&slow_id, "TIMEOUT"),
        (&tls_id, "TLS_FAILED"),
        (&dns_id, "DNS_FAILED"),
    ] {
        let started = Instant::now();
        while !attempts(&s.base, &key, id)
            .iter()
            .any(|a| a["outcome"] == "failed" && a["error"] == code)
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no {code} attempt: {:?}",
                attempts(&s.base, &key, id).first()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(attempts(&s.base, &key, &failing_id)
        .iter()
        .any(|a| a["response_status"] == 500));
    wait_until(30, "retries of the failing endpoint", || {
        attempts(&s.base, &key, &failing_id)
            .iter()
            .any(|a| a["trigger"] == "retry")
    });
    // It answers again: everything arrives, the retried message under its id.
    failing.set_mode(Mode::Ok);
    wait_until(60, "the failing endpoint caught up", || {
        all_answered(&failing, &expected)
    });
    assert_delivered(&failing, &expected);
    let first_failed = failing.received()[0].id.clone();
    assert!(
        failing
            .received()
            .iter()
            .any(|m| m.id == first_failed && m.status == 200),
        "the failed message was delivered again under its webhook-id"
    );
    // One message on demand, listed as a redelivery.
    let p = expected[0]["position"].as_u64().unwrap();
    let (st, e) = call(
        "POST",
        &format!("{}/v1/webhook-endpoints/{good_id}/redeliver", s.base),
        &key,
        Some(json!({ "position": p })),
    );
    assert_eq!(st, 202, "{e}");
    wait_until(30, "the redelivery", || {
        attempts(&s.base, &key, &good_id)
            .iter()
            .any(|a| a["trigger"] == "redelivery" && a["position"] == p)
    });
    stop(s);
}

#[test]
fn an_endpoint_failing_for_too_long_is_disabled_and_resumes_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--webhook-give-up-after-secs", "3"]);
    let (_, key) = tenant(&s.base, "Gives Up");
    let r = Receiver::start();
    r.set_mode(Mode::Fail);
    let (id, secret) = endpoint(&s.base, &key, &r.url(), None);
    r.set_secret(&secret);
    let from = endpoint_state(&s.base, &key, &id)["delivered_up_to"]
        .as_u64()
        .unwrap();
    customer_with_history(&s.base, &key, 0);
    wait_until(30, "the endpoint disabled", || {
        endpoint_state(&s.base, &key, &id)["enabled"] == false
    });
    let e = endpoint_state(&s.base, &key, &id);
    assert_eq!(e["disabled_reason"], "FAILING_TOO_LONG", "{e}");
    let tried = r.count();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(r.count(), tried, "a disabled endpoint gets nothing");
    // Enabled again, it resumes from where it stopped.
    r.set_mode(Mode::Ok);
    let (st, e) = call(
        "PATCH",
        &format!("{}/v1/webhook-endpoints/{id}", s.base),
        &key,
        Some(json!({ "enabled": true })),
    );
    assert_eq!(st, 200, "{e}");
    assert!(e["disabled_reason"].is_null(), "{e}");
    let expected = feed_of(&s.base, &key, from);
    wait_until(30, "the backlog delivered", || all_answered(&r, &expected));
    assert_delivered(&r, &expected);
    stop(s);
}

#[test]
fn a_tenants_endpoint_sees_its_own_events_and_the_operators_sees_all() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let (_, key_a) = tenant(&s.base, "Tenant A");
    let (_, key_b) = tenant(&s.base, "Tenant B");
    let ra = Receiver::start();
    let rp = Receiver::start();
    let (id_a, secret) = endpoint(
        &s.base,
        &key_a,
        &ra.url(),
        Some(&["customer.registered", "payment.captured"]),
    );
    ra.set_secret(&secret);
    let (_, secret) = endpoint(&s.base, ADMIN, &rp.url(), None);
    rp.set_secret(&secret);
    let from = endpoint_state(&s.base, &key_a, &id_a)["delivered_up_to"]
        .as_u64()
        .unwrap();
    for n in 0..5 {
        customer_with_history(&s.base, &key_a, n);
        customer_with_history(&s.base, &key_b, 100 + n);
    }
    let mine: Vec<Value> = feed_of(&s.base, &key_a, from)
        .into_iter()
        .filter(|e| e["type"] == "customer.registered" || e["type"] == "payment.captured")
        .collect();
    assert_eq!(mine.len(), 10);
    let all = feed_of(&s.base, ADMIN, from);
    wait_until(60, "both endpoints served", || {
        ra.count() >= mine.len() && rp.count() >= all.len()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_delivered(&ra, &mine);
    assert_delivered(&rp, &all);
    // Tenant B neither sees nor changes tenant A's endpoint.
    let (st, _) = call(
        "GET",
        &format!("{}/v1/webhook-endpoints/{id_a}", s.base),
        &key_b,
        None,
    );
    assert_eq!(st, 404);
    let (st, _) = call(
        "DELETE",
        &format!("{}/v1/webhook-endpoints/{id_a}", s.base),
        &key_b,
        None,
    );
    assert_eq!(st, 404);
    let (_, l) = call(
        "GET",
        &format!("{}/v1/webhook-endpoints", s.base),
        &key_b,
        None,
    );
    assert_eq!(l["items"], json!([]));
    // Deleted, it gets nothing more.
    let (st, _) = call(
        "DELETE",
        &format!("{}/v1/webhook-endpoints/{id_a}", s.base),
        &key_a,
        None,
    );
    assert_eq!(st, 204);
    let before = ra.count();
    customer_with_history(&s.base, &key_a, 50);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ra.count(), before);
    stop(s);
}

#[test]
fn bad_endpoints_are_refused_with_a_code_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Without --allow-private-webhooks.
    let s = start_with(dir.path(), free_port(), None, &[]);
    let (_, key) = tenant(&s.base, "Careless Integrator");
    let url = format!("{}/v1/webhook-endpoints", s.base);
    let sixteen: Vec<&str> = std::iter::repeat_n("payment.captured", 16).collect();
    for (body, code) in [
        (json!({ "url": "not a url" }), "INVALID_WEBHOOK_URL"),
        (
            json!({ "url": "ftp://hooks.example.com/x" }),
            "INVALID_WEBHOOK_URL",
        ),
        (
            json!({ "url": "https://user:pw@hooks.example.com/" }),
            "INVALID_WEBHOOK_URL",
        ),
        (
            json!({ "url": "http://hooks.example.com/x" }),
            "WEBHOOK_URL_NOT_HTTPS",
        ),
        (
            json!({ "url": "https://127.0.0.1:9/x" }),
            "WEBHOOK_URL_NOT_PUBLIC",
        ),
        (
            json!({ "url": "https://169.254.169.254/latest" }),
            "WEBHOOK_URL_NOT_PUBLIC",
        ),
        (
            json!({ "url": "https://localhost/x" }),
            "WEBHOOK_URL_NOT_PUBLIC",
        ),
        (
            json!({ "url": "https://[::ffff:10.0.0.1]/x" }),
            "WEBHOOK_URL_NOT_PUBLIC",
        ),
        (
            json!({ "url": "https://hooks.example.com/x", "event_types": sixteen }),
            "INVALID_EVENT_TYPES",
        ),
        (
            json!({ "url": "https://hooks.example.com/x", "event_types": [] }),
            "INVALID_EVENT_TYPES",
        ),
        (
            json!({ "url": "https://hooks.example.com/x", "event_types": ["payment.stolen"] }),
            "UNKNOWN_EVENT_TYPE",
        ),
        (
            json!({ "url": "https://hooks.example.com/x", "secret": "whsec_mine" }),
            "UNKNOWN_FIELD",
        ),
    ] {
        let (st, e) = call("POST", &url, &key, Some(body.clone()));
        // The URL rules are 409 (the body had the documented form), the rest 400.
        let expected = if code.contains("URL") { 409 } else { 400 };
        assert_eq!(st, expected, "{body}: {e}");
        assert_eq!(e["code"], code, "{body}: {e}");
        assert!(
            !e.to_string().contains("hooks.example.com"),
            "the URL is not echoed: {e}"
        );
    }
    let (_, l) = call("GET", &url, &key, None);
    assert_eq!(l["items"], json!([]), "nothing was created");
    // A public https endpoint is taken; changing it to a private address is not.
    let (st, e) = call(
        "POST",
        &url,
        &key,
        Some(json!({ "url": "https://hooks.example.com/x" })),
    );
    assert_eq!(st, 201, "{e}");
    let id = e["endpoint_id"].as_str().unwrap();
    let (st, e) = call(
        "PATCH",
        &format!("{url}/{id}"),
        &key,
        Some(json!({ "url": "https://10.0.0.1/x" })),
    );
    assert_eq!(
        (st, e["code"].as_str()),
        (409, Some("WEBHOOK_URL_NOT_PUBLIC"))
    );
    assert_eq!(
        endpoint_state(&s.base, &key, id)["url"],
        "https://hooks.example.com/x"
    );
    for body in [json!({}), json!({ "position": 1, "mode": "everything" })] {
        let (st, e) = call("POST", &format!("{url}/{id}/redeliver"), &key, Some(body));
        assert_eq!(st, 400, "{e}");
    }
    let (st, e) = call(
        "POST",
        &format!("{url}/{id}/redeliver"),
        &key,
        Some(json!({ "position": 1_000_000 })),
    );
    assert_eq!(
        (st, e["code"].as_str()),
        (409, Some("POSITION_NOT_IN_LOG")),
        "{e}"
    );
    let (st, _) = call("GET", &format!("{url}/{id}/attempts?limit=0"), &key, None);
    assert_eq!(st, 400);
    let (st, _) = call("GET", &format!("{url}/not-an-id"), &key, None);
    assert_eq!(st, 400);
    stop(s);
}
