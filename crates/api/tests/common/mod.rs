//! The in-process harness: a real SQLite store, key store and read side in a temp
//! folder, the real router, requests sent with `tower::ServiceExt::oneshot`.
//!
//! Every response is recorded as (method, documented route, status) so the OpenAPI
//! test can check that each documented response is produced by some test.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use ledger_api::auth::{new_token, ADMIN_KEY_PREFIX};
use ledger_api::{AdminKey, ApiConfig, ApiKeys, ApiState, Services, SharedState};
use ledger_app::read::ReadSide;
use ledger_app::Ledger;
use ledger_crypto::{
    CryptoError, Kek, KeyState, KeyStore, Keyring, Rewrap, SqliteKeyStore, WrappedKey,
};
use ledger_store_sqlite::{SqliteStore, SqliteViewStore};
use ledger_types::{CustomerId, Timestamp};
use serde_json::{json, Value};
use tower::ServiceExt as _;

pub type Seen = BTreeSet<(String, String, u16)>;

pub fn seen() -> &'static Mutex<Seen> {
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    SEEN.get_or_init(|| Mutex::new(BTreeSet::new()))
}

/// The documented route templates (from the OpenAPI document).
pub fn templates() -> &'static Vec<String> {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| {
        let doc: Value = serde_json::from_str(&ledger_api::openapi_json()).unwrap();
        doc["paths"].as_object().unwrap().keys().cloned().collect()
    })
}

/// The documented template a concrete path matches (segment by segment; a
/// literal segment beats a `{param}`).
pub fn template_of(path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &String)> = None;
    for t in templates() {
        let ts: Vec<&str> = t.split('/').collect();
        if ts.len() != segs.len() {
            continue;
        }
        let mut literal = 0;
        let ok = ts.iter().zip(&segs).all(|(a, b)| {
            if a.starts_with('{') {
                true
            } else {
                literal += 1;
                a == b
            }
        });
        if ok && best.is_none_or(|(n, _)| literal > n) {
            best = Some((literal, t));
        }
    }
    best.map(|(_, t)| t.clone())
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub token: String,
}

/// A key store that fails on demand, in front of the real one: `destroy` (and
/// optionally every call) answers `Unavailable` while switched on, or takes `delay`
/// first, like a key store that is unreachable or slow.
#[derive(Debug, Default)]
pub struct FlakyKeys {
    inner: Option<SqliteKeyStore>,
    pub fail_destroy: AtomicBool,
    pub fail_all: AtomicBool,
    pub destroy_delay_ms: AtomicU64,
}

impl FlakyKeys {
    fn unavailable(&self, destroying: bool) -> Result<(), CryptoError> {
        if self.fail_all.load(Ordering::SeqCst)
            || (destroying && self.fail_destroy.load(Ordering::SeqCst))
        {
            return Err(CryptoError::Unavailable(
                "test: key store switched off".into(),
            ));
        }
        Ok(())
    }
    fn inner(&self) -> &SqliteKeyStore {
        self.inner.as_ref().expect("inner key store")
    }
}

impl KeyStore for FlakyKeys {
    fn insert_new(&self, keys: &[(CustomerId, WrappedKey)]) -> Result<Vec<KeyState>, CryptoError> {
        self.unavailable(false)?;
        self.inner().insert_new(keys)
    }
    fn get(&self, c: CustomerId) -> Result<KeyState, CryptoError> {
        self.unavailable(false)?;
        self.inner().get(c)
    }
    fn destroy(&self, cs: &[CustomerId], at: Timestamp) -> Result<usize, CryptoError> {
        let ms = self.destroy_delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        self.unavailable(true)?;
        self.inner().destroy(cs, at)
    }
    fn active_ids(&self) -> Result<Vec<CustomerId>, CryptoError> {
        self.unavailable(false)?;
        self.inner().active_ids()
    }
    fn destroyed_ids(&self) -> Result<Vec<CustomerId>, CryptoError> {
        self.unavailable(false)?;
        self.inner().destroyed_ids()
    }
    fn rewrap_all(&self, rewrap: Rewrap) -> Result<usize, CryptoError> {
        self.unavailable(false)?;
        self.inner().rewrap_all(rewrap)
    }
}

pub struct Harness {
    pub app: Router,
    pub state: SharedState,
    pub admin: String,
    /// The key store, switchable to failing.
    pub keys: Arc<FlakyKeys>,
    /// White-label broadcasters A and B, and a shared one S.
    pub a: Tenant,
    pub b: Tenant,
    pub s: Tenant,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct Res {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    pub headers: HeaderMap,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_config(ApiConfig::default()).await
    }

