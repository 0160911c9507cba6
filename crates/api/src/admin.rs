//! Operator endpoints (admin key): create broadcasters, issue and revoke their API
//! keys, and look at any customer before erasing it as the operator. Broadcaster
//! keys cannot call these, and the admin key cannot call broadcaster endpoints:
//! the two roles never mix.
//!
//! The operator's view of a customer (`GET /v1/admin/customers/{id}`) holds ids,
//! links, subscriptions and blockers only, never personal data: the operator acts
//! on a customer id and a ticket reference, and needs no name or email to do so.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ledger_app::AppError;
use ledger_events::Integration;
use ledger_types::{BroadcasterId, Timestamp};
use serde::Serialize;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Admin, KeyFileError};
use crate::customers::customer_id;
use crate::dto::{
    ApiKeyCreated, ApiKeyDto, BlockerDto, BroadcasterDto, CreateApiKeyRequest,
    CreateBroadcasterRequest, ErasureRecordDto,
};
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::{parse_id, SharedState};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/admin/broadcasters", post(create_broadcaster))
        .route(
            "/v1/admin/broadcasters/{id}/api-keys",
            post(create_api_key).get(list_api_keys),
        )
        .route("/v1/admin/api-keys/{key_id}", delete(revoke_api_key))
        .route("/v1/admin/customers/{id}", get(customer))
}

fn integration_name(i: Integration) -> &'static str {
    match i {
        Integration::WhiteLabel => "white_label",
        Integration::Shared => "shared",
    }
}

fn key_error(e: KeyFileError) -> ApiError {
    match e {
        KeyFileError::UnknownKey => ApiError::not_found(),
        other => {
            tracing::error!(error = %other, "api key store failed");
            ApiError::internal()
        }
    }
}

/// Register a broadcaster (a tenant).
#[utoipa::path(post, path = "/v1/admin/broadcasters", tag = "admin",
    request_body = CreateBroadcasterRequest,
    responses(
        (status = 201, description = "Created", body = BroadcasterDto),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 409, description = "BROADCASTER_EXISTS", body = ErrorBody),
    ),
    security(("admin" = [])))]
#[instrument(skip(state, _admin, body))]
pub async fn create_broadcaster(
    State(state): State<SharedState>,
    _admin: Admin,
    ApiJson(body): ApiJson<CreateBroadcasterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let id = match body.broadcaster_id.as_deref() {
        Some(s) => parse_id::<BroadcasterId>(s, "broadcaster_id")?,
        None => BroadcasterId::new(),
    };
    let integration = match body.integration.as_str() {
        "white_label" => Integration::WhiteLabel,
        "shared" => Integration::Shared,
        _ => {
            return Err(ApiError::invalid_input(
                "integration",
                "must be white_label or shared",
            ))
        }
    };
    let name = body.name.trim();
    if name.is_empty() || body.name.chars().count() > 200 {
        return Err(ApiError::invalid_input(
            "name",
            "must be 1 to 200 characters",
        ));
    }
    if body.name.chars().any(char::is_control) {
        return Err(ApiError::invalid_input(
            "name",
            "must not contain control characters",
        ));
    }
    state
        .ledger
        .register_broadcaster(id, name, integration, Timestamp::now())
        .await?;
    state.read_your_write().await;
    Ok((
        StatusCode::CREATED,
        Json(BroadcasterDto {
            broadcaster_id: id.to_string(),
            name: name.to_owned(),
            integration: integration_name(integration).to_owned(),
        }),
    ))
}

/// Issue an API key for a broadcaster. The token is in this response only.
#[utoipa::path(post, path = "/v1/admin/broadcasters/{id}/api-keys", tag = "admin",
    request_body(content = CreateApiKeyRequest, description = "Optional label"),
    params(("id" = String, Path, description = "Broadcaster id (UUID)")),
    responses(
        (status = 201, description = "Issued", body = ApiKeyCreated),
        (status = 400, description = "Invalid id or body", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 404, description = "No such broadcaster", body = ErrorBody),
    ),
    security(("admin" = [])))]
#[instrument(skip(state, _admin, body))]
pub async fn create_api_key(
    State(state): State<SharedState>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateApiKeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let b = parse_id::<BroadcasterId>(&id, "broadcaster_id")?;
    match state.ledger.broadcaster(b).await {
        Ok(_) => {}
        Err(AppError::UnknownBroadcaster) => return Err(ApiError::not_found()),
        Err(e) => return Err(e.into()),
    }
    if body.label.as_ref().is_some_and(|l| l.chars().count() > 200) {
        return Err(ApiError::invalid_input(
            "label",
            "longer than 200 characters",
        ));
    }
    if body
        .label
        .as_ref()
        .is_some_and(|l| l.chars().any(char::is_control))
    {
        return Err(ApiError::invalid_input(
            "label",
            "must not contain control characters",
        ));
    }
    let (info, token) = state.keys.issue(b, body.label).map_err(key_error)?;
    tracing::info!(key_id = %info.key_id, broadcaster = %b, "api key issued");
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            key_id: info.key_id.to_string(),
            broadcaster_id: b.to_string(),
            issued_at: info.issued_at.to_rfc3339(),
            token,
        }),
    ))
}

