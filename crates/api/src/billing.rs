//! Subscriptions and payments of a customer, scoped to the calling broadcaster.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger_command::CustomerCommand;
use ledger_types::{Currency, Money, OfferId, PaymentId, RefundId, SubscriptionId, Timestamp};
use tracing::instrument;

use crate::auth::Tenant;
use crate::customers::customer_id;
use crate::dto::{
    CapturePaymentRequest, MoneyDto, RefundPaymentRequest, StartSubscriptionRequest,
    SubscriptionDto, SubscriptionList, WriteResult,
};
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::idempotency::new_id;
use crate::{parse_id, parse_time, SharedState};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/v1/customers/{id}/subscriptions",
            get(list_subscriptions).post(start_subscription),
        )
        .route(
            "/v1/customers/{id}/subscriptions/{subscription_id}/terminate",
            post(terminate_subscription),
        )
        .route("/v1/customers/{id}/payments", post(capture_payment))
        .route(
            "/v1/customers/{id}/payments/{payment_id}/refunds",
            post(refund_payment),
        )
}

fn offer(s: &str) -> Result<OfferId, ApiError> {
    OfferId::parse(s).map_err(|_| {
        ApiError::invalid_input(
            "offer_id",
            "must be 1 to 64 characters of a-z, 0-9, _ and -",
        )
    })
}

fn money(m: &MoneyDto, field: &'static str) -> Result<Money, ApiError> {
    let currency = Currency::parse(&m.currency).map_err(|_| {
        ApiError::invalid_input(
            &format!("{field}.currency"),
            "must be an ISO 4217 currency code with minor units, such as EUR",
        )
    })?;
    Money::positive(m.minor, currency).map_err(|_| {
        ApiError::invalid_input(
            &format!("{field}.minor"),
            "must be a positive integer of minor units, at most 1000000000000",
        )
    })
}

fn optional_id<T: std::str::FromStr>(
    s: Option<&str>,
    field: &'static str,
) -> Result<Option<T>, ApiError> {
    s.map(|s| parse_id::<T>(s, field)).transpose()
}

/// The customer's subscriptions (all broadcasters; `yours` marks the caller's).
#[utoipa::path(get, path = "/v1/customers/{id}/subscriptions", tag = "subscriptions",
    params(("id" = String, Path, description = "Customer id (UUID)")),
    responses(
        (status = 200, description = "Subscriptions", body = SubscriptionList),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %tenant.0))]
pub async fn list_subscriptions(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SubscriptionList>, ApiError> {
    let c = customer_id(&id)?;
    let s = state.read.summary(tenant.0, c)?;
    Ok(Json(SubscriptionList {
        items: s
            .view
            .subscriptions
            .iter()
            .map(|x| SubscriptionDto::of(x, tenant.0))
            .collect(),
    }))
}

/// Start a subscription to one of the caller's offers.
#[utoipa::path(post, path = "/v1/customers/{id}/subscriptions", tag = "subscriptions",
    request_body = StartSubscriptionRequest,
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 201, description = "Started", body = WriteResult),
        (status = 400, description = "Invalid id or body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such customer for this broadcaster", body = ErrorBody),
        (status = 409, description = "SUBSCRIPTION_EXISTS, CUSTOMER_ANONYMIZED or ENDS_AT_PASSED (ends_at is not after now)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, body), fields(broadcaster = %tenant.0))]
pub async fn start_subscription(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<StartSubscriptionRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let c = customer_id(&id)?;
    let sid = optional_id::<SubscriptionId>(body.subscription_id.as_deref(), "subscription_id")?
        .unwrap_or_else(|| new_id("subscription", SubscriptionId::from_uuid));
    let ends_at = parse_time(body.ends_at.as_deref(), "ends_at")?;
    let cmd = CustomerCommand::StartSubscription {
        broadcaster_id: tenant.0,
        subscription_id: sid,
        offer_id: offer(&body.offer_id)?,
        ends_at,
        at: Timestamp::now(),
    };
    let ex = state.execute(c, &cmd).await?;
    Ok((
        StatusCode::CREATED,
        Json(WriteResult {
            subscription_id: Some(sid.to_string()),
            ..WriteResult::of(c, &ex)
        }),
    ))
}

/// Terminate a subscription the caller started.
#[utoipa::path(post, path = "/v1/customers/{id}/subscriptions/{subscription_id}/terminate", tag = "subscriptions",
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("subscription_id" = String, Path, description = "Subscription id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "Terminated", body = WriteResult),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "NOT_FOUND or SUBSCRIPTION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "SUBSCRIPTION_NOT_ACTIVE", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state), fields(broadcaster = %tenant.0))]
pub async fn terminate_subscription(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiPath((id, sid)): ApiPath<(String, String)>,
) -> Result<Json<WriteResult>, ApiError> {
    let c = customer_id(&id)?;
    let sid = parse_id::<SubscriptionId>(&sid, "subscription_id")?;
    let cmd = CustomerCommand::TerminateSubscription {
        broadcaster_id: tenant.0,
        subscription_id: sid,
        at: Timestamp::now(),
    };
    let ex = state.execute(c, &cmd).await?;
    Ok(Json(WriteResult {
        subscription_id: Some(sid.to_string()),
        ..WriteResult::of(c, &ex)
    }))
}

