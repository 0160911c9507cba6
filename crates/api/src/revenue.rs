//! Revenue totals and their digest for the calling broadcaster, or platform-wide
//! for the admin key. Erasures never change these figures; the digest is the one
//! string that shows it.
//!
//! Content negotiation: JSON by default (totals and groups); `Accept: text/csv` or
//! `application/x-ndjson` gives the canonical rows (broadcaster × currency × day ×
//! offer, `ledger_projections::revenue_table`), from which an analyst recomputes
//! the digest (`docs/revenue-digest.md`, `scripts/verify_revenue_digest.py`); the
//! digest comes with them in the `Ledger-Revenue-Digest` header.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ledger_projections::revenue_table::{self, RevenueLine};
use ledger_projections::{canonical_day, RevenueFilter, RevenueTotals};
use ledger_types::{Currency, Timestamp};
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::dto::{RevenueResponse, RevenueRow};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::SharedState;

pub fn router() -> Router<SharedState> {
    Router::new().route("/v1/revenue", get(revenue))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevenueQuery {
    /// First UTC day included, `YYYY-MM-DD`.
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last UTC day included, `YYYY-MM-DD`. Before `from`, the selection is empty.
    #[param(format = Date)]
    pub to: Option<String>,
    /// ISO 4217 currency code with minor units.
    #[param(schema_with = crate::money::currency_schema)]
    pub currency: Option<String>,
    /// `none` (default), `day`, `offer` or `day_offer`.
    #[param(pattern = "^(none|day|offer|day_offer)$")]
    pub group_by: Option<String>,
}

fn day(s: &str, field: &'static str) -> Result<i64, ApiError> {
    let shape_ok = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    if !shape_ok {
        return Err(ApiError::invalid_input(field, "must be a date YYYY-MM-DD"));
    }
    Timestamp::parse_rfc3339(&format!("{s}T00:00:00Z"))
        .map(|t| t.day_number())
        .map_err(|_| ApiError::invalid_input(field, "must be a date YYYY-MM-DD"))
}

/// The header carrying the selection's digest with a CSV or NDJSON answer.
pub const DIGEST_HEADER: HeaderName = HeaderName::from_static("ledger-revenue-digest");

/// What the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Ndjson,
}

/// The first of `text/csv`, `application/x-ndjson` (or `application/jsonl`) named
/// in `Accept` with a non-zero weight; JSON otherwise (no header, `*/*`,
/// `application/json`, anything else).
fn format(headers: &HeaderMap) -> Format {
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if refused {
                continue;
            }
            match media.as_str() {
                "text/csv" => return Format::Csv,
                "application/x-ndjson" | "application/jsonl" => return Format::Ndjson,
                "application/json" => return Format::Json,
                _ => {}
            }
        }
    }
    Format::Json
}

