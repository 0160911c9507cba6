//! Signed tree heads and Merkle proofs (ADR 0014): what an auditor, a data subject
//! or a broadcaster checks the log against without holding it.
//!
//! - `GET /v1/audit/tree-head` — the latest signed head, or `?size=N` for a past
//!   size (signed now);
//! - `GET /v1/audit/proofs/inclusion?position=P[&size=N]` — the record at log
//!   position `P` is leaf `P - 1` of the tree of `N` records (default: the latest
//!   signed head's size);
//! - `GET /v1/audit/proofs/consistency?from=M[&to=N]` — the tree of `M` records is
//!   a prefix of the tree of `N` records (default: the latest signed head's size).
//!
//! **Who may call**: the admin key or any broadcaster key. A head and a proof are
//! hashes and sizes: no tenant's data, nothing personal (a leaf hash covers random
//! event ids and sealed payloads, so it cannot be guessed back), and a broadcaster
//! needs the heads to hand its customers receipts they can check. Anonymous access
//! is not offered: publishing heads is the operator's act (docs/operations.md).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use ledger_app::transparency::{SignedTreeHead, TransparencyError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Admin, Tenant};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::SharedState;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/audit/tree-head", get(tree_head))
        .route("/v1/audit/proofs/inclusion", get(inclusion))
        .route("/v1/audit/proofs/consistency", get(consistency))
}

/// The admin key or a broadcaster key (see the module doc for why either).
#[derive(Debug, Clone, Copy)]
pub struct Auditor;

impl FromRequestParts<SharedState> for Auditor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        if Admin::from_request_parts(parts, state).await.is_ok() {
            return Ok(Auditor);
        }
        Tenant::from_request_parts(parts, state)
            .await
            .map(|_| Auditor)
    }
}

/// A signed tree head. The signature is Ed25519 over the 68 bytes
/// `"ledger-tree-head-v1\n" || size (u64 BE) || root (32 bytes) || timestamp (i64 BE)`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignedTreeHeadDto {
    /// `ledger-tree-head-v1`.
    pub format: String,
    /// Records under the root: log positions 1..=size.
    pub size: u64,
    /// RFC 6962 Merkle root, 64 hex digits.
    pub root_hash: String,
    /// Signing time, milliseconds since the Unix epoch (as signed).
    pub timestamp: i64,
    /// Ed25519 signature, 128 hex digits.
    pub signature: String,
    /// The signer's public key, 64 hex digits (verify with the key you trust).
    pub public_key: String,
    /// `ed25519`.
    pub algorithm: String,
}

impl From<&SignedTreeHead> for SignedTreeHeadDto {
    fn from(s: &SignedTreeHead) -> Self {
        Self {
            format: s.format.clone(),
            size: s.size,
            root_hash: s.root_hash.to_hex(),
            timestamp: s.timestamp,
            signature: s.signature.clone(),
            public_key: s.public_key.clone(),
            algorithm: s.algorithm.clone(),
        }
    }
}

/// An inclusion proof (RFC 6962 §2.1.1).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InclusionProofDto {
    /// The log position asked for.
    pub position: u64,
    /// `position - 1`.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Sibling hashes, leaf level first, 64 hex digits each.
    pub inclusion_path: Vec<String>,
    /// `SHA-256(0x00 || canonical bytes of the record)`.
    pub leaf_hash: String,
}

/// A consistency proof (RFC 6962 §2.1.2).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsistencyProofDto {
    pub from: u64,
    pub to: u64,
    /// 64 hex digits each; empty when `from == to`.
    pub consistency_path: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TreeHeadQuery {
    /// A past tree size (default: the latest signed head).
    #[param(minimum = 0)]
    pub size: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// Log position of the record.
    #[param(minimum = 1)]
    pub position: u64,
    /// Tree size (default: the latest signed head's size).
    #[param(minimum = 0)]
    pub size: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The earlier tree size.
    #[param(minimum = 1)]
    pub from: u64,
    /// The later tree size (default: the latest signed head's size).
    #[param(minimum = 0)]
    pub to: Option<u64>,
}

fn invalid_query(parameter: &'static str, reason: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_QUERY",
        format!("invalid query parameter {parameter}: {reason}"),
    )
    .with_details(json!({ "parameter": parameter, "reason": reason }))
}

/// A parameter that must be at least 1 (a position, an earlier size). A missing
/// or non-numeric one is refused by the query extractor (`INVALID_QUERY`).
fn at_least_one(v: u64, parameter: &'static str) -> Result<u64, ApiError> {
    if v == 0 {
        return Err(invalid_query(parameter, "must be at least 1"));
    }
    Ok(v)
}

