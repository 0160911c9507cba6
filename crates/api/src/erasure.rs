//! Erasure (GDPR Art. 17): the dry run, the request itself (`POST .../anonymize` and
//! `DELETE /v1/customers/{id}`, the same operation), and the list of receipts.
//!
//! A refused erasure is `409` with the first blocker's code and **every** blocker in
//! `details.blockers` (the aggregate stops at the first; the dashboard wants all).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger_app::{AppError, ErasedBy};
use ledger_command::{BroadcasterRef, Refusal};
use ledger_types::{CustomerId, RequestId, Timestamp};
use serde::Deserialize;
use serde_json::json;
use tracing::instrument;
use utoipa::IntoParams;

use crate::auth::{KeyedTenant, Tenant};
use crate::customers::customer_id;
use crate::dto::{BlockerDto, ErasureList, ErasurePreview, ErasureRecordDto, ReceiptDto};
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::requests::{decode_cursor, decode_limit, encode_cursor};
use crate::SharedState;

/// An erasure's status (200 or 202) and receipt.
type Erased = (StatusCode, Json<ReceiptDto>);

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

/// The answer to an erasure: 200 with the receipt once the key is destroyed, or
/// 202 with the same receipt (`data_key_destroyed: false`) when the decision is
/// committed but the key store failed right after; the running reconciler then
/// destroys the key, and a retry or the summary shows it done.
async fn erase(state: &SharedState, key: KeyedTenant, c: CustomerId) -> Result<Erased, ApiError> {
    let tenant = Tenant(key.broadcaster_id);
    let by = ErasedBy::from(key.actor());
    let r = state.ledger.erase(by, c, RequestId::new()).await;
    state.health.observe_write(&r);
    match r {
        Ok(receipt) => {
            if !receipt.repeat {
                state.read_your_write_to(receipt.event_position).await;
                state.metrics.erasures.increment(1);
            }
            // The receipt's digests come from the read model; a failed catch-up
            // leaves them out rather than failing a committed erasure.
            let record = state.read.erasure(c).ok().flatten();
            let status = if receipt.data_key_destroyed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            let mut dto = ReceiptDto::of(&receipt, record.as_ref());
            // Likewise the Merkle proof: left out, never an error, if it fails.
            match state
                .transparency
                .receipt_proof(receipt.event_position)
                .await
            {
                Ok(p) => dto = dto.with_proof(&p),
                Err(e) => tracing::warn!(
                    code = e.code(),
                    position = receipt.event_position,
                    "receipt served without its Merkle proof"
                ),
            }
            Ok((status, Json(dto)))
        }
        Err(AppError::Refused(r))
            if matches!(
                r,
                Refusal::NotWhiteLabel
                    | Refusal::SharedAcrossBroadcasters
                    | Refusal::ActiveSubscription { .. }
            ) =>
        {
            state.metrics.erasure_refusals.increment(1);
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
        (status = 202, description = "The erasure is committed but its key destruction is still pending (the key store failed); the reconciler finishes it", body = ReceiptDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
        (status = 409, description = "Refused: ACTIVE_SUBSCRIPTION, SHARED_ACROSS_BROADCASTERS or NOT_WHITE_LABEL, with every blocker in details.blockers", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %key.broadcaster_id))]
pub async fn anonymize(
    State(state): State<SharedState>,
    key: KeyedTenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Erased, ApiError> {
    let c = customer_id(&id)?;
    erase(&state, key, c).await
}

/// "Delete user": the same erasure as `POST /v1/customers/{id}/anonymize`.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "erasure",
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "The erasure receipt", body = ReceiptDto),
        (status = 202, description = "The erasure is committed but its key destruction is still pending (the key store failed); the reconciler finishes it", body = ReceiptDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
        (status = 409, description = "Refused, with every blocker in details.blockers", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %key.broadcaster_id))]
pub async fn delete_customer(
    State(state): State<SharedState>,
    key: KeyedTenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Erased, ApiError> {
    let c = customer_id(&id)?;
    erase(&state, key, c).await
}

const DEFAULT_RECEIPTS: usize = 1000;
const MAX_RECEIPTS: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ErasuresQuery {
    /// `next_cursor` of the previous page.
    #[param(pattern = "^p[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Only erasures at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
}

/// The caller's erasure receipts, oldest first, in pages: those it made, and
/// those of the platform operator for accounts linked to it (`erased_by.kind:
/// operator`). Unknown query parameters are refused.
#[utoipa::path(get, path = "/v1/erasures", tag = "erasure",
    params(ErasuresQuery),
    responses(
        (status = 200, description = "Receipts", body = ErasureList),
        (status = 400, description = "Bad cursor, limit or since, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, q), fields(broadcaster = %tenant.0))]
pub async fn list(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiQuery(q): ApiQuery<ErasuresQuery>,
) -> Result<Json<ErasureList>, ApiError> {
    let after = q
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .unwrap_or(0);
    let limit = decode_limit(q.limit.as_deref(), DEFAULT_RECEIPTS, MAX_RECEIPTS)?;
    let since = q
        .since
        .as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_QUERY",
                    "since must be an RFC 3339 date and time",
                )
                .with_details(json!({ "parameter": "since" }))
            })
        })
        .transpose()?;
    let mut matching = state
        .read
        .erasures(Some(tenant.0))?
        .into_iter()
        .filter(|r| r.position > after && since.is_none_or(|s| r.at >= s));
    let items: Vec<ErasureRecordDto> = matching
        .by_ref()
        .take(limit)
        .map(|r| ErasureRecordDto::from(&r))
        .collect();
    let next_cursor = if matching.next().is_some() {
        items.last().map(|i| encode_cursor(i.position))
    } else {
        None
    };
    Ok(Json(ErasureList { items, next_cursor }))
}
