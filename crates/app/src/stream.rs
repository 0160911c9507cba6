//! Load, decide, append for the aggregates whose events hold no personal data
//! (erasure requests, erasure jobs): one stream each, optimistic concurrency,
//! retried on a concurrent change. The customer stream has its own path (sealing)
//! in `service`.

use ledger_command::{ErasureJob, ErasureRequest, JobCommand, Refusal, RequestCommand};
use ledger_events::{ErasureJobEvent, ErasureRequestEvent, SCHEMA_VERSION};
use ledger_store::{
    AppendRequest, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
};
use ledger_types::{EventId, Timestamp};

use crate::AppError;

const MAX_ATTEMPTS: usize = 8;

/// An aggregate kept in a stream of plain (unsealed) events.
pub(crate) trait Plain: Default {
    type Event;
    type Command;
    fn apply(&mut self, e: &Self::Event);
    fn handle(&self, c: &Self::Command) -> Result<Vec<Self::Event>, Refusal>;
    fn decode(r: &RecordedEvent) -> Result<Self::Event, AppError>;
    /// The stored type name and payload.
    fn encode(e: &Self::Event) -> Result<(&'static str, Vec<u8>), AppError>;
}

macro_rules! plain {
    ($aggregate:ty, $event:ty, $command:ty) => {
        impl Plain for $aggregate {
            type Event = $event;
            type Command = $command;
            fn apply(&mut self, e: &Self::Event) {
                <$aggregate>::apply(self, e)
            }
            fn handle(&self, c: &Self::Command) -> Result<Vec<Self::Event>, Refusal> {
                <$aggregate>::handle(self, c)
            }
            fn decode(r: &RecordedEvent) -> Result<Self::Event, AppError> {
                Ok(<$event>::decode(
                    &r.event_type,
                    r.schema_version,
                    &r.payload,
                )?)
            }
            fn encode(e: &Self::Event) -> Result<(&'static str, Vec<u8>), AppError> {
                Ok((e.event_type(), e.encode()?))
            }
        }
    };
}

plain!(ErasureRequest, ErasureRequestEvent, RequestCommand);
plain!(ErasureJob, ErasureJobEvent, JobCommand);

/// A new record of `e`, recorded at `at`.
pub(crate) fn new_event<A: Plain>(e: &A::Event, at: Timestamp) -> Result<NewEvent, AppError> {
    let (t, payload) = A::encode(e)?;
    Ok(NewEvent {
        event_id: EventId::new(),
        event_type: t.to_owned(),
        schema_version: SCHEMA_VERSION,
        payload,
        recorded_at: at,
    })
}

/// The expected version of an append after reading `version`.
pub(crate) fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

/// Folds a stream: the state and its version (0: no stream).
pub(crate) async fn load<A: Plain>(
    store: &dyn EventStore,
    stream: &str,
) -> Result<(A, u64), AppError> {
    let records = store.read_stream(stream, 1).await?;
    let mut a = A::default();
    for r in &records {
        a.apply(&A::decode(r)?);
    }
    Ok((a, records.last().map_or(0, |r| r.version)))
}

/// Decides `cmd` and appends its events with optimistic concurrency, retrying on
/// a concurrent change. Returns the state after.
pub(crate) async fn execute<A: Plain>(
    store: &dyn EventStore,
    stream: &str,
    cmd: &A::Command,
) -> Result<A, AppError> {
    for _ in 0..MAX_ATTEMPTS {
        let (mut state, version) = load::<A>(store, stream).await?;
        let events = state.handle(cmd)?;
        if events.is_empty() {
            return Ok(state);
        }
        let at = Timestamp::now();
        let new = events
            .iter()
            .map(|e| new_event::<A>(e, at))
            .collect::<Result<Vec<_>, AppError>>()?;
        let req = AppendRequest {
            stream: stream.to_owned(),
            expected: expected(version),
            events: new,
        };
        match store.append(req).await {
            Ok(_) => {
                for e in &events {
                    state.apply(e);
                }
                return Ok(state);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Contention)
}
