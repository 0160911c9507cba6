//! Erasure requests (GDPR Art. 12 and 17): file, list, show, cancel, extend; and the
//! platform operator's erasure of any customer.
//!
//! A request is filed by a broadcaster (its API key) or by the platform operator
//! (the admin key) and taken as far as it can go at once: completed (with the
//! receipt), deferred (only active subscriptions block it), or refused with a
//! permanent reason, which is recorded (see `ledger_app::requests`). A customer the
//! caller cannot see is `404 NOT_FOUND` and nothing is recorded. A broadcaster sees
//! only the requests it filed; the operator sees all.
//!
//! `POST /v1/admin/customers/{id}/anonymize` is the operator's erasure of a shared
//! or non-white-label account, with a reference (a ticket number). It is refused
//! (`409 ACTIVE_SUBSCRIPTION`) while any broadcaster has an active subscription for
//! the customer, every one listed with its broadcaster; nothing is recorded then.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger_app::requests::{FileRequest, RequestFilter, RequestOutcome};
use ledger_app::{AppError, ErasureReceipt};
use ledger_command::{Refusal, RequestStatus};
use ledger_events::{Actor, ExtensionReason};
use ledger_types::{Reference, RequestId, Timestamp};
use serde::Deserialize;
use serde_json::json;
use tracing::instrument;
use utoipa::IntoParams;

use crate::auth::{Admin, Caller, KeyedTenant};
use crate::customers::customer_id;
use crate::dto::{
    BlockerDto, ErasureRequestDto, ErasureRequestPage, ExtendErasureRequest, FileErasureRequest,
    OperatorAnonymizeRequest, ReceiptDto, TerminateAndEraseRequest,
};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::{parse_id, parse_time, SharedState};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/erasure-requests", post(file).get(list))
        .route("/v1/erasure-requests/{id}", get(show))
        .route("/v1/erasure-requests/{id}/cancel", post(cancel))
        .route("/v1/erasure-requests/{id}/extend", post(extend))
        .route(
            "/v1/admin/customers/{id}/anonymize",
            post(operator_anonymize),
        )
        .route(
            "/v1/customers/{id}/terminate-and-erase",
            post(terminate_and_erase),
        )
}

/// "Terminate and erase": terminates every active subscription of the customer
/// (the caller's own) and erases it, in one call; only when the caller could
/// erase the customer but for those subscriptions. A permanent blocker is `409`
/// with it and every blocker in `details.blockers`, and nothing is done.
#[utoipa::path(post, path = "/v1/customers/{id}/terminate-and-erase", tag = "erasure",
    request_body = TerminateAndEraseRequest,
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "The completed request and its receipt", body = ErasureRequestDto),
        (status = 202, description = "The erasure is committed but its key destruction is still pending", body = ErasureRequestDto),
        (status = 400, description = "Invalid id or reference", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
        (status = 409, description = "NOT_WHITE_LABEL or SHARED_ACROSS_BROADCASTERS, with every blocker in details.blockers; nothing done", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, body), fields(broadcaster = %key.broadcaster_id))]
pub async fn terminate_and_erase(
    State(state): State<SharedState>,
    key: KeyedTenant,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TerminateAndEraseRequest>,
) -> Result<Answer, ApiError> {
    let c = customer_id(&id)?;
    let req = FileRequest {
        request_id: chosen_id(body.request_id.as_deref())?,
        customer_id: c,
        by: key.actor(),
        reference: reference(body.reference.as_deref())?,
        received_at: None,
    };
    let r = state.ledger.terminate_and_erase(req).await;
    if let Err(AppError::Refused(first)) = &r {
        if matches!(
            first,
            Refusal::NotWhiteLabel | Refusal::SharedAcrossBroadcasters
        ) {
            state.metrics.erasure_refusals.increment(1);
            let customer = state.ledger.customer(c).await?;
            let all = match state.ledger.broadcaster(key.broadcaster_id).await {
                Ok(b) => customer
                    .erasure_blockers(&ledger_command::BroadcasterRef::from(&b))
                    .unwrap_or_else(|_| vec![first.clone()]),
                Err(_) => vec![first.clone()],
            };
            return Err(with_blockers(ApiError::from(first.clone()), &all, None));
        }
    }
    answer(&state, r).await
}

