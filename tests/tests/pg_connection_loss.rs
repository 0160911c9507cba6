//! The real `ledger serve` binary on PostgreSQL while every session of its database
//! is terminated again and again (issue 9): writes are answered 2xx, 4xx or
//! `503 STORE_UNAVAILABLE` with `Retry-After`, never another 5xx; `/readyz` names
//! what fails; writes succeed again within seconds of the last kill; and after a
//! SIGTERM the read-only `ledger audit verify` and SQL find every acknowledged
//! write in the log, every acknowledged erasure complete and none half done.
//!
//! Also: the operator's read-only commands work beside the running server (which
//! holds the writer lock) and create nothing in a database without a ledger, and
//! answers to idempotent writes survive a restart.
//!
//! The server comes from `LEDGER_TEST_POSTGRES_URL` (see `common/pg.rs`: each test
//! makes its own database; skipped in one line without a server unless
//! `LEDGER_TEST_POSTGRES_REQUIRED=1`). `LEDGER_TEST_PG_KILL_SECS` makes the kill
//! phase longer than its default 10 s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use ledger_system_tests as common;

use common::server::{agent, free_port, Server, ADMIN};

/// Load clients.
const CLIENTS: usize = 8;
/// How often the killer terminates every session, and for how long by default.
const KILL_EVERY: Duration = Duration::from_secs(1);
const DEFAULT_KILL_SECS: u64 = 10;
/// Writes must succeed again within this long after the last kill.
const RECOVERY_BOUND: Duration = Duration::from_secs(5);
/// The load goes on this long after the last kill (so every client shows it
/// recovered).
const AFTER_KILLS: Duration = Duration::from_secs(3);
/// One write is retried (same request, same Idempotency-Key) for at most this long.
const GIVE_UP: Duration = Duration::from_secs(30);

