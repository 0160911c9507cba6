//! The dispatcher: one worker per enabled endpoint, each following the change
//! feed from the endpoint's own checkpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use ledger_app::feed::{Feed, FeedQuery, Scope};
use ledger_public_events::PublicEvent;
use ledger_store::EventStore;
use ledger_types::Timestamp;
use rand::Rng as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use uuid::Uuid;

use crate::deliver::{Outcome, Sender};
use crate::endpoint::{Endpoint, FAILING_TOO_LONG};
use crate::registry::{Attempt, Registry, RegistryError};

/// How deliveries are made and retried.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Loopback, private and other non-public addresses, and plain `http`, are
    /// taken (`--allow-private-webhooks`; tests and closed networks).
    pub allow_private: bool,
    /// The longest an attempt may take, connection included.
    pub timeout: Duration,
    /// The wait before the first retry; it doubles at each failure...
    pub first_retry: Duration,
    /// ... up to this (each wait gets up to 50 % more, at random).
    pub max_retry_interval: Duration,
    /// An endpoint failing for this long (from the first failure of the delivery
    /// being retried) is disabled with the reason `FAILING_TOO_LONG`.
    pub give_up_after: Duration,
    /// Messages in flight at once per endpoint (each customer's in order).
    pub concurrency: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(1),
            max_retry_interval: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(3 * 24 * 3600),
            concurrency: 16,
        }
    }
}

/// Events read from the feed at once.
const PAGE: usize = 1_000;

/// Delivers to every enabled endpoint of a [`Registry`].
#[derive(Debug)]
pub struct Dispatcher {
    registry: Arc<Registry>,
    feed: Feed,
    store: Arc<dyn EventStore>,
    sender: Sender,
    config: Arc<DispatchConfig>,
}

struct Running {
    revision: u64,
    cancel: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Dispatcher {
    pub fn new(
        registry: Arc<Registry>,
        feed: Feed,
        store: Arc<dyn EventStore>,
        config: DispatchConfig,
    ) -> Result<Self, String> {
        let sender = Sender::new(config.timeout, config.allow_private)?;
        Ok(Self {
            registry,
            feed,
            store,
            sender,
            config: Arc::new(config),
        })
    }

    /// Starts, stops and restarts workers as endpoints are created, changed,
    /// disabled or deleted, until `stop` resolves; then stops them all.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut changes = self.registry.subscribe();
        while let Err(e) = self.registry.ready().await {
            warn!(error = %e, "webhook endpoints could not be read; trying again");
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let mut running: HashMap<Uuid, Running> = HashMap::new();
        loop {
            let all = self.registry.all();
            let total = all.len();
            let wanted: HashMap<Uuid, Endpoint> = all
                .into_iter()
                .filter(|e| e.enabled)
                .map(|e| (e.id, e))
                .collect();
            metrics::gauge!("ledger_webhook_endpoints", "state" => "enabled")
                .set(wanted.len() as f64);
            metrics::gauge!("ledger_webhook_endpoints", "state" => "disabled")
                .set((total - wanted.len()) as f64);
            let stale: Vec<Uuid> = running
                .iter()
                .filter(|(id, r)| {
                    r.task.is_finished() || wanted.get(id).is_none_or(|e| e.revision != r.revision)
                })
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                if let Some(r) = running.remove(&id) {
                    // The old worker ends before a new one starts: never two on
                    // one checkpoint.
                    let _ = r.cancel.send(true);
                    let _ = r.task.await;
                }
            }
            for (id, e) in wanted {
                if running.contains_key(&id) {
                    continue;
                }
                let (cancel, cancelled) = watch::channel(false);
                let failing = AtomicBool::new(e.failing_since.is_some());
                let worker = Worker {
                    signer: match standardwebhooks::Webhook::new(Registry::secret_of(&e)) {
                        Ok(s) => s,
                        Err(_) => {
                            warn!(endpoint = %id, "the endpoint's secret is unusable; not delivering");
                            continue;
                        }
                    },
                    revision: e.revision,
                    endpoint: e,
                    registry: self.registry.clone(),
                    feed: self.feed.clone(),
                    store: self.store.clone(),
                    sender: self.sender.clone(),
                    config: self.config.clone(),
                    pending: Mutex::new(Vec::new()),
                    failing,
                };
                let revision = worker.revision;
                let task = tokio::spawn(async move { worker.run(cancelled).await });
                running.insert(
                    id,
                    Running {
                        revision,
                        cancel,
                        task,
                    },
                );
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = changes.changed() => {}
                // A worker that ended by itself is noticed here.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        for r in running.values() {
            let _ = r.cancel.send(true);
        }
        for (_, r) in running {
            let _ = r.task.await;
        }
    }
}

/// Why a worker stops.
enum Halt {
    Cancelled,
    GaveUp,
}

struct Worker {
    endpoint: Endpoint,
    revision: u64,
    signer: standardwebhooks::Webhook,
    registry: Arc<Registry>,
    feed: Feed,
    store: Arc<dyn EventStore>,
    sender: Sender,
    config: Arc<DispatchConfig>,
    /// Attempts not saved yet.
    pending: Mutex<Vec<Attempt>>,
    /// A delivery failed and none succeeded since.
    failing: AtomicBool,
}

fn with_jitter(base: Duration) -> Duration {
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(ms.saturating_add(rand::thread_rng().gen_range(0..=ms / 2)))
}

impl Worker {
    fn id(&self) -> Uuid {
        self.endpoint.id
    }

