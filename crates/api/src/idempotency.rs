//! Idempotency keys on writes (ADR 0007).
//!
//! A write sent with `Idempotency-Key: K` is recorded under (caller's broadcaster,
//! K) with a fingerprint of its method, path, query and body. A retry with the same
//! key and the same request gets the first answer again (header
//! `Idempotent-Replayed: true`) without running the command twice; the same key
//! with a different request is `422 IDEMPOTENCY_KEY_REUSED`; a retry while the
//! first is still running is `409 IDEMPOTENCY_IN_PROGRESS`.
//!
//! # Why it is shaped this way
//!
//! - **Durable.** Answers are saved in the store that holds the write
//!   ([`ledger_store::responses`]): the event database for SQLite (in the writer's
//!   group commits) and PostgreSQL. They survive a restart and are kept for a TTL
//!   (24 h by default) and a bounded count; `serve` expires them.
//! - **Only answers without personal data are saved.** [`REPLAYABLE`] lists the
//!   writes whose answers hold ids, positions, refusal codes and receipts only.
//!   Everything else is never saved: a read sent as a POST (`/v1/customers/search`
//!   answers with opened profiles), admin operations (an API key's token is shown
//!   once), and any route added later until it is classified here. On those, an
//!   `Idempotency-Key` is accepted and has no effect. So erasure can never be undone
//!   by a replay of an answer saved before it.
//! - **Only final answers are saved.** A 5xx (the write did not commit, or its
//!   outcome is unknown) and a `202` (an erasure whose key destruction is still
//!   pending) are not; the retry runs again. Running again is safe: a registration
//!   with a key gets a customer id derived from (broadcaster, key)
//!   ([`derived_customer_id`]), so a retry after a lost answer finds its customer
//!   instead of creating a second; payments, subscriptions, refunds and erasure
//!   requests carry the client's ids or, when it chose none, ids derived from the
//!   key ([`new_id`]); erasure returns its first receipt.
//! - **A write that committed without its answer is still answered faithfully.**
//!   The answer is saved after the write (in the store's next group commit), so
//!   a kill or a fail-over in between loses it while the write stands. The
//!   handler therefore runs inside [`ledger_app::retry::faithfully`]: its events
//!   get ids derived from (caller, key, fingerprint), and the retry finds them in
//!   the stream and answers with the first positions instead of `*_EXISTS`.
//! - In flight, the key is held in memory (one process serves a store), which
//!   answers a concurrent retry with 409.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ledger_store::responses::{SavedResponse, MAX_KEY_BYTES, MAX_SAVED_BODY_BYTES};
use ledger_types::{BroadcasterId, CustomerId, Timestamp};
use sha2::{Digest, Sha256};

use crate::auth::idempotency_scope;
use crate::error::{body_too_large, ApiError};
use crate::SharedState;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";

/// The writes whose answers may be saved and replayed: their bodies hold ids,
/// positions, refusal codes and erasure receipts, never personal data. A route
/// that is not here is never saved.
pub const REPLAYABLE: &[(Method, &str)] = &[
    (Method::POST, "/v1/customers"),
    (Method::PATCH, "/v1/customers/{id}"),
    (Method::DELETE, "/v1/customers/{id}"),
    (Method::POST, "/v1/customers/{id}/logins"),
    (Method::POST, "/v1/customers/{id}/anonymize"),
    (Method::POST, "/v1/customers/{id}/subscriptions"),
    (
        Method::POST,
        "/v1/customers/{id}/subscriptions/{subscription_id}/terminate",
    ),
    (Method::POST, "/v1/customers/{id}/payments"),
    (
        Method::POST,
        "/v1/customers/{id}/payments/{payment_id}/refunds",
    ),
    (Method::POST, "/v1/erasure-requests"),
    (Method::POST, "/v1/erasure-requests/{id}/cancel"),
    (Method::POST, "/v1/erasure-requests/{id}/extend"),
    (Method::POST, "/v1/admin/customers/{id}/anonymize"),
    (Method::POST, "/v1/customers/{id}/terminate-and-erase"),
    (Method::POST, "/v1/erasure-jobs"),
    (Method::POST, "/v1/erasure-jobs/{id}/cancel"),
];

