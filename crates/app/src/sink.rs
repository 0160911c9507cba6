//! Outbound sinks: the public events ([`crate::feed::public_event`], every tenant)
//! pushed to a broker in log order, driven by log position with a durable
//! checkpoint. The broker itself is behind [`Connector`] and [`Publisher`]
//! (`ledger-sink-nats` implements them for NATS JetStream), so this module holds
//! no client and the loop is tested without a server.
//!
//! # Delivery
//!
//! At least once, in log order. A session connects, reads the checkpoint (the last
//! position the destination acknowledged, kept in the view store:
//! [`ViewStore::sink_position`]), then repeatedly reads a page of the log after it,
//! hands the page's public events to the publisher, which sends them all and
//! returns once every one is acknowledged, and only then saves the page's last
//! position as the new checkpoint. A crash between an acknowledgement and the
//! save publishes those events again after the restart; each carries its stable
//! event id, which the destination deduplicates on (JetStream's `Nats-Msg-Id`).
//!
//! # Failures
//!
//! Any error (connection refused or lost, a publish refused or not acknowledged in
//! time, the store unavailable) ends the session: the loop reports it in
//! [`Health`] (state `retrying`, never a failing part), waits a backoff that
//! doubles from 250 ms up to 30 s with up to 50 % random jitter, and starts a new
//! session from the checkpoint. It runs on its own task and holds nothing the API
//! needs, so a dead broker never delays a request. Logs name positions, ids and
//! error codes only: public events hold no personal value anyway.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ledger_projections::ViewStore;
use ledger_public_events::PublicEvent;
use ledger_store::EventStore;
use rand::Rng;
use tracing::{info, warn};

use crate::feed::{public_event, READ_PAGE};
use crate::health::{Health, SinkState, SinkStatus};
use crate::AppError;

/// Why a sink's session ended.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination cannot be reached, refused, or did not acknowledge in time.
    /// `code` is a stable upper-case code; `message` names no personal value.
    #[error("{code}: {message}")]
    Destination { code: &'static str, message: String },
    /// The log or the checkpoint store failed.
    #[error(transparent)]
    App(#[from] AppError),
}

impl SinkError {
    pub fn destination(code: &'static str, message: impl Into<String>) -> Self {
        SinkError::Destination {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            SinkError::Destination { code, .. } => code,
            SinkError::App(e) => e.code(),
        }
    }
}

/// A connected destination.
pub trait Publisher: Send {
    /// Publishes `events` in order and returns once the destination has
    /// acknowledged every one of them (an error: some may be stored, none is
    /// known to be).
    fn publish(
        &mut self,
        events: &[PublicEvent],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// What a session starts with.
#[derive(Debug)]
pub struct Connected<P> {
    pub publisher: P,
    /// The destination was created by this connection (a new JetStream stream):
    /// it holds nothing, so publishing starts again from the beginning of the log
    /// whatever the checkpoint says.
    pub created: bool,
}

/// Opens sessions to a destination.
pub trait Connector: Send + Sync {
    type Publisher: Publisher;
    fn connect(&self)
        -> impl Future<Output = Result<Connected<Self::Publisher>, SinkError>> + Send;
}

/// The first backoff after a failure, and the most it grows to.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// `base` plus up to half of it again, at random (so that many ledgers, or many
/// sinks, do not retry in step).
fn with_jitter(base: Duration) -> Duration {
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(ms.saturating_add(rand::thread_rng().gen_range(0..=ms / 2)))
}

fn task_failed() -> AppError {
    AppError::Views(ledger_projections::ViewStoreError::Backend(
        "the checkpoint task failed".into(),
    ))
}

/// A sink: the log's public events to one destination, with its own checkpoint.
#[derive(Debug)]
pub struct Sink<C> {
    store: Arc<dyn EventStore>,
    views: Arc<dyn ViewStore>,
    /// The checkpoint's name in the view store (e.g. `nats:LEDGER`).
    name: String,
    connector: C,
}

impl<C: Connector> Sink<C> {
    pub fn new(
        store: Arc<dyn EventStore>,
        views: Arc<dyn ViewStore>,
        name: impl Into<String>,
        connector: C,
    ) -> Self {
        Self {
            store,
            views,
            name: name.into(),
            connector,
        }
    }

    /// The last position the destination acknowledged.
    pub async fn checkpoint(&self) -> Result<u64, AppError> {
        let (views, name) = (self.views.clone(), self.name.clone());
        tokio::task::spawn_blocking(move || views.sink_position(&name))
            .await
            .map_err(|_| task_failed())?
            .map_err(AppError::from)
    }

    async fn save(&self, position: u64) -> Result<(), AppError> {
        let (views, name) = (self.views.clone(), self.name.clone());
        tokio::task::spawn_blocking(move || views.save_sink_position(&name, position))
            .await
            .map_err(|_| task_failed())?
            .map_err(AppError::from)
    }

    /// Publishes until `stop` resolves, never giving up (see the module
    /// documentation); reports into `health`.
    pub async fn run(&self, stop: impl Future<Output = ()>, health: &Health) {
        tokio::pin!(stop);
        let mut backoff = BACKOFF_FIRST;
        let mut position = 0;
        loop {
            health.set_sink(SinkStatus {
                state: SinkState::Connecting,
                position,
                error: None,
            });
            let session = self.session(health, &mut position, &mut backoff);
            let err = tokio::select! {
                _ = &mut stop => return,
                Err(e) = session => e,
            };
            let wait = with_jitter(backoff);
            health.set_sink(SinkStatus {
                state: SinkState::Retrying,
                position,
                error: Some(err.code()),
            });
            warn!(
                sink = %self.name,
                code = err.code(),
                error = %err,
                checkpoint = position,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "publisher failed; retrying from the checkpoint after a backoff"
            );
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One session: connect, then publish from the checkpoint as the log grows.
    /// Ends only with an error; `position` follows the checkpoint, and `backoff`
    /// is reset once a page is acknowledged.
    async fn session(
        &self,
        health: &Health,
        position: &mut u64,
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, SinkError> {
        let Connected {
            mut publisher,
            created,
        } = self.connector.connect().await?;
        *position = self.checkpoint().await?;
        if created && *position > 0 {
            info!(sink = %self.name, checkpoint = *position,
                "the destination is new: publishing the log again from its start");
            self.save(0).await?;
            *position = 0;
        }
        info!(sink = %self.name, checkpoint = *position, "publisher connected");
        loop {
            health.set_sink(SinkStatus {
                state: SinkState::Publishing,
                position: *position,
                error: None,
            });
            let records = self
                .store
                .read_all(*position, READ_PAGE)
                .await
                .map_err(AppError::from)?;
            let Some(last) = records.last().map(|r| r.position) else {
                // At the head: wait for a commit (or a second, to look again).
                self.store
                    .wait_for_head(*position, Duration::from_secs(1))
                    .await
                    .map_err(AppError::from)?;
                continue;
            };
            let mut events = Vec::with_capacity(records.len());
            for r in &records {
                if let Some(e) = public_event(r)? {
                    events.push(e);
                }
            }
            if !events.is_empty() {
                publisher.publish(&events).await?;
            }
            // Only now, every event up to `last` acknowledged.
            self.save(last).await?;
            *position = last;
            *backoff = BACKOFF_FIRST;
        }
    }
}
