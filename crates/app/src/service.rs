//! The command service: load, decide, seal, append, shred.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ledger_command::{BroadcasterRef, Customer, CustomerCommand, Eraser, Refusal};
use ledger_crypto::{KeyState, Keyring};
use ledger_events::{
    streams, Actor, BroadcasterRegistered, CustomerAnonymized, CustomerEvent, DomainEvent,
    Integration, PersonalCategory, Precondition, SCHEMA_VERSION,
};
use ledger_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent, Position, StoreError};
use ledger_types::{BroadcasterId, CustomerId, EventId, KeyId, RequestId, Timestamp};
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::codec::{decode_record, encode_customer_event_as};
use crate::forget::{ForgetEntry, ForgetList};
use crate::requests::{ErasurePolicy, RequestIndex};
use crate::retry;
use crate::shred::Shredder;
use crate::{failpoint, AppError};

const MAX_ATTEMPTS: usize = 8;

/// The proof of an erasure. Holds ids, times, categories and positions only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureReceipt {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub broadcaster_id: BroadcasterId,
    pub at: String,
    pub categories_erased: Vec<PersonalCategory>,
    pub preconditions_checked: Vec<Precondition>,
    /// Global position of the `CustomerAnonymized` event.
    pub event_position: Position,
    /// Who erased: the broadcaster (and its API key's id), or the platform operator.
    pub actor: Actor,
    /// Whether the data key is gone now. False only when the key store failed
    /// after the decision was committed: the running reconciler then finishes the
    /// destruction (see [`crate::shred`]).
    pub data_key_destroyed: bool,
    /// True when the customer was already erased: this is the first erasure's
    /// receipt again, and nothing was appended.
    #[serde(skip)]
    pub repeat: bool,
    /// The decision itself, as the customer stream holds it.
    #[serde(skip)]
    pub event: CustomerAnonymized,
}

impl ErasureReceipt {
    fn of(e: &CustomerAnonymized, position: Position, destroyed: bool) -> Self {
        Self {
            request_id: e.request_id,
            customer_id: e.customer_id,
            broadcaster_id: e.broadcaster_id,
            at: e.at.to_rfc3339(),
            categories_erased: e.categories.clone(),
            preconditions_checked: e.preconditions.clone(),
            event_position: position,
            actor: e.actor(),
            data_key_destroyed: destroyed,
            repeat: false,
            event: e.clone(),
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// Number of events appended (0 for an idempotent no-op).
    pub appended: usize,
    pub last_position: Option<Position>,
    pub stream_version: u64,
}

/// Who erases a customer, as the command service takes it: a broadcaster with the
/// API key it used (none from the operator's CLI acting for it), or the platform
/// operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasedBy {
    Broadcaster {
        broadcaster_id: BroadcasterId,
        key_id: Option<KeyId>,
    },
    Operator,
}

impl ErasedBy {
    /// The actor the events record.
    pub fn actor(&self) -> Actor {
        match *self {
            ErasedBy::Broadcaster {
                broadcaster_id,
                key_id,
            } => Actor::Broadcaster {
                broadcaster_id,
                key_id,
            },
            ErasedBy::Operator => Actor::Operator,
        }
    }
}

impl From<Actor> for ErasedBy {
    fn from(a: Actor) -> Self {
        match a {
            Actor::Broadcaster {
                broadcaster_id,
                key_id,
            } => ErasedBy::Broadcaster {
                broadcaster_id,
                key_id,
            },
            Actor::Operator => ErasedBy::Operator,
        }
    }
}

/// The ledger's command side, over any event store and keyring.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(crate) store: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
    shredder: Arc<Shredder>,
    broadcasters: Arc<RwLock<HashMap<BroadcasterId, BroadcasterRegistered>>>,
    /// Where every decided erasure is also recorded, apart from the data.
    forget: Option<Arc<dyn ForgetList>>,
    /// Erasure requests: their deadlines, and the index that lists them.
    pub(crate) policy: ErasurePolicy,
    pub(crate) requests: Arc<RequestIndex>,
    /// Whether erasures share key-store transactions (group commit; the default).
    grouped_destruction: bool,
}

/// A loaded customer: its state, the stream version and its erasure's position.
struct Loaded {
    customer: Customer,
    version: u64,
    anonymized_at: Option<Position>,
    /// Each record's event id, position and stream version, in order.
    written: Vec<(EventId, Position, u64)>,
}

