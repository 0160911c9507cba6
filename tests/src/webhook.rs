//! A webhook receiver for the tests: an axum server on loopback that checks each
//! message's Standard Webhooks signature (with the specification's library) and
//! records it, and that can answer 500, answer late, or go down and come back on
//! the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    pub body: Value,
    pub at: Instant,
    /// The signature checked out under the secret set with [`Receiver::set_secret`].
    pub verified: bool,
    /// What the receiver answered.
    pub status: u16,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// 500, recorded.
    Fail,
    /// 200 after this long (longer than the sender's timeout: a timeout).
    Slow(Duration),
}

#[derive(Debug)]
struct Shared {
    secret: Mutex<Option<String>>,
    mode: Mutex<Mode>,
    received: Mutex<Vec<Received>>,
}

/// A receiver on `127.0.0.1:port`.
#[derive(Debug)]
pub struct Receiver {
    pub port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret = shared.secret.lock().unwrap().clone();
    let verified = secret.is_some_and(|s| {
        standardwebhooks::Webhook::new(&s).is_ok_and(|w| w.verify(&body, &headers).is_ok())
    });
    let mode = *shared.mode.lock().unwrap();
    if let Mode::Slow(d) = mode {
        tokio::time::sleep(d).await;
    }
    let status = if mode == Mode::Fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    shared.received.lock().unwrap().push(Received {
        id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
        verified,
        status: status.as_u16(),
    });
    status
}

impl Receiver {
    /// Starts on a free port.
    pub fn start() -> Self {
        let mut r = Self {
            port: crate::server::free_port(),
            shared: Arc::new(Shared {
                secret: Mutex::new(None),
                mode: Mutex::new(Mode::Ok),
                received: Mutex::new(Vec::new()),
            }),
            runtime: None,
        };
        r.up();
        r
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    pub fn set_secret(&self, secret: &str) {
        *self.shared.secret.lock().unwrap() = Some(secret.to_owned());
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Stops listening and drops every open connection.
    pub fn down(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Listens again on the same port.
    pub fn up(&mut self) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        let listener = loop {
            match rt.block_on(tokio::net::TcpListener::bind(addr)) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "bind {addr}: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(self.shared.clone());
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        self.runtime = Some(rt);
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// How many messages were received (answered or not).
    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}
