//! The embedded default event store: SQLite in WAL mode with group commit.
//!
//! This crate owns the embedded storage: [`SqliteStore`], an [`EventStore`] kept in a
//! single SQLite file, and [`SqliteViewStore`], where the projections persist their
//! rows and checkpoints (`views.sqlite`, see `views.rs`). It must not interpret
//! event payloads (they are opaque, already sealed bytes), must never log them (only
//! ids, stream names and positions go to `tracing`), and must not know about
//! commands or HTTP.
//!
//! # Why it is shaped this way
//!
//! **Durability costs one fsync per commit, not per event.** The disk here does a few
//! hundred to ~1,500 fsyncs per second, so one commit per append caps throughput at
//! that. A single writer thread owns the only write connection; appends are queued
//! on a channel and answered through a oneshot. The writer blocks for the first
//! message, drains everything else queued, applies the whole group in one
//! transaction and commits once (`synchronous = FULL`: the WAL is fsynced, so an
//! acknowledged append survives power loss), then replies to all. Concurrent
//! writers therefore share commits, and `append_batch` puts a bulk import in one.
//! Each message in a group is checked on its own (expected version, event ids)
//! before it writes anything, so a refused append does not disturb its neighbours;
//! `append_batch` is one message and all-or-nothing. See `writer.rs`.
//!
//! **The writer never asks the database what it already knows.** It keeps the next
//! position, the last log hash and a cache of stream heads (version, hash), so
//! positions and both chain hashes are computed in memory; only event-id look-ups
//! (idempotency) and head-cache misses query the database.
//!
//! **Reads never wait for the writer.** WAL readers see the last commit while the
//! writer works. Reads run on a small pool of read-only connections inside
//! `spawn_blocking`, with cached prepared statements, and verify the chains as rows
//! are decoded: `read_stream` the stream chain and version contiguity, `read_all`
//! the log chain and position contiguity. A mismatch is [`StoreError::Integrity`].
//!
//! **Pragmas** (see `schema.rs` for each value's reason): `journal_mode = WAL`,
//! `synchronous = FULL`, 4 KiB pages (less WAL traffic for the random-insert
//! event-id index), a 128 MiB writer page cache (hot index leaves stay resident),
//! 1 GiB `mmap_size` (replay without a copy per page). Checkpoints do not run in the
//! writer: `wal_autocheckpoint = 0`, and a background thread with its own connection
//! runs passive checkpoints once the WAL passes 64 MiB, concurrently with commits, so
//! appends never wait behind a checkpoint's copy and database fsync (a larger WAL
//! also copies the index leaves that many commits rewrite only once).
//! `journal_size_limit` shrinks the WAL file again after a reset.
//! [`SqliteStore::checkpoint_truncate`] empties the WAL on demand (backups).
//!
//! `wait_for_head` follows a `tokio::sync::watch` channel the writer updates after
//! each commit.

mod read;
pub mod schema;
mod views;
mod writer;

pub use views::SqliteViewStore;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use ledger_store::responses::{ResponseStore, SavedResponse, Scope};
use ledger_store::{
    AppendRequest, AppendResult, EventStore, Position, RecordedEvent, StoreError, Version,
};
use ledger_types::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};

use crate::read::Readers;
use crate::writer::{Msg, Writer};

/// The limits every backend enforces (see `ledger_store::validate_appends`).
pub use ledger_store::{
    MAX_BYTES_PER_CALL, MAX_EVENTS_PER_CALL, MAX_EVENT_TYPE_BYTES, MAX_PAYLOAD_BYTES,
    MAX_STREAM_NAME_BYTES,
};

/// Queued messages before `append` callers wait (backpressure).
const QUEUE_CAPACITY: usize = 4096;

