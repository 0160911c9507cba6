//! Finishing erasures: the data-key destructions that follow `CustomerAnonymized`.
//!
//! # Why it is shaped this way
//!
//! The log is the durable decision; the key destruction is what makes the data
//! irrecoverable. Between the two an erasure is *half done*: the API shows a
//! tombstone, yet the sealed data could still be opened. The promise is that this
//! state never lasts, whatever happens to the request that started it and while the
//! process keeps running, not only across a restart:
//!
//! - [`crate::Ledger::anonymize`] runs the append and the destruction in a task of
//!   its own, so a client that disconnects, or a request timeout, cannot cancel the
//!   destruction half way (dropping a request's future only drops the wait).
//! - Every decided erasure is [`Shredder::note`]d as pending before its key is
//!   destroyed and forgotten only once the key store confirms the destruction.
//! - [`Shredder::sweep`] finds every `CustomerAnonymized` in the log past what it
//!   has scanned (written by any path: the API, the CLI, a crashed predecessor) and
//!   destroys every pending key in one key-store call. At start it scans the whole
//!   log, which is the crash recovery; in `serve` it then runs continuously
//!   ([`Shredder::run`]): woken at once after any failed destruction, otherwise
//!   every [`SWEEP_EVERY`], with capped exponential backoff while a store fails.
//! - [`Shredder::pending`] gives the count and the oldest age for `/readyz` and the
//!   metrics, so a destruction that cannot complete is visible, not silent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_crypto::{KeyState, Keyring};
use ledger_events::streams;
use ledger_store::EventStore;
use ledger_types::{CustomerId, Timestamp};
use tracing::{info, warn};

use crate::AppError;

/// How often the running sweep looks at the log when nothing wakes it.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// The longest wait between attempts while a store keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const PAGE: usize = 10_000;

/// Pending destructions, for readiness and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pending {
    pub count: usize,
    /// How long the oldest pending destruction has waited.
    pub oldest: Option<Duration>,
}

/// Tracks and finishes the key destructions of decided erasures (see the module
/// doc). Shared by the command service and the background sweep.
#[derive(Debug)]
pub struct Shredder {
    store: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
    /// Customers with a `CustomerAnonymized` whose key may still exist, and since
    /// when.
    pending: Mutex<HashMap<CustomerId, Instant>>,
    /// The log position the sweep has scanned up to.
    scanned: AtomicU64,
    wake: tokio::sync::Notify,
    /// Wakes the running sweep at once, whatever its backoff ([`Shredder::retry_now`]).
    retry: tokio::sync::Notify,
    /// Serializes sweeps (the start-up one and the running one).
    sweeping: tokio::sync::Mutex<()>,
    /// Destructions waiting for the next group (see [`Shredder::destroy_grouped`]).
    group: Mutex<Group>,
}

/// How a grouped destruction failed, told to every erasure of the group.
#[derive(Debug, Clone)]
enum GroupFailure {
    Condition(crate::StorageCondition, String),
    Other(String),
}

impl GroupFailure {
    fn of(e: &AppError) -> Self {
        match e.storage_condition() {
            Some(c) => GroupFailure::Condition(c, e.to_string()),
            None => GroupFailure::Other(e.to_string()),
        }
    }

    fn into_error(self) -> AppError {
        use ledger_crypto::CryptoError;
        match self {
            GroupFailure::Condition(crate::StorageCondition::Unavailable, m) => {
                AppError::Crypto(CryptoError::Unavailable(m))
            }
            GroupFailure::Condition(crate::StorageCondition::Full, _) => {
                AppError::Crypto(CryptoError::Full)
            }
            GroupFailure::Other(m) => AppError::Io(m),
        }
    }
}

type Waiter = tokio::sync::oneshot::Sender<Result<usize, GroupFailure>>;

/// The destructions queued while a group is being destroyed, and whether one is.
#[derive(Debug, Default)]
struct Group {
    queue: Vec<(Vec<CustomerId>, Waiter)>,
    running: bool,
}

impl Shredder {
    pub fn new(store: Arc<dyn EventStore>, keyring: Arc<Keyring>) -> Self {
        Self {
            store,
            keyring,
            pending: Mutex::new(HashMap::new()),
            scanned: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            retry: tokio::sync::Notify::new(),
            sweeping: tokio::sync::Mutex::new(()),
            group: Mutex::new(Group::default()),
        }
    }

