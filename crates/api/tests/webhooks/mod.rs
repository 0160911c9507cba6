//! Webhook endpoints through the real router: created with a secret shown once,
//! listed, read, changed, deleted, their attempts paged and redeliveries asked for;
//! a broadcaster's and the operator's endpoints apart (another owner's is 404);
//! every refusal with its code. (Deliveries themselves run in `serve`'s dispatcher:
//! `tests/tests/webhooks.rs` has real receivers.)

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::Harness;
use crate::expect_code;

const URL: &str = "https://hooks.example.com/ledger";

pub async fn endpoints_are_managed_per_owner_with_every_refusal() {
    let h = Harness::new().await;
    let base = "/v1/webhook-endpoints";
    let r = h
        .post(
            base,
            &h.a,
            json!({"url": URL, "event_types": ["customer.anonymized"], "description": "CRM"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["endpoint_id"].as_str().unwrap().to_owned();
    assert!(r.body["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(r.body["event_types"], json!(["customer.anonymized"]));
    assert_eq!(r.body["scope"], "broadcaster");
    assert_eq!(r.body["enabled"], true);
    // The operator's platform-wide endpoint.
    let r = h
        .call(
            Method::POST,
            base,
            Some(&h.admin),
            Some(json!({"url": URL})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["scope"], "platform");
    assert!(r.body["event_types"].is_null());
    let platform = r.body["endpoint_id"].as_str().unwrap().to_owned();

    // Read back: never the secret; each owner sees its own.
    let one = format!("{base}/{id}");
    let r = h.get(&one, &h.a).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body.get("secret").is_none(), "{}", r.text);
    let r = h.get(base, &h.a).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert!(!r.text.contains("whsec_"));
    let r = h.call(Method::GET, base, Some(&h.admin), None).await;
    assert_eq!(r.body["items"][0]["endpoint_id"], platform.as_str());
    for path in [one.clone(), format!("{base}/{platform}")] {
        let owner_b = h.get(&path, &h.b).await;
        expect_code(&owner_b, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let r = h.call(Method::GET, &one, Some(&h.admin), None).await;
    expect_code(&r, StatusCode::NOT_FOUND, "NOT_FOUND");

    // Changes.
    let r = h
        .call(
            Method::PATCH,
            &one,
            Some(&h.a.token),
            Some(json!({"event_types": null, "description": null, "enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["event_types"].is_null() && r.body["description"].is_null());
    assert_eq!(r.body["enabled"], false);
    assert!(r.body["disabled_reason"].is_null());
    let r = h
        .call(
            Method::PATCH,
            &one,
            Some(&h.a.token),
            Some(json!({"url": "http://hooks.example.com/"})),
        )
        .await;
    expect_code(&r, StatusCode::CONFLICT, "WEBHOOK_URL_NOT_HTTPS");
    let r = h
        .call(
            Method::PATCH,
            &one,
            Some(&h.b.token),
            Some(json!({"enabled": true})),
        )
        .await;
    expect_code(&r, StatusCode::NOT_FOUND, "NOT_FOUND");

    // Attempts (none: no dispatcher runs here) and redeliveries.
    let r = h.get(&format!("{one}/attempts?limit=10"), &h.a).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["items"], json!([]));
    let r = h.get(&format!("{one}/attempts?cursor=x"), &h.a).await;
    expect_code(&r, StatusCode::BAD_REQUEST, "INVALID_PAGINATION");
    let r = h.get(&format!("{one}/attempts?page=2"), &h.a).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h.get(&format!("{base}/{platform}/attempts"), &h.a).await;
    expect_code(&r, StatusCode::NOT_FOUND, "NOT_FOUND");
    let r = h
        .post(
            &format!("{one}/redeliver"),
            &h.a,
            json!({"position": 0, "mode": "after"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let r = h
        .post(&format!("{one}/redeliver"), &h.a, json!({"position": 1}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let r = h
        .post(&format!("{one}/redeliver"), &h.a, json!({"position": 0}))
        .await;
    expect_code(&r, StatusCode::CONFLICT, "POSITION_NOT_IN_LOG");
    let r = h
        .post(
            &format!("{one}/redeliver"),
            &h.a,
            json!({"position": 1, "mode": "all"}),
        )
        .await;
    expect_code(&r, StatusCode::BAD_REQUEST, "INVALID_INPUT");
    let r = h.post(&format!("{one}/redeliver"), &h.a, json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h
        .post(
            &format!("{base}/{platform}/redeliver"),
            &h.b,
            json!({"position": 1}),
        )
        .await;
    expect_code(&r, StatusCode::NOT_FOUND, "NOT_FOUND");

    // Refusals of creation; nothing is created.
    for (body, code) in [
        (
            json!({"url": "https://10.0.0.1/x"}),
            "WEBHOOK_URL_NOT_PUBLIC",
        ),
        (
            json!({"url": "http://hooks.example.com/x"}),
            "WEBHOOK_URL_NOT_HTTPS",
        ),
        (json!({"url": "hooks.example.com"}), "INVALID_WEBHOOK_URL"),
        (
            json!({"url": URL, "event_types": ["nope"]}),
            "UNKNOWN_EVENT_TYPE",
        ),
        (
            json!({"url": URL, "event_types": []}),
            "INVALID_EVENT_TYPES",
        ),
        (
            json!({"url": URL, "description": "x".repeat(201)}),
            "INVALID_INPUT",
        ),
        (
            json!({"url": URL, "description": "a\u{7}b"}),
            "INVALID_INPUT",
        ),
        (json!({"event_types": null}), "MISSING_FIELD"),
    ] {
        let r = h.post(base, &h.b, body.clone()).await;
        // The URL rules are 409 (the body had the documented form), the rest 400.
        let status = if code.contains("URL") {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        expect_code(&r, status, code);
    }
    assert_eq!(h.get(base, &h.b).await.body["items"], json!([]));

    // Malformed ids and missing keys.
    for (m, path) in [
        (Method::GET, format!("{base}/nope")),
        (Method::DELETE, format!("{base}/nope")),
        (Method::GET, format!("{base}/nope/attempts")),
    ] {
        let r = h.call(m, &path, Some(&h.a.token), None).await;
        expect_code(&r, StatusCode::BAD_REQUEST, "INVALID_ID");
    }
    let r = h
        .call(
            Method::PATCH,
            &format!("{base}/nope"),
            Some(&h.a.token),
            Some(json!({})),
        )
        .await;
    expect_code(&r, StatusCode::BAD_REQUEST, "INVALID_ID");
    for (m, path, body) in [
        (Method::GET, base.to_owned(), None),
        (Method::POST, base.to_owned(), Some(json!({"url": URL}))),
        (Method::GET, one.clone(), None),
        (Method::PATCH, one.clone(), Some(json!({}))),
        (Method::DELETE, one.clone(), None),
        (Method::GET, format!("{one}/attempts"), None),
        (
            Method::POST,
            format!("{one}/redeliver"),
            Some(json!({"position": 1})),
        ),
    ] {
        let r = h.call(m, &path, None, body).await;
        expect_code(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }

    // Deleted: gone for its owner too.
    let r = h.call(Method::DELETE, &one, Some(&h.b.token), None).await;
    expect_code(&r, StatusCode::NOT_FOUND, "NOT_FOUND");
    let r = h.call(Method::DELETE, &one, Some(&h.a.token), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = h.get(&one, &h.a).await;
    expect_code(&r, StatusCode::NOT_FOUND, "NOT_FOUND");
}
