//! Webhook endpoints (issue 13, ADR 0028): a broadcaster registers endpoints for
//! its own tenant's public events, the operator (admin key) platform-wide ones;
//! neither sees the other's (another owner's endpoint is 404). The signing secret
//! is in the creation's answer only. Deliveries are made by `ledger serve`'s
//! dispatcher (`ledger_webhooks`); here they are listed and asked for again.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger_public_events::EventType;
use ledger_webhooks::{Attempt, Endpoint, EndpointPatch, NewEndpoint, Owner, RegistryError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::dto::{CreateWebhookEndpoint, RedeliverRequest, UpdateWebhookEndpoint};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::requests::{decode_cursor, decode_limit, encode_cursor};
use crate::{parse_id, SharedState};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/webhook-endpoints", post(create).get(list))
        .route(
            "/v1/webhook-endpoints/{id}",
            get(show).patch(update).delete(delete),
        )
        .route("/v1/webhook-endpoints/{id}/attempts", get(attempts))
        .route("/v1/webhook-endpoints/{id}/redeliver", post(redeliver))
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// A webhook endpoint (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookEndpointDto {
    pub endpoint_id: String,
    pub url: String,
    /// The event types delivered; `null`: every type.
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the ledger disabled it: `FAILING_TOO_LONG` (its deliveries failed for
    /// 3 days); `null` while enabled or when its owner disabled it.
    pub disabled_reason: Option<String>,
    /// `broadcaster` (its events) or `platform` (every tenant's; the operator's).
    pub scope: String,
    pub created_at: String,
    pub updated_at: String,
    /// When the delivery being retried first failed; `null` while deliveries succeed.
    pub failing_since: Option<String>,
    /// The log position delivered up to (every message up to it was answered 2xx).
    pub delivered_up_to: u64,
}

/// A new endpoint, with its signing secret: store it now, no later answer shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookEndpointCreated {
    #[serde(flatten)]
    pub endpoint: WebhookEndpointDto,
    /// `whsec_` and base64: the Standard Webhooks key that signs every message
    /// (`webhook-signature`).
    pub secret: String,
}

/// The caller's endpoints, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookEndpointList {
    pub items: Vec<WebhookEndpointDto>,
}

/// One delivery attempt (never the response body).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookAttemptDto {
    /// The attempt's number for this endpoint (increasing).
    pub attempt: u64,
    /// The message's `webhook-id`: the event's id, the same at every attempt.
    pub message_id: String,
    pub position: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub attempted_at: String,
    /// `succeeded` (answered 2xx) or `failed`.
    pub outcome: String,
    pub response_status: Option<u16>,
    /// Why it failed: `HTTP_STATUS` (a non-2xx answer, redirects included),
    /// `TIMEOUT`, `CONNECT_FAILED`, `DNS_FAILED`, `TLS_FAILED`,
    /// `ADDRESS_NOT_PUBLIC` or `REQUEST_FAILED`.
    pub error: Option<String>,
    pub latency_ms: u64,
    /// `delivery`, `retry` or `redelivery`.
    pub trigger: String,
}

/// A page of attempts, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookAttemptPage {
    pub items: Vec<WebhookAttemptDto>,
    /// Pass as `cursor` for older attempts; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttemptQuery {
    /// `next_cursor` of the previous page.
    #[param(pattern = "^p[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

fn owner(caller: Caller) -> Owner {
    match caller {
        Caller::Broadcaster { broadcaster_id, .. } => Owner::Broadcaster(broadcaster_id),
        Caller::Operator => Owner::Platform,
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound => ApiError::not_found(),
            // The URL has the documented form (else the body is refused first);
            // what the server still refuses is a conflict with its rules.
            RegistryError::Url(u) => ApiError::new(StatusCode::CONFLICT, u.code(), u.to_string())
                .with_details(json!({ "field": "url" })),
            RegistryError::Invalid { field, message } => ApiError::invalid_input(field, message),
            RegistryError::PastHead => ApiError::new(
                StatusCode::CONFLICT,
                "POSITION_NOT_IN_LOG",
                "the log holds no such position yet (1 to its head for one message, 0 to its head for every message after)",
            ),
            RegistryError::App(e) => e.into(),
        }
    }
}

