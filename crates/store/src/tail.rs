//! The single writer's view of the end of the log, shared by the backends that
//! assign positions and hashes themselves (ADR 0003): the next position, the last
//! log hash and a cache of stream heads, with marks to roll a refused request or a
//! failed group back. [`LogTail::plan`] is the one place that checks an expected
//! version and chains a request's events.

use std::collections::HashMap;

use crate::chain::{Hash32, RecordFields, ZERO_HASH};
use crate::{AppendRequest, AppendResult, ExpectedVersion, Position, StoreError, Version};

/// The last version of a stream and its record's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    pub version: Version,
    pub hash: Hash32,
}

impl StreamHead {
    /// The head of a stream with no events.
    pub const EMPTY: StreamHead = StreamHead {
        version: 0,
        hash: ZERO_HASH,
    };
}

/// Where one planned event lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedRecord {
    pub position: Position,
    pub version: Version,
    pub hash: Hash32,
    pub log_hash: Hash32,
}

/// A point to roll the tail back to.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    undo_len: usize,
    next_position: Position,
    last_log_hash: Hash32,
}

impl Mark {
    /// The position the next record had when the mark was taken.
    pub fn next_position(&self) -> Position {
        self.next_position
    }
}

/// The end of the log as the writer has planned it so far.
#[derive(Debug)]
pub struct LogTail {
    pub next_position: Position,
    pub last_log_hash: Hash32,
    /// Cached stream heads (a cache: a miss means "ask the database").
    pub heads: HashMap<String, StreamHead>,
    /// Previous cache entries changed since the oldest live mark, for rollback.
    undo: Vec<(String, Option<StreamHead>)>,
}

impl LogTail {
    /// The tail after the record at `next_position - 1` with log hash `last_log_hash`.
    pub fn new(next_position: Position, last_log_hash: Hash32) -> Self {
        Self {
            next_position,
            last_log_hash,
            heads: HashMap::new(),
            undo: Vec::new(),
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            undo_len: self.undo.len(),
            next_position: self.next_position,
            last_log_hash: self.last_log_hash,
        }
    }

    /// Undoes everything planned since `mark`.
    pub fn restore(&mut self, mark: Mark) {
        while self.undo.len() > mark.undo_len {
            if let Some((stream, prev)) = self.undo.pop() {
                match prev {
                    Some(h) => self.heads.insert(stream, h),
                    None => self.heads.remove(&stream),
                };
            }
        }
        self.next_position = mark.next_position;
        self.last_log_hash = mark.last_log_hash;
    }

    /// Forgets the undo history once the planned records are committed.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    pub fn set_head(&mut self, stream: &str, head: StreamHead) {
        let prev = self.heads.insert(stream.to_owned(), head);
        self.undo.push((stream.to_owned(), prev));
    }

    /// Checks `request.expected` against the stream's current `head`, then assigns
    /// each event its position, version and both hashes, and moves the tail and the
    /// stream's head past them. A conflict changes nothing.
    pub fn plan(
        &mut self,
        request: &AppendRequest,
        head: StreamHead,
    ) -> Result<(Vec<PlannedRecord>, AppendResult), StoreError> {
        let ok = match request.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => head.version == 0,
            ExpectedVersion::Exact(v) => head.version == v,
        };
        if !ok {
            return Err(StoreError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual: head.version,
            });
        }
        let first_position = self.next_position;
        let mut prev_hash = head.hash;
        let mut version = head.version;
        let mut planned = Vec::with_capacity(request.events.len());
        for e in &request.events {
            version += 1;
            let position = self.next_position;
            let fields = RecordFields {
                position,
                stream: &request.stream,
                version,
                event_id: e.event_id.as_bytes(),
                event_type: &e.event_type,
                schema_version: e.schema_version,
                recorded_at_ms: e.recorded_at.millis(),
                payload: &e.payload,
            };
            let hash = fields.chain(&prev_hash);
            let log_hash = fields.chain(&self.last_log_hash);
            planned.push(PlannedRecord {
                position,
                version,
                hash,
                log_hash,
            });
            prev_hash = hash;
            self.last_log_hash = log_hash;
            self.next_position += 1;
        }
        self.set_head(
            &request.stream,
            StreamHead {
                version,
                hash: prev_hash,
            },
        );
        Ok((
            planned,
            AppendResult {
                first_position,
                last_position: self.next_position - 1,
                stream_version: version,
                duplicate: false,
            },
        ))
    }
}