/// Adds every blocker (and, for the operator, the subscriptions per broadcaster)
/// to a refusal's details.
fn with_blockers(
    mut e: ApiError,
    blockers: &[Refusal],
    broadcasters: Option<Vec<serde_json::Value>>,
) -> ApiError {
    let list: Vec<BlockerDto> = blockers.iter().map(BlockerDto::of).collect();
    let mut details = match e.details.take() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    details.insert("blockers".into(), json!(list));
    if let Some(b) = broadcasters {
        details.insert("broadcasters".into(), json!(b));
    }
    e.details = serde_json::Value::Object(details);
    e
}

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

fn request_id(s: &str) -> Result<RequestId, ApiError> {
    parse_id::<RequestId>(s, "request_id")
}

/// A client-chosen request id, or a new one (derived from the idempotency key, if
/// any: `idempotency::new_id`).
fn chosen_id(s: Option<&str>) -> Result<RequestId, ApiError> {
    Ok(s.map(request_id)
        .transpose()?
        .unwrap_or_else(|| crate::idempotency::new_id("erasure-request", RequestId::from_uuid)))
}

pub(crate) fn reference(s: Option<&str>) -> Result<Option<Reference>, ApiError> {
    s.map(|r| {
        Reference::parse(r).map_err(|_| {
            ApiError::invalid_input(
                "reference",
                "expected 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-', ':', '/' or '#' (a ticket number, never personal data)",
            )
        })
    })
    .transpose()
}

/// The receipt as the request answers show it: with the revenue digests of the
/// read model (left out if it lags).
fn receipt_dto(state: &SharedState, r: &ErasureReceipt) -> ReceiptDto {
    let record = state.read.erasure(r.customer_id).ok().flatten();
    ReceiptDto::of(r, record.as_ref())
}

fn outcome_dto(state: &SharedState, o: &RequestOutcome) -> Result<ErasureRequestDto, ApiError> {
    let mut dto =
        ErasureRequestDto::of(&o.request, Timestamp::now()).ok_or_else(ApiError::not_found)?;
    dto.receipt = o.receipt.as_ref().map(|r| receipt_dto(state, r));
    Ok(dto)
}

/// Catches the read side and the request index up after a write, so the next
/// read sees it (a failure is logged; the write is committed).
async fn after_write(state: &SharedState) {
    state.read_your_write().await;
    if let Err(e) = state.ledger.requests().catch_up().await {
        tracing::warn!(
            code = e.code(),
            "request index catch-up failed after a write"
        );
    }
}

/// The answer's status: 200, or 202 while the erasure is decided but its key
/// destruction still pending (the reconciler finishes it; the request completes
/// on the next look at it).
fn status_of(o: &RequestOutcome) -> StatusCode {
    match &o.receipt {
        Some(r) if !r.data_key_destroyed => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    }
}

type Answer = (StatusCode, Json<ErasureRequestDto>);

async fn answer(
    state: &SharedState,
    r: Result<RequestOutcome, AppError>,
) -> Result<Answer, ApiError> {
    state.health.observe_write(&r);
    let o = r?;
    after_write(state).await;
    Ok((status_of(&o), Json(outcome_dto(state, &o)?)))
}

/// File an erasure request for a customer. Taken at once as far as it can go:
/// completed with the receipt, deferred while only active subscriptions block it
/// (it completes by itself once none is active), or refused with a permanent
/// reason, which is recorded.
#[utoipa::path(post, path = "/v1/erasure-requests", tag = "erasure",
    request_body = FileErasureRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "The request as it stands (completed, deferred or refused)", body = ErasureRequestDto),
        (status = 202, description = "The erasure is committed but its key destruction is still pending; the request completes once it is done", body = ErasureRequestDto),
        (status = 400, description = "Invalid id, reference or received_at", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such customer for this caller (nothing recorded)", body = ErrorBody),
        (status = 409, description = "REQUEST_EXISTS: the request id was used for another request; RECEIVED_AT_OUT_OF_RANGE: received_at is more than a year ago or in the future (nothing recorded)", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, body))]
