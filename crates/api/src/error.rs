//! One error type for every endpoint ([`ApiError`]), one body shape
//! (`{"code", "message", "details"}`), and the extractors that turn axum's
//! rejections into it.
//!
//! Nothing personal may reach an error body or a log line. serde's messages can quote
//! the offending input (`invalid type: string "ada@example.com", expected ...`), so no
//! deserializer message is passed through: a body error names the JSON path of the
//! field (our own field names) and a fixed reason, never a value.
//!
//! Nor is a key the client chose: an unknown field's name is input like any value (a
//! client that sends `{"adelheid_schmidt": 1}` must not get `adelheid_schmidt`
//! back in a body that lands in logs and traces). `UNKNOWN_FIELD` names the JSON
//! path of the object that held it, and an unknown query parameter is not named.

use std::borrow::Cow;

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ledger_app::{AppError, StorageCondition};

/// `Retry-After` on every 503 and 507, in seconds.
pub const RETRY_AFTER_SECS: &str = "1";
use ledger_command::Refusal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// The error body of every 4xx and 5xx response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `NOT_FOUND`, `ACTIVE_SUBSCRIPTION`.
    pub code: String,
    /// Human-readable explanation; never holds personal data.
    pub message: String,
    /// Code-specific details (ids, field names, blockers), or null.
    #[schema(value_type = Object, nullable = true)]
    pub details: Value,
}

/// An error as the API returns it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub details: Value,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "a valid bearer token is required",
        )
    }

    pub fn invalid_id(field: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ID",
            format!("{field} is not a valid id"),
        )
        .with_details(json!({ "field": field }))
    }

    pub fn invalid_input(field: &str, reason: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            format!("invalid {field}: {reason}"),
        )
        .with_details(json!({ "field": field, "reason": reason }))
    }

    pub fn invalid_pagination(reason: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PAGINATION", reason)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error; the request id identifies it in the server's logs",
        )
    }

    pub fn unavailable(code: &'static str, message: &'static str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// `503 STORE_UNAVAILABLE`: a store cannot be reached now; the answer carries
    /// `Retry-After`. Nothing was acknowledged, and a retry is safe.
    pub fn store_unavailable() -> Self {
        Self::unavailable(
            "STORE_UNAVAILABLE",
            "a store is unreachable right now; retry after the time in Retry-After",
        )
    }

    /// `507 STORAGE_FULL`: the disk is full; nothing was written.
    pub fn storage_full() -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "STORAGE_FULL",
            "the server's storage is full; nothing was written",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_owned(),
            message: self.message.to_string(),
            details: self.details.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE
        ) {
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        res
    }
}

/// The HTTP status of a domain refusal. Conflicts with the customer's state are 409,
/// malformed values 400, and "cannot see it" 404 (never 403: no existence oracle).
/// A value that is well formed but refused because of what the server holds or the
/// time it is (an `ends_at` already past, a due date not later than the current one
/// or past the two-month limit) is a conflict too: the same body would have been
/// accepted earlier, so it is 409, never 400.
pub fn refusal_status(r: &Refusal) -> StatusCode {
    match r {
        Refusal::NotFound | Refusal::SubscriptionNotFound | Refusal::PaymentNotFound => {
            StatusCode::NOT_FOUND
        }
        Refusal::InvalidInput { .. }
        | Refusal::TooManyIds { .. }
        | Refusal::DuplicateIds { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::CONFLICT,
    }
}

/// The refusal's details: its serialized form without `code` and `message`.
pub fn refusal_details(r: &Refusal) -> Value {
    match serde_json::to_value(r) {
        Ok(Value::Object(mut m)) => {
            m.remove("code");
            m.remove("message");
            if m.is_empty() {
                Value::Null
            } else {
                Value::Object(m)
            }
        }
        _ => Value::Null,
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError {
            status: refusal_status(&r),
            code: r.code(),
            // Refusal messages hold ids, amounts and field names only (by contract).
            message: Cow::Owned(r.to_string()),
            details: refusal_details(&r),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Refused(r) => r.into(),
            AppError::UnknownBroadcaster => ApiError::not_found(),
            AppError::BroadcasterExists => ApiError::new(
                StatusCode::CONFLICT,
                "BROADCASTER_EXISTS",
                "a broadcaster with this id already exists",
            ),
            AppError::Contention => ApiError::new(
                StatusCode::CONFLICT,
                "CONCURRENCY_CONFLICT",
                "the customer kept changing concurrently; retry the request",
            ),
            AppError::Crypto(ledger_crypto::CryptoError::KeyDestroyed(_)) => ApiError::new(
                StatusCode::CONFLICT,
                "CUSTOMER_ANONYMIZED",
                "the customer was anonymized; their personal data no longer exists",
            ),
            other if other.storage_condition().is_some() => {
                tracing::warn!(code = other.code(), error = %other, "storage not available");
                match other.storage_condition() {
                    Some(StorageCondition::Full) => ApiError::storage_full(),
                    _ => ApiError::store_unavailable(),
                }
            }
            other => {
                // AppError's messages name ids, positions and error kinds, never
                // personal data; the client gets nothing but a code.
                tracing::error!(code = other.code(), error = %other, "request failed");
                ApiError::internal()
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Extractors
// ---------------------------------------------------------------------------------

/// A JSON request body. Rejections become [`ApiError`]s with codes
/// `UNSUPPORTED_MEDIA_TYPE`, `BODY_TOO_LARGE`, `MALFORMED_JSON`, `UNKNOWN_FIELD`,
/// `MISSING_FIELD` or `INVALID_INPUT`, naming the JSON path but never a value.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json")
                    || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the request body must be application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        body_too_large()
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_BODY",
            "the request body could not be read",
        )
    }
}

pub fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "BODY_TOO_LARGE",
        "the request body exceeds the limit",
    )
}

