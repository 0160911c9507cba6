//! Revenue for analysts through the real router: CSV and NDJSON beside JSON,
//! real dates, minor units and exponents, platform-wide figures for the admin key,
//! and the digest recomputed from the CSV by the stand-alone Python verifier
//! (`scripts/verify_revenue_digest.py`).

use std::path::PathBuf;
use std::process::Command;

use axum::http::{Method, StatusCode};
use ledger_types::Timestamp;
use serde_json::{json, Value};

use crate::common::{Harness, Res};

const CSV_HEADER: &str = "broadcaster_id,currency,exponent,day,offer_id,gross_captured,refunded,net,payment_count,refund_count";

async fn get_as(h: &Harness, path: &str, token: &str, accept: &str) -> Res {
    h.call_with(Method::GET, path, Some(token), None, &[("accept", accept)])
        .await
}

fn digest_header(r: &Res) -> String {
    r.headers
        .get("ledger-revenue-digest")
        .expect("a CSV or NDJSON answer carries the digest header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Runs the Python verifier on a CSV; fails (never skips) when python3 is missing.
fn run_verifier(csv: &str, expect: &str) -> std::process::Output {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/verify_revenue_digest.py");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revenue.csv");
    std::fs::write(&file, csv).unwrap();
    Command::new("python3")
        .arg(&script)
        .args(["--expect", expect])
        .arg(&file)
        .output()
        .expect("python3 must be installed to run the revenue digest verifier")
}

/// The digest the verifier recomputes, which must equal `expect`.
fn python_digest(csv: &str, expect: &str) -> String {
    let out = run_verifier(csv, expect);
    assert!(
        out.status.success(),
        "verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub async fn revenue_as_csv_ndjson_and_platform_wide() {
    let h = Harness::new().await;
    let c = h
        .register(&h.a, "Adelheid", "Lovelace", "ada@example.com")
        .await;
    let pid = h.pay(&h.a, &c, 1000, "EUR").await;
    h.pay(&h.a, &c, 700, "JPY").await;
    h.refund(&h.a, &c, &pid, 250, "EUR").await;
    let d = h
        .register(&h.b, "Grace", "Hopperton", "grace@example.com")
        .await;
    h.pay(&h.b, &d, 3, "BHD").await;
    let today = Timestamp::now().to_rfc3339()[..10].to_owned();
    let a_id = h.a.id.clone();

    // JSON stays the default, with the same digest as the CSV's header.
    let json_a = h.get("/v1/revenue", &h.a).await;
    assert_eq!(json_a.status, StatusCode::OK);
    let csv = get_as(&h, "/v1/revenue", &h.a.token, "text/csv").await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let digest = digest_header(&csv);
    assert_eq!(json_a.body["digest"], digest.as_str());
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], CSV_HEADER);
    // EUR before JPY; one row each (the refund is on the capture's day and offer).
    assert_eq!(
        lines[1..],
        [
            format!("{a_id},EUR,2,{today},premium-monthly,1000,250,750,1,1"),
            format!("{a_id},JPY,0,{today},premium-monthly,700,0,700,1,0"),
        ]
    );
    assert!(csv.text.ends_with('\n'));
    // The stand-alone verifier recomputes the server's digest from the CSV alone.
    assert_eq!(python_digest(&csv.text, &digest), digest);

    // NDJSON: the same rows, one object a line, same digest.
    let nd = get_as(
        &h,
        "/v1/revenue?currency=EUR",
        &h.a.token,
        "application/x-ndjson",
    )
    .await;
    assert_eq!(nd.status, StatusCode::OK);
    assert_eq!(nd.headers["content-type"], "application/x-ndjson");
    let rows: Vec<Value> = nd
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            json!({"broadcaster_id": a_id, "currency": "EUR", "exponent": 2, "day": today,
                "offer_id": "premium-monthly", "gross_captured": 1000, "refunded": 250,
                "net": 750, "payment_count": 1, "refund_count": 1})
        ]
    );
    let eur = h.get("/v1/revenue?currency=EUR", &h.a).await;
    assert_eq!(digest_header(&nd), eur.body["digest"].as_str().unwrap());

    // Weights: a refused CSV falls through to the next type named.
    let r = get_as(
        &h,
        "/v1/revenue",
        &h.a.token,
        "text/csv;q=0, application/json",
    )
    .await;
    assert_eq!(r.body["digest"], digest.as_str());

    // The admin key gets the platform: both broadcasters, every currency.
    let all = h
        .call(Method::GET, "/v1/revenue", Some(&h.admin), None)
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let currencies: Vec<&str> = all.body["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["currency"].as_str().unwrap())
        .collect();
    assert_eq!(currencies, ["BHD", "EUR", "JPY"]);
    assert_eq!(all.body["totals"][0]["exponent"], 3);
    let all_csv = get_as(&h, "/v1/revenue", &h.admin, "text/csv").await;
    assert_eq!(all_csv.text.lines().count(), 4);
    let all_digest = digest_header(&all_csv);
    assert_eq!(all.body["digest"], all_digest.as_str());
    assert_ne!(all_digest, digest);
    assert_eq!(python_digest(&all_csv.text, &all_digest), all_digest);
    // An empty selection: the header line alone, the digest of the header alone.
    let empty = get_as(
        &h,
        "/v1/revenue?from=2000-01-01&to=2000-01-01",
        &h.admin,
        "text/csv",
    )
    .await;
    assert_eq!(empty.text, format!("{CSV_HEADER}\n"));
    assert_eq!(
        python_digest(&empty.text, &digest_header(&empty)),
        "18ba74a5de068971d3549345cb907c754a04bfd098005e06dd26b9cf76d39eea"
    );
    // Nothing personal in any form.
    for text in [&csv.text, &nd.text, &all_csv.text, &all.text] {
        for p in [
            "Adelheid",
            "Lovelace",
            "ada@example.com",
            "Grace",
            "Hopperton",
            "203.0.113.9",
        ] {
            assert!(!text.contains(p));
        }
    }
    // A tampered CSV is caught by the verifier.
    let tampered = csv.text.replace(",1000,250,750,", ",1001,250,751,");
    let out = run_verifier(&tampered, &digest);
    assert_eq!(out.status.code(), Some(1));
}