fn tree_error(e: TransparencyError) -> ApiError {
    match e {
        // Well-formed, but no tree of that size exists (yet): not found, like any
        // resource that is not there.
        TransparencyError::SizeBeyondTree { requested, size } => ApiError::new(
            StatusCode::NOT_FOUND,
            "SIZE_BEYOND_TREE",
            format!("size {requested} is beyond the {size} records in the log"),
        )
        .with_details(json!({ "requested": requested, "tree_size": size })),
        TransparencyError::NoSuchProof(p) => ApiError::new(
            StatusCode::NOT_FOUND,
            "NO_SUCH_PROOF",
            format!("no such proof: {p}"),
        ),
        TransparencyError::HeadNotInLog { .. } => ApiError::internal(),
        TransparencyError::App(e) => e.into(),
    }
}

/// The latest signed tree head, or a head for a past size signed now.
#[utoipa::path(get, path = "/v1/audit/tree-head", tag = "audit",
    params(TreeHeadQuery),
    responses(
        (status = 200, description = "A signed tree head", body = SignedTreeHeadDto),
        (status = 400, description = "INVALID_QUERY (not a number, unknown parameter)", body = ErrorBody),
        (status = 404, description = "SIZE_BEYOND_TREE: no tree of that size (yet)", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin or broadcaster key", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the log cannot be read now (Retry-After)", body = ErrorBody),
    ),
    security(("admin" = []), ("bearer" = [])))]
#[instrument(skip(state, _who, q))]
pub async fn tree_head(
    State(state): State<SharedState>,
    _who: Auditor,
    ApiQuery(q): ApiQuery<TreeHeadQuery>,
) -> Result<Json<SignedTreeHeadDto>, ApiError> {
    let t = &state.transparency;
    let sth = match q.size {
        None => t.latest_covering(0).await,
        Some(n) => t.signed_head_at(n).await,
    }
    .map_err(tree_error)?;
    Ok(Json(SignedTreeHeadDto::from(&sth)))
}

/// The proof that the record at a log position is in the tree of a size.
#[utoipa::path(get, path = "/v1/audit/proofs/inclusion", tag = "audit",
    params(InclusionQuery),
    responses(
        (status = 200, description = "The inclusion proof", body = InclusionProofDto),
        (status = 400, description = "INVALID_QUERY (position missing, 0 or not a number; unknown parameter)", body = ErrorBody),
        (status = 404, description = "SIZE_BEYOND_TREE (no tree of that size yet) or NO_SUCH_PROOF (position beyond the size)", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin or broadcaster key", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the log cannot be read now (Retry-After)", body = ErrorBody),
    ),
    security(("admin" = []), ("bearer" = [])))]
#[instrument(skip(state, _who, q))]
pub async fn inclusion(
    State(state): State<SharedState>,
    _who: Auditor,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Json<InclusionProofDto>, ApiError> {
    let position = at_least_one(q.position, "position")?;
    let size = q.size;
    let i = state
        .transparency
        .inclusion(position, size)
        .await
        .map_err(tree_error)?;
    Ok(Json(InclusionProofDto {
        position,
        leaf_index: i.proof.leaf_index,
        tree_size: i.proof.tree_size,
        inclusion_path: i.proof.inclusion_path.iter().map(|h| h.to_hex()).collect(),
        leaf_hash: i.leaf_hash.to_hex(),
    }))
}

/// The proof that the tree of `from` records is a prefix of the tree of `to`.
#[utoipa::path(get, path = "/v1/audit/proofs/consistency", tag = "audit",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "The consistency proof", body = ConsistencyProofDto),
        (status = 400, description = "INVALID_QUERY (from missing, 0 or not a number; unknown parameter)", body = ErrorBody),
        (status = 404, description = "SIZE_BEYOND_TREE (no tree of that size yet) or NO_SUCH_PROOF (from > to)", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin or broadcaster key", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the log cannot be read now (Retry-After)", body = ErrorBody),
    ),
    security(("admin" = []), ("bearer" = [])))]
#[instrument(skip(state, _who, q))]
pub async fn consistency(
    State(state): State<SharedState>,
    _who: Auditor,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Json<ConsistencyProofDto>, ApiError> {
    let from = at_least_one(q.from, "from")?;
    let to = q.to;
    let p = state
        .transparency
        .consistency(from, to)
        .await
        .map_err(tree_error)?;
    Ok(Json(ConsistencyProofDto {
        from: p.old_size,
        to: p.new_size,
        consistency_path: p.consistency_path.iter().map(|h| h.to_hex()).collect(),
    }))
}
