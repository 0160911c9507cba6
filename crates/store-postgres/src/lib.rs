//! The server event store: PostgreSQL, one locked writer with group commit.
//!
//! This crate owns the server storage: [`PostgresStore`], an [`EventStore`] kept in
//! one PostgreSQL database (table `events`, schema version in `schema_meta`) that is
//! also the [`ResponseStore`] of saved answers to idempotent writes (table
//! `ledger_responses`), and, for users who keep everything in that database,
//! [`PgKeyStore`] (wrapped data keys) and [`PgViewStore`] (projection rows and
//! checkpoints), see `state.rs`. For the operator's read-only commands beside a
//! running server, [`PostgresReader`], [`PgKeyStore::connect_read_only`] and
//! [`PgViewStore::connect_read_only`] read the same tables without the writer
//! lock, creating and writing nothing. It must not
//! interpret event payloads (they are opaque, already sealed bytes), must never log
//! them (only ids, stream names and positions go to `tracing`), must never put a
//! connection password in an error or a log line, and must not know about commands
//! or HTTP. Only the binary picks it; `app` sees `Arc<dyn EventStore>`.
//!
//! # Why it is shaped this way
//!
//! It follows the SQLite backend (`ledger-store-sqlite`), see ADR 0011.
//!
//! **One writer per database.** The log chain (ADR 0003) needs positions assigned
//! and hashed by one serialized writer. A single writer task owns the only write
//! connection, and at connect that connection takes a session-level
//! `pg_advisory_lock` ([`WRITER_LOCK`]), so a second ledger process on the same
//! database cannot write: its `connect` fails with a [`StoreError::Backend`] naming
//! the lock and the holder's backend pid. The lock goes when the holding connection
//! does (process exit, crash, [`PostgresStore::close`]).
//!
//! **Group commit.** Appends are queued on a channel and answered through a oneshot.
//! The writer takes the first message, drains everything else queued, plans the
//! whole group in memory (idempotency, expected version, positions, both hashes)
//! and writes all planned rows in **one statement**: a multi-row
//! `INSERT … SELECT FROM UNNEST(arrays)` for small groups, binary `COPY` for large
//! ones. When every stream head is cached it first tries that without looking ids
//! up (the unique index rejects a stored id, and the statement then wrote nothing);
//! otherwise, or after a refusal or a unique violation, it looks every event id of
//! the group up in one query and every uncached stream head in another (pipelined
//! on the one connection) and plans again. See `writer.rs`. One statement in
//! autocommit is one transaction and one commit (one WAL flush;
//! `synchronous_commit = on` is set on the writer session, so an acknowledged append
//! survives a crash). A message refused
//! while planning (conflict, reused id) writes no row and gets its own error; the
//! rest of its group is unaffected. `append_batch` is one message, all-or-nothing.
//! Because the writer holds the lock, its look-ups are authoritative: no other
//! session inserts rows, so planning never races.
//!
//! **The writer never asks the database what it already knows.** It keeps the next
//! position, the last log hash and a cache of stream heads in memory, and trusts
//! them only while the session that loaded them lives and holds the lock.
//!
//! **Reads never wait for the writer.** They run on a small pool of read-only
//! connections with prepared statements and verify the chains as rows are decoded:
//! `read_stream` the stream chain and version contiguity, `read_all` the log chain
//! and position contiguity. The predecessor's hash comes from the same query (one
//! extra row). A mismatch is [`StoreError::Integrity`].
//!
//! **A lost connection is reconnected, never fatal** (design §7). A server restart,
//! a fail-over or an operator's `pg_terminate_backend` ends sessions; a process that
//! kept a dead session would accept no write until restarted. So every session of
//! this crate (the writer's, the read pool's, the key and view stores') is replaced
//! by itself with capped exponential backoff (`backoff.rs`: at once, then from
//! 50 ms doubling to 2 s, with jitter). Each session's driver task runs on its own,
//! so a session killed while idle is noticed and replaced before the next call; a
//! call that finds no session waits for the next attempt (at most 2 s, plus at most
//! 5 s to open one) and fails with `Unavailable` if it fails, so an outage answers
//! requests promptly with "retry later" and the first call after the server is back
//! succeeds. The writer's new session re-takes the writer lock and re-reads the log
//! end before it plans anything; an append whose commit answer was lost with the
//! session is settled on the new session (committed: answered as planned; not:
//! planned again), see `writer.rs`. A read that lost its pooled connection is read
//! again on a new one; a key or view store call that lost its session runs once
//! more when running it twice is the same as once (all but `rewrap_all`), see
//! `state.rs`. `head` fails with `Unavailable` while the writer has no session, so
//! readiness fails while appends would.
//!
//! **Errors say whether to retry** (`condition.rs`). Connection-class failures
//! (closed connection, I/O, refused or timed-out connect, SQLSTATE class 08, 57P01
//! admin shutdown, 57P02, 57P03 cannot connect now, class 53 insufficient
//! resources, 40001/40P01, a standby's 25006, 58030 I/O error) are `Unavailable` in
//! all three error
//! types, 53100 disk full is `Full`, anything else stays `Backend` (`Store` for
//! keys). Messages hold the server's code and message, never DETAIL (which can quote
//! row values) nor the password.
//!
//! `head` and `wait_for_head` follow a `tokio::sync::watch` channel the writer
//! updates after each commit (only this process can write, so it sees every write).
//!
//! **Saved answers ride the group commit** (`ledger_store::responses`). An answer
//! is saved after the write it acknowledges committed, so it is a write of its own;
//! like SQLite's writer thread, the writer folds every answer queued into the next
//! group's one statement (a data-modifying `WITH` upserting `ledger_responses`
//! before the `INSERT` into `events`: one transaction, one WAL flush), or writes
//! them alone when the group has no rows. Recall is a read on the read pool.
//! `expire` runs on the writer session between groups.
//!
//! **Read-only access takes no lock and runs no DDL.** [`PostgresReader`] and the
//! read-only key and view stores open sessions with
//! `default_transaction_read_only = on`, check that their tables exist (a database
//! without them is "no ledger event store" / "no ledger key store", never an empty
//! ledger), and refuse every write before it reaches the server. The reader's head
//! is the largest stored position, polled by `wait_for_head`.

