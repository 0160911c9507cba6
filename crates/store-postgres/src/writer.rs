//! The single writer task and its group commit.
//!
//! The writer owns the only write connection (holding the writer lock). It waits for
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
//! the group behaves exactly as if its messages were committed one by one. Only a
//! storage error while writing fails the whole group; then the in-memory state is
//! reloaded from the database (reconnecting and re-taking the lock if the connection
//! died), since a commit whose answer was lost may or may not have happened.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_store::tail::{LogTail, StreamHead as Head};
use ledger_store::{AppendRequest, AppendResult, Hash32, Position, StoreError, Version, ZERO_HASH};
use ledger_types::EventId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use crate::schema;
use crate::target::Target;

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

pub(crate) enum Msg {
    /// One atomic unit: a single `append` or a whole `append_batch`.
    Append {
        requests: Vec<AppendRequest>,
        reply: AppendReply,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Append { .. } => "Append",
            Msg::Close { .. } => "Close",
        })
    }
}

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
    lookup_ids: Statement,
    lookup_heads: Statement,
}

/// The writer: one connection (holding the lock), its prepared statements, and the
/// in-memory log end and stream heads.
pub(crate) struct Writer {
    target: Arc<Target>,
    lock_wait: Duration,
    client: Client,
    conn_task: JoinHandle<()>,
    stmts: Statements,
    state: LogTail,
    /// The in-memory state may disagree with the database (a write failed and the
    /// reload did not succeed): reconnect and reload before the next group.
    stale: bool,
    head_tx: watch::Sender<Position>,
}

impl Writer {
    /// Connects, takes the lock, migrates, loads the log end and prepares statements.
    pub(crate) async fn start(
        target: Arc<Target>,
        lock_wait: Duration,
        head_tx: watch::Sender<Position>,
    ) -> Result<Self, StoreError> {
        let (client, conn_task, stmts, state) = Self::open(&target, lock_wait).await?;
        head_tx.send_replace(state.next_position - 1);
        Ok(Self {
            target,
            lock_wait,
            client,
            conn_task,
            stmts,
            state,
            stale: false,
            head_tx,
        })
    }

