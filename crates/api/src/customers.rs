//! Customers: register, summary, search, profile changes, logins, and the right of
//! access export. Every handler is scoped to the calling broadcaster ([`Tenant`]):
//! a customer it cannot see is `404 NOT_FOUND`, exactly like one that does not exist.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger_command::CustomerCommand;
use ledger_events::ProfilePatch;
use ledger_types::{CustomerId, Timestamp};
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;

use crate::auth::Tenant;
use crate::dto::{
    CustomerPage, CustomerSummaryDto, RecordLoginRequest, RegisterCustomerRequest, SearchRequest,
    UpdateProfileRequest, WriteResult,
};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::personal::PersonalJson;
use crate::{erasure, parse_id, SharedState};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/customers", post(register).get(search))
        .route("/v1/customers/search", post(search_by_body))
        .route(
            "/v1/customers/{id}",
            get(summary)
                .patch(update_profile)
                .delete(erasure::delete_customer),
        )
        .route("/v1/customers/{id}/logins", post(record_login))
        .route("/v1/customers/{id}/export", get(export))
}

pub(crate) fn customer_id(s: &str) -> Result<CustomerId, ApiError> {
    parse_id::<CustomerId>(s, "customer_id")
}

/// Register a customer with the calling broadcaster.
#[utoipa::path(post, path = "/v1/customers", tag = "customers",
    request_body = RegisterCustomerRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result (on every write: 409 IDEMPOTENCY_IN_PROGRESS while the first still runs, 422 IDEMPOTENCY_KEY_REUSED for a different request)")),
    responses(
        (status = 201, description = "Registered", body = WriteResult),
        (status = 400, description = "Malformed or invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, body), fields(broadcaster = %tenant.0, customer))]
pub async fn register(
    axum::extract::State(state): axum::extract::State<SharedState>,
    tenant: Tenant,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<RegisterCustomerRequest>,
) -> Result<impl IntoResponse, ApiError> {
    // With an idempotency key, the id follows from it: a retry whose first answer
    // was lost finds the customer it registered instead of making a second one.
    let c = crate::idempotency::key_of(&headers).map_or_else(CustomerId::new, |k| {
        crate::idempotency::derived_customer_id(tenant.0, k)
    });
    tracing::Span::current().record("customer", tracing::field::display(c));
    let cmd = CustomerCommand::Register {
        customer_id: c,
        broadcaster_id: tenant.0,
        profile: body.into_profile(),
        at: Timestamp::now(),
    };
    let ex = state.execute(c, &cmd).await?;
    Ok((StatusCode::CREATED, Json(WriteResult::of(c, &ex))))
}

/// The summary panel of one customer (a tombstone once erased).
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id (UUID)")),
    responses(
        (status = 200, description = "The summary", body = CustomerSummaryDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %tenant.0))]
pub async fn summary(
    axum::extract::State(state): axum::extract::State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
) -> Result<PersonalJson<CustomerSummaryDto>, ApiError> {
    let c = customer_id(&id)?;
    let s = state.read.summary(tenant.0, c)?;
    Ok(PersonalJson(CustomerSummaryDto::of(&s, tenant.0)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// A customer id, an email address (exact, case-insensitive) or a name prefix:
    /// not blank, no control characters, at most 254 characters.
    #[param(
        required = true,
        min_length = 1,
        max_length = 254,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub q: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^o(10000|[0-9]{1,4})$")]
    pub cursor: Option<String>,
}

/// Deepest result a cursor may point at.
const MAX_OFFSET: usize = 10_000;
const MAX_LIMIT: usize = 100;

/// A cursor is `o` and the offset of the next page, 0 to [`MAX_OFFSET`]: exactly
/// what the documented pattern `^o(10000|[0-9]{1,4})$` says, so a client (or a
/// fuzzer) can tell a valid one from the schema alone.
fn decode_cursor(c: &str) -> Result<usize, ApiError> {
    let bad = || ApiError::invalid_pagination("cursor is not a cursor this API returned");
    let digits = c.strip_prefix('o').ok_or_else(bad)?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let off: usize = digits.parse().map_err(|_| bad())?;
    if off > MAX_OFFSET {
        return Err(bad());
    }
    Ok(off)
}

fn encode_cursor(offset: usize) -> String {
    format!("o{offset}")
}

/// Search the calling broadcaster's customers. The query ends up in the URL, and
/// so in any proxy's access log: prefer `POST /v1/customers/search`.
#[utoipa::path(get, path = "/v1/customers", tag = "customers",
    params(SearchQuery),
    responses(
        (status = 200, description = "One page of matching customers", body = CustomerPage),
        (status = 400, description = "Missing query, bad pagination or unknown parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, query), fields(broadcaster = %tenant.0))]
pub async fn search(
    axum::extract::State(state): axum::extract::State<SharedState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<PersonalJson<CustomerPage>, ApiError> {
    let limit = query
        .limit
        .as_deref()
        .map(|l| l.parse::<u64>().map_err(|_| bad_limit()))
        .transpose()?;
    search_page(
        &state,
        tenant,
        query.q.as_deref(),
        limit,
        query.cursor.as_deref(),
    )
}

/// Search the calling broadcaster's customers, the query in the body (it never
/// appears in a URL or a log).
#[utoipa::path(post, path = "/v1/customers/search", tag = "customers",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "One page of matching customers", body = CustomerPage),
        (status = 400, description = "Missing query, bad pagination or invalid body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, body), fields(broadcaster = %tenant.0))]
pub async fn search_by_body(
    axum::extract::State(state): axum::extract::State<SharedState>,
    tenant: Tenant,
    ApiJson(body): ApiJson<SearchRequest>,
) -> Result<PersonalJson<CustomerPage>, ApiError> {
    search_page(
        &state,
        tenant,
        Some(&body.q),
        body.limit,
        body.cursor.as_deref(),
    )
}

fn bad_limit() -> ApiError {
    ApiError::invalid_pagination("limit must be an integer from 1 to 100")
}

/// One page of a search, whichever way it was asked.
fn search_page(
    state: &SharedState,
    tenant: Tenant,
    q: Option<&str>,
    limit: Option<u64>,
    cursor: Option<&str>,
) -> Result<PersonalJson<CustomerPage>, ApiError> {
    let q = q.map(str::trim).unwrap_or("");
    if q.is_empty() {
        return Err(ApiError::invalid_input("q", "must not be empty"));
    }
    if q.chars().any(char::is_control) {
        return Err(ApiError::invalid_input(
            "q",
            "must not contain control characters",
        ));
    }
    if q.chars().count() > 254 {
        return Err(ApiError::invalid_input("q", "longer than 254 characters"));
    }
    let limit = match limit {
        None => 20,
        Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
        Some(_) => return Err(bad_limit()),
    };
    let offset = cursor.map(decode_cursor).transpose()?.unwrap_or(0);
    let ids = state.read.search(tenant.0, q, offset + limit + 1)?;
    let more = ids.len() > offset + limit;
    let mut items = Vec::with_capacity(limit);
    for c in ids.into_iter().skip(offset).take(limit) {
        match state.read.summary(tenant.0, c) {
            Ok(s) => items.push(CustomerSummaryDto::of(&s, tenant.0)),
            // Erased or unlinked between the search and the read: skip it.
            Err(ledger_app::AppError::Refused(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let next_cursor = (more && offset + limit <= MAX_OFFSET).then(|| encode_cursor(offset + limit));
    Ok(PersonalJson(CustomerPage { items, next_cursor }))
}

/// Change a customer's profile (absent fields stay as they are).
#[utoipa::path(patch, path = "/v1/customers/{id}", tag = "customers",
    request_body = UpdateProfileRequest,
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "Updated", body = WriteResult),
        (status = 400, description = "Invalid id or body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
        (status = 409, description = "The customer was anonymized", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, body), fields(broadcaster = %tenant.0))]
pub async fn update_profile(
    axum::extract::State(state): axum::extract::State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateProfileRequest>,
) -> Result<Json<WriteResult>, ApiError> {
    let c = customer_id(&id)?;
    let patch = ProfilePatch {
        email: body.email,
        password_hash: body.password_hash,
        first_name: body.first_name,
        last_name: body.last_name,
        address: body.address,
        company_name: body.company_name,
        phone_number: body.phone_number,
    };
    let cmd = CustomerCommand::UpdateProfile {
        broadcaster_id: tenant.0,
        patch,
        at: Timestamp::now(),
    };
    let ex = state.execute(c, &cmd).await?;
    Ok(Json(WriteResult::of(c, &ex)))
}

/// Record a login (its IP address is personal data and stored sealed).
#[utoipa::path(post, path = "/v1/customers/{id}/logins", tag = "customers",
    request_body = RecordLoginRequest,
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 201, description = "Recorded", body = WriteResult),
        (status = 400, description = "Invalid id or body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
        (status = 409, description = "The customer was anonymized", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, body), fields(broadcaster = %tenant.0))]
pub async fn record_login(
    axum::extract::State(state): axum::extract::State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RecordLoginRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let c = customer_id(&id)?;
    let cmd = CustomerCommand::RecordLogin {
        broadcaster_id: tenant.0,
        ip: body.ip,
        at: Timestamp::now(),
    };
    let ex = state.execute(c, &cmd).await?;
    Ok((StatusCode::CREATED, Json(WriteResult::of(c, &ex))))
}

/// Right of access (GDPR Art. 15/20): everything held on the customer, opened.
#[utoipa::path(get, path = "/v1/customers/{id}/export", tag = "customers",
    params(("id" = String, Path, description = "Customer id (UUID)")),
    responses(
        (status = 200, description = "The customer's data: customer_id, exported_at, erased, profile, history", body = Object),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %tenant.0))]
pub async fn export(
    axum::extract::State(state): axum::extract::State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
) -> Result<PersonalJson<ledger_app::access::AccessExport>, ApiError> {
    let c = customer_id(&id)?;
    let doc = ledger_app::access::export_customer(&state.ledger, tenant.0, c).await?;
    Ok(PersonalJson(doc))
}
