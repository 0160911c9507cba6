//! The event store contract: what every backend must do, and the record format with
//! its hash chains that makes the log verifiable.
//!
//! A backend stores [`NewEvent`]s in named streams with per-stream optimistic
//! concurrency ([`ExpectedVersion`]) and assigns each a global, gap-free position.
//! Appends are idempotent by event id and atomic per call. An acknowledged append is
//! durable. Each stored record carries two hashes (see [`chain`]): the per-stream chain
//! and the log chain over every record in position order, so that editing, removing
//! or reordering any record is detected.
//!
//! This crate does not pick a backend and holds no storage code; backends live in
//! their own crates and run [`conformance`] against themselves.

pub mod chain;
pub mod conformance;
pub mod responses;
pub mod tail;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ledger_types::{EventId, Timestamp};
use thiserror::Error;

pub use chain::{Hash32, ZERO_HASH};

/// Positions start at 1; `0` means "before the first event".
pub type Position = u64;
/// Stream versions start at 1; `0` means "the stream has no events".
pub type Version = u64;

/// An event to append.
#[derive(Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: EventId,
    pub event_type: String,
    pub schema_version: u16,
    /// The encoded payload. Personal data in it is already sealed.
    pub payload: Vec<u8>,
    pub recorded_at: Timestamp,
}

impl fmt::Debug for NewEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEvent")
            .field("event_id", &self.event_id)
            .field("event_type", &self.event_type)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// The optimistic-concurrency precondition of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last version must be exactly this (0 = no stream).
    Exact(Version),
}

/// One atomic append to one stream.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub first_position: Position,
    pub last_position: Position,
    /// The stream's version after the append (its last event's version).
    pub stream_version: Version,
    /// True when every event id was already stored (an idempotent retry): nothing
    /// was written and the original positions are returned.
    pub duplicate: bool,
}

/// A stored event, as read back.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream: String,
    pub version: Version,
    pub event_id: EventId,
    pub event_type: String,
    pub schema_version: u16,
    pub payload: Vec<u8>,
    pub recorded_at: Timestamp,
    /// `sha256(previous hash in this stream || canonical bytes)`.
    pub hash: Hash32,
    /// `sha256(previous record's log_hash || canonical bytes)` in position order.
    pub log_hash: Hash32,
}

impl fmt::Debug for RecordedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedEvent")
            .field("position", &self.position)
            .field("stream", &self.stream)
            .field("version", &self.version)
            .field("event_id", &self.event_id)
            .field("event_type", &self.event_type)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    /// The stream's version was not the expected one.
    #[error("version conflict on stream {stream}: expected {expected:?}, actual {actual}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: Version,
    },
    /// Some but not all event ids of the request exist, or they exist in another
    /// stream or order: a retry that is not a faithful retry.
    #[error("event id {event_id} was already appended elsewhere")]
    DuplicateEventId { event_id: EventId },
    /// A record failed its hash check: the stored log was altered.
    #[error("integrity violation at position {position}: {reason}")]
    Integrity { position: Position, reason: String },
    /// The request itself is invalid (empty, too large, bad stream name).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The backend failed (I/O, connection). The message holds no payload data.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The store is shutting down.
    #[error("event store is closed")]
    Closed,
    /// The backend cannot be reached now (a lost connection, a server that is
    /// down or failing over, a locked file). Nothing was written, or the outcome is
    /// unknown and a retry is answered faithfully (appends are idempotent by event
    /// id). Callers answer "retry later" (HTTP 503), never a plain failure.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    /// The backend's disk is full. Nothing was written; writes fail until space is
    /// freed (HTTP 507).
    #[error("storage is full")]
    Full,
}

impl StoreError {
    /// Whether a retry later may succeed without any change by the caller.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Full)
    }
}

/// Longest accepted stream name, in bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 512;
/// Longest accepted event type, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 256;
/// Largest accepted payload of one event.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;
/// Most events accepted in one `append` or `append_batch` call.
pub const MAX_EVENTS_PER_CALL: usize = 1_000_000;
/// Most payload bytes accepted in one call.
pub const MAX_BYTES_PER_CALL: usize = 1 << 30;

