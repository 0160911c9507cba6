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
//! cannot forget it, and gives `Idempotency-Key` its syntax.
//!
//! [`RequestFields`] types every `*_id` property (but `offer_id`) as a canonical
//! UUID, and writes the input contract of `ledger_command::validate` into the
//! request schemas, by field name, in one table: the patterns that refuse
//! control characters (and blank names, and an email without exactly one `@`),
//! IP addresses as `ipv4`/`ipv6`, and that a profile patch changes something.
//! A schema that accepted what the server refuses (or the reverse) is a lie that
//! Schemathesis finds (`scripts/schemathesis.sh`).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{
    KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
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
        if p.name.eq_ignore_ascii_case(crate::idempotency::HEADER) {
            p.schema = Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[!-~]+$"))
                    .description(Some(
                        "1 to 255 visible ASCII characters; a fresh value per request",
                    ))
                    .into(),
            );
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

/// Unicode `Cc`, as a regular-expression class body: what no text field may hold.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// See the module documentation. The table names request fields; each kind is
/// the check `ledger_command::validate` (or the handler) makes.
#[derive(Debug)]
pub struct RequestFields;

#[derive(Clone, Copy)]
enum Kind {
    /// Free text: no control characters.
    Text,
    /// Names and search queries: also not blank.
    NonBlank,
    /// Not empty, no control characters.
    Required,
    /// One `@` between a non-empty local part and domain.
    Email,
    /// An IPv4 or IPv6 address.
    Ip,
}

const FIELDS: &[(&str, Kind)] = &[
    ("email", Kind::Email),
    ("password_hash", Kind::Required),
    ("first_name", Kind::NonBlank),
    ("last_name", Kind::NonBlank),
    ("address", Kind::Text),
    ("company_name", Kind::Text),
    ("phone_number", Kind::Text),
    ("question", Kind::Text),
    ("answer", Kind::Text),
    ("registration_ip", Kind::Ip),
    ("payer_ip", Kind::Ip),
    ("ip", Kind::Ip),
    ("q", Kind::NonBlank),
    ("name", Kind::NonBlank),
    ("label", Kind::Text),
];

const REQUESTS: &[&str] = &[
    "RegisterCustomerRequest",
    "UpdateProfileRequest",
    "AnswerDto",
    "RecordLoginRequest",
    "CapturePaymentRequest",
    "SearchRequest",
    "CreateBroadcasterRequest",
    "CreateApiKeyRequest",
];

impl Modify for RequestFields {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        // Every `*_id` string property (but `offer_id`, a catalogue name) is a
        // canonical UUID, in requests and responses alike.
        for schema in components.schemas.values_mut() {
            let RefOr::T(Schema::Object(obj)) = schema else {
                continue;
            };
            for (field, prop) in obj.properties.iter_mut() {
                let RefOr::T(Schema::Object(p)) = prop else {
                    continue;
                };
                let string = match &p.schema_type {
                    SchemaType::Type(Type::String) => true,
                    SchemaType::Array(t) => t.contains(&Type::String),
                    SchemaType::Type(_) | SchemaType::AnyValue => false,
                };
                if string && field.ends_with("_id") && field != "offer_id" {
                    p.format = Some(SchemaFormat::Custom("uuid".into()));
                    p.pattern = Some(ledger_types::CANONICAL_UUID_PATTERN.to_owned());
                }
            }
        }
        for name in REQUESTS {
            let Some(RefOr::T(Schema::Object(obj))) = components.schemas.get_mut(*name) else {
                continue;
            };
            for (field, kind) in FIELDS {
                if let Some(prop) = obj.properties.get_mut(*field) {
                    constrain(prop, *kind);
                }
            }
            if *name == "UpdateProfileRequest" {
                // A patch changes at least one field, and null is not a value.
                obj.min_properties = Some(1);
                for prop in obj.properties.values_mut() {
                    if let RefOr::T(Schema::Object(p)) = prop {
                        p.schema_type = SchemaType::Type(Type::String);
                    }
                }
            }
        }
    }
}

fn constrain(prop: &mut RefOr<Schema>, kind: Kind) {
    let RefOr::T(Schema::Object(obj)) = prop else {
        return;
    };
    let pattern = match kind {
        Kind::Text => format!("^[^{CONTROL}]*$"),
        Kind::NonBlank => format!("^[^{CONTROL}]*[^\\s{CONTROL}][^{CONTROL}]*$"),
        Kind::Required => format!("^[^{CONTROL}]+$"),
        Kind::Email => format!("^[^@{CONTROL}]+@[^@{CONTROL}]+$"),
        Kind::Ip => {
            *prop = ip_schema(obj);
            return;
        }
    };
    obj.pattern = Some(pattern);
}

/// `oneOf` an `ipv4` and an `ipv6` string (and null, if the field was nullable).
fn ip_schema(was: &Object) -> RefOr<Schema> {
    let ip = |f| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(f)))
    };
    let mut one_of = OneOfBuilder::new()
        .item(ip(KnownFormat::Ipv4))
        .item(ip(KnownFormat::Ipv6))
        .description(was.description.clone());
    if matches!(&was.schema_type, SchemaType::Array(t) if t.contains(&Type::Null)) {
        one_of = one_of.item(ObjectBuilder::new().schema_type(Type::Null));
    }
    RefOr::T(Schema::OneOf(one_of.build()))
}