fn kill_phase() -> Duration {
    let secs = std::env::var("LEDGER_TEST_PG_KILL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_KILL_SECS);
    Duration::from_secs(secs)
}

/// `ledger --data DATA --store URL`.
fn ledger(data: &Path, url: &str) -> Command {
    common::server::ledger(data, Some(url))
}

/// `ledger serve` on a free port, filled with the demo data set if `demo`.
fn start(data: &Path, url: &str, demo: bool) -> Server {
    let demo_args: &[&str] = if demo {
        &["--demo", "--demo-customers", "300"]
    } else {
        &[]
    };
    common::server::start_with(data, free_port(), Some(url), demo_args)
}

/// The lines of the server's stdout once `done` holds for them (it prints the
/// demo keys just before it serves; a thread drains them).
fn printed(s: &Server, done: impl Fn(&[&str]) -> bool) -> Vec<String> {
    let started = Instant::now();
    loop {
        let out = s.out.lock().unwrap().clone();
        let lines: Vec<&str> = out.lines().collect();
        if done(&lines) {
            return lines.into_iter().map(str::to_owned).collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "serve did not print what was expected: {out}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The white-label demo broadcasters' (id, API key), and a sample customer of the
/// first broadcaster with a key, from what `serve --demo` prints.
fn demo_keys(s: &Server) -> (Vec<(String, String)>, String) {
    let lines = printed(s, |l| l.iter().any(|l| l.starts_with("try: ")));
    let keys = lines
        .iter()
        .filter(|l| l.contains(" white_label "))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            Some((words.first()?.to_string(), words.last()?.to_string()))
        })
        .collect();
    let sample = lines
        .iter()
        .find_map(|l| l.split("/v1/customers/").nth(1).map(str::to_owned))
        .expect("a sample customer");
    (keys, sample)
}

/// One HTTP request of these tests.
struct Req {
    method: &'static str,
    url: String,
    /// The bearer token (none for the ops endpoints).
    token: Option<String>,
    idempotency_key: Option<String>,
    body: Option<Value>,
}

impl Req {
    fn get(url: String) -> Self {
        Self {
            method: "GET",
            url,
            token: None,
            idempotency_key: None,
            body: None,
        }
    }

    fn delete(url: String, token: &str) -> Self {
        Self {
            method: "DELETE",
            token: Some(token.to_owned()),
            ..Self::get(url)
        }
    }

    fn post(url: String, token: &str, key: Option<String>, body: Value) -> Self {
        Self {
            method: "POST",
            token: Some(token.to_owned()),
            idempotency_key: key,
            body: Some(body),
            ..Self::get(url)
        }
    }
}

/// Sends `r`: its status, `Retry-After` and JSON body.
fn send(a: &ureq::Agent, r: &Req) -> Result<(u16, Option<String>, Value), String> {
    let auth = format!("Bearer {}", r.token.as_deref().unwrap_or_default());
    let url = &r.url;
    let res = match (r.method, &r.token) {
        ("GET", None) => a.get(url).call(),
        ("GET", Some(_)) => a.get(url).header("Authorization", &auth).call(),
        ("DELETE", _) => a.delete(url).header("Authorization", &auth).call(),
        _ => {
            let mut post = a.post(url).header("Authorization", &auth);
            if let Some(k) = &r.idempotency_key {
                post = post.header("Idempotency-Key", k);
            }
            match &r.body {
                Some(b) => post.content_type("application/json").send(b.to_string()),
                None => post.send_empty(),
            }
        }
    };
    let mut res = res.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = res.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Ok((
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    ))
}

/// Every answer to a write, by class.
#[derive(Debug, Default)]
struct Answers {
    /// 2xx.
    ok: usize,
    /// 503 STORE_UNAVAILABLE with Retry-After.
    unavailable: usize,
    /// 4xx, by status and code.
    refused: BTreeMap<String, usize>,
    /// Anything else (another 5xx, a 503 without Retry-After or another code, no
    /// answer at all): each fails the test.
    bad: Vec<String>,
}

/// What one load client had acknowledged.
#[derive(Debug, Default)]
struct Acked {
    /// (customer id, log position) of each 201 registration.
    registrations: Vec<(String, u64)>,
    /// (customer id, log position) of each 201 payment.
    payments: Vec<(String, u64)>,
    /// (customer id, position of CustomerAnonymized, status 200 or 202).
    erasures: Vec<(String, u64, u16)>,
    /// When each successful write was answered.
    successes: Vec<Instant>,
}

/// Sends one write until it gets a final answer (anything but a 503), retrying
/// the same request after each 503 as a client honouring Retry-After would (a
/// short pause here, to keep the load up). `None`: given up (stopping).
fn write(
    a: &ureq::Agent,
    r: &Req,
    answers: &Mutex<Answers>,
    stop: &AtomicBool,
) -> Option<(u16, Value)> {
    let (method, url) = (r.method, &r.url);
    let started = Instant::now();
    loop {
        let got = send(a, r);
        let mut ans = answers.lock().unwrap();
        match got {
            Ok((st, _, v)) if (200..300).contains(&st) => {
                ans.ok += 1;
                return Some((st, v));
            }
            Ok((st, _, v)) if (400..500).contains(&st) => {
                let code = v["code"].as_str().unwrap_or("?").to_owned();
                *ans.refused.entry(format!("{st} {code}")).or_default() += 1;
                return Some((st, v));
            }
            Ok((503, Some(_), v)) if v["code"] == "STORE_UNAVAILABLE" => ans.unavailable += 1,
            Ok((st, retry_after, v)) => ans.bad.push(format!(
                "{method} {url}: {st} (Retry-After {retry_after:?}) {v}"
            )),
            Err(e) => ans.bad.push(format!("{method} {url}: no answer: {e}")),
        }
        drop(ans);
        if stop.load(Ordering::Acquire) || started.elapsed() > GIVE_UP {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Registers customers, captures a payment for each, and erases every second one
/// (registered here, no subscription: erasable), until `stop`.
fn load_client(
    i: usize,
    base: String,
    token: String,
    answers: Arc<Mutex<Answers>>,
    stop: Arc<AtomicBool>,
) -> Acked {
    let a = agent();
    let mut acked = Acked::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let profile = json!({
            "email": format!("load-{i}-{n}@example.invalid"),
            "password_hash": "argon2id$v=19$load",
            "first_name": "Load",
            "last_name": format!("Client{i}"),
            "registration_ip": "192.0.2.10",
        });
        let register = Req::post(
            format!("{base}/v1/customers"),
            &token,
            Some(format!("register-{i}-{n}")),
            profile,
        );
        let Some((201, r)) = write(&a, &register, &answers, &stop) else {
            continue;
        };
        acked.successes.push(Instant::now());
        let c = r["customer_id"].as_str().expect("customer id").to_owned();
        let p = r["position"].as_u64().expect("position");
        acked.registrations.push((c.clone(), p));

        let payment = json!({
            "payment_id": uuid::Uuid::new_v4().to_string(),
            "offer_id": "load-offer",
            "amount": {"minor": 100 + n, "currency": "EUR"},
            "payer_ip": "192.0.2.11",
        });
        let pay = Req::post(
            format!("{base}/v1/customers/{c}/payments"),
            &token,
            Some(format!("pay-{i}-{n}")),
            payment,
        );
        if let Some((201, r)) = write(&a, &pay, &answers, &stop) {
            acked.successes.push(Instant::now());
            acked
                .payments
                .push((c.clone(), r["position"].as_u64().expect("position")));
        }

        if n.is_multiple_of(2) {
            let erase = Req::delete(format!("{base}/v1/customers/{c}"), &token);
            if let Some((st @ (200 | 202), r)) = write(&a, &erase, &answers, &stop) {
                acked.successes.push(Instant::now());
                let p = r["event_position"].as_u64().expect("event position");
                acked.erasures.push((c, p, st));
            }
        }
    }
    acked
}

/// What the killer did.
#[derive(Debug, Default)]
struct Kills {
    rounds: usize,
    sessions: usize,
    last: Option<Instant>,
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Terminates every backend of the test database but its own every
/// [`KILL_EVERY`] for `phase`.
fn killer(url: String, phase: Duration) -> JoinHandle<Kills> {
    std::thread::spawn(move || {
        common::pg::block_on(async move {
            let client = connect(&url).await;
            let started = Instant::now();
            let mut kills = Kills::default();
            while started.elapsed() + KILL_EVERY <= phase + Duration::from_millis(100) {
                tokio::time::sleep(KILL_EVERY).await;
                let ended = client
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .expect("terminate backends")
                    .iter()
                    .filter(|r| r.get::<_, bool>(0))
                    .count();
                kills.rounds += 1;
                kills.sessions += ended;
                if ended > 0 {
                    kills.last = Some(Instant::now());
                }
            }
            kills
        })
    })
}

/// What `/readyz` answered during the run.
#[derive(Debug, Default)]
struct Readiness {
    polls: usize,
    not_ready: usize,
    /// `part:code` of every failing part named.
    parts: BTreeSet<String>,
    bad: Vec<String>,
}

fn readiness_poller(base: String, stop: Arc<AtomicBool>) -> JoinHandle<Readiness> {
    std::thread::spawn(move || {
        let a = agent();
        let mut r = Readiness::default();
        while !stop.load(Ordering::Acquire) {
            match send(&a, &Req::get(format!("{base}/readyz"))) {
                Ok((200, _, _)) => {}
                Ok((503, _, v)) => {
                    r.not_ready += 1;
                    let failing = v["failing"].as_array().cloned().unwrap_or_default();
                    if failing.is_empty() {
                        r.bad.push(format!("503 naming no failing part: {v}"));
                    }
                    for f in failing {
                        r.parts.insert(format!(
                            "{}:{}",
                            f["part"].as_str().unwrap_or("?"),
                            f["code"].as_str().unwrap_or("?")
                        ));
                    }
                }
                Ok((st, _, v)) => r.bad.push(format!("{st} {v}")),
                Err(e) => r.bad.push(format!("no answer: {e}")),
            }
            r.polls += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        r
    })
}

/// Runs a read-only operator command beside the server; it must succeed.
fn read_only_command(data: &Path, url: &str, args: &[&str]) -> String {
    let out = ledger(data, url).args(args).output().expect("run ledger");
    assert!(
        out.status.success(),
        "`ledger {}` beside the running server failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn serve_on_postgres_survives_repeated_session_kills_under_load() {
    let Some(db) = common::pg::TestDatabase::create("loss") else {
        return;
    };
    let url = db.url().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = start(&data, &url, true);
    let base = s.base.clone();
    let (tokens, sample) = demo_keys(&s);
    assert!(!tokens.is_empty(), "serve --demo printed white-label keys");

    // The operator's read-only commands work beside the server holding the writer
    // lock (a writing command would be refused it).
    let audit: Value = serde_json::from_str(&read_only_command(
        &data,
        &url,
        &["audit", "verify", "--json"],
    ))
    .expect("audit JSON");
    assert_eq!(audit["ok"], true, "{audit}");
    read_only_command(&data, &url, &["revenue", "--json"]);
    read_only_command(&data, &url, &["erasures", "--json"]);
    let export = dir.path().join("export.jsonl");
    read_only_command(
        &data,
        &url,
        &["audit", "export", "--out", export.to_str().unwrap()],
    );
    let (b, _) = &tokens[0];
    let doc: Value = serde_json::from_str(&read_only_command(
        &data,
        &url,
        &["export-customer", "--broadcaster", b, "--customer", &sample],
    ))
    .expect("export JSON");
    assert_eq!(doc["customer_id"], sample.as_str());

    // The load, the readiness poller, then the killer.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Answers::default()));
    let started = Instant::now();
    let clients: Vec<JoinHandle<Acked>> = (0..CLIENTS)
        .map(|i| {
            let (base, token) = (base.clone(), tokens[i % tokens.len()].1.clone());
            let (answers, stop) = (answers.clone(), stop.clone());
            std::thread::spawn(move || load_client(i, base, token, answers, stop))
        })
        .collect();
    let ready = readiness_poller(base.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let phase = kill_phase();
    let kills = killer(url.clone(), phase).join().expect("killer");
    let last_kill = kills.last.expect("the killer ended sessions");

    // Writes succeed again: a fresh registration, sent until it is answered 201.
    let recovery = {
        let a = agent();
        let token = &tokens[0].1;
        let mut n = 0;
        loop {
            n += 1;
            let profile = json!({
                "email": format!("probe-{n}@example.invalid"), "password_hash": "x",
                "first_name": "Probe", "last_name": "Write"});
            let probe = Req::post(
                format!("{base}/v1/customers"),
                token,
                Some(format!("probe-{n}")),
                profile,
            );
            let got = send(&a, &probe);
            if matches!(got, Ok((201, _, _))) {
                break last_kill.elapsed();
            }
            assert!(
                last_kill.elapsed() < Duration::from_secs(30),
                "no write succeeded within 30 s of the last kill: {got:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::sleep(AFTER_KILLS.saturating_sub(last_kill.elapsed()));
    stop.store(true, Ordering::Release);
    let mut acked = Acked::default();
    let mut slowest = Duration::ZERO;
    for c in clients {
        let a = c.join().expect("load client");
        let first = a
            .successes
            .iter()
            .find(|t| **t > last_kill)
            .map(|t| *t - last_kill)
            .expect("every client wrote again after the last kill");
        slowest = slowest.max(first);
        acked.registrations.extend(a.registrations);
        acked.payments.extend(a.payments);
        acked.erasures.extend(a.erasures);
    }
    let ready = ready.join().expect("readiness poller");
    let load_secs = started.elapsed().as_secs_f64();

    // Every destruction finished and the server ready before it is stopped.
    let settle = Instant::now();
    loop {
        let r = send(&agent(), &Req::get(format!("{base}/readyz")));
        if let Ok((200, _, v)) = &r {
            if v["pending_destructions"] == 0 {
                break;
            }
        }
        assert!(
            settle.elapsed() < Duration::from_secs(20),
            "not ready 20 s after the load: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = common::server::stop(s);

    let answers = Arc::try_unwrap(answers).unwrap().into_inner().unwrap();
    eprintln!(
        "pg connection loss: {} kill rounds ended {} sessions over {phase:?}; load {load_secs:.1}s \
         with {CLIENTS} clients: {} writes answered 2xx, {} answered 503 STORE_UNAVAILABLE \
         (retried), refused {:?}, {} bad; acknowledged {} registrations, {} payments, {} \
         erasures ({} of them 202); /readyz polled {} times, {} not ready, failing parts {:?}; \
         first write after the last kill succeeded after {recovery:?}, every client after \
         {slowest:?}",
        kills.rounds,
        kills.sessions,
        answers.ok,
        answers.unavailable,
        answers.refused,
        answers.bad.len(),
        acked.registrations.len(),
        acked.payments.len(),
        acked.erasures.len(),
        acked.erasures.iter().filter(|e| e.2 == 202).count(),
        ready.polls,
        ready.not_ready,
        ready.parts,
    );
    assert!(
        kills.rounds >= 5 && kills.sessions >= kills.rounds,
        "{kills:?}"
    );
    assert!(
        answers.bad.is_empty(),
        "every write answer is 2xx, 4xx or 503 STORE_UNAVAILABLE with Retry-After: {:?}",
        answers.bad
    );
    assert!(
        ready.bad.is_empty(),
        "/readyz answers 200, or 503 naming what fails: {:?}",
        ready.bad
    );
    assert!(
        recovery < RECOVERY_BOUND,
        "writes succeeded again {recovery:?} after the last kill"
    );
    assert!(
        slowest < RECOVERY_BOUND,
        "a client wrote again only {slowest:?} after the last kill"
    );
    assert!(
        !acked.registrations.is_empty()
            && !acked.payments.is_empty()
            && acked.erasures.iter().any(|e| e.2 == 200),
        "the load got writes through"
    );
    assert!(
        !logs.contains("@example.invalid") && !logs.contains("192.0.2.1"),
        "no personal data in the server's logs"
    );

    // The read-only audit of the stopped server's database is clean.
    let out = ledger(&data, &url)
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["ok"] == true,
        "audit verify: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // And SQL agrees: every acknowledged write is where its answer said.
    common::pg::block_on(async {
        let c = connect(&url).await;
        let log: HashMap<u64, (String, String)> = c
            .query("SELECT position, stream, event_type FROM events", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, (r.get(1), r.get(2))))
            .collect();
        let at = |p: u64, customer: &str, kind: &str, what: &str| {
            let want = (format!("customer-{customer}"), kind.to_owned());
            assert_eq!(
                log.get(&p),
                Some(&want),
                "acknowledged {what} at position {p}"
            );
        };
        for (cid, p) in &acked.registrations {
            at(*p, cid, "CustomerRegistered", "registration");
        }
        for (cid, p) in &acked.payments {
            at(*p, cid, "PaymentCaptured", "payment");
        }
        for (cid, p, _) in &acked.erasures {
            at(*p, cid, "CustomerAnonymized", "erasure");
            let id = uuid::Uuid::parse_str(cid).unwrap();
            let row = c
                .query_one(
                    "SELECT (SELECT count(*) FROM ledger_data_keys WHERE customer_id = $1),
                            (SELECT count(*) FROM ledger_destroyed_keys WHERE customer_id = $1)",
                    &[&id],
                )
                .await
                .unwrap();
            let (live, tombstone): (i64, i64) = (row.get(0), row.get(1));
            assert_eq!(
                (live, tombstone),
                (0, 1),
                "erased customer {cid}: key gone, tombstone kept"
            );
        }
        let half: i64 = c
            .query_one(
                "SELECT count(*) FROM events e JOIN ledger_data_keys k
                   ON e.stream = 'customer-' || k.customer_id::text
                 WHERE e.event_type = 'CustomerAnonymized'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            half, 0,
            "no customer is half erased (erasure in the log, key alive)"
        );
        let saved: i64 = c
            .query_one("SELECT count(*) FROM ledger_responses", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            saved > 0,
            "answers to idempotent writes are saved in PostgreSQL"
        );
        eprintln!(
            "pg connection loss: audit clean over {} events; {saved} saved answers",
            report["events"]
        );
    });
}

#[test]
fn read_only_commands_create_nothing_in_a_database_without_a_ledger() {
    let Some(db) = common::pg::TestDatabase::create("ro") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for args in [
        &["audit", "verify"][..],
        &["revenue"][..],
        &["erasures"][..],
    ] {
        let out = ledger(&data, db.url()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("no ledger event store"),
            "`ledger {}` on an empty database: {err}",
            args.join(" ")
        );
    }
    let tables: i64 = common::pg::query_i64(
        db.url(),
        "SELECT count(*) FROM pg_class WHERE relnamespace = $1::text::regnamespace",
        "public",
    );
    assert_eq!(tables, 0, "nothing created");
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "nothing written in the data folder"
    );
}

#[test]
fn answers_to_idempotent_writes_survive_a_restart_on_postgres() {
    let Some(db) = common::pg::TestDatabase::create("idem") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = start(&data, db.url(), false);
    let a = agent();
    let broadcaster = json!({"name": "Idem", "integration": "white_label"});
    let url = format!("{}/v1/admin/broadcasters", s.base);
    let (st, _, b) = send(&a, &Req::post(url, ADMIN, None, broadcaster)).unwrap();
    assert_eq!(st, 201, "{b}");
    let bid = b["broadcaster_id"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/admin/broadcasters/{bid}/api-keys", s.base);
    let (_, _, k) = send(&a, &Req::post(url, ADMIN, None, json!({}))).unwrap();
    let token = k["token"].as_str().unwrap().to_owned();
    let profile = json!({"email": "idem@example.invalid", "password_hash": "x",
                         "first_name": "Idem", "last_name": "Potent"});
    let register = |base: &str| {
        let url = format!("{base}/v1/customers");
        let once = Some("register-once".to_owned());
        send(&agent(), &Req::post(url, &token, once, profile.clone())).unwrap()
    };
    let (st, _, first) = register(&s.base);
    assert_eq!(st, 201, "{first}");
    common::server::stop(s);

    let s = start(&data, db.url(), false);
    let (st, _, again) = register(&s.base);
    assert_eq!(
        (st, &again),
        (201, &first),
        "the retry after a restart gets the first answer"
    );
    common::server::stop(s);
}