/// Revenue totals per currency (and per group), with the selection's digest; or
/// the selection's canonical rows as CSV or NDJSON.
///
/// A broadcaster key sees its own revenue; the admin key sees every
/// broadcaster's (platform-wide totals, and rows of every broadcaster). With
/// `Accept: text/csv` or `Accept: application/x-ndjson` the answer is one line per
/// broadcaster × currency × UTC day × offer in canonical order (`group_by` applies
/// to JSON only), with the digest in the `Ledger-Revenue-Digest` header.
#[utoipa::path(get, path = "/v1/revenue", tag = "revenue",
    params(RevenueQuery),
    responses(
        (status = 200, description = "Totals and digest (JSON); the canonical rows (CSV with a header line, or NDJSON of RevenueLine), the digest in the Ledger-Revenue-Digest header",
            headers(("ledger-revenue-digest" = String, description = "sha256 of the selection's canonical form (CSV and NDJSON answers)")),
            content(
                (RevenueResponse = "application/json"),
                (String = "text/csv"),
                (RevenueLineDto = "application/x-ndjson"),
            )),
        (status = 400, description = "Invalid date, currency, group_by or unknown parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, q, headers), fields(caller = ?caller))]
pub async fn revenue(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<RevenueQuery>,
) -> Result<Response, ApiError> {
    let from_day = q.from.as_deref().map(|s| day(s, "from")).transpose()?;
    let to_day = q.to.as_deref().map(|s| day(s, "to")).transpose()?;
    // `to` before `from` is an empty range: it selects no row (the filter handles
    // it), as a schema cannot say that one parameter must not exceed another.
    let currency = q
        .currency
        .as_deref()
        .map(|c| {
            Currency::parse(c).map_err(|_| {
                ApiError::invalid_input("currency", "must be an ISO 4217 code such as EUR")
            })
        })
        .transpose()?;
    let group_by = q.group_by.as_deref().unwrap_or("none");
    let (by_day, by_offer) = match group_by {
        "none" => (false, false),
        "day" => (true, false),
        "offer" => (false, true),
        "day_offer" => (true, true),
        _ => {
            return Err(ApiError::invalid_input(
                "group_by",
                "must be none, day, offer or day_offer",
            ))
        }
    };
    let broadcaster_id = match caller {
        Caller::Broadcaster { broadcaster_id, .. } => Some(broadcaster_id),
        Caller::Operator => None,
    };
    let filter = RevenueFilter {
        broadcaster_id,
        currency,
        from_day,
        to_day,
    };
    let report = state.read.revenue(&filter)?;
    let rows = || report.rows.iter().map(|(k, t)| (k, t));
    let (content_type, body) = match format(&headers) {
        Format::Json => ("", String::new()),
        Format::Csv => ("text/csv; charset=utf-8", revenue_table::csv(rows())),
        Format::Ndjson => {
            let mut out = String::with_capacity(report.rows.len() * 200);
            for (k, t) in rows() {
                // A struct of strings and integers always serializes.
                if let Ok(line) = serde_json::to_string(&RevenueLine::of(k, t)) {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
            ("application/x-ndjson", out)
        }
    };
    if !content_type.is_empty() {
        let digest = HeaderValue::from_str(&report.digest).map_err(|_| ApiError::internal())?;
        return Ok((
            [
                (CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (DIGEST_HEADER, digest),
            ],
            body,
        )
            .into_response());
    }
    let totals = report
        .per_currency
        .iter()
        .map(|(c, t)| RevenueRow::of(None, None, *c, t))
        .collect();
    let mut groups: BTreeMap<(Option<i64>, Option<String>, Currency), RevenueTotals> =
        BTreeMap::new();
    if by_day || by_offer {
        for (k, t) in &report.rows {
            let key = (
                by_day.then_some(k.day),
                by_offer.then(|| k.offer_id.to_string()),
                k.currency,
            );
            // i128 sums (RevenueTotals::add): a group cannot overflow.
            groups.entry(key).or_default().add(t);
        }
    }
    Ok(Json(RevenueResponse {
        digest: report.digest,
        from: q.from,
        to: q.to,
        currency: currency.map(|c| c.to_string()),
        group_by: group_by.to_owned(),
        totals,
        groups: groups
            .into_iter()
            .map(|((d, o, c), t)| RevenueRow::of(d.map(canonical_day), o, c, &t))
            .collect(),
    })
    .into_response())
}

/// One canonical revenue row, as a line of the NDJSON answer (the JSON Schema of
/// `ledger_projections::revenue_table::RevenueLine`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RevenueLineDto {
    #[schema(schema_with = crate::money::uuid_schema)]
    pub broadcaster_id: String,
    pub currency: String,
    #[schema(schema_with = crate::money::exponent_schema)]
    pub exponent: Option<u8>,
    /// UTC day, `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub day: String,
    pub offer_id: String,
    pub gross_captured: crate::money::Total,
    pub refunded: crate::money::Total,
    pub net: crate::money::Total,
    pub payment_count: u64,
    pub refund_count: u64,
}