/// Rejects appends that no backend accepts (empty batches or appends, stream names
/// and event types out of bounds, oversized payloads or calls, an event id twice in
/// one append), before they reach a writer. `extra` adds a backend's own rule for
/// one event (e.g. PostgreSQL text cannot hold NUL); it returns the reason to refuse.
pub fn validate_appends(
    requests: &[AppendRequest],
    extra: impl Fn(&NewEvent) -> Option<String>,
) -> Result<(), StoreError> {
    let invalid = |m: String| Err(StoreError::Invalid(m));
    if requests.is_empty() {
        return invalid("a batch needs at least one request".into());
    }
    let (mut events, mut bytes) = (0usize, 0usize);
    for r in requests {
        if r.events.is_empty() {
            return invalid("an append needs at least one event".into());
        }
        if r.stream.is_empty() || r.stream.len() > MAX_STREAM_NAME_BYTES {
            return invalid(format!(
                "stream name must be 1 to {MAX_STREAM_NAME_BYTES} bytes"
            ));
        }
        if r.stream.chars().any(char::is_control) {
            return invalid("stream name holds a control character".into());
        }
        let mut seen = std::collections::HashSet::with_capacity(r.events.len());
        for e in &r.events {
            if e.event_type.is_empty() || e.event_type.len() > MAX_EVENT_TYPE_BYTES {
                return invalid(format!(
                    "event type must be 1 to {MAX_EVENT_TYPE_BYTES} bytes (event {})",
                    e.event_id
                ));
            }
            if e.payload.len() > MAX_PAYLOAD_BYTES {
                return invalid(format!(
                    "payload over {MAX_PAYLOAD_BYTES} bytes (event {})",
                    e.event_id
                ));
            }
            if let Some(reason) = extra(e) {
                return invalid(format!("{reason} (event {})", e.event_id));
            }
            if !seen.insert(e.event_id) {
                return invalid(format!(
                    "event id {} appears twice in one append",
                    e.event_id
                ));
            }
            bytes += e.payload.len();
        }
        events += r.events.len();
    }
    if events > MAX_EVENTS_PER_CALL || bytes > MAX_BYTES_PER_CALL {
        return invalid(format!(
            "a call holds at most {MAX_EVENTS_PER_CALL} events and {MAX_BYTES_PER_CALL} payload bytes"
        ));
    }
    Ok(())
}

/// The event store. Implementations are cheap to clone behind an `Arc` and safe to
/// call from many tasks at once; concurrent appends may share one durable commit.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends events to one stream atomically, after checking `expected`. Returns
    /// once the events are durable.
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError>;

    /// Appends to several streams in one atomic, durable transaction (bulk import).
    /// Any conflict fails the whole batch and writes nothing.
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendResult>, StoreError>;

    /// Reads a stream from `from_version` (inclusive, 1-based), verifying its hash
    /// chain. An unknown stream is empty.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: Version,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events with position greater than `after`, in position
    /// order, verifying the log chain.
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the last durable event (0 if empty).
    async fn head(&self) -> Result<Position, StoreError>;

    /// Waits until the head is beyond `after` or `timeout` passes; returns the head.
    /// Subscriptions are built on this and `read_all`.
    async fn wait_for_head(
        &self,
        after: Position,
        timeout: std::time::Duration,
    ) -> Result<Position, StoreError>;
}

/// A live subscription: catches up from a position with `read_all`, then follows
/// new events as they are committed, with no gap and no duplicate.
#[derive(Debug)]
pub struct Subscription {
    store: Arc<dyn EventStore>,
    after: Position,
    page: usize,
    buffer: std::collections::VecDeque<RecordedEvent>,
}

impl fmt::Debug for dyn EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn EventStore")
    }
}

impl Subscription {
    pub fn new(store: Arc<dyn EventStore>, after: Position) -> Self {
        Self {
            store,
            after,
            page: 1024,
            buffer: Default::default(),
        }
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next event, waiting for one to be committed if none is available.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                self.after = e.position;
                return Ok(e);
            }
            let page = self.store.read_all(self.after, self.page).await?;
            if page.is_empty() {
                self.store
                    .wait_for_head(self.after, std::time::Duration::from_secs(1))
                    .await?;
            } else {
                self.buffer.extend(page);
            }
        }
    }
}