/// The writes that accept an `Idempotency-Key` but never save an answer, and why.
pub const NOT_REPLAYABLE: &[(Method, &str, &str)] = &[
    (
        Method::POST,
        "/v1/customers/search",
        "a read: its answer holds opened profiles, which must not outlive an erasure",
    ),
    (
        Method::POST,
        "/v1/admin/broadcasters",
        "admin operation: not scoped to a broadcaster",
    ),
    (
        Method::POST,
        "/v1/admin/broadcasters/{id}/api-keys",
        "admin operation: the answer holds a token shown once",
    ),
    (
        Method::POST,
        "/v1/webhook-endpoints",
        "the answer holds the endpoint's signing secret, shown once",
    ),
    (
        Method::DELETE,
        "/v1/admin/api-keys/{key_id}",
        "admin operation: not scoped to a broadcaster",
    ),
];

type Key = (BroadcasterId, String);

/// The keys whose request is running now, with its fingerprint.
#[derive(Debug, Default)]
pub struct Idempotency {
    in_flight: Mutex<HashMap<Key, [u8; 32]>>,
}

impl Idempotency {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests with a key running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Claims the key for a request; `Err` with the holder's fingerprint if taken.
    fn claim(&self, key: &Key, fingerprint: [u8; 32]) -> Result<(), [u8; 32]> {
        let Ok(mut m) = self.in_flight.lock() else {
            return Ok(());
        };
        match m.get(key) {
            Some(f) => Err(*f),
            None => {
                m.insert(key.clone(), fingerprint);
                Ok(())
            }
        }
    }

    fn release(&self, key: &Key) {
        if let Ok(mut m) = self.in_flight.lock() {
            m.remove(key);
        }
    }
}

/// Releases a claimed key however the request ends (answered, cancelled, panicked).
struct Claim<'a> {
    idem: &'a Idempotency,
    key: Key,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.idem.release(&self.key);
    }
}

fn valid_key(k: &str) -> bool {
    (1..=MAX_KEY_BYTES).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
}

/// The customer id a registration with this idempotency key gets: derived from
/// (broadcaster, key), so a retry whose first answer was lost registers nothing
/// new (the aggregate refuses a second registration of the same id). UUID v8
/// (custom) from SHA-256 over a domain tag, the broadcaster id and the key.
pub fn derived_customer_id(b: BroadcasterId, key: &str) -> CustomerId {
    let mut h = Sha256::new();
    h.update(b"ledger registration idempotency key v1\0");
    h.update(b.as_bytes());
    h.update(key.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    CustomerId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// The id of a `kind` of entity a write creates when the client chose none:
/// derived from the request's idempotency key when it has one (see
/// [`ledger_app::retry::derived_id`]), so that a retry after a lost answer names
/// the entity the first attempt created; fresh otherwise.
pub fn new_id<T>(kind: &str, wrap: fn(uuid::Uuid) -> T) -> T {
    wrap(ledger_app::retry::derived_id(kind).unwrap_or_else(uuid::Uuid::new_v4))
}

/// The `Idempotency-Key` of a request, if it has a valid one.
pub fn key_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| valid_key(k))
}

fn replayable(method: &Method, route: Option<&MatchedPath>) -> bool {
    route.is_some_and(|r| {
        REPLAYABLE
            .iter()
            .any(|(m, p)| m == method && *p == r.as_str())
    })
}

fn replay(saved: SavedResponse) -> Response {
    let mut res = Response::new(Body::from(saved.body));
    *res.status_mut() = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK);
    if let Some(ct) = saved
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        res.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, ct);
    }
    res.headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    res
}

