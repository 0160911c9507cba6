//! Reads on pooled read-only connections, verifying the chains as rows are decoded.
//!
//! Rows are immutable once committed and a commit is atomic, so a page query never
//! sees a half-written group. Each page query also returns the record just before the
//! page (position `after`, or stream version `from - 1`), whose hash the first
//! record of the page must chain from: one round trip per page. If the page holds
//! rows but that predecessor is missing, the log was altered.
//!
//! A pooled connection is never trusted to be alive: one whose driver task ended
//! (killed while idle, server restarted) is discarded when taken, and a read that
//! fails because its connection was lost drops the whole idle set (connections die
//! together) and is read once more on a new connection, since a read has no
//! effect. New connections are opened with the shared backoff (`backoff.rs`), so a
//! server that is down costs each read a bounded wait and an
//! [`StoreError::Unavailable`].

use std::sync::{Arc, Mutex, MutexGuard};

use ledger_store::chain::{log_link_ok, stream_link_ok};
use ledger_store::responses::{SavedResponse, Scope};
use ledger_store::{Hash32, Position, RecordedEvent, StoreError, Version, ZERO_HASH};
use ledger_types::{EventId, Timestamp};
use tokio::sync::Semaphore;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::target::{Session, Target};
use crate::{schema, to_i64};

const COLUMNS: &str = "position, stream, version, event_id, event_type, schema_version, \
                       payload, recorded_at, hash, log_hash";

/// One read connection with its prepared statements.
struct ReadConn {
    session: Session,
    read_all: Statement,
    read_stream: Statement,
    head: Statement,
    log_hash_at: Statement,
    /// Only where the store's schema is this binary's (the writer migrated it):
    /// a read-only reader may face a database without the answers table.
    recall: Option<Statement>,
}

/// A small pool: at most `max` connections in use at once, idle ones kept.
pub(crate) struct Readers {
    target: Arc<Target>,
    /// Whether connections prepare [`recall`](Self::recall).
    answers: bool,
    idle: Mutex<Vec<ReadConn>>,
    permits: Semaphore,
    /// When a new connection may be tried after failed ones.
    backoff: Mutex<Backoff>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("database", &self.target.label())
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

impl Readers {
    /// A pool of at most `max` connections; `answers`: whether saved answers are
    /// read too (the database's schema is known to be current).
    pub(crate) fn new(target: Arc<Target>, max: usize, answers: bool) -> Self {
        Self {
            target,
            answers,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max),
            backoff: Mutex::default(),
        }
    }

    /// Opens a connection when the backoff allows (waiting at most `MAX_RETRY`).
    async fn open(&self) -> Result<ReadConn, StoreError> {
        let next = lock(&self.backoff).next_attempt();
        if let Some(at) = next {
            tokio::time::sleep_until(at).await;
        }
        let opened = self.open_now().await;
        match &opened {
            Ok(_) => lock(&self.backoff).succeeded(),
            Err(StoreError::Unavailable(e)) => {
                let wait = lock(&self.backoff).failed();
                tracing::debug!(error = %e, next_in_ms = wait.as_millis() as u64, "cannot open a read connection");
            }
            Err(_) => {}
        }
        opened
    }

