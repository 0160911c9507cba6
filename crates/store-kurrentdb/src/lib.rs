//! The clustered event store: the ledger's log in a KurrentDB (EventStoreDB)
//! cluster, through the official Rust client (the `kurrentdb` crate).
//!
//! This crate owns [`KurrentStore`], an [`EventStore`] over KurrentDB, and the
//! mapping between the ledger's records and KurrentDB events (`mapping.rs`). It
//! must not interpret event payloads (they are opaque, already sealed bytes), must
//! never log them or the connection string (which may carry credentials), and must
//! not know about commands, keys, projections or HTTP: keys and projections stay
//! in SQLite or PostgreSQL, wired by the binary. Design and limits: ADR 0010.
//!
//! # How the contract maps onto KurrentDB
//!
//! - Each ledger stream `S` is the KurrentDB stream `{namespace}-S` (default
//!   namespace `ledger`); the event id is the KurrentDB event id; the payload is the
//!   event data (binary); schema version, recorded-at, our position and both chain
//!   hashes are the event's custom metadata (JSON).
//! - **One serialized writer** per store: a task takes one message (an `append`
//!   or a whole `append_batch`) at a time, plans it against an in-memory view of
//!   the log (`state.rs`: next position, last log hash, stream heads, every event
//!   id), appends each request to its stream with the *exact* current revision
//!   (never `Any`, so the server refuses anything another process slipped in),
//!   and publishes the new head once the whole message is stored. Positions are
//!   therefore gap-free and in `$all` order, and the log chain is computed
//!   without coordination, as in the SQLite and PostgreSQL backends.
//! - The view is rebuilt at start by one filtered read of `$all` (server-side
//!   prefix filter), verifying both chains; it costs memory per event and a start
//!   time proportional to the log (ADR 0010 gives the numbers and the limits).
//! - `read_all` seeks `$all` from a remembered position and de-duplicates by our
//!   position; `read_stream` reads the KurrentDB stream forwards. Both verify the
//!   chains and never return events beyond the published head.
//! - A follower task subscribes to `$all` (same filter): events of this namespace
//!   written by another process are taken in when they continue the log (so a
//!   read-only process follows a writer and `wait_for_head` wakes up), and a
//!   position held by two events (two writers racing) fences the store: it
//!   refuses every further append. One writer per namespace is the rule.
//! - `append_batch` is checked as a whole (conflicts, ids) before anything is
//!   written, then written stream by stream: KurrentDB has no multi-stream
//!   transaction. A failure mid-batch leaves a prefix written; retrying the batch
//!   completes it (the written part is recognised as a faithful retry).

mod backend;
mod mapping;
mod state;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use mapping::{Meta, DEFAULT_NAMESPACE, MAX_NAMESPACE_BYTES};

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use ledger_store::chain::{log_link_ok, stream_link_ok};
use ledger_store::{
    AppendRequest, AppendResult, EventStore, Hash32, Position, RecordedEvent, StoreError, Version,
    ZERO_HASH,
};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::backend::{AllPos, Backend, KurrentBackend};
use crate::mapping::{
    conflict, decode, encode, encoded_size_estimate, map_error, stream_state_for_current,
    version_of_current, Decoded, Names,
};
use crate::state::{LogState, Step};

/// Most events accepted in one `append` or `append_batch` call.
pub use ledger_store::MAX_EVENTS_PER_CALL;
/// Longest accepted event type, in bytes.
pub use ledger_store::MAX_EVENT_TYPE_BYTES;
/// Longest accepted stream name, in bytes.
pub use ledger_store::MAX_STREAM_NAME_BYTES;
/// KurrentDB's default `MaxAppendSize`: one append to one stream must fit.
pub const DEFAULT_MAX_APPEND_BYTES: usize = 1024 * 1024;

/// Events per read request (scan at start, `read_all`, `read_stream`).
const PAGE: usize = 4096;
/// Queued messages before `append` callers wait (backpressure).
const QUEUE_CAPACITY: usize = 1024;

