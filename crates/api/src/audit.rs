//! Auditors' endpoints (admin key): the log as sealed NDJSON, streamed page by page,
//! and the full replay check.
//!
//! Each NDJSON line has the record shape of `ledger audit export`
//! (`ledger-export-v1`): `position`, `stream`, `version`, `event_id`, `event_type`,
//! `schema_version`, `recorded_at` (ms), `payload` (the stored bytes as a string,
//! exactly as hashed; personal blocks sealed), `hash`, `log_hash`. No header or
//! trailer: a client resumes with `?from=` the last position it saw plus one.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt as _;
use ledger_store::{EventStore, RecordedEvent};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::IntoParams;

use crate::auth::Admin;
use crate::dto::Document;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::SharedState;

const PAGE: usize = 1_000;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/audit/events", get(events))
        .route("/v1/audit/verify", get(verify))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// First log position to return (default 1).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 9223372036854775807_u64)]
    pub from: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    position: u64,
    stream: &'a str,
    version: u64,
    event_id: String,
    event_type: &'a str,
    schema_version: u16,
    recorded_at: i64,
    payload: &'a str,
    hash: String,
    log_hash: String,
}

fn page_bytes(page: &[RecordedEvent]) -> Bytes {
    let mut out = Vec::with_capacity(page.len() * 512);
    for r in page {
        let payload = String::from_utf8_lossy(&r.payload);
        let line = Line {
            position: r.position,
            stream: &r.stream,
            version: r.version,
            event_id: r.event_id.to_string(),
            event_type: &r.event_type,
            schema_version: r.schema_version,
            recorded_at: r.recorded_at.millis(),
            payload: &payload,
            hash: hex::encode(r.hash),
            log_hash: hex::encode(r.log_hash),
        };
        if serde_json::to_writer(&mut out, &line).is_ok() {
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

/// The log from a position, as NDJSON (sealed), streamed.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit",
    params(EventsQuery),
    responses(
        (status = 200, description = "One JSON record per line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "Invalid position", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
    ),
    security(("admin" = [])))]
#[instrument(skip(state, _admin, q))]
pub async fn events(
    State(state): State<SharedState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let from: u64 = match q.from.as_deref() {
        None => 1,
        Some(s) => match s.parse::<u64>() {
            // Positions are i64 in every store.
            Ok(n) if n >= 1 && n <= i64::MAX as u64 => n,
            _ => {
                return Err(ApiError::invalid_input(
                    "from",
                    "must be a log position (an integer >= 1)",
                ))
            }
        },
    };
    let store: Arc<dyn EventStore> = state.ledger.store().clone();
    // Read the first page before answering, so a storage error is a clean 500.
    let first = store
        .read_all(from - 1, PAGE)
        .await
        .map_err(ledger_app::AppError::from)?;
    // Later pages are read as the client consumes the body; a storage error then
    // aborts the chunked body, so the client sees a truncated transfer, not an end.
    let stream = futures_util::stream::unfold(
        (store, from - 1, Some(first), false),
        |(store, after, first, done)| async move {
            if done {
                return None;
            }
            let page = match first {
                Some(p) => p,
                None => match store.read_all(after, PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, after, "audit stream stopped");
                        let err = std::io::Error::other("storage error");
                        return Some((Err(err), (store, after, None, true)));
                    }
                },
            };
            if page.is_empty() {
                return None;
            }
            let chunk = page_bytes(&page);
            let last = page.last().map_or(after, |r| r.position);
            let done = page.len() < PAGE;
            Some((Ok::<_, std::io::Error>(chunk), (store, last, None, done)))
        },
    )
    // Ended for good: the compression layer's reader polls once more after the end,
    // which `unfold` alone answers with a panic.
    .fuse();
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Replays the whole log: chains, contiguity, schema, every erasure honoured.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses(
        (status = 200, description = "The audit report (ok, events, head, checks, problems)", body = Object),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
    ),
    security(("admin" = [])))]
#[instrument(skip(state, _admin))]
pub async fn verify(
    State(state): State<SharedState>,
    _admin: Admin,
) -> Result<Json<Document>, ApiError> {
    // One snapshot: the log, the views and the key states as of the head now.
    let snapshot = state.read.snapshot_now().await?;
    let report =
        ledger_app::audit::verify(&state.ledger, Some(&snapshot), None, snapshot.limit()).await?;
    Ok(Json(
        serde_json::to_value(&report).map_err(|_| ApiError::internal())?,
    ))
}
