//! The endpoints, their checkpoints and their attempts, kept in the view store;
//! what the API manages and the dispatcher follows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use ledger_app::AppError;
use ledger_projections::{ViewStore, ViewStoreError};
use ledger_public_events::EventType;
use ledger_store::EventStore;
use ledger_types::{BroadcasterId, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::endpoint::{check_url, new_secret, Endpoint, UrlError, MAX_DESCRIPTION_LEN};

/// How many attempts are kept per endpoint (the oldest are forgotten first).
pub const KEPT_ATTEMPTS: usize = 10_000;

/// Whose endpoints a caller manages: a broadcaster's own, or the operator's
/// platform-wide ones. Neither sees the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Broadcaster(BroadcasterId),
    Platform,
}

impl Owner {
    fn of(e: &Endpoint) -> Owner {
        e.owner.map_or(Owner::Platform, Owner::Broadcaster)
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such endpoint for this owner (another owner's is not found either).
    #[error("no such webhook endpoint")]
    NotFound,
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A field other than the URL is invalid; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    /// A position past the log's head.
    #[error("the position is past the log's head")]
    PastHead,
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<ViewStoreError> for RegistryError {
    fn from(e: ViewStoreError) -> Self {
        RegistryError::App(AppError::Views(e))
    }
}

/// What a new endpoint is made of.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    pub url: String,
    pub event_types: Option<BTreeSet<EventType>>,
    pub description: Option<String>,
}

/// A change to an endpoint; `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    /// `Some(None)`: every type.
    pub event_types: Option<Option<BTreeSet<EventType>>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// One delivery attempt, as listed (never the response body).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// The message's `webhook-id` (the public event's id).
    pub message_id: String,
    pub position: u64,
    pub event_type: EventType,
    pub attempted_at: Timestamp,
    /// `succeeded` (a 2xx answer) or `failed`.
    pub outcome: String,
    /// The HTTP status answered, if any.
    pub response_status: Option<u16>,
    /// Why it failed without an answer or with a non-2xx one (`HTTP_STATUS`,
    /// `TIMEOUT`, `CONNECT_FAILED`, `DNS_FAILED`, `TLS_FAILED`,
    /// `ADDRESS_NOT_PUBLIC`, `REQUEST_FAILED`).
    pub error: Option<String>,
    pub latency_ms: u64,
    /// `delivery`, `retry` or `redelivery` (asked for through the API).
    pub trigger: String,
}

/// The endpoints, shared by the API and the dispatcher.
#[derive(Debug)]
pub struct Registry {
    views: Arc<dyn ViewStore>,
    store: Arc<dyn EventStore>,
    endpoints: Mutex<BTreeMap<Uuid, Endpoint>>,
    /// Single messages (positions) to deliver again, per endpoint.
    redeliveries: Mutex<HashMap<Uuid, Vec<u64>>>,
    /// Bumped at every change, so the dispatcher looks again.
    changes: watch::Sender<u64>,
    /// Held by every change of an endpoint's document (read, change, save), so
    /// that the API's changes and the dispatcher's never overwrite each other.
    writing: tokio::sync::Mutex<()>,
    loaded: tokio::sync::OnceCell<()>,
}

fn task_failed() -> RegistryError {
    RegistryError::App(AppError::Io("a view store task failed".into()))
}

/// Runs a blocking view store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ViewStoreError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| task_failed())?
        .map_err(RegistryError::from)
}

fn encode(e: &Endpoint) -> Result<String, RegistryError> {
    serde_json::to_string(e).map_err(|_| {
        RegistryError::App(AppError::Views(ViewStoreError::Backend(
            "an endpoint could not be encoded".into(),
        )))
    })
}

fn check_description(d: Option<String>) -> Result<Option<String>, RegistryError> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_LEN || d.chars().any(char::is_control) => {
            Err(RegistryError::Invalid {
                field: "description",
                message: "at most 200 characters, no control characters",
            })
        }
        d => Ok(d),
    }
}

impl Registry {
    /// The registry over `views`; the endpoints saved there are read at the
    /// first [`ready`](Self::ready).
    pub fn new(views: Arc<dyn ViewStore>, store: Arc<dyn EventStore>) -> Arc<Self> {
        Arc::new(Self {
            views,
            store,
            endpoints: Mutex::new(BTreeMap::new()),
            redeliveries: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
            writing: tokio::sync::Mutex::new(()),
            loaded: tokio::sync::OnceCell::new(),
        })
    }

