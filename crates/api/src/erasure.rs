//! Erasure (GDPR Art. 17): the dry run, the request itself (`POST .../anonymize` and
//! `DELETE /v1/customers/{id}`, the same operation), and the list of receipts.
//!
//! A refused erasure is `409` with the first blocker's code and **every** blocker in
//! `details.blockers` (the aggregate stops at the first; the dashboard wants all).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger_app::AppError;
use ledger_command::{BroadcasterRef, Refusal};
use ledger_types::{CustomerId, RequestId};
use serde_json::json;
use tracing::instrument;

use crate::auth::Tenant;
use crate::customers::customer_id;
use crate::dto::{BlockerDto, ErasureList, ErasurePreview, ErasureRecordDto, ReceiptDto};
use crate::error::{ApiError, ApiPath, ErrorBody};
use crate::SharedState;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/customers/{id}/erasure-preview", get(preview))
        .route("/v1/customers/{id}/anonymize", post(anonymize))
        .route("/v1/erasures", get(list))
}

async fn blockers(
    state: &SharedState,
    tenant: Tenant,
    c: CustomerId,
) -> Result<(bool, Vec<Refusal>), ApiError> {
    let b = match state.ledger.broadcaster(tenant.0).await {
        Ok(b) => b,
        Err(AppError::UnknownBroadcaster) => return Err(ApiError::not_found()),
        Err(e) => return Err(e.into()),
    };
    let customer = state.ledger.customer(c).await?;
    let list = customer.erasure_blockers(&BroadcasterRef::from(&b))?;
    Ok((customer.is_anonymized(), list))
}

/// What an erasure would do now, and what blocks it. Changes nothing.
#[utoipa::path(get, path = "/v1/customers/{id}/erasure-preview", tag = "erasure",
    params(("id" = String, Path, description = "Customer id (UUID)")),
    responses(
        (status = 200, description = "The dry run", body = ErasurePreview),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %tenant.0))]
pub async fn preview(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ErasurePreview>, ApiError> {
    let c = customer_id(&id)?;
    let (erased, list) = blockers(&state, tenant, c).await?;
    Ok(Json(ErasurePreview::new(c.to_string(), erased, &list)))
}

async fn erase(state: &SharedState, tenant: Tenant, c: CustomerId) -> Result<ReceiptDto, ApiError> {
    match state.ledger.anonymize(tenant.0, c, RequestId::new()).await {
        Ok(receipt) => {
            state.read.catch_up().await?;
            state.metrics.erasures.fetch_add(1, Ordering::Relaxed);
            let record = state.read.erasure(c)?;
            Ok(ReceiptDto::of(&receipt, record.as_ref()))
        }
        Err(AppError::Refused(r))
            if matches!(
                r,
                Refusal::NotWhiteLabel
                    | Refusal::SharedAcrossBroadcasters
                    | Refusal::ActiveSubscription { .. }
            ) =>
        {
            state
                .metrics
                .erasure_refusals
                .fetch_add(1, Ordering::Relaxed);
            let all = blockers(state, tenant, c)
                .await
                .map(|(_, l)| l)
                .unwrap_or_else(|_| vec![r.clone()]);
            let list: Vec<BlockerDto> = all.iter().map(BlockerDto::of).collect();
            let mut e = ApiError::from(r);
            let mut details = match e.details.take() {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            details.insert("blockers".into(), json!(list));
            e.details = serde_json::Value::Object(details);
            Err(e)
        }
        Err(e) => Err(e.into()),
    }
}

/// Erase the customer's personal data (crypto-shredding). Irreversible; a repeat
/// returns the first receipt.
#[utoipa::path(post, path = "/v1/customers/{id}/anonymize", tag = "erasure",
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "The erasure receipt", body = ReceiptDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
        (status = 409, description = "Refused: ACTIVE_SUBSCRIPTION, SHARED_ACROSS_BROADCASTERS or NOT_WHITE_LABEL, with every blocker in details.blockers", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %tenant.0))]
pub async fn anonymize(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReceiptDto>, ApiError> {
    let c = customer_id(&id)?;
    erase(&state, tenant, c).await.map(Json)
}

/// "Delete user": the same erasure as `POST /v1/customers/{id}/anonymize`.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "erasure",
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "The erasure receipt", body = ReceiptDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
        (status = 409, description = "Refused, with every blocker in details.blockers", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %tenant.0))]
pub async fn delete_customer(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReceiptDto>, ApiError> {
    let c = customer_id(&id)?;
    erase(&state, tenant, c).await.map(Json)
}

/// The caller's erasure receipts, oldest first.
#[utoipa::path(get, path = "/v1/erasures", tag = "erasure",
    responses(
        (status = 200, description = "Receipts", body = ErasureList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %tenant.0))]
pub async fn list(
    State(state): State<SharedState>,
    tenant: Tenant,
) -> Result<Json<ErasureList>, ApiError> {
    let items = state
        .read
        .erasures(Some(tenant.0))?
        .iter()
        .map(ErasureRecordDto::from)
        .collect();
    Ok(Json(ErasureList { items }))
}
