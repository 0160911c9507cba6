//! Connection limits, end to end (issue 9): the real `ledger serve` under a 1,024
//! open-files limit (what a systemd service gets by default), with its default
//! `--max-connections` and short clocks (header-read 2 s, idle 4 s).
//!
//! 1. Clocks: silent and slowloris connections (a head trickled a byte every 300 ms)
//!    are closed after the header-read timeout, a kept-alive connection after the
//!    idle timeout, which is a clock of its own.
//! 2. Flood: 2,000 silent plus 1,000 slowloris connections, far more than the server
//!    may hold or has files for, kept open for 5 s (each one the server closes is
//!    opened again at once). `/healthz` must answer 200 to every probe (one every
//!    200 ms), each within 3 s, and the server must close every flood connection
//!    within the header-read timeout and a margin (its slot reclaimed for a
//!    newcomer, or its clock run out).
//! 3. SIGTERM with silent, slowloris and kept-alive connections open: a clean exit
//!    within the header-read timeout and a margin; the logs name no client address.
//!
//! Against `axum::serve` (no limits) the clocks never fire, the server stops
//! accepting at `EMFILE`, and the probes time out.
//!
//! The figures are printed on stderr (`--nocapture` is not needed). Linux only
//! (`/proc` for the open-files limits).
#![cfg(target_os = "linux")]

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ledger_system_tests::server::free_port;
use ledger_system_tests::{clear_ledger_env, ledger_bin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout, Instant};

const ADMIN: &str = "lka_limits-admin-key-0123456789abcdefghijklmn";
const SERVER_NOFILE: u64 = 1024;
const HEADER_SECS: u64 = 2;
const IDLE_SECS: u64 = 4;
const FLOOD_SILENT: usize = 2_000;
const FLOOD_SLOW: usize = 1_000;
/// How long the flood is kept up: a connection the server closes is opened again.
const FLOOD_FOR: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a held connection is watched before it counts as never closed.
const WATCH_CAP: Duration = Duration::from_secs(10);
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n\r\n";

fn say(line: &str) {
    // Straight to stderr: the harness swallows eprintln! of a passing test.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The soft open-files limit of process `pid` (Linux).
fn nofile(pid: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This test holds about 3,100 sockets: raise its own soft limit if it is lower
/// (with util-linux's `prlimit`, since the workspace forbids `unsafe`).
fn ensure_own_nofile(needed: u64) {
    if nofile("self").is_some_and(|n| n >= needed) {
        return;
    }
    let pid = std::process::id().to_string();
    let _ = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={needed}:")])
        .status();
    let now = nofile("self");
    assert!(
        now.is_some_and(|n| n >= needed),
        "this test needs {needed} open files, the limit is {now:?}: run it after `ulimit -n {needed}`"
    );
}

/// The kernel's count of connections dropped because an accept queue was full
/// (Linux, all sockets of the host): printed to explain slow probes.
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut tcp_ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (tcp_ext.next()?, tcp_ext.next()?);
    let i = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

struct Server {
    child: Child,
    addr: SocketAddr,
    logs: std::thread::JoinHandle<String>,
}

/// `ledger serve` through `sh -c 'ulimit -n 1024 && exec ledger ...'`.
fn start(data: &Path) -> Server {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new("sh");
    let mut child = clear_ledger_env(&mut cmd)
        .arg("-c")
        .arg(format!("ulimit -n {SERVER_NOFILE} && exec \"$0\" \"$@\""))
        .arg(ledger_bin())
        .arg("--data")
        .arg(data)
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            &addr.to_string(),
        ])
        .args(["--header-read-timeout-secs", &HEADER_SECS.to_string()])
        .args(["--idle-timeout-secs", &IDLE_SECS.to_string()])
        .env("LEDGER_ADMIN_KEY", ADMIN)
        .env("LEDGER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ledger serve");
    // Drain the logs as they come, so a full pipe never blocks the server.
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    Server { child, addr, logs }
}

/// SIGTERM, a clean exit within 30 s; the server's logs.
fn stop(mut s: Server) -> (bool, String) {
    let pid = s.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break Some(st);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = s.child.kill();
            let _ = s.child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let logs = s.logs.join().unwrap();
    (status.is_some_and(|st| st.success()), logs)
}

/// One `GET /healthz` on a new connection: its latency if it answered 200 in time.
async fn probe(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let answer = timeout(PROBE_TIMEOUT, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(HEALTHZ).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    })
    .await;
    match answer {
        Ok(Ok(buf)) if buf.starts_with(b"HTTP/1.1 200") => Ok(started.elapsed()),
        Ok(Ok(buf)) => Err(format!(
            "answered {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(20)])
        )),
        Ok(Err(e)) => Err(format!("failed after {:?}: {e}", started.elapsed())),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Connects and sends nothing.
    Silent,
    /// Sends part of a head, then one more byte every 300 ms, never the end.
    Slowloris,
    /// One complete request and its response, then nothing.
    KeptAlive,
}