/// The middleware. Applies to the [`REPLAYABLE`] writes with an `Idempotency-Key`
/// from an authenticated broadcaster; everything else passes through (a malformed
/// key is refused on every write).
pub async fn layer(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    if req.headers().get(HEADER).is_none() {
        return next.run(req).await;
    }
    let Some(key) = key_of(req.headers()).map(str::to_owned) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_IDEMPOTENCY_KEY",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
        .into_response();
    };
    if !replayable(req.method(), req.extensions().get::<MatchedPath>()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Some(b) = idempotency_scope(&parts, &state) else {
        // Not a broadcaster nor the operator: the handler's own extractor answers
        // (401).
        return next.run(Request::from_parts(parts, body)).await;
    };
    let limit = crate::layers::body_limit_for(&state, &parts.method, parts.uri.path());
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return body_too_large().into_response(),
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str().as_bytes());
    h.update([0]);
    h.update(parts.uri.path().as_bytes());
    h.update([0]);
    h.update(parts.uri.query().unwrap_or("").as_bytes());
    h.update([0]);
    h.update(&bytes);
    let fingerprint: [u8; 32] = h.finalize().into();
    let key = (b, key);
    let idem = &state.idempotency;
    if let Err(holder) = idem.claim(&key, fingerprint) {
        return if holder == fingerprint {
            ApiError::new(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_IN_PROGRESS",
                "a request with this Idempotency-Key is still being processed; retry later",
            )
        } else {
            key_reused()
        }
        .into_response();
    }
    let _claim = Claim {
        idem,
        key: key.clone(),
    };
    let scope = *b.as_bytes();
    match state.responses.recall(scope, &key.1).await {
        Ok(Some(saved)) if saved.fingerprint == fingerprint => {
            state.metrics.idempotent_replays.increment(1);
            return replay(saved);
        }
        Ok(Some(_)) => return key_reused().into_response(),
        Ok(None) => {}
        // Without knowing whether this key was answered, running the command
        // could do it twice: the client retries later instead.
        Err(e) => return ApiError::from(ledger_app::AppError::from(e)).into_response(),
    }
    // Events the handler appends get ids derived from this request, so that a
    // retry whose saved answer was lost is still answered as the first time
    // (`ledger_app::retry`).
    let token = ledger_app::retry::RetryToken::new(scope, &key.1, fingerprint);
    let res = ledger_app::retry::faithfully(
        token,
        next.run(Request::from_parts(parts, Body::from(bytes))),
    )
    .await;
    let status = res.status();
    if status.is_server_error() || status == StatusCode::ACCEPTED {
        return res; // not final: a retry runs again
    }
    let (rparts, rbody) = res.into_parts();
    let body = match axum::body::to_bytes(rbody, MAX_SAVED_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return ApiError::internal().into_response(),
    };
    let saved = SavedResponse {
        fingerprint,
        status: status.as_u16(),
        content_type: rparts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.to_vec(),
        saved_at: Timestamp::now(),
    };
    if let Err(e) = state.responses.remember(scope, &key.1, saved).await {
        // The write itself is committed: answer it. A retry runs again, which the
        // commands make safe (see the module doc).
        tracing::warn!(error = %e, "could not save the answer to an idempotent write");
    }
    Response::from_parts(rparts, Body::from(body))
}

fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
        "this Idempotency-Key was used for a different request",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_in_flight_is_held_per_broadcaster_and_released() {
        let idem = Idempotency::new();
        let (a, b) = (BroadcasterId::new(), BroadcasterId::new());
        let fp = [1u8; 32];
        assert_eq!(idem.claim(&(a, "k".into()), fp), Ok(()));
        assert_eq!(idem.claim(&(b, "k".into()), fp), Ok(()));
        assert_eq!(idem.claim(&(a, "k".into()), [2u8; 32]), Err(fp));
        idem.release(&(a, "k".into()));
        assert_eq!(idem.claim(&(a, "k".into()), [2u8; 32]), Ok(()));
        assert_eq!(idem.in_flight(), 2);
    }

    #[test]
    fn registration_ids_derive_from_broadcaster_and_key() {
        let (a, b) = (BroadcasterId::new(), BroadcasterId::new());
        assert_eq!(derived_customer_id(a, "k1"), derived_customer_id(a, "k1"));
        assert_ne!(derived_customer_id(a, "k1"), derived_customer_id(a, "k2"));
        assert_ne!(derived_customer_id(a, "k1"), derived_customer_id(b, "k1"));
        assert_eq!(derived_customer_id(a, "k1").as_uuid().get_version_num(), 8);
    }
}
