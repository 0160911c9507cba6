//! A `ledger serve` child process on a free port, and HTTP calls to it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The admin key every test server is started with (`LEDGER_ADMIN_KEY`).
pub const ADMIN: &str = "lka_e2e-admin-key-0123456789abcdefghijklmnop";

pub struct Server {
    pub child: Child,
    pub base: String,
    /// What the server wrote to stderr so far (drained by a thread, so a chatty
    /// server never blocks on a full pipe).
    pub logs: Arc<Mutex<String>>,
    /// What it wrote to stdout so far (e.g. the demo API keys).
    pub out: Arc<Mutex<String>>,
    drains: Vec<std::thread::JoinHandle<()>>,
}

/// Reads a child's pipe to the end on a thread, into `into`.
fn drain(
    mut pipe: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = into.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn ledger(data: &Path, store: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ledger"));
    c.arg("--data").arg(data).env_remove("LEDGER_STORE");
    if let Some(url) = store {
        c.args(["--store", url]);
    }
    c
}

pub fn start(data: &Path, port: u16, store: Option<&str>) -> Server {
    start_with(data, port, store, &[])
}

/// [`start`] with more `serve` arguments (e.g. `--demo`).
pub fn start_with(data: &Path, port: u16, store: Option<&str>, serve_args: &[&str]) -> Server {
    let mut child = ledger(data, store)
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(serve_args)
        .env("LEDGER_ADMIN_KEY", ADMIN)
        .env_remove("LEDGER_KEK")
        .env_remove("LEDGER_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ledger serve");
    let logs = Arc::new(Mutex::new(String::new()));
    let out = Arc::new(Mutex::new(String::new()));
    let mut drains = Vec::new();
    if let Some(e) = child.stderr.take() {
        drains.push(drain(e, logs.clone()));
    }
    if let Some(o) = child.stdout.take() {
        drains.push(drain(o, out.clone()));
    }
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(r) = agent().get(format!("{base}/healthz")).call() {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        base,
        logs,
        out,
        drains,
    }
}

/// SIGTERM, then wait for a clean exit; returns the server's stderr (its logs).
pub fn stop(mut s: Server) -> String {
    let pid = s.child.id().to_string();
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The drain threads end when the process's pipes close.
    for d in s.drains.drain(..) {
        let _ = d.join();
    }
    let logs = s.logs.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}; logs:\n{logs}");
    assert!(logs.contains("stopped cleanly"), "{logs}");
    logs
}

pub fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let a = agent();
    let auth = format!("Bearer {token}");
    let res = match (method, body) {
        ("GET", _) => a.get(url).header("Authorization", &auth).call(),
        ("DELETE", _) => a.delete(url).header("Authorization", &auth).call(),
        ("POST", Some(b)) => a
            .post(url)
            .header("Authorization", &auth)
            .content_type("application/json")
            .send(b.to_string()),
        ("POST", None) => a.post(url).header("Authorization", &auth).send_empty(),
        _ => unreachable!(),
    };
    let mut res = res.unwrap();
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
