//! Reads on pooled read-only connections, verifying the chains as rows are decoded.
//!
//! Rows are immutable once committed and a commit is atomic, so a page query never
//! sees a half-written group. The page is fetched before the predecessor's hash: if
//! the page holds rows, everything before them was committed earlier or in the same
//! commit, so the predecessor must exist; if it does not, the log was altered.

use std::sync::Mutex;

use ledger_store::chain::{log_link_ok, stream_link_ok};
use ledger_store::{Hash32, Position, RecordedEvent, StoreError, Version, ZERO_HASH};
use ledger_types::{EventId, Timestamp};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row};

use crate::{backend, schema, to_i64};

/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;

const COLUMNS: &str = "position, stream, version, event_id, event_type, schema_version, \
                       payload, recorded_at, hash, log_hash";

#[derive(Debug)]
pub(crate) struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
    immutable: bool,
    /// The `-shm` file as `schema::reserve_shm` opened it, closed only after the
    /// pooled connections (fields drop in order; the store joins its writer
    /// before it drops this): closing any descriptor of a file drops every POSIX
    /// lock the process holds on it, SQLite's included, and another process
    /// (an auditor) would then rebuild the WAL index under the running writer.
    _shm: Option<std::fs::File>,
}

impl Readers {
    pub(crate) fn new(path: std::path::PathBuf, immutable: bool) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            immutable,
            _shm: None,
        }
    }

    /// Keeps `shm` open as long as these readers (see the field).
    pub(crate) fn keeping_open(mut self, shm: Option<std::fs::File>) -> Self {
        self._shm = shm;
        self
    }

    /// Runs `f` on an idle connection (or a new one), then returns it to the pool.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => schema::open_reader(&self.path, self.immutable)?,
        };
        let out = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}

fn integrity(position: Position, reason: impl Into<String>) -> StoreError {
    StoreError::Integrity {
        position,
        reason: reason.into(),
    }
}

fn int(row: &Row<'_>, i: usize, position: Position, what: &str) -> Result<i64, StoreError> {
    match row.get_ref(i).map_err(backend)? {
        ValueRef::Integer(v) => Ok(v),
        _ => Err(integrity(position, format!("{what} is not an integer"))),
    }
}

fn text(row: &Row<'_>, i: usize, position: Position, what: &str) -> Result<String, StoreError> {
    match row.get_ref(i).map_err(backend)? {
        ValueRef::Text(b) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| integrity(position, format!("{what} is not UTF-8"))),
        _ => Err(integrity(position, format!("{what} is not text"))),
    }
}

fn blob<'r>(
    row: &'r Row<'_>,
    i: usize,
    position: Position,
    what: &str,
) -> Result<&'r [u8], StoreError> {
    match row.get_ref(i).map_err(backend)? {
        ValueRef::Blob(b) => Ok(b),
        _ => Err(integrity(position, format!("{what} is not a blob"))),
    }
}

fn hash32(b: &[u8], position: Position, what: &str) -> Result<Hash32, StoreError> {
    b.try_into()
        .map_err(|_| integrity(position, format!("{what} is not 32 bytes")))
}

/// Decodes one row; a malformed value is an integrity error, never a panic.
fn decode(row: &Row<'_>) -> Result<RecordedEvent, StoreError> {
    let position = int(row, 0, 0, "position")?;
    let position = u64::try_from(position).map_err(|_| integrity(0, "negative position"))?;
    let stream = text(row, 1, position, "stream")?;
    let version = u64::try_from(int(row, 2, position, "version")?)
        .map_err(|_| integrity(position, "negative version"))?;
    let id: [u8; 16] = blob(row, 3, position, "event id")?
        .try_into()
        .map_err(|_| integrity(position, "event id is not 16 bytes"))?;
    let event_type = text(row, 4, position, "event type")?;
    let schema_version = u16::try_from(int(row, 5, position, "schema version")?)
        .map_err(|_| integrity(position, "schema version out of range"))?;
    let payload = blob(row, 6, position, "payload")?.to_vec();
    let recorded_at = Timestamp::from_millis(int(row, 7, position, "recorded_at")?);
    let hash = hash32(blob(row, 8, position, "hash")?, position, "hash")?;
    let log_hash = hash32(blob(row, 9, position, "log hash")?, position, "log hash")?;
    Ok(RecordedEvent {
        position,
        stream,
        version,
        event_id: EventId::from_uuid(uuid::Uuid::from_bytes(id)),
        event_type,
        schema_version,
        payload,
        recorded_at,
        hash,
        log_hash,
    })
}

