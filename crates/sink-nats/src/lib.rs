//! The NATS JetStream destination of the outbound sink (`ledger serve --publish
//! nats://HOST:4222`, ADR 0027): [`Nats`] implements `ledger_app::sink`'s
//! `Connector` and `Publisher`; the loop, the checkpoint and the backoff are
//! there, not here.
//!
//! - **Stream**: at each connection the stream (`LEDGER` by default) is looked up,
//!   or created with the subjects `PREFIX.>` (`ledger.>` by default), file
//!   storage and a duplicate window of [`DUPLICATE_WINDOW`]. An existing stream is
//!   used as it is (an operator may have changed its limits or window), but it
//!   must take `PREFIX.>`. A new stream makes the sink start again from the log's
//!   first position.
//! - **Subjects**: `PREFIX.<tenant>.<type>`: the tenant is the event's
//!   `broadcaster_id`, or [`PLATFORM`] when it names none; the type is the
//!   vocabulary's (`payment.captured`), whose dots make more subject tokens, so
//!   `ledger.*.payment.>` selects every tenant's payments.
//! - **Messages**: the body is the event's JSON object, byte for byte an NDJSON
//!   line of `GET /v1/events`; the header `Nats-Msg-Id` is the event id, so
//!   JetStream drops a message published again after a crash (within the window).
//! - **Pipelining**: a page's messages are all sent, then their acknowledgements
//!   awaited in order; a publish or an acknowledgement that fails (or times out)
//!   fails the page, and the sink retries it from its checkpoint.
//!
//! This crate must not log or put in an error anything but ids, positions,
//! subjects (ids and types) and the server's error codes: the events are PII-free,
//! and the URL is never echoed (it may hold a password).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use ledger_app::sink::{Connected, Connector, Publisher, SinkError};
use ledger_public_events::PublicEvent;

/// How long JetStream remembers a `Nats-Msg-Id` in a stream this crate creates:
/// a republication after a crash is dropped if the ledger is back within it.
/// Longer costs the server memory (one id per message of the window).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The subject token of events that name no broadcaster.
pub const PLATFORM: &str = "platform";

/// How long a connection attempt, a JetStream request or an acknowledgement may
/// take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where to publish.
#[derive(Clone)]
pub struct NatsTarget {
    /// `nats://HOST:PORT` (or `tls://`), as given; never shown.
    pub url: String,
    /// The JetStream stream's name.
    pub stream: String,
    /// The subjects' first token(s).
    pub prefix: String,
}

impl std::fmt::Debug for NatsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTarget")
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The subject of an event under `prefix`.
pub fn subject(prefix: &str, e: &PublicEvent) -> String {
    format!(
        "{prefix}.{}.{}",
        e.broadcaster_id.as_deref().unwrap_or(PLATFORM),
        e.event_type.as_str()
    )
}

/// The JetStream destination.
#[derive(Debug, Clone)]
pub struct Nats {
    target: NatsTarget,
}

impl Nats {
    pub fn new(target: NatsTarget) -> Self {
        Self { target }
    }

    /// The checkpoint's name in the view store: one per stream, so that another
    /// stream starts from the beginning.
    pub fn checkpoint_name(&self) -> String {
        format!("nats:{}", self.target.stream)
    }
}

/// A connected session.
#[derive(Debug)]
pub struct NatsPublisher {
    js: jetstream::Context,
    prefix: String,
}

fn unreachable(e: impl std::fmt::Display) -> SinkError {
    SinkError::destination("NATS_UNREACHABLE", format!("cannot connect to NATS: {e}"))
}