#[derive(Debug)]
struct Held {
    /// The client's port, to check the server's logs never name it.
    port: Option<u16>,
    /// From connected (KeptAlive: from its response) to closed by the server;
    /// `None` if it could not connect or was still open after `WATCH_CAP`.
    closed_after: Option<Duration>,
    connected: bool,
}

/// Opens a connection of `kind` and waits for the server to close it.
async fn hold(addr: SocketAddr, kind: Kind, connects: Arc<Semaphore>) -> Held {
    let mut held = Held {
        port: None,
        closed_after: None,
        connected: false,
    };
    let permit = connects.acquire_owned().await.unwrap();
    let Ok(Ok(mut s)) = timeout(Duration::from_secs(5), TcpStream::connect(addr)).await else {
        return held;
    };
    drop(permit);
    held.connected = true;
    held.port = s.local_addr().ok().map(|a| a.port());
    let mut started = Instant::now();
    let mut buf = [0u8; 1024];
    match kind {
        Kind::Silent => {}
        Kind::Slowloris => {
            if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\nX-Slow: ")
                .await
                .is_err()
            {
                held.closed_after = Some(started.elapsed());
                return held;
            }
        }
        Kind::KeptAlive => {
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n\r\n")
                .await;
            let mut got = Vec::new();
            while !got.ends_with(b"{\"status\":\"ok\"}") {
                match timeout(PROBE_TIMEOUT, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => return held,
                }
            }
            started = Instant::now();
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    tick.tick().await;
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(n) if n > 0 => {}
                _ => {
                    held.closed_after = Some(started.elapsed());
                    return held;
                }
            },
            _ = tick.tick() => {
                if started.elapsed() > WATCH_CAP {
                    return held;
                }
                if kind == Kind::Slowloris && s.write_all(b"a").await.is_err() {
                    held.closed_after = Some(started.elapsed());
                    return held;
                }
            }
        }
    }
}

