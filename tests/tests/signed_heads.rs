//! Signed tree heads against the edits an outside security test got through
//! `audit verify` before (issue 10, item 4), driving the real binary:
//!
//! (a) an export with its tail cut and its trailer rebuilt,
//! (b) an export with an amount ×10 and both hash chains recomputed,
//! (c) a live store whose log was cut back before some erasures and whose views
//!     were rebuilt.
//!
//! (a) and (b) pass plain `audit verify --from-export` (asserted below: that is the
//! hole); `--public-key` catches both, and so does comparing with an earlier export.
//! (c) passes plain `audit verify`; a head signed before the cut catches it, and the
//! server, at its next start, says so and sets the old series of heads aside. Also: erasure receipts served by the real server
//! verify offline with `audit verify-receipt`, and refuse any flipped bit.

use ledger_system_tests as common;

use std::path::{Path, PathBuf};

use common::server::{call, free_port, start_with, stop, Server, ADMIN};
use common::*;
use ledger_store::chain::RecordFields;
use ledger_store::ZERO_HASH;
use serde_json::Value;

/// A fixed tree-head signing key (the Ed25519 seed), so the tests can also sign.
const SIGNING_KEY: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
    public_key: PathBuf,
    summary: Value,
}

/// A demo data folder with the signing key in place, and the public key in a file
/// (from `ledger signing-key show`, as an operator publishes it).
fn setup(customers: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let data = dir.join("data");
    let summary = demo(&data, customers);
    std::fs::write(data.join("signing-key.hex"), SIGNING_KEY).unwrap();
    let o = run(&data, &["signing-key", "show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let public_key = dir.join("public-key.hex");
    std::fs::write(&public_key, stdout(&o)).unwrap();
    Setup {
        _tmp: tmp,
        dir,
        data,
        public_key,
        summary,
    }
}

fn export(data: &Path, out: &Path) {
    let o = run(data, &["audit", "export", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `audit verify --from-export FILE... [extra]`: (exit ok, JSON report, text report).
fn verify(files: &[&Path], extra: &[&str]) -> (bool, Value, String) {
    let mut args = vec!["audit", "verify"];
    for f in files {
        args.extend(["--from-export", f.to_str().unwrap()]);
    }
    args.extend(extra);
    let nowhere = Path::new("/nonexistent-data-folder-not-needed");
    let text = run(nowhere, &args);
    args.push("--json");
    let o = run(nowhere, &args);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("no JSON report: {}", stderr(&o)));
    assert_eq!(o.status.success(), v["ok"] == true, "{v}");
    assert_eq!(text.status.success(), o.status.success());
    (o.status.success(), v, stdout(&text))
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(file: &Path, lines: &[String]) {
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

/// Recomputes both hash chains of an export's records (lines 1..n-1) the way
/// `ledger_store::chain` defines them, as a forger with the export in hand can.
fn rechain(lines: &mut [String]) {
    let mut log_prev = ZERO_HASH;
    let mut stream_prev: std::collections::HashMap<String, [u8; 32]> = Default::default();
    let n = lines.len();
    for line in &mut lines[1..n - 1] {
        let mut r: Value = serde_json::from_str(line).unwrap();
        let stream = r["stream"].as_str().unwrap().to_owned();
        let id = *uuid::Uuid::parse_str(r["event_id"].as_str().unwrap())
            .unwrap()
            .as_bytes();
        let payload = r["payload"].as_str().unwrap().as_bytes().to_vec();
        let fields = RecordFields {
            position: r["position"].as_u64().unwrap(),
            stream: &stream,
            version: r["version"].as_u64().unwrap(),
            event_id: &id,
            event_type: r["event_type"].as_str().unwrap(),
            schema_version: r["schema_version"].as_u64().unwrap() as u16,
            recorded_at_ms: r["recorded_at"].as_i64().unwrap(),
            payload: &payload,
        };
        let hash = fields.chain(stream_prev.get(&stream).unwrap_or(&ZERO_HASH));
        let log_hash = fields.chain(&log_prev);
        stream_prev.insert(stream, hash);
        log_prev = log_hash;
        r["hash"] = hex::encode(hash).into();
        r["log_hash"] = hex::encode(log_hash).into();
        *line = r.to_string();
    }
}

/// Rebuilds the trailer (last line) to match the records, keeping whatever signed
/// head it had (a forger cannot sign): count, head and revenue digest as the
/// verifier itself recomputes them.
fn rebuild_trailer(file: &Path) {
    let mut l = lines(file);
    let old: Value = serde_json::from_str(l.last().unwrap()).unwrap();
    l.pop();
    write_lines(file, &l);
    let (_, report, _) = verify(&[file], &[]);
    let mut trailer = old.clone();
    trailer["events"] = report["events"].clone();
    trailer["head_position"] = report["head_position"].clone();
    trailer["head_log_hash"] = report["head_log_hash"].clone();
    trailer["revenue_digest"] = report["revenue_digest"].clone();
    l.push(trailer.to_string());
    write_lines(file, &l);
}

#[test]
fn an_export_cut_short_with_its_trailer_rebuilt_is_caught_by_its_signed_head() {
    let s = setup(40);
    let file = s.dir.join("export.ndjson");
    export(&s.data, &file);
    let key = s.public_key.to_str().unwrap();
    let (ok, genuine, text) = verify(&[&file], &["--public-key", key]);
    assert!(ok, "{genuine}");
    assert!(
        text.contains(
            "checked: the Merkle root recomputed from the records equals the signed root"
        ),
        "{text}"
    );
    assert!(text.contains("result: OK, no discrepancy"), "{text}");

    // The tail cut by 7 records, the trailer rebuilt to match.
    let cut = s.dir.join("cut.ndjson");
    let mut l = lines(&file);
    let n = l.len();
    l.drain(n - 8..n - 1);
    write_lines(&cut, &l);
    rebuild_trailer(&cut);

    // The hole: without the public key, the forged export verifies.
    let (ok, report, _) = verify(&[&cut], &[]);
    assert!(
        ok,
        "the forged export was expected to pass the old checks: {report}"
    );
    // With it, the signed head no longer matches the records. One problem, and
    // the text says so in the singular.
    let (ok, report, text) = verify(&[&cut], &["--public-key", key]);
    assert!(!ok);
    assert_eq!(codes(&report), ["SIGNED_HEAD_MISMATCH"], "{report}");
    assert!(text.contains("result: 1 DISCREPANCY\n"), "{text}");
    // Removing the signed head does not help.
    let unsigned = s.dir.join("unsigned.ndjson");
    let mut l = lines(&cut);
    let mut t: Value = serde_json::from_str(l.last().unwrap()).unwrap();
    t.as_object_mut().unwrap().remove("signed_tree_head");
    *l.last_mut().unwrap() = t.to_string();
    write_lines(&unsigned, &l);
    let (ok, report, _) = verify(&[&unsigned], &["--public-key", key]);
    assert!(!ok);
    assert_eq!(codes(&report), ["NO_SIGNED_HEAD"], "{report}");
    // Nor does a head signed with another key.
    let other = s.dir.join("other-key.hex");
    std::fs::write(
        &other,
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    )
    .unwrap();
    let (ok, report, _) = verify(&[&file], &["--public-key", other.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(codes(&report), ["BAD_SIGNATURE"], "{report}");
    // An expected head recorded from the genuine export is missing from the cut one.
    let anchor = format!(
        "{}:{}",
        genuine["head_position"],
        genuine["head_log_hash"].as_str().unwrap()
    );
    assert!(verify(&[&file], &["--expect-head", &anchor]).0);
    let (ok, report, _) = verify(&[&cut], &["--expect-head", &anchor]);
    assert!(!ok);
    assert_eq!(codes(&report), ["ANCHOR_MISMATCH"], "{report}");

    // A broken record is reported once: no NO_TRAILER or signed-head noise after it.
    let broken = s.dir.join("broken.ndjson");
    let mut l = lines(&file);
    let n = l.len();
    l.truncate(n / 2);
    l[n / 4] = l[n / 4].replacen("\"version\":", "\"version\":9", 1);
    write_lines(&broken, &l);
    let (ok, report, _) = verify(&[&broken], &["--public-key", key]);
    assert!(!ok);
    assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{report}");
}

#[test]
fn an_export_with_an_amount_times_ten_and_both_chains_recomputed_is_caught_by_its_signed_head() {
    let s = setup(40);
    let file = s.dir.join("export.ndjson");
    export(&s.data, &file);
    let key = s.public_key.to_str().unwrap();
    let (_, genuine, _) = verify(&[&file], &[]);

    let forged = s.dir.join("forged.ndjson");
    let mut l = lines(&file);
    let i = l
        .iter()
        .position(|x| x.contains("\"event_type\":\"PaymentCaptured\""))
        .unwrap();
    let mut r: Value = serde_json::from_str(&l[i]).unwrap();
    let mut payload: Value = serde_json::from_str(r["payload"].as_str().unwrap()).unwrap();
    let minor = payload["amount"]["minor"].as_i64().unwrap();
    payload["amount"]["minor"] = (minor * 10).into();
    r["payload"] = payload.to_string().into();
    l[i] = r.to_string();
    rechain(&mut l);
    write_lines(&forged, &l);
    rebuild_trailer(&forged);

    // The hole: chains, trailer and revenue digest all agree with the forgery.
    let (ok, report, _) = verify(&[&forged], &[]);
    assert!(
        ok,
        "the forged export was expected to pass the old checks: {report}"
    );
    assert_ne!(report["revenue_digest"], genuine["revenue_digest"]);
    // The signed root does not.
    let (ok, report, _) = verify(&[&forged], &["--public-key", key]);
    assert!(!ok);
    assert_eq!(codes(&report), ["SIGNED_HEAD_MISMATCH"], "{report}");
    // Nor does the genuine export's tree, as an earlier export of the same log.
    let (ok, report, _) = verify(&[&file, &forged], &[]);
    assert!(!ok);
    assert_eq!(codes(&report), ["NOT_EXTENDED"], "{report}");
}

#[test]
fn a_later_export_extends_an_earlier_one_and_a_rewritten_one_does_not() {
    let s = setup(40);
    let key = s.public_key.to_str().unwrap();
    let before = s.dir.join("before.ndjson");
    export(&s.data, &before);
    for i in 0..2 {
        let (b, c) = sample(&s.summary, "erasable", i);
        let o = run(
            &s.data,
            &["anonymize", "--broadcaster", &b, "--customer", &c, "--json"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        // The operator's command prints a receipt that proves itself too.
        let receipt = s.dir.join(format!("cli-receipt-{i}.json"));
        std::fs::write(&receipt, &o.stdout).unwrap();
        let (ok, v) = verify_receipt(&receipt, &s.public_key);
        assert!(ok, "{v}");
    }
    let after = s.dir.join("after.ndjson");
    export(&s.data, &after);
    let (ok, report, text) = verify(&[&before, &after], &["--public-key", key]);
    assert!(ok, "{report}");
    assert_eq!(
        report["checks"][0],
        "the later export extends the earlier one: consistency proof between their signed tree heads"
    );
    assert!(
        text.contains("checked: the later export extends the earlier one"),
        "{text}"
    );
    // Given in the wrong order, the "later" one is shorter.
    let (ok, report, _) = verify(&[&after, &before], &["--public-key", key]);
    assert!(!ok);
    assert_eq!(codes(&report), ["NOT_EXTENDED"], "{report}");

    // A later export whose early records were rewritten (one byte, chains
    // recomputed, trailer rebuilt, re-signed by nobody: its own signed head kept)
    // fails its own signed head, and against the earlier export's head.
    let rewritten = s.dir.join("rewritten.ndjson");
    let mut l = lines(&after);
    let i = l.iter().position(|x| x.contains("\\\"at\\\":1")).unwrap();
    l[i] = l[i].replacen("\\\"at\\\":1", "\\\"at\\\":2", 1);
    rechain(&mut l);
    write_lines(&rewritten, &l);
    rebuild_trailer(&rewritten);
    assert!(verify(&[&rewritten], &[]).0, "the old checks pass it");
    let (ok, report, _) = verify(&[&before, &rewritten], &[]);
    assert!(!ok);
    assert_eq!(codes(&report), ["NOT_EXTENDED"], "{report}");
}

// ------------------------------------------------------------ the live server

/// `ledger serve` signing a head every second.
fn start(data: &Path, store: Option<&str>) -> Server {
    start_with(data, free_port(), store, &["--sign-every-secs", "1"])
}

fn api_key(data: &Path, store: Option<&str>, broadcaster: &str) -> String {
    let mut args = vec!["api-key", "create", "--broadcaster", broadcaster];
    if let Some(url) = store {
        args.extend(["--store", url]);
    }
    let o = run(data, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("token (shown once): "))
        .unwrap()
        .trim()
        .to_owned()
}

fn verify_receipt(receipt: &Path, key: &Path) -> (bool, Value) {
    let o = run(
        Path::new("/nonexistent-data-folder-not-needed"),
        &[
            "audit",
            "verify-receipt",
            "--receipt",
            receipt.to_str().unwrap(),
            "--public-key",
            key.to_str().unwrap(),
            "--json",
        ],
    );
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("no JSON: {}", stderr(&o)));
    assert_eq!(o.status.success(), v["ok"] == true);
    (o.status.success(), v)
}

fn flip_hex(s: &str, at: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

#[test]
fn receipts_verify_offline_and_a_live_log_cut_back_before_erasures_is_caught_by_a_signed_head() {
    let s = setup(60);
    let key = s.public_key.clone();
    let server = start(&s.data, None);

    // Before the erasures: the head the operator published.
    let (status, head_before) = call(
        "GET",
        &format!("{}/v1/audit/tree-head", server.base),
        ADMIN,
        None,
    );
    assert_eq!(status, 200, "{head_before}");
    let before_size = head_before["size"].as_u64().unwrap();
    let head_before_file = s.dir.join("head-before.json");
    std::fs::write(&head_before_file, head_before.to_string()).unwrap();

    // Two erasures through the API; each receipt carries its proof.
    let mut receipts = Vec::new();
    for i in 0..2 {
        let (b, c) = sample(&s.summary, "erasable", i);
        let token = api_key(&s.data, None, &b);
        let (status, receipt) = call(
            "DELETE",
            &format!("{}/v1/customers/{c}", server.base),
            &token,
            None,
        );
        assert_eq!(status, 200, "{receipt}");
        let pos = receipt["event_position"].as_u64().unwrap();
        assert_eq!(receipt["leaf_index"], pos - 1);
        assert!(receipt["tree_size"].as_u64().unwrap() >= pos);
        // Broadcaster keys may read heads and proofs too.
        let (status, head) = call(
            "GET",
            &format!("{}/v1/audit/tree-head", server.base),
            &token,
            None,
        );
        assert_eq!(status, 200, "{head}");
        let (status, _) = call(
            "GET",
            &format!("{}/v1/audit/proofs/inclusion?position={pos}", server.base),
            &token,
            None,
        );
        assert_eq!(status, 200);
        receipts.push(receipt);
    }
    // Malformed queries are 400 and missing trees or proofs 404, with a code; no
    // key is 401.
    for (q, code) in [
        ("proofs/inclusion?position=0", "INVALID_QUERY"),
        ("proofs/inclusion?position=abc", "INVALID_QUERY"),
        ("proofs/inclusion", "INVALID_QUERY"),
        ("proofs/inclusion?position=1&colour=red", "INVALID_QUERY"),
        ("proofs/consistency?from=5&to=99999999", "SIZE_BEYOND_TREE"),
        ("proofs/consistency?from=9&to=5", "NO_SUCH_PROOF"),
        ("tree-head?size=99999999", "SIZE_BEYOND_TREE"),
    ] {
        let (status, body) = call("GET", &format!("{}/v1/audit/{q}", server.base), ADMIN, None);
        let want = if code == "INVALID_QUERY" { 400 } else { 404 };
        assert_eq!(
            (status, body["code"].as_str()),
            (want, Some(code)),
            "{q}: {body}"
        );
    }
    assert_eq!(
        call(
            "GET",
            &format!("{}/v1/audit/tree-head", server.base),
            "nope",
            None
        )
        .0,
        401
    );
    // The earlier head is a prefix of the current one.
    let (_, now) = call(
        "GET",
        &format!("{}/v1/audit/tree-head", server.base),
        ADMIN,
        None,
    );
    let (status, proof) = call(
        "GET",
        &format!(
            "{}/v1/audit/proofs/consistency?from={before_size}&to={}",
            server.base, now["size"]
        ),
        ADMIN,
        None,
    );
    assert_eq!(status, 200, "{proof}");
    stop(server);

    // Each receipt verifies offline with the public key alone...
    for (i, r) in receipts.iter().enumerate() {
        let file = s.dir.join(format!("receipt-{i}.json"));
        std::fs::write(&file, r.to_string()).unwrap();
        let (ok, v) = verify_receipt(&file, &key);
        assert!(ok, "{v}");
        assert_eq!(v["checks"].as_array().unwrap().len(), 6);
    }
    // ... and one bit flipped in the proof, the root, the signature or the leaf is
    // refused.
    let r = &receipts[0];
    let leaf = r["leaf_data"].as_str().unwrap();
    let flipped_leaf = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut bytes = b64.decode(leaf).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        b64.encode(bytes)
    };
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "proof",
            Box::new(|v: &mut Value| {
                let h = v["inclusion_proof"][0].as_str().unwrap().to_owned();
                v["inclusion_proof"][0] = flip_hex(&h, 0).into();
            }),
        ),
        (
            "root",
            Box::new(|v: &mut Value| {
                let h = v["signed_tree_head"]["root_hash"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                v["signed_tree_head"]["root_hash"] = flip_hex(&h, 7).into();
            }),
        ),
        (
            "signature",
            Box::new(|v: &mut Value| {
                let h = v["signed_tree_head"]["signature"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                v["signed_tree_head"]["signature"] = flip_hex(&h, 100).into();
            }),
        ),
        (
            "leaf",
            Box::new(move |v: &mut Value| v["leaf_data"] = flipped_leaf.clone().into()),
        ),
    ];
    for (name, edit) in edits {
        let mut v = r.clone();
        edit(&mut v);
        let file = s.dir.join(format!("receipt-{name}.json"));
        std::fs::write(&file, v.to_string()).unwrap();
        let (ok, report) = verify_receipt(&file, &key);
        assert!(!ok, "{name}: {report}");
        assert_eq!(
            report["problems"].as_array().unwrap().len(),
            1,
            "{name}: {report}"
        );
    }

    // A head signed after the erasures, and the log-hash anchor of the same moment.
    let (ok, audit_before, _) = {
        let o = run(&s.data, &["audit", "verify", "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.success(), v, ())
    };
    assert!(ok, "{audit_before}");
    let head_after_file = s.dir.join("head-after.json");
    std::fs::write(
        &head_after_file,
        receipts[1]["signed_tree_head"].to_string(),
    )
    .unwrap();
    let live = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", "--json"];
        args.extend(extra);
        let o = run(&s.data, &args);
        let v: Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("no JSON: {}", stderr(&o)));
        assert_eq!(o.status.success(), v["ok"] == true, "{v}");
        (o.status.success(), v)
    };
    let signed = |f: &Path| {
        vec![
            "--signed-head".to_owned(),
            f.to_str().unwrap().to_owned(),
            "--public-key".to_owned(),
            key.to_str().unwrap().to_owned(),
        ]
    };
    let args = signed(&head_after_file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(live(&args).0);

    // (c) The log cut back to just before the first erasure, the views rebuilt.
    let first_erasure = receipts[0]["event_position"].as_i64().unwrap();
    let conn = rusqlite::Connection::open(s.data.join("events.sqlite")).unwrap();
    conn.execute("DELETE FROM events WHERE position >= ?1", [first_erasure])
        .unwrap();
    drop(conn);
    let o = run(&s.data, &["projections", "rebuild"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The hole: plain verification finds nothing wrong with the shorter log.
    let (ok, report) = live(&[]);
    assert!(
        ok,
        "the cut log was expected to pass the old checks: {report}"
    );
    // The head signed before the cut catches it (and one signed before the erasures
    // still holds: the cut left it intact).
    let (ok, report) = live(&args);
    assert!(!ok);
    assert_eq!(codes(&report), ["SIGNED_HEAD_NOT_IN_LOG"], "{report}");
    let early = signed(&head_before_file);
    let early: Vec<&str> = early.iter().map(String::as_str).collect();
    assert!(live(&early).0);
    // So does the log-hash anchor recorded by the auditor.
    let anchor = format!(
        "{}:{}",
        audit_before["head_position"],
        audit_before["head_log_hash"].as_str().unwrap()
    );
    let (ok, report) = live(&["--expect-head", &anchor]);
    assert!(!ok);
    assert_eq!(codes(&report), ["ANCHOR_MISMATCH"], "{report}");

    // And the server, which recorded the heads it signed, says so at start, keeps
    // the old series aside as evidence, and starts a new one over this log.
    let server = start(&s.data, None);
    let (status, head) = call(
        "GET",
        &format!("{}/v1/audit/tree-head", server.base),
        ADMIN,
        None,
    );
    assert_eq!(status, 200, "{head}");
    // (Its log may have grown again: the forget list re-applies the erasures the
    // cut removed, at new positions.)
    assert!(
        head["size"].as_i64().unwrap() >= first_erasure - 1,
        "{head}"
    );
    assert_ne!(
        head["root_hash"],
        receipts[1]["signed_tree_head"]["root_hash"]
    );
    let logs = stop(server);
    assert!(logs.contains("TREE_HEAD_NOT_IN_LOG"), "{logs}");
    let aside: Vec<_> = std::fs::read_dir(&s.data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("tree-heads.jsonl.superseded-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the old series is kept aside");
    // Its last head is beyond the cut: the evidence of what the log held.
    let old_series = std::fs::read_to_string(aside[0].path()).unwrap();
    let last: Value = serde_json::from_str(old_series.lines().last().unwrap()).unwrap();
    assert!(last["size"].as_i64().unwrap() >= first_erasure, "{last}");
}

#[test]
fn the_tree_follows_a_postgresql_log_and_its_receipts_verify_offline() {
    let Some(db) = common::pg::TestDatabase::create("signed_heads") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = ledger(&data)
        .args(["--store", db.url(), "demo", "--customers", "30", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    std::fs::write(data.join("signing-key.hex"), SIGNING_KEY).unwrap();
    let key = tmp.path().join("public-key.hex");
    std::fs::write(&key, stdout(&run(&data, &["signing-key", "show"]))).unwrap();

    let server = start(&data, Some(db.url()));
    let (b, c) = sample(&summary, "erasable", 0);
    let token = api_key(&data, Some(db.url()), &b);
    let (status, receipt) = call(
        "DELETE",
        &format!("{}/v1/customers/{c}", server.base),
        &token,
        None,
    );
    assert_eq!(status, 200, "{receipt}");
    let (status, head) = call(
        "GET",
        &format!("{}/v1/audit/tree-head", server.base),
        ADMIN,
        None,
    );
    assert_eq!(status, 200, "{head}");
    assert!(head["size"].as_u64().unwrap() >= receipt["event_position"].as_u64().unwrap());
    stop(server);

    let file = tmp.path().join("receipt.json");
    std::fs::write(&file, receipt.to_string()).unwrap();
    let (ok, v) = verify_receipt(&file, &key);
    assert!(ok, "{v}");
    // The same log, exported and verified offline against the signed head.
    let export = tmp.path().join("export.ndjson");
    let o = ledger(&data)
        .args(["--store", db.url(), "audit", "export", "--out"])
        .arg(&export)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (ok, report, _) = verify(&[&export], &["--public-key", key.to_str().unwrap()]);
    assert!(ok, "{report}");
}
