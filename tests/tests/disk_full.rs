//! A full disk under the real server (issue 9, item 5, "writes the client can
//! retry"): `ledger serve --demo` on a small tmpfs whose last free bytes are taken
//! by a filler file, driven with registrations (with and without an
//! Idempotency-Key), payments and erasures. The server's logs go to a file on the
//! same tmpfs, as an operator's `2>>FILE` on the data disk would, and the event
//! log's WAL is a few frames short of needing more `-shm` space when the disk
//! fills.
//!
//! While full: every answer is 2xx, 4xx or `507 STORAGE_FULL` (with
//! `Retry-After`), never 500 nor, since the disk is the only fault here, 503;
//! `/readyz` is 503 naming `storage` (`STORAGE_FULL`); an erasure answered 5xx is
//! not in the log, one answered 200 or 202 is. Once the filler is deleted, the
//! service recovers by itself within seconds: ready again, writes succeed, pending
//! key destructions finish (no customer half erased), a write answered 5xx while
//! full was not committed (its retry appends), every registration retried under
//! one Idempotency-Key made exactly one customer, and after SIGTERM the store
//! audits clean.
//!
//! The second test kills the server (kill -9) on a full disk right after a write
//! was refused, and checks after a restart that the write is not in the log.
//!
//! Both need root (they mount a tmpfs); otherwise each prints one `skipped:` line.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use ledger_system_tests as common;

use common::server::{
    call, free_port, start, start_logging_to, start_with, stop, try_call_with, Reply, Server,
};
use common::{erased_in_log, half_erased, run, stdout};

/// How big the tmpfs is: the demo data set and the payments that bring the event
/// log's WAL to 4,062 frames take about 30 MiB of it.
const SIZE: &str = "64m";
/// How long the disk stays full while the writes run.
const FULL_FOR: Duration = Duration::from_secs(12);
/// How long recovery may take once space is back ("within a few seconds").
const RECOVERY: Duration = Duration::from_secs(5);
/// The shortest round of writes: every write answered while full is retried after,
/// and the retries' WAL growth must fit in the tmpfs.
const ROUND: Duration = Duration::from_millis(300);
const KEYED: usize = 12;
const VICTIMS: usize = 24;
const PAYERS: usize = 6;

/// A tmpfs mounted on a temporary folder. Dropping it (also on a panic) kills the
/// server recorded in `server` if it still runs, then unmounts.
struct Tmpfs {
    dir: tempfile::TempDir,
    server: Option<u32>,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().next().unwrap_or("mount failed").trim();
            return Err(format!("{why} ({})", out.status));
        }
        Ok(Self { dir, server: None })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Only a process still running on this mount (its command line names it).
        let ours = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains(&*self.dir.path().to_string_lossy())
            })
        };
        if let Some(pid) = self.server.take().filter(|p| ours(*p)) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(300));
        }
        for _ in 0..50 {
            let unmounted = Command::new("umount")
                .arg(self.dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if unmounted {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Appends to `path` until the filesystem has no byte left; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the filler");
    let chunk = vec![0x5Au8; 1 << 20];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("writing the filler: {e}"),
        }
    }
    written
}

/// [`fill`], then gives `headroom` bytes back: a disk that is nearly full, where
/// some writes still fit and the stores race for the last pages.
fn fill_leaving(path: &Path, headroom: u64) {
    fill(path);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the filler");
    let len = f.metadata().expect("filler size").len();
    f.set_len(len.saturating_sub(headroom))
        .expect("shorten the filler");
}

/// Frames the WAL file beside `db` has room for (4 KiB pages).
fn wal_frames(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(Path::new(&wal)).map_or(0, |m| m.len().saturating_sub(32) / (4096 + 24))
}

/// Frames of a WAL whose wal-index fits in the first 32 KiB region of its `-shm`
/// file (SQLite's HASHTABLE_NPAGE_ONE); the next frame makes SQLite grow the `-shm`
/// file, which on a full disk fails with SQLITE_IOERR_SHMSIZE.
const FIRST_SHM_REGION_FRAMES: u64 = 4062;

