//! The single writer task and its group commit.
//!
//! The writer owns the only write session (holding the writer lock). It waits for
//! the first queued message, drains whatever else is queued, and for the group:
//!
//! 1. fast path, when every stream head of the group is cached: plans each message
//!    in memory assuming its ids are new, and if none is refused writes every row
//!    with one statement (multi-row `INSERT` from arrays, or binary `COPY` for large
//!    groups): one round trip, one transaction, one durable commit. The unique
//!    index rejects an id already stored; the statement then wrote nothing;
//! 2. otherwise (uncached heads, a refused message that may be a retry whose own
//!    result conflicts with it, or a unique violation): looks up every event id of
//!    the group and the uncached heads in two pipelined queries and plans again: a
//!    faithful retry is answered with its original positions, a reused id or a
//!    failed expected version refuses the message (its in-memory effects are undone;
//!    it planned no row), otherwise positions, versions and both hashes are
//!    assigned; then writes the planned rows with one statement as above;
//! 3. publishes the new head, then replies to every message.
//!
//! Ids planned by an earlier message of the group count as stored for later ones, so
//! the group behaves exactly as if its messages were committed one by one.
//!
//! Answers to save (`Msg::Remember`) queued with the group are written by the same
//! statement: a data-modifying `WITH` upserts them into `ledger_responses` before
//! the `INSERT` into `events` (a `COPY` group writes both in one explicit
//! transaction; a group without rows upserts them alone). So they share the group's
//! commit, its all-or-nothing and its settling after a lost answer. Two answers for
//! one key in a group keep the later one, as if saved one after the other.
//!
//! # Losing the session
//!
//! The in-memory log end is only trusted while the session that loaded it lives and
//! holds the lock. When the session ends (noticed while idle through its driver
//! task, or by a failed statement) the writer drops it and opens a new one with
//! capped exponential backoff (`backoff.rs`): at once while idle, so the next append
//! does not wait, or when a group arrives. A new session re-takes the writer lock,
//! re-reads the log end and forgets the cached stream heads before it plans
//! anything.
//!
//! A group whose write statement lost its answer with the session may or may not
//! have committed. The writer reconnects (the lock guarantees the old session is
//! gone, so what it sees is final; with a multi-host URL the new session may be on
//! another server, the new primary after a fail-over, where the lock is free and
//! the old primary can no longer commit) and, before it reads anything, waits until
//! everything it can see is durable on the synchronous standbys too
//! (`target::barrier`: a commit whose session died while waiting for the standby
//! stays visible on the primary alone). Then it reads the first planned position: holding
//! the group's first event id, the group committed and is answered as planned;
//! otherwise nothing was written and the group is planned again. A group meets at
//! most [`GROUP_TRIES`] sessions; if it cannot be settled it is answered
//! [`StoreError::Unavailable`], and the caller's retry with the same event ids is
//! answered faithfully by idempotency (its original positions, or written now).
//!
//! A storage error on a live session (a full disk, a constraint) fails the whole
//! group: the statement wrote nothing, and the log end is reloaded anyway.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_store::responses::{SavedResponse, Scope};
use ledger_store::tail::{LogTail, StreamHead as Head};
use ledger_store::{AppendRequest, AppendResult, Hash32, Position, StoreError, Version, ZERO_HASH};
use ledger_types::{EventId, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};
use tracing::instrument;
use uuid::Uuid;

use crate::backoff::{self, Backoff};
use crate::condition::Condition;
use crate::target::{self, Session, Target};
use crate::{schema, to_i64};

/// A group holds at most this many events (bounds one statement's size).
const MAX_GROUP_EVENTS: usize = 100_000;
/// A group holds at most this many payload bytes (a single message may exceed it).
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Groups with at least this many rows, or [`COPY_MIN_BYTES`] payload bytes, are
/// written with binary `COPY` (streamed, no 1 GiB parameter limit); smaller ones with
/// one multi-row `INSERT` (one round trip).
const COPY_MIN_ROWS: usize = 2_000;
const COPY_MIN_BYTES: usize = 8 * 1024 * 1024;
/// The stream-head cache is dropped when it grows past this many streams.
const MAX_CACHED_HEADS: usize = 500_000;
/// How many sessions one group may meet: a group that lost its session is planned
/// once more on a new one; losing that too answers it `Unavailable`.
const GROUP_TRIES: u32 = 2;
/// At most this long (or `lock_wait` if shorter) a new session waits for the writer
/// lock: a killed session's backend releases it within milliseconds of ending.
const RELOCK_WAIT: Duration = Duration::from_secs(2);

const COLUMNS: &str =
    "position, stream, version, event_id, event_type, schema_version, payload, recorded_at, hash, log_hash";
const COLUMN_TYPES: [Type; 10] = [
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::UUID,
    Type::TEXT,
    Type::INT4,
    Type::BYTEA,
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
];

pub(crate) type AppendReply = oneshot::Sender<Result<Vec<AppendResult>, StoreError>>;
pub(crate) type DoneReply = oneshot::Sender<Result<(), StoreError>>;
type Outcome = Result<Vec<AppendResult>, StoreError>;
type Pending = (Vec<AppendRequest>, AppendReply);