pub async fn file(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(body): ApiJson<FileErasureRequest>,
) -> Result<Answer, ApiError> {
    let c = customer_id(&body.customer_id)?;
    let received_at = parse_time(body.received_at.as_deref(), "received_at")?;
    let req = FileRequest {
        request_id: chosen_id(body.request_id.as_deref())?,
        customer_id: c,
        by: caller.actor(),
        reference: reference(body.reference.as_deref())?,
        received_at,
    };
    let r = state.ledger.request_erasure(req).await;
    answer(&state, r).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    /// Only requests in this state.
    #[param(pattern = "^(open|deferred|completed|refused|cancelled)$")]
    pub status: Option<String>,
    /// `true`: only requests past their due date and not ended; `false`: the others.
    #[param(value_type = Option<bool>)]
    pub overdue: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^p[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// A cursor is `p` and a log position: what the documented pattern says.
pub(crate) fn decode_cursor(c: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::invalid_pagination("cursor is not a cursor this API returned");
    let digits = c.strip_prefix('p').ok_or_else(bad)?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits.parse().map_err(|_| bad())
}

pub(crate) fn encode_cursor(position: u64) -> String {
    format!("p{position}")
}

pub(crate) fn decode_limit(l: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(l) = l else { return Ok(default) };
    match l.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_pagination(
            "limit must be an integer from 1 to the documented maximum",
        )),
    }
}

/// The caller's erasure requests (every one for the operator), oldest first.
#[utoipa::path(get, path = "/v1/erasure-requests", tag = "erasure",
    params(RequestQuery),
    responses(
        (status = 200, description = "One page of requests", body = ErasureRequestPage),
        (status = 400, description = "Bad filter, pagination or unknown parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, q))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RequestQuery>,
) -> Result<Json<ErasureRequestPage>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            RequestStatus::parse(s).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_QUERY",
                    "status must be open, deferred, completed, refused or cancelled",
                )
                .with_details(json!({ "parameter": "status" }))
            })
        })
        .transpose()?;
    let overdue = q
        .overdue
        .as_deref()
        .map(|o| match o {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                "overdue must be true or false",
            )
            .with_details(json!({ "parameter": "overdue" }))),
        })
        .transpose()?;
    let filter = RequestFilter {
        status,
        overdue,
        after: q
            .cursor
            .as_deref()
            .map(decode_cursor)
            .transpose()?
            .unwrap_or(0),
        limit: decode_limit(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?,
    };
    let index = state.ledger.requests();
    index.catch_up().await?;
    let now = Timestamp::now();
    let page = index.list(&caller.actor(), &filter, now);
    Ok(Json(ErasureRequestPage {
        items: page
            .items
            .iter()
            .filter_map(|i| ErasureRequestDto::of(&i.request, now))
            .collect(),
        next_cursor: page.next.map(encode_cursor),
    }))
}