/// Keeps a connection of `kind` open until `until`: opens another each time the
/// server closes one.
async fn keep_open(
    addr: SocketAddr,
    kind: Kind,
    connects: Arc<Semaphore>,
    until: Instant,
) -> Vec<Held> {
    let mut all = Vec::new();
    loop {
        let held = hold(addr, kind, connects.clone()).await;
        let again = held.connected && Instant::now() < until;
        all.push(held);
        if !again {
            return all;
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Smallest and largest close times of `held`, and how many never closed.
fn spread(held: &[&Held]) -> (Duration, Duration, usize) {
    let closed: Vec<Duration> = held.iter().filter_map(|h| h.closed_after).collect();
    let min = closed.iter().min().copied().unwrap_or_default();
    let max = closed.iter().max().copied().unwrap_or_default();
    (min, max, held.len() - closed.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_through_a_connection_flood_and_slow_heads_are_cut() {
    ensure_own_nofile(8_192);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr;
    let up = Instant::now();
    while probe(addr).await.is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(60),
            "server did not come up"
        );
        sleep(Duration::from_millis(50)).await;
    }
    let pid = server.child.id().to_string();
    assert_eq!(
        nofile(&pid),
        Some(SERVER_NOFILE),
        "the server runs under a {SERVER_NOFILE} open-files limit"
    );
    let mut problems: Vec<String> = Vec::new();
    let mut ports: Vec<u16> = Vec::new();
    let connects = Arc::new(Semaphore::new(256));

    // 1. Clocks, well under the connection cap.
    let mut tasks = Vec::new();
    for kind in [Kind::Silent, Kind::Slowloris, Kind::KeptAlive] {
        for _ in 0..20 {
            tasks.push((kind, tokio::spawn(hold(addr, kind, connects.clone()))));
        }
    }
    let mut clocks = Vec::new();
    for (kind, t) in tasks {
        clocks.push((kind, t.await.unwrap()));
    }
    for (kind, expect) in [
        (Kind::Silent, HEADER_SECS),
        (Kind::Slowloris, HEADER_SECS),
        (Kind::KeptAlive, IDLE_SECS),
    ] {
        let of_kind: Vec<&Held> = clocks
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, h)| h)
            .collect();
        let (min, max, open) = spread(&of_kind);
        say(&format!(
            "clocks: {} {kind:?} connections closed after {}..{} (expected {expect}s), {open} not closed",
            of_kind.len(),
            secs(min),
            secs(max)
        ));
        let expect = Duration::from_secs(expect);
        if open > 0
            || min + Duration::from_millis(250) < expect
            || max > expect + Duration::from_millis(1_500)
        {
            problems.push(format!(
                "{kind:?}: closed after {}..{}, {open} never, expected about {}",
                secs(min),
                secs(max),
                secs(expect)
            ));
        }
    }
    ports.extend(clocks.iter().filter_map(|(_, h)| h.port));

    // 2. Flood, with /healthz probed all along.
    let overflows_before = listen_overflows();
    let flood_start = Instant::now();
    let mut flood = Vec::new();
    for i in 0..FLOOD_SILENT + FLOOD_SLOW {
        let kind = if i % 3 == 2 {
            Kind::Slowloris
        } else {
            Kind::Silent
        };
        flood.push(tokio::spawn(keep_open(
            addr,
            kind,
            connects.clone(),
            flood_start + FLOOD_FOR,
        )));
    }
    let flood_done = Arc::new(AtomicBool::new(false));
    let done = flood_done.clone();
    let prober = tokio::spawn(async move {
        let mut results = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let at = flood_start.elapsed();
            results.push((at, probe(addr).await));
            sleep(Duration::from_millis(200)).await;
        }
        results
    });
    let mut flood_held = Vec::new();
    for t in flood {
        flood_held.extend(t.await.unwrap());
    }
    let flood_over = flood_start.elapsed();
    flood_done.store(true, Ordering::Relaxed);
    let probes = prober.await.unwrap();

    let connected = flood_held.iter().filter(|h| h.connected).count();
    let all: Vec<&Held> = flood_held.iter().collect();
    let (min, max, open) = spread(&all);
    say(&format!(
        "flood: {FLOOD_SILENT} silent and {FLOOD_SLOW} slowloris connections kept open for {}: \
         {} opened in all, {connected} connected, closed by the server after {}..{}, \
         {open} not closed within {}; all gone at {}",
        secs(FLOOD_FOR),
        flood_held.len(),
        secs(min),
        secs(max),
        secs(WATCH_CAP),
        secs(flood_over)
    ));
    if connected < flood_held.len() {
        problems.push(format!(
            "flood: only {connected} of {} connections got through",
            flood_held.len()
        ));
    }
    if open > 0 || max > Duration::from_secs(HEADER_SECS + 3) {
        problems.push(format!(
            "flood: {open} connections never closed, the last after {}",
            secs(max)
        ));
    }
    ports.extend(flood_held.iter().filter_map(|h| h.port));
    if let (Some(a), Some(b)) = (overflows_before, listen_overflows()) {
        say(&format!(
            "flood: {} connections dropped by full accept queues on this host meanwhile",
            b - a
        ));
    }

    let during: Vec<_> = probes.iter().filter(|(at, _)| *at <= flood_over).collect();
    let ok: Vec<Duration> = during.iter().filter_map(|(_, r)| r.clone().ok()).collect();
    let worst = ok.iter().max().copied().unwrap_or_default();
    let mean = ok
        .iter()
        .sum::<Duration>()
        .checked_div(u32::try_from(ok.len()).unwrap_or(1))
        .unwrap_or_default();
    say(&format!(
        "healthz during the flood: {} of {} probes answered 200, mean {:.1} ms, worst {:.1} ms",
        ok.len(),
        during.len(),
        mean.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    ));
    for (at, r) in &during {
        if let Err(e) = r {
            problems.push(format!("healthz probe at {}: {e}", secs(*at)));
        }
    }
    if during.len() < 5 {
        problems.push(format!("only {} probes during the flood", during.len()));
    }

    // 3. SIGTERM with connections open in every phase: idle ones close at once, a
    // half-sent head at the latest when its clock runs out.
    let mut open_at_stop = Vec::new();
    for kind in [Kind::Silent, Kind::Slowloris, Kind::KeptAlive] {
        for _ in 0..20 {
            open_at_stop.push(tokio::spawn(hold(addr, kind, connects.clone())));
        }
    }
    sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    let (clean, logs) = tokio::task::spawn_blocking(move || stop(server))
        .await
        .unwrap();
    let stopped_after = stopping.elapsed();
    say(&format!(
        "SIGTERM with {} connections open (silent, slowloris, kept-alive): exited after {}",
        open_at_stop.len(),
        secs(stopped_after)
    ));
    for t in open_at_stop {
        ports.extend(t.await.unwrap().port);
    }
    if !clean || !logs.contains("stopped cleanly") {
        problems.push("no clean exit on SIGTERM".into());
    }
    if stopped_after > Duration::from_secs(HEADER_SECS + 2) {
        problems.push(format!("the shutdown took {}", secs(stopped_after)));
    }
    if !logs.contains("connection limit reached") {
        problems.push("the limit being reached was not logged".into());
    }
    let leaked: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| logs.contains(&format!("127.0.0.1:{p}")))
        .collect();
    if !leaked.is_empty() {
        problems.push(format!("client addresses in the logs: {leaked:?}"));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}\nserver logs (tail):\n{}",
        problems.len(),
        problems.join("\n  "),
        logs.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
