//! The single writer thread and its group commit.
//!
//! The writer owns the only write connection. It blocks for the first queued
//! message, drains whatever else is queued, applies every append request of the
//! group inside one `BEGIN IMMEDIATE` transaction, commits once (one WAL fsync) and
//! only then replies. Each message is planned before anything is written: event ids
//! are looked up, the stream head is taken from the in-memory cache (or the
//! database on a miss), the expected version is checked, and positions and both
//! hashes are computed. A message that fails planning gets its own error, its
//! in-memory effects are undone, and since it wrote no row the rest of the group is
//! unaffected. Only a storage error while writing or committing fails the whole
//! group; then the transaction is rolled back and the in-memory state is reloaded
//! from the database.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ledger_store::responses::{SavedResponse, Scope};
use ledger_store::tail::{LogTail, PlannedRecord as Planned, StreamHead as Head};
use ledger_store::{AppendRequest, AppendResult, Hash32, Position, StoreError, Version, ZERO_HASH};
use ledger_types::{EventId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{backend, schema};

/// A group holds at most this many events (bounds one transaction's size).
const MAX_GROUP_EVENTS: usize = 200_000;
/// The stream-head cache is dropped when it grows past this many streams.
const MAX_CACHED_HEADS: usize = 500_000;

pub(crate) type AppendReply = oneshot::Sender<Result<Vec<AppendResult>, StoreError>>;

pub(crate) enum Msg {
    /// One atomic unit: a single `append` or a whole `append_batch`.
    Append {
        requests: Vec<AppendRequest>,
        reply: AppendReply,
    },
    /// Saves an answer to a write request, in the next group's transaction.
    Remember {
        scope: Scope,
        key: String,
        response: SavedResponse,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Forgets old saved answers (its own transaction).
    Expire {
        before: Timestamp,
        keep: usize,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// Reads where the log ends.
fn load_tail(conn: &Connection) -> Result<LogTail, StoreError> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT position, log_hash FROM events ORDER BY position DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend)?;
    let (next_position, last_log_hash) = match last {
        None => (1, ZERO_HASH),
        Some((pos, hash)) => {
            let hash: Hash32 = hash.try_into().map_err(|_| StoreError::Integrity {
                position: pos as u64,
                reason: "stored log hash is not 32 bytes".into(),
            })?;
            (pos as u64 + 1, hash)
        }
    };
    Ok(LogTail::new(next_position, last_log_hash))
}

/// The stream's head: cached, or read from the database (inside the open
/// transaction, so rows written earlier in this group are seen).
fn head(tail: &mut LogTail, conn: &Connection, stream: &str) -> Result<Head, StoreError> {
    if let Some(h) = tail.heads.get(stream) {
        return Ok(*h);
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT version, hash FROM events WHERE stream = ?1 ORDER BY version DESC LIMIT 1",
        )
        .map_err(backend)?;
    let row: Option<(i64, Vec<u8>)> = stmt
        .query_row([stream], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
    let head = match row {
        None => Head::EMPTY,
        Some((v, h)) => Head {
            version: v as u64,
            hash: h.try_into().map_err(|_| StoreError::Integrity {
                position: 0,
                reason: format!("stream head hash at version {v} is not 32 bytes"),
            })?,
        },
    };
    // Cached without an undo entry: it is the committed state either way.
    tail.heads.insert(stream.to_owned(), head);
    Ok(head)
}

/// Why applying one message failed.
enum ApplyError {
    /// The request is refused (conflict, duplicate id); nothing was written.
    Refused(StoreError),
    /// Storage failed mid-write; the whole group must roll back.
    Fatal(StoreError),
    /// An insert hit a UNIQUE constraint (an event id already stored); the
    /// message's rows must be removed and it must be re-planned with look-ups.
    UniqueViolation,
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

enum IdCheck {
    New,
    Retry(AppendResult),
}

pub(crate) struct Writer {
    conn: Connection,
    state: LogTail,
    head_tx: watch::Sender<Position>,
    wal_path: PathBuf,
    checkpointer: Option<(std_mpsc::SyncSender<()>, JoinHandle<()>)>,
    /// Set by the checkpointer when it finished a pass.
    checkpoint_done: Arc<AtomicBool>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        path: &Path,
        head_tx: watch::Sender<Position>,
    ) -> Result<Self, StoreError> {
        let state = load_tail(&conn)?;
        head_tx.send_replace(state.next_position - 1);
        let ckpt_conn = schema::open_checkpointer(path)?;
        let (tx, rx) = std_mpsc::sync_channel::<()>(1);
        let checkpoint_done = Arc::new(AtomicBool::new(false));
        let done = checkpoint_done.clone();
        let handle = std::thread::Builder::new()
            .name("ledger-sqlite-checkpoint".into())
            .spawn(move || run_checkpointer(ckpt_conn, rx, done))
            .map_err(|e| StoreError::Backend(format!("cannot start checkpointer: {e}")))?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Self {
            conn,
            state,
            head_tx,
            wal_path: PathBuf::from(wal),
            checkpointer: Some((tx, handle)),
            checkpoint_done,
        })
    }

    /// After a commit: asks the checkpointer for a passive checkpoint once the WAL
    /// is large. When it has done the bulk of the copying, the writer finishes with
    /// its own passive checkpoint (only the frames appended meanwhile, and one
    /// database fsync), so the checkpoint is complete and the next transaction
    /// restarts the WAL from its beginning. A WAL that keeps growing regardless is
    /// checkpointed here.
    fn maybe_checkpoint(&mut self) {
        let finish = self.checkpoint_done.swap(false, Ordering::AcqRel);
        let wal = std::fs::metadata(&self.wal_path)
            .map(|m| m.len())
            .unwrap_or(0);
        if finish || wal >= schema::FORCE_CHECKPOINT_WAL_BYTES {
            let started = Instant::now();
            let r: rusqlite::Result<(i64, i64, i64)> =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    });
            tracing::debug!(
                wal_bytes = wal,
                ok = r.is_ok(),
                micros = started.elapsed().as_micros() as u64,
                "writer completed a WAL checkpoint"
            );
        } else if wal >= schema::CHECKPOINT_WAL_BYTES {
            if let Some((tx, _)) = &self.checkpointer {
                // Full means a request is already pending.
                let _ = tx.try_send(());
            }
        }
    }

    fn stop_checkpointer(&mut self) {
        if let Some((tx, handle)) = self.checkpointer.take() {
            drop(tx);
            if handle.join().is_err() {
                tracing::error!("checkpointer thread panicked");
            }
        }
    }

    pub(crate) fn head(&self) -> Position {
        self.state.next_position - 1
    }

    /// The thread body: runs until every sender is gone or `Close` arrives.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut pending = Group::default();
        while let Some(first) = rx.blocking_recv() {
            let mut queued = vec![first];
            let mut events = 0usize;
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(m) => {
                        if let Msg::Append { requests, .. } = &m {
                            events += requests.iter().map(|r| r.events.len()).sum::<usize>();
                        }
                        queued.push(m);
                    }
                    Err(_) => break,
                }
            }
            for msg in queued {
                match msg {
                    Msg::Append { requests, reply } => pending.appends.push((requests, reply)),
                    Msg::Remember {
                        scope,
                        key,
                        response,
                        reply,
                    } => pending.saved.push((scope, key, response, reply)),
                    Msg::Expire {
                        before,
                        keep,
                        reply,
                    } => {
                        self.commit_group(std::mem::take(&mut pending));
                        let _ = reply.send(self.expire(before, keep));
                    }
                    Msg::Checkpoint { reply } => {
                        self.commit_group(std::mem::take(&mut pending));
                        let _ = reply.send(self.checkpoint());
                    }
                    Msg::Close { reply } => {
                        self.commit_group(std::mem::take(&mut pending));
                        rx.close();
                        while let Ok(m) = rx.try_recv() {
                            refuse_closed(m);
                        }
                        self.stop_checkpointer();
                        self.checkpoint_at_close();
                        drop(self);
                        let _ = reply.send(());
                        return;
                    }
                }
            }
            self.commit_group(std::mem::take(&mut pending));
        }
        self.stop_checkpointer();
        self.checkpoint_at_close();
        tracing::debug!("event store writer stopped");
    }

    /// Moves everything into the database file and empties the WAL when the store
    /// closes. SQLite would do it when the last connection closes, but the read
    /// pool's connections are read-only and cannot; a stopped store whose WAL is
    /// empty can then be read with nothing created beside it (an auditor's copy).
    fn checkpoint_at_close(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::debug!(error = %e, "WAL not emptied at close (a reader is still open)");
        }
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let (busy, log, done): (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(backend)?;
        if busy != 0 {
            return Err(StoreError::Backend(format!(
                "WAL checkpoint could not complete ({done} of {log} frames): database busy"
            )));
        }
        tracing::debug!(frames = done, "WAL checkpointed and truncated");
        Ok(())
    }

    /// Forgets saved answers older than `before`, then the oldest beyond `keep`.
    fn expire(&mut self, before: Timestamp, keep: usize) -> Result<u64, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(backend)?;
        let mut n = tx
            .execute(
                "DELETE FROM responses WHERE saved_at < ?1",
                [before.millis()],
            )
            .map_err(backend)?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        n += tx
            .execute(
                "DELETE FROM responses WHERE (scope, key) IN (
                     SELECT scope, key FROM responses ORDER BY saved_at DESC LIMIT -1 OFFSET ?1)",
                [keep],
            )
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(n as u64)
    }

    /// Applies a group in one transaction and replies to every message.
    fn commit_group(&mut self, group: Group) {
        if group.is_empty() {
            return;
        }
        let Group {
            appends: group,
            saved,
        } = group;
        let started = Instant::now();
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let e = backend(e);
            tracing::warn!(error = %e, "could not begin the group transaction");
            for (_, reply) in group {
                let _ = reply.send(Err(again(&e)));
            }
            for (.., reply) in saved {
                let _ = reply.send(Err(again(&e)));
            }
            return;
        }
        let start = self.state.mark();
        let mut outcomes: Vec<Result<Vec<AppendResult>, StoreError>> =
            Vec::with_capacity(group.len());
        let mut fatal: Option<StoreError> = None;
        for (requests, _) in &group {
            let mark = self.state.mark();
            match self.apply(requests) {
                Ok(results) => outcomes.push(Ok(results)),
                Err(ApplyError::Refused(e)) => {
                    self.state.restore(mark);
                    outcomes.push(Err(e));
                }
                Err(ApplyError::Fatal(e)) => {
                    fatal = Some(e);
                    break;
                }
                Err(ApplyError::UniqueViolation) => {
                    fatal = Some(StoreError::Backend("unexpected unique violation".into()));
                    break;
                }
            }
        }
        if fatal.is_none() {
            if let Err(e) = self.save_responses(&saved) {
                fatal = Some(backend(e));
            }
        }
        let committed = match fatal {
            Some(e) => Err(e),
            None => self.conn.execute_batch("COMMIT").map_err(backend),
        };
        if let Err(e) = committed {
            tracing::warn!(error = %e, requests = group.len(), "group commit failed; rolled back");
            let _ = self.conn.execute_batch("ROLLBACK");
            self.state.restore(start);
            self.reload();
            for (_, reply) in group {
                let _ = reply.send(Err(again(&e)));
            }
            for (.., reply) in saved {
                let _ = reply.send(Err(again(&e)));
            }
            return;
        }
        self.state.commit();
        if self.state.heads.len() > MAX_CACHED_HEADS {
            self.state.heads.clear();
        }
        let head = self.head();
        self.head_tx.send_replace(head);
        tracing::debug!(
            requests = group.len(),
            first_position = start.next_position(),
            head,
            micros = started.elapsed().as_micros() as u64,
            "group committed"
        );
        for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
        for (.., reply) in saved {
            let _ = reply.send(Ok(()));
        }
        self.maybe_checkpoint();
    }

    fn save_responses(&self, saved: &[SavedAnswer]) -> Result<(), rusqlite::Error> {
        if saved.is_empty() {
            return Ok(());
        }
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO responses
                 (scope, key, fingerprint, status, content_type, body, saved_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (scope, key, r, _) in saved {
            stmt.execute(params![
                &scope[..],
                key,
                &r.fingerprint[..],
                r.status,
                r.content_type,
                r.body,
                r.saved_at.millis(),
            ])?;
        }
        Ok(())
    }

    /// Re-reads the log end after a failed commit; the head cache is dropped.
    fn reload(&mut self) {
        match load_tail(&self.conn) {
            Ok(s) => self.state = s,
            Err(e) => {
                tracing::error!(error = %e, "could not reload writer state");
                self.state.heads.clear();
                self.state.commit();
            }
        }
    }

    /// Applies one message. Fast path: plan without looking ids up and insert; the
    /// unique index on `event_id` rejects any id already stored. Then this message's
    /// rows (the last ones of the open transaction) are deleted and it is re-planned
    /// with explicit look-ups, which tells a faithful retry from a reused id. A
    /// refused fast path (a version conflict) is re-planned the same way, since a
    /// retry of an append that landed conflicts with its own result.
    fn apply(&mut self, requests: &[AppendRequest]) -> Result<Vec<AppendResult>, ApplyError> {
        let mark = self.state.mark();
        match self.plan_and_insert(requests, false) {
            Err(ApplyError::UniqueViolation) => {
                self.conn
                    .prepare_cached("DELETE FROM events WHERE position >= ?1")
                    .and_then(|mut s| s.execute([mark.next_position() as i64]))
                    .map_err(|e| ApplyError::Fatal(backend(e)))?;
                self.state.restore(mark);
                self.plan_and_insert(requests, true)
            }
            // A conflict may be a retry of an append that already landed.
            Err(ApplyError::Refused(_)) => {
                self.state.restore(mark);
                self.plan_and_insert(requests, true)
            }
            other => other,
        }
    }

    /// Plans every request of one message (looking event ids up first when
    /// `lookup_ids`), then writes its rows.
    fn plan_and_insert(
        &mut self,
        requests: &[AppendRequest],
        lookup_ids: bool,
    ) -> Result<Vec<AppendResult>, ApplyError> {
        let mut results = Vec::with_capacity(requests.len());
        let mut plans: Vec<Option<Vec<Planned>>> = Vec::with_capacity(requests.len());
        let mut batch_ids: Option<HashSet<EventId>> =
            (lookup_ids && requests.len() > 1).then(HashSet::new);
        for r in requests {
            if lookup_ids {
                match self.check_ids(r, batch_ids.as_ref())? {
                    IdCheck::Retry(res) => {
                        results.push(res);
                        plans.push(None);
                        continue;
                    }
                    IdCheck::New => {}
                }
            }
            if let Some(ids) = batch_ids.as_mut().filter(|_| lookup_ids) {
                ids.extend(r.events.iter().map(|e| e.event_id));
            }
            let head = head(&mut self.state, &self.conn, &r.stream).map_err(ApplyError::Fatal)?;
            let (planned, result) = self.state.plan(r, head).map_err(ApplyError::Refused)?;
            results.push(result);
            plans.push(Some(planned));
        }
        match self.insert(requests, &plans) {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                if lookup_ids {
                    // Every id was checked: the state disagrees with the database.
                    return Err(ApplyError::Fatal(backend(e)));
                }
                return Err(ApplyError::UniqueViolation);
            }
            Err(e) => return Err(ApplyError::Fatal(backend(e))),
        }
        Ok(results)
    }

    /// Looks every event id up in the unique index: all new, or a faithful retry
    /// (all stored, same stream, consecutive versions), or refused.
    fn check_ids(
        &self,
        r: &AppendRequest,
        batch_ids: Option<&HashSet<EventId>>,
    ) -> Result<IdCheck, ApplyError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT position, stream, version FROM events WHERE event_id = ?1")
            .map_err(|e| ApplyError::Fatal(backend(e)))?;
        let mut found: Vec<(Position, Version)> = Vec::new();
        let mut first_found: Option<EventId> = None;
        let mut foreign = false;
        for e in &r.events {
            if batch_ids.is_some_and(|ids| ids.contains(&e.event_id)) {
                return Err(ApplyError::Refused(StoreError::DuplicateEventId {
                    event_id: e.event_id,
                }));
            }
            let mut rows = stmt
                .query([&e.event_id.as_bytes()[..]])
                .map_err(|e| ApplyError::Fatal(backend(e)))?;
            if let Some(row) = rows.next().map_err(|e| ApplyError::Fatal(backend(e)))? {
                let pos: i64 = row.get(0).map_err(|e| ApplyError::Fatal(backend(e)))?;
                let stream = row
                    .get_ref(1)
                    .and_then(|v| v.as_str().map_err(Into::into))
                    .map_err(|e| ApplyError::Fatal(backend(e)))?;
                let version: i64 = row.get(2).map_err(|e| ApplyError::Fatal(backend(e)))?;
                if stream != r.stream {
                    foreign = true;
                }
                first_found.get_or_insert(e.event_id);
                found.push((pos as u64, version as u64));
            }
        }
        let Some(event_id) = first_found else {
            return Ok(IdCheck::New);
        };
        let consecutive = found.windows(2).all(|w| w[1].1 == w[0].1 + 1);
        if foreign || found.len() != r.events.len() || !consecutive {
            return Err(ApplyError::Refused(StoreError::DuplicateEventId {
                event_id,
            }));
        }
        let (first_position, _) = found[0];
        let (last_position, stream_version) = found[found.len() - 1];
        Ok(IdCheck::Retry(AppendResult {
            first_position,
            last_position,
            stream_version,
            duplicate: true,
        }))
    }

    fn insert(
        &self,
        requests: &[AppendRequest],
        plans: &[Option<Vec<Planned>>],
    ) -> Result<(), rusqlite::Error> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO events (position, stream, version, event_id, event_type,
                schema_version, payload, recorded_at, hash, log_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for (r, plan) in requests.iter().zip(plans) {
            let Some(plan) = plan else { continue };
            for (e, p) in r.events.iter().zip(plan) {
                // Positions and versions are < 2^63: they count stored rows.
                stmt.execute(params![
                    p.position as i64,
                    r.stream,
                    p.version as i64,
                    &e.event_id.as_bytes()[..],
                    e.event_type,
                    e.schema_version,
                    e.payload,
                    e.recorded_at.millis(),
                    &p.hash[..],
                    &p.log_hash[..],
                ])?;
            }
        }
        Ok(())
    }
}