/// Up to `limit` records after `after`, with the log chain and contiguity verified.
pub(crate) fn read_all(
    conn: &Connection,
    after: Position,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
        ))
        .map_err(backend)?;
    let mut rows = stmt.query((to_i64(after)?, limit)).map_err(backend)?;
    let mut out = Vec::with_capacity(usize::try_from(limit.min(16_384)).unwrap_or(0));
    while let Some(row) = rows.next().map_err(backend)? {
        out.push(decode(row)?);
    }
    let Some(first) = out.first() else {
        return Ok(out);
    };
    if first.position != after + 1 {
        return Err(integrity(
            after + 1,
            format!("missing record: next stored position is {}", first.position),
        ));
    }
    let mut prev = if after == 0 {
        ZERO_HASH
    } else {
        let key = to_i64(after)?;
        let h: Option<Vec<u8>> = conn
            .prepare_cached("SELECT log_hash FROM events WHERE position = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(backend)?;
        match h {
            Some(h) => hash32(&h, after, "log hash")?,
            None => return Err(integrity(after, "record missing")),
        }
    };
    for (expected, e) in (after + 1..).zip(&out) {
        if e.position != expected {
            return Err(integrity(
                expected,
                format!("missing record: next stored position is {}", e.position),
            ));
        }
        if !log_link_ok(e, &prev) {
            return Err(integrity(e.position, "log hash mismatch"));
        }
        prev = e.log_hash;
    }
    Ok(out)
}

/// A stream from `from_version`, with its chain and version contiguity verified.
pub(crate) fn read_stream(
    conn: &Connection,
    stream: &str,
    from_version: Version,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let from = from_version.max(1);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE stream = ?1 AND version >= ?2 ORDER BY version"
        ))
        .map_err(backend)?;
    let mut rows = stmt.query((stream, to_i64(from)?)).map_err(backend)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        out.push(decode(row)?);
    }
    if out.is_empty() {
        return Ok(out);
    }
    let mut prev = if from == 1 {
        ZERO_HASH
    } else {
        let key = to_i64(from - 1)?;
        let h: Option<Vec<u8>> = conn
            .prepare_cached("SELECT hash FROM events WHERE stream = ?1 AND version = ?2")
            .and_then(|mut s| s.query_row((stream, key), |r| r.get(0)).optional())
            .map_err(backend)?;
        match h {
            Some(h) => hash32(&h, out[0].position, "previous stream hash")?,
            None => {
                return Err(integrity(
                    out[0].position,
                    format!("stream version {} missing", from - 1),
                ))
            }
        }
    };
    for (expected, e) in (from..).zip(&out) {
        if e.version != expected {
            return Err(integrity(
                e.position,
                format!("stream version {expected} missing (found {})", e.version),
            ));
        }
        if e.stream != stream {
            return Err(integrity(e.position, "record filed under another stream"));
        }
        if !stream_link_ok(e, &prev) {
            return Err(integrity(e.position, "stream hash mismatch"));
        }
        prev = e.hash;
    }
    Ok(out)
}

/// The saved answer under `(scope, key)`, if any.
pub(crate) fn recall(
    conn: &Connection,
    scope: ledger_store::responses::Scope,
    key: &str,
) -> Result<Option<ledger_store::responses::SavedResponse>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT fingerprint, status, content_type, body, saved_at
             FROM responses WHERE scope = ?1 AND key = ?2",
        )
        .map_err(backend)?;
    let row = stmt
        .query_row(rusqlite::params![&scope[..], key], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, u16>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()
        .map_err(backend)?;
    let Some((fingerprint, status, content_type, body, saved_at)) = row else {
        return Ok(None);
    };
    let fingerprint = fingerprint
        .try_into()
        .map_err(|_| StoreError::Backend("a saved answer's fingerprint is not 32 bytes".into()))?;
    Ok(Some(ledger_store::responses::SavedResponse {
        fingerprint,
        status,
        content_type,
        body,
        saved_at: ledger_types::Timestamp::from_millis(saved_at),
    }))
}

/// The last committed position (0 if the log is empty).
pub(crate) fn head(conn: &Connection) -> Result<Position, StoreError> {
    let p: Option<i64> = conn
        .query_row("SELECT MAX(position) FROM events", [], |r| r.get(0))
        .map_err(backend)?;
    Ok(p.unwrap_or(0).max(0) as u64)
}

/// Every row of the log read as the page reads do (same columns, same order, on a
/// pooled read connection), touching each column's bytes and decoding nothing:
/// no chain check, no copy into a record. The floor under every read path
/// (`ledger bench --read-side` reports the others as fractions of it). Returns the
/// rows and the bytes read.
pub(crate) fn raw_scan(conn: &Connection) -> Result<(u64, u64), StoreError> {
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM events ORDER BY position"))
        .map_err(backend)?;
    let mut rows = stmt.query([]).map_err(backend)?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(row) = rows.next().map_err(backend)? {
        n += 1;
        for i in 0..10 {
            bytes += match row.get_ref(i).map_err(backend)? {
                ValueRef::Text(b) | ValueRef::Blob(b) => b.len() as u64,
                _ => 8,
            };
        }
    }
    Ok((n, bytes))
}