/// Record a captured payment.
#[utoipa::path(post, path = "/v1/customers/{id}/payments", tag = "payments",
    request_body = CapturePaymentRequest,
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 201, description = "Captured", body = WriteResult),
        (status = 400, description = "Invalid id or body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "NOT_FOUND or SUBSCRIPTION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "PAYMENT_EXISTS", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, body), fields(broadcaster = %tenant.0))]
pub async fn capture_payment(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CapturePaymentRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let c = customer_id(&id)?;
    let pid = optional_id::<PaymentId>(body.payment_id.as_deref(), "payment_id")?
        .unwrap_or_else(|| new_id("payment", PaymentId::from_uuid));
    let cmd = CustomerCommand::CapturePayment {
        broadcaster_id: tenant.0,
        payment_id: pid,
        offer_id: offer(&body.offer_id)?,
        subscription_id: optional_id(body.subscription_id.as_deref(), "subscription_id")?,
        amount: money(&body.amount, "amount")?,
        payer_ip: body.payer_ip,
        at: Timestamp::now(),
    };
    let ex = state.execute(c, &cmd).await?;
    Ok((
        StatusCode::CREATED,
        Json(WriteResult {
            payment_id: Some(pid.to_string()),
            ..WriteResult::of(c, &ex)
        }),
    ))
}

/// Refund (part of) a payment the caller captured. Accepted after erasure too.
#[utoipa::path(post, path = "/v1/customers/{id}/payments/{payment_id}/refunds", tag = "payments",
    request_body = RefundPaymentRequest,
    params(("id" = String, Path, description = "Customer id (UUID)"),
           ("payment_id" = String, Path, description = "Payment id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 201, description = "Refunded", body = WriteResult),
        (status = 400, description = "Invalid id or body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "NOT_FOUND or PAYMENT_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "REFUND_EXISTS, REFUND_EXCEEDS_PAYMENT or CURRENCY_MISMATCH", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, body), fields(broadcaster = %tenant.0))]
pub async fn refund_payment(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiPath((id, pid)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<RefundPaymentRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let c = customer_id(&id)?;
    let pid = parse_id::<PaymentId>(&pid, "payment_id")?;
    let rid = optional_id::<RefundId>(body.refund_id.as_deref(), "refund_id")?
        .unwrap_or_else(|| new_id("refund", RefundId::from_uuid));
    let cmd = CustomerCommand::RefundPayment {
        broadcaster_id: tenant.0,
        refund_id: rid,
        payment_id: pid,
        amount: money(&body.amount, "amount")?,
        at: Timestamp::now(),
    };
    let ex = state.execute(c, &cmd).await?;
    Ok((
        StatusCode::CREATED,
        Json(WriteResult {
            payment_id: Some(pid.to_string()),
            refund_id: Some(rid.to_string()),
            ..WriteResult::of(c, &ex)
        }),
    ))
}