mod backoff;
mod condition;
mod read;
mod replica;
mod schema;
mod state;
mod target;
mod writer;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ledger_store::responses::{ResponseStore, SavedResponse, Scope};
use ledger_store::{
    AppendRequest, AppendResult, EventStore, Position, RecordedEvent, StoreError, Version,
};
use ledger_types::Timestamp;
use tokio::sync::{mpsc, oneshot, watch, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use crate::read::Readers;
use crate::replica::Replica;
use crate::target::Target;
use crate::writer::{Msg, SavedAnswer, Writer};

pub use crate::replica::ReplicaReads;
pub use crate::schema::WRITER_LOCK;
pub use crate::state::{PgKeyStore, PgViewStore};

/// The limits every backend enforces (see `ledger_store::validate_appends`).
pub use ledger_store::{
    MAX_BYTES_PER_CALL, MAX_EVENTS_PER_CALL, MAX_EVENT_TYPE_BYTES, MAX_PAYLOAD_BYTES,
    MAX_STREAM_NAME_BYTES,
};

/// Queued messages before `append` callers wait (backpressure).
const QUEUE_CAPACITY: usize = 4096;

/// Connection options beyond the URL.
#[derive(Clone)]
pub struct PostgresOptions {
    /// How long `connect` keeps trying to take the writer lock before it fails.
    /// Covers a predecessor in this process that was dropped but whose connection
    /// is still closing; another live process keeps the lock and `connect` fails.
    pub lock_wait: Duration,
    /// Most read connections open at once (reads beyond that wait for one).
    pub read_connections: usize,
    /// A streaming replica of the database to serve `read_all` from (the read
    /// side's catch-up), each page confirmed on the primary (see
    /// [`ReplicaReads`]). Stream reads (the command side) stay on the primary.
    pub read_replica: Option<String>,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The replica URL may hold a password: only whether there is one.
        f.debug_struct("PostgresOptions")
            .field("lock_wait", &self.lock_wait)
            .field("read_connections", &self.read_connections)
            .field("read_replica", &self.read_replica.is_some())
            .finish()
    }
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            lock_wait: Duration::from_secs(5),
            read_connections: 8,
            read_replica: None,
        }
    }
}

/// The replica's read pool for `url`, if one is given.
fn replica(url: Option<&str>, connections: usize) -> Result<Option<Replica>, StoreError> {
    url.map(|u| {
        let target = Arc::new(Target::parse(u)?);
        tracing::info!(replica = %target.label(), "read_all is served from a replica, confirmed on the primary");
        Ok(Replica::new(Readers::new(target, connections, false)))
    })
    .transpose()
}

