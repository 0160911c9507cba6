//! NATS JetStream for the publisher's suite (`publish_nats`): a stream name and
//! subject prefix of its own per test (deleted afterwards), reading the stream
//! back, the admin's change feed to compare with, and a TCP proxy a test can cut.
//!
//! The server comes from `LEDGER_TEST_NATS_URL` (default
//! `nats://127.0.0.1:4222`, started with `-js`). If it cannot be reached the test
//! prints one line `skipped: ...` and returns; with `LEDGER_TEST_NATS_REQUIRED=1`
//! (CI, which starts the server) that is a failure instead.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::pg::block_on;
use crate::server::ADMIN;

const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// A NATS test that cannot run: one line `skipped: REASON`, or a failure with
/// `LEDGER_TEST_NATS_REQUIRED=1` (CI, which starts the server).
pub fn skip_or_fail(reason: &str) {
    if std::env::var("LEDGER_TEST_NATS_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{reason}, and LEDGER_TEST_NATS_REQUIRED=1");
    }
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

/// One message of the stream.
#[derive(Debug, Clone)]
pub struct Message {
    pub subject: String,
    pub msg_id: Option<String>,
    pub body: Value,
}

/// A stream and subject prefix of one test, deleted when dropped.
#[derive(Debug)]
pub struct TestStream {
    pub url: String,
    pub name: String,
    pub prefix: String,
}

impl TestStream {
    /// `None` (after `skipped: ...`) when no JetStream answers.
    pub fn create(tag: &str) -> Option<Self> {
        let url = std::env::var("LEDGER_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let probe = block_on(async {
            let client =
                tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url.as_str()))
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
            // A stream no test uses: "not found" says JetStream answers.
            match async_nats::jetstream::new(client)
                .get_stream("LEDGER_TEST_PROBE_NONE")
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => match e.kind() {
                    async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                        if j.code() == 404 =>
                    {
                        Ok(())
                    }
                    _ => Err(format!("JetStream: {e}")),
                },
            }
        });
        if let Err(reason) = probe {
            skip_or_fail(&format!("NATS JetStream not reachable at {url} ({reason})"));
            return None;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        Some(Self {
            url,
            name: format!("LEDGER_TEST_{}_{id}", tag.to_ascii_uppercase()),
            prefix: format!("ledgertest_{id}"),
        })
    }

    /// `serve`'s flags publishing to this stream through `url`.
    pub fn serve_args(&self, url: &str) -> Vec<String> {
        vec![
            "--publish".into(),
            url.into(),
            "--publish-stream".into(),
            self.name.clone(),
            "--publish-prefix".into(),
            self.prefix.clone(),
        ]
    }

    async fn stream(&self) -> Option<async_nats::jetstream::stream::Stream> {
        let client = async_nats::connect(self.url.as_str()).await.ok()?;
        async_nats::jetstream::new(client)
            .get_stream(&self.name)
            .await
            .ok()
    }

    /// Messages in the stream now (0 before it exists).
    pub fn count(&self) -> u64 {
        block_on(async {
            match self.stream().await {
                Some(s) => s.cached_info().state.messages,
                None => 0,
            }
        })
    }

    /// Every message of the stream, in stream order.
    pub fn messages(&self) -> Vec<Message> {
        block_on(async {
            let Some(s) = self.stream().await else {
                return Vec::new();
            };
            let state = s.cached_info().state.clone();
            let mut out = Vec::new();
            for seq in state.first_sequence..=state.last_sequence {
                if state.messages == 0 {
                    break;
                }
                let m = s.get_raw_message(seq).await.expect("read a message");
                out.push(Message {
                    subject: m.subject.to_string(),
                    msg_id: m
                        .headers
                        .get(async_nats::header::NATS_MESSAGE_ID)
                        .map(|v| v.as_str().to_owned()),
                    body: serde_json::from_slice(&m.payload).expect("a JSON body"),
                });
            }
            out
        })
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        block_on(async {
            if let Ok(c) = async_nats::connect(self.url.as_str()).await {
                let _ = async_nats::jetstream::new(c)
                    .delete_stream(&self.name)
                    .await;
            }
        });
    }
}

/// Every public event of the log, as the admin's change feed serves it.
pub fn feed(base: &str) -> Vec<Value> {
    crate::server::feed_of(base, ADMIN, 0)
}

/// A TCP proxy from a loopback port to `upstream`, which a test cuts (closing
/// the port and every connection through it) and starts again on the same port.
#[derive(Debug)]
pub struct Proxy {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Proxy {
    pub fn start(port: u16, upstream: &str) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the proxy port");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.to_owned();
        let accept = {
            let (stop, conns) = (stop.clone(), conns.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let Ok(server) = TcpStream::connect(&upstream) else {
                                continue;
                            };
                            if let Ok(mut c) = conns.lock() {
                                c.push(client.try_clone().unwrap());
                                c.push(server.try_clone().unwrap());
                            }
                            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                            pipe(server, client);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Self {
            stop,
            conns,
            accept: Some(accept),
        }
    }

    /// Closes the port and every connection: the server is gone.
    pub fn cut(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        if let Ok(c) = self.conns.lock() {
            for s in c.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}
