//! Idempotency keys on writes (ADR 0007).
//!
//! A write sent with `Idempotency-Key: K` is recorded under (caller's broadcaster,
//! K) with a fingerprint of its method, path and body. A retry with the same key and
//! the same request gets the first response again (header `Idempotent-Replayed:
//! true`) without running the command twice; the same key with a different request
//! is `422 IDEMPOTENCY_KEY_REUSED`; a retry while the first is still running is
//! `409 IDEMPOTENCY_IN_PROGRESS`. 5xx answers are not remembered (the retry runs).
//!
//! The cache is in memory, bounded (oldest entries evicted first) and entries expire
//! after a TTL. Write responses hold ids, positions and receipts only, never personal
//! data, so the cache holds none either. After a restart a retried command runs
//! again; the domain makes that safe for erasure (a repeat returns the first
//! receipt) and for client-chosen subscription, payment and refund ids (a repeat is
//! refused with `*_EXISTS`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ledger_types::BroadcasterId;
use sha2::{Digest, Sha256};

use crate::auth::tenant_of;
use crate::error::{body_too_large, ApiError};
use crate::SharedState;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";
/// Responses larger than this are not cached (none of ours are).
const MAX_CACHED_BODY: usize = 256 * 1024;

type Key = (BroadcasterId, String);

#[derive(Debug, Clone)]
enum Entry {
    InFlight {
        fingerprint: [u8; 32],
    },
    Done {
        fingerprint: [u8; 32],
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
}

#[derive(Debug, Default)]
struct Cache {
    map: HashMap<Key, (Entry, Instant)>,
    order: VecDeque<(Key, Instant)>,
}

#[derive(Debug)]
pub struct Idempotency {
    cache: Mutex<Cache>,
    capacity: usize,
    ttl: Duration,
}

enum Begin {
    New,
    Replay(Response),
    InFlight,
    Mismatch,
}

impl Idempotency {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            cache: Mutex::new(Cache::default()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    pub fn len(&self) -> usize {
        self.cache.lock().map(|c| c.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn begin(&self, key: &Key, fingerprint: [u8; 32]) -> Begin {
        let Ok(mut c) = self.cache.lock() else {
            return Begin::New;
        };
        let now = Instant::now();
        // Expire from the front of the insertion order.
        while let Some((k, at)) = c.order.front().cloned() {
            if now.duration_since(at) <= self.ttl {
                break;
            }
            c.order.pop_front();
            if c.map.get(&k).is_some_and(|(_, t)| *t == at) {
                c.map.remove(&k);
            }
        }
        match c.map.get(key) {
            Some((Entry::InFlight { fingerprint: f }, _)) => {
                if *f == fingerprint {
                    Begin::InFlight
                } else {
                    Begin::Mismatch
                }
            }
            Some((
                Entry::Done {
                    fingerprint: f,
                    status,
                    content_type,
                    body,
                },
                _,
            )) => {
                if *f != fingerprint {
                    return Begin::Mismatch;
                }
                let mut res = Response::new(Body::from(body.clone()));
                *res.status_mut() = *status;
                if let Some(ct) = content_type {
                    res.headers_mut()
                        .insert(axum::http::header::CONTENT_TYPE, ct.clone());
                }
                res.headers_mut()
                    .insert(REPLAYED, HeaderValue::from_static("true"));
                Begin::Replay(res)
            }
            None => {
                // Bounded: evict the oldest entries to make room.
                while c.map.len() >= self.capacity {
                    let Some((k, at)) = c.order.pop_front() else {
                        break;
                    };
                    if c.map.get(&k).is_some_and(|(_, t)| *t == at) {
                        c.map.remove(&k);
                    }
                }
                c.map
                    .insert(key.clone(), (Entry::InFlight { fingerprint }, now));
                c.order.push_back((key.clone(), now));
                Begin::New
            }
        }
    }

    fn finish(&self, key: &Key, entry: Option<Entry>) {
        let Ok(mut c) = self.cache.lock() else { return };
        match entry {
            Some(e) => {
                if let Some(slot) = c.map.get_mut(key) {
                    slot.0 = e;
                }
            }
            None => {
                c.map.remove(key);
            }
        }
    }
}

/// Forgets an in-flight entry if the request never finished (cancelled or panicked).
struct Guard<'a> {
    idem: &'a Idempotency,
    key: Key,
    done: bool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.idem.finish(&self.key, None);
        }
    }
}

fn valid_key(k: &str) -> bool {
    (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
}

/// The middleware. Applies to POST, PUT, PATCH and DELETE with an `Idempotency-Key`
/// header from an authenticated broadcaster; everything else passes through.
pub async fn layer(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let Some(key) = raw
        .to_str()
        .ok()
        .filter(|k| valid_key(k))
        .map(str::to_owned)
    else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_IDEMPOTENCY_KEY",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
        .into_response();
    };
    let (parts, body) = req.into_parts();
    let Some(b) = tenant_of(&parts, &state.keys) else {
        // Not a broadcaster: the handler's own extractor answers (401 or admin).
        return next.run(Request::from_parts(parts, body)).await;
    };
    let bytes = match axum::body::to_bytes(body, state.config.body_limit).await {
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
    match idem.begin(&key, fingerprint) {
        Begin::New => {}
        Begin::Replay(res) => {
            state
                .metrics
                .idempotent_replays
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return res;
        }
        Begin::InFlight => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_IN_PROGRESS",
                "a request with this Idempotency-Key is still being processed; retry later",
            )
            .into_response()
        }
        Begin::Mismatch => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used for a different request",
            )
            .into_response()
        }
    }
    let mut guard = Guard {
        idem,
        key,
        done: false,
    };
    let res = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if res.status().is_server_error() {
        return res; // the guard forgets the key: a retry runs again
    }
    let (rparts, rbody) = res.into_parts();
    let body = match axum::body::to_bytes(rbody, MAX_CACHED_BODY).await {
        Ok(b) => b,
        Err(_) => return ApiError::internal().into_response(),
    };
    idem.finish(
        &guard.key,
        Some(Entry::Done {
            fingerprint,
            status: rparts.status,
            content_type: rparts
                .headers
                .get(axum::http::header::CONTENT_TYPE)
                .cloned(),
            body: body.clone(),
        }),
    );
    guard.done = true;
    Response::from_parts(rparts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_scoped_by_broadcaster() {
        let idem = Idempotency::new(2, Duration::from_secs(60));
        let (a, b) = (BroadcasterId::new(), BroadcasterId::new());
        let fp = [1u8; 32];
        assert!(matches!(idem.begin(&(a, "k".into()), fp), Begin::New));
        assert!(matches!(idem.begin(&(b, "k".into()), fp), Begin::New));
        assert!(matches!(idem.begin(&(a, "k".into()), fp), Begin::InFlight));
        assert!(matches!(
            idem.begin(&(a, "k".into()), [2u8; 32]),
            Begin::Mismatch
        ));
        assert!(matches!(idem.begin(&(a, "k2".into()), fp), Begin::New));
        assert_eq!(idem.len(), 2, "the oldest entry made room");
        assert!(matches!(idem.begin(&(a, "k".into()), fp), Begin::New));
    }
}