    async fn open(
        target: &Target,
        lock_wait: Duration,
    ) -> Result<(Client, JoinHandle<()>, Statements, LogTail), StoreError> {
        let (client, conn_task) = target.connect("writer").await?;
        let opened = async {
            schema::prepare_writer(&client, target, lock_wait).await?;
            let prep = |sql: String| {
                let client = &client;
                async move {
                    client
                        .prepare(&sql)
                        .await
                        .map_err(|e| target.error("cannot prepare a writer statement", &e))
                }
            };
            let stmts = Statements {
                insert: prep(format!(
                    "INSERT INTO events ({COLUMNS}) SELECT * FROM UNNEST(
                        $1::int8[], $2::text[], $3::int8[], $4::uuid[], $5::text[],
                        $6::int4[], $7::bytea[], $8::int8[], $9::bytea[], $10::bytea[])"
                ))
                .await?,
                lookup_ids: prep(
                    "SELECT event_id, position, stream, version FROM events
                     WHERE event_id = ANY($1::uuid[])"
                        .into(),
                )
                .await?,
                lookup_heads: prep(
                    "SELECT s.stream, e.version, e.hash FROM UNNEST($1::text[]) AS s(stream)
                     CROSS JOIN LATERAL (SELECT version, hash FROM events
                        WHERE events.stream = s.stream ORDER BY version DESC LIMIT 1) e"
                        .into(),
                )
                .await?,
            };
            let state = load_tail(&client, target).await?;
            Ok::<_, StoreError>((stmts, state))
        }
        .await;
        match opened {
            Ok((stmts, state)) => Ok((client, conn_task, stmts, state)),
            Err(e) => {
                // Close the connection before reporting: it may hold nothing, but a
                // caller retrying at once must not find a lingering session.
                drop(client);
                let _ = conn_task.await;
                Err(e)
            }
        }
    }

    pub(crate) fn head(&self) -> Position {
        self.state.next_position - 1
    }

    /// The task body: runs until every sender is gone or `Close` arrives, then closes
    /// the connection (releasing the writer lock).
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut pending: Vec<(Vec<AppendRequest>, AppendReply)> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut queued = vec![first];
            let (mut events, mut bytes) = (0usize, 0usize);
            while events < MAX_GROUP_EVENTS && bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(m) => {
                        if let Msg::Append { requests, .. } = &m {
                            for r in requests {
                                events += r.events.len();
                                bytes += r.events.iter().map(|e| e.payload.len()).sum::<usize>();
                            }
                        }
                        queued.push(m);
                    }
                    Err(_) => break,
                }
            }
            for msg in queued {
                match msg {
                    Msg::Append { requests, reply } => pending.push((requests, reply)),
                    Msg::Close { reply } => {
                        self.commit_group(std::mem::take(&mut pending)).await;
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
            self.commit_group(std::mem::take(&mut pending)).await;
        }
        self.shutdown().await;
    }

    async fn shutdown(self) {
        let Self {
            client, conn_task, ..
        } = self;
        // Release the lock explicitly: the server ends a closed session
        // asynchronously, so a successor connecting right after `close` returns
        // could otherwise still find it held.
        if !client.is_closed() {
            let unlocked = client
                .query_one(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&schema::WRITER_LOCK.0, &schema::WRITER_LOCK.1],
                )
                .await;
            if let Err(e) = unlocked {
                tracing::debug!(error = %crate::target::describe(&e), "writer lock release failed; it goes with the session");
            }
        }
        drop(client);
        let _ = conn_task.await;
        tracing::debug!("postgres event store writer stopped");
    }

    /// Replaces a dead connection (taking the lock again) and reloads the state.
    async fn recover(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            tracing::warn!(database = %self.target.label(), "writer connection lost; reconnecting");
            let (client, conn_task, stmts, state) =
                Self::open(&self.target, self.lock_wait).await?;
            let old = std::mem::replace(&mut self.conn_task, conn_task);
            old.abort();
            self.client = client;
            self.stmts = stmts;
            self.state = state;
        } else {
            self.state = load_tail(&self.client, &self.target).await?;
        }
        self.stale = false;
        self.head_tx.send_replace(self.head());
        Ok(())
    }

    /// Plans a group, writes it in one statement, publishes the head, replies.
    async fn commit_group(&mut self, group: Vec<(Vec<AppendRequest>, AppendReply)>) {
        if group.is_empty() {
            return;
        }
        let started = Instant::now();
        if self.stale || self.client.is_closed() {
            if let Err(e) = self.recover().await {
                tracing::warn!(error = %e, "writer could not recover");
                reply_all(group, &e);
                return;
            }
        }
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
        let mut written = false;
        let (mut rows, mut outcomes) = (Vec::new(), Vec::new());
        if optimistic {
            (rows, outcomes) = self.plan_group(&group, &mut HashMap::new());
            if outcomes.iter().all(|o| o.is_ok()) {
                match self.insert(&group, &rows).await {
                    Ok(()) => written = true,
                    Err(e) if is_unique_violation(&e) => {}
                    Err(e) => return self.fail_group(group, rows.len(), &e).await,
                }
            }
            if !written {
                self.state.restore(start);
            }
        }
        if !written {
            let mut known = match self.prefetch(&group).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(error = %e, requests = group.len(), "group look-ups failed");
                    self.state.heads.clear();
                    reply_all(group, &e);
                    return;
                }
            };
            (rows, outcomes) = self.plan_group(&group, &mut known);
            if !rows.is_empty() {
                if let Err(e) = self.insert(&group, &rows).await {
                    return self.fail_group(group, rows.len(), &e).await;
                }
            }
        }
        self.state.commit();
        if self.state.heads.len() > MAX_CACHED_HEADS {
            self.state.heads.clear();
        }
        let head = self.head();
        self.head_tx.send_replace(head);
        tracing::debug!(
            requests = group.len(),
            rows = rows.len(),
            first_position = start.next_position(),
            head,
            micros = started.elapsed().as_micros() as u64,
            "group committed"
        );
        for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }

    /// Plans every message of the group in order; a refused message's effects are
    /// undone and it gets its error.
    #[allow(clippy::type_complexity)]
    fn plan_group(
        &mut self,
        group: &[(Vec<AppendRequest>, AppendReply)],
        known: &mut HashMap<EventId, Known>,
    ) -> (Vec<Planned>, Vec<Result<Vec<AppendResult>, StoreError>>) {
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

    /// A write failed: nothing of the group is acknowledged; the in-memory state is
    /// reloaded from the database (now, or before the next group).
    async fn fail_group(
        &mut self,
        group: Vec<(Vec<AppendRequest>, AppendReply)>,
        rows: usize,
        e: &tokio_postgres::Error,
    ) {
        let e = self.target.error("group commit failed", e);
        tracing::warn!(error = %e, requests = group.len(), rows, "group commit failed");
        self.state.commit();
        self.state.heads.clear();
        self.stale = true;
        if !self.client.is_closed() {
            // The statement failed, so nothing was committed; reload anyway so the
            // state matches the database exactly.
            match load_tail(&self.client, &self.target).await {
                Ok(s) => {
                    self.state = s;
                    self.stale = false;
                }
                Err(e) => tracing::warn!(error = %e, "could not reload writer state"),
            }
        }
        reply_all(group, &e);
    }

    /// Looks up every event id of the group and the heads of uncached streams, in
    /// two pipelined queries. Returns the stored ids; fills the head cache.
    async fn prefetch(
        &mut self,
        group: &[(Vec<AppendRequest>, AppendReply)],
    ) -> Result<HashMap<EventId, Known>, StoreError> {
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
        let client = &self.client;
        let id_params: [&(dyn ToSql + Sync); 1] = [&ids];
        let ids_query = client.query(&self.stmts.lookup_ids, &id_params);
        let heads_query = async {
            if missing.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(&self.stmts.lookup_heads, &[&missing]).await
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

    /// Writes the planned rows in one statement (its own transaction and commit).
    async fn insert(
        &self,
        group: &[(Vec<AppendRequest>, AppendReply)],
        rows: &[Planned],
    ) -> Result<(), tokio_postgres::Error> {
        let req = |p: &Planned| &group[p.msg].0[p.req];
        let bytes: usize = rows.iter().map(|p| req(p).events[p.ev].payload.len()).sum();
        if rows.len() >= COPY_MIN_ROWS || bytes >= COPY_MIN_BYTES {
            return self.copy(group, rows).await;
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
        self.client.execute(&self.stmts.insert, &params).await?;
        Ok(())
    }

    async fn copy(
        &self,
        group: &[(Vec<AppendRequest>, AppendReply)],
        rows: &[Planned],
    ) -> Result<(), tokio_postgres::Error> {
        let sink = self
            .client
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

fn reply_all(group: Vec<(Vec<AppendRequest>, AppendReply)>, e: &StoreError) {
    for (_, reply) in group {
        let _ = reply.send(Err(match e {
            StoreError::Integrity { position, reason } => StoreError::Integrity {
                position: *position,
                reason: reason.clone(),
            },
            StoreError::Closed => StoreError::Closed,
            StoreError::Backend(m) => StoreError::Backend(m.clone()),
            other => StoreError::Backend(other.to_string()),
        }));
    }
}

fn refuse_closed(m: Msg) {
    match m {
        Msg::Append { reply, .. } => {
            let _ = reply.send(Err(StoreError::Closed));
        }
        Msg::Close { reply } => {
            let _ = reply.send(());
        }
    }
}
