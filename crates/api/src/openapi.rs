//! The responses every operation of a kind can give, added to the OpenAPI document
//! in one place instead of ten lines on every handler.
//!
//! Handlers document what is theirs (their success, their refusal codes, `404`).
//! [`CommonResponses`] then adds, to each operation that lacks it, what the
//! surrounding machinery answers, judged from the operation itself:
//!
//! | the operation                                | gets                                   |
//! |----------------------------------------------|----------------------------------------|
//! | has path, query or body input                | 400 (`INVALID_ID`, `INVALID_INPUT`...) |
//! | has a security requirement                   | 401 `UNAUTHORIZED`                     |
//! | has a request body                           | 413 `BODY_TOO_LARGE`, 415 `UNSUPPORTED_MEDIA_TYPE` |
//! | takes `Idempotency-Key`                      | 400 `INVALID_IDEMPOTENCY_KEY`, 409 `IDEMPOTENCY_IN_PROGRESS`, 422 `IDEMPOTENCY_KEY_REUSED` |
//! | is authenticated under `/v1/` (reads the store, or times out) | 503 `STORE_UNAVAILABLE` / `TIMEOUT`, with `Retry-After` |
//! | writes (POST, PUT, PATCH, DELETE under `/v1/`) | 507 `STORAGE_FULL`, with `Retry-After` |
//!
//! It also types every path parameter as a canonical UUID (every path parameter of
//! this API is an id, and ids are refused in any other spelling), so a handler
//! cannot forget it.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::Modify;

use crate::money::uuid_param_schema;

/// See the module documentation.
#[derive(Debug)]
pub struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let v1 = path.starts_with("/v1/");
            let ops = [
                (false, item.get.as_mut()),
                (true, item.put.as_mut()),
                (true, item.post.as_mut()),
                (true, item.delete.as_mut()),
                (true, item.patch.as_mut()),
            ];
            for (write, op) in ops {
                if let Some(op) = op {
                    complete(op, v1, write && v1);
                }
            }
        }
    }
}

fn complete(op: &mut Operation, v1: bool, write: bool) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_input = op.request_body.is_some()
        || params
            .iter()
            .any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query));
    let idempotent = params
        .iter()
        .any(|p| p.name.eq_ignore_ascii_case(crate::idempotency::HEADER));
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let body = op.request_body.is_some();
    for p in op.parameters.iter_mut().flatten() {
        if matches!(p.parameter_in, ParameterIn::Path) {
            p.schema = Some(uuid_param_schema());
        }
    }
    let mut add = |status: &str, description: &str, retry_after: bool| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description, retry_after));
    };
    if has_input || idempotent {
        add(
            "400",
            "INVALID_ID, INVALID_INPUT, INVALID_QUERY, MALFORMED_JSON, UNKNOWN_FIELD, MISSING_FIELD or INVALID_IDEMPOTENCY_KEY",
            false,
        );
    }
    if secured {
        add("401", "UNAUTHORIZED: missing or invalid key", false);
    }
    if body {
        add("413", "BODY_TOO_LARGE: the body exceeds the limit", false);
        add(
            "415",
            "UNSUPPORTED_MEDIA_TYPE: the body must be application/json",
            false,
        );
    }
    if idempotent {
        add(
            "409",
            "IDEMPOTENCY_IN_PROGRESS: a request with this Idempotency-Key still runs",
            false,
        );
        add(
            "422",
            "IDEMPOTENCY_KEY_REUSED: this Idempotency-Key was used for a different request",
            false,
        );
    }
    if v1 && secured {
        add(
            "503",
            "STORE_UNAVAILABLE (a store cannot be reached) or TIMEOUT; retry after Retry-After",
            true,
        );
    }
    if write {
        add(
            "507",
            "STORAGE_FULL: nothing was written; retry after Retry-After",
            true,
        );
    }
}

fn error_response(description: &str, retry_after: bool) -> RefOr<utoipa::openapi::Response> {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if retry_after {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    RefOr::T(r.build())
}
