//! The few KurrentDB operations the store uses, behind a small trait so that the
//! store's logic runs against the real client and, in unit tests, against an
//! in-memory emulation of the server (`fake.rs`).

use async_trait::async_trait;
use kurrentdb::{
    AppendToStreamOptions, Client, EventData, ReadAllOptions, ReadStreamOptions, RetryOptions,
    StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionFilter,
};
use uuid::Uuid;

/// A position in `$all` (KurrentDB's commit/prepare pair), ordered like the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct AllPos {
    pub commit: u64,
    pub prepare: u64,
}

impl From<kurrentdb::Position> for AllPos {
    fn from(p: kurrentdb::Position) -> Self {
        Self {
            commit: p.commit,
            prepare: p.prepare,
        }
    }
}

impl From<AllPos> for kurrentdb::Position {
    fn from(p: AllPos) -> Self {
        Self {
            commit: p.commit,
            prepare: p.prepare,
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawNew {
    pub id: Uuid,
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

/// An event as read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub stream_id: String,
    pub id: Uuid,
    pub revision: u64,
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
    pub all: AllPos,
}

pub type KResult<T> = Result<T, kurrentdb::Error>;

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if its state is `state`; returns the
    /// write's `$all` position.
    async fn append(
        &self,
        stream: &str,
        state: StreamState,
        events: Vec<RawNew>,
    ) -> KResult<AllPos>;

    /// Up to `max` events of `stream` from revision `from` forwards. An unknown
    /// stream is empty.
    async fn read_stream(&self, stream: &str, from: u64, max: usize) -> KResult<Vec<RawEvent>>;

    /// Up to `max` events of `$all` in streams starting with `prefix`, forwards
    /// from `from` (the server may or may not include the event at `from`:
    /// callers de-duplicate by their own position).
    async fn read_all(
        &self,
        from: Option<AllPos>,
        prefix: &str,
        max: usize,
    ) -> KResult<Vec<RawEvent>>;

    /// A catch-up subscription to `$all` filtered on `prefix`, from `from`.
    async fn subscribe_all(&self, from: Option<AllPos>, prefix: &str) -> Box<dyn AllSubscription>;
}

#[async_trait]
pub trait AllSubscription: Send {
    async fn next(&mut self) -> KResult<RawEvent>;
}

/// The real cluster, through the official client.
#[derive(Clone)]
pub struct KurrentBackend {
    client: Client,
}

impl std::fmt::Debug for KurrentBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The settings hold the connection string's credentials: never print them.
        f.write_str("KurrentBackend")
    }
}

impl KurrentBackend {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn raw(e: kurrentdb::ResolvedEvent) -> Option<RawEvent> {
    let r = e.event?;
    Some(RawEvent {
        stream_id: r.stream_id().to_owned(),
        id: r.id,
        revision: r.revision,
        event_type: r.event_type,
        data: r.data.to_vec(),
        metadata: r.custom_metadata.to_vec(),
        all: r.position.into(),
    })
}

fn start(from: Option<AllPos>) -> StreamPosition<kurrentdb::Position> {
    match from {
        None => StreamPosition::Start,
        Some(p) => StreamPosition::Position(p.into()),
    }
}

#[async_trait]
impl Backend for KurrentBackend {
    async fn append(
        &self,
        stream: &str,
        state: StreamState,
        events: Vec<RawNew>,
    ) -> KResult<AllPos> {
        let events: Vec<EventData> = events
            .into_iter()
            .map(|e| {
                EventData::binary(e.event_type, e.data.into())
                    .id(e.id)
                    .metadata(e.metadata.into())
            })
            .collect();
        let options = AppendToStreamOptions::default().stream_state(state);
        let r = self
            .client
            .append_to_stream(stream, &options, events)
            .await?;
        Ok(r.position.into())
    }

    async fn read_stream(&self, stream: &str, from: u64, max: usize) -> KResult<Vec<RawEvent>> {
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(from))
            .max_count(max);
        let mut s = match self.client.read_stream(stream, &options).await {
            Ok(s) => s,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        loop {
            match s.next().await {
                Ok(Some(e)) => out.extend(raw(e)),
                Ok(None) => return Ok(out),
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
    }

    async fn read_all(
        &self,
        from: Option<AllPos>,
        prefix: &str,
        max: usize,
    ) -> KResult<Vec<RawEvent>> {
        let options = ReadAllOptions::default()
            .forwards()
            .position(start(from))
            .filter(SubscriptionFilter::on_stream_name().add_prefix(prefix))
            .max_count(max);
        let mut s = self.client.read_all(&options).await?;
        let mut out = Vec::new();
        while let Some(e) = s.next().await? {
            out.extend(raw(e));
        }
        Ok(out)
    }

    async fn subscribe_all(&self, from: Option<AllPos>, prefix: &str) -> Box<dyn AllSubscription> {
        let options = SubscribeToAllOptions::default()
            .position(start(from))
            .filter(SubscriptionFilter::on_stream_name().add_prefix(prefix))
            .retry_options(
                RetryOptions::default()
                    .retry_forever()
                    .retry_delay(std::time::Duration::from_millis(500)),
            );
        Box::new(RealSubscription(
            self.client.subscribe_to_all(&options).await,
        ))
    }
}

struct RealSubscription(kurrentdb::Subscription);

#[async_trait]
impl AllSubscription for RealSubscription {
    async fn next(&mut self) -> KResult<RawEvent> {
        loop {
            if let Some(e) = raw(self.0.next().await?) {
                return Ok(e);
            }
        }
    }
}