/// An [`EventStore`] in a PostgreSQL database, with one locked writer and group
/// commit.
///
/// Dropping it stops the writer after it has committed and answered everything
/// already queued; the writer lock is released when its connection closes shortly
/// after. [`close`](Self::close) does the same and waits until the lock is released.
#[derive(Debug)]
pub struct PostgresStore {
    tx: mpsc::Sender<Msg>,
    head_rx: watch::Receiver<Position>,
    readers: Arc<Readers>,
    writer: AsyncMutex<Option<JoinHandle<()>>>,
    /// Whether the writer has a session (false while it reconnects).
    writer_up: Arc<AtomicBool>,
    target: Arc<Target>,
    replica: Option<Replica>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host:port/db`
    /// or `key=value` form; no TLS), takes the writer lock, brings the schema up to
    /// date and starts the writer task. Must be called inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit options.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let target = Arc::new(Target::parse(url)?);
        let replica = replica(
            options.read_replica.as_deref(),
            options.read_connections.max(1),
        )?;
        let (head_tx, head_rx) = watch::channel(0);
        let writer_up = Arc::new(AtomicBool::new(false));
        let writer = Writer::start(
            target.clone(),
            options.lock_wait,
            head_tx,
            writer_up.clone(),
        )
        .await?;
        let head = writer.head();
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let handle = tokio::spawn(writer.run(rx));
        tracing::info!(head, database = %target.label(), "postgres event store connected");
        Ok(Self {
            tx,
            head_rx,
            readers: Arc::new(Readers::new(
                target.clone(),
                options.read_connections.max(1),
                true,
            )),
            writer: AsyncMutex::new(Some(handle)),
            writer_up,
            target,
            replica,
        })
    }

    /// What the replica (`read_replica`) served so far; `None` without one.
    pub fn replica_reads(&self) -> Option<ReplicaReads> {
        self.replica.as_ref().map(Replica::reads)
    }

    /// `host:port/database`, for messages (never holds the password).
    pub fn database(&self) -> &str {
        self.target.label()
    }

    /// Commits and answers everything queued, stops the writer and closes its
    /// connection (releasing the writer lock). Later appends fail with
    /// [`StoreError::Closed`]; reads keep working. Idempotent.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(h) = self.writer.lock().await.take() {
            if h.await.is_err() {
                tracing::error!("postgres writer task panicked");
            }
        }
    }

    async fn submit(&self, requests: Vec<AppendRequest>) -> Result<Vec<AppendResult>, StoreError> {
        // PostgreSQL text cannot hold a NUL byte.
        ledger_store::validate_appends(&requests, |e| {
            e.event_type
                .contains('\0')
                .then(|| "event type holds a NUL byte".to_owned())
        })?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append { requests, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} is out of range")))
}

/// An [`EventStore`] that only reads a database another process writes: no
/// writer, no lock, no migrations, nothing created, nothing written (its sessions
/// are read-only: `default_transaction_read_only`). For the operator's read-only
/// commands, which run beside `ledger serve` (a second [`PostgresStore`] would be
/// refused the writer lock).
///
/// Reads are verified as in [`PostgresStore`] and see what the writer commits;
/// [`head`](EventStore::head) is the largest stored position (the writer commits
/// whole groups, so that is always the end of a complete log), and
/// [`wait_for_head`](EventStore::wait_for_head) polls it. Appends fail with
/// [`StoreError::Invalid`]. Its sessions reconnect like every session of this crate.
#[derive(Debug)]
pub struct PostgresReader {
    readers: Readers,
    replica: Option<Replica>,
}

/// How often [`PostgresReader::wait_for_head`](EventStore::wait_for_head) reads
/// the head.
const HEAD_POLL: Duration = Duration::from_millis(50);

impl PostgresReader {
    /// A reader of the database at `url`, opening its sessions on first use. A
    /// database without the event log fails each read with "no ledger event store".
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Ok(Self::with(Arc::new(Target::parse(url)?), 1))
    }

    /// Connects and checks, creating nothing, that the database holds a ledger
    /// event store this binary can read (the `events` table, a schema version no
    /// newer than this binary's); otherwise fails with an error saying so.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let target = Arc::new(Target::parse(url)?);
        let session = target.connect("reader").await?;
        let checked = async {
            session
                .client
                .batch_execute("SET default_transaction_read_only = on")
                .await
                .map_err(|e| target.error("cannot configure a read session", &e))?;
            schema::check_readable(&session.client, &target).await
        }
        .await;
        session.close().await;
        checked?;
        let reader = Self::with(target.clone(), 2);
        let head = reader.readers.head().await?;
        tracing::info!(head, database = %target.label(), "postgres event store opened read-only");
        Ok(reader)
    }

    /// [`connect`](Self::connect) to the primary at `url`, serving `read_all`
    /// (the audit's replay) from the replica at `replica_url`: each page is
    /// confirmed on the primary, or read there if the replica cannot serve it, so
    /// the replay shows exactly the primary's log (see [`ReplicaReads`]).
    pub async fn connect_with_replica(url: &str, replica_url: &str) -> Result<Self, StoreError> {
        let mut reader = Self::connect(url).await?;
        reader.replica = replica(Some(replica_url), 2)?;
        Ok(reader)
    }

    /// What the replica served so far; `None` without one.
    pub fn replica_reads(&self) -> Option<ReplicaReads> {
        self.replica.as_ref().map(Replica::reads)
    }

    fn with(target: Arc<Target>, connections: usize) -> Self {
        Self {
            readers: Readers::new(target, connections, false),
            replica: None,
        }
    }

    /// A stream from `from_version`, its chain verified (see `EventStore::read_stream`).
    pub async fn read_stream(
        &self,
        stream: &str,
        from_version: Version,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.readers.read_stream(stream, from_version).await
    }
}

fn read_only() -> StoreError {
    StoreError::Invalid("this event store was opened read-only".into())
}

#[async_trait]
impl EventStore for PostgresReader {
    async fn append(&self, _request: AppendRequest) -> Result<AppendResult, StoreError> {
        Err(read_only())
    }

    async fn append_batch(
        &self,
        _requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        Err(read_only())
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: Version,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.readers.read_stream(stream, from_version).await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match &self.replica {
            Some(r) => r.read_all(&self.readers, after, limit).await,
            None => self.readers.read_all(after, limit).await,
        }
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.readers.head().await
    }

    async fn wait_for_head(
        &self,
        after: Position,
        timeout: Duration,
    ) -> Result<Position, StoreError> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let h = self.head().await?;
            if h > after || tokio::time::Instant::now() >= until {
                return Ok(h);
            }
            tokio::time::sleep(HEAD_POLL).await;
        }
    }
}

#[async_trait]
impl ResponseStore for PostgresStore {
    async fn recall(&self, scope: Scope, key: &str) -> Result<Option<SavedResponse>, StoreError> {
        self.readers.recall(scope, key).await
    }

    /// Queued for the writer, which saves it in its next group's statement (one
    /// commit with the appends of that group); answered once committed.
    async fn remember(
        &self,
        scope: Scope,
        key: &str,
        response: SavedResponse,
    ) -> Result<(), StoreError> {
        ledger_store::responses::validate_saved(key, &response)?;
        // PostgreSQL text cannot hold a NUL byte; refused here, so that it never
        // fails the group it would be written with.
        if key.contains('\0')
            || response
                .content_type
                .as_deref()
                .is_some_and(|c| c.contains('\0'))
        {
            return Err(StoreError::Invalid(
                "an idempotency key or content type holds a NUL byte".into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Remember(SavedAnswer {
                scope,
                key: key.to_owned(),
                response,
                reply,
            }))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn expire(&self, before: Timestamp, keep: usize) -> Result<u64, StoreError> {
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
impl EventStore for PostgresStore {
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
        self.readers.read_stream(stream, from_version).await
    }

    /// Records up to the acknowledged head only: a record on the server but past
    /// the head is one whose commit was not answered yet, or one left visible on
    /// the primary alone by a session that died waiting for the synchronous
    /// standby (which the writer confirms durable before it moves the head, see
    /// `target::barrier`). With a `read_replica`, pages come from the replica when
    /// the primary confirms them.
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = *self.head_rx.borrow();
        let limit = limit.min(usize::try_from(head.saturating_sub(after)).unwrap_or(usize::MAX));
        if limit == 0 {
            return Ok(Vec::new());
        }
        match &self.replica {
            Some(r) => r.read_all(&self.readers, after, limit).await,
            None => self.readers.read_all(after, limit).await,
        }
    }

    /// The last committed position; [`StoreError::Unavailable`] while the writer
    /// has lost its session and not yet opened a new one, so that readiness
    /// (which asks for the head) fails while appends would.
    async fn head(&self) -> Result<Position, StoreError> {
        if !self.writer_up.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(format!(
                "the writer lost its session to {} and is reconnecting",
                self.target.label()
            )));
        }
        Ok(*self.head_rx.borrow())
    }

    async fn wait_for_head(
        &self,
        after: Position,
        timeout: Duration,
    ) -> Result<Position, StoreError> {
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
