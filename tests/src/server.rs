//! A `ledger serve` child process on a free port, and HTTP calls to it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The admin key every test server is started with (`LEDGER_ADMIN_KEY`).
pub const ADMIN: &str = "lka_e2e-admin-key-0123456789abcdefghijklmnop";

#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub base: String,
    /// What the server wrote to stderr so far (drained by a thread, so a chatty
    /// server never blocks on a full pipe); empty with [`start_logging_to`].
    pub logs: Arc<Mutex<String>>,
    /// What it wrote to stdout so far (e.g. the demo API keys).
    pub out: Arc<Mutex<String>>,
    /// Where stderr goes instead of the pipe (see [`start_logging_to`]).
    log_file: Option<PathBuf>,
    drains: Vec<std::thread::JoinHandle<()>>,
}

/// A server a test did not [`stop`] (it failed first) is killed, not left
/// running after the test binary ends.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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

/// Waits (up to a minute) until `GET url` answers 200; `what` names it in the
/// failure.
pub fn wait_ok(url: &str, what: &str) {
    let started = Instant::now();
    while !agent().get(url).call().is_ok_and(|r| r.status() == 200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client that returns every status as an answer (30 s per request).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `ledger --data DATA [--store URL]` (see [`crate::ledger`]).
pub fn ledger(data: &Path, store: Option<&str>) -> Command {
    let mut c = crate::ledger(data);
    if let Some(url) = store {
        c.args(["--store", url]);
    }
    c
}

/// `ledger audit verify --json` on the data folder; the report, once the command
/// succeeded.
pub fn audit(data: &Path, store: Option<&str>) -> Value {
    let out = ledger(data, store)
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("audit --json: {}", crate::stderr(&out)));
    assert!(out.status.success(), "{report}");
    report
}

/// `ledger serve` on `port` (see [`start_with`]).
pub fn start(data: &Path, port: u16, store: Option<&str>) -> Server {
    start_with(data, port, store, &[])
}

/// [`start`] with more `serve` arguments (e.g. `--demo`).
pub fn start_with(data: &Path, port: u16, store: Option<&str>, serve_args: &[&str]) -> Server {
    spawn(data, port, store, serve_args, None)
}

/// [`start_with`], appending the server's stderr (its logs) to `log_file` instead
/// of a pipe, as an operator's `2>>FILE` would; [`stop`] returns what the file
/// holds then.
pub fn start_logging_to(
    data: &Path,
    port: u16,
    store: Option<&str>,
    serve_args: &[&str],
    log_file: &Path,
) -> Server {
    spawn(data, port, store, serve_args, Some(log_file))
}

fn spawn(
    data: &Path,
    port: u16,
    store: Option<&str>,
    serve_args: &[&str],
    log_file: Option<&Path>,
) -> Server {
    let stderr = match log_file {
        Some(f) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .expect("open the log file"),
        ),
        None => Stdio::piped(),
    };
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
        .stdout(Stdio::piped())
        .stderr(stderr)
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
    wait_ok(&format!("{base}/healthz"), "the server");
    Server {
        child,
        base,
        logs,
        out,
        log_file: log_file.map(Path::to_path_buf),
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
    let logs = match &s.log_file {
        Some(f) => {
            String::from_utf8_lossy(&std::fs::read(f).expect("read the log file")).into_owned()
        }
        None => s.logs.lock().map(|l| l.clone()).unwrap_or_default(),
    };
    assert!(status.success(), "exit status {status:?}; logs:\n{logs}");
    assert!(logs.contains("stopped cleanly"), "{logs}");
    logs
}

/// A new white-label broadcaster named `name`, registered with the admin key, and
/// an API key for it: (broadcaster id, token).
pub fn tenant(base: &str, name: &str) -> (String, String) {
    let (st, b) = call(
        "POST",
        &format!("{base}/v1/admin/broadcasters"),
        ADMIN,
        Some(serde_json::json!({"name": name, "integration": "white_label"})),
    );
    assert_eq!(st, 201, "{b}");
    let id = b["broadcaster_id"]
        .as_str()
        .expect("broadcaster id")
        .to_owned();
    let (st, k) = call(
        "POST",
        &format!("{base}/v1/admin/broadcasters/{id}/api-keys"),
        ADMIN,
        Some(serde_json::json!({})),
    );
    assert_eq!(st, 201, "{k}");
    (id, k["token"].as_str().expect("token").to_owned())
}

/// One request with a bearer token: the status and the JSON body (`null` if none).
pub fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let r = try_call_with(method, url, token, body, &[]).unwrap();
    (r.status, r.body)
}

/// An answer of [`try_call_with`].
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

/// [`call`] with more request headers, returning `Retry-After` too; or why no
/// answer came (the connection failed or was closed).
pub fn try_call_with(
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Result<Reply, ureq::Error> {
    let a = agent();
    let auth = format!("Bearer {token}");
    fn add<B>(
        mut r: ureq::RequestBuilder<B>,
        h: &[(&str, &str)],
        auth: &str,
    ) -> ureq::RequestBuilder<B> {
        for (k, v) in h {
            r = r.header(*k, *v);
        }
        r.header("Authorization", auth)
    }
    let res = match (method, body) {
        ("GET", _) => add(a.get(url), headers, &auth).call(),
        ("DELETE", _) => add(a.delete(url), headers, &auth).call(),
        ("POST", Some(b)) => add(a.post(url), headers, &auth)
            .content_type("application/json")
            .send(b.to_string()),
        ("POST", None) => add(a.post(url), headers, &auth).send_empty(),
        ("PATCH", Some(b)) => add(a.patch(url), headers, &auth)
            .content_type("application/json")
            .send(b.to_string()),
        _ => unreachable!(),
    };
    let mut res = res?;
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = res.body_mut().read_to_string()?;
    Ok(Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        retry_after,
    })
}

/// The public events after `after` that `token` (an API key, or [`ADMIN`] for
/// every tenant's) reads in the change feed (NDJSON pages of `GET /v1/events`).
pub fn feed_of(base: &str, token: &str, after: u64) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut after = after;
    loop {
        let mut res = agent()
            .get(&format!("{base}/v1/events?after={after}&limit=10000"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("GET /v1/events");
        assert_eq!(res.status().as_u16(), 200);
        let next: u64 = res
            .headers()
            .get("ledger-next-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Ledger-Next-After");
        let text = res
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .expect("the page");
        let before = out.len();
        out.extend(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_str::<Value>(l).expect("an NDJSON line")),
        );
        if out.len() == before && next == after {
            return out;
        }
        after = next;
    }
}

/// Waits (up to `secs`) until `cond` holds; `what` names it in the failure.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