impl Ledger {
    pub fn new(store: Arc<dyn EventStore>, keyring: Arc<Keyring>) -> Self {
        Self {
            shredder: Arc::new(Shredder::new(store.clone(), keyring.clone())),
            requests: Arc::new(RequestIndex::new(store.clone())),
            store,
            keyring,
            broadcasters: Default::default(),
            forget: None,
            policy: ErasurePolicy::default(),
            grouped_destruction: true,
        }
    }

    /// Whether concurrent erasures destroy their keys in one key-store transaction
    /// (`true`, the default: [`Shredder::destroy_grouped`]) or one transaction each
    /// (`false`: what `ledger bench --erasures` compares it with).
    pub fn with_grouped_destruction(mut self, grouped: bool) -> Self {
        self.grouped_destruction = grouped;
        self
    }

    /// Sets how long erasure requests have before they are due.
    pub fn with_erasure_policy(mut self, policy: ErasurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The erasure requests, as folded from the log (see [`RequestIndex`]).
    pub fn requests(&self) -> &Arc<RequestIndex> {
        &self.requests
    }

    /// Records every erasure this ledger decides on `list` too (see
    /// [`crate::forget`]).
    pub fn with_forget_list(mut self, list: Arc<dyn ForgetList>) -> Self {
        self.forget = Some(list);
        self
    }

    /// The forget list, if one is kept.
    pub fn forget_list(&self) -> Option<&Arc<dyn ForgetList>> {
        self.forget.as_ref()
    }

    /// The tracker of pending key destructions (the running reconciler).
    pub fn shredder(&self) -> &Arc<Shredder> {
        &self.shredder
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Runs a key-store operation (SQLite I/O with fsync) on the blocking pool, so
    /// it never stalls the async workers that serve other requests.
    pub(crate) async fn keys<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Keyring) -> Result<T, ledger_crypto::CryptoError> + Send + 'static,
    ) -> Result<T, AppError> {
        let k = self.keyring.clone();
        Ok(tokio::task::spawn_blocking(move || f(&k))
            .await
            .map_err(|_| AppError::Io("key store task panicked".into()))??)
    }