    /// Reads the saved endpoints, once (again after a failure); every operation
    /// of the API and the dispatcher waits for it.
    pub async fn ready(&self) -> Result<(), RegistryError> {
        self.loaded
            .get_or_try_init(|| async {
                let v = self.views.clone();
                let docs = blocking(move || v.webhook_endpoints()).await?;
                let mut endpoints = BTreeMap::new();
                for d in docs {
                    let e: Endpoint = serde_json::from_str(&d).map_err(|_| {
                        RegistryError::App(AppError::Views(ViewStoreError::Corrupt(
                            "webhook endpoint".into(),
                        )))
                    })?;
                    endpoints.insert(e.id, e);
                }
                *self.lock() = endpoints;
                self.changed();
                Ok::<_, RegistryError>(())
            })
            .await
            .map(|_| ())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, Endpoint>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|g| *g += 1);
    }

    /// Wakes at every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every endpoint.
    pub fn all(&self) -> Vec<Endpoint> {
        self.lock().values().cloned().collect()
    }

    /// One endpoint, whoever owns it (the dispatcher's view).
    pub fn endpoint(&self, id: Uuid) -> Option<Endpoint> {
        self.lock().get(&id).cloned()
    }

    /// `owner`'s endpoints, oldest first.
    pub fn list(&self, owner: Owner) -> Vec<Endpoint> {
        let mut v: Vec<Endpoint> = self
            .lock()
            .values()
            .filter(|e| Owner::of(e) == owner)
            .cloned()
            .collect();
        v.sort_by_key(|e| (e.created_at, e.id));
        v
    }

    /// One of `owner`'s endpoints.
    pub fn get(&self, owner: Owner, id: Uuid) -> Result<Endpoint, RegistryError> {
        self.lock()
            .get(&id)
            .filter(|e| Owner::of(e) == owner)
            .cloned()
            .ok_or(RegistryError::NotFound)
    }

    /// The position an endpoint has been delivered up to.
    pub async fn checkpoint(&self, id: Uuid) -> Result<u64, RegistryError> {
        let v = self.views.clone();
        blocking(move || v.sink_position(&Endpoint::checkpoint_name(id))).await
    }

    async fn save_checkpoint(&self, id: Uuid, position: u64) -> Result<(), RegistryError> {
        let v = self.views.clone();
        blocking(move || v.save_sink_position(&Endpoint::checkpoint_name(id), position)).await
    }

    /// Saves an endpoint's document, then the registry's copy (callers hold
    /// `writing`, so nothing changed it meanwhile).
    async fn save(&self, e: &Endpoint) -> Result<(), RegistryError> {
        let (v, id, doc) = (self.views.clone(), e.id.to_string(), encode(e)?);
        blocking(move || v.put_webhook_endpoint(&id, Some(&doc))).await?;
        self.lock().insert(e.id, e.clone());
        Ok(())
    }

    /// Creates an endpoint that receives the events committed from now on, and
    /// returns it with its secret (which no later answer shows again).
    pub async fn create(
        &self,
        owner: Owner,
        new: NewEndpoint,
        allow_private: bool,
    ) -> Result<(Endpoint, String), RegistryError> {
        check_url(&new.url, allow_private)?;
        let description = check_description(new.description)?;
        let now = Timestamp::now();
        let secret = new_secret();
        let e = Endpoint {
            id: Uuid::now_v7(),
            owner: match owner {
                Owner::Broadcaster(b) => Some(b),
                Owner::Platform => None,
            },
            url: new.url,
            event_types: new.event_types,
            description,
            secret: secret.clone(),
            enabled: true,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
            failing_since: None,
            revision: 1,
            rewind_to: None,
        };
        // The checkpoint first: an endpoint never saved without it would start
        // from the log's beginning.
        let head = self
            .store
            .head()
            .await
            .map_err(|e| RegistryError::App(e.into()))?;
        self.save_checkpoint(e.id, head).await?;
        Ok((self.replace(e).await?, secret))
    }

    /// Applies `patch` to one of `owner`'s endpoints. Enabling a disabled one
    /// resumes its deliveries from its checkpoint and restarts the failure clock.
    pub async fn update(
        &self,
        owner: Owner,
        id: Uuid,
        patch: EndpointPatch,
        allow_private: bool,
    ) -> Result<Endpoint, RegistryError> {
        let _w = self.writing.lock().await;
        let mut e = self.get(owner, id)?;
        if let Some(url) = patch.url {
            check_url(&url, allow_private)?;
            e.url = url;
            e.revision += 1;
        }
        if let Some(t) = patch.event_types {
            e.event_types = t;
            e.revision += 1;
        }
        if let Some(d) = patch.description {
            e.description = check_description(d)?;
        }
        if let Some(on) = patch.enabled {
            if on && !e.enabled {
                e.revision += 1;
                e.failing_since = None;
            }
            e.enabled = on;
            e.disabled_reason = None;
        }
        e.updated_at = Timestamp::now();
        self.replace(e).await
    }

    async fn replace(&self, e: Endpoint) -> Result<Endpoint, RegistryError> {
        self.save(&e).await?;
        self.changed();
        Ok(e)
    }

    /// Deletes one of `owner`'s endpoints (its attempts go with it).
    pub async fn delete(&self, owner: Owner, id: Uuid) -> Result<(), RegistryError> {
        let _w = self.writing.lock().await;
        self.get(owner, id)?;
        let (v, key) = (self.views.clone(), id.to_string());
        blocking(move || {
            v.put_webhook_endpoint(&key, None)?;
            v.add_webhook_attempts(&key, &[], 0)
        })
        .await?;
        self.lock().remove(&id);
        self.changed();
        Ok(())
    }

    /// Delivers everything after `position` again (the messages keep their ids),
    /// then goes on as before.
    pub async fn redeliver_since(
        &self,
        owner: Owner,
        id: Uuid,
        position: u64,
    ) -> Result<Endpoint, RegistryError> {
        let _w = self.writing.lock().await;
        let mut e = self.get(owner, id)?;
        let head = self
            .store
            .head()
            .await
            .map_err(|e| RegistryError::App(e.into()))?;
        if position > head {
            return Err(RegistryError::PastHead);
        }
        e.rewind_to = Some(position);
        e.revision += 1;
        e.updated_at = Timestamp::now();
        self.replace(e).await
    }

    /// Applies a redelivery from a position, if one was asked for: the
    /// checkpoint moves back, then the request is cleared (a crash between the
    /// two applies it again, which only delivers again).
    pub(crate) async fn apply_rewind(&self, id: Uuid) -> Result<(), RegistryError> {
        let _w = self.writing.lock().await;
        let Some(mut e) = self.endpoint(id) else {
            return Ok(());
        };
        let Some(p) = e.rewind_to.take() else {
            return Ok(());
        };
        self.save_checkpoint(id, p).await?;
        self.save(&e).await
    }

    /// Delivers the message of the record at `position` once more (if the
    /// endpoint would receive it), beside the regular deliveries.
    pub async fn redeliver_one(
        &self,
        owner: Owner,
        id: Uuid,
        position: u64,
    ) -> Result<(), RegistryError> {
        self.get(owner, id)?;
        let head = self
            .store
            .head()
            .await
            .map_err(|e| RegistryError::App(e.into()))?;
        if position == 0 || position > head {
            return Err(RegistryError::PastHead);
        }
        self.redeliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .push(position);
        Ok(())
    }

    /// The single redeliveries asked for an endpoint, taken.
    pub(crate) fn take_redeliveries(&self, id: Uuid) -> Vec<u64> {
        self.redeliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .unwrap_or_default()
    }

    /// Up to `limit` of the endpoint's attempts numbered below `before`, newest
    /// first, with their numbers.
    pub async fn attempts(
        &self,
        owner: Owner,
        id: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Attempt)>, RegistryError> {
        self.get(owner, id)?;
        let (v, key) = (self.views.clone(), id.to_string());
        let rows = blocking(move || v.webhook_attempts(&key, before, limit)).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(n, d)| serde_json::from_str(&d).ok().map(|a| (n, a)))
            .collect())
    }

    // What the dispatcher records.

    pub(crate) async fn record_attempts(
        &self,
        id: Uuid,
        attempts: Vec<Attempt>,
    ) -> Result<(), RegistryError> {
        // Nothing is kept for an endpoint deleted meanwhile (its worker is being
        // stopped): its history went with it.
        if attempts.is_empty() || self.endpoint(id).is_none() {
            return Ok(());
        }
        let docs: Vec<String> = attempts
            .iter()
            .filter_map(|a| serde_json::to_string(a).ok())
            .collect();
        let (v, key) = (self.views.clone(), id.to_string());
        blocking(move || v.add_webhook_attempts(&key, &docs, KEPT_ATTEMPTS)).await
    }

    pub(crate) async fn advance(&self, id: Uuid, position: u64) -> Result<(), RegistryError> {
        self.save_checkpoint(id, position).await
    }

    /// Notes a failed delivery; returns since when the endpoint has been failing.
    pub(crate) async fn failing(&self, id: Uuid) -> Result<Timestamp, RegistryError> {
        let _w = self.writing.lock().await;
        let Some(mut e) = self.endpoint(id) else {
            return Ok(Timestamp::now());
        };
        if let Some(since) = e.failing_since {
            return Ok(since);
        }
        let now = Timestamp::now();
        e.failing_since = Some(now);
        self.save(&e).await?;
        Ok(now)
    }

    /// Notes a successful delivery after failures.
    pub(crate) async fn recovered(&self, id: Uuid) -> Result<(), RegistryError> {
        let _w = self.writing.lock().await;
        let Some(mut e) = self.endpoint(id).filter(|e| e.failing_since.is_some()) else {
            return Ok(());
        };
        e.failing_since = None;
        self.save(&e).await
    }

    /// Disables an endpoint that kept failing for too long.
    pub(crate) async fn give_up(&self, id: Uuid, reason: &str) -> Result<(), RegistryError> {
        let _w = self.writing.lock().await;
        let Some(mut e) = self.endpoint(id) else {
            return Ok(());
        };
        e.enabled = false;
        e.disabled_reason = Some(reason.to_owned());
        e.updated_at = Timestamp::now();
        self.replace(e).await.map(|_| ())
    }

    pub(crate) fn secret_of(e: &Endpoint) -> &str {
        &e.secret
    }
}
