//! The change feed through the real router: NDJSON pages of public events, tenant
//! scope (a broadcaster sees its own, the admin everything), type filters, paging
//! with `Ledger-Next-After`, every refusal, no personal value in any line, and
//! `follow=true` as Server-Sent Events that deliver an event committed after the
//! stream opened and resume from `Last-Event-ID`.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{Harness, Res};

fn lines(r: &Res) -> Vec<Value> {
    r.text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn next_after(r: &Res) -> u64 {
    r.headers["ledger-next-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub async fn the_feed_serves_public_events_per_tenant() {
    let h = Harness::new().await;
    let c = h
        .register(&h.a, "Adelheid", "Lovelace", "ada@example.com")
        .await;
    let sid = h.subscribe(&h.a, &c).await;
    let pid = h.pay(&h.a, &c, 1299, "EUR").await;
    h.refund(&h.a, &c, &pid, 299, "EUR").await;
    let r = h
        .post(
            &format!("/v1/customers/{c}/subscriptions/{sid}/terminate"),
            &h.a,
            json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = h
        .call(
            Method::POST,
            &format!("/v1/customers/{c}/anonymize"),
            Some(&h.a.token),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let d = h
        .register(&h.b, "Grace", "Hopperton", "grace@example.com")
        .await;

    // Tenant A: its customer's story, in log order, and nothing of B's.
    let r = h.get("/v1/events", &h.a).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    let a_events = lines(&r);
    assert_eq!(
        types(&a_events),
        [
            "broadcaster.registered",
            "customer.registered",
            "subscription.started",
            "payment.captured",
            "payment.refunded",
            "subscription.terminated",
            "customer.anonymized",
        ]
    );
    assert!(a_events.iter().all(|e| e["customer_id"] != d.as_str()));
    let captured = &a_events[3];
    assert_eq!(captured["version"], 1);
    assert_eq!(captured["broadcaster_id"], h.a.id.as_str());
    assert_eq!(captured["customer_id"], c.as_str());
    assert_eq!(
        captured["data"]["amount"],
        json!({"minor": 1299, "currency": "EUR", "exponent": 2})
    );
    assert_eq!(captured["data"]["payment_id"], pid.as_str());
    assert_eq!(captured["data"]["day"].as_str().unwrap().len(), 10);
    assert_eq!(a_events[5]["data"]["subscription_id"], sid.as_str());
    assert_eq!(a_events[6]["data"]["actor"]["kind"], "broadcaster");
    let positions: Vec<u64> = a_events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    // No personal value in any line (the registered names, email, payer IP).
    for p in [
        "Adelheid",
        "Lovelace",
        "ada@example.com",
        "Grace",
        "Hopperton",
        "grace@example.com",
        "203.0.113.9",
    ] {
        assert!(!r.text.contains(p), "{p}");
    }

    // Tenant B sees its own registration only; the admin sees both tenants.
    let b_events = lines(&h.get("/v1/events", &h.b).await);
    assert!(b_events
        .iter()
        .all(|e| e["broadcaster_id"] == h.b.id.as_str()));
    assert!(types(&b_events).contains(&"customer.registered"));
    let all = h
        .call(Method::GET, "/v1/events", Some(&h.admin), None)
        .await;
    assert_eq!(all.status, StatusCode::OK);
    let all_events = lines(&all);
    assert!(all_events.len() >= a_events.len() + b_events.len());

    // Type filter, paging with Ledger-Next-After, `after` past the head.
    let r = h
        .get("/v1/events?types=payment.captured,payment.refunded", &h.a)
        .await;
    assert_eq!(types(&lines(&r)), ["payment.captured", "payment.refunded"]);
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let r = h
            .get(&format!("/v1/events?after={after}&limit=2"), &h.a)
            .await;
        let page = lines(&r);
        let next = next_after(&r);
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        paged.extend(page);
        after = next;
    }
    assert_eq!(paged, a_events);
    let r = h.get("/v1/events?after=9223372036854775807", &h.a).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, ""));

    // Refusals, each with its code.
    for (q, code) in [
        ("after=-1", "INVALID_INPUT"),
        ("after=x", "INVALID_INPUT"),
        ("limit=0", "INVALID_PAGINATION"),
        ("limit=10001", "INVALID_PAGINATION"),
        ("types=payment", "INVALID_INPUT"),
        ("types=payment.captured,", "INVALID_INPUT"),
        ("follow=yes", "INVALID_INPUT"),
        ("adelheid=1", "INVALID_QUERY"),
    ] {
        let r = h.get(&format!("/v1/events?{q}"), &h.a).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{q}: {}",
            r.text
        );
        assert!(!r.text.contains("adelheid"));
    }
    let r = h
        .call_with(
            Method::GET,
            "/v1/events",
            Some(&h.a.token),
            None,
            &[("last-event-id", "x")],
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_INPUT"))
    );
    assert_eq!(
        h.call(Method::GET, "/v1/events", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// The `data:` objects of an SSE body, with their `id:` lines.
fn sse_events(text: &str) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut id = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line
                .strip_prefix("id: ")
                .or_else(|| line.strip_prefix("id:"))
            {
                id = v.trim().parse().ok();
            }
            if let Some(v) = line
                .strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
            {
                data = serde_json::from_str(v.trim()).ok();
            }
        }
        if let (Some(id), Some(data)) = (id, data) {
            out.push((id, data));
        }
    }
    out
}

pub async fn following_streams_new_events_as_sse_and_resumes() {
    let h = Harness::new().await;
    let c = h
        .register(&h.a, "Adelheid", "Lovelace", "ada@example.com")
        .await;
    let head = lines(&h.get("/v1/events", &h.a).await);
    let last = head.last().unwrap()["position"].as_u64().unwrap();

    // A follower waiting after the head receives a payment committed later.
    let follow = {
        let h_app = h.app.clone();
        let token = h.a.token.clone();
        tokio::spawn(async move {
            use tower::ServiceExt as _;
            let req = axum::http::Request::builder()
                .uri(format!("/v1/events?follow=true&limit=1&after={last}"))
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let res = h_app.oneshot(req).await.unwrap();
            let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap();
            (ct, String::from_utf8(bytes.to_vec()).unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = h.pay(&h.a, &c, 500, "EUR").await;
    let (ct, text) = tokio::time::timeout(Duration::from_secs(20), follow)
        .await
        .expect("the follower is woken by the commit")
        .unwrap();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let got = sse_events(&text);
    assert_eq!(got.len(), 1, "{text}");
    assert_eq!(got[0].1["type"], "payment.captured");
    assert_eq!(got[0].1["data"]["payment_id"], pid.as_str());
    assert_eq!(got[0].0, got[0].1["position"].as_u64().unwrap());
    assert!(text.contains("event: payment.captured"), "{text}");

    // Resuming from Last-Event-ID: everything after it, here from the start.
    let r = h
        .call_with(
            Method::GET,
            "/v1/events?follow=true&limit=2",
            Some(&h.a.token),
            None,
            &[("last-event-id", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let got = sse_events(&r.text);
    let expected: Vec<u64> = lines(&h.get("/v1/events", &h.a).await)
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .filter(|p| *p > 1)
        .take(2)
        .collect();
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), expected);
    assert!(!r.text.contains("Adelheid"));
}
