//! Operations: liveness, readiness, Prometheus metrics and the OpenAPI document.
//! None of these need a key (they hold no tenant data).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::dto::{Health, Readiness};
use crate::metrics::Gauges;
use crate::SharedState;

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

async fn gauges(state: &SharedState) -> Result<Gauges, ()> {
    let head = state.ledger.store().head().await.map_err(|_| ())?;
    let pos = state.read.with_model(|m| m.position()).map_err(|_| ())?;
    Ok(Gauges {
        log_head: head,
        read_model_position: pos,
    })
}

/// Readiness: the store answers and the read model is within `ready_max_lag`
/// events of the log head.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Store unreachable or read model behind", body = Readiness),
    ))]
pub async fn readyz(State(state): State<SharedState>) -> impl IntoResponse {
    match gauges(&state).await {
        Ok(g) => {
            let lag = g.log_head.saturating_sub(g.read_model_position);
            let ready = lag <= state.config.ready_max_lag;
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
                    lag,
                }),
            )
        }
        Err(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "not_ready".into(),
                log_head: 0,
                read_model_position: 0,
                lag: 0,
            }),
        ),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let g = gauges(&state).await.unwrap_or_default();
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