/// An answer to save with the next group (`ResponseStore::remember`).
pub(crate) struct SavedAnswer {
    pub(crate) scope: Scope,
    pub(crate) key: String,
    pub(crate) response: SavedResponse,
    pub(crate) reply: DoneReply,
}

pub(crate) enum Msg {
    /// One atomic unit: a single `append` or a whole `append_batch`.
    Append {
        requests: Vec<AppendRequest>,
        reply: AppendReply,
    },
    /// An answer to save, written in the next group's transaction.
    Remember(SavedAnswer),
    /// Forget saved answers older than `before`, then the oldest beyond `keep`.
    Expire {
        before: Timestamp,
        keep: usize,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Append { .. } => "Append",
            Msg::Remember(_) => "Remember",
            Msg::Expire { .. } => "Expire",
            Msg::Close { .. } => "Close",
        })
    }
}

/// The answers a group saves, one per `(scope, key)` (the last one wins, as if
/// they were saved one by one: one statement cannot upsert a row twice), as the
/// arrays the statements take.
#[derive(Default)]
struct Answers<'a> {
    scopes: Vec<&'a [u8]>,
    keys: Vec<&'a str>,
    fingerprints: Vec<&'a [u8]>,
    statuses: Vec<i32>,
    content_types: Vec<Option<&'a str>>,
    bodies: Vec<&'a [u8]>,
    saved_at: Vec<i64>,
}

impl<'a> Answers<'a> {
    fn of(saved: &'a [SavedAnswer]) -> Self {
        let mut seen: HashSet<(&Scope, &str)> = HashSet::new();
        let mut last: Vec<&SavedAnswer> = saved
            .iter()
            .rev()
            .filter(|a| seen.insert((&a.scope, a.key.as_str())))
            .collect();
        last.reverse();
        let mut out = Self::default();
        for a in last {
            let r = &a.response;
            out.scopes.push(&a.scope[..]);
            out.keys.push(&a.key);
            out.fingerprints.push(&r.fingerprint[..]);
            out.statuses.push(i32::from(r.status));
            out.content_types.push(r.content_type.as_deref());
            out.bodies.push(&r.body);
            out.saved_at.push(r.saved_at.millis());
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.scopes,
            &self.keys,
            &self.fingerprints,
            &self.statuses,
            &self.content_types,
            &self.bodies,
            &self.saved_at,
        ]
    }
}

/// Upserts the answers given as arrays from parameter `$first` on.
fn upsert_answers(first: usize) -> String {
    let p: Vec<String> = (first..first + 7).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO ledger_responses (scope, key, fingerprint, status, content_type, body, saved_at)
         SELECT * FROM UNNEST({}::bytea[], {}::text[], {}::bytea[], {}::int4[], {}::text[],
                              {}::bytea[], {}::int8[])
         ON CONFLICT (scope, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
             status = EXCLUDED.status, content_type = EXCLUDED.content_type,
             body = EXCLUDED.body, saved_at = EXCLUDED.saved_at",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    )
}

/// Forgets the answers saved before `$1`, then, of the rest, the oldest beyond
/// `$2`; returns how many. One statement: both deletes see the same snapshot, so
/// the second looks only at rows the first keeps (`saved_at >= $1`).
const EXPIRE_ANSWERS: &str = "WITH old AS (
        DELETE FROM ledger_responses WHERE saved_at < $1 RETURNING 1
    ), extra AS (
        DELETE FROM ledger_responses WHERE (scope, key) IN (
            SELECT scope, key FROM ledger_responses WHERE saved_at >= $1
            ORDER BY saved_at DESC, scope DESC, key DESC OFFSET $2)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM old) + (SELECT count(*) FROM extra)";

