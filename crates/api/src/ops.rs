//! Operations: liveness, readiness, Prometheus metrics and the OpenAPI document.
//! None of these need a key (they hold no tenant data).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::dto::{FailingPart, Health, PublisherStatus, Readiness};
use crate::metrics::Gauges;
use crate::SharedState;
use ledger_app::AppError;
use ledger_types::CustomerId;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness fails when a store cannot be probed, a background part or the
/// write path is failing, the disk is full, a key destruction has waited longer
/// than this, or the read model is too far behind.
const MAX_PENDING_DESTRUCTION: std::time::Duration = std::time::Duration::from_secs(10);

async fn gauges(state: &SharedState, failing: &mut Vec<FailingPart>) -> Gauges {
    let mut fail = |part: &str, code: &str, seconds: f64| {
        failing.push(FailingPart {
            part: part.into(),
            code: code.into(),
            seconds,
        })
    };
    // Live probes: a read of the log's last record, and a key-store look-up.
    let store = state.ledger.store();
    let head = match store.head().await {
        Ok(h) => match store.read_all(h.saturating_sub(1), 1).await {
            Ok(_) => h,
            Err(e) => {
                fail("event_store", AppError::from(e).code(), 0.0);
                h
            }
        },
        Err(e) => {
            fail("event_store", AppError::from(e).code(), 0.0);
            0
        }
    };
    let keyring = state.ledger.keyring().clone();
    let probe = tokio::task::spawn_blocking(move || {
        keyring.state(CustomerId::from_uuid(uuid::Uuid::nil()))
    })
    .await;
    match probe {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => fail("key_store", AppError::from(e).code(), 0.0),
        Err(_) => fail("key_store", "INTERNAL", 0.0),
    }
    for (part, code, since) in state.health.failing() {
        fail(part, code, since.as_secs_f64());
    }
    if let Some(since) = state.health.storage_full() {
        fail("storage", "STORAGE_FULL", since.as_secs_f64());
    }
    let pending = state.ledger.shredder().pending();
    let oldest = pending.oldest.unwrap_or_default();
    if oldest > MAX_PENDING_DESTRUCTION {
        fail("destructions", "DESTRUCTION_PENDING", oldest.as_secs_f64());
    }
    let pos = state.read.with_model(|m| m.position()).unwrap_or(0);
    if head.saturating_sub(pos) > state.config.ready_max_lag {
        fail("read_model", "READ_MODEL_BEHIND", 0.0);
    }
    // Erasure requests: the index follows the log (a failure leaves the last
    // figures; the process manager reports its own failures).
    let requests = state.ledger.requests();
    let _ = requests.catch_up().await;
    let now = ledger_types::Timestamp::now();
    let counts = requests.counts(now);
    let mut by_status = [0u64; 5];
    for (slot, s) in by_status.iter_mut().zip(ledger_command::RequestStatus::ALL) {
        *slot = counts.by_status.get(s.as_str()).copied().unwrap_or(0);
    }
    let jobs = requests.job_counts();
    let mut by_state = [0u64; 6];
    for (slot, s) in by_state.iter_mut().zip(ledger_command::JobState::ALL) {
        *slot = jobs.get(s.as_str()).copied().unwrap_or(0);
    }
    Gauges {
        publisher: state.health.sink().map(|s| (s.state, s.position)),
        log_head: head,
        read_model_position: pos,
        pending_destructions: pending.count as u64,
        oldest_pending_destruction_seconds: oldest.as_secs_f64(),
        erasure_requests: by_status,
        erasure_requests_overdue: counts.overdue,
        erasure_jobs: by_state,
        oldest_open_request_seconds: counts.oldest_open_received_at.map_or(0.0, |t| {
            now.millis().saturating_sub(t.millis()).max(0) as f64 / 1000.0
        }),
    }
}

/// Readiness: the stores answer, no background part is failing, the disk is not
/// full, no key destruction is overdue, and the read model is within
/// `ready_max_lag` events of the log head. A 503 names every failing part.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `failing` names each failing part (a store unreachable or full, the projector or reconciler failing, a key destruction overdue, the read model behind)", body = Readiness),
    ))]
pub async fn readyz(State(state): State<SharedState>) -> impl IntoResponse {
    let mut failing = Vec::new();
    let g = gauges(&state, &mut failing).await;
    let ready = failing.is_empty();
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(Readiness {
            status: if ready { "ready" } else { "not_ready" }.into(),
            log_head: g.log_head,
            read_model_position: g.read_model_position,
            lag: g.log_head.saturating_sub(g.read_model_position),
            pending_destructions: g.pending_destructions,
            oldest_pending_destruction_seconds: g.oldest_pending_destruction_seconds,
            failing,
            publisher: state.health.sink().map(|s| PublisherStatus {
                state: s.state.as_str().into(),
                position: s.position,
                lag: g.log_head.saturating_sub(s.position),
                error: s.error.map(str::to_owned),
            }),
        }),
    )
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let g = gauges(&state, &mut Vec::new()).await;
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(g),
    )
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi(State(state): State<SharedState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        state.openapi_json.clone(),
    )
}