/// One erasure request, with its receipt once completed.
#[utoipa::path(get, path = "/v1/erasure-requests/{id}", tag = "erasure",
    params(("id" = String, Path, description = "Request id (UUID)")),
    responses(
        (status = 200, description = "The request", body = ErasureRequestDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such request for this caller", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state))]
pub async fn show(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ErasureRequestDto>, ApiError> {
    let id = request_id(&id)?;
    let o = state.ledger.erasure_request(id, caller.actor()).await?;
    Ok(Json(outcome_dto(&state, &o)?))
}

/// Withdraw an open or deferred request. A completed, refused request is
/// `409 REQUEST_CLOSED` (with its status); cancelling twice changes nothing.
#[utoipa::path(post, path = "/v1/erasure-requests/{id}/cancel", tag = "erasure",
    params(("id" = String, Path, description = "Request id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "The cancelled request", body = ErasureRequestDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such request for this caller", body = ErrorBody),
        (status = 409, description = "REQUEST_CLOSED: the request ended", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state))]
pub async fn cancel(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Answer, ApiError> {
    let id = request_id(&id)?;
    let r = state.ledger.cancel_request(id, caller.actor()).await;
    answer(&state, r).await
}

/// Move a request's due date, once, to at most two months past the original one
/// (GDPR Art. 12(3)), with the reason.
#[utoipa::path(post, path = "/v1/erasure-requests/{id}/extend", tag = "erasure",
    request_body = ExtendErasureRequest,
    params(("id" = String, Path, description = "Request id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "The extended request", body = ErasureRequestDto),
        (status = 400, description = "Invalid id, date or reason", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such request for this caller", body = ErrorBody),
        (status = 409, description = "REQUEST_CLOSED (the request ended), ALREADY_EXTENDED, DUE_DATE_NOT_LATER (not after the current due date) or EXTENSION_TOO_LONG (past two months after the original due date)", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, body))]
pub async fn extend(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ExtendErasureRequest>,
) -> Result<Answer, ApiError> {
    let id = request_id(&id)?;
    let due_at = Timestamp::parse_rfc3339(&body.due_at)
        .map_err(|_| ApiError::invalid_input("due_at", "expected an RFC 3339 date and time"))?;
    let reason = match body.reason.as_str() {
        "COMPLEXITY" => ExtensionReason::Complexity,
        "NUMBER_OF_REQUESTS" => ExtensionReason::NumberOfRequests,
        _ => {
            return Err(ApiError::invalid_input(
                "reason",
                "expected COMPLEXITY or NUMBER_OF_REQUESTS",
            ))
        }
    };
    let r = state
        .ledger
        .extend_request(id, due_at, reason, caller.actor())
        .await;
    answer(&state, r).await
}

/// The platform operator erases any customer (a shared account, or a customer of
/// a non-white-label broadcaster), with a reference. Refused while any
/// broadcaster has an active subscription for the customer, every one listed with
/// its broadcaster in `details.broadcasters`; nothing is recorded then. Every
/// linked broadcaster then sees the receipt among its own, marked as the
/// operator's.
#[utoipa::path(post, path = "/v1/admin/customers/{id}/anonymize", tag = "admin",
    request_body = OperatorAnonymizeRequest,
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "The completed request and its receipt", body = ErasureRequestDto),
        (status = 202, description = "The erasure is committed but its key destruction is still pending", body = ErasureRequestDto),
        (status = 400, description = "Invalid id or reference", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin key", body = ErrorBody),
        (status = 404, description = "No such customer", body = ErrorBody),
        (status = 409, description = "ACTIVE_SUBSCRIPTION with any broadcaster: every one in details.blockers and details.broadcasters", body = ErrorBody),
    ),
    security(("admin" = [])))]
#[instrument(skip(state, body, _admin))]
pub async fn operator_anonymize(
    State(state): State<SharedState>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<OperatorAnonymizeRequest>,
) -> Result<Answer, ApiError> {
    let c = customer_id(&id)?;
    let reference = reference(Some(&body.reference))?;
    let id = chosen_id(body.request_id.as_deref())?;
    let customer = state.ledger.customer(c).await?;
    let blockers = customer.operator_erasure_blockers()?;
    if let Some(first) = blockers.first().cloned() {
        state.metrics.erasure_refusals.increment(1);
        let mut by_broadcaster: std::collections::BTreeMap<String, Vec<String>> =
            Default::default();
        if let Refusal::ActiveSubscription { subscriptions } = &first {
            for s in subscriptions {
                if let Some(sub) = customer.subscription(*s) {
                    by_broadcaster
                        .entry(sub.broadcaster_id.to_string())
                        .or_default()
                        .push(s.to_string());
                }
            }
        }
        let broadcasters: Vec<_> = by_broadcaster
            .into_iter()
            .map(|(b, subs)| json!({ "broadcaster_id": b, "subscriptions": subs }))
            .collect();
        return Err(with_blockers(
            ApiError::from(first),
            &blockers,
            Some(broadcasters),
        ));
    }
    let req = FileRequest {
        request_id: id,
        customer_id: c,
        by: Actor::Operator,
        reference,
        received_at: None,
    };
    let r = state.ledger.request_erasure(req).await;
    if let Ok(o) = &r {
        if o.receipt.as_ref().is_some_and(|r| !r.repeat) {
            state.metrics.erasures.increment(1);
        }
    }
    answer(&state, r).await
}
