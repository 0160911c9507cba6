//! The tower-http layers through the real router (`ledger_api::layers`):
//! compression of JSON and NDJSON answers but never of those holding opened
//! personal data, the body limit on a declared length, headers marked sensitive,
//! and the request id on answers the layers make themselves.

use std::io::Read as _;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::common::Harness;

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("a gzip body");
    out
}

/// The raw body of an answer (the harness reads it as text, which a compressed
/// body is not).
async fn raw(h: &Harness, path: &str, token: Option<&str>, encoding: &str) -> (HeaderMap, Vec<u8>) {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("accept-encoding", encoding);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = tower::ServiceExt::oneshot(h.app.clone(), req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (headers, body)
}

#[tokio::test]
async fn json_and_ndjson_answers_are_compressed_but_never_those_with_personal_data() {
    let h = Harness::new().await;
    let c = h
        .register(&h.a, "Adelheid", "Lovelace", "ada@example.com")
        .await;
    let admin = h.admin.clone();

    // JSON without personal data: gzip or br, as the client accepts.
    let (headers, body) = raw(&h, "/v1/openapi.json", None, "gzip").await;
    assert_eq!(headers.get("content-encoding").unwrap(), "gzip");
    assert_eq!(headers.get("vary").unwrap(), "accept-encoding");
    let doc: Value = serde_json::from_str(&gunzip(&body)).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let (headers, _) = raw(&h, "/v1/openapi.json", None, "br").await;
    assert_eq!(headers.get("content-encoding").unwrap(), "br");
    let (headers, body) = raw(&h, "/v1/openapi.json", None, "identity").await;
    assert!(headers.get("content-encoding").is_none());
    assert!(serde_json::from_slice::<Value>(&body).is_ok());

    // The sealed log as NDJSON, streamed: compressed too.
    let (headers, body) = raw(&h, "/v1/audit/events", Some(&admin), "gzip").await;
    assert_eq!(headers.get("content-encoding").unwrap(), "gzip");
    let text = gunzip(&body);
    assert_eq!(text.lines().count(), 4, "3 broadcasters and a registration");
    for l in text.lines() {
        serde_json::from_str::<Value>(l).unwrap();
    }

    // Opened personal data: never compressed, whatever the client accepts.
    let t = h.a.token.clone();
    for path in [
        format!("/v1/customers/{c}"),
        format!("/v1/customers/{c}/export"),
        "/v1/customers?q=Adel".to_owned(),
    ] {
        let (headers, body) = raw(&h, &path, Some(&t), "gzip, br").await;
        assert!(
            headers.get("content-encoding").is_none(),
            "{path} was compressed"
        );
        assert!(
            String::from_utf8_lossy(&body).contains("Adelheid"),
            "{path}"
        );
    }
    let r = h
        .call_with(
            Method::POST,
            "/v1/customers/search",
            Some(&t),
            Some(json!({"q": "Adel"})),
            &[("accept-encoding", "gzip, br")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("content-encoding").is_none());
    assert!(r.text.contains("Adelheid"));
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_body_too_large_before_any_handler() {
    let h = Harness::new().await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/customers")
        .header("authorization", format!("Bearer {}", h.a.token))
        .header("content-type", "application/json")
        .header("content-length", "70000")
        .header("x-request-id", "limit-test-1")
        .body(Body::from(vec![b' '; 70_000]))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["code"], "BODY_TOO_LARGE");
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(r.headers.get("x-request-id").unwrap(), "limit-test-1");
}

#[tokio::test]
async fn credentials_and_idempotency_keys_are_marked_sensitive() {
    let h = Harness::new().await;
    let app = axum::Router::new().route(
        "/echo",
        axum::routing::post(|headers: HeaderMap| async move {
            ["authorization", "idempotency-key", "content-type"]
                .map(|n| headers.get(n).is_some_and(|v| v.is_sensitive()).to_string())
                .join(",")
        }),
    );
    let app = ledger_api::layers::around(app, &h.state);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/echo")
        .header("authorization", "Bearer lk_secret")
        .header("idempotency-key", "k-1")
        .header("content-type", "text/plain")
        .body(Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(app, req).await.unwrap();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&body[..], b"true,true,false");
}
