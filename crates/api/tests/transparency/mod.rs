//! Signed tree heads and proofs through the real router: heads and proofs that
//! verify, a receipt whose proof verifies offline, every refusal code, and 503 when
//! the log cannot be read.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ledger_api::{ApiState, Services};
use ledger_app::transparency::{
    verify_receipt, HeadSigner, SignedTreeHead, SigningPolicy, TransparencyLog,
};
use ledger_merkle::{ConsistencyProof, Hash, InclusionProof};
use ledger_store::{
    AppendRequest, AppendResult, EventStore, Position, RecordedEvent, StoreError, Version,
};
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::common::{seen, template_of, Harness};

/// An event store that cannot be reached.
#[derive(Debug)]
struct Unreachable;

fn down() -> StoreError {
    StoreError::Unavailable("test: store switched off".into())
}

#[async_trait]
impl EventStore for Unreachable {
    async fn append(&self, _: AppendRequest) -> Result<AppendResult, StoreError> {
        Err(down())
    }
    async fn append_batch(&self, _: Vec<AppendRequest>) -> Result<Vec<AppendResult>, StoreError> {
        Err(down())
    }
    async fn read_stream(&self, _: &str, _: Version) -> Result<Vec<RecordedEvent>, StoreError> {
        Err(down())
    }
    async fn read_all(&self, _: Position, _: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        Err(down())
    }
    async fn head(&self) -> Result<Position, StoreError> {
        Err(down())
    }
    async fn wait_for_head(&self, _: Position, _: Duration) -> Result<Position, StoreError> {
        Err(down())
    }
}

fn head_of(v: &Value) -> SignedTreeHead {
    serde_json::from_value(v.clone()).expect("a signed tree head")
}

fn hashes(v: &Value) -> Vec<Hash> {
    serde_json::from_value(v.clone()).expect("hex hashes")
}

pub async fn heads_proofs_and_receipts() {
    let h = Harness::new().await;
    let key = h.state.transparency.public_key();
    let admin = h.admin.clone();
    let get = |path: String, token: Option<String>| {
        let h = &h;
        async move { h.call(Method::GET, &path, token.as_deref(), None).await }
    };

    // An erasure: its receipt proves itself with the public key alone.
    let c = h
        .register(&h.a, "Adelheid", "Lovelace", "ada@example.com")
        .await;
    let r = h
        .call(
            Method::DELETE,
            &format!("/v1/customers/{c}"),
            Some(&h.a.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = verify_receipt(&r.body, &key);
    assert!(v.ok, "{v:?}");
    let position = r.body["event_position"].as_u64().unwrap();
    assert_eq!(r.body["leaf_index"], position - 1);

    // The latest head, for the admin and for a broadcaster; a past one.
    let first = get("/v1/audit/tree-head".into(), Some(admin.clone())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let latest = head_of(&first.body);
    assert!(latest.size >= position);
    assert_eq!(latest.verify(&key).unwrap().size, latest.size);
    let tenant = get("/v1/audit/tree-head".into(), Some(h.b.token.clone())).await;
    assert_eq!(tenant.status, StatusCode::OK);
    let past = get("/v1/audit/tree-head?size=2".into(), Some(admin.clone())).await;
    assert_eq!(past.status, StatusCode::OK);
    let past = head_of(&past.body);
    assert_eq!(past.size, 2);
    past.verify(&key).unwrap();

    // Inclusion of the erasure record and consistency from the past head.
    let inc = get(
        format!("/v1/audit/proofs/inclusion?position={position}"),
        Some(h.a.token.clone()),
    )
    .await;
    assert_eq!(inc.status, StatusCode::OK, "{}", inc.text);
    assert_eq!(inc.body["tree_size"], latest.size);
    let proof = InclusionProof {
        leaf_index: inc.body["leaf_index"].as_u64().unwrap(),
        tree_size: latest.size,
        inclusion_path: hashes(&inc.body["inclusion_path"]),
    };
    let leaf: Hash = inc.body["leaf_hash"].as_str().unwrap().parse().unwrap();
    proof.verify(&leaf, &latest.head()).unwrap();
    let con = get(
        format!("/v1/audit/proofs/consistency?from=2&to={}", latest.size),
        Some(admin.clone()),
    )
    .await;
    assert_eq!(con.status, StatusCode::OK, "{}", con.text);
    ConsistencyProof {
        old_size: 2,
        new_size: latest.size,
        consistency_path: hashes(&con.body["consistency_path"]),
    }
    .verify(&past.head(), &latest.head())
    .unwrap();

    // Refusals: 400 for a malformed query, 404 for a tree or proof that does not
    // exist, each with its code; 401 without a key.
    let beyond = latest.size + 1000;
    for (path, code) in [
        ("/v1/audit/tree-head?size=x".to_owned(), "INVALID_QUERY"),
        (
            format!("/v1/audit/tree-head?size={beyond}"),
            "SIZE_BEYOND_TREE",
        ),
        ("/v1/audit/tree-head?sise=1".to_owned(), "INVALID_QUERY"),
        ("/v1/audit/proofs/inclusion".to_owned(), "INVALID_QUERY"),
        (
            "/v1/audit/proofs/inclusion?position=0".to_owned(),
            "INVALID_QUERY",
        ),
        (
            format!("/v1/audit/proofs/inclusion?position=1&size={beyond}"),
            "SIZE_BEYOND_TREE",
        ),
        (
            format!("/v1/audit/proofs/inclusion?position={beyond}&size=2"),
            "NO_SUCH_PROOF",
        ),
        (
            "/v1/audit/proofs/consistency?to=3".to_owned(),
            "INVALID_QUERY",
        ),
        (
            "/v1/audit/proofs/consistency?from=-1".to_owned(),
            "INVALID_QUERY",
        ),
        (
            "/v1/audit/proofs/consistency?from=3&to=2".to_owned(),
            "NO_SUCH_PROOF",
        ),
        (
            format!("/v1/audit/proofs/consistency?from=1&to={beyond}"),
            "SIZE_BEYOND_TREE",
        ),
    ] {
        let r = get(path.clone(), Some(admin.clone())).await;
        let status = if code == "INVALID_QUERY" {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(r.status, status, "{path}: {}", r.text);
        assert_eq!(r.body["code"], code, "{path}: {}", r.text);
    }
    for path in [
        "/v1/audit/tree-head",
        "/v1/audit/proofs/inclusion?position=1",
        "/v1/audit/proofs/consistency?from=1",
    ] {
        let r = get(path.into(), Some("lk_not_a_key".into())).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }

    // The log unreachable: 503 STORE_UNAVAILABLE with Retry-After.
    let s = &h.state;
    let log = TransparencyLog::new(
        Arc::new(Unreachable),
        HeadSigner::generate(),
        SigningPolicy::default(),
    );
    let state = ApiState::with_services(
        s.ledger.clone(),
        s.read.clone(),
        s.keys.clone(),
        s.admin.clone(),
        s.config.clone(),
        Services {
            transparency: Some(Arc::new(log)),
            ..Services::default()
        },
    );
    let app = ledger_api::router(state);
    for path in [
        "/v1/audit/tree-head",
        "/v1/audit/proofs/inclusion?position=1",
        "/v1/audit/proofs/consistency?from=1",
    ] {
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(res.headers().get("retry-after").unwrap(), "1");
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["code"], json!("STORE_UNAVAILABLE"));
        seen().lock().unwrap().insert((
            "get".into(),
            template_of(path).unwrap(),
            StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        ));
    }
}