/// The URL schemes of KurrentDB connection strings.
pub const SCHEMES: [&str; 6] = [
    "esdb",
    "esdb+discover",
    "kurrentdb",
    "kurrentdb+discover",
    "kdb",
    "kdb+discover",
];

/// Options beyond the connection string.
#[derive(Debug, Clone)]
pub struct KurrentOptions {
    /// Streams are named `{namespace}-{stream}`; one ledger per namespace.
    pub namespace: String,
    /// Largest append to one stream, payloads plus metadata (the server's
    /// `MaxAppendSize`); larger requests are refused as `Invalid`.
    pub max_append_bytes: usize,
}

impl Default for KurrentOptions {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
        }
    }
}

/// True when `url` is a KurrentDB connection string (`esdb://`, `kurrentdb://`, ...).
pub fn is_kurrentdb_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// Connects to a KurrentDB cluster (`esdb://`, `esdb+discover://`, `kurrentdb://`,
/// `kurrentdb+discover://`, `kdb://`, `kdb+discover://`) with the default namespace,
/// and rebuilds the writer's view of the log.
pub async fn connect(url: &str) -> Result<KurrentStore, StoreError> {
    connect_with(url, KurrentOptions::default()).await
}

/// [`connect`] with options.
pub async fn connect_with(url: &str, options: KurrentOptions) -> Result<KurrentStore, StoreError> {
    if !is_kurrentdb_url(url) {
        return Err(StoreError::Invalid(format!(
            "a KurrentDB store URL starts with one of {}",
            SCHEMES.map(|s| format!("{s}://")).join(", ")
        )));
    }
    // Parse errors may quote the string, credentials included: never pass them on.
    let settings: kurrentdb::ClientSettings = url
        .parse()
        .map_err(|_| StoreError::Invalid("invalid KurrentDB connection string".into()))?;
    let client = kurrentdb::Client::new(settings)
        .map_err(|_| StoreError::Backend("kurrentdb: cannot create the client".into()))?;
    KurrentStore::open(Arc::new(KurrentBackend::new(client)), options).await
}

struct Shared {
    names: Names,
    backend: Arc<dyn Backend>,
    state: Mutex<LogState>,
    head_tx: watch::Sender<Position>,
    /// Set when two writers were detected; appends are refused from then on.
    fenced: Mutex<Option<String>>,
    /// Written into every event's metadata, to tell our writes from others'.
    writer_id: Uuid,
    max_append_bytes: usize,
}

type Reply = oneshot::Sender<Result<Vec<AppendResult>, StoreError>>;

struct Msg {
    requests: Vec<AppendRequest>,
    reply: Reply,
}

/// An [`EventStore`] over a KurrentDB cluster. See the crate documentation.
///
/// Dropping it stops the writer after the messages already queued, and the
/// follower.
pub struct KurrentStore {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
    head_rx: watch::Receiver<Position>,
    follower: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for KurrentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KurrentStore")
            .field("namespace", &self.shared.names.namespace())
            .field("head", &*self.head_rx.borrow())
            .finish()
    }
}

