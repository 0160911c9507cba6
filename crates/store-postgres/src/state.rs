//! The key store and the projections' store on PostgreSQL, for users who keep
//! everything in one server database.
//!
//! Both traits (`KeyStore`, `ViewStore`) are synchronous: the callers run them on
//! blocking threads or hold them briefly. So each store owns one session on a
//! private thread with its own single-threaded runtime (an actor) and callers wait
//! on a reply channel; no async runtime is ever entered from inside another.
//!
//! The actor's loop is itself async, so the session's driver task runs while the
//! actor is idle: a session killed between calls is noticed at once and replaced
//! with capped exponential backoff (`backoff.rs`), before the next call trips over
//! it. A call that finds no session waits for the next attempt (at most
//! `MAX_RETRY`) and fails with `Unavailable` if it fails. A call whose session is
//! lost under it is run once more on a new session when running it twice is the
//! same as once (every call but `rewrap_all`; all are single transactions or
//! reads, and a repeated `destroy` may count 0 keys present where the first,
//! unanswered, attempt deleted them); otherwise it is answered `Unavailable`.
//!
//! Every new writing session first waits until what it sees is durable on the
//! synchronous standbys too (`target::barrier`), so that a repeated call is never
//! answered from a commit that lives on the primary alone (one whose session died
//! while waiting for the standby), which a fail-over would lose.
//!
//! Key destruction is real for the live tables: the row is deleted, a tombstone is
//! written, and the table is vacuumed at once so the dead tuple's space is marked
//! free. PostgreSQL cannot overwrite freed space the way SQLite's `secure_delete`
//! does, and its WAL and base backups keep old pages for their retention time:
//! `docs/operations.md` lists that as a residual risk and what to do about it.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ledger_crypto::{CryptoError, KeyState, KeyStore, Rewrap, WrappedKey};
use ledger_projections::{
    Changes, CustomerView, ErasureRecord, ReadModel, RevenueKey, RevenueTotals, ViewStore,
    ViewStoreError,
};
use ledger_types::{BroadcasterId, Currency, CustomerId, OfferId, Timestamp};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_postgres::{Client, IsolationLevel};
use tracing::instrument;
use uuid::Uuid;

use crate::backoff::{self, Backoff};
use crate::condition::Failure;
use crate::target::{self, Session, Target};

type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// An error type the actor answers with: built from a [`Failure`], and telling
/// whether it means the session was lost.
trait ActorError: From<Failure> + Send + 'static {
    fn is_unavailable(&self) -> bool;
}

impl ActorError for CryptoError {
    fn is_unavailable(&self) -> bool {
        matches!(self, CryptoError::Unavailable(_))
    }
}

impl ActorError for ViewStoreError {
    fn is_unavailable(&self) -> bool {
        matches!(self, ViewStoreError::Unavailable(_))
    }
}

/// Whether a call may run again on a new session after losing its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Running it twice is the same as once.
    Safe,
    /// It must not run twice (`rewrap_all`: its closure may not be repeatable).
    Never,
}

/// How one run of a job ended.
enum Ran {
    /// The caller has its answer; `lost` if the session was lost meanwhile.
    Answered { lost: bool },
    /// The session was lost; the job has not answered and wants a new session.
    Again,
}

/// A call queued for the actor, type-erased.
trait Job: Send {
    fn run<'c>(&'c mut self, client: &'c mut Client) -> LocalFuture<'c, Ran>;
    /// Answers with `failure`: no session could be opened for it.
    fn give_up(self: Box<Self>, failure: Failure);
}

struct Call<F, T, E> {
    f: F,
    reply: mpsc::Sender<Result<T, E>>,
    repeat: Repeat,
}

impl<F, T, E> Job for Call<F, T, E>
where
    F: for<'c> FnMut(&'c mut Client) -> LocalFuture<'c, Result<T, E>> + Send,
    T: Send,
    E: ActorError,
{
    fn run<'c>(&'c mut self, client: &'c mut Client) -> LocalFuture<'c, Ran> {
        Box::pin(async move {
            let result = (self.f)(&mut *client).await;
            let lost = client.is_closed() || matches!(&result, Err(e) if e.is_unavailable());
            if lost && self.repeat == Repeat::Safe {
                self.repeat = Repeat::Never;
                return Ran::Again;
            }
            let _ = self.reply.send(result);
            Ran::Answered { lost }
        })
    }

    fn give_up(self: Box<Self>, failure: Failure) {
        let _ = self.reply.send(Err(E::from(failure)));
    }
}

/// How a store's sessions treat the database.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Creates its tables if they are missing (these statements).
    Create(&'static str),
    /// Creates and writes nothing: every session is read-only
    /// (`default_transaction_read_only`), and `tables` must exist, else the
    /// database holds no such store (`what` names it in the error).
    ReadOnly {
        tables: &'static [&'static str],
        what: &'static str,
    },
}

