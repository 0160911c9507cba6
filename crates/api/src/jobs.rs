//! Bulk erasure jobs (issue 12, part 4): submit up to 10,000 customers at once,
//! follow the job, page through its items, cancel it.
//!
//! The list is refused whole, with nothing recorded, when it is empty, longer than
//! 10,000 (`400 TOO_MANY_IDS`), names a customer twice (`400 DUPLICATE_IDS`, the
//! duplicates listed) or holds a malformed id (`400 INVALID_INPUT`, the positions
//! listed, never the values). A customer the caller cannot see (unknown, or another
//! tenant's) is not a reason to refuse the job: that item is reported `NOT_FOUND`
//! by the validation and ends `not_found`, with nothing filed for it, exactly as an
//! unknown customer would (no existence oracle).
//!
//! The job is validated before the answer (`ready`), then started and run by the
//! runner in `serve` (`ledger_app::jobs`, ADR 0025); every item becomes an erasure
//! request of its own (`/v1/erasure-requests/{request_id}`), so deferral and
//! deadlines apply to each. A broadcaster sees only its own jobs; the operator (the
//! admin key) sees all and may submit jobs of its own (the operator's erasure rules
//! then apply to every item).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger_app::jobs::{request_id_for, SubmitJob, MAX_ITEMS};
use ledger_command::{ErasureJob, ItemState};
use ledger_types::{CustomerId, JobId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::instrument;
use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::dto::{ActorDto, SubmitErasureJob};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::requests::{decode_cursor, decode_limit, encode_cursor, reference};
use crate::{parse_id, SharedState};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/erasure-jobs", post(submit))
        .route("/v1/erasure-jobs/{id}", get(show))
        .route("/v1/erasure-jobs/{id}/items", get(items))
        .route("/v1/erasure-jobs/{id}/cancel", post(cancel))
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;
/// Most malformed positions listed in an `INVALID_INPUT` answer.
const MAX_LISTED: usize = 100;

/// The schema of `customer_ids`: 1 to 10,000 canonical UUIDs.
pub fn customer_ids_schema() -> Schema {
    Schema::Array(
        ArrayBuilder::new()
            .items(utoipa::openapi::RefOr::T(crate::money::uuid_schema()))
            .min_items(Some(1))
            .max_items(Some(MAX_ITEMS))
            // Duplicates are refused (DUPLICATE_IDS): say so in the schema, so a
            // client's validator (and a fuzzer) knows the list is a set.
            .unique_items(true)
            .build(),
    )
}

/// How many items are in each state.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ItemCounts {
    /// Not settled yet.
    pub pending: u64,
    /// Erased: the request completed, the data key is destroyed.
    pub completed: u64,
    /// Filed; waits for the customer's active subscriptions to end (it completes
    /// by itself then).
    pub deferred: u64,
    /// Filed and refused for a permanent reason (recorded on the request).
    pub refused: u64,
    /// Not visible to the caller: nothing was filed.
    pub not_found: u64,
    /// Never filed (the job was cancelled first), or its request was cancelled.
    pub cancelled: u64,
}

/// A bulk erasure job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureJobDto {
    pub job_id: String,
    /// `validating`, `ready`, `running`, `succeeded`, `partially_failed` or
    /// `cancelled`.
    pub state: String,
    pub requested_by: ActorDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub submitted_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// How many customers the job names.
    pub total: u64,
    pub counts: ItemCounts,
    /// What the validation found, by blocker code (`NOT_FOUND`, `NOT_WHITE_LABEL`,
    /// `SHARED_ACROSS_BROADCASTERS`, `ACTIVE_SUBSCRIPTION`): how many items each.
    #[schema(value_type = Object)]
    pub validation: std::collections::BTreeMap<String, u64>,
}