/// Reads where the log ends.
async fn load_tail(client: &Client, target: &Target) -> Result<LogTail, StoreError> {
    let row = client
        .query_opt(
            "SELECT position, log_hash FROM events ORDER BY position DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| target.error("cannot read the log end", &e))?;
    let (next_position, last_log_hash) = match row {
        None => (1, ZERO_HASH),
        Some(row) => {
            let pos: i64 = row
                .try_get(0)
                .map_err(|e| target.error("cannot read the log end", &e))?;
            let hash: &[u8] = row
                .try_get(1)
                .map_err(|e| target.error("cannot read the log end", &e))?;
            let hash: Hash32 = hash.try_into().map_err(|_| StoreError::Integrity {
                position: pos.max(0) as u64,
                reason: "stored log hash is not 32 bytes".into(),
            })?;
            (pos.max(0) as u64 + 1, hash)
        }
    };
    Ok(LogTail::new(next_position, last_log_hash))
}

/// A stored (or planned earlier in the group) event id.
struct Known {
    position: Position,
    stream: String,
    version: Version,
}

/// A planned row: which event of the group, where it lands, and its hashes.
struct Planned {
    msg: usize,
    req: usize,
    ev: usize,
    position: Position,
    version: Version,
    hash: Hash32,
    log_hash: Hash32,
}

enum IdCheck {
    New,
    Retry(AppendResult),
}

struct Statements {
    insert: Statement,
    /// `insert` and the group's saved answers in one statement (one commit).
    insert_with_answers: Statement,
    save_answers: Statement,
    expire_answers: Statement,
    lookup_ids: Statement,
    lookup_heads: Statement,
}

/// The write session (holding the writer lock) and its prepared statements.
struct Link {
    session: Session,
    stmts: Statements,
}

impl AsMut<Session> for Link {
    fn as_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// A group written and answered.
struct Done {
    outcomes: Vec<Outcome>,
    rows: usize,
    first_position: Position,
}

/// A group whose write statement lost its answer: committed or not.
struct Unsettled {
    first_position: Position,
    first_id: EventId,
    done: Done,
}

enum Failed {
    /// Nothing was written and the session is fine (or gone for another reason).
    Refused(StoreError),
    /// The session was lost (an `Unavailable` error); `unsettled` if it was lost
    /// while writing.
    Lost {
        error: StoreError,
        unsettled: Option<Unsettled>,
    },
}

/// The writer: one session (holding the lock) when connected, its prepared
/// statements, and the in-memory log end and stream heads.
pub(crate) struct Writer {
    target: Arc<Target>,
    lock_wait: Duration,
    /// `None` while disconnected: [`state`](Self::state) is then stale and is
    /// reloaded by the next session.
    link: Option<Link>,
    backoff: Backoff,
    state: LogTail,
    head_tx: watch::Sender<Position>,
    /// Whether a session is open, for `PostgresStore::head` (readiness).
    up: Arc<AtomicBool>,
}

impl Writer {
    /// Connects, takes the lock, migrates, loads the log end and prepares statements.
    pub(crate) async fn start(
        target: Arc<Target>,
        lock_wait: Duration,
        head_tx: watch::Sender<Position>,
        up: Arc<AtomicBool>,
    ) -> Result<Self, StoreError> {
        // At start, a lock held by someone else is another writer: refuse.
        let (link, state) = Self::open(&target, lock_wait, Condition::Failed).await?;
        head_tx.send_replace(state.next_position - 1);
        up.store(true, Ordering::Release);
        Ok(Self {
            target,
            lock_wait,
            link: Some(link),
            backoff: Backoff::default(),
            state,
            head_tx,
            up,
        })
    }

    async fn open(
        target: &Target,
        lock_wait: Duration,
        lock_held: Condition,
    ) -> Result<(Link, LogTail), StoreError> {
        let session = target.connect("writer").await?;
        let opened = async {
            let client = &session.client;
            schema::prepare_writer(client, target, lock_wait, lock_held).await?;
            // Under the lock (so no lost session of ours can still commit): what this
            // session sees from now on, the log end and any group to settle, is
            // durable, also on a synchronous standby (see `target::barrier`).
            target::barrier(client, target).await?;
            let prep = |sql: String| async move {
                client
                    .prepare(&sql)
                    .await
                    .map_err(|e| target.error("cannot prepare a writer statement", &e))
            };
            let insert = format!(
                "INSERT INTO events ({COLUMNS}) SELECT * FROM UNNEST(
                    $1::int8[], $2::text[], $3::int8[], $4::uuid[], $5::text[],
                    $6::int4[], $7::bytea[], $8::int8[], $9::bytea[], $10::bytea[])"
            );
            // Prepared together: pipelined on the session, one round trip's wait.
            let (insert_plain, insert_with_answers, save_answers, expire_answers) = tokio::try_join!(
                prep(insert.clone()),
                prep(format!("WITH saved AS ({}) {insert}", upsert_answers(11))),
                prep(upsert_answers(1)),
                prep(EXPIRE_ANSWERS.into()),
            )?;
            let (lookup_ids, lookup_heads) = tokio::try_join!(
                prep(
                    "SELECT event_id, position, stream, version FROM events
                     WHERE event_id = ANY($1::uuid[])"
                        .into(),
                ),
                prep(
                    "SELECT s.stream, e.version, e.hash FROM UNNEST($1::text[]) AS s(stream)
                     CROSS JOIN LATERAL (SELECT version, hash FROM events
                        WHERE events.stream = s.stream ORDER BY version DESC LIMIT 1) e"
                        .into(),
                ),
            )?;
            let stmts = Statements {
                insert: insert_plain,
                insert_with_answers,
                save_answers,
                expire_answers,
                lookup_ids,
                lookup_heads,
            };
            let state = load_tail(client, target).await?;
            Ok::<_, StoreError>((stmts, state))
        }
        .await;
        match opened {
            Ok((stmts, state)) => Ok((Link { session, stmts }, state)),
            Err(e) => {
                // Close the session before reporting: a caller retrying at once must
                // not find it still holding the lock.
                session.close().await;
                Err(e)
            }
        }
    }

    pub(crate) fn head(&self) -> Position {
        self.state.next_position - 1
    }

    /// The task body: runs until every sender is gone or `Close` arrives, then closes
    /// the session (releasing the writer lock). While idle it watches the session
    /// and replaces it as soon as it is lost.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut pending: Vec<Pending> = Vec::new();
        let mut saved: Vec<SavedAnswer> = Vec::new();
        loop {
            let retry_at = self.link.is_none().then(|| {
                self.backoff
                    .next_attempt()
                    .unwrap_or_else(tokio::time::Instant::now)
            });
            let first = tokio::select! {
                biased;
                m = rx.recv() => m,
                () = target::ended(&mut self.link) => {
                    self.lose(&"the connection ended while idle");
                    continue;
                }
                () = backoff::sleep_until(retry_at) => {
                    // Failures are logged and counted by `reconnect`; the next group
                    // tries again (or the next idle slot does).
                    let _ = self.reconnect().await;
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut queued = vec![first];
            let (mut events, mut bytes) = (0usize, 0usize);
            while events < MAX_GROUP_EVENTS && bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(m) => {
                        match &m {
                            Msg::Append { requests, .. } => {
                                for r in requests {
                                    events += r.events.len();
                                    bytes +=
                                        r.events.iter().map(|e| e.payload.len()).sum::<usize>();
                                }
                            }
                            Msg::Remember(a) => bytes += a.response.body.len(),
                            Msg::Expire { .. } | Msg::Close { .. } => {}
                        }
                        queued.push(m);
                    }
                    Err(_) => break,
                }
            }
            for msg in queued {
                match msg {
                    Msg::Append { requests, reply } => pending.push((requests, reply)),
                    Msg::Remember(a) => saved.push(a),
                    Msg::Expire {
                        before,
                        keep,
                        reply,
                    } => {
                        self.commit_group(std::mem::take(&mut pending), std::mem::take(&mut saved))
                            .await;
                        let _ = reply.send(self.expire(before, keep).await);
                    }
                    Msg::Close { reply } => {
                        self.commit_group(std::mem::take(&mut pending), std::mem::take(&mut saved))
                            .await;
                        rx.close();
                        while let Ok(m) = rx.try_recv() {
                            refuse_closed(m);
                        }
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                }
            }
            self.commit_group(std::mem::take(&mut pending), std::mem::take(&mut saved))
                .await;
        }
        self.shutdown().await;
    }

    async fn shutdown(self) {
        let Some(link) = self.link else {
            tracing::debug!("postgres event store writer stopped (disconnected)");
            return;
        };
        // Release the lock explicitly: the server ends a closed session
        // asynchronously, so a successor connecting right after `close` returns
        // could otherwise still find it held.
        if !link.session.client.is_closed() {
            let unlocked = link
                .session
                .client
                .query_one(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&schema::WRITER_LOCK.0, &schema::WRITER_LOCK.1],
                )
                .await;
            if let Err(e) = unlocked {
                tracing::debug!(error = %target::describe(&e), "writer lock release failed; it goes with the session");
            }
        }
        link.session.close().await;
        tracing::debug!("postgres event store writer stopped");
    }

    /// Forgets a lost (or untrusted) session; the next one reloads the log end.
    fn lose(&mut self, why: &dyn std::fmt::Display) {
        if let Some(link) = self.link.take() {
            self.up.store(false, Ordering::Release);
            tracing::warn!(database = %self.target.label(), error = %why, "writer session lost; reconnecting");
            // Dropping the client closes the socket: if the server still had the
            // session, it ends now and releases the writer lock.
            drop(link);
        }
    }

    /// A session to write on: the current one, or a new one opened now (after the
    /// wait the backoff asks for, at most `MAX_RETRY`).
    async fn connected(&mut self) -> Result<&Link, StoreError> {
        if self
            .link
            .as_ref()
            .is_some_and(|l| l.session.client.is_closed())
        {
            self.lose(&"the connection is closed");
        }
        if self.link.is_none() {
            self.reconnect().await?;
        }
        self.link.as_ref().ok_or_else(|| self.no_session())
    }

    fn no_session(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "the writer has no session to {}",
            self.target.label()
        ))
    }

    /// One attempt, when the backoff allows it, to open a new session: takes the
    /// writer lock again, re-reads the log end and forgets the cached heads.
    #[instrument(skip_all, fields(database = %self.target.label(), failures = self.backoff.failures()))]
    async fn reconnect(&mut self) -> Result<(), StoreError> {
        if let Some(at) = self.backoff.next_attempt() {
            tokio::time::sleep_until(at).await;
        }
        let relock = self.lock_wait.min(RELOCK_WAIT);
        let open = Self::open(&self.target, relock, Condition::Unavailable);
        let limit = self.target.open_timeout() + relock;
        let opened = match tokio::time::timeout(limit, open).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "opening a writer session at {} took longer than {limit:?}",
                self.target.label(),
            ))),
        };
        match opened {
            Ok((link, state)) => {
                let attempts = self.backoff.failures() + 1;
                self.backoff.succeeded();
                self.link = Some(link);
                self.state = state;
                self.up.store(true, Ordering::Release);
                let head = self.head();
                self.head_tx.send_replace(head);
                tracing::info!(
                    head,
                    attempts,
                    "writer reconnected: lock re-taken, log end reloaded"
                );
                Ok(())
            }
            Err(e) => {
                let wait = self.backoff.failed();
                if self.backoff.failures() == 1 {
                    tracing::warn!(error = %e, next_in_ms = wait.as_millis() as u64, "writer cannot reconnect yet");
                } else {
                    tracing::debug!(error = %e, next_in_ms = wait.as_millis() as u64, "writer cannot reconnect yet");
                }
                Err(e)
            }
        }
    }

    /// Re-reads the log end on the current session after a failed group; a session
    /// that cannot do that is dropped (the next one reloads).
    async fn reload(&mut self) {
        let Some(link) = &self.link else { return };
        match load_tail(&link.session.client, &self.target).await {
            Ok(state) => self.state = state,
            Err(e) => self.lose(&e),
        }
    }

    /// Writes a group and the answers saved with it (in the same statement, so one
    /// commit), riding out a lost session (see the module docs), publishes the head
    /// and replies.
    async fn commit_group(&mut self, group: Vec<Pending>, saved: Vec<SavedAnswer>) {
        if group.is_empty() && saved.is_empty() {
            return;
        }
        let answers = Answers::of(&saved);
        let started = Instant::now();
        let mut tries = 0;
        let result = loop {
            tries += 1;
            if let Err(e) = self.connected().await {
                break Err(e);
            }
            match self.try_group(&group, &answers).await {
                Ok(done) => break Ok(done),
                Err(Failed::Refused(e)) => {
                    self.reload().await;
                    break Err(e);
                }
                Err(Failed::Lost { error, unsettled }) => {
                    self.lose(&error);
                    if let Some(u) = unsettled {
                        match self.settle(&u).await {
                            Ok(true) => break Ok(u.done),
                            Ok(false) => {}
                            Err(e) => break Err(e),
                        }
                    }
                    if tries >= GROUP_TRIES {
                        break Err(error);
                    }
                }
            }
        };
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                if is_unavailable(&e) {
                    self.lose(&e);
                }
                tracing::warn!(error = %e, requests = group.len(), answers = saved.len(), tries, "group not written");
                reply_all(group, &e);
                for a in saved {
                    let _ = a.reply.send(Err(same_error(&e)));
                }
                return;
            }
        };
        self.state.commit();
        if self.state.heads.len() > MAX_CACHED_HEADS {
            self.state.heads.clear();
        }
        let head = self.head();
        self.head_tx.send_replace(head);
        tracing::debug!(
            requests = group.len(),
            answers = answers.len(),
            rows = done.rows,
            first_position = done.first_position,
            head,
            tries,
            micros = started.elapsed().as_micros() as u64,
            "group committed"
        );
        for ((_, reply), outcome) in group.into_iter().zip(done.outcomes) {
            let _ = reply.send(outcome);
        }
        for a in saved {
            let _ = a.reply.send(Ok(()));
        }
    }

    /// Forgets saved answers (see [`EXPIRE_ANSWERS`]) on the writer session; run
    /// once more on a new session if the session was lost (running it twice is the
    /// same as once).
    async fn expire(&mut self, before: Timestamp, keep: usize) -> Result<u64, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let mut tries = 0;
        loop {
            tries += 1;
            let link = self.connected().await?;
            let client = &link.session.client;
            let done = client
                .query_one(&link.stmts.expire_answers, &[&before.millis(), &keep])
                .await
                .and_then(|r| r.try_get::<_, i64>(0));
            let closed = client.is_closed();
            match done {
                Ok(n) => return Ok(n.max(0) as u64),
                Err(e) => {
                    let error = self.target.error("cannot expire saved answers", &e);
                    if closed || is_unavailable(&error) {
                        self.lose(&error);
                        if tries < GROUP_TRIES {
                            continue;
                        }
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Whether a group whose write lost its answer was committed, asked on a new
    /// session: it holds the writer lock, so the old session is gone and the answer
    /// is final. The new session reloaded the log end either way.
    async fn settle(&mut self, u: &Unsettled) -> Result<bool, StoreError> {
        let position = to_i64(u.first_position)?;
        let link = self.connected().await?;
        let row = link
            .session
            .client
            .query_opt(
                "SELECT event_id FROM events WHERE position = $1",
                &[&position],
            )
            .await
            .map_err(|e| {
                self.target
                    .error("cannot check whether a group committed", &e)
            })?;
        let stored: Option<Uuid> = row.and_then(|r| r.try_get(0).ok());
        let committed = stored.is_some_and(|id| id == *u.first_id.as_uuid());
        tracing::info!(
            first_position = u.first_position,
            committed,
            "settled a group whose commit answer was lost"
        );
        Ok(committed)
    }

    /// One try at a group on the current session.
    async fn try_group(
        &mut self,
        group: &[Pending],
        answers: &Answers<'_>,
    ) -> Result<Done, Failed> {
        // With every stream head cached, plan optimistically without looking ids up:
        // new ids are the common case, and the unique index catches the rest. A
        // refused message (possibly a retry whose own result conflicts with it) or a
        // unique violation sends the group through the look-up path. With uncached
        // heads a round trip is needed anyway, and the id look-up rides along.
        let optimistic = group
            .iter()
            .flat_map(|(rs, _)| rs.iter())
            .all(|r| self.state.heads.contains_key(&r.stream));
        let start = self.state.mark();
        if optimistic {
            let (rows, outcomes) = self.plan_group(group, &mut HashMap::new());
            if outcomes.iter().all(|o| o.is_ok()) {
                let link = self.link.as_ref().ok_or_else(|| lost(self.no_session()))?;
                match Self::write(link, group, &rows, answers).await {
                    Ok(()) => {
                        return Ok(Done {
                            outcomes,
                            rows: rows.len(),
                            first_position: start.next_position(),
                        })
                    }
                    Err(e) if is_unique_violation(&e) => {}
                    Err(e) => return Err(self.write_failed(start, group, rows, outcomes, &e)),
                }
            }
            self.state.restore(start);
        }
        let mut known = match self.prefetch(group).await {
            Ok(k) => k,
            Err(e) => {
                self.state.heads.clear();
                return Err(match e {
                    e @ StoreError::Unavailable(_) => lost(e),
                    e => Failed::Refused(e),
                });
            }
        };
        let (rows, outcomes) = self.plan_group(group, &mut known);
        if !rows.is_empty() || !answers.is_empty() {
            let link = self.link.as_ref().ok_or_else(|| lost(self.no_session()))?;
            if let Err(e) = Self::write(link, group, &rows, answers).await {
                return Err(self.write_failed(start, group, rows, outcomes, &e));
            }
        }
        Ok(Done {
            outcomes,
            rows: rows.len(),
            first_position: start.next_position(),
        })
    }

    /// A write statement failed: nothing of the group is acknowledged yet. On a
    /// live session the statement wrote nothing; a lost session leaves a group
    /// with rows unsettled (one that only saved answers is simply written again:
    /// an upsert twice is the same as once).
    fn write_failed(
        &mut self,
        start: ledger_store::tail::Mark,
        group: &[Pending],
        rows: Vec<Planned>,
        outcomes: Vec<Outcome>,
        e: &tokio_postgres::Error,
    ) -> Failed {
        self.state.restore(start);
        let error = self.target.error("group commit failed", e);
        let closed = self
            .link
            .as_ref()
            .is_none_or(|l| l.session.client.is_closed());
        if !(closed || is_unavailable(&error)) {
            return Failed::Refused(error);
        }
        let unsettled = rows.first().map(|p| Unsettled {
            first_position: p.position,
            first_id: group[p.msg].0[p.req].events[p.ev].event_id,
            done: Done {
                rows: rows.len(),
                first_position: p.position,
                outcomes,
            },
        });
        Failed::Lost {
            // A failure that closed the session is a lost session, whatever it said.
            error: match error {
                e @ StoreError::Unavailable(_) => e,
                e => StoreError::Unavailable(e.to_string()),
            },
            unsettled,
        }
    }

    /// Plans every message of the group in order; a refused message's effects are
    /// undone and it gets its error.
    fn plan_group(
        &mut self,
        group: &[Pending],
        known: &mut HashMap<EventId, Known>,
    ) -> (Vec<Planned>, Vec<Outcome>) {
        let mut rows: Vec<Planned> = Vec::new();
        let mut outcomes = Vec::with_capacity(group.len());
        for (m, (requests, _)) in group.iter().enumerate() {
            let mark = self.state.mark();
            let rows_len = rows.len();
            match self.plan(m, requests, known, &mut rows) {
                Ok(results) => outcomes.push(Ok(results)),
                Err(e) => {
                    self.state.restore(mark);
                    rows.truncate(rows_len);
                    outcomes.push(Err(e));
                }
            }
        }
        (rows, outcomes)
    }

    /// Looks up every event id of the group and the heads of uncached streams, in
    /// two pipelined queries. Returns the stored ids; fills the head cache.
    async fn prefetch(&mut self, group: &[Pending]) -> Result<HashMap<EventId, Known>, StoreError> {
        let requests = || group.iter().flat_map(|(rs, _)| rs.iter());
        let ids: Vec<Uuid> = requests()
            .flat_map(|r| r.events.iter().map(|e| *e.event_id.as_uuid()))
            .collect();
        let mut missing: Vec<&str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for r in requests() {
            if !self.state.heads.contains_key(&r.stream) && seen.insert(&r.stream) {
                missing.push(&r.stream);
            }
        }
        let link = self.link.as_ref().ok_or_else(|| self.no_session())?;
        let client = &link.session.client;
        let id_params: [&(dyn ToSql + Sync); 1] = [&ids];
        let ids_query = client.query(&link.stmts.lookup_ids, &id_params);
        let heads_query = async {
            if missing.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(&link.stmts.lookup_heads, &[&missing]).await
            }
        };
        let (id_rows, head_rows) = tokio::try_join!(ids_query, heads_query)
            .map_err(|e| self.target.error("group look-up failed", &e))?;

        let bad = |what: &str| StoreError::Integrity {
            position: 0,
            reason: format!("stored {what} is malformed"),
        };
        let mut known = HashMap::with_capacity(id_rows.len());
        for row in id_rows {
            let id: Uuid = row.try_get(0).map_err(|_| bad("event id"))?;
            let position: i64 = row.try_get(1).map_err(|_| bad("position"))?;
            let stream: String = row.try_get(2).map_err(|_| bad("stream"))?;
            let version: i64 = row.try_get(3).map_err(|_| bad("version"))?;
            known.insert(
                EventId::from_uuid(id),
                Known {
                    position: position.max(0) as u64,
                    stream,
                    version: version.max(0) as u64,
                },
            );
        }
        let mut fetched: HashMap<String, Head> = HashMap::with_capacity(head_rows.len());
        for row in head_rows {
            let stream: String = row.try_get(0).map_err(|_| bad("stream"))?;
            let version: i64 = row.try_get(1).map_err(|_| bad("version"))?;
            let hash: &[u8] = row.try_get(2).map_err(|_| bad("stream hash"))?;
            let hash: Hash32 = hash.try_into().map_err(|_| bad("stream hash"))?;
            fetched.insert(
                stream,
                Head {
                    version: version.max(0) as u64,
                    hash,
                },
            );
        }
        // Cached without undo entries: it is the committed state either way.
        for s in missing {
            let head = fetched.remove(s).unwrap_or(Head::EMPTY);
            self.state.heads.insert(s.to_owned(), head);
        }
        Ok(known)
    }

    /// Plans one message (all its requests, in order) or refuses it whole.
    fn plan(
        &mut self,
        m: usize,
        requests: &[AppendRequest],
        known: &mut HashMap<EventId, Known>,
        rows: &mut Vec<Planned>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        let mut results = Vec::with_capacity(requests.len());
        // Ids planned by earlier requests of this message; merged into `known` only
        // if the whole message is accepted.
        let mut planned_ids: HashSet<EventId> = HashSet::new();
        let first_row = rows.len();
        for (ri, r) in requests.iter().enumerate() {
            match check_ids(r, known, &planned_ids)? {
                IdCheck::Retry(res) => {
                    results.push(res);
                    continue;
                }
                IdCheck::New => {}
            }
            planned_ids.extend(r.events.iter().map(|e| e.event_id));
            let head = self
                .state
                .heads
                .get(&r.stream)
                .copied()
                .unwrap_or(Head::EMPTY);
            let (planned, result) = self.state.plan(r, head)?;
            rows.extend(planned.into_iter().enumerate().map(|(ei, p)| Planned {
                msg: m,
                req: ri,
                ev: ei,
                position: p.position,
                version: p.version,
                hash: p.hash,
                log_hash: p.log_hash,
            }));
            results.push(result);
        }
        // Accepted: later messages of the group see these ids as stored.
        for p in &rows[first_row..] {
            let r = &requests[p.req];
            known.insert(
                r.events[p.ev].event_id,
                Known {
                    position: p.position,
                    stream: r.stream.clone(),
                    version: p.version,
                },
            );
        }
        Ok(results)
    }

    /// Writes the planned rows and the saved answers in one statement (its own
    /// transaction and commit); a group large enough for `COPY` writes both in one
    /// explicit transaction instead.
    async fn write(
        link: &Link,
        group: &[Pending],
        rows: &[Planned],
        answers: &Answers<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        let client = &link.session.client;
        if rows.is_empty() {
            if !answers.is_empty() {
                client
                    .execute(&link.stmts.save_answers, &answers.params())
                    .await?;
            }
            return Ok(());
        }
        let req = |p: &Planned| &group[p.msg].0[p.req];
        let bytes: usize = rows.iter().map(|p| req(p).events[p.ev].payload.len()).sum();
        if rows.len() >= COPY_MIN_ROWS || bytes >= COPY_MIN_BYTES {
            if answers.is_empty() {
                return Self::copy(client, group, rows).await;
            }
            client.batch_execute("BEGIN").await?;
            let written = async {
                Self::copy(client, group, rows).await?;
                client
                    .execute(&link.stmts.save_answers, &answers.params())
                    .await?;
                client.batch_execute("COMMIT").await
            }
            .await;
            if written.is_err() && !client.is_closed() {
                // Ends the failed transaction (a warning if COMMIT already did).
                let _ = client.batch_execute("ROLLBACK").await;
            }
            return written;
        }
        let mut positions = Vec::with_capacity(rows.len());
        let mut streams = Vec::with_capacity(rows.len());
        let mut versions = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        let mut types = Vec::with_capacity(rows.len());
        let mut schemas = Vec::with_capacity(rows.len());
        let mut payloads = Vec::with_capacity(rows.len());
        let mut recorded = Vec::with_capacity(rows.len());
        let mut hashes = Vec::with_capacity(rows.len());
        let mut log_hashes = Vec::with_capacity(rows.len());
        for p in rows {
            let r = req(p);
            let e = &r.events[p.ev];
            // Positions and versions are < 2^63: they count stored rows.
            positions.push(p.position as i64);
            streams.push(r.stream.as_str());
            versions.push(p.version as i64);
            ids.push(*e.event_id.as_uuid());
            types.push(e.event_type.as_str());
            schemas.push(i32::from(e.schema_version));
            payloads.push(e.payload.as_slice());
            recorded.push(e.recorded_at.millis());
            hashes.push(&p.hash[..]);
            log_hashes.push(&p.log_hash[..]);
        }
        let params: [&(dyn ToSql + Sync); 10] = [
            &positions,
            &streams,
            &versions,
            &ids,
            &types,
            &schemas,
            &payloads,
            &recorded,
            &hashes,
            &log_hashes,
        ];
        if answers.is_empty() {
            client.execute(&link.stmts.insert, &params).await?;
        } else {
            let both: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .chain(answers.params().iter())
                .copied()
                .collect();
            client
                .execute(&link.stmts.insert_with_answers, &both)
                .await?;
        }
        Ok(())
    }

    async fn copy(
        client: &Client,
        group: &[Pending],
        rows: &[Planned],
    ) -> Result<(), tokio_postgres::Error> {
        let sink = client
            .copy_in(&format!(
                "COPY events ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &COLUMN_TYPES);
        let mut writer = std::pin::pin!(writer);
        for p in rows {
            let r = &group[p.msg].0[p.req];
            let e = &r.events[p.ev];
            let position = p.position as i64;
            let version = p.version as i64;
            let schema_version = i32::from(e.schema_version);
            let recorded_at = e.recorded_at.millis();
            let hash = &p.hash[..];
            let log_hash = &p.log_hash[..];
            writer
                .as_mut()
                .write(&[
                    &position,
                    &r.stream,
                    &version,
                    e.event_id.as_uuid(),
                    &e.event_type,
                    &schema_version,
                    &e.payload,
                    &recorded_at,
                    &hash,
                    &log_hash,
                ])
                .await?;
        }
        writer.finish().await?;
        Ok(())
    }
}

/// Looks the request's event ids up among stored ids (and ids planned earlier in
/// the group): all new, or a faithful retry (all stored, same stream, consecutive
/// versions in order), or refused.
fn check_ids(
    r: &AppendRequest,
    known: &HashMap<EventId, Known>,
    planned_in_message: &HashSet<EventId>,
) -> Result<IdCheck, StoreError> {
    let mut found: Vec<&Known> = Vec::new();
    let mut first_found: Option<EventId> = None;
    let mut foreign = false;
    for e in &r.events {
        if planned_in_message.contains(&e.event_id) {
            return Err(StoreError::DuplicateEventId {
                event_id: e.event_id,
            });
        }
        if let Some(k) = known.get(&e.event_id) {
            if k.stream != r.stream {
                foreign = true;
            }
            first_found.get_or_insert(e.event_id);
            found.push(k);
        }
    }
    let Some(event_id) = first_found else {
        return Ok(IdCheck::New);
    };
    let consecutive = found.windows(2).all(|w| w[1].version == w[0].version + 1);
    if foreign || found.len() != r.events.len() || !consecutive {
        return Err(StoreError::DuplicateEventId { event_id });
    }
    let (first, last) = (found[0], found[found.len() - 1]);
    Ok(IdCheck::Retry(AppendResult {
        first_position: first.position,
        last_position: last.position,
        stream_version: last.version,
        duplicate: true,
    }))
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

fn is_unavailable(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_))
}

fn lost(error: StoreError) -> Failed {
    Failed::Lost {
        error,
        unsettled: None,
    }
}

fn reply_all(group: Vec<Pending>, e: &StoreError) {
    for (_, reply) in group {
        let _ = reply.send(Err(same_error(e)));
    }
}

/// A copy of a group-wide error for each of its messages (`StoreError` is not
/// `Clone`). Exhaustive, so that a new variant is not silently turned into another.
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict {
            stream,
            expected,
            actual,
        } => StoreError::Conflict {
            stream: stream.clone(),
            expected: *expected,
            actual: *actual,
        },
        StoreError::DuplicateEventId { event_id } => StoreError::DuplicateEventId {
            event_id: *event_id,
        },
        StoreError::Integrity { position, reason } => StoreError::Integrity {
            position: *position,
            reason: reason.clone(),
        },
        StoreError::Invalid(m) => StoreError::Invalid(m.clone()),
        StoreError::Backend(m) => StoreError::Backend(m.clone()),
        StoreError::Closed => StoreError::Closed,
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Full => StoreError::Full,
    }
}

fn refuse_closed(m: Msg) {
    match m {
        Msg::Append { reply, .. } => {
            let _ = reply.send(Err(StoreError::Closed));
        }
        Msg::Remember(a) => {
            let _ = a.reply.send(Err(StoreError::Closed));
        }
        Msg::Expire { reply, .. } => {
            let _ = reply.send(Err(StoreError::Closed));
        }
        Msg::Close { reply } => {
            let _ = reply.send(());
        }
    }
}