/// What the actor connects to and how it prepares a new session.
struct Opener {
    target: Target,
    role: &'static str,
    mode: Mode,
}

impl Opener {
    async fn open(&self) -> Result<Session, Failure> {
        let session = self.target.connect(self.role).await?;
        if let Err(f) = self.prepare(&session.client).await {
            session.close().await;
            return Err(f);
        }
        Ok(session)
    }

    async fn prepare(&self, client: &Client) -> Result<(), Failure> {
        let (tables, what) = match self.mode {
            Mode::Create(schema) => {
                client
                    .batch_execute(schema)
                    .await
                    .map_err(|e| self.target.failure("cannot create the tables", &e))?;
                // A destruction whose session died while its commit waited for the
                // synchronous standby is visible here but on the primary alone: a
                // repeat of it on this session must not be answered from that.
                return target::barrier(client, &self.target).await;
            }
            Mode::ReadOnly { tables, what } => (tables, what),
        };
        client
            .batch_execute("SET default_transaction_read_only = on")
            .await
            .map_err(|e| {
                self.target
                    .failure("cannot configure a read-only session", &e)
            })?;
        if tables.is_empty() {
            return Ok(());
        }
        let missing: Vec<String> = client
            .query(
                "SELECT t FROM UNNEST($1::text[]) AS t WHERE to_regclass(t) IS NULL",
                &[&tables],
            )
            .await
            .map_err(|e| self.target.failure("cannot look the tables up", &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Failure::failed(format!(
            "no ledger {what} in the database {} (missing: {}; `ledger serve` creates it): \
             check --store or --state-store",
            self.target.label(),
            missing.join(", ")
        )))
    }
}

/// The actor's side: its session (if any), the backoff, the jobs.
struct Serve {
    opener: Opener,
    session: Option<Session>,
    backoff: Backoff,
}

impl Serve {
    async fn run(mut self, mut jobs: UnboundedReceiver<Box<dyn Job>>) {
        loop {
            let retry_at = self.session.is_none().then(|| {
                self.backoff
                    .next_attempt()
                    .unwrap_or_else(tokio::time::Instant::now)
            });
            tokio::select! {
                biased;
                job = jobs.recv() => match job {
                    Some(job) => self.handle(job).await,
                    None => break,
                },
                () = target::ended(&mut self.session) => self.lose(&"the connection ended while idle"),
                () = backoff::sleep_until(retry_at) => {
                    // Logged and counted by `reconnect`; the next call tries again.
                    let _ = self.reconnect().await;
                }
            }
        }
        if let Some(s) = self.session.take() {
            s.close().await;
        }
    }

    async fn handle(&mut self, mut job: Box<dyn Job>) {
        loop {
            if self.session.as_ref().is_some_and(|s| s.client.is_closed()) {
                self.lose(&"the connection is closed");
            }
            if self.session.is_none() {
                if let Err(f) = self.reconnect().await {
                    job.give_up(f);
                    return;
                }
            }
            let Some(session) = self.session.as_mut() else {
                let label = self.opener.target.label().to_owned();
                job.give_up(Failure::unavailable(format!("no session to {label}")));
                return;
            };
            match job.run(&mut session.client).await {
                Ran::Answered { lost: false } => return,
                Ran::Answered { lost: true } => {
                    self.lose(&"a call lost its connection");
                    return;
                }
                Ran::Again => self.lose(&"a call lost its connection; running it again"),
            }
        }
    }

    fn lose(&mut self, why: &dyn std::fmt::Display) {
        if self.session.take().is_some() {
            tracing::warn!(database = %self.opener.target.label(), role = self.opener.role, reason = %why, "session lost; reconnecting");
        }
    }

    /// One attempt, when the backoff allows it, to open a new session.
    #[instrument(skip_all, fields(database = %self.opener.target.label(), role = self.opener.role))]
    async fn reconnect(&mut self) -> Result<(), Failure> {
        if let Some(at) = self.backoff.next_attempt() {
            tokio::time::sleep_until(at).await;
        }
        match self.opener.open().await {
            Ok(session) => {
                let attempts = self.backoff.failures() + 1;
                self.backoff.succeeded();
                self.session = Some(session);
                tracing::info!(attempts, "session reopened");
                Ok(())
            }
            Err(f) => {
                let wait = self.backoff.failed();
                let next_in_ms = wait.as_millis() as u64;
                if self.backoff.failures() == 1 {
                    tracing::warn!(error = %f.message, next_in_ms, "cannot reconnect yet");
                } else {
                    tracing::debug!(error = %f.message, next_in_ms, "cannot reconnect yet");
                }
                Err(f)
            }
        }
    }
}

/// One session on its own thread; `call` runs a job there and waits.
struct Actor {
    jobs: Mutex<Option<UnboundedSender<Box<dyn Job>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    label: String,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("database", &self.label)
            .finish()
    }
}