impl Drop for KurrentStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl KurrentStore {
    pub(crate) async fn open(
        backend: Arc<dyn Backend>,
        options: KurrentOptions,
    ) -> Result<Self, StoreError> {
        let names = Names::new(&options.namespace)?;
        let started = std::time::Instant::now();
        let state = scan(&*backend, &names).await?;
        let head = state.head();
        tracing::info!(
            namespace = names.namespace(),
            head,
            streams = state.stream_count(),
            millis = started.elapsed().as_millis() as u64,
            "kurrentdb event store opened"
        );
        let from = (head > 0).then(|| state.floor());
        let (head_tx, head_rx) = watch::channel(head);
        let shared = Arc::new(Shared {
            names,
            backend,
            state: Mutex::new(state),
            head_tx,
            fenced: Mutex::new(None),
            writer_id: Uuid::new_v4(),
            max_append_bytes: options.max_append_bytes,
        });
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run_writer(shared.clone(), rx));
        let follower = tokio::spawn(run_follower(Arc::downgrade(&shared), from));
        Ok(Self {
            shared,
            tx,
            head_rx,
            follower,
        })
    }

    /// The namespace this store writes (stream prefix `{namespace}-`).
    pub fn namespace(&self) -> &str {
        self.shared.names.namespace()
    }

    /// Why appends are refused, if two writers were detected.
    pub fn fenced(&self) -> Option<String> {
        lock(&self.shared.fenced).clone()
    }

    async fn submit(&self, requests: Vec<AppendRequest>) -> Result<Vec<AppendResult>, StoreError> {
        validate(&requests, self.shared.max_append_bytes)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg { requests, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Rebuilds the view of the log from one filtered read of `$all`.
async fn scan(backend: &dyn Backend, names: &Names) -> Result<LogState, StoreError> {
    let mut state = LogState::default();
    let mut from: Option<AllPos> = None;
    loop {
        let page = backend
            .read_all(from, names.data_prefix(), PAGE)
            .await
            .map_err(|e| map_error(&e))?;
        let full = page.len() >= PAGE;
        let mut progressed = false;
        for raw in page {
            if from.is_some_and(|f| raw.all <= f) {
                continue;
            }
            progressed = true;
            from = Some(raw.all);
            if let Decoded::Ours(r, _) = decode(names, &raw)? {
                state.ingest(&r, raw.all)?;
            }
            state.raise_floor(raw.all);
        }
        if !full || !progressed {
            return Ok(state);
        }
    }
}

impl Shared {
    fn publish(&self) {
        let head = lock(&self.state).head();
        self.head_tx.send_if_modified(|h| {
            let changed = *h != head;
            *h = head;
            changed
        });
    }

    fn fence(&self, e: &StoreError) {
        let mut f = lock(&self.fenced);
        if f.is_none() {
            tracing::error!(
                namespace = self.names.namespace(),
                error = %e,
                "another writer appended to this ledger namespace; refusing further appends"
            );
            *f = Some(format!(
                "kurrentdb: appends refused: two writers detected on namespace {} ({e}); stop the other writer, then restart",
                self.names.namespace()
            ));
        }
    }

    /// Takes in every stored record of ours after the known floor (after an error
    /// whose outcome is unknown, or a refused revision).
    async fn resync(&self) -> Result<(), StoreError> {
        let mut from = lock(&self.state).floor();
        loop {
            let page = self
                .backend
                .read_all(Some(from), self.names.data_prefix(), PAGE)
                .await
                .map_err(|e| map_error(&e))?;
            let full = page.len() >= PAGE;
            let mut progressed = false;
            for raw in page {
                if raw.all <= from && from != AllPos::default() {
                    continue;
                }
                progressed = true;
                from = raw.all;
                if let Decoded::Ours(r, _) = decode(&self.names, &raw)? {
                    let mut st = lock(&self.state);
                    if let Err(e) = st.ingest(&r, raw.all) {
                        drop(st);
                        self.fence(&e);
                        return Err(e);
                    }
                    st.raise_floor(raw.all);
                }
            }
            if !full || !progressed {
                self.publish();
                return Ok(());
            }
        }
    }

    async fn append_message(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<AppendResult>, StoreError> {
        let mut resynced = false;
        'plan: loop {
            if let Some(reason) = lock(&self.fenced).clone() {
                return Err(StoreError::Backend(reason));
            }
            let steps = lock(&self.state).plan(requests)?;
            let mut results = Vec::with_capacity(steps.len());
            let mut wrote = false;
            for (i, step) in steps.into_iter().enumerate() {
                let (stream, current, records, result) = match step {
                    Step::Retry(r) => {
                        results.push(r);
                        continue;
                    }
                    Step::Write {
                        stream,
                        current,
                        records,
                        result,
                    } => (stream, current, records, result),
                };
                let events = records
                    .iter()
                    .map(|r| encode(self.names.namespace(), self.writer_id, r))
                    .collect();
                let outcome = self
                    .backend
                    .append(
                        &self.names.kurrent_stream(&stream),
                        stream_state_for_current(current),
                        events,
                    )
                    .await;
                match outcome {
                    Ok(pos) => {
                        let mut st = lock(&self.state);
                        let seek = st.floor();
                        for r in &records {
                            if let Err(e) = st.ingest(r, seek) {
                                drop(st);
                                self.fence(&e);
                                self.publish();
                                return Err(e);
                            }
                        }
                        st.raise_floor(pos);
                        wrote = true;
                        results.push(result);
                    }
                    // Our view is behind the server: a write whose answer was lost,
                    // or another process. Catch up and plan again, once.
                    Err(kurrentdb::Error::WrongExpectedVersion { .. }) if !wrote && !resynced => {
                        self.resync().await?;
                        resynced = true;
                        continue 'plan;
                    }
                    Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                        self.publish();
                        let _ = self.resync().await;
                        return Err(conflict(
                            &stream,
                            requests[i].expected,
                            version_of_current(current),
                        ));
                    }
                    Err(e) => {
                        self.publish();
                        let _ = self.resync().await;
                        let StoreError::Backend(m) = map_error(&e) else {
                            return Err(map_error(&e));
                        };
                        return Err(StoreError::Backend(if wrote {
                            format!("{m} (the batch was partly written: retry it to complete it)")
                        } else {
                            m
                        }));
                    }
                }
            }
            self.publish();
            return Ok(results);
        }
    }
}

async fn run_writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<Msg>) {
    while let Some(Msg { requests, reply }) = rx.recv().await {
        let r = shared.append_message(&requests).await;
        let _ = reply.send(r);
    }
    tracing::debug!("kurrentdb writer stopped");
}

