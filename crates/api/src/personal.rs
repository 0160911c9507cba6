//! Answers that hold opened personal data (a customer's summary, a search page,
//! the right-of-access export), written so that no copy outlives the request.
//!
//! `axum::Json` serializes into a growing `Vec` (each reallocation frees the
//! previous buffer as it was) and hands the server plain `Bytes`, freed without
//! being cleared after they are written to the socket. Once the customer is
//! erased, those freed copies would still be in the process's memory. So
//! [`PersonalJson`] measures the JSON first, serializes it once into a buffer of
//! exactly that size, drops (zeroizes) the value it came from, and gives the
//! server bytes that are zeroized when the last reference goes, after the write.
//!
//! The answer carries the [`Personal`] mark, which keeps it out of compression
//! (`crate::layers`): an encoder would copy the JSON into its own buffers, which
//! are freed without being cleared.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::ApiError;

/// A JSON response holding personal data; see the module doc.
#[derive(Debug)]
pub struct PersonalJson<T: Serialize>(pub T);

/// The mark (a response extension) of an answer that holds opened personal data:
/// never compressed, never copied into another buffer on its way out.
#[derive(Debug, Clone, Copy)]
pub struct Personal;

/// Counts the bytes a serialization writes.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes zeroized when dropped.
struct Cleared(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Cleared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl<T: Serialize> IntoResponse for PersonalJson<T> {
    fn into_response(self) -> Response {
        let mut n = Counter(0);
        if serde_json::to_writer(&mut n, &self.0).is_err() {
            return ApiError::internal().into_response();
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(n.0));
        if serde_json::to_writer(&mut *buf, &self.0).is_err() {
            return ApiError::internal().into_response();
        }
        drop(self.0);
        let mut res = Response::new(Body::from(Bytes::from_owner(Cleared(buf))));
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res.extensions_mut().insert(Personal);
        res
    }
}