    pub async fn with_config(config: ApiConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("events.sqlite")).unwrap());
        let keys = Arc::new(FlakyKeys {
            inner: Some(SqliteKeyStore::open(&dir.path().join("keys.sqlite")).unwrap()),
            ..Default::default()
        });
        let keyring = Arc::new(Keyring::new(Kek::generate(), keys.clone()));
        let ledger = Ledger::new(store.clone(), keyring.clone());
        let views = SqliteViewStore::open(&dir.path().join("views.sqlite")).unwrap();
        let read = Arc::new(
            ReadSide::open(store.clone(), keyring, Arc::new(views))
                .await
                .unwrap(),
        );
        let admin = new_token(ADMIN_KEY_PREFIX);
        // Idempotent answers saved in the event database, as `serve` does.
        let services = Services {
            responses: store,
            ..Services::default()
        };
        let state = ApiState::with_services(
            ledger,
            read,
            Arc::new(ApiKeys::in_memory()),
            AdminKey::from_token(&admin),
            config,
            services,
        );
        let app = ledger_api::router(state.clone());
        let mut h = Harness {
            app,
            state,
            admin,
            keys,
            a: Tenant {
                id: String::new(),
                token: String::new(),
            },
            b: Tenant {
                id: String::new(),
                token: String::new(),
            },
            s: Tenant {
                id: String::new(),
                token: String::new(),
            },
            _dir: dir,
        };
        h.a = h.tenant("Alpha Stream", "white_label").await;
        h.b = h.tenant("Beta Stream", "white_label").await;
        h.s = h.tenant("Shared Media", "shared").await;
        h
    }

    /// Creates a broadcaster and a key for it through the admin endpoints.
    pub async fn tenant(&self, name: &str, integration: &str) -> Tenant {
        let admin = self.admin.clone();
        let r = self
            .call(
                Method::POST,
                "/v1/admin/broadcasters",
                Some(&admin),
                Some(json!({"name": name, "integration": integration})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let id = r.body["broadcaster_id"].as_str().unwrap().to_owned();
        let r = self
            .call(
                Method::POST,
                &format!("/v1/admin/broadcasters/{id}/api-keys"),
                Some(&admin),
                Some(json!({"label": "test"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        Tenant {
            id,
            token: r.body["token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Res {
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if let Some(t) = template_of(&path) {
            seen()
                .lock()
                .unwrap()
                .insert((method.to_lowercase(), t, status.as_u16()));
        }
        // Every error, everywhere, has the one body shape.
        if (status.is_client_error() || status.is_server_error()) && path != "/readyz" {
            assert!(
                body["code"].is_string()
                    && body["message"].is_string()
                    && body.get("details").is_some(),
                "error body shape for {method} {path}: {text}"
            );
        }
        Res {
            status,
            body,
            text,
            headers,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Res {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&b).unwrap())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Res {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    pub async fn get(&self, path: &str, t: &Tenant) -> Res {
        self.call(Method::GET, path, Some(&t.token), None).await
    }

    pub async fn post(&self, path: &str, t: &Tenant, body: Value) -> Res {
        self.call(Method::POST, path, Some(&t.token), Some(body))
            .await
    }

    /// Registers a customer for `t`; returns its id.
    pub async fn register(&self, t: &Tenant, first: &str, last: &str, email: &str) -> String {
        let r = self
            .post(
                "/v1/customers",
                t,
                json!({
                    "email": email, "password_hash": "argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                    "first_name": first, "last_name": last,
                    "address": "12 Rue de la Paix, Paris", "phone_number": "+33 1 23 45 67 89",
                    "custom_answers": [{"question": "Favourite sport?", "answer": "Curling"}],
                    "registration_ip": "198.51.100.7"
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["customer_id"].as_str().unwrap().to_owned()
    }

    pub async fn subscribe(&self, t: &Tenant, c: &str) -> String {
        let r = self
            .post(
                &format!("/v1/customers/{c}/subscriptions"),
                t,
                json!({"offer_id": "premium-monthly"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["subscription_id"].as_str().unwrap().to_owned()
    }

    /// Refunds `minor` units of a payment; returns the refund id.
    pub async fn refund(
        &self,
        t: &Tenant,
        c: &str,
        pid: &str,
        minor: i64,
        currency: &str,
    ) -> String {
        let r = self
            .post(
                &format!("/v1/customers/{c}/payments/{pid}/refunds"),
                t,
                json!({"amount": {"minor": minor, "currency": currency}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["refund_id"].as_str().unwrap().to_owned()
    }

    pub async fn pay(&self, t: &Tenant, c: &str, minor: i64, currency: &str) -> String {
        let r = self
            .post(&format!("/v1/customers/{c}/payments"), t,
                json!({"offer_id": "premium-monthly", "amount": {"minor": minor, "currency": currency}, "payer_ip": "203.0.113.9"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["payment_id"].as_str().unwrap().to_owned()
    }
}