impl ErasureJobDto {
    /// `None` for a job never submitted.
    pub fn of(j: &ErasureJob) -> Option<Self> {
        let s = j.submitted()?;
        let mut counts = ItemCounts::default();
        for (state, n) in j.counts() {
            let n = n as u64;
            match state {
                ItemState::Pending => counts.pending = n,
                ItemState::Completed => counts.completed = n,
                ItemState::Deferred => counts.deferred = n,
                ItemState::Refused => counts.refused = n,
                ItemState::NotFound => counts.not_found = n,
                ItemState::Cancelled => counts.cancelled = n,
            }
        }
        let mut validation = std::collections::BTreeMap::new();
        for i in 0..j.len() {
            for c in j.findings(i) {
                *validation.entry(c.code().to_owned()).or_default() += 1;
            }
        }
        Some(Self {
            job_id: s.job_id.to_string(),
            state: j.state().map_or("validating", |s| s.as_str()).to_owned(),
            requested_by: ActorDto::from(s.requested_by),
            reference: s.reference.as_ref().map(ToString::to_string),
            submitted_at: s.at.to_rfc3339(),
            started_at: j.started_at().map(|t| t.to_rfc3339()),
            ended_at: j.ended_at().map(|t| t.to_rfc3339()),
            total: j.len() as u64,
            counts,
            validation,
        })
    }
}

/// One customer of a job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureJobItemDto {
    /// The item's position in the submitted list, from 0.
    pub index: u64,
    pub customer_id: String,
    /// `pending`, `completed`, `deferred`, `refused`, `not_found` or `cancelled`.
    pub state: String,
    /// The erasure request filed for it (derived from the job and customer ids),
    /// absent when none is (`not_found`, or never filed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The request's status now (it may have moved on since the job settled it:
    /// a deferred request completes by itself), when the request index has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_status: Option<String>,
    /// What the validation found (the erasure preview's blocker codes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<String>,
}

/// One page of a job's items, in the submitted order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureJobItemPage {
    pub items: Vec<ErasureJobItemDto>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn job_id(s: &str) -> Result<JobId, ApiError> {
    parse_id::<JobId>(s, "job_id")
}

/// The ids of the body, or the answer refusing them all: too many, or malformed
/// (their positions listed, never their values). Duplicates are the domain's
/// refusal (`DUPLICATE_IDS`).
fn customer_ids(ids: &[String]) -> Result<Vec<CustomerId>, ApiError> {
    if ids.len() > MAX_ITEMS {
        return Err(ApiError::from(ledger_command::Refusal::TooManyIds {
            given: ids.len(),
            max: MAX_ITEMS,
        }));
    }
    let mut out = Vec::with_capacity(ids.len());
    let mut bad = Vec::new();
    let mut malformed = 0usize;
    for (i, s) in ids.iter().enumerate() {
        match ledger_types::is_canonical_uuid(s)
            .then(|| CustomerId::parse(s).ok())
            .flatten()
        {
            Some(c) => out.push(c),
            None => {
                malformed += 1;
                if bad.len() < MAX_LISTED {
                    bad.push(i);
                }
            }
        }
    }
    if malformed > 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            format!("invalid customer_ids: {malformed} are not canonical UUIDs"),
        )
        .with_details(json!({
            "field": "customer_ids",
            "reason": "expected canonical UUIDs",
            "malformed": malformed,
            "indices": bad,
        })));
    }
    Ok(out)
}

/// Catches the request index up after a write (the job counts in `/metrics`).
async fn after_write(state: &SharedState) {
    if let Err(e) = state.ledger.requests().catch_up().await {
        tracing::warn!(
            code = e.code(),
            "request index catch-up failed after a write"
        );
    }
}

/// Submit a bulk erasure job: up to 10,000 customers, validated at once (each
/// item's blockers, as the erasure preview gives them), then run in the background
/// (`ready` → `running` by itself): every customer becomes an erasure request of
/// its own, so deferral and deadlines apply to each. The same `job_id` with the
/// same customers answers the same job (200).
#[utoipa::path(post, path = "/v1/erasure-jobs", tag = "erasure",
    request_body = SubmitErasureJob,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result (bodies up to the plain body limit; use job_id for larger jobs)")),
    responses(
        (status = 201, description = "The job, validated", body = ErasureJobDto),
        (status = 200, description = "This job was submitted before (same job_id and customers): the job as it stands", body = ErasureJobDto),
        (status = 400, description = "TOO_MANY_IDS (over 10,000), DUPLICATE_IDS (listed in details.duplicates), INVALID_INPUT (malformed ids, their positions in details.indices; empty list; bad reference), INVALID_ID (job_id); nothing recorded", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 409, description = "JOB_EXISTS: the job id was used for another job", body = ErrorBody),
        (status = 413, description = "BODY_TOO_LARGE", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, body), fields(items = body.customer_ids.len()))]