/// Follows `$all` for this namespace's events written by other processes.
async fn run_follower(shared: std::sync::Weak<Shared>, mut from: Option<AllPos>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let backend = s.backend.clone();
        let prefix = s.names.data_prefix().to_owned();
        drop(s);
        let mut sub = backend.subscribe_all(from, &prefix).await;
        loop {
            let raw = match sub.next().await {
                Ok(raw) => raw,
                Err(e) => {
                    tracing::warn!(error = %map_error(&e), "kurrentdb subscription dropped; resubscribing");
                    break;
                }
            };
            let Some(s) = shared.upgrade() else { return };
            from = Some(raw.all);
            match decode(&s.names, &raw) {
                Ok(Decoded::Ours(r, writer)) if writer != s.writer_id => {
                    let added = {
                        let mut st = lock(&s.state);
                        match st.ingest(&r, raw.all) {
                            Ok(i) => {
                                st.raise_floor(raw.all);
                                Ok(i == state::Ingest::Added)
                            }
                            Err(e) => Err(e),
                        }
                    };
                    match added {
                        Ok(true) => s.publish(),
                        Ok(false) => {}
                        Err(e) => s.fence(&e),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "undecodable event in the ledger namespace"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Rejects requests that the store cannot accept, before they reach the writer.
fn validate(requests: &[AppendRequest], max_append_bytes: usize) -> Result<(), StoreError> {
    ledger_store::validate_appends(requests, |e| {
        e.event_type
            .starts_with('$')
            .then(|| "event types starting with '$' are KurrentDB's".to_owned())
    })?;
    for r in requests {
        let bytes: usize = r.events.iter().map(encoded_size_estimate).sum();
        if bytes > max_append_bytes {
            return Err(StoreError::Invalid(format!(
                "one append to one stream holds at most {max_append_bytes} bytes with metadata (KurrentDB's MaxAppendSize)"
            )));
        }
    }
    Ok(())
}

fn integrity(position: Position, reason: impl Into<String>) -> StoreError {
    StoreError::Integrity {
        position,
        reason: reason.into(),
    }
}

#[async_trait]
impl EventStore for KurrentStore {
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
        let head = *self.head_rx.borrow();
        let from = from_version.max(1);
        let names = &self.shared.names;
        let kstream = names.kurrent_stream(stream);
        // From version 2 on, read one event more: its hash anchors the chain.
        let mut revision = from.saturating_sub(2);
        let mut anchor_pending = from > 1;
        let mut prev: Hash32 = ZERO_HASH;
        let mut next_version = from;
        let mut out = Vec::new();
        loop {
            let page = self
                .shared
                .backend
                .read_stream(&kstream, revision, PAGE)
                .await
                .map_err(|e| map_error(&e))?;
            let n = page.len();
            for raw in page {
                let r = match decode(names, &raw)? {
                    Decoded::Ours(r, _) => r,
                    Decoded::NotOurs => {
                        return Err(integrity(
                            0,
                            format!("stream {stream} holds an event the ledger did not write"),
                        ))
                    }
                };
                if anchor_pending {
                    anchor_pending = false;
                    if r.version == from - 1 {
                        prev = r.hash;
                        continue;
                    }
                }
                if r.position > head {
                    return Ok(out);
                }
                if r.version != next_version {
                    return Err(integrity(
                        r.position,
                        format!(
                            "stream {stream}: version {} where {next_version} was expected",
                            r.version
                        ),
                    ));
                }
                if !stream_link_ok(&r, &prev) {
                    return Err(integrity(
                        r.position,
                        format!(
                            "stream {stream}: hash does not verify at version {}",
                            r.version
                        ),
                    ));
                }
                prev = r.hash;
                next_version += 1;
                out.push(r);
            }
            if n < PAGE {
                return Ok(out);
            }
            revision += n as u64;
        }
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = *self.head_rx.borrow();
        if limit == 0 || after >= head {
            return Ok(Vec::new());
        }
        let want = usize::try_from(head - after)
            .unwrap_or(usize::MAX)
            .min(limit);
        let (seek, mut prev) = {
            let st = lock(&self.shared.state);
            match (st.seek_for(after + 1), st.log_hash_at(after)) {
                (Some(s), Some(h)) => (s, h),
                _ => return Err(integrity(after + 1, "position missing from the log view")),
            }
        };
        let names = &self.shared.names;
        let mut from = seek;
        let mut first = true;
        let mut out: Vec<RecordedEvent> = Vec::with_capacity(want);
        while out.len() < want {
            let ask = (want - out.len()).min(PAGE) + 1;
            let page = self
                .shared
                .backend
                .read_all(Some(from), names.data_prefix(), ask)
                .await
                .map_err(|e| map_error(&e))?;
            let n = page.len();
            let mut progressed = false;
            for raw in page {
                if !first && raw.all <= from {
                    continue;
                }
                progressed = true;
                from = raw.all;
                let Decoded::Ours(r, _) = decode(names, &raw)? else {
                    continue;
                };
                let expected = after + out.len() as u64 + 1;
                if r.position < expected {
                    continue;
                }
                if r.position > expected {
                    return Err(integrity(
                        expected,
                        format!(
                            "position {expected} is missing from $all (found {})",
                            r.position
                        ),
                    ));
                }
                if !log_link_ok(&r, &prev) {
                    return Err(integrity(r.position, "log hash does not verify"));
                }
                prev = r.log_hash;
                out.push(r);
                if out.len() == want {
                    break;
                }
            }
            first = false;
            if out.len() < want && (n < ask || !progressed) {
                return Err(integrity(
                    after + out.len() as u64 + 1,
                    "a published position is missing from $all",
                ));
            }
        }
        Ok(out)
    }

    async fn head(&self) -> Result<Position, StoreError> {
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
            Ok(Err(_)) if current > after => Ok(current),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Ok(current),
        }
    }
}