/// Deserializes a JSON body, mapping serde's errors to codes and JSON paths only.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = sanitize_path(&e.path().to_string());
            let parent = parent_path(e.path());
            let inner = e.into_inner();
            Err(json_error(&inner, path, parent))
        }
    }
}

/// The sanitized path of the object that holds the last segment of `p` (`""` for
/// the top level): where an unknown field was, without its client-chosen name.
fn parent_path(p: &serde_path_to_error::Path) -> String {
    let segments: Vec<_> = p.iter().collect();
    let Some((_, init)) = segments.split_last() else {
        return String::new();
    };
    let mut out = String::new();
    for s in init {
        match s {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&other.to_string());
            }
        }
    }
    sanitize_path(&out)
}

/// Keeps a JSON path only if it is made of identifier-like segments (our field
/// names, array indices); anything else (a quoted map key from the input) is cut.
fn sanitize_path(p: &str) -> String {
    if p == "." {
        return String::new();
    }
    let ok = p.len() <= 128
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
    if ok {
        p.to_owned()
    } else {
        "?".to_owned()
    }
}

/// The name between the first pair of backticks in a serde message, if it looks
/// like an identifier. Used for `missing field` only, whose name is ours (an
/// unknown field's name is the client's and is never echoed).
fn backticked_identifier(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    let name = &msg[start..start + len];
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| name.to_owned())
}

fn json_error(e: &serde_json::Error, path: String, parent: String) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_JSON",
            format!(
                "the request body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
        .with_details(json!({ "line": e.line(), "column": e.column() })),
        Category::Data => {
            // Only the start of serde's message is inspected; it is never echoed.
            let msg = e.to_string();
            if msg.starts_with("unknown field") {
                // serde_path_to_error's path ends with the unknown field, whose name
                // the client chose: only the containing object's path is reported.
                let message = if parent.is_empty() {
                    "the request body has a field this operation does not accept".to_owned()
                } else {
                    format!("{parent} has a field this operation does not accept")
                };
                ApiError::new(StatusCode::BAD_REQUEST, "UNKNOWN_FIELD", message)
                    .with_details(json!({ "object": parent }))
            } else if msg.starts_with("missing field") {
                let field = backticked_identifier(&msg).unwrap_or_default();
                let full = if path.is_empty() {
                    field
                } else {
                    format!("{path}.{field}")
                };
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MISSING_FIELD",
                    format!("missing field {full}"),
                )
                .with_details(json!({ "field": full }))
            } else {
                let reason = if msg.starts_with("invalid type") {
                    "wrong JSON type"
                } else if msg.starts_with("invalid length") {
                    "wrong number of elements"
                } else {
                    "invalid value"
                };
                let field = if path.is_empty() {
                    "body".to_owned()
                } else {
                    path
                };
                ApiError::invalid_input(&field, reason)
            }
        }
    }
}

