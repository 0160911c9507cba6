//! Production behaviour around every route, built from `tower-http` layers (ADR
//! 0020): request ids, the per-request span and access-log line, metrics,
//! compression, the timeout and the body limit, and headers marked sensitive.
//!
//! # The stack, outermost first
//!
//! 1. **Sensitive headers** ([`SetSensitiveHeadersLayer`]): `Authorization`,
//!    `Proxy-Authorization`, `Cookie`, `Set-Cookie` and `Idempotency-Key` are marked
//!    sensitive on requests and responses, so a `Debug` of the headers (a
//!    `tracing` field, a panic message) prints `Sensitive` instead of a token. No
//!    span or log line of ours records a header in the first place.
//! 2. **Request id** ([`SetRequestIdLayer`], [`PropagateRequestIdLayer`],
//!    `x-request-id`): a client's id is kept only if it is a short token
//!    (`[A-Za-z0-9._-]{1,64}`), so nothing personal rides in it into the logs; else
//!    a new UUID v4. `SetRequestId` keeps whatever header it finds and calls its
//!    `MakeRequestId` only when there is none, so the rule is a tiny step in front
//!    of it (`keep_short_request_id`) that drops a header that is not such a
//!    token; tower-http's `MakeRequestUuid` then makes the new one. Every answer
//!    carries the id, the timeout's and the body limit's included.
//! 3. **Span and access log** ([`TraceLayer`]): one `request` span with the request
//!    id, the method and the route template (`/v1/customers/{id}`, never the
//!    concrete path, which holds ids and, for `GET /v1/customers?q=`, a search
//!    term); handlers' own spans are its children. One line when the answer's head
//!    is ready: `warn` "request failed" for a 5xx, else `debug` "request done",
//!    with the status and the microseconds. No header, no URI, no body.
//! 4. **Metrics** (`count`): requests and latency by route template, method and
//!    status, into the state's recorder ([`crate::metrics`]).
//! 5. **Compression** ([`CompressionLayer`], gzip and br, only those compiled in):
//!    JSON and NDJSON answers (and the dashboard's files), when the client accepts
//!    it and the answer is over 32 bytes, **except answers holding opened personal
//!    data** (those built by [`crate::personal::PersonalJson`], which marks them):
//!    an encoder copies its input into windows and buffers that are freed without
//!    being cleared, and the point of `PersonalJson` is that no copy of an opened
//!    profile outlives the request (`tests/tests/memory_residue.rs`).
//! 6. **Our error bodies** (`error_bodies`): tower-http's timeout answers an
//!    empty response and its body limit a `text/plain` 413; this maps them to the
//!    API's `{code, message, details}`: `503 TIMEOUT` with `Retry-After`, and
//!    `413 BODY_TOO_LARGE`.
//! 7. **Timeout** ([`TimeoutLayer`]): the time to produce the answer's head. It
//!    answers with `408`, a status no route of this API uses, so step 6 can tell
//!    its answer from every other one.
//! 8. **Body limit** ([`limit_body`], what tower-http's `RequestBodyLimitLayer`
//!    does, with a limit per route): a `Content-Length` over the limit is answered
//!    before any handler runs; a body without one is cut at the limit, which the
//!    body extractors report as `413 BODY_TOO_LARGE`. The limit is `body_limit`,
//!    and `bulk_body_limit` on the [`BULK_ROUTES`] (a bulk erasure job names up to
//!    10,000 ids, about 400 KB). axum's own default limit is switched off, so this
//!    is the one limit.
//!
//! Inside these, [`crate::router`] adds the method check and idempotency keys.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, Extensions, HeaderMap, HeaderName, Method, StatusCode, Version};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use tower::util::{MapRequestLayer, MapResponseLayer};
use tower_http::compression::predicate::{DefaultPredicate, Predicate as _};
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::error::{body_too_large, ApiError};
use crate::personal::Personal;
use crate::SharedState;

/// The request id header, on every request (once set) and every answer.
pub const REQUEST_ID: &str = "x-request-id";

/// The headers never shown: credentials and idempotency keys.
pub const SENSITIVE: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
    HeaderName::from_static(crate::idempotency::HEADER),
];

