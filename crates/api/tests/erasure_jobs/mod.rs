//! Bulk erasure jobs through the real router: a job validated, run (in chunks of
//! two, so that several chunks settle), counted and paged, each item an erasure
//! request of its own; retries of the same job; another tenant's customers
//! reported `NOT_FOUND` exactly like unknown ones; the operator's job; cancel; and
//! the bad lists (10,001 ids, duplicates, malformed ids, empty), each refused
//! whole with nothing recorded.

use axum::http::{Method, StatusCode};
use ledger_types::JobId;
use serde_json::{json, Value};

use crate::common::{Harness, Res, Tenant};

async fn submit(h: &Harness, t: &Tenant, body: Value) -> Res {
    h.post("/v1/erasure-jobs", t, body).await
}

/// Runs the job as the runner in `serve` does, in chunks of two items.
async fn run(h: &Harness, job: &str) -> Value {
    let id = JobId::parse(job).unwrap();
    h.state
        .ledger
        .run_job(id, 2, &|_| {})
        .await
        .unwrap()
        .expect("not held elsewhere");
    h.state.ledger.requests().catch_up().await.unwrap();
    h.state.read_your_write().await;
    let r = h.get(&format!("/v1/erasure-jobs/{job}"), &h.a).await;
    r.body
}

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().unwrap().clone()
}