    /// Registers a broadcaster (a tenant). Its integration type never changes.
    #[instrument(skip(self, name))]
    pub async fn register_broadcaster(
        &self,
        id: BroadcasterId,
        name: &str,
        integration: Integration,
        at: Timestamp,
    ) -> Result<(), AppError> {
        let event = BroadcasterRegistered {
            broadcaster_id: id,
            name: name.to_owned(),
            integration,
            at,
        };
        let req = AppendRequest {
            stream: streams::broadcaster(id),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent {
                event_id: EventId::new(),
                event_type: BroadcasterRegistered::EVENT_TYPE.to_owned(),
                schema_version: SCHEMA_VERSION,
                payload: event.encode()?,
                recorded_at: at,
            }],
        };
        match self.store.append(req).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => return Err(AppError::BroadcasterExists),
            Err(e) => return Err(e.into()),
        }
        self.remember_broadcaster(event);
        Ok(())
    }

    fn remember_broadcaster(&self, e: BroadcasterRegistered) {
        if let Ok(mut m) = self.broadcasters.write() {
            m.insert(e.broadcaster_id, e);
        }
    }

    /// The broadcaster, if registered.
    pub async fn broadcaster(&self, id: BroadcasterId) -> Result<BroadcasterRegistered, AppError> {
        if let Some(b) = self
            .broadcasters
            .read()
            .ok()
            .and_then(|m| m.get(&id).cloned())
        {
            return Ok(b);
        }
        let records = self.store.read_stream(&streams::broadcaster(id), 1).await?;
        for r in &records {
            if let DomainEvent::Broadcaster(_, b) = decode_record(r)? {
                self.remember_broadcaster(b.clone());
                return Ok(b);
            }
        }
        Err(AppError::UnknownBroadcaster)
    }

    async fn load(&self, c: CustomerId) -> Result<Loaded, AppError> {
        let records = self.store.read_stream(&streams::customer(c), 1).await?;
        let mut customer = Customer::default();
        let mut anonymized_at = None;
        let mut written = Vec::with_capacity(records.len());
        for r in &records {
            let e = CustomerEvent::decode(&r.event_type, r.schema_version, &r.payload)?;
            if matches!(e, CustomerEvent::Anonymized(_)) && anonymized_at.is_none() {
                anonymized_at = Some(r.position);
            }
            customer.apply(&e);
            written.push((r.event_id, r.position, r.version));
        }
        Ok(Loaded {
            customer,
            version: records.last().map_or(0, |r| r.version),
            anonymized_at,
            written,
        })
    }

    /// What a keyed command appended before, if the stream holds the events whose
    /// ids it derives (`retry`): the write committed and its answer was lost.
    fn appended_before(
        &self,
        c: CustomerId,
        cmd: &CustomerCommand,
        loaded: &Loaded,
    ) -> Option<Executed> {
        let first = retry::event_id(&self.keyring, c, cmd, 0)?;
        let start = loaded.written.iter().position(|w| w.0 == first)?;
        let mut n = 1;
        while let Some(next) = loaded.written.get(start + n) {
            if retry::event_id(&self.keyring, c, cmd, n as u32) != Some(next.0) {
                break;
            }
            n += 1;
        }
        let (_, position, version) = loaded.written[start + n - 1];
        Some(Executed {
            appended: n,
            last_position: Some(position),
            stream_version: version,
        })
    }

    /// The customer's current state (for read-side callers and tests).
    pub async fn customer(&self, c: CustomerId) -> Result<Customer, AppError> {
        Ok(self.load(c).await?.customer)
    }

    /// Runs a command on a customer: decide, seal, append with optimistic
    /// concurrency, retrying on a concurrent change.
    #[instrument(skip(self, cmd), fields(command = cmd.name()))]
    pub async fn execute(
        &self,
        c: CustomerId,
        cmd: &CustomerCommand,
    ) -> Result<Executed, AppError> {
        Ok(self.execute_loaded(c, cmd).await?.0)
    }

    /// [`execute`](Self::execute), also answering the customer as the command
    /// left it without reading the stream again: the state loaded to decide, with
    /// the appended events applied in memory (`apply` never reads a personal
    /// block, so an open event applies as its sealed record would). Its
    /// `written` list holds only what was loaded.
    async fn execute_loaded(
        &self,
        c: CustomerId,
        cmd: &CustomerCommand,
    ) -> Result<(Executed, Loaded), AppError> {
        if let CustomerCommand::Register { .. } = cmd {
            self.keys(move |k| k.ensure_keys(&[c])).await?;
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut loaded = self.load(c).await?;
            if let Some(done) = self.appended_before(c, cmd, &loaded) {
                return Ok((done, loaded));
            }
            let events = loaded.customer.handle(cmd)?;
            if events.is_empty() {
                let done = Executed {
                    appended: 0,
                    last_position: None,
                    stream_version: loaded.version,
                };
                return Ok((done, loaded));
            }
            let mut after = loaded.customer.clone();
            events.iter().for_each(|e| after.apply(e));
            let anonymized = events
                .iter()
                .position(|e| matches!(e, CustomerEvent::Anonymized(_)));
            let at = Timestamp::now();
            let n = events.len();
            let new = events
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    let id = retry::event_id(&self.keyring, c, cmd, i as u32).unwrap_or_default();
                    encode_customer_event_as(&self.keyring, c, id, e, at)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let expected = if loaded.version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(loaded.version)
            };
            let req = AppendRequest {
                stream: streams::customer(c),
                expected,
                events: new,
            };
            match self.store.append(req).await {
                Ok(r) => {
                    let done = Executed {
                        appended: n,
                        last_position: Some(r.last_position),
                        stream_version: r.stream_version,
                    };
                    // One append's records have consecutive positions; a store
                    // that answered otherwise is read again rather than trusted.
                    let span = r.last_position.checked_sub(r.first_position);
                    if span.map(|s| s + 1) != Some(n as u64) {
                        return Ok((done, self.load(c).await?));
                    }
                    loaded.customer = after;
                    loaded.version = r.stream_version;
                    if loaded.anonymized_at.is_none() {
                        loaded.anonymized_at = anonymized.map(|i| r.first_position + i as u64);
                    }
                    return Ok((done, loaded));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Contention)
    }

    /// Erases a customer on behalf of a broadcaster: appends `CustomerAnonymized`
    /// (the durable decision) and then destroys the data key. A repeat returns the
    /// first receipt (with `repeat` set).
    ///
    /// The work runs in a task of its own: once started, dropping the returned
    /// future (a client that went away, a request timeout) does not stop it half
    /// way. If the key store fails after the decision is committed, the receipt
    /// says `data_key_destroyed: false` and the running reconciler finishes it.
    #[instrument(skip(self))]
    pub async fn anonymize(
        &self,
        broadcaster: BroadcasterId,
        customer: CustomerId,
        request_id: RequestId,
    ) -> Result<ErasureReceipt, AppError> {
        let by = ErasedBy::Broadcaster {
            broadcaster_id: broadcaster,
            key_id: None,
        };
        self.erase(by, customer, request_id).await
    }

    /// [`Ledger::anonymize`] by any eraser: a broadcaster acting with an API key,
    /// or the platform operator (then only active subscriptions, with any
    /// broadcaster, block it).
    #[instrument(skip(self))]
    pub async fn erase(
        &self,
        by: ErasedBy,
        customer: CustomerId,
        request_id: RequestId,
    ) -> Result<ErasureReceipt, AppError> {
        let me = self.clone();
        tokio::spawn(async move { me.erase_to_the_end(by, customer, request_id).await })
            .await
            .map_err(|_| AppError::Io("erasure task panicked".into()))?
    }

    /// The aggregate's view of an eraser (the broadcaster's integration is loaded
    /// from its stream). An unknown broadcaster cannot see any customer.
    pub(crate) async fn eraser(&self, by: ErasedBy) -> Result<Eraser, AppError> {
        match by {
            ErasedBy::Operator => Ok(Eraser::Operator),
            ErasedBy::Broadcaster { broadcaster_id, .. } => {
                match self.broadcaster(broadcaster_id).await {
                    Ok(b) => Ok(Eraser::Broadcaster(BroadcasterRef::from(&b))),
                    Err(AppError::UnknownBroadcaster) => Err(Refusal::NotFound.into()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn erase_to_the_end(
        &self,
        by: ErasedBy,
        customer: CustomerId,
        request_id: RequestId,
    ) -> Result<ErasureReceipt, AppError> {
        let at = Timestamp::now();
        let cmd = match (self.eraser(by).await?, by) {
            (Eraser::Broadcaster(b), ErasedBy::Broadcaster { key_id, .. }) => {
                CustomerCommand::Anonymize {
                    request_id,
                    broadcaster: b,
                    key_id,
                    at,
                }
            }
            _ => CustomerCommand::AnonymizeAsOperator { request_id, at },
        };
        let (executed, loaded) = self.execute_loaded(customer, &cmd).await?;
        let (Some(receipt), Some(position)) = (loaded.customer.anonymized(), loaded.anonymized_at)
        else {
            return Err(Refusal::NotFound.into());
        };
        let repeat = executed.appended == 0;
        if repeat {
            let state = self.keys(move |k| k.state(customer)).await?;
            if !matches!(state, KeyState::Active(_)) {
                return Ok(ErasureReceipt {
                    repeat,
                    ..ErasureReceipt::of(receipt, position, true)
                });
            }
        }
        self.shredder.note(customer);
        if let Some(list) = &self.forget {
            let entry = ForgetEntry {
                customer_id: customer,
                request_id: receipt.request_id,
                broadcaster_id: receipt.broadcaster_id,
                position,
                at: receipt.at,
            };
            // The decision is committed either way; a missing entry is added from
            // the log by the next start's restore check.
            let list = list.clone();
            let r = tokio::task::spawn_blocking(move || list.append(&[entry])).await;
            if !matches!(r, Ok(Ok(()))) {
                warn!(%customer, "could not append the erasure to the forget list; the next start adds it");
            }
        }
        failpoint::hit(failpoint::AFTER_ANONYMIZE_APPEND);
        let destruction = if self.grouped_destruction {
            self.shredder.destroy_grouped(vec![customer]).await
        } else {
            self.shredder.destroy(vec![customer]).await
        };
        let destroyed = match destruction {
            Ok(n) => {
                if !repeat {
                    info!(%customer, position, keys_destroyed = n, "customer anonymized");
                }
                true
            }
            // The decision is committed: answer it, and let the reconciler finish.
            Err(e) if e.storage_condition().is_some() => false,
            Err(e) => return Err(e),
        };
        Ok(ErasureReceipt {
            repeat,
            ..ErasureReceipt::of(receipt, position, destroyed)
        })
    }

    /// The receipt of a past erasure, if the customer was erased and the caller can
    /// see it.
    pub async fn receipt(
        &self,
        broadcaster: BroadcasterId,
        customer: CustomerId,
    ) -> Result<Option<ErasureReceipt>, AppError> {
        let loaded = self.load(customer).await?;
        if !loaded.customer.is_visible_to(broadcaster) {
            return Err(Refusal::NotFound.into());
        }
        let state = self.keys(move |k| k.state(customer)).await?;
        let destroyed = !matches!(state, KeyState::Active(_));
        Ok(loaded
            .customer
            .anonymized()
            .zip(loaded.anonymized_at)
            .map(|(e, p)| ErasureReceipt::of(e, p, destroyed)))
    }

    /// Finishes every erasure the log records but whose key is not yet destroyed
    /// (a crash, or a key store that failed): one sweep of the [`Shredder`].
    /// Returns how many keys it destroyed.
    #[instrument(skip(self))]
    pub async fn reconcile(&self) -> Result<usize, AppError> {
        self.shredder.sweep().await
    }
}