pub async fn submit(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(body): ApiJson<SubmitErasureJob>,
) -> Result<(StatusCode, Json<ErasureJobDto>), ApiError> {
    let ids = customer_ids(&body.customer_ids)?;
    let job = SubmitJob {
        job_id: body
            .job_id
            .as_deref()
            .map(job_id)
            .transpose()?
            .unwrap_or_default(),
        by: caller.actor(),
        reference: reference(body.reference.as_deref())?,
        customer_ids: ids,
    };
    let r = state.ledger.submit_job(job).await;
    state.health.observe_write(&r);
    let (job, created) = r?;
    after_write(&state).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ErasureJobDto::of(&job).ok_or_else(ApiError::not_found)?),
    ))
}

/// A job: its state and how many items are in each state.
#[utoipa::path(get, path = "/v1/erasure-jobs/{id}", tag = "erasure",
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses(
        (status = 200, description = "The job", body = ErasureJobDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such job for this caller", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state))]
pub async fn show(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ErasureJobDto>, ApiError> {
    let job = state
        .ledger
        .erasure_job(job_id(&id)?, caller.actor())
        .await?;
    Ok(Json(
        ErasureJobDto::of(&job).ok_or_else(ApiError::not_found)?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ItemQuery {
    /// `next_cursor` of the previous page.
    #[param(pattern = "^p[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A job's items, in the submitted order: each customer's state in the job, its
/// request and the request's status now.
#[utoipa::path(get, path = "/v1/erasure-jobs/{id}/items", tag = "erasure",
    params(("id" = String, Path, description = "Job id (UUID)"), ItemQuery),
    responses(
        (status = 200, description = "One page of items", body = ErasureJobItemPage),
        (status = 400, description = "Invalid id, pagination or unknown parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such job for this caller", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, q))]
pub async fn items(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ItemQuery>,
) -> Result<Json<ErasureJobItemPage>, ApiError> {
    let id = job_id(&id)?;
    let after = q
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .unwrap_or(0) as usize;
    let limit = decode_limit(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let job = state.ledger.erasure_job(id, caller.actor()).await?;
    let index = state.ledger.requests();
    index.catch_up().await?;
    let end = after.saturating_add(limit).min(job.len());
    let items = job
        .customer_ids()
        .iter()
        .enumerate()
        .take(end)
        .skip(after)
        .map(|(i, c)| {
            let item = job.item_state(i);
            // Never filed: not visible to the caller, or the job was cancelled first.
            let unfiled = item == ItemState::NotFound
                || (item == ItemState::Cancelled && job.outcome(i).is_none());
            let filed = !unfiled;
            let r = request_id_for(id, *c);
            ErasureJobItemDto {
                index: i as u64,
                customer_id: c.to_string(),
                state: item.as_str().to_owned(),
                request_id: filed.then(|| r.to_string()),
                request_status: filed
                    .then(|| index.get(r))
                    .flatten()
                    .and_then(|x| x.request.status())
                    .map(|s| s.as_str().to_owned()),
                blockers: job
                    .findings(i)
                    .iter()
                    .map(|c| c.code().to_owned())
                    .collect(),
            }
        })
        .collect();
    Ok(Json(ErasureJobItemPage {
        items,
        next_cursor: (end < job.len()).then(|| encode_cursor(end as u64)),
    }))
}

/// Cancel a job: no item is filed after this (the chunk being filed is finished
/// and recorded); requests already filed go on as requests (cancel them one by
/// one if needed). Cancelling twice changes nothing; an ended job is
/// `409 JOB_CLOSED`.
#[utoipa::path(post, path = "/v1/erasure-jobs/{id}/cancel", tag = "erasure",
    params(("id" = String, Path, description = "Job id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 200, description = "The cancelled job", body = ErasureJobDto),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or invalid API or admin key", body = ErrorBody),
        (status = 404, description = "No such job for this caller", body = ErrorBody),
        (status = 409, description = "JOB_CLOSED: the job ended (succeeded or partially failed)", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state))]
pub async fn cancel(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ErasureJobDto>, ApiError> {
    let r = state.ledger.cancel_job(job_id(&id)?, caller.actor()).await;
    state.health.observe_write(&r);
    let job = r?;
    after_write(&state).await;
    Ok(Json(
        ErasureJobDto::of(&job).ok_or_else(ApiError::not_found)?,
    ))
}