/// An [`EventStore`] in one SQLite file (WAL mode), with group commit.
///
/// Dropping it (or calling [`close`](Self::close)) stops the writer thread after it
/// has committed and answered everything already queued.
#[derive(Debug)]
pub struct SqliteStore {
    tx: mpsc::Sender<Msg>,
    head_rx: watch::Receiver<Position>,
    readers: Arc<Readers>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    /// Opened with [`open_read_only`](Self::open_read_only): no writer thread; the
    /// head is read from the file, since another process may be writing.
    read_only: bool,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Append { .. } => "Append",
            Msg::Remember { .. } => "Remember",
            Msg::Expire { .. } => "Expire",
            Msg::Checkpoint { .. } => "Checkpoint",
            Msg::Close { .. } => "Close",
        })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`: the file, its parent
    /// directory, the schema and WAL mode. Starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("cannot create data directory: {e}")))?;
        }
        let conn = schema::open_writer(path)?;
        // The writer connection has set up the `-shm` file; give it its full size
        // now, so that no commit needs disk space to index its frames (see
        // `schema::reserve_shm`).
        let shm = schema::reserve_shm(path, schema::FORCE_CHECKPOINT_WAL_BYTES);
        let (head_tx, head_rx) = watch::channel(0);
        let writer = Writer::new(conn, path, head_tx)?;
        let head = writer.head();
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("ledger-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        tracing::info!(head, "sqlite event store opened");
        Ok(Self {
            tx,
            head_rx,
            readers: Arc::new(Readers::new(path.to_path_buf(), false).keeping_open(shm)),
            writer: Mutex::new(Some(handle)),
            path: path.to_path_buf(),
            read_only: false,
        })
    }

    /// Opens an existing store for reading only: no writer thread, no schema
    /// change, nothing created (a missing file is an error). Reads verify the
    /// chains as usual and see what another process commits; appends fail. For
    /// the operator's read-only commands, which run beside `ledger serve`. With
    /// `immutable` (the caller holds the folder's writer lock and
    /// [`schema::has_pending_wal`] is false) not even SQLite's `-wal` and `-shm`
    /// files are created; see [`schema::open_read_only`].
    pub fn open_read_only(path: &Path, immutable: bool) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Backend(format!(
                "no event store at {}",
                path.display()
            )));
        }
        let readers = Arc::new(Readers::new(path.to_path_buf(), immutable));
        let head = readers.with(read::head)?;
        let (_, head_rx) = watch::channel(head);
        // A queue nobody reads: appends find it closed.
        let (tx, _) = mpsc::channel(1);
        Ok(Self {
            tx,
            head_rx,
            readers,
            writer: Mutex::new(None),
            path: path.to_path_buf(),
            read_only: true,
        })
    }

    /// Reads every row of the log without decoding or verifying anything (see
    /// `read::raw_scan`); returns the rows and bytes read. For benchmarks.
    pub async fn raw_scan(&self) -> Result<(u64, u64), StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(read::raw_scan))
            .await
            .map_err(|_| StoreError::Backend("the scan task failed".into()))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpoints the WAL into the database file and truncates it to zero bytes
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`), after everything queued before it is
    /// committed. For callers that need the WAL emptied, e.g. before a file copy.
    pub async fn checkpoint_truncate(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Checkpoint { reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Commits and answers everything queued, then stops the writer. Later appends
    /// fail with [`StoreError::Closed`]; reads keep working. Idempotent.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    async fn submit(&self, requests: Vec<AppendRequest>) -> Result<Vec<AppendResult>, StoreError> {
        if self.read_only {
            return Err(read_only());
        }
        ledger_store::validate_appends(&requests, |_| None)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append { requests, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Disconnect the queue so the writer drains it and exits, then wait for it:
        // a reopen of the same file must find every acknowledged event committed.
        let (dead, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, dead));
        let handle = self
            .writer
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("sqlite writer thread panicked");
            }
        }
    }
}

/// A SQLite error as a [`StoreError`]: a full disk is [`StoreError::Full`], a
/// locked or unreadable file [`StoreError::Unavailable`] (a retry may succeed),
/// anything else [`StoreError::Backend`]. rusqlite's messages name SQL and SQLite
/// codes, never bound values.
pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    match SqliteErrorKind::of(&e) {
        SqliteErrorKind::Full => StoreError::Full,
        SqliteErrorKind::Transient => StoreError::Unavailable(e.to_string()),
        SqliteErrorKind::Other => StoreError::Backend(e.to_string()),
    }
}

/// How a SQLite error should be answered (shared by the event and view stores;
/// the key store in `ledger-crypto` classifies the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteErrorKind {
    /// `SQLITE_FULL`, or `SQLITE_IOERR_SHMSIZE`: the disk (or a size limit) is
    /// full. SQLite reports a write that runs out of space as `SQLITE_FULL`, but
    /// growing the `-shm` file (the WAL index, 32 KiB more every 4,096 WAL frames)
    /// as `SQLITE_IOERR_SHMSIZE`, whose only likely cause is a full disk.
    Full,
    /// Busy, locked, another I/O error or a file that cannot be opened: may pass.
    Transient,
    Other,
}

