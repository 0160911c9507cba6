//! Shared by this crate's integration tests: a fresh database per test on the test
//! server, and the tools of the connection-loss tests (a session killer and a TCP
//! proxy that can play an unreachable server).
//!
//! The server comes from `LEDGER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, the maintenance database): each test
//! creates `ledger_test_<random>` there and drops it at the end. If the server cannot
//! be reached, each test writes one line `skipped: PostgreSQL not reachable at <url>
//! (<reason>)` straight to stderr (visible without `--nocapture`) and returns; set
//! `LEDGER_TEST_POSTGRES_REQUIRED=1` to make that a failure instead (CI with a server).

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_store_postgres::PostgresStore;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_postgres::NoTls;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn server_url() -> String {
    std::env::var("LEDGER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The URL with any password replaced, for messages.
pub fn redacted(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}{tail}");
            }
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `url` pointing at database `db` instead.
pub fn with_database(url: &str, db: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (rest, String::new()),
        };
        let authority = before_query.split('/').next().unwrap_or(before_query);
        format!("{scheme}://{authority}/{db}{query}")
    } else {
        format!("{url} dbname={db}")
    }
}

/// A fresh database on the test server, dropped (with `FORCE`) when this is dropped.
pub struct TestDb {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates the database, or reports the skip and returns `None` if the server
    /// cannot be reached.
    pub async fn create() -> Option<Self> {
        let admin_url = server_url();
        let admin = match admin(&admin_url).await {
            Ok(c) => c,
            Err(reason) => {
                if std::env::var("LEDGER_TEST_POSTGRES_REQUIRED").is_ok_and(|v| v == "1") {
                    panic!(
                        "PostgreSQL not reachable at {} ({reason}) and LEDGER_TEST_POSTGRES_REQUIRED=1",
                        redacted(&admin_url)
                    );
                }
                // Straight to the stderr handle: the test harness does not capture it,
                // so a skip is visible in a normal `cargo test` run.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: PostgreSQL not reachable at {} ({reason})",
                    redacted(&admin_url)
                );
                return None;
            }
        };
        let name = format!("ledger_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    pub async fn store(&self) -> Arc<PostgresStore> {
        Arc::new(PostgresStore::connect(&self.url).await.expect("connect"))
    }

    /// A raw connection to the test database, behind the store's back.
    pub async fn raw(&self) -> tokio_postgres::Client {
        admin(&self.url).await.expect("raw connection")
    }

    pub async fn exec(&self, sql: &str) -> u64 {
        self.raw().await.execute(sql, &[]).await.expect(sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside the test's runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let c = admin(&url).await.ok()?;
                c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not drop test database {}",
                self.name
            );
        }
    }
}

pub async fn admin(url: &str) -> Result<tokio_postgres::Client, String> {
    let connect = tokio_postgres::connect(url, NoTls);
    let (client, conn) = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(describe(&e)),
        Err(_) => return Err("connect timed out after 5 s".into()),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

pub fn describe(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl TestDb {
    /// Terminates every session on the test database (the store's), as an operator
    /// or a fail-over would: `pg_terminate_backend` from the maintenance database.
    /// Returns how many sessions were ended.
    pub async fn kill_sessions(&self) -> usize {
        let admin = admin(&self.admin_url).await.expect("admin connection");
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .expect("terminate sessions")
            .len()
    }
}

/// What a [`Killer`] did.
#[derive(Debug, Default, Clone)]
pub struct Kills {
    /// Kill rounds run.
    pub rounds: usize,
    /// Sessions ended over all rounds.
    pub sessions: usize,
    /// When the last round ended a session.
    pub last: Option<Instant>,
}

/// Ends every session of a test database every `every`, until stopped.
pub struct Killer {
    stop: Arc<AtomicBool>,
    kills: Arc<Mutex<Kills>>,
    task: JoinHandle<()>,
}

impl Killer {
    pub fn start(db: &TestDb, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(Mutex::new(Kills::default()));
        let (admin_url, name) = (db.admin_url.clone(), db.name.clone());
        let task = tokio::spawn({
            let (stop, kills) = (stop.clone(), kills.clone());
            async move {
                let admin = admin(&admin_url).await.expect("killer connection");
                while !stop.load(Ordering::Acquire) {
                    tokio::time::sleep(every).await;
                    let ended = admin
                        .query(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                             WHERE datname = $1 AND pid <> pg_backend_pid()",
                            &[&name],
                        )
                        .await
                        .expect("terminate sessions")
                        .len();
                    let mut k = kills.lock().expect("kills");
                    k.rounds += 1;
                    k.sessions += ended;
                    if ended > 0 {
                        k.last = Some(Instant::now());
                    }
                }
            }
        });
        Self { stop, kills, task }
    }

    /// Stops after the current round; returns what it did.
    pub async fn stop(self) -> Kills {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("killer task");
        let k = self.kills.lock().expect("kills").clone();
        k
    }
}

/// A TCP proxy in front of the test server that can be taken down (its port
/// refuses connections and every proxied connection is cut, as when the server or
/// the network goes away) and brought back on the same port. It can also swallow
/// the server's replies, so that a statement runs (and commits) while its answer
/// never arrives.
pub struct Proxy {
    addr: SocketAddr,
    upstream: String,
    swallow: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mut p = Self {
            addr,
            upstream: upstream.to_owned(),
            swallow: Arc::default(),
            task: None,
        };
        p.serve(listener);
        p
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let swallow = self.swallow.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) cuts every connection.
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, swallow) = (upstream.clone(), swallow.clone());
                conns.spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let up = tokio::io::copy(&mut client_rx, &mut server_tx);
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = server_rx.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            if !swallow.load(Ordering::Acquire) {
                                client_tx.write_all(&buf[..n]).await?;
                            }
                        }
                    };
                    let _ = tokio::join!(up, down);
                });
            }
        }));
    }

    /// From now on the server's replies are dropped (until the proxy goes down).
    pub fn swallow_replies(&self) {
        self.swallow.store(true, Ordering::Release);
    }

    /// Closes the port and cuts every proxied connection.
    pub async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        self.swallow.store(false, Ordering::Release);
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("re-bind proxy");
        self.serve(listener);
    }
}

impl TestDb {
    /// A [`Proxy`] in front of the server, and a key=value connection string for
    /// this database through it, with the same user and password.
    pub async fn behind_proxy(&self) -> (Proxy, String) {
        let config: tokio_postgres::Config = self.url.parse().expect("test URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let proxy = Proxy::start(&format!("{host}:{port}")).await;
        let mut url = format!(
            "host=127.0.0.1 port={} user={} dbname={}",
            proxy.port(),
            config.get_user().unwrap_or("postgres"),
            self.name,
        );
        if let Some(pw) = config.get_password() {
            url.push_str(&format!(" password='{}'", String::from_utf8_lossy(pw)));
        }
        (proxy, url)
    }
}