/// Event type names to a set: 1 to 15 known names (duplicates are one).
fn event_types(v: Option<Vec<String>>) -> Result<Option<BTreeSet<EventType>>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    if v.is_empty() || v.len() > EventType::ALL.len() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_EVENT_TYPES",
            "event_types: 1 to 15 event types of docs/events.md, or null for every type",
        )
        .with_details(json!({ "field": "event_types" })));
    }
    let mut out = BTreeSet::new();
    for (i, name) in v.iter().enumerate() {
        let t = EventType::parse(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "UNKNOWN_EVENT_TYPE",
                "event_types holds a name that is not an event type of docs/events.md",
            )
            .with_details(json!({ "field": "event_types", "index": i }))
        })?;
        out.insert(t);
    }
    Ok(Some(out))
}

fn endpoint_id(s: &str) -> Result<Uuid, ApiError> {
    parse_id(s, "id")
}

async fn dto(state: &SharedState, e: &Endpoint) -> Result<WebhookEndpointDto, ApiError> {
    Ok(WebhookEndpointDto {
        endpoint_id: e.id.to_string(),
        url: e.url.clone(),
        event_types: e
            .event_types
            .as_ref()
            .map(|t| t.iter().map(|t| t.as_str().to_owned()).collect()),
        description: e.description.clone(),
        enabled: e.enabled,
        disabled_reason: e.disabled_reason.clone(),
        scope: if e.owner.is_some() {
            "broadcaster"
        } else {
            "platform"
        }
        .to_owned(),
        created_at: e.created_at.to_rfc3339(),
        updated_at: e.updated_at.to_rfc3339(),
        failing_since: e.failing_since.map(|t| t.to_rfc3339()),
        delivered_up_to: state.webhooks.checkpoint(e.id).await?,
    })
}

/// Register a webhook endpoint. It receives the events committed from now on
/// (ask for older ones with `redeliver`), signed with the secret in this answer,
/// which no later answer shows again (so no `Idempotency-Key` replays it: a
/// retry after a lost answer registers a second endpoint; delete the one whose
/// secret you did not get).
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks",
    request_body = CreateWebhookEndpoint,
    responses(
        (status = 201, description = "Registered; the answer holds the secret", body = WebhookEndpointCreated),
        (status = 400, description = "A body not of the documented form: INVALID_EVENT_TYPES, UNKNOWN_EVENT_TYPE, INVALID_INPUT, ...", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 409, description = "A URL the server refuses: WEBHOOK_URL_NOT_HTTPS, WEBHOOK_URL_NOT_PUBLIC or INVALID_WEBHOOK_URL", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, body))]
pub async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhookEndpoint>,
) -> Result<(StatusCode, Json<WebhookEndpointCreated>), ApiError> {
    state.webhooks.ready().await?;
    let new = NewEndpoint {
        event_types: event_types(body.event_types)?,
        url: body.url,
        description: body.description,
    };
    let (e, secret) = state
        .webhooks
        .create(owner(caller), new, state.config.allow_private_webhooks)
        .await?;
    tracing::info!(endpoint = %e.id, "webhook endpoint registered");
    Ok((
        StatusCode::CREATED,
        Json(WebhookEndpointCreated {
            endpoint: dto(&state, &e).await?,
            secret,
        }),
    ))
}