impl Actor {
    /// Starts the thread and opens the first session (which must succeed).
    fn start(url: &str, role: &'static str, mode: Mode) -> Result<Self, Failure> {
        let target = Target::parse(url)?;
        let label = target.label().to_owned();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Failure>>();
        let (jobs_tx, jobs_rx) = unbounded_channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name(format!("ledger-pg-{}", role.replace(' ', "-")))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Failure::failed(e.to_string())));
                        return;
                    }
                };
                rt.block_on(async move {
                    let opener = Opener { target, role, mode };
                    let session = match opener.open().await {
                        Ok(s) => s,
                        Err(f) => {
                            let _ = ready_tx.send(Err(f));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let serve = Serve {
                        opener,
                        session: Some(session),
                        backoff: Backoff::default(),
                    };
                    serve.run(jobs_rx).await;
                });
            })
            .map_err(|e| Failure::failed(format!("cannot start the {role} thread: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| Failure::failed(format!("the PostgreSQL {role} thread stopped")))??;
        Ok(Self {
            jobs: Mutex::new(Some(jobs_tx)),
            thread: Mutex::new(Some(thread)),
            label,
        })
    }

    /// Runs `f` on the actor's session and waits for its answer.
    fn call<T, E, F>(&self, repeat: Repeat, f: F) -> Result<T, E>
    where
        F: for<'c> FnMut(&'c mut Client) -> LocalFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: ActorError,
    {
        let stopped = || {
            E::from(Failure::failed(
                "the PostgreSQL state thread stopped".into(),
            ))
        };
        let (reply, rx) = mpsc::channel();
        let job: Box<dyn Job> = Box::new(Call { f, reply, repeat });
        self.jobs
            .lock()
            .map_err(|_| E::from(Failure::failed("state lock poisoned".into())))?
            .as_ref()
            .ok_or_else(|| {
                E::from(Failure::failed(
                    "the PostgreSQL state store is closed".into(),
                ))
            })?
            .send(job)
            .map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        if let Ok(mut j) = self.jobs.lock() {
            j.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// Refuses a write to a store opened read-only, before it reaches the server.
fn writable<E: From<Failure>>(read_only: bool, what: &str) -> Result<(), E> {
    if read_only {
        return Err(Failure::failed(format!("the {what} was opened read-only")).into());
    }
    Ok(())
}

const KEY_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS ledger_data_keys (
        customer_id UUID PRIMARY KEY,
        wrapped BYTEA NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ledger_destroyed_keys (
        customer_id UUID PRIMARY KEY,
        destroyed_at BIGINT NOT NULL
    );
";

/// Wrapped data keys and destruction tombstones in PostgreSQL.
#[derive(Debug)]
pub struct PgKeyStore {
    actor: Actor,
    read_only: bool,
}

impl PgKeyStore {
    /// Connects (on a private thread) and creates the tables if needed.
    pub fn connect(url: &str) -> Result<Self, CryptoError> {
        Ok(Self {
            actor: Actor::start(url, "key store", Mode::Create(KEY_SCHEMA))?,
            read_only: false,
        })
    }

    /// Connects to read key states only, for the operator's read-only commands
    /// beside a running server: nothing is created, written or destroyed (its
    /// sessions are read-only, and `insert_new`, `destroy` and `rewrap_all` fail).
    /// A database without the key tables is an error ("no ledger key store").
    pub fn connect_read_only(url: &str) -> Result<Self, CryptoError> {
        let mode = Mode::ReadOnly {
            tables: &["ledger_data_keys", "ledger_destroyed_keys"],
            what: "key store",
        };
        Ok(Self {
            actor: Actor::start(url, "key reader", mode)?,
            read_only: true,
        })
    }

    fn writable(&self) -> Result<(), CryptoError> {
        writable(self.read_only, "key store")
    }
}

/// A driver error as a [`CryptoError`]: `Unavailable`, `Full` or `Store`. Only the
/// server's message and code, never a bound value (ids and ciphertext).
fn crypto(e: tokio_postgres::Error) -> CryptoError {
    Failure::of(&e).into()
}

async fn key_state(
    c: &impl tokio_postgres::GenericClient,
    id: Uuid,
) -> Result<KeyState, CryptoError> {
    if let Some(row) = c
        .query_opt(
            "SELECT wrapped FROM ledger_data_keys WHERE customer_id = $1",
            &[&id],
        )
        .await
        .map_err(crypto)?
    {
        return Ok(KeyState::Active(WrappedKey::from_stored(row.get(0))));
    }
    Ok(
        match c
            .query_opt(
                "SELECT destroyed_at FROM ledger_destroyed_keys WHERE customer_id = $1",
                &[&id],
            )
            .await
            .map_err(crypto)?
        {
            Some(row) => KeyState::Destroyed {
                at: Timestamp::from_millis(row.get(0)),
            },
            None => KeyState::Missing,
        },
    )
}

/// Marks the space of deleted or replaced wrapped keys free now rather than at the
/// next autovacuum (VACUUM cannot run inside a transaction).
async fn vacuum_keys(client: &tokio_postgres::Client) -> Result<(), CryptoError> {
    client
        .batch_execute("VACUUM ledger_data_keys")
        .await
        .map_err(crypto)
}

impl KeyStore for PgKeyStore {
    fn insert_new(&self, keys: &[(CustomerId, WrappedKey)]) -> Result<Vec<KeyState>, CryptoError> {
        self.writable()?;
        let keys: Arc<Vec<(Uuid, Vec<u8>)>> = Arc::new(
            keys.iter()
                .map(|(c, w)| (*c.as_uuid(), w.as_bytes().to_vec()))
                .collect(),
        );
        self.actor.call(Repeat::Safe, move |client| {
            let keys = keys.clone();
            Box::pin(async move {
                let tx = client.transaction().await.map_err(crypto)?;
                let now = Timestamp::now().millis();
                let mut out = Vec::with_capacity(keys.len());
                for (id, wrapped) in keys.iter() {
                    let destroyed = tx
                        .query_opt(
                            "SELECT 1 FROM ledger_destroyed_keys WHERE customer_id = $1",
                            &[id],
                        )
                        .await
                        .map_err(crypto)?;
                    if destroyed.is_none() {
                        tx.execute(
                            "INSERT INTO ledger_data_keys (customer_id, wrapped, created_at)
                                 VALUES ($1, $2, $3) ON CONFLICT (customer_id) DO NOTHING",
                            &[id, wrapped, &now],
                        )
                        .await
                        .map_err(crypto)?;
                    }
                    out.push(key_state(&tx, *id).await?);
                }
                tx.commit().await.map_err(crypto)?;
                Ok(out)
            })
        })
    }

    fn get(&self, customer: CustomerId) -> Result<KeyState, CryptoError> {
        let id = *customer.as_uuid();
        self.actor.call(Repeat::Safe, move |client| {
            Box::pin(async move { key_state(&*client, id).await })
        })
    }

    fn destroy(&self, customers: &[CustomerId], at: Timestamp) -> Result<usize, CryptoError> {
        self.writable()?;
        let ids: Arc<Vec<Uuid>> = Arc::new(customers.iter().map(|c| *c.as_uuid()).collect());
        self.actor.call(Repeat::Safe, move |client| {
            let ids = ids.clone();
            Box::pin(async move {
                let tx = client.transaction().await.map_err(crypto)?;
                let n = tx
                    .execute(
                        "DELETE FROM ledger_data_keys WHERE customer_id = ANY($1)",
                        &[&*ids],
                    )
                    .await
                    .map_err(crypto)?;
                tx.execute(
                    "INSERT INTO ledger_destroyed_keys (customer_id, destroyed_at)
                         SELECT id, $2 FROM UNNEST($1::uuid[]) AS id
                         ON CONFLICT (customer_id) DO NOTHING",
                    &[&*ids, &at.millis()],
                )
                .await
                .map_err(crypto)?;
                tx.commit().await.map_err(crypto)?;
                vacuum_keys(client).await?;
                Ok(n as usize)
            })
        })
    }

    fn rewrap_all(&self, rewrap: Rewrap) -> Result<usize, CryptoError> {
        self.writable()?;
        // Runs once (`Repeat::Never`), so the closure is taken on that run.
        let mut rewrap = Some(rewrap);
        self.actor.call(Repeat::Never, move |client| {
            let rewrap = rewrap.take();
            Box::pin(async move {
                let Some(rewrap) = rewrap else {
                    return Err(CryptoError::Store("key rotation ran twice".into()));
                };
                let tx = client.transaction().await.map_err(crypto)?;
                let rows = tx
                    .query(
                        "SELECT customer_id, wrapped FROM ledger_data_keys FOR UPDATE",
                        &[],
                    )
                    .await
                    .map_err(crypto)?;
                for row in &rows {
                    let id: Uuid = row.get(0);
                    let old = WrappedKey::from_stored(row.get(1));
                    let new = rewrap(CustomerId::from_uuid(id), &old)?;
                    tx.execute(
                        "UPDATE ledger_data_keys SET wrapped = $2 WHERE customer_id = $1",
                        &[&id, &new.as_bytes()],
                    )
                    .await
                    .map_err(crypto)?;
                }
                tx.commit().await.map_err(crypto)?;
                vacuum_keys(client).await?;
                Ok(rows.len())
            })
        })
    }

    fn active_ids(&self) -> Result<Vec<CustomerId>, CryptoError> {
        self.ids("SELECT customer_id FROM ledger_data_keys")
    }

    fn destroyed_ids(&self) -> Result<Vec<CustomerId>, CryptoError> {
        self.ids("SELECT customer_id FROM ledger_destroyed_keys")
    }
}

impl PgKeyStore {
    fn ids(&self, sql: &'static str) -> Result<Vec<CustomerId>, CryptoError> {
        self.actor.call(Repeat::Safe, move |client| {
            Box::pin(async move {
                let rows = client.query(sql, &[]).await.map_err(crypto)?;
                Ok(rows
                    .iter()
                    .map(|r| CustomerId::from_uuid(r.get(0)))
                    .collect())
            })
        })
    }
}

const VIEW_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS ledger_checkpoints (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    );
    -- The log hash at the checkpoint: views restored beside another log are found
    -- out at start.
    ALTER TABLE ledger_checkpoints ADD COLUMN IF NOT EXISTS log_hash BYTEA;
    -- Outbound sinks' checkpoints (the JetStream publisher's), apart from the
    -- projections' (which a rebuild clears).
    CREATE TABLE IF NOT EXISTS ledger_sink_checkpoints (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    );
    -- Webhook endpoints (JSON documents, secrets included) and the last delivery
    -- attempts of each: configuration and history, not derived from the log.
    CREATE TABLE IF NOT EXISTS ledger_webhook_endpoints (
        id TEXT PRIMARY KEY,
        doc TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ledger_webhook_attempts (
        endpoint TEXT NOT NULL,
        seq BIGINT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (endpoint, seq)
    );
    CREATE TABLE IF NOT EXISTS ledger_customer_views (
        customer_id UUID PRIMARY KEY,
        view TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ledger_revenue (
        broadcaster_id UUID NOT NULL,
        currency TEXT NOT NULL,
        day BIGINT NOT NULL,
        offer_id TEXT NOT NULL,
        gross_captured NUMERIC(39, 0) NOT NULL,
        refunded NUMERIC(39, 0) NOT NULL,
        net NUMERIC(39, 0) NOT NULL,
        payment_count BIGINT NOT NULL,
        refund_count BIGINT NOT NULL,
        PRIMARY KEY (broadcaster_id, currency, day, offer_id)
    );
    -- Revenue totals are i128 (sums of payments can pass i64): a table made while
    -- they were BIGINT is widened once, losslessly.
    DO $$
    BEGIN
        IF EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'ledger_revenue'
                     AND column_name = 'gross_captured' AND data_type = 'bigint') THEN
            ALTER TABLE ledger_revenue
                ALTER COLUMN gross_captured TYPE NUMERIC(39, 0),
                ALTER COLUMN refunded TYPE NUMERIC(39, 0),
                ALTER COLUMN net TYPE NUMERIC(39, 0);
        END IF;
    END $$;
    CREATE TABLE IF NOT EXISTS ledger_erasures (
        customer_id UUID PRIMARY KEY,
        record TEXT NOT NULL
    );
";

/// The projections' rows and checkpoints in PostgreSQL, written in one
/// transaction per save (like `SqliteViewStore`) and loaded from one snapshot
/// (a repeatable-read transaction), so a load beside a running projector never
/// pairs rows with a later checkpoint.
#[derive(Debug)]
pub struct PgViewStore {
    actor: Actor,
    read_only: bool,
}

impl PgViewStore {
    /// Connects (on a private thread) and creates the tables if needed.
    pub fn connect(url: &str) -> Result<Self, ViewStoreError> {
        Ok(Self {
            actor: Actor::start(url, "view store", Mode::Create(VIEW_SCHEMA))?,
            read_only: false,
        })
    }

    /// Connects to load the views only, for the operator's read-only commands
    /// beside a running server: nothing is created or saved (its sessions are
    /// read-only, and `save` and `clear` fail). A database without the view tables
    /// loads as empty views (the caller folds the log from zero in memory), as a
    /// missing `views.sqlite` does.
    pub fn connect_read_only(url: &str) -> Result<Self, ViewStoreError> {
        let mode = Mode::ReadOnly {
            tables: &[],
            what: "view store",
        };
        Ok(Self {
            actor: Actor::start(url, "view reader", mode)?,
            read_only: true,
        })
    }

    fn writable(&self) -> Result<(), ViewStoreError> {
        writable(self.read_only, "view store")
    }
}

/// A driver error as a [`ViewStoreError`]: `Unavailable`, `Full` or `Backend`.
fn views(e: tokio_postgres::Error) -> ViewStoreError {
    Failure::of(&e).into()
}

fn corrupt(what: &str) -> ViewStoreError {
    ViewStoreError::Corrupt(what.to_owned())
}

/// A revenue total read as `NUMERIC::text`.
fn total(text: &str) -> Result<i128, ViewStoreError> {
    text.parse().map_err(|_| corrupt("revenue row"))
}

impl ViewStore for PgViewStore {
    fn load(&self) -> Result<ReadModel, ViewStoreError> {
        let read_only = self.read_only;
        self.actor.call(Repeat::Safe, move |client| {
            Box::pin(async move {
                let mut model = ReadModel::new();
                let tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await
                    .map_err(views)?;
                if read_only {
                    let present: bool = tx
                        .query_one("SELECT to_regclass('ledger_checkpoints') IS NOT NULL", &[])
                        .await
                        .map_err(views)?
                        .get(0);
                    if !present {
                        return Ok(model);
                    }
                }
                for row in tx
                    .query("SELECT view FROM ledger_customer_views", &[])
                    .await
                    .map_err(views)?
                {
                    let text: &str = row.get(0);
                    model.customers.insert(
                        serde_json::from_str::<CustomerView>(text)
                            .map_err(|_| corrupt("customer view row"))?,
                    );
                }
                for row in tx
                    .query(
                        "SELECT broadcaster_id, currency, day, offer_id, gross_captured::text,
                                    refunded::text, net::text, payment_count, refund_count
                             FROM ledger_revenue",
                        &[],
                    )
                    .await
                    .map_err(views)?
                {
                    let key = RevenueKey {
                        broadcaster_id: BroadcasterId::from_uuid(row.get(0)),
                        currency: Currency::from_stored(row.get(1))
                            .map_err(|_| corrupt("revenue row"))?,
                        day: row.get(2),
                        offer_id: OfferId::parse(row.get(3)).map_err(|_| corrupt("revenue row"))?,
                    };
                    let totals = RevenueTotals {
                        gross_captured: total(row.get(4))?,
                        refunded: total(row.get(5))?,
                        net: total(row.get(6))?,
                        payment_count: row.get::<_, i64>(7).max(0) as u64,
                        refund_count: row.get::<_, i64>(8).max(0) as u64,
                    };
                    model.revenue.insert(key, totals);
                }
                for row in tx
                    .query("SELECT record FROM ledger_erasures", &[])
                    .await
                    .map_err(views)?
                {
                    let text: &str = row.get(0);
                    model.erasures.insert(
                        serde_json::from_str::<ErasureRecord>(text)
                            .map_err(|_| corrupt("erasure row"))?,
                    );
                }
                let has_hash = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                             WHERE table_schema = current_schema()
                               AND table_name = 'ledger_checkpoints' AND column_name = 'log_hash')",
                        &[],
                    )
                    .await
                    .map_err(views)?
                    .get::<_, bool>(0);
                let sql = if has_hash {
                    "SELECT name, position, log_hash FROM ledger_checkpoints"
                } else {
                    "SELECT name, position, NULL::bytea FROM ledger_checkpoints"
                };
                let mut hashes = Vec::new();
                for row in tx.query(sql, &[]).await.map_err(views)? {
                    let p = row.get::<_, i64>(1).max(0) as u64;
                    hashes.push((p, row.get::<_, Option<Vec<u8>>>(2)));
                    match row.get::<_, &str>(0) {
                        "customers" => model.customers.set_position(p),
                        "revenue" => model.revenue.set_position(p),
                        "erasures" => model.erasures.set_position(p),
                        _ => {}
                    }
                }
                model.checkpoint_hash = ledger_projections::agreed_checkpoint_hash(&hashes);
                tx.commit().await.map_err(views)?;
                model.customers.take_dirty();
                model.revenue.take_dirty();
                model.erasures.take_dirty();
                Ok(model)
            })
        })
    }

    fn save(&self, changes: &Changes) -> Result<(), ViewStoreError> {
        self.writable()?;
        let view_ids: Vec<Uuid> = changes
            .customers
            .iter()
            .map(|v| *v.customer_id.as_uuid())
            .collect();
        let view_texts = changes
            .customers
            .iter()
            .map(|v| json(&**v))
            .collect::<Result<Vec<_>, _>>()?;
        let er_ids: Vec<Uuid> = changes
            .erasures
            .iter()
            .map(|r| *r.customer_id.as_uuid())
            .collect();
        let er_texts = changes
            .erasures
            .iter()
            .map(json)
            .collect::<Result<Vec<_>, _>>()?;
        let mut rev: (Vec<Uuid>, Vec<String>, Vec<i64>, Vec<String>) = Default::default();
        // Totals travel as base-10 text (tokio-postgres has no i128 <-> NUMERIC).
        let mut sums: [Vec<String>; 3] = Default::default();
        let mut counts: [Vec<i64>; 2] = Default::default();
        for (k, t) in &changes.revenue {
            rev.0.push(*k.broadcaster_id.as_uuid());
            rev.1.push(k.currency.as_str().to_owned());
            rev.2.push(k.day);
            rev.3.push(k.offer_id.as_str().to_owned());
            sums[0].push(t.gross_captured.to_string());
            sums[1].push(t.refunded.to_string());
            sums[2].push(t.net.to_string());
            counts[0].push(t.payment_count as i64);
            counts[1].push(t.refund_count as i64);
        }
        let log_hash: Option<Vec<u8>> = changes.log_hash.map(|h| h.to_vec());
        let p = &changes.positions;
        let positions = [
            ("customers", p.customers as i64),
            ("revenue", p.revenue as i64),
            ("erasures", p.erasures as i64),
        ];
        let rows = Arc::new((view_ids, view_texts, er_ids, er_texts, rev, (sums, counts)));
        self.actor.call(Repeat::Safe, move |client| {
            let (rows, log_hash) = (rows.clone(), log_hash.clone());
            Box::pin(async move {
                let (view_ids, view_texts, er_ids, er_texts, rev, (sums, counts)) = &*rows;
                let tx = client.transaction().await.map_err(views)?;
                tx.execute(
                    "INSERT INTO ledger_customer_views (customer_id, view)
                         SELECT * FROM UNNEST($1::uuid[], $2::text[])
                         ON CONFLICT (customer_id) DO UPDATE SET view = EXCLUDED.view",
                    &[view_ids, view_texts],
                )
                .await
                .map_err(views)?;
                tx.execute(
                    "INSERT INTO ledger_revenue (broadcaster_id, currency, day, offer_id,
                             gross_captured, refunded, net, payment_count, refund_count)
                         SELECT b, c, d, o, g::numeric, r::numeric, n::numeric, pc, rc
                         FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[],
                             $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[])
                             AS u(b, c, d, o, g, r, n, pc, rc)
                         ON CONFLICT (broadcaster_id, currency, day, offer_id) DO UPDATE SET
                             gross_captured = EXCLUDED.gross_captured, refunded = EXCLUDED.refunded,
                             net = EXCLUDED.net, payment_count = EXCLUDED.payment_count,
                             refund_count = EXCLUDED.refund_count",
                    &[
                        &rev.0, &rev.1, &rev.2, &rev.3, &sums[0], &sums[1], &sums[2], &counts[0],
                        &counts[1],
                    ],
                )
                .await
                .map_err(views)?;
                tx.execute(
                    "INSERT INTO ledger_erasures (customer_id, record)
                         SELECT * FROM UNNEST($1::uuid[], $2::text[])
                         ON CONFLICT (customer_id) DO UPDATE SET record = EXCLUDED.record",
                    &[er_ids, er_texts],
                )
                .await
                .map_err(views)?;
                for (name, pos) in positions {
                    tx.execute(
                        "INSERT INTO ledger_checkpoints (name, position, log_hash)
                             VALUES ($1, $2, $3)
                             ON CONFLICT (name) DO UPDATE
                             SET position = EXCLUDED.position, log_hash = EXCLUDED.log_hash",
                        &[&name, &pos, &log_hash],
                    )
                    .await
                    .map_err(views)?;
                }
                tx.commit().await.map_err(views)
            })
        })
    }

    fn clear(&self, name: Option<&str>) -> Result<(), ViewStoreError> {
        self.writable()?;
        let (c, r, e) = match name {
            None => (true, true, true),
            Some("customers") => (true, false, false),
            Some("revenue") => (false, true, false),
            Some("erasures") => (false, true, true),
            Some(_) => return Err(ViewStoreError::Backend("unknown projection".into())),
        };
        self.actor.call(Repeat::Safe, move |client| {
            Box::pin(async move {
                let tx = client.transaction().await.map_err(views)?;
                for (on, table, cp) in [
                    (c, "ledger_customer_views", "customers"),
                    (r, "ledger_revenue", "revenue"),
                    (e, "ledger_erasures", "erasures"),
                ] {
                    if on {
                        tx.execute(&format!("DELETE FROM {table}"), &[])
                            .await
                            .map_err(views)?;
                        tx.execute("DELETE FROM ledger_checkpoints WHERE name = $1", &[&cp])
                            .await
                            .map_err(views)?;
                    }
                }
                tx.commit().await.map_err(views)
            })
        })
    }

    fn sink_position(&self, name: &str) -> Result<u64, ViewStoreError> {
        let name = name.to_owned();
        self.actor.call(Repeat::Safe, move |client| {
            let name = name.clone();
            Box::pin(async move {
                // A read-only session on a database without the table reads 0.
                if !table_present(client, "ledger_sink_checkpoints").await? {
                    return Ok(0);
                }
                let row = client
                    .query_opt(
                        "SELECT position FROM ledger_sink_checkpoints WHERE name = $1",
                        &[&name],
                    )
                    .await
                    .map_err(views)?;
                Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
            })
        })
    }

    fn save_sink_position(&self, name: &str, position: u64) -> Result<(), ViewStoreError> {
        self.writable()?;
        let (name, position) = (name.to_owned(), position as i64);
        self.actor.call(Repeat::Safe, move |client| {
            let name = name.clone();
            Box::pin(async move {
                client
                    .execute(
                        "INSERT INTO ledger_sink_checkpoints (name, position) VALUES ($1, $2)
                             ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
                        &[&name, &position],
                    )
                    .await
                    .map_err(views)?;
                Ok(())
            })
        })
    }

    fn webhook_endpoints(&self) -> Result<Vec<String>, ViewStoreError> {
        self.actor.call(Repeat::Safe, move |client| {
            Box::pin(async move {
                if !table_present(client, "ledger_webhook_endpoints").await? {
                    return Ok(Vec::new());
                }
                let rows = client
                    .query("SELECT doc FROM ledger_webhook_endpoints ORDER BY id", &[])
                    .await
                    .map_err(views)?;
                Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
            })
        })
    }

    fn put_webhook_endpoint(&self, id: &str, doc: Option<&str>) -> Result<(), ViewStoreError> {
        self.writable()?;
        let (id, doc) = (id.to_owned(), doc.map(str::to_owned));
        self.actor.call(Repeat::Safe, move |client| {
            let (id, doc) = (id.clone(), doc.clone());
            Box::pin(async move {
                match doc {
                    Some(doc) => client
                        .execute(
                            "INSERT INTO ledger_webhook_endpoints (id, doc) VALUES ($1, $2)
                                 ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc",
                            &[&id, &doc],
                        )
                        .await
                        .map_err(views)?,
                    None => client
                        .execute("DELETE FROM ledger_webhook_endpoints WHERE id = $1", &[&id])
                        .await
                        .map_err(views)?,
                };
                Ok(())
            })
        })
    }

    fn add_webhook_attempts(
        &self,
        endpoint: &str,
        docs: &[String],
        keep: usize,
    ) -> Result<(), ViewStoreError> {
        self.writable()?;
        let (endpoint, docs) = (endpoint.to_owned(), docs.to_vec());
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        // Not repeated after a lost answer: the attempts would be recorded twice.
        self.actor.call(Repeat::Never, move |client| {
            let (endpoint, docs) = (endpoint.clone(), docs.clone());
            Box::pin(async move {
                let tx = client.transaction().await.map_err(views)?;
                let last: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM ledger_webhook_attempts
                         WHERE endpoint = $1",
                        &[&endpoint],
                    )
                    .await
                    .map_err(views)?
                    .get(0);
                let seqs: Vec<i64> = (1..=docs.len() as i64).map(|i| last + i).collect();
                tx.execute(
                    "INSERT INTO ledger_webhook_attempts (endpoint, seq, doc)
                     SELECT $1, s, d FROM UNNEST($2::BIGINT[], $3::TEXT[]) AS t(s, d)",
                    &[&endpoint, &seqs, &docs],
                )
                .await
                .map_err(views)?;
                tx.execute(
                    "DELETE FROM ledger_webhook_attempts WHERE endpoint = $1 AND seq <= $2",
                    &[&endpoint, &(last + docs.len() as i64 - keep)],
                )
                .await
                .map_err(views)?;
                tx.commit().await.map_err(views)
            })
        })
    }

    fn webhook_attempts(
        &self,
        endpoint: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, ViewStoreError> {
        let endpoint = endpoint.to_owned();
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.actor.call(Repeat::Safe, move |client| {
            let endpoint = endpoint.clone();
            Box::pin(async move {
                if !table_present(client, "ledger_webhook_attempts").await? {
                    return Ok(Vec::new());
                }
                let rows = client
                    .query(
                        "SELECT seq, doc FROM ledger_webhook_attempts
                         WHERE endpoint = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                        &[&endpoint, &before, &limit],
                    )
                    .await
                    .map_err(views)?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get::<_, i64>(0).max(0) as u64, r.get::<_, String>(1)))
                    .collect())
            })
        })
    }
}

/// Whether a table exists (a read-only session on a database written by an
/// older version may lack one).
async fn table_present(
    client: &tokio_postgres::Client,
    table: &str,
) -> Result<bool, ViewStoreError> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(views)?
        .get(0))
}

fn json<T: serde::Serialize>(row: &T) -> Result<String, ViewStoreError> {
    serde_json::to_string(row)
        .map_err(|_| ViewStoreError::Backend("a row could not be encoded".into()))
}