/// The checkpointer thread: one passive checkpoint per request, until the writer
/// drops its sender. Passive checkpoints never block the writer or readers.
fn run_checkpointer(conn: Connection, rx: std_mpsc::Receiver<()>, done: Arc<AtomicBool>) {
    while rx.recv().is_ok() {
        let started = Instant::now();
        let r: rusqlite::Result<(i64, i64, i64)> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        match r {
            Ok((_, log, done)) => tracing::debug!(
                wal_frames = log,
                checkpointed = done,
                micros = started.elapsed().as_micros() as u64,
                "WAL checkpointed"
            ),
            Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
        }
        done.store(true, Ordering::Release);
    }
}

/// The same error again, for every waiter of a failed group (a full disk stays
/// [`StoreError::Full`], an unreachable file [`StoreError::Unavailable`]).
fn again(e: &StoreError) -> StoreError {
    match e {
        StoreError::Full => StoreError::Full,
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        other => StoreError::Backend(format!("group commit failed: {other}")),
    }
}

type SavedAnswer = (
    Scope,
    String,
    SavedResponse,
    oneshot::Sender<Result<(), StoreError>>,
);

/// What one group commit writes: appends, and answers to save with them.
#[derive(Default)]
struct Group {
    appends: Vec<(Vec<AppendRequest>, AppendReply)>,
    saved: Vec<SavedAnswer>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.appends.is_empty() && self.saved.is_empty()
    }
}

fn refuse_closed(m: Msg) {
    match m {
        Msg::Append { reply, .. } => {
            let _ = reply.send(Err(StoreError::Closed));
        }
        Msg::Remember { reply, .. } => {
            let _ = reply.send(Err(StoreError::Closed));
        }
        Msg::Expire { reply, .. } => {
            let _ = reply.send(Err(StoreError::Closed));
        }
        Msg::Checkpoint { reply } => {
            let _ = reply.send(Err(StoreError::Closed));
        }
        Msg::Close { reply } => {
            let _ = reply.send(());
        }
    }
}