/// A broadcaster's keys (ids and dates; never tokens).
#[utoipa::path(get, path = "/v1/admin/broadcasters/{id}/api-keys", tag = "admin",
    params(("id" = String, Path, description = "Broadcaster id (UUID)")),
    responses(
        (status = 200, description = "Keys", body = [ApiKeyDto]),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
    ),
    security(("admin" = [])))]
#[instrument(skip(state, _admin))]
pub async fn list_api_keys(
    State(state): State<SharedState>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<ApiKeyDto>>, ApiError> {
    let b = parse_id::<BroadcasterId>(&id, "broadcaster_id")?;
    Ok(Json(
        state
            .keys
            .list(Some(b))
            .iter()
            .map(ApiKeyDto::from)
            .collect(),
    ))
}

/// Revoke an API key at once.
#[utoipa::path(delete, path = "/v1/admin/api-keys/{key_id}", tag = "admin",
    params(("key_id" = String, Path, description = "Key id (UUID)")),
    responses(
        (status = 200, description = "Revoked", body = ApiKeyDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ),
    security(("admin" = [])))]
#[instrument(skip(state, _admin))]
pub async fn revoke_api_key(
    State(state): State<SharedState>,
    _admin: Admin,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Json<ApiKeyDto>, ApiError> {
    let k = parse_id::<Uuid>(&key_id, "key_id")?;
    let info = state.keys.revoke(k).map_err(key_error)?;
    tracing::info!(key_id = %k, "api key revoked");
    Ok(Json(ApiKeyDto::from(&info)))
}

/// A broadcaster the customer is linked to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkedBroadcasterDto {
    pub broadcaster_id: String,
    /// `white_label` or `shared`.
    pub integration: String,
    /// Whether the customer registered with this broadcaster (the others were
    /// linked later).
    pub registered: bool,
}

/// A subscription and the broadcaster that started it (only it can terminate it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperatorSubscriptionDto {
    pub subscription_id: String,
    pub broadcaster_id: String,
    pub offer_id: String,
    pub active: bool,
    pub started_at: String,
    /// When it ends by itself, if it has an end date.
    pub ends_at: Option<String>,
    pub terminated_at: Option<String>,
}

/// A customer as the platform operator sees it: ids, linked broadcasters,
/// subscriptions, and what blocks the operator's erasure. No personal data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperatorCustomerDto {
    pub customer_id: String,
    /// `active` or `erased`.
    pub status: String,
    pub broadcasters: Vec<LinkedBroadcasterDto>,
    pub subscriptions: Vec<OperatorSubscriptionDto>,
    /// True when the operator's erasure would succeed now.
    pub erasable: bool,
    /// What blocks the operator's erasure: `ACTIVE_SUBSCRIPTION`, listing every
    /// active subscription with any broadcaster.
    pub blockers: Vec<BlockerDto>,
    /// Once erased: the erasure's record (its receipt, without personal data).
    pub erasure: Option<ErasureRecordDto>,
}

/// The platform operator's view of any customer, whatever its broadcasters: ids,
/// links, subscriptions and the blockers of an operator's erasure. Holds no
/// personal data.
#[utoipa::path(get, path = "/v1/admin/customers/{id}", tag = "admin",
    params(("id" = String, Path, description = "Customer id (UUID)")),
    responses(
        (status = 200, description = "The customer, without personal data", body = OperatorCustomerDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 404, description = "No such customer", body = ErrorBody),
    ),
    security(("admin" = [])))]
#[instrument(skip(state, _admin))]
pub async fn customer(
    State(state): State<SharedState>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OperatorCustomerDto>, ApiError> {
    let c = customer_id(&id)?;
    let customer = state.ledger.customer(c).await?;
    let blockers = customer.operator_erasure_blockers()?;
    let mut broadcasters = Vec::new();
    for b in customer.broadcasters() {
        let integration = match state.ledger.broadcaster(*b).await {
            Ok(r) => integration_name(r.integration),
            Err(AppError::UnknownBroadcaster) => "unknown",
            Err(e) => return Err(e.into()),
        };
        broadcasters.push(LinkedBroadcasterDto {
            broadcaster_id: b.to_string(),
            integration: integration.to_owned(),
            registered: customer.registered_by() == Some(*b),
        });
    }
    let erased = customer.is_anonymized();
    Ok(Json(OperatorCustomerDto {
        customer_id: c.to_string(),
        status: if erased { "erased" } else { "active" }.to_owned(),
        broadcasters,
        subscriptions: customer
            .subscriptions()
            .map(|s| OperatorSubscriptionDto {
                subscription_id: s.subscription_id.to_string(),
                broadcaster_id: s.broadcaster_id.to_string(),
                offer_id: s.offer_id.to_string(),
                active: s.is_active(),
                started_at: s.started_at.to_rfc3339(),
                ends_at: s.ends_at.map(|t| t.to_rfc3339()),
                terminated_at: s.terminated_at.map(|t| t.to_rfc3339()),
            })
            .collect(),
        erasable: !erased && blockers.is_empty(),
        blockers: blockers.iter().map(BlockerDto::of).collect(),
        erasure: if erased {
            state.read.erasure(c)?.as_ref().map(ErasureRecordDto::from)
        } else {
            None
        },
    }))
}