    async fn open_now(&self) -> Result<ReadConn, StoreError> {
        let session = self.target.connect("reader").await?;
        let client = &session.client;
        let err = |e: tokio_postgres::Error| {
            if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
                return schema::no_event_store(&self.target);
            }
            self.target.error("cannot prepare a read", &e)
        };
        client
            .batch_execute("SET default_transaction_read_only = on; SET enable_seqscan = off")
            .await
            .map_err(err)?;
        let read_all = client
            .prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE position >= $1 ORDER BY position LIMIT $2"
            ))
            .await
            .map_err(err)?;
        let read_stream = client
            .prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE stream = $1 AND version >= $2 ORDER BY version"
            ))
            .await
            .map_err(err)?;
        let head = client
            .prepare("SELECT COALESCE(max(position), 0) FROM events")
            .await
            .map_err(err)?;
        let log_hash_at = client
            .prepare("SELECT log_hash FROM events WHERE position = $1")
            .await
            .map_err(err)?;
        let recall = if self.answers {
            Some(
                client
                    .prepare(
                        "SELECT fingerprint, status, content_type, body, saved_at
                         FROM ledger_responses WHERE scope = $1 AND key = $2",
                    )
                    .await
                    .map_err(err)?,
            )
        } else {
            None
        };
        Ok(ReadConn {
            session,
            read_all,
            read_stream,
            head,
            log_hash_at,
            recall,
        })
    }

    /// An idle connection that is still open, discarding dead ones.
    fn take_idle(&self) -> Option<ReadConn> {
        let mut idle = lock(&self.idle);
        while let Some(c) = idle.pop() {
            if !c.session.client.is_closed() {
                return Some(c);
            }
        }
        None
    }

    /// Runs one query on a pooled connection; a connection that failed is dropped,
    /// and a read that lost a pooled connection is run once more on a new one.
    async fn query(
        &self,
        pick: impl Fn(&ReadConn) -> Option<&Statement>,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let mut retried = false;
        loop {
            let (conn, pooled) = match self.take_idle() {
                Some(c) => (c, true),
                None => (self.open().await?, false),
            };
            let Some(statement) = pick(&conn) else {
                lock(&self.idle).push(conn);
                return Err(StoreError::Backend(
                    "this reader does not read saved answers".into(),
                ));
            };
            match conn.session.client.query(statement, params).await {
                Ok(rows) => {
                    lock(&self.idle).push(conn);
                    return Ok(rows);
                }
                Err(e) => {
                    let error = self.target.error("read failed", &e);
                    drop(conn);
                    if matches!(error, StoreError::Unavailable(_)) {
                        // Killed sessions and restarts take every idle connection.
                        lock(&self.idle).clear();
                        if pooled && !retried {
                            retried = true;
                            continue;
                        }
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Up to `limit` records after `after`, with the log chain and contiguity verified.
    pub(crate) async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // From `after` itself (the predecessor) unless reading from the start.
        let with_prev = after > 0;
        let fetch = i64::try_from(limit)
            .unwrap_or(i64::MAX)
            .saturating_add(i64::from(with_prev));
        let rows = self
            .query(|c| Some(&c.read_all), &[&to_i64(after)?, &fetch])
            .await?;
        let mut rows = rows.iter();
        let mut prev = ZERO_HASH;
        let mut out = Vec::with_capacity(rows.len());
        if with_prev {
            let Some(first) = rows.next() else {
                return Ok(out);
            };
            let p = decode(first)?;
            if p.position != after {
                return Err(integrity(after, "record missing"));
            }
            prev = p.log_hash;
        }
        for (expected, row) in (after + 1..).zip(rows) {
            let e = decode(row)?;
            if e.position != expected {
                return Err(integrity(
                    expected,
                    format!("missing record: next stored position is {}", e.position),
                ));
            }
            if !log_link_ok(&e, &prev) {
                return Err(integrity(e.position, "log hash mismatch"));
            }
            prev = e.log_hash;
            out.push(e);
        }
        Ok(out)
    }

    /// A stream from `from_version`, with its chain and version contiguity verified.
    pub(crate) async fn read_stream(
        &self,
        stream: &str,
        from_version: Version,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = from_version.max(1);
        let with_prev = from > 1;
        let fetch_from = if with_prev { from - 1 } else { from };
        let rows = self
            .query(|c| Some(&c.read_stream), &[&stream, &to_i64(fetch_from)?])
            .await?;
        let mut prev: Option<Hash32> = (!with_prev).then_some(ZERO_HASH);
        let mut out = Vec::with_capacity(rows.len());
        let mut expected = fetch_from;
        for row in &rows {
            let e = decode(row)?;
            if e.stream != stream {
                return Err(integrity(e.position, "record filed under another stream"));
            }
            if prev.is_none() {
                // Looking for the predecessor at `from - 1`.
                if e.version == from - 1 {
                    prev = Some(e.hash);
                    expected = from;
                    continue;
                }
                return Err(integrity(
                    e.position,
                    format!("stream version {} missing", from - 1),
                ));
            }
            if e.version != expected {
                return Err(integrity(
                    e.position,
                    format!("stream version {expected} missing (found {})", e.version),
                ));
            }
            let link = prev.unwrap_or(ZERO_HASH);
            if !stream_link_ok(&e, &link) {
                return Err(integrity(e.position, "stream hash mismatch"));
            }
            prev = Some(e.hash);
            expected += 1;
            out.push(e);
        }
        Ok(out)
    }
}

impl Readers {
    /// The last committed position, as stored (0 for an empty log).
    pub(crate) async fn head(&self) -> Result<Position, StoreError> {
        let rows = self.query(|c| Some(&c.head), &[]).await?;
        let head: i64 = rows
            .first()
            .and_then(|r| r.try_get(0).ok())
            .ok_or_else(|| integrity(0, "the log end could not be read"))?;
        Ok(head.max(0) as u64)
    }

    /// The log hash stored at `position`, if there is a record there.
    pub(crate) async fn log_hash_at(
        &self,
        position: Position,
    ) -> Result<Option<Hash32>, StoreError> {
        let rows = self
            .query(|c| Some(&c.log_hash_at), &[&to_i64(position)?])
            .await?;
        rows.first()
            .map(|r| {
                let h: &[u8] = r
                    .try_get(0)
                    .map_err(|_| integrity(position, "malformed log hash"))?;
                hash32(h, position, "log hash")
            })
            .transpose()
    }

    /// The answer saved under `(scope, key)`, if any.
    pub(crate) async fn recall(
        &self,
        scope: Scope,
        key: &str,
    ) -> Result<Option<SavedResponse>, StoreError> {
        let scope: &[u8] = &scope;
        let rows = self.query(|c| c.recall.as_ref(), &[&scope, &key]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let bad = || StoreError::Backend("a saved answer is malformed".into());
        let fingerprint: &[u8] = row.try_get(0).map_err(|_| bad())?;
        let status: i32 = row.try_get(1).map_err(|_| bad())?;
        Ok(Some(SavedResponse {
            fingerprint: fingerprint.try_into().map_err(|_| bad())?,
            status: u16::try_from(status).map_err(|_| bad())?,
            content_type: row.try_get(2).map_err(|_| bad())?,
            body: row.try_get(3).map_err(|_| bad())?,
            saved_at: Timestamp::from_millis(row.try_get(4).map_err(|_| bad())?),
        }))
    }
}

/// A poisoned lock only means a panic elsewhere; the data (a list, a backoff) is
/// still sound.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn integrity(position: Position, reason: impl Into<String>) -> StoreError {
    StoreError::Integrity {
        position,
        reason: reason.into(),
    }
}

fn hash32(b: &[u8], position: Position, what: &str) -> Result<Hash32, StoreError> {
    b.try_into()
        .map_err(|_| integrity(position, format!("{what} is not 32 bytes")))
}

/// Decodes one row; a malformed value is an integrity error, never a panic.
fn decode(row: &Row) -> Result<RecordedEvent, StoreError> {
    let bad = |position: Position, what: &str| integrity(position, format!("malformed {what}"));
    let position: i64 = row.try_get(0).map_err(|_| bad(0, "position"))?;
    let position = u64::try_from(position).map_err(|_| integrity(0, "negative position"))?;
    let stream: String = row.try_get(1).map_err(|_| bad(position, "stream"))?;
    let version: i64 = row.try_get(2).map_err(|_| bad(position, "version"))?;
    let version = u64::try_from(version).map_err(|_| integrity(position, "negative version"))?;
    let id: Uuid = row.try_get(3).map_err(|_| bad(position, "event id"))?;
    let event_type: String = row.try_get(4).map_err(|_| bad(position, "event type"))?;
    let schema_version: i32 = row
        .try_get(5)
        .map_err(|_| bad(position, "schema version"))?;
    let schema_version = u16::try_from(schema_version)
        .map_err(|_| integrity(position, "schema version out of range"))?;
    let payload: Vec<u8> = row.try_get(6).map_err(|_| bad(position, "payload"))?;
    let recorded_at: i64 = row.try_get(7).map_err(|_| bad(position, "recorded_at"))?;
    let hash: &[u8] = row.try_get(8).map_err(|_| bad(position, "hash"))?;
    let log_hash: &[u8] = row.try_get(9).map_err(|_| bad(position, "log hash"))?;
    Ok(RecordedEvent {
        position,
        stream,
        version,
        event_id: EventId::from_uuid(id),
        event_type,
        schema_version,
        payload,
        recorded_at: Timestamp::from_millis(recorded_at),
        hash: hash32(hash, position, "hash")?,
        log_hash: hash32(log_hash, position, "log hash")?,
    })
}
