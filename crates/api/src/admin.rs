//! Operator endpoints (admin key): create broadcasters, issue and revoke their API
//! keys. Broadcaster keys cannot call these, and the admin key cannot call
//! broadcaster endpoints: the two roles never mix.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use axum::{Json, Router};
use ledger_app::AppError;
use ledger_events::Integration;
use ledger_types::{BroadcasterId, Timestamp};
use tracing::instrument;
use uuid::Uuid;

use crate::auth::{Admin, KeyFileError};
use crate::dto::{
    ApiKeyCreated, ApiKeyDto, BroadcasterDto, CreateApiKeyRequest, CreateBroadcasterRequest,
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