    /// [`Shredder::destroy`], sharing one key-store transaction (and one WAL
    /// truncation) with the destructions that arrive while another group is being
    /// destroyed: group commit, as the event store does for appends. Returns once
    /// this caller's keys are gone (or the group failed, then they stay pending and
    /// the sweep retries), so an erasure is still acknowledged only after its key is
    /// gone. Returns how many customers it was asked for.
    pub async fn destroy_grouped(
        self: &Arc<Self>,
        customers: Vec<CustomerId>,
    ) -> Result<usize, AppError> {
        if customers.is_empty() {
            return Ok(0);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lead = {
            let mut g = self
                .group
                .lock()
                .map_err(|_| AppError::Io("group lock poisoned".into()))?;
            g.queue.push((customers, tx));
            !std::mem::replace(&mut g.running, true)
        };
        if lead {
            let me = self.clone();
            tokio::spawn(async move { me.destroy_groups().await });
        }
        match rx.await {
            Ok(r) => r.map_err(GroupFailure::into_error),
            Err(_) => Err(AppError::Io("key destruction task ended".into())),
        }
    }

    /// Destroys queued groups until the queue is empty.
    async fn destroy_groups(&self) {
        loop {
            let batch = match self.group.lock() {
                Ok(mut g) if g.queue.is_empty() => {
                    g.running = false;
                    return;
                }
                Ok(mut g) => std::mem::take(&mut g.queue),
                Err(_) => return,
            };
            let all: Vec<CustomerId> = batch.iter().flat_map(|(c, _)| c.iter().copied()).collect();
            match self.destroy(all).await {
                Ok(_) => {
                    for (c, tx) in batch {
                        let _ = tx.send(Ok(c.len()));
                    }
                }
                Err(e) => {
                    let f = GroupFailure::of(&e);
                    for (_, tx) in batch {
                        let _ = tx.send(Err(f.clone()));
                    }
                }
            }
        }
    }

    /// Records that `c`'s erasure is decided and its key must go.
    pub fn note(&self, c: CustomerId) {
        if let Ok(mut p) = self.pending.lock() {
            p.entry(c).or_insert_with(Instant::now);
        }
    }

    fn forget(&self, done: &[CustomerId]) {
        if let Ok(mut p) = self.pending.lock() {
            for c in done {
                p.remove(c);
            }
        }
    }

    /// The pending destructions now.
    pub fn pending(&self) -> Pending {
        let Ok(p) = self.pending.lock() else {
            return Pending::default();
        };
        Pending {
            count: p.len(),
            oldest: p.values().min().map(Instant::elapsed),
        }
    }

    /// Destroys the keys of `customers` now (one key-store transaction, on the
    /// blocking pool). On success they are no longer pending; on failure they stay
    /// pending and the running sweep is woken to retry. Returns how many keys were
    /// still present.
    pub async fn destroy(&self, customers: Vec<CustomerId>) -> Result<usize, AppError> {
        if customers.is_empty() {
            return Ok(0);
        }
        let k = self.keyring.clone();
        let list = customers.clone();
        let result = tokio::task::spawn_blocking(move || k.destroy(&list, Timestamp::now()))
            .await
            .map_err(|_| AppError::Io("key store task panicked".into()))
            .and_then(|r| r.map_err(AppError::from));
        match result {
            Ok(n) => {
                self.forget(&customers);
                Ok(n)
            }
            Err(e) => {
                warn!(
                    customers = customers.len(),
                    code = e.code(),
                    "key destruction failed; the reconciler will retry"
                );
                self.wake.notify_one();
                Err(e)
            }
        }
    }

    /// Scans the log past the last sweep for `CustomerAnonymized`, notes every such
    /// customer whose key is still active, and destroys every pending key. Returns
    /// how many keys it destroyed. The first sweep scans the whole log: that is
    /// the recovery after a crash between decision and destruction.
    pub async fn sweep(&self) -> Result<usize, AppError> {
        let _one = self.sweeping.lock().await;
        let mut after = self.scanned.load(Ordering::Acquire);
        let mut erased = Vec::new();
        loop {
            let page = self.store.read_all(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            erased.extend(
                page.iter()
                    .filter(|r| r.event_type == "CustomerAnonymized")
                    .filter_map(|r| streams::parse_customer(&r.stream)),
            );
        }
        let k = self.keyring.clone();
        let alive = tokio::task::spawn_blocking(move || {
            let mut alive = Vec::new();
            for c in erased {
                if matches!(k.state(c)?, KeyState::Active(_)) {
                    alive.push(c);
                }
            }
            Ok::<_, ledger_crypto::CryptoError>(alive)
        })
        .await
        .map_err(|_| AppError::Io("key store task panicked".into()))??;
        for c in &alive {
            self.note(*c);
        }
        // Scanned up to here: what is found is pending now, so a later failure to
        // destroy is retried from the pending set, not by scanning again.
        self.scanned.store(after, Ordering::Release);
        let todo: Vec<CustomerId> = match self.pending.lock() {
            Ok(p) => p.keys().copied().collect(),
            Err(_) => return Err(AppError::Io("pending set lock poisoned".into())),
        };
        if todo.is_empty() {
            return Ok(0);
        }
        let n = self.destroy(todo).await?;
        if n > 0 {
            warn!(
                keys = n,
                "reconciler finished erasures whose key destruction had not completed"
            );
        }
        Ok(n)
    }

    /// Makes the running sweep ([`Shredder::run`]) try again now, without waiting
    /// out its backoff: what failed may work now (the disk has space again).
    pub fn retry_now(&self) {
        self.retry.notify_one();
    }

    /// Sweeps until `stop` resolves: at once when woken (a destruction failed),
    /// otherwise every [`SWEEP_EVERY`]; after a failure, again after a backoff
    /// that doubles up to 10 s. `on_result` hears how each sweep went (readiness).
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
        on_result: impl Fn(Result<usize, &AppError>),
    ) {
        tokio::pin!(stop);
        let mut backoff = Duration::from_millis(250);
        loop {
            let wait = match self.sweep().await {
                Ok(n) => {
                    on_result(Ok(n));
                    backoff = Duration::from_millis(250);
                    SWEEP_EVERY
                }
                Err(e) => {
                    on_result(Err(&e));
                    warn!(code = e.code(), "reconciler sweep failed; retrying");
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    w
                }
            };
            // A failed destruction wakes the sweep early, but never more often than
            // the backoff allows while the store keeps failing.
            tokio::select! {
                _ = &mut stop => break,
                _ = self.wake.notified(), if backoff <= Duration::from_millis(250) => {}
                _ = self.retry.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        info!("reconciler stopped");
    }
}