/// Path parameters, as strings; the handler parses each into its id type and
/// answers `INVALID_ID` for one that does not parse.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| ApiError::invalid_id("path"))
    }
}

/// Query parameters. Unknown parameters and undecodable strings are `INVALID_QUERY`;
/// the handler validates values (pagination: `INVALID_PAGINATION`).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de)
            .map(ApiQuery)
            .map_err(|e| {
                // An unknown parameter's name is the client's, never echoed; a known
                // one's is ours.
                if e.inner().to_string().starts_with("unknown field") {
                    return ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "INVALID_QUERY",
                        "the query has a parameter this operation does not accept",
                    );
                }
                let param = sanitize_path(&e.path().to_string());
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_QUERY",
                    format!("invalid query parameter {param}"),
                )
                .with_details(json!({ "parameter": param }))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        email: String,
        n: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        profile: Inner,
    }

    #[test]
    fn body_errors_name_the_path_and_never_echo_a_value() {
        let e = parse_json::<Outer>(
            br#"{"profile":{"email":"ada@example.com","n":"ada@example.com"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, "INVALID_INPUT");
        let text = serde_json::to_string(&e.body()).unwrap();
        assert!(!text.contains("ada@"), "{text}");
        assert!(text.contains("profile.n"), "{text}");

        let e = parse_json::<Outer>(br#"{"profile":{"email":"x","n":1,"ssn":"123"}}"#).unwrap_err();
        assert_eq!(e.code, "UNKNOWN_FIELD");
        assert_eq!(e.details, json!({ "object": "profile" }));
        assert!(!serde_json::to_string(&e.body()).unwrap().contains("ssn"));

        let e = parse_json::<Outer>(br#"{"profile":{"email":"x"}}"#).unwrap_err();
        assert_eq!(e.code, "MISSING_FIELD");
        assert_eq!(e.details["field"], "profile.n");

        let e = parse_json::<Outer>(br#"{"profile": {"#).unwrap_err();
        assert_eq!(e.code, "MALFORMED_JSON");

        let e = parse_json::<Outer>(br#"{"profile":{"email":"x","n":1,"ada@example.com":1}}"#)
            .unwrap_err();
        assert_eq!(e.code, "UNKNOWN_FIELD");
        assert!(!serde_json::to_string(&e.body()).unwrap().contains("ada@"));
    }

    /// What `CommonResponses` documents on every authenticated `/v1/` operation:
    /// a store that cannot be reached is 503 and a full disk 507, both with
    /// `Retry-After` and the error body.
    #[test]
    fn storage_conditions_answer_503_and_507_with_retry_after() {
        use ledger_store::StoreError;
        for (e, status, code) in [
            (
                AppError::Store(StoreError::Unavailable("connection refused".into())),
                StatusCode::SERVICE_UNAVAILABLE,
                "STORE_UNAVAILABLE",
            ),
            (
                AppError::Store(StoreError::Full),
                StatusCode::INSUFFICIENT_STORAGE,
                "STORAGE_FULL",
            ),
        ] {
            let e = ApiError::from(e);
            assert_eq!((e.status, e.code), (status, code));
            let res = e.into_response();
            assert_eq!(res.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
        }
    }

    /// A key can be personal data too (a name, an email address spelled as an
    /// identifier): it must not come back anywhere in the body, at the top level or
    /// nested.
    #[test]
    fn an_unknown_field_name_is_never_echoed() {
        for (body, object) in [
            (
                &br#"{"adelheid_schmidt":1,"profile":{"email":"x","n":1}}"#[..],
                "",
            ),
            (
                br#"{"profile":{"email":"x","n":1,"adelheid_schmidt":1}}"#,
                "profile",
            ),
            (
                br#"{"profile":{"email":"x","n":1,"ada_at_example_com":1}}"#,
                "profile",
            ),
        ] {
            let e = parse_json::<Outer>(body).unwrap_err();
            assert_eq!(e.code, "UNKNOWN_FIELD");
            assert_eq!(e.details, json!({ "object": object }));
            let text = serde_json::to_string(&e.body()).unwrap();
            for secret in ["adelheid", "schmidt", "ada_at"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }
}