pub async fn a_job_is_validated_run_counted_and_paged() {
    let h = Harness::new().await;
    let c1 = h.register(&h.a, "Ada", "Lovelace", "ada@example.org").await;
    let c2 = h
        .register(&h.a, "Grace", "Hopper", "grace@example.org")
        .await;
    let c3 = h.register(&h.a, "Alan", "Turing", "alan@example.org").await;
    let sub = h.subscribe(&h.a, &c3).await;
    let theirs = h
        .register(&h.b, "Edsger", "Dijkstra", "ed@example.org")
        .await;
    let unknown = "00000000-0000-4000-8000-00000000abcd".to_owned();
    let ids = vec![
        c1.clone(),
        theirs.clone(),
        c2.clone(),
        unknown.clone(),
        c3.clone(),
    ];
    let job_id = "0000000a-0000-4000-8000-000000000001";
    let body = json!({ "customer_ids": ids, "job_id": job_id, "reference": "ZD-9000" });

    // Validated at once: ready, every blocker as the preview gives it.
    let r = submit(&h, &h.a, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["job_id"], job_id);
    assert_eq!(r.body["state"], "ready");
    assert_eq!(r.body["total"], 5);
    assert_eq!(r.body["reference"], "ZD-9000");
    assert_eq!(r.body["requested_by"]["broadcaster_id"], h.a.id.as_str());
    assert_eq!(
        r.body["validation"],
        json!({ "ACTIVE_SUBSCRIPTION": 1, "NOT_FOUND": 2 })
    );
    assert_eq!(r.body["counts"]["pending"], 5);

    // The same job again is a retry; the same id for another list is refused.
    let again = submit(&h, &h.a, body.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["job_id"], job_id);
    let other = submit(
        &h,
        &h.a,
        json!({ "customer_ids": [c1.clone()], "job_id": job_id, "reference": "ZD-9000" }),
    )
    .await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.text);
    assert_eq!(other.body["code"], "JOB_EXISTS");

    // Run: two completed, one deferred, two not found: partially failed.
    let job = run(&h, job_id).await;
    assert_eq!(job["state"], "partially_failed", "{job}");
    assert_eq!(
        job["counts"],
        json!({ "pending": 0, "completed": 2, "deferred": 1, "refused": 0, "not_found": 2, "cancelled": 0 })
    );
    assert!(job["started_at"].is_string() && job["ended_at"].is_string());

    // Items, paged in the submitted order.
    let p1 = h
        .get(&format!("/v1/erasure-jobs/{job_id}/items?limit=2"), &h.a)
        .await;
    assert_eq!(p1.status, StatusCode::OK, "{}", p1.text);
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_owned();
    let p2 = h
        .get(
            &format!("/v1/erasure-jobs/{job_id}/items?limit=2&cursor={cursor}"),
            &h.a,
        )
        .await;
    let cursor = p2.body["next_cursor"].as_str().unwrap().to_owned();
    let p3 = h
        .get(
            &format!("/v1/erasure-jobs/{job_id}/items?limit=2&cursor={cursor}"),
            &h.a,
        )
        .await;
    assert!(p3.body.get("next_cursor").is_none(), "{}", p3.text);
    let all: Vec<Value> = [items(&p1.body), items(&p2.body), items(&p3.body)].concat();
    let got: Vec<&str> = all
        .iter()
        .map(|i| i["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let states: Vec<&str> = all.iter().map(|i| i["state"].as_str().unwrap()).collect();
    assert_eq!(
        states,
        [
            "completed",
            "not_found",
            "completed",
            "not_found",
            "deferred"
        ]
    );

    // Another tenant's customer reads exactly like an unknown one.
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("customer_id");
        v.as_object_mut().unwrap().remove("index");
        v
    };
    assert_eq!(strip(&all[1]), strip(&all[3]));
    assert!(all[1].get("request_id").is_none());
    assert_eq!(all[1]["blockers"], json!(["NOT_FOUND"]));
    // ... and nothing was filed for it: the other tenant's customer is untouched.
    let t = h.get(&format!("/v1/customers/{theirs}"), &h.b).await;
    assert_eq!(t.status, StatusCode::OK);
    assert!(t.body["erasure"].is_null(), "{}", t.text);

    // Each item is an erasure request of its own, with the job's reference.
    let completed = all[0]["request_id"].as_str().unwrap();
    assert_eq!(all[0]["request_status"], "completed");
    let q = h
        .get(&format!("/v1/erasure-requests/{completed}"), &h.a)
        .await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.text);
    assert_eq!(q.body["status"], "completed");
    assert_eq!(q.body["reference"], "ZD-9000");
    assert_eq!(q.body["receipt"]["data_key_destroyed"], true);
    let deferred = all[4]["request_id"].as_str().unwrap();
    let q = h
        .get(&format!("/v1/erasure-requests/{deferred}"), &h.a)
        .await;
    assert_eq!(q.body["status"], "deferred");
    assert_eq!(q.body["waiting_for"], json!([sub]));
    assert_eq!(all[4]["blockers"], json!(["ACTIVE_SUBSCRIPTION"]));

    // Running it again changes nothing; cancelling an ended job is refused.
    let head = h.state.ledger.store().head().await.unwrap();
    run(&h, job_id).await;
    assert_eq!(h.state.ledger.store().head().await.unwrap(), head);
    let c = h
        .post(
            &format!("/v1/erasure-jobs/{job_id}/cancel"),
            &h.a,
            json!({}),
        )
        .await;
    assert_eq!(c.status, StatusCode::CONFLICT, "{}", c.text);
    assert_eq!(c.body["code"], "JOB_CLOSED");
    assert_eq!(c.body["details"]["state"], "partially_failed");

    // Another tenant sees no such job, and cannot cancel it.
    let b = h.get(&format!("/v1/erasure-jobs/{job_id}"), &h.b).await;
    assert_eq!(b.status, StatusCode::NOT_FOUND, "{}", b.text);
    let b = h
        .get(&format!("/v1/erasure-jobs/{job_id}/items"), &h.b)
        .await;
    assert_eq!(b.status, StatusCode::NOT_FOUND, "{}", b.text);
    let b = h
        .post(
            &format!("/v1/erasure-jobs/{job_id}/cancel"),
            &h.b,
            json!({}),
        )
        .await;
    assert_eq!(b.status, StatusCode::NOT_FOUND, "{}", b.text);

    // Without a key: 401. Bad ids and pagination: 400 with a code.
    let r = h
        .call(
            Method::GET,
            &format!("/v1/erasure-jobs/{job_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for path in [
        "/v1/erasure-jobs/nope".to_owned(),
        "/v1/erasure-jobs/nope/items".to_owned(),
        format!("/v1/erasure-jobs/{job_id}/items?cursor=x"),
        format!("/v1/erasure-jobs/{job_id}/items?limit=0"),
    ] {
        let r = h.get(&path, &h.a).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert!(r.body["code"].is_string());
    }
    let r = h
        .post("/v1/erasure-jobs/nope/cancel", &h.a, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    for path in ["/v1/erasure-jobs", "/v1/erasure-jobs/x/cancel"] {
        let r = h
            .call(Method::POST, path, None, Some(json!({"customer_ids": []})))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = h
        .call(Method::GET, "/v1/erasure-jobs/x/items", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Jobs by state in the metrics.
    let m = h.call(Method::GET, "/metrics", Some(&h.admin), None).await;
    assert!(
        m.text
            .contains("ledger_erasure_jobs{state=\"partially_failed\"} 1"),
        "{}",
        m.text
    );
}

pub async fn the_operator_erases_shared_accounts_by_job_and_a_cancel_stops_a_job() {
    let h = Harness::new().await;
    let shared = h
        .register(&h.s, "Barbara", "Liskov", "bl@example.org")
        .await;
    let r = h
        .call(
            Method::POST,
            "/v1/erasure-jobs",
            Some(&h.admin),
            Some(json!({ "customer_ids": [shared], "reference": "OPS-7" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["requested_by"]["kind"], "operator");
    assert_eq!(r.body["validation"], json!({}));
    let job = r.body["job_id"].as_str().unwrap().to_owned();
    run(&h, &job).await;
    let j = h
        .call(
            Method::GET,
            &format!("/v1/erasure-jobs/{job}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(j.body["state"], "succeeded", "{}", j.text);
    assert_eq!(j.body["counts"]["completed"], 1);
    // The broadcaster of that job sees no job of its own.
    let s = h.get(&format!("/v1/erasure-jobs/{job}"), &h.s).await;
    assert_eq!(s.status, StatusCode::NOT_FOUND);

    // A job cancelled before it ran files nothing; cancelling twice is fine.
    let c = h.register(&h.a, "Ada", "Byron", "ab@example.org").await;
    let r = submit(&h, &h.a, json!({ "customer_ids": [c.clone()] })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let job = r.body["job_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let x = h
            .post(&format!("/v1/erasure-jobs/{job}/cancel"), &h.a, json!({}))
            .await;
        assert_eq!(x.status, StatusCode::OK, "{}", x.text);
        assert_eq!(x.body["state"], "cancelled");
    }
    let after = run(&h, &job).await;
    assert_eq!(after["state"], "cancelled");
    assert_eq!(after["counts"]["cancelled"], 1);
    let list = h.get("/v1/erasure-requests", &h.a).await;
    assert_eq!(list.body["items"], json!([]), "{}", list.text);
    let s = h.get(&format!("/v1/customers/{c}"), &h.a).await;
    assert!(s.body["erasure"].is_null(), "{}", s.text);
}

/// A refused list records nothing at all: the log head does not move and no job
/// exists under the id it named.
pub async fn bad_job_lists_are_refused_whole_and_change_nothing() {
    let h = Harness::new().await;
    let c = h.register(&h.a, "Ada", "Lovelace", "ada@example.org").await;
    let head = h.state.ledger.store().head().await.unwrap();
    let job_id = "0000000a-0000-4000-8000-0000000000bb";
    let with = |ids: Vec<String>| json!({ "customer_ids": ids, "job_id": job_id });

    // 10,001 ids: refused whole.
    let many: Vec<String> = (0..10_001)
        .map(|_| ledger_types::CustomerId::new().to_string())
        .collect();
    let r = submit(&h, &h.a, with(many)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["code"], "TOO_MANY_IDS");
    assert_eq!(r.body["details"], json!({ "given": 10_001, "max": 10_000 }));

    // Duplicates: refused, the duplicates listed; the schema says the list is a set
    // (`uniqueItems`), so a schema-valid job never meets this refusal.
    let doc = h
        .call(Method::GET, "/v1/openapi.json", None, None)
        .await
        .body;
    assert_eq!(
        doc["components"]["schemas"]["SubmitErasureJob"]["properties"]["customer_ids"]
            ["uniqueItems"],
        true
    );
    let r = submit(&h, &h.a, with(vec![c.clone(), c.clone()])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["code"], "DUPLICATE_IDS");
    assert_eq!(r.body["details"]["duplicates"], json!([c.clone()]));

    // Malformed ids: refused, by position, the value never echoed.
    let r = submit(
        &h,
        &h.a,
        with(vec![
            c.clone(),
            "jane.doe@example.org".into(),
            c.to_uppercase(),
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["code"], "INVALID_INPUT");
    assert_eq!(r.body["details"]["indices"], json!([1, 2]));
    assert!(!r.text.contains("jane"), "{}", r.text);

    // Empty, wrong types, a bad reference or job id.
    for body in [
        with(vec![]),
        json!({ "customer_ids": "nope" }),
        json!({ "customer_ids": [c.clone()], "reference": "Jane Doe" }),
        json!({ "customer_ids": [c.clone()], "job_id": "1" }),
        json!({ "customer_ids": [c.clone()], "extra": 1 }),
    ] {
        let r = submit(&h, &h.a, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(r.body["code"].is_string());
        assert!(!r.text.contains("Jane"), "{}", r.text);
    }

    // A body over the bulk limit: 413 before anything runs.
    let huge = json!({ "customer_ids": [c.clone()], "reference": "x".repeat(1 << 20) });
    let r = submit(&h, &h.a, huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.body["code"], "BODY_TOO_LARGE");

    // Nothing changed.
    assert_eq!(h.state.ledger.store().head().await.unwrap(), head);
    let j = h.get(&format!("/v1/erasure-jobs/{job_id}"), &h.a).await;
    assert_eq!(j.status, StatusCode::NOT_FOUND, "{}", j.text);
    h.state.ledger.requests().catch_up().await.unwrap();
    assert!(h.state.ledger.requests().unfinished_jobs().is_empty());
    let s = h.get(&format!("/v1/customers/{c}"), &h.a).await;
    assert!(s.body["erasure"].is_null(), "{}", s.text);
}

/// A job of the full 10,000 ids sent with an `Idempotency-Key`: the idempotency
/// layer buffers the body to fingerprint it, and must allow the route's own limit
/// (1 MiB), not the plain 64 KiB (about 1,600 ids), or the retry-safe way to send
/// a job would be refused 413.
pub async fn a_full_job_with_an_idempotency_key_is_accepted_and_replayed() {
    let h = Harness::new().await;
    let ids: Vec<String> = (0..10_000)
        .map(|_| ledger_types::CustomerId::new().to_string())
        .collect();
    let body = json!({ "customer_ids": ids, "job_id": "0000000a-0000-4000-8000-0000000000cc" });
    let key = [("idempotency-key", "full-job-1")];
    let t = h.a.token.clone();
    let first = h
        .call_with(
            Method::POST,
            "/v1/erasure-jobs",
            Some(&t),
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.body["total"], 10_000);
    let again = h
        .call_with(Method::POST, "/v1/erasure-jobs", Some(&t), Some(body), &key)
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.body, first.body);
}