/// Wraps every route of `router` (and its fallbacks) in the stack of the module doc.
pub fn around<S>(router: Router<S>, state: &SharedState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let request_id = HeaderName::from_static(REQUEST_ID);
    // `Router::layer` wraps what is already there: innermost first.
    router
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), limit_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.timeout,
        ))
        .layer(MapResponseLayer::new(error_bodies))
        .layer(
            CompressionLayer::new()
                .compress_when(DefaultPredicate::new().and(not_personal as NotPersonal)),
        )
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_request(())
                .on_response(log_answer)
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(MapRequestLayer::new(keep_short_request_id))
        .layer(SetSensitiveHeadersLayer::new(SENSITIVE))
}

/// The routes whose body may reach `bulk_body_limit` rather than `body_limit`.
pub const BULK_ROUTES: &[(Method, &str)] = &[(Method::POST, "/v1/erasure-jobs")];

/// The largest body a request to `path` with `method` may have.
pub(crate) fn body_limit_for(state: &SharedState, method: &Method, path: &str) -> usize {
    let bulk = BULK_ROUTES.iter().any(|(m, p)| method == m && path == *p);
    if bulk {
        state.config.bulk_body_limit.max(state.config.body_limit)
    } else {
        state.config.body_limit
    }
}

/// The body limit (step 8 of the module doc).
async fn limit_body(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let limit = body_limit_for(&state, req.method(), req.uri().path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return body_too_large().into_response();
    }
    let (parts, body) = req.into_parts();
    let body = Body::new(http_body_util::Limited::new(body, limit));
    next.run(Request::from_parts(parts, body)).await
}

/// A client's request id is kept if it is one short token, `[A-Za-z0-9._-]{1,64}`;
/// otherwise it is dropped, and [`SetRequestIdLayer`] makes a new one.
fn keep_short_request_id<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    let mut given = req.headers().get_all(REQUEST_ID).iter();
    let keep = match (given.next(), given.next()) {
        (None, _) => return req,
        (Some(v), None) => {
            (1..=64).contains(&v.len())
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        (Some(_), Some(_)) => false,
    };
    if !keep {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

fn route_of(extensions: &Extensions) -> &str {
    extensions
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The `request` span: request id, method and route template; nothing else.
fn span<B>(req: &axum::http::Request<B>) -> Span {
    let rid = req
        .extensions()
        .get::<RequestId>()
        .and_then(|r| r.header_value().to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id = %rid,
        method = method_label(req.method()),
        route = %route_of(req.extensions()),
    )
}

/// The access-log line, in the request's span.
fn log_answer<B>(res: &Response<B>, latency: Duration, _span: &Span) {
    let status = res.status().as_u16();
    let micros = latency.as_micros() as u64;
    if res.status().is_server_error() {
        tracing::warn!(status, micros, "request failed");
    } else {
        tracing::debug!(status, micros, "request done");
    }
}

/// Counts the request and its latency (to the answer's head) by route template,
/// method and status.
async fn count(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let res = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state
        .metrics
        .observe(route, method, res.status().as_u16(), started.elapsed());
    res
}

type NotPersonal = fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool;

/// Answers built by `PersonalJson` are never compressed (see the module doc).
fn not_personal(_: StatusCode, _: Version, _: &HeaderMap, extensions: &Extensions) -> bool {
    extensions.get::<Personal>().is_none()
}

/// tower-http's answers with the API's error body (see the module doc).
fn error_bodies<B>(res: Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    match res.status() {
        StatusCode::REQUEST_TIMEOUT if !is_json => {
            ApiError::unavailable("TIMEOUT", "the request took too long").into_response()
        }
        StatusCode::PAYLOAD_TOO_LARGE if !is_json => body_too_large().into_response(),
        _ => res.map(Body::new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(ids: &[&str]) -> Option<String> {
        let mut req = axum::http::Request::new(());
        for id in ids {
            let v = axum::http::HeaderValue::from_bytes(id.as_bytes()).expect("a header value");
            req.headers_mut().append(REQUEST_ID, v);
        }
        let req = keep_short_request_id(req);
        req.headers()
            .get(REQUEST_ID)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn a_clients_request_id_is_kept_only_if_it_is_one_short_token() {
        assert_eq!(kept(&["abc-123_x.y"]), Some("abc-123_x.y".into()));
        assert_eq!(kept(&[&"a".repeat(64)]), Some("a".repeat(64)));
        assert_eq!(kept(&[]), None);
        for bad in ["ada@example.com", "a b", "", &"a".repeat(65), "ümlaut"] {
            assert_eq!(kept(&[bad]), None, "{bad:?}");
        }
        assert_eq!(kept(&["abc", "def"]), None, "two ids: neither is kept");
    }
}
