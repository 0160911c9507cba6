//! Erasure requests and the platform operator through the real router: a request
//! completed at once, deferred, refused (recorded), cancelled and extended; the
//! bad inputs (an extension past three months, cancelling a completed request,
//! another tenant's customer or request); the operator's erasure of a shared
//! account, refused while any broadcaster has an active subscription, and its
//! receipt among every linked broadcaster's own; `/v1/erasures` paging.

use axum::http::{Method, StatusCode};
use ledger_types::Timestamp;
use serde_json::{json, Value};

use crate::common::{Harness, Res, Tenant};

async fn file(h: &Harness, t: &Tenant, c: &str, reference: Option<&str>) -> Res {
    let mut body = json!({ "customer_id": c });
    if let Some(r) = reference {
        body["reference"] = json!(r);
    }
    h.post("/v1/erasure-requests", t, body).await
}

async fn terminate(h: &Harness, t: &Tenant, c: &str, s: &str) {
    let r = h
        .post(
            &format!("/v1/customers/{c}/subscriptions/{s}/terminate"),
            t,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["request_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The whole lifecycle, as a broadcaster sees it.
pub async fn requests_complete_defer_refuse_cancel_and_extend() {
    let h = Harness::new().await;

    // Nothing blocks: completed at once, with the receipt naming the key's actor.
    let c1 = h.register(&h.a, "Ada", "Lovelace", "ada@example.org").await;
    let r = file(&h, &h.a, &c1, Some("ZD-1001")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["reference"], "ZD-1001");
    assert_eq!(r.body["requested_by"]["kind"], "broadcaster");
    assert_eq!(r.body["requested_by"]["broadcaster_id"], h.a.id.as_str());
    assert!(r.body["requested_by"]["key_id"].is_string());
    assert_eq!(r.body["overdue"], false);
    let receipt = &r.body["receipt"];
    assert_eq!(receipt["data_key_destroyed"], true);
    assert_eq!(receipt["request_id"], r.body["request_id"]);
    assert_eq!(receipt["erased_by"]["kind"], "broadcaster");
    assert_eq!(
        receipt["erased_by"]["key_id"],
        r.body["requested_by"]["key_id"]
    );
    assert_eq!(
        r.body["anonymized_position"], receipt["event_position"],
        "the request names the position of CustomerAnonymized"
    );
    // Due one month after receipt.
    let received = Timestamp::parse_rfc3339(r.body["received_at"].as_str().unwrap()).unwrap();
    let due = Timestamp::parse_rfc3339(r.body["due_at"].as_str().unwrap()).unwrap();
    assert_eq!(received.add_months(1), Some(due));
    let completed_id = r.body["request_id"].as_str().unwrap().to_owned();
    // The customer is a tombstone.
    let s = h.get(&format!("/v1/customers/{c1}"), &h.a).await;
    assert!(
        s.body["erasure"].is_object() || s.text.contains("erased"),
        "{}",
        s.text
    );

    // Only an active subscription blocks: deferred, waiting for it.
    let c2 = h
        .register(&h.a, "Grace", "Hopper", "grace@example.org")
        .await;
    let sub = h.subscribe(&h.a, &c2).await;
    let r = file(&h, &h.a, &c2, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "deferred");
    assert_eq!(r.body["blockers"], json!(["ACTIVE_SUBSCRIPTION"]));
    assert_eq!(r.body["waiting_for"], json!([sub]));
    let deferred_id = r.body["request_id"].as_str().unwrap().to_owned();

    // A permanent blocker: refused, and the refusal is on record.
    let c3 = h.register(&h.s, "Alan", "Turing", "alan@example.org").await;
    let r = file(&h, &h.s, &c3, Some("case/42")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "refused");
    assert_eq!(r.body["refusal_code"], "NOT_WHITE_LABEL");
    assert!(r.body["ended_at"].is_string());

    // Listing: by status, with paging; each tenant sees its own only.
    let all = h.get("/v1/erasure-requests", &h.a).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(
        ids(&all.body),
        vec![completed_id.clone(), deferred_id.clone()]
    );
    let deferred = h.get("/v1/erasure-requests?status=deferred", &h.a).await;
    assert_eq!(ids(&deferred.body), vec![deferred_id.clone()]);
    let overdue = h.get("/v1/erasure-requests?overdue=true", &h.a).await;
    assert_eq!(ids(&overdue.body), Vec::<String>::new());
    let p1 = h.get("/v1/erasure-requests?limit=1", &h.a).await;
    assert_eq!(ids(&p1.body), vec![completed_id.clone()]);
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_owned();
    let p2 = h
        .get(
            &format!("/v1/erasure-requests?limit=1&cursor={cursor}"),
            &h.a,
        )
        .await;
    assert_eq!(ids(&p2.body), vec![deferred_id.clone()]);
    assert!(p2.body.get("next_cursor").is_none());
    let theirs = h.get("/v1/erasure-requests", &h.b).await;
    assert_eq!(ids(&theirs.body), Vec::<String>::new());
    for bad in [
        "/v1/erasure-requests?status=lost",
        "/v1/erasure-requests?overdue=maybe",
        "/v1/erasure-requests?cursor=zz",
        "/v1/erasure-requests?limit=0",
        "/v1/erasure-requests?limit=101",
        "/v1/erasure-requests?colour=red",
    ] {
        let r = h.get(bad, &h.a).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert!(
            matches!(
                r.body["code"].as_str(),
                Some("INVALID_QUERY" | "INVALID_PAGINATION")
            ),
            "{bad}: {}",
            r.text
        );
    }

    // Show: the completed one carries its receipt; another tenant gets 404.
    let r = h
        .get(&format!("/v1/erasure-requests/{completed_id}"), &h.a)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["receipt"]["data_key_destroyed"], true);
    let r = h
        .get(&format!("/v1/erasure-requests/{completed_id}"), &h.b)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = h.get("/v1/erasure-requests/not-a-uuid", &h.a).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // Extend: once, by at most two months past the original due date.
    let shown = h
        .get(&format!("/v1/erasure-requests/{deferred_id}"), &h.a)
        .await;
    let due = Timestamp::parse_rfc3339(shown.body["due_at"].as_str().unwrap()).unwrap();
    let past_three_months = Timestamp::from_millis(due.add_months(2).unwrap().millis() + 1000);
    let extend = format!("/v1/erasure-requests/{deferred_id}/extend");
    let r = h
        .post(
            &extend,
            &h.a,
            json!({"due_at": past_three_months.to_rfc3339(), "reason": "COMPLEXITY"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "EXTENSION_TOO_LONG");
    assert!(r.body["details"]["latest_due_at"].is_string());
    let r = h
        .post(
            &extend,
            &h.a,
            json!({"due_at": "tomorrow", "reason": "COMPLEXITY"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["code"], "INVALID_INPUT");
    let two_months = due.add_months(2).unwrap();
    let r = h
        .post(
            &extend,
            &h.a,
            json!({"due_at": two_months.to_rfc3339(), "reason": "BORED"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h
        .post(
            &extend,
            &h.b,
            json!({"due_at": two_months.to_rfc3339(), "reason": "COMPLEXITY"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = h
        .post(
            &extend,
            &h.a,
            json!({"due_at": two_months.to_rfc3339(), "reason": "NUMBER_OF_REQUESTS"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["due_at"], two_months.to_rfc3339());
    assert_eq!(r.body["extension_reason"], "NUMBER_OF_REQUESTS");
    let r = h
        .post(
            &extend,
            &h.a,
            json!({"due_at": two_months.to_rfc3339(), "reason": "COMPLEXITY"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "ALREADY_EXTENDED");

    // Cancel: the deferred one, once; a completed one is REQUEST_CLOSED.
    let r = h
        .post(
            &format!("/v1/erasure-requests/{deferred_id}/cancel"),
            &h.b,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = h
        .post(
            &format!("/v1/erasure-requests/{deferred_id}/cancel"),
            &h.a,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "cancelled");
    let r = h
        .post(
            &format!("/v1/erasure-requests/{completed_id}/cancel"),
            &h.a,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "REQUEST_CLOSED");
    assert_eq!(r.body["details"]["status"], "completed");
    // The cancelled request never erases, even once the subscription ends.
    terminate(&h, &h.a, &c2, &sub).await;
    let s = h.get(&format!("/v1/customers/{c2}"), &h.a).await;
    assert_eq!(s.body["status"], "active", "{}", s.text);

    // Another tenant's customer: 404, and nothing recorded.
    let before = h.get("/v1/erasure-requests", &h.b).await;
    let r = file(&h, &h.b, &c2, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let after = h.get("/v1/erasure-requests", &h.b).await;
    assert_eq!(ids(&before.body), ids(&after.body));
    // Malformed input.
    let r = file(&h, &h.a, &c2, Some("ada@example.org")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        !r.text.contains("ada@"),
        "the reference is never echoed: {}",
        r.text
    );
    let r = file(&h, &h.a, "nope", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h
        .call(
            Method::POST,
            "/v1/erasure-requests",
            None,
            Some(json!({"customer_id": c2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

    // A request id reused for another customer is REQUEST_EXISTS; the same
    // request again is answered as it stands.
    let r = h
        .post(
            "/v1/erasure-requests",
            &h.a,
            json!({"customer_id": c2, "request_id": completed_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "REQUEST_EXISTS");
    let r = h
        .post(
            "/v1/erasure-requests",
            &h.a,
            json!({"customer_id": c1, "request_id": completed_id, "reference": "ZD-1001"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "completed");

    // The metrics count requests by state, and none is overdue.
    let m = h.call(Method::GET, "/metrics", None, None).await;
    for line in [
        "ledger_erasure_requests{status=\"completed\"} 1",
        "ledger_erasure_requests{status=\"refused\"} 1",
        "ledger_erasure_requests{status=\"cancelled\"} 1",
        "ledger_erasure_requests{status=\"open\"} 0",
        "ledger_erasure_requests_overdue 0",
        "ledger_oldest_open_erasure_request_seconds 0",
    ] {
        assert!(m.text.contains(line), "{line}: {}", m.text);
    }
}

/// The platform operator erases a shared account: refused while any broadcaster
/// has an active subscription (every one listed with its broadcaster), then done,
/// and every linked broadcaster sees the receipt, marked as the operator's.
pub async fn the_operator_erases_a_shared_account_once_no_subscription_is_active() {
    let h = Harness::new().await;
    let c = h
        .register(&h.s, "Linus", "Pauling", "linus@example.org")
        .await;
    // Linked to A too (no API route links accounts: through the ledger), with a
    // subscription at each.
    let cid = ledger_types::CustomerId::parse(&c).unwrap();
    let a = ledger_types::BroadcasterId::parse(&h.a.id).unwrap();
    h.state
        .execute(
            cid,
            &ledger_command::CustomerCommand::Link {
                broadcaster_id: a,
                at: Timestamp::now(),
            },
        )
        .await
        .unwrap();
    let sub_s = h.subscribe(&h.s, &c).await;
    let sub_a = h.subscribe(&h.a, &c).await;

    // No broadcaster may erase it.
    let r = h
        .post(&format!("/v1/customers/{c}/anonymize"), &h.a, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    let path = format!("/v1/admin/customers/{c}/anonymize");
    // A broadcaster key cannot use the operator's route.
    let r = h.post(&path, &h.a, json!({"reference": "OPS-7"})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let admin = h.admin.clone();
    let op = |body: Value| {
        let path = path.clone();
        let admin = admin.clone();
        let h = &h;
        async move { h.call(Method::POST, &path, Some(&admin), Some(body)).await }
    };
    // Refused with every blocker across broadcasters; nothing recorded.
    let r = op(json!({"reference": "OPS-7"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "ACTIVE_SUBSCRIPTION");
    let mut subs: Vec<String> =
        serde_json::from_value(r.body["details"]["subscriptions"].clone()).unwrap();
    subs.sort();
    let mut expected = vec![sub_s.clone(), sub_a.clone()];
    expected.sort();
    assert_eq!(subs, expected);
    let per: Vec<&str> = r.body["details"]["broadcasters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["broadcaster_id"].as_str().unwrap())
        .collect();
    assert_eq!(per.len(), 2, "{}", r.text);
    assert!(per.contains(&h.a.id.as_str()) && per.contains(&h.s.id.as_str()));
    let listed = h
        .call(Method::GET, "/v1/erasure-requests", Some(&admin), None)
        .await;
    assert_eq!(ids(&listed.body), Vec::<String>::new());
    // The operator's view of the customer: both broadcasters, both subscriptions,
    // the same blocker; ids only, no personal data; admin key only.
    let view_path = format!("/v1/admin/customers/{c}");
    let view = h.call(Method::GET, &view_path, Some(&admin), None).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    assert_eq!(view.body["status"], "active");
    assert_eq!(view.body["erasable"], false);
    assert_eq!(view.body["blockers"][0]["code"], "ACTIVE_SUBSCRIPTION");
    assert_eq!(view.body["broadcasters"].as_array().unwrap().len(), 2);
    assert_eq!(view.body["subscriptions"].as_array().unwrap().len(), 2);
    for personal in ["Linus", "Pauling", "linus@example.org"] {
        assert!(!view.text.contains(personal), "{}", view.text);
    }
    let r = h.get(&view_path, &h.a).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = h
        .call(Method::GET, "/v1/admin/customers/nope", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let unknown = format!("/v1/admin/customers/{}", ledger_types::CustomerId::new());
    let r = h.call(Method::GET, &unknown, Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    // Bad input: a personal-looking reference, a bad id, an unknown customer.
    let r = op(json!({"reference": "Linus Pauling"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(!r.text.contains("Pauling"));
    let r = h
        .call(
            Method::POST,
            "/v1/admin/customers/nope/anonymize",
            Some(&admin),
            Some(json!({"reference": "OPS-7"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h
        .call(
            Method::POST,
            &format!(
                "/v1/admin/customers/{}/anonymize",
                ledger_types::CustomerId::new()
            ),
            Some(&admin),
            Some(json!({"reference": "OPS-7"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    terminate(&h, &h.s, &c, &sub_s).await;
    terminate(&h, &h.a, &c, &sub_a).await;
    let r = op(json!({"reference": "OPS-7"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["requested_by"]["kind"], "operator");
    assert_eq!(r.body["reference"], "OPS-7");
    assert_eq!(r.body["receipt"]["erased_by"]["kind"], "operator");
    assert_eq!(r.body["receipt"]["data_key_destroyed"], true);
    let position = r.body["receipt"]["event_position"].clone();

    // Every linked broadcaster sees the receipt, marked as the operator's.
    for t in [&h.a, &h.s] {
        let list = h.get("/v1/erasures", t).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let mine: Vec<&Value> = list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["customer_id"] == c.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{}", list.text);
        assert_eq!(mine[0]["erased_by"]["kind"], "operator");
        assert_eq!(mine[0]["position"], position);
    }
    // The operator's view shows the erasure.
    let view = h.call(Method::GET, &view_path, Some(&admin), None).await;
    assert_eq!(view.body["status"], "erased", "{}", view.text);
    assert_eq!(view.body["erasure"]["position"], position);
    assert_eq!(view.body["erasure"]["erased_by"]["kind"], "operator");
    // Not another tenant's.
    let list = h.get("/v1/erasures", &h.b).await;
    assert!(!list.text.contains(&c), "{}", list.text);
    // The operator sees every request, a broadcaster none of the operator's.
    let listed = h
        .call(Method::GET, "/v1/erasure-requests", Some(&admin), None)
        .await;
    assert_eq!(ids(&listed.body).len(), 1, "{}", listed.text);
    let theirs = h.get("/v1/erasure-requests", &h.a).await;
    assert_eq!(ids(&theirs.body), Vec::<String>::new());
    // A repeat answers the first receipt.
    let again = op(json!({"reference": "OPS-8"})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["receipt"]["event_position"], position);
}

/// `/v1/erasures` pages with `cursor` and `limit`, filters with `since`, and
/// refuses unknown parameters.
pub async fn erasure_receipts_are_paged() {
    let h = Harness::new().await;
    let mut customers = Vec::new();
    for i in 0..3 {
        let c = h
            .register(
                &h.a,
                "Page",
                &format!("Number{i}"),
                &format!("p{i}@example.org"),
            )
            .await;
        let r = h
            .post(&format!("/v1/customers/{c}/anonymize"), &h.a, json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.body["erased_by"]["key_id"].is_string(), "{}", r.text);
        customers.push(c);
    }
    let all = h.get("/v1/erasures", &h.a).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 3);
    assert!(all.body.get("next_cursor").is_none());
    let p1 = h.get("/v1/erasures?limit=2", &h.a).await;
    assert_eq!(p1.status, StatusCode::OK, "{}", p1.text);
    assert_eq!(p1.body["items"].as_array().unwrap().len(), 2);
    let cursor = p1.body["next_cursor"].as_str().unwrap();
    let p2 = h
        .get(&format!("/v1/erasures?limit=2&cursor={cursor}"), &h.a)
        .await;
    assert_eq!(p2.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(p2.body["items"][0]["customer_id"], customers[2].as_str());
    let future = Timestamp::from_millis(Timestamp::now().millis() + 3_600_000).to_rfc3339();
    let later = h.get(&format!("/v1/erasures?since={future}"), &h.a).await;
    assert_eq!(
        later.body["items"].as_array().unwrap().len(),
        0,
        "{}",
        later.text
    );
    let past = h.get("/v1/erasures?since=2000-01-01T00:00:00Z", &h.a).await;
    assert_eq!(past.body["items"].as_array().unwrap().len(), 3);
    for bad in [
        "/v1/erasures?page=2",
        "/v1/erasures?limit=0",
        "/v1/erasures?limit=1001",
        "/v1/erasures?cursor=o5",
        "/v1/erasures?since=yesterday",
    ] {
        let r = h.get(bad, &h.a).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
}

async fn status_of(h: &Harness, t: &Tenant, id: &str) -> String {
    let r = h.get(&format!("/v1/erasure-requests/{id}"), t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["status"].as_str().unwrap().to_owned()
}

async fn pass_at(h: &Harness, now: Timestamp) -> ledger_app::process::Pass {
    ledger_app::process::ErasureProcess::new(h.state.ledger.clone())
        .pass(now)
        .await
        .unwrap()
}

/// "Terminate and erase" in one call, only when the caller could erase but for
/// its own subscriptions; and the calls every erasure-request route refuses.
pub async fn terminate_and_erase_and_the_refusals_of_every_route() {
    let h = Harness::new().await;
    let c = h.register(&h.a, "Hedy", "Lamarr", "hedy@example.org").await;
    let s1 = h.subscribe(&h.a, &c).await;
    let s2 = h.subscribe(&h.a, &c).await;
    let path = format!("/v1/customers/{c}/terminate-and-erase");
    let r = h.call(Method::POST, &path, None, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = h.post(&path, &h.b, json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = h
        .post("/v1/customers/nope/terminate-and-erase", &h.a, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h.post(&path, &h.a, json!({"reference": "T-1"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["receipt"]["data_key_destroyed"], true);
    let subs = h
        .get(&format!("/v1/customers/{c}/subscriptions"), &h.a)
        .await;
    for s in [&s1, &s2] {
        assert!(subs.text.contains(s.as_str()), "{}", subs.text);
    }
    assert!(!subs.text.contains("\"active\":true"), "{}", subs.text);

    // A shared broadcaster could not erase at all: refused, nothing terminated.
    let d = h
        .register(&h.s, "Emmy", "Noether", "emmy@example.org")
        .await;
    let sub = h.subscribe(&h.s, &d).await;
    let r = h
        .post(
            &format!("/v1/customers/{d}/terminate-and-erase"),
            &h.s,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "NOT_WHITE_LABEL");
    let codes: Vec<&str> = r.body["details"]["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["NOT_WHITE_LABEL", "ACTIVE_SUBSCRIPTION"]);
    let subs = h
        .get(&format!("/v1/customers/{d}/subscriptions"), &h.s)
        .await;
    assert!(
        subs.text.contains(&sub) && subs.text.contains("\"active\":true"),
        "{}",
        subs.text
    );

    // Every request route wants a key, and a request id where it names one.
    let any = ledger_types::RequestId::new();
    for (method, path) in [
        (Method::GET, "/v1/erasure-requests".to_owned()),
        (Method::GET, format!("/v1/erasure-requests/{any}")),
        (Method::POST, format!("/v1/erasure-requests/{any}/cancel")),
        (Method::POST, format!("/v1/erasure-requests/{any}/extend")),
    ] {
        let body = (method == Method::POST)
            .then(|| json!({"due_at": "2030-01-01T00:00:00Z", "reason": "COMPLEXITY"}));
        let r = h.call(method, &path, None, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.text);
    }
    let r = h
        .post("/v1/erasure-requests/nope/cancel", &h.a, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = h
        .post(
            &format!("/v1/erasure-requests/{any}/cancel"),
            &h.a,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

/// A key store that fails after the decision: every erasure path answers 202 with
/// the request still open; once the key store is back, the process manager
/// destroys the keys and completes every request, exactly once.
pub async fn requests_whose_key_destruction_failed_are_completed_by_the_process() {
    let h = Harness::new().await;
    let c1 = h
        .register(&h.a, "Rosalind", "Franklin", "rosalind@example.org")
        .await;
    let c2 = h
        .register(&h.a, "Lise", "Meitner", "lise@example.org")
        .await;
    h.subscribe(&h.a, &c2).await;
    let c3 = h
        .register(&h.s, "Chien-Shiung", "Wu", "wu@example.org")
        .await;
    h.keys
        .fail_destroy
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r1 = file(&h, &h.a, &c1, None).await;
    assert_eq!(r1.status, StatusCode::ACCEPTED, "{}", r1.text);
    assert_eq!(r1.body["status"], "open");
    assert_eq!(r1.body["receipt"]["data_key_destroyed"], false);
    let r2 = h
        .post(
            &format!("/v1/customers/{c2}/terminate-and-erase"),
            &h.a,
            json!({}),
        )
        .await;
    assert_eq!(r2.status, StatusCode::ACCEPTED, "{}", r2.text);
    let r3 = h
        .call(
            Method::POST,
            &format!("/v1/admin/customers/{c3}/anonymize"),
            Some(&h.admin),
            Some(json!({"reference": "OPS-9"})),
        )
        .await;
    assert_eq!(r3.status, StatusCode::ACCEPTED, "{}", r3.text);
    let open = h
        .call(
            Method::GET,
            "/v1/erasure-requests?status=open",
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(ids(&open.body).len(), 3, "{}", open.text);

    // Still failing: the pass fails each step and keeps them for the next.
    let p = pass_at(&h, Timestamp::now()).await;
    assert_eq!((p.advanced, p.ended), (3, 0), "{p:?}");
    h.keys
        .fail_destroy
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let process = ledger_app::process::ErasureProcess::new(h.state.ledger.clone());
    let p = process.pass(Timestamp::now()).await.unwrap();
    assert_eq!((p.ended, p.failed), (3, 0), "{p:?}");
    let p = process.pass(Timestamp::now()).await.unwrap();
    assert_eq!(p.ended, 0, "nothing is done twice: {p:?}");
    for (t, r) in [(&h.a, &r1), (&h.a, &r2)] {
        assert_eq!(
            status_of(&h, t, r.body["request_id"].as_str().unwrap()).await,
            "completed"
        );
    }
    let done = h
        .call(
            Method::GET,
            "/v1/erasure-requests?status=completed",
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(ids(&done.body).len(), 3, "{}", done.text);
    // One erasure per customer in the receipts, whatever was retried.
    let receipts = h.get("/v1/erasures", &h.a).await;
    assert_eq!(
        receipts.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        receipts.text
    );
}

/// A deferred request completes by itself: when its subscription is terminated,
/// or when the subscription reaches its `ends_at`.
pub async fn deferred_requests_complete_when_the_last_subscription_ends() {
    let h = Harness::new().await;
    // Terminated by the broadcaster.
    let c = h
        .register(&h.a, "Mary", "Somerville", "mary@example.org")
        .await;
    let sub = h.subscribe(&h.a, &c).await;
    let r = file(&h, &h.a, &c, None).await;
    assert_eq!(r.body["status"], "deferred", "{}", r.text);
    let id = r.body["request_id"].as_str().unwrap().to_owned();
    let p = pass_at(&h, Timestamp::now()).await;
    assert_eq!(p.ended, 0, "{p:?}");
    terminate(&h, &h.a, &c, &sub).await;
    let p = pass_at(&h, Timestamp::now()).await;
    assert_eq!(p.ended, 1, "{p:?}");
    assert_eq!(status_of(&h, &h.a, &id).await, "completed");

    // Reaching its end date.
    let d = h
        .register(&h.a, "Sophie", "Germain", "sophie@example.org")
        .await;
    let ends_at = Timestamp::from_millis(Timestamp::now().millis() + 60_000);
    let r = h
        .post(
            &format!("/v1/customers/{d}/subscriptions"),
            &h.a,
            json!({"offer_id": "premium-monthly", "ends_at": ends_at.to_rfc3339()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .post(
            &format!("/v1/customers/{d}/subscriptions"),
            &h.a,
            json!({"offer_id": "premium-monthly", "ends_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    // Well formed but already past: a conflict with the present (409), never a 400
    // (a fuzzer's schema-valid body is not malformed).
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["code"], "ENDS_AT_PASSED", "{}", r.text);
    let r = file(&h, &h.a, &d, None).await;
    assert_eq!(r.body["status"], "deferred", "{}", r.text);
    let id = r.body["request_id"].as_str().unwrap().to_owned();
    let p = pass_at(&h, Timestamp::now()).await;
    assert_eq!((p.subscriptions_ended, p.ended), (0, 0), "{p:?}");
    let later = Timestamp::from_millis(ends_at.millis() + 1);
    let p = pass_at(&h, later).await;
    assert_eq!((p.subscriptions_ended, p.ended), (1, 1), "{p:?}");
    assert_eq!(status_of(&h, &h.a, &id).await, "completed");
}

/// "Erase when the subscription ends" against a new subscription starting at the
/// same moment: either the erasure wins and the new subscription is refused, or
/// the new subscription wins and the request waits for it. Never both.
pub async fn erase_when_it_ends_races_a_new_subscription() {
    let h = Harness::new().await;
    let mut erased_first = 0;
    let mut started_first = 0;
    for i in 0..12 {
        let c = h
            .register(
                &h.a,
                "Race",
                &format!("Runner{i}"),
                &format!("race{i}@example.org"),
            )
            .await;
        let ends_at = Timestamp::from_millis(Timestamp::now().millis() + 60_000);
        let r = h
            .post(
                &format!("/v1/customers/{c}/subscriptions"),
                &h.a,
                json!({"offer_id": "premium-monthly", "ends_at": ends_at.to_rfc3339()}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let r = file(&h, &h.a, &c, None).await;
        let id = r.body["request_id"].as_str().unwrap().to_owned();
        assert_eq!(r.body["status"], "deferred");
        let later = Timestamp::from_millis(ends_at.millis() + 1);
        let subs_path = format!("/v1/customers/{c}/subscriptions");
        let new_sub = h.post(&subs_path, &h.a, json!({"offer_id": "premium-monthly"}));
        let (started, _) = tokio::join!(new_sub, pass_at(&h, later));
        // Whatever the order, the process catches up with the outcome; the
        // projector (which `serve` runs) folds it before the summary is read.
        pass_at(&h, later).await;
        h.state.read.catch_up().await.unwrap();
        let status = status_of(&h, &h.a, &id).await;
        let summary = h.get(&format!("/v1/customers/{c}"), &h.a).await;
        let erased = summary.body["status"] == "erased";
        if started.status == StatusCode::CREATED {
            started_first += 1;
            assert!(!erased, "a customer with an active subscription was erased");
            assert_eq!(status, "deferred");
            let shown = h.get(&format!("/v1/erasure-requests/{id}"), &h.a).await;
            assert_eq!(
                shown.body["waiting_for"],
                json!([started.body["subscription_id"]]),
                "{}",
                shown.text
            );
        } else {
            erased_first += 1;
            assert_eq!(started.status, StatusCode::CONFLICT, "{}", started.text);
            assert_eq!(started.body["code"], "CUSTOMER_ANONYMIZED");
            assert!(erased);
            assert_eq!(status, "completed");
        }
    }
    assert_eq!(erased_first + started_first, 12);
}

/// A request entered after the data subject asked (a letter, an email to
/// support) is due a month after it was received, so it may be overdue at once;
/// a receipt more than a year ago or in the future is refused with nothing
/// recorded, and a malformed one is a 400.
pub async fn a_request_received_earlier_is_due_from_then() {
    let h = Harness::new().await;
    let day = 24 * 3_600_000;
    let now = Timestamp::now();
    let c = h.register(&h.a, "Ada", "Lovelace", "ada@example.org").await;
    h.subscribe(&h.a, &c).await;
    let head = h.state.ledger.store().head().await.unwrap();
    for (given, code) in [
        (now.millis() - 367 * day, "RECEIVED_AT_OUT_OF_RANGE"),
        (now.millis() + day, "RECEIVED_AT_OUT_OF_RANGE"),
    ] {
        let at = Timestamp::from_millis(given).to_rfc3339();
        let r = h
            .post(
                "/v1/erasure-requests",
                &h.a,
                json!({ "customer_id": c, "received_at": at }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(r.body["code"], code, "{}", r.text);
        assert!(
            r.body["details"]["earliest_received_at"].is_string(),
            "{}",
            r.text
        );
    }
    let r = h
        .post(
            "/v1/erasure-requests",
            &h.a,
            json!({ "customer_id": c, "received_at": "last tuesday" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["code"], "INVALID_INPUT", "{}", r.text);
    assert!(
        !r.text.contains("tuesday"),
        "the value is not echoed: {}",
        r.text
    );
    assert_eq!(
        h.state.ledger.store().head().await.unwrap(),
        head,
        "nothing recorded"
    );

    // Received 40 days ago: deferred (the subscription), and overdue already.
    let received = Timestamp::from_millis(now.millis() - 40 * day);
    let r = h
        .post(
            "/v1/erasure-requests",
            &h.a,
            json!({ "customer_id": c, "received_at": received.to_rfc3339() }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "deferred", "{}", r.text);
    assert_eq!(r.body["received_at"], received.to_rfc3339());
    assert_eq!(
        r.body["due_at"],
        received.add_months(1).unwrap().to_rfc3339()
    );
    assert_eq!(r.body["overdue"], true, "{}", r.text);
    let id = r.body["request_id"].as_str().unwrap().to_owned();
    let overdue = h.get("/v1/erasure-requests?overdue=true", &h.a).await;
    assert_eq!(ids(&overdue.body), vec![id]);

    // A clock a minute fast is taken as now.
    let c2 = h
        .register(&h.a, "Grace", "Hopper", "grace@example.org")
        .await;
    let ahead = Timestamp::from_millis(Timestamp::now().millis() + 60_000);
    let r = h
        .post(
            "/v1/erasure-requests",
            &h.a,
            json!({ "customer_id": c2, "received_at": ahead.to_rfc3339() }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = Timestamp::parse_rfc3339(r.body["received_at"].as_str().unwrap()).unwrap();
    assert!(got < ahead, "{}", r.text);
    assert_eq!(r.body["overdue"], false);
}