impl SqliteErrorKind {
    pub fn of(e: &rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        if let rusqlite::Error::SqliteFailure(f, _) = e {
            if f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE {
                return Self::Full;
            }
        }
        match e.sqlite_error_code() {
            Some(C::DiskFull) => Self::Full,
            Some(C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::CannotOpen) => {
                Self::Transient
            }
            _ => Self::Other,
        }
    }
}

fn read_only() -> StoreError {
    StoreError::Invalid("this event store was opened read-only".into())
}

pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} is out of range")))
}

#[async_trait]
impl ResponseStore for SqliteStore {
    async fn recall(&self, scope: Scope, key: &str) -> Result<Option<SavedResponse>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| read::recall(c, scope, &key)).await
    }

    async fn remember(
        &self,
        scope: Scope,
        key: &str,
        response: SavedResponse,
    ) -> Result<(), StoreError> {
        if self.read_only {
            return Err(read_only());
        }
        ledger_store::responses::validate_saved(key, &response)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Remember {
                scope,
                key: key.to_owned(),
                response,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn expire(&self, before: Timestamp, keep: usize) -> Result<u64, StoreError> {
        if self.read_only {
            return Err(read_only());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Expire {
                before,
                keep,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        self.submit(vec![request])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Backend("writer returned no result".into()))
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        self.submit(requests).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: Version,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.to_owned();
        self.read(move |c| read::read_stream(c, &stream, from_version))
            .await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(move |c| read::read_all(c, after, limit)).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        if self.read_only {
            return self.read(read::head).await;
        }
        Ok(*self.head_rx.borrow())
    }

    async fn wait_for_head(
        &self,
        after: Position,
        timeout: Duration,
    ) -> Result<Position, StoreError> {
        if self.read_only {
            // Another process writes: poll the file.
            let until = tokio::time::Instant::now() + timeout;
            loop {
                let h = self.head().await?;
                if h > after || tokio::time::Instant::now() >= until {
                    return Ok(h);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut rx = self.head_rx.clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|h| *h > after))
            .await
            .map(|r| r.map(|h| *h));
        let current = *rx.borrow();
        match waited {
            Ok(Ok(h)) => Ok(h),
            // The writer stopped: report the last head if it is news, else Closed.
            Ok(Err(_)) if current > after => Ok(current),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Ok(current),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_full_disk_is_full_wherever_sqlite_notices_it() {
        use rusqlite::ffi;
        let kind = |c| SqliteErrorKind::of(&failure(c));
        assert_eq!(kind(ffi::SQLITE_FULL), SqliteErrorKind::Full);
        assert_eq!(kind(ffi::SQLITE_IOERR_SHMSIZE), SqliteErrorKind::Full);
        assert_eq!(kind(ffi::SQLITE_IOERR_WRITE), SqliteErrorKind::Transient);
        assert_eq!(kind(ffi::SQLITE_IOERR_FSYNC), SqliteErrorKind::Transient);
        assert_eq!(kind(ffi::SQLITE_BUSY), SqliteErrorKind::Transient);
        assert_eq!(kind(ffi::SQLITE_CONSTRAINT_UNIQUE), SqliteErrorKind::Other);
        assert!(matches!(
            backend(failure(ffi::SQLITE_IOERR_SHMSIZE)),
            StoreError::Full
        ));
    }

    #[test]
    fn the_wal_index_is_reserved_for_a_wal_up_to_the_forced_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.sqlite");
        let shm = dir.path().join("events.sqlite-shm");
        let store = SqliteStore::open(&path).unwrap();
        // 32 regions of 32 KiB index 4,062 + 31 x 4,096 frames >= 512 MiB of WAL.
        assert_eq!(std::fs::metadata(&shm).unwrap().len(), 32 * 32 * 1024);
        drop(store);
        // Reopened (SQLite truncates it when the first connection attaches): again.
        let _store = SqliteStore::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&shm).unwrap().len(), 32 * 32 * 1024);
    }
}
