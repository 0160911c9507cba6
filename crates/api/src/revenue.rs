//! Revenue totals and their digest for the calling broadcaster. Erasures never
//! change these figures; the digest is the one string that shows it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ledger_projections::{canonical_day, RevenueFilter, RevenueTotals};
use ledger_types::{Currency, Timestamp};
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;

use crate::auth::Tenant;
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

/// Revenue totals per currency (and per group), with the selection's digest.
#[utoipa::path(get, path = "/v1/revenue", tag = "revenue",
    params(RevenueQuery),
    responses(
        (status = 200, description = "Totals and digest", body = RevenueResponse),
        (status = 400, description = "Invalid date, currency, group_by or unknown parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[instrument(skip(state, q), fields(broadcaster = %tenant.0))]
pub async fn revenue(
    State(state): State<SharedState>,
    tenant: Tenant,
    ApiQuery(q): ApiQuery<RevenueQuery>,
) -> Result<Json<RevenueResponse>, ApiError> {
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
    let filter = RevenueFilter {
        broadcaster_id: Some(tenant.0),
        currency,
        from_day,
        to_day,
    };
    let report = state.read.revenue(&filter)?;
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
    }))
}