/// Whether a JetStream API request failed because no JetStream answered.
fn no_jetstream(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<jetstream::context::RequestError>()
            .is_some_and(|r| r.kind() == jetstream::context::RequestErrorKind::NoResponders)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn jetstream_unavailable() -> SinkError {
    SinkError::destination(
        "JETSTREAM_UNAVAILABLE",
        "the NATS server answers but JetStream does not (start nats-server with -js, or enable JetStream for this account)",
    )
}

fn jetstream_error(what: &str, e: &(dyn std::error::Error + 'static)) -> SinkError {
    if no_jetstream(e) {
        jetstream_unavailable()
    } else {
        SinkError::destination("JETSTREAM_ERROR", format!("{what}: {e}"))
    }
}

impl Nats {
    /// The stream, created if missing; `true` if this call created it.
    async fn ensure_stream(&self, js: &jetstream::Context) -> Result<bool, SinkError> {
        let t = &self.target;
        let wanted = format!("{}.>", t.prefix);
        match js.get_stream(&t.stream).await {
            Ok(s) => {
                let info = s.cached_info();
                if !info
                    .config
                    .subjects
                    .iter()
                    .any(|x| *x == wanted || x == ">")
                {
                    return Err(SinkError::destination(
                        "JETSTREAM_STREAM_MISMATCH",
                        format!(
                            "the stream {} exists and does not take the subjects {wanted} (its subjects: {})",
                            t.stream,
                            info.config.subjects.join(" ")
                        ),
                    ));
                }
                Ok(false)
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.code() == 404) =>
            {
                js.create_stream(stream::Config {
                    name: t.stream.clone(),
                    subjects: vec![wanted.clone()],
                    storage: stream::StorageType::File,
                    duplicate_window: DUPLICATE_WINDOW,
                    description: Some("ledger public events (ledger-events-v1)".into()),
                    ..Default::default()
                })
                .await
                .map_err(|e| jetstream_error("cannot create the stream", &e))?;
                tracing::info!(stream = %t.stream, subjects = %wanted,
                    duplicate_window_secs = DUPLICATE_WINDOW.as_secs(), "JetStream stream created");
                Ok(true)
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.code() == 503) =>
            {
                Err(jetstream_unavailable())
            }
            Err(e) => Err(jetstream_error("cannot look up the stream", &e)),
        }
    }
}

impl Connector for Nats {
    type Publisher = NatsPublisher;

    async fn connect(&self) -> Result<Connected<NatsPublisher>, SinkError> {
        // A few reconnections ride out a blip; past them the client gives up and
        // the sink starts a new session from its checkpoint (an unbounded
        // reconnect loop would outlive the session it belongs to).
        let client = async_nats::ConnectOptions::new()
            .name("ledger")
            .connection_timeout(TIMEOUT)
            .max_reconnects(Some(3))
            .connect(self.target.url.as_str())
            .await
            .map_err(unreachable)?;
        let mut js = jetstream::new(client);
        js.set_timeout(TIMEOUT);
        let created = self.ensure_stream(&js).await?;
        Ok(Connected {
            publisher: NatsPublisher {
                js,
                prefix: self.target.prefix.clone(),
            },
            created,
        })
    }
}

fn publish_failed(e: impl std::fmt::Display) -> SinkError {
    SinkError::destination("JETSTREAM_PUBLISH_FAILED", e.to_string())
}

impl Publisher for NatsPublisher {
    async fn publish(&mut self, events: &[PublicEvent]) -> Result<(), SinkError> {
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let body = serde_json::to_vec(e).map_err(|_| {
                SinkError::destination("ENCODING", format!("event {} could not be encoded", e.id))
            })?;
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, e.id.as_str());
            let ack = self
                .js
                .publish_with_headers(subject(&self.prefix, e), headers, body.into())
                .await
                .map_err(publish_failed)?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(publish_failed)?;
        }
        Ok(())
    }
}

/// Deletes a stream (benchmarks and tests clean up after themselves).
pub async fn delete_stream(url: &str, stream: &str) -> Result<(), SinkError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(TIMEOUT)
        .connect(url)
        .await
        .map_err(unreachable)?;
    jetstream::new(client)
        .delete_stream(stream)
        .await
        .map_err(|e| jetstream_error("cannot delete the stream", &e))?;
    Ok(())
}