    async fn run(self, mut cancelled: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let r = tokio::select! {
                r = self.session() => r,
                _ = cancelled.wait_for(|c| *c) => Ok(Halt::Cancelled),
            };
            // What was attempted is listed, whatever stopped the session.
            let _ = self.flush().await;
            let e = match r {
                Ok(Halt::Cancelled) => return,
                Ok(Halt::GaveUp) => {
                    warn!(endpoint = %self.id(), reason = FAILING_TOO_LONG,
                        "webhook endpoint disabled: its deliveries kept failing");
                    return;
                }
                Err(e) => e,
            };
            warn!(endpoint = %self.id(), error = %e,
                "webhook delivery stopped by a store error; resuming from the checkpoint");
            tokio::select! {
                _ = tokio::time::sleep(with_jitter(backoff)) => {}
                _ = cancelled.wait_for(|c| *c) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    fn scope(&self) -> Scope {
        self.endpoint.owner.map_or(Scope::All, Scope::Broadcaster)
    }

    /// Delivers from the checkpoint as the log grows; ends only when the endpoint
    /// is given up, or with an error.
    async fn session(&self) -> Result<Halt, RegistryError> {
        let id = self.id();
        self.registry.apply_rewind(id).await?;
        let mut position = self.registry.checkpoint(id).await?;
        info!(endpoint = %id, checkpoint = position, revision = self.revision,
            "webhook delivery started");
        loop {
            for p in self.registry.take_redeliveries(id) {
                self.redeliver(p).await?;
            }
            let page = self
                .feed
                .page(&FeedQuery {
                    after: position,
                    limit: PAGE,
                    types: self.endpoint.event_types.clone(),
                    scope: self.scope(),
                })
                .await?;
            if !page.events.is_empty() {
                if let Some(halt) = self.deliver_all(&page.events).await? {
                    return Ok(halt);
                }
            }
            self.flush().await?;
            if page.next_after > position {
                // Only now: every message up to here was answered 2xx.
                self.registry.advance(id, page.next_after).await?;
                position = page.next_after;
            }
            if page.at_end {
                let head = self
                    .store
                    .head()
                    .await
                    .map_err(ledger_app::AppError::from)?;
                if head > position {
                    // The read side (which scopes a tenant's events) is behind.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                } else {
                    self.store
                        .wait_for_head(position, Duration::from_secs(1))
                        .await
                        .map_err(ledger_app::AppError::from)?;
                }
            }
        }
    }

    /// A page's messages: each customer's in order, up to `concurrency` customers
    /// at once.
    async fn deliver_all(&self, events: &[PublicEvent]) -> Result<Option<Halt>, RegistryError> {
        let mut groups: Vec<Vec<&PublicEvent>> = Vec::new();
        let mut index: HashMap<Option<&str>, usize> = HashMap::new();
        for e in events {
            let key = e.customer_id.as_deref();
            let i = *index.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[i].push(e);
        }
        let mut groups = groups.into_iter();
        let mut running = FuturesUnordered::new();
        for g in groups.by_ref().take(self.config.concurrency.max(1)) {
            running.push(self.deliver_group(g));
        }
        let mut halt = None;
        while let Some(r) = running.next().await {
            if let Some(h) = r? {
                halt = Some(h);
            }
            if let Some(g) = groups.next() {
                running.push(self.deliver_group(g));
            }
        }
        Ok(halt)
    }

    /// One customer's messages, in order.
    async fn deliver_group(&self, g: Vec<&PublicEvent>) -> Result<Option<Halt>, RegistryError> {
        for e in g {
            if let Some(h) = self.deliver(e).await? {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    /// One message until it is answered 2xx, or the endpoint is given up.
    async fn deliver(&self, e: &PublicEvent) -> Result<Option<Halt>, RegistryError> {
        let body = serde_json::to_vec(e).unwrap_or_default();
        let mut wait = self.config.first_retry;
        let mut trigger = "delivery";
        loop {
            let o = self.attempt(e, &body, trigger).await;
            if o.succeeded() {
                if self.failing.swap(false, Ordering::Relaxed) {
                    self.registry.recovered(self.id()).await?;
                }
                return Ok(None);
            }
            self.failing.store(true, Ordering::Relaxed);
            self.flush().await?;
            let since = self.registry.failing(self.id()).await?;
            let failing_ms = Timestamp::now().millis().saturating_sub(since.millis());
            if u128::try_from(failing_ms).unwrap_or(0) >= self.config.give_up_after.as_millis() {
                self.registry.give_up(self.id(), FAILING_TOO_LONG).await?;
                return Ok(Some(Halt::GaveUp));
            }
            let pause = with_jitter(wait);
            warn!(endpoint = %self.id(), position = e.position, code = o.error.unwrap_or(""),
                status = o.status.unwrap_or(0),
                retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                "webhook delivery failed; retrying");
            tokio::time::sleep(pause).await;
            wait = (wait * 2).min(self.config.max_retry_interval);
            trigger = "retry";
        }
    }

    /// The message of the record at `position` once more, if this endpoint
    /// receives it: one attempt, listed like the others.
    async fn redeliver(&self, position: u64) -> Result<(), RegistryError> {
        let page = self
            .feed
            .page(&FeedQuery {
                after: position.saturating_sub(1),
                limit: 1,
                types: self.endpoint.event_types.clone(),
                scope: self.scope(),
            })
            .await?;
        if let Some(e) = page.events.iter().find(|e| e.position == position) {
            let body = serde_json::to_vec(e).unwrap_or_default();
            self.attempt(e, &body, "redelivery").await;
        }
        Ok(())
    }

    async fn attempt(&self, e: &PublicEvent, body: &[u8], trigger: &str) -> Outcome {
        let at = Timestamp::now();
        let o = self
            .sender
            .send(&self.endpoint.url, &self.signer, &e.id, body)
            .await;
        metrics::counter!("ledger_webhook_attempts_total",
            "outcome" => if o.succeeded() { "succeeded" } else { "failed" })
        .increment(1);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Attempt {
                message_id: e.id.clone(),
                position: e.position,
                event_type: e.event_type,
                attempted_at: at,
                outcome: if o.succeeded() { "succeeded" } else { "failed" }.to_owned(),
                response_status: o.status,
                error: o.error.map(str::to_owned),
                latency_ms: u64::try_from(o.latency.as_millis()).unwrap_or(u64::MAX),
                trigger: trigger.to_owned(),
            });
        o
    }

    async fn flush(&self) -> Result<(), RegistryError> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        self.registry.record_attempts(self.id(), batch).await
    }
}