/// The caller's webhook endpoints (the operator's: the platform-wide ones).
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks",
    responses(
        (status = 200, description = "The endpoints, oldest first", body = WebhookEndpointList),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Json<WebhookEndpointList>, ApiError> {
    state.webhooks.ready().await?;
    let mut items = Vec::new();
    for e in state.webhooks.list(owner(caller)) {
        items.push(dto(&state, &e).await?);
    }
    Ok(Json(WebhookEndpointList { items }))
}

/// One webhook endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (UUID)")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookEndpointDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such endpoint for this caller", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state))]
pub async fn show(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookEndpointDto>, ApiError> {
    let id = endpoint_id(&id)?;
    state.webhooks.ready().await?;
    let e = state.webhooks.get(owner(caller), id)?;
    Ok(Json(dto(&state, &e).await?))
}

/// Change a webhook endpoint: its URL, event types, description, or whether it
/// is enabled (re-enabling one disabled for failing resumes from where it stopped).
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    request_body = UpdateWebhookEndpoint,
    params(("id" = String, Path, description = "Endpoint id (UUID)")),
    responses(
        (status = 200, description = "The changed endpoint", body = WebhookEndpointDto),
        (status = 400, description = "Invalid id or body (as for creation)", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such endpoint for this caller", body = ErrorBody),
        (status = 409, description = "A URL the server refuses (as for creation)", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, body))]
pub async fn update(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateWebhookEndpoint>,
) -> Result<Json<WebhookEndpointDto>, ApiError> {
    let id = endpoint_id(&id)?;
    state.webhooks.ready().await?;
    let patch = EndpointPatch {
        url: body.url,
        event_types: body.event_types.map(event_types).transpose()?,
        description: body.description,
        enabled: body.enabled,
    };
    let e = state
        .webhooks
        .update(
            owner(caller),
            id,
            patch,
            state.config.allow_private_webhooks,
        )
        .await?;
    Ok(Json(dto(&state, &e).await?))
}

/// Delete a webhook endpoint and its attempts; nothing more is delivered to it.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such endpoint for this caller", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state))]
pub async fn delete(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(&id)?;
    state.webhooks.ready().await?;
    state.webhooks.delete(owner(caller), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An endpoint's delivery attempts, newest first (the last 10,000 are kept).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/attempts", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (UUID)"), AttemptQuery),
    responses(
        (status = 200, description = "A page of attempts", body = WebhookAttemptPage),
        (status = 400, description = "Invalid id, pagination or unknown parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such endpoint for this caller", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, q))]
pub async fn attempts(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AttemptQuery>,
) -> Result<Json<WebhookAttemptPage>, ApiError> {
    let id = endpoint_id(&id)?;
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = decode_limit(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    state.webhooks.ready().await?;
    let rows = state
        .webhooks
        .attempts(owner(caller), id, before, limit + 1)
        .await?;
    let more = rows.len() > limit;
    let items: Vec<WebhookAttemptDto> = rows
        .into_iter()
        .take(limit)
        .map(|(n, a): (u64, Attempt)| WebhookAttemptDto {
            attempt: n,
            message_id: a.message_id,
            position: a.position,
            event_type: a.event_type.as_str().to_owned(),
            attempted_at: a.attempted_at.to_rfc3339(),
            outcome: a.outcome,
            response_status: a.response_status,
            error: a.error,
            latency_ms: a.latency_ms,
            trigger: a.trigger,
        })
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|a| encode_cursor(a.attempt)))
        .flatten();
    Ok(Json(WebhookAttemptPage { items, next_cursor }))
}

/// Deliver again: the message at `position`, or (`mode: after`) every message
/// after it (the endpoint's checkpoint moves back there). Messages keep their
/// `webhook-id`, so receivers that deduplicate see nothing twice.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/redeliver", tag = "webhooks",
    request_body = RedeliverRequest,
    params(("id" = String, Path, description = "Endpoint id (UUID)")),
    responses(
        (status = 202, description = "Accepted; the attempts list shows the deliveries", body = WebhookEndpointDto),
        (status = 400, description = "Invalid id or body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such endpoint for this caller", body = ErrorBody),
        (status = 409, description = "POSITION_NOT_IN_LOG", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, body))]
pub async fn redeliver(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RedeliverRequest>,
) -> Result<(StatusCode, Json<WebhookEndpointDto>), ApiError> {
    let id = endpoint_id(&id)?;
    state.webhooks.ready().await?;
    let o = owner(caller);
    let e = match body.mode.as_deref() {
        None | Some("one") => {
            state.webhooks.redeliver_one(o, id, body.position).await?;
            state.webhooks.get(o, id)?
        }
        Some("after") => state.webhooks.redeliver_since(o, id, body.position).await?,
        Some(_) => return Err(ApiError::invalid_input("mode", "one or after")),
    };
    Ok((StatusCode::ACCEPTED, Json(dto(&state, &e).await?)))
}