/// Payments by `payers` until the WAL beside `db` has `frames` frames (the last
/// few one at a time, so it stops within one commit of them); returns how many.
fn pump(base: &str, key: &str, payers: &[String], db: &Path, frames: u64) -> usize {
    let pumped = std::sync::atomic::AtomicUsize::new(0);
    // One thread per payer (a customer's writes are serialized), at most three.
    let threads = payers.len().min(3);
    for (until, threads) in [(frames.saturating_sub(60), threads), (frames, 1)] {
        std::thread::scope(|s| {
            for t in 0..threads {
                let pumped = &pumped;
                s.spawn(move || {
                    while wal_frames(db) < until {
                        let p = Payment {
                            customer: payers[t % payers.len()].clone(),
                            id: uuid::Uuid::new_v4().to_string(),
                            statuses: Vec::new(),
                        };
                        let r = pay(base, key, &p);
                        assert_eq!(r.status, 201, "{}", r.body);
                        pumped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
    }
    pumped.into_inner()
}

/// Free bytes on the filesystem holding `path`, as `df` sees them.
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// The files on the tmpfs and their sizes in KiB, for the test's output.
fn sizes(dir: &Path) -> String {
    let mut files = common::files(dir);
    files.sort();
    files
        .iter()
        .map(|f| {
            let kib = std::fs::metadata(f).map_or(0, |m| m.len() >> 10);
            let name = f.strip_prefix(dir).unwrap_or(f).display().to_string();
            format!("{name} {kib}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The API key of a white-label demo broadcaster, from what `serve --demo` printed.
fn white_label_key(out: &str) -> Option<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("demo API keys"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[f.len() - 2] == "white_label").then(|| f[f.len() - 1].to_owned())
        })
}

/// An answer, or none at all (the server closed the connection) as status 0.
fn answer(r: Result<Reply, ureq::Error>) -> Reply {
    r.unwrap_or_else(|e| Reply {
        status: 0,
        body: json!({ "code": format!("no answer: {e}") }),
        retry_after: None,
    })
}

fn profile(tag: &str, n: usize) -> Value {
    json!({
        "email": format!("{tag}.{n}@example.com"), "password_hash": "argon2id$x",
        "first_name": "Hildegard", "last_name": format!("Fulldisk{n}"),
        "registration_ip": "198.51.100.23"
    })
}

fn keyed_key(n: usize) -> String {
    format!("disk-full-registration-{n}")
}

fn register(base: &str, key: &str, n: usize) -> String {
    let (st, r) = call(
        "POST",
        &format!("{base}/v1/customers"),
        key,
        Some(profile("victim", n)),
    );
    assert_eq!(st, 201, "{r}");
    r["customer_id"].as_str().unwrap().to_owned()
}

fn customers_audited(data: &Path) -> u64 {
    let out = run(data, &["audit", "verify", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("audit prints JSON");
    report["customers"].as_u64().expect("customers figure")
}

/// Every answer seen, by (write, status, code).
#[derive(Default)]
struct Tally {
    seen: BTreeMap<(&'static str, u16, String), usize>,
    /// The first answers outside 2xx, 4xx, 503 STORE_UNAVAILABLE and 507
    /// STORAGE_FULL, or a 5xx without Retry-After (all are in `seen`).
    bad: Vec<String>,
}

impl Tally {
    fn note(&mut self, what: &'static str, r: &Reply) {
        let code = r.body["code"].as_str().unwrap_or("").to_owned();
        let allowed = match r.status {
            200..=299 | 400..=499 => true,
            503 => code == "STORE_UNAVAILABLE",
            507 => code == "STORAGE_FULL",
            _ => false,
        };
        if (!allowed || (r.status >= 500 && r.retry_after.is_none())) && self.bad.len() < 5 {
            self.bad.push(format!(
                "{what}: {} {code} (Retry-After {:?})",
                r.status, r.retry_after
            ));
        }
        *self.seen.entry((what, r.status, code)).or_default() += 1;
    }

    fn count(&self, f: impl Fn(u16) -> bool) -> usize {
        self.seen
            .iter()
            .filter(|((_, s, _), _)| f(*s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// One payment: its client-chosen id, the payer, and every status it was answered.
struct Payment {
    customer: String,
    id: String,
    statuses: Vec<u16>,
}

fn pay(base: &str, key: &str, p: &Payment) -> Reply {
    answer(try_call_with(
        "POST",
        &format!("{base}/v1/customers/{}/payments", p.customer),
        key,
        Some(json!({
            "payment_id": p.id, "offer_id": "disk-full-monthly",
            "amount": {"minor": 1299, "currency": "EUR"}
        })),
        &[],
    ))
}

fn register_keyed(base: &str, key: &str, n: usize) -> Reply {
    answer(try_call_with(
        "POST",
        &format!("{base}/v1/customers"),
        key,
        Some(profile("keyed", n)),
        &[("Idempotency-Key", &keyed_key(n))],
    ))
}

fn anonymize(base: &str, key: &str, c: &str) -> Reply {
    answer(try_call_with(
        "POST",
        &format!("{base}/v1/customers/{c}/anonymize"),
        key,
        None,
        &[],
    ))
}

fn readyz(base: &str) -> (u16, Value) {
    let r = answer(try_call_with(
        "GET",
        &format!("{base}/readyz"),
        "",
        None,
        &[],
    ));
    (r.status, r.body)
}

fn names_storage_full(r: &Value) -> bool {
    r["failing"].as_array().is_some_and(|f| {
        f.iter()
            .any(|p| p["part"] == "storage" && p["code"] == "STORAGE_FULL")
    })
}

/// Polls `done` every 100 ms for up to `limit`; returns how long it took.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if done() {
            return Some(t.elapsed());
        }
        if t.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ledger serve --demo --demo-customers 200` on a new tmpfs (its logs in a file
/// there with `log_to_tmpfs`), and the key of a white-label demo broadcaster; or
/// `None` after printing why, if no tmpfs can be mounted.
fn demo_on_tmpfs(log_to_tmpfs: bool) -> Option<(Tmpfs, PathBuf, Server, String)> {
    let mut fs = match Tmpfs::mount(SIZE) {
        Ok(m) => m,
        Err(why) => {
            println!("skipped: cannot mount a tmpfs ({why})");
            return None;
        }
    };
    let data = fs.path().join("data");
    let demo = ["--demo", "--demo-customers", "200"];
    let server = if log_to_tmpfs {
        start_logging_to(
            &data,
            free_port(),
            None,
            &demo,
            &fs.path().join("ledger.log"),
        )
    } else {
        start_with(&data, free_port(), None, &demo)
    };
    fs.server = Some(server.child.id());
    let key = within(Duration::from_secs(5), || {
        white_label_key(&server.out.lock().unwrap()).is_some()
    })
    .and_then(|_| white_label_key(&server.out.lock().unwrap()))
    .expect("serve --demo printed a white-label API key");
    Some((fs, data, server, key))
}

#[test]
fn a_full_disk_is_answered_507_and_the_service_recovers_by_itself() {
    let Some((mut fs, data, server, key)) = demo_on_tmpfs(true) else {
        return;
    };
    let base = server.base.clone();
    let filler = fs.path().join("filler");

    // Before: customers to erase and to charge while the disk is full.
    let victims: Vec<String> = (0..VICTIMS).map(|n| register(&base, &key, n)).collect();
    let payers: Vec<String> = (0..PAYERS)
        .map(|n| register(&base, &key, 1000 + n))
        .collect();
    // Payments until the event log's WAL is a few commits short of needing a
    // second `-shm` region: the disk fills while it grows past it.
    let events_db = data.join("events.sqlite");
    let pumped = pump(
        &base,
        &key,
        &payers,
        &events_db,
        FIRST_SHM_REGION_FRAMES - 4,
    );
    let frames_before = wal_frames(&events_db);
    let shm_before = std::fs::metadata(data.join("events.sqlite-shm")).map_or(0, |m| m.len());
    let baseline = customers_audited(&data);

    // Full: no byte left. Writes run in rounds; the filler is topped up after each
    // (a failed SQLite write or a truncated WAL may free a little).
    let filled = fill(&filler);
    let free_at_start = free_bytes(fs.path());
    let mut tally = Tally::default();
    let mut keyed: Vec<Vec<u16>> = vec![Vec::new(); KEYED];
    let mut plain_created = 0usize;
    let mut payments: Vec<Payment> = Vec::new();
    let mut erasures: Vec<Vec<u16>> = vec![Vec::new(); VICTIMS];
    let mut ready_polls: Vec<(u16, bool, Value)> = Vec::new();
    let mut first_full: Option<usize> = None;
    let started = Instant::now();
    let mut round = 0usize;
    while started.elapsed() < FULL_FOR {
        let mut answers: Vec<(&'static str, usize, Reply)> = Vec::new();
        let round_started = Instant::now();
        let new_payments: Vec<Payment> = (0..2)
            .map(|i| Payment {
                customer: payers[(2 * round + i) % PAYERS].clone(),
                id: uuid::Uuid::new_v4().to_string(),
                statuses: Vec::new(),
            })
            .collect();
        // Three victims a round: the next untried ones, and any answered 5xx before.
        let tried: Vec<usize> = (0..VICTIMS)
            .filter(|&v| {
                let a = &erasures[v];
                a.is_empty() || a.iter().all(|s| *s >= 500)
            })
            .take(3)
            .collect();
        std::thread::scope(|s| {
            let regs = s.spawn(|| {
                let mut out: Vec<(&'static str, usize, Reply)> = (0..KEYED)
                    .map(|n| ("keyed registration", n, register_keyed(&base, &key, n)))
                    .collect();
                let r = answer(try_call_with(
                    "POST",
                    &format!("{base}/v1/customers"),
                    &key,
                    Some(profile("plain", round)),
                    &[],
                ));
                out.push(("registration", round, r));
                out
            });
            let pays = s.spawn(|| {
                new_payments
                    .iter()
                    .enumerate()
                    .map(|(i, p)| ("payment", i, pay(&base, &key, p)))
                    .collect::<Vec<_>>()
            });
            let erase = s.spawn(|| {
                tried
                    .iter()
                    .map(|&v| ("erasure", v, anonymize(&base, &key, &victims[v])))
                    .collect::<Vec<_>>()
            });
            for h in [regs, pays, erase] {
                answers.extend(h.join().expect("a client thread failed"));
            }
        });
        let mut payments_now = new_payments;
        for (what, i, r) in answers {
            tally.note(what, &r);
            if r.status == 507 && first_full.is_none() {
                first_full = Some(round);
            }
            match what {
                "keyed registration" => keyed[i].push(r.status),
                "registration" if r.status == 201 => plain_created += 1,
                "payment" => payments_now[i].statuses.push(r.status),
                "erasure" => erasures[i].push(r.status),
                _ => {}
            }
        }
        payments.extend(payments_now);
        // Every other round starts with a few pages free: some writes fit, the
        // stores race for the last pages, and the disk stays full.
        let headroom = [0, 8 << 10, 0, 24 << 10, 0, 64 << 10][round % 6];
        fill_leaving(&filler, headroom);
        if first_full.is_some() {
            let (st, r) = readyz(&base);
            ready_polls.push((
                st,
                st == 503 && names_storage_full(&r),
                r["failing"].clone(),
            ));
        }
        round += 1;
        std::thread::sleep(ROUND.saturating_sub(round_started.elapsed()));
    }
    let free_at_end = free_bytes(fs.path());
    // Nobody rebuilt the WAL index under the running server (the audit beside it,
    // the test's own read-only connections): it keeps its reserved size.
    let shm_at_end = std::fs::metadata(data.join("events.sqlite-shm")).map_or(0, |m| m.len());
    eprintln!(
        "files (KiB) at the end of the full period: {}",
        sizes(fs.path())
    );

    // Still full: what was answered 5xx did not happen, what was answered 2xx did.
    let in_log: HashSet<String> = erased_in_log(&data).into_iter().collect();
    let mut erasure_mismatch = Vec::new();
    for (v, statuses) in erasures.iter().enumerate() {
        let decided = statuses.iter().any(|s| matches!(s, 200 | 202));
        if statuses.is_empty() {
            continue;
        }
        if decided != in_log.contains(&victims[v]) {
            erasure_mismatch.push(format!(
                "victim {v}: answered {statuses:?}, in the log: {}",
                in_log.contains(&victims[v])
            ));
        }
    }

    // Space back.
    std::fs::remove_file(&filler).expect("delete the filler");
    let ready_after = within(Duration::from_secs(60), || readyz(&base).0 == 200);
    eprintln!(
        "files (KiB) when ready: {}; free {} B",
        sizes(fs.path()),
        free_bytes(fs.path())
    );
    let clean_after = within(Duration::from_secs(60), || {
        half_erased(&data).is_empty() && readyz(&base).1["pending_destructions"] == 0
    });
    // Writes succeed again, and what was answered 5xx was not committed: its
    // retry appends (a 409 PAYMENT_EXISTS would be a committed write answered 5xx).
    let mut after = Tally::default();
    let mut retried_5xx = Vec::new();
    for p in payments
        .iter()
        .filter(|p| p.statuses.iter().any(|s| *s >= 500))
    {
        let r = pay(&base, &key, p);
        after.note("payment", &r);
        if r.status != 201 {
            retried_5xx.push(format!(
                "payment answered {:?}, retried: {}",
                p.statuses, r.status
            ));
        }
    }
    for (v, statuses) in erasures.iter().enumerate() {
        if statuses.iter().any(|s| matches!(s, 200 | 202)) {
            continue;
        }
        let r = anonymize(&base, &key, &victims[v]);
        after.note("erasure", &r);
        if r.status != 200 {
            retried_5xx.push(format!(
                "erasure answered {statuses:?}, retried: {}",
                r.status
            ));
        }
    }
    // Every keyed registration once more: 201 (replayed or new), or 409
    // CUSTOMER_EXISTS when an earlier try had succeeded but its answer could not be
    // saved. Then exactly one customer per key.
    let mut duplicates = Vec::new();
    for (n, statuses) in keyed.iter().enumerate() {
        let r = register_keyed(&base, &key, n);
        after.note("keyed registration", &r);
        let earlier_2xx = statuses.iter().any(|s| (200..300).contains(s));
        let fine = r.status == 201
            || (r.status == 409 && r.body["code"] == "CUSTOMER_EXISTS" && earlier_2xx);
        if !fine {
            retried_5xx.push(format!(
                "keyed registration answered {statuses:?}, retried: {} {}",
                r.status, r.body["code"]
            ));
        }
        let (st, page) = call(
            "GET",
            &format!("{base}/v1/customers?q=keyed.{n}%40example.com"),
            &key,
            None,
        );
        assert_eq!(st, 200, "{page}");
        let found = page["items"].as_array().map_or(0, Vec::len);
        if found != 1 {
            duplicates.push(format!("key {n}: {found} customers ({statuses:?})"));
        }
    }
    let r = answer(try_call_with(
        "POST",
        &format!("{base}/v1/customers"),
        &key,
        Some(profile("plain", 9999)),
        &[],
    ));
    after.note("registration", &r);
    let fresh_write = r.status;
    if fresh_write == 201 {
        plain_created += 1;
    }
    let (ready_at_end, _) = readyz(&base);

    let logs = stop(server);
    fs.server = None;
    let forget_list = std::fs::read_to_string(fs.path().join("data.forget-list.ndjson"))
        .expect("the forget list beside the data folder");
    let torn: Vec<&str> = forget_list
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .collect();
    eprintln!(
        "forget list: {} lines, {} torn",
        forget_list.lines().count(),
        torn.len()
    );
    let customers = customers_audited(&data);
    let audit = run(&data, &["audit", "verify"]);

    eprintln!(
        "{pumped} payments before the disk filled brought the event log's WAL to {frames_before} frames (-shm {shm_before} B)"
    );
    eprintln!(
        "tmpfs {SIZE}: filler {} MiB, free {free_at_start} B at the start and {free_at_end} B at the end of {round} rounds in {:.1} s",
        filled >> 20,
        started.elapsed().as_secs_f64()
    );
    eprintln!("answers while full:");
    for ((what, st, code), n) in &tally.seen {
        eprintln!("  {what:<19} {st} {code:<20} x{n}");
    }
    eprintln!("answers after:");
    for ((what, st, code), n) in &after.seen {
        eprintln!("  {what:<19} {st} {code:<20} x{n}");
    }
    let storage_polls = ready_polls.iter().filter(|p| p.1).count();
    eprintln!(
        "/readyz while full: {storage_polls} of {} polls 503 naming storage; ready again after {ready_after:?}; none half erased and no destruction pending after {clean_after:?}",
        ready_polls.len()
    );
    let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
    for line in logs.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if matches!(v["level"].as_str(), Some("WARN" | "ERROR")) {
            let m = &v["fields"];
            let what = format!("{} {} {}", v["level"], m["message"], m["code"]);
            *warnings.entry(what).or_default() += 1;
        }
    }
    eprintln!("the server's warnings and errors (those written; the disk was full):");
    for (what, n) in &warnings {
        eprintln!("  {what} x{n}");
    }
    eprintln!(
        "customers: {baseline} before, {customers} after ({KEYED} keyed registrations, {plain_created} plain ones answered 201)"
    );

    assert!(
        tally.count(|s| s == 507) > 0,
        "no write was answered 507: the disk never filled"
    );
    assert!(tally.bad.is_empty(), "answers while full: {:?}", tally.bad);
    assert_eq!(
        shm_at_end, shm_before,
        "the event log's -shm file changed size"
    );
    assert_eq!(
        tally.count(|s| s == 503),
        0,
        "a full disk answered 503 STORE_UNAVAILABLE rather than 507 STORAGE_FULL"
    );
    assert!(after.bad.is_empty(), "answers after: {:?}", after.bad);
    assert!(
        !ready_polls.is_empty() && ready_polls.iter().all(|p| p.1),
        "/readyz while full: {ready_polls:?}"
    );
    assert!(erasure_mismatch.is_empty(), "{erasure_mismatch:?}");
    assert!(
        ready_after.is_some_and(|d| d <= RECOVERY),
        "ready again after {ready_after:?}"
    );
    assert!(
        clean_after.is_some_and(|d| d <= RECOVERY),
        "destructions done after {clean_after:?}"
    );
    assert!(retried_5xx.is_empty(), "{retried_5xx:?}");
    assert!(duplicates.is_empty(), "{duplicates:?}");
    assert_eq!(fresh_write, 201, "a registration after recovery");
    assert_eq!(ready_at_end, 200);
    assert_eq!(
        customers,
        baseline + KEYED as u64 + plain_created as u64,
        "customers in the log"
    );
    assert!(audit.status.success(), "audit verify: {}", stdout(&audit));
    assert!(
        torn.is_empty(),
        "torn lines in the forget list: {}",
        torn.len()
    );
    for personal in ["@example.com", "Hildegard", "Fulldisk", "198.51.100.23"] {
        assert!(
            !logs.contains(personal),
            "the server's logs hold personal data"
        );
    }
}

/// A write answered 5xx on a full disk must not turn up in the log after a crash.
/// The payment below fits in the WAL but its frames are the first past the
/// first `-shm` region, which the full disk cannot grow: SQLite has then written
/// and synced the whole commit into the WAL before it fails to index it.
#[test]
fn a_write_refused_on_a_full_disk_is_not_committed_after_a_crash() {
    let Some((mut fs, data, mut server, key)) = demo_on_tmpfs(false) else {
        return;
    };
    let base = server.base.clone();
    let payer = register(&base, &key, 2000);
    let events_db = data.join("events.sqlite");
    let pumped = pump(
        &base,
        &key,
        std::slice::from_ref(&payer),
        &events_db,
        FIRST_SHM_REGION_FRAMES - 40,
    );
    let shm = std::fs::metadata(data.join("events.sqlite-shm")).map_or(0, |m| m.len());
    // Payments, each with room for its frames (about 16 KiB, and as much for a save
    // of the views beside it) but not for them and a 32 KiB -shm region, until the
    // WAL is past the first region.
    let filler = fs.path().join("filler");
    let mut tries = 0;
    let (p, first) = loop {
        tries += 1;
        fill_leaving(&filler, 40 << 10);
        let p = Payment {
            customer: payer.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            statuses: Vec::new(),
        };
        let r = pay(&base, &key, &p);
        if wal_frames(&events_db) > FIRST_SHM_REGION_FRAMES || tries == 30 {
            break (p, r);
        }
    };
    let frames = wal_frames(&events_db);
    // The process dies while the disk is full (kill -9), and starts again once
    // there is space.
    server.child.kill().expect("kill the server");
    server.child.wait().expect("reap the server");
    fs.server = None;
    std::fs::remove_file(&filler).expect("delete the filler");
    let server = start(&data, free_port(), None);
    fs.server = Some(server.child.id());
    let again = pay(&server.base, &key, &p);
    stop(server);
    fs.server = None;
    let audit = run(&data, &["audit", "verify"]);
    eprintln!(
        "{pumped} payments brought the WAL near the end of the first -shm region (-shm {shm} B); after {tries} payments on the full disk ({frames} frames), the last was answered {} {}, its retry after the crash {} {}",
        first.status, first.body["code"], again.status, again.body["code"]
    );
    assert!(audit.status.success(), "audit verify: {}", stdout(&audit));
    match first.status {
        201 => assert_eq!(again.body["code"], "PAYMENT_EXISTS"),
        500.. => assert_eq!(
            again.status, 201,
            "the payment answered {} before the crash was committed: {}",
            first.status, again.body
        ),
        s => panic!("the payment was answered {s}: {}", first.body),
    }
}
