//! The change feed: the log as public events (`ledger_public_events`,
//! `ledger-events-v1`), from any position, filtered by type and scoped to a tenant.
//!
//! Reading is by position only, so a consumer resumes after the last position it
//! saw, and replaying a range gives the same lines. Every record is decoded and
//! handed to the stateless [`ledger_public_events::project`]; personal blocks stay
//! sealed and are never read, so this module needs no key (`ledger events tail`
//! runs without the KEK).
//!
//! # Tenant scope
//!
//! The admin (and the CLI) see every event. A broadcaster sees the events about
//! itself and its customers, never another tenant's business:
//!
//! - an event that names a broadcaster (registration, link, profile update,
//!   subscription started, payment, refund, a request filed by it) is seen by that
//!   broadcaster only, so a customer shared with another broadcaster does not show
//!   one broadcaster's payments to the other;
//! - `customer.anonymized` is seen by every broadcaster the customer is linked to
//!   (each must forward the erasure, GDPR Art. 19);
//! - `subscription.terminated` (the stored event does not name the broadcaster) is
//!   seen by the broadcaster that started the subscription;
//! - a later `erasure_request.*` event is seen by whoever sees the request.
//!
//! The last two need state, which the read side and the request index hold; so a
//! broadcaster's feed never reads past the read side's position (what it has not
//! folded yet, it could not scope), and the admin's feed reads to the log's head.

use std::collections::BTreeSet;
use std::sync::Arc;

use ledger_events::{Actor, Envelope};
use ledger_public_events::{project, EventType, PublicEvent};
use ledger_store::{EventStore, RecordedEvent};
use ledger_types::{BroadcasterId, CustomerId, RequestId, SubscriptionId};

use crate::codec::decode_record;
use crate::read::ReadSide;
use crate::requests::RequestIndex;
use crate::AppError;

/// Records read from the store at a time.
pub const READ_PAGE: usize = 2_000;

/// The public event of one stored record, or `None` for a record consumers have
/// no use for. Pure but for decoding: personal blocks are not opened.
pub fn public_event(r: &RecordedEvent) -> Result<Option<PublicEvent>, AppError> {
    let event = decode_record(r)?;
    Ok(project(&Envelope {
        position: r.position,
        event_id: r.event_id,
        recorded_at: r.recorded_at,
        event: &event,
    }))
}

/// Whose events a feed serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant's (the admin key, the CLI).
    All,
    /// One broadcaster's (see the module documentation).
    Broadcaster(BroadcasterId),
}

/// What a reader asks for.
#[derive(Debug, Clone)]
pub struct FeedQuery {
    /// Serve events at positions after this one.
    pub after: u64,
    /// At most this many events.
    pub limit: usize,
    /// Only these types (`None`: every type).
    pub types: Option<BTreeSet<EventType>>,
    pub scope: Scope,
}

/// A page of the feed.
#[derive(Debug, Clone, Default)]
pub struct FeedPage {
    pub events: Vec<PublicEvent>,
    /// The last position examined (filtered-out records included): resume after it.
    pub next_after: u64,
    /// Whether the page reached the end of what can be served now.
    pub at_end: bool,
}

/// A page of the feed as NDJSON ([`Feed::page_ndjson`]).
#[derive(Debug, Clone, Default)]
pub struct NdjsonPage {
    /// One JSON object and `\n` per event.
    pub body: Vec<u8>,
    /// How many lines `body` holds.
    pub events: usize,
    /// The last position examined (filtered-out records included): resume after it.
    pub next_after: u64,
    /// Whether the page reached the end of what can be served now.
    pub at_end: bool,
}

/// One chunk's serialized events, with the end offset and position of each.
struct Lines {
    body: Vec<u8>,
    ends: Vec<(usize, u64)>,
    /// The last position examined.
    examined: u64,
}

/// The feed over a log, scoping with the read side and the request index (both
/// only needed for broadcaster scopes).
#[derive(Debug, Clone)]
pub struct Feed {
    store: Arc<dyn EventStore>,
    read: Option<Arc<ReadSide>>,
    requests: Option<Arc<RequestIndex>>,
}

impl Feed {
    /// A feed that can serve [`Scope::All`] only.
    pub fn unscoped(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            read: None,
            requests: None,
        }
    }

    /// A feed that can serve every scope.
    pub fn new(
        store: Arc<dyn EventStore>,
        read: Arc<ReadSide>,
        requests: Arc<RequestIndex>,
    ) -> Self {
        Self {
            store,
            read: Some(read),
            requests: Some(requests),
        }
    }

    /// The highest position this scope may be served up to now.
    async fn ceiling(&self, scope: Scope) -> Result<u64, AppError> {
        let head = self.store.head().await?;
        match (scope, &self.read) {
            (Scope::All, _) => Ok(head),
            (Scope::Broadcaster(_), Some(read)) => {
                if let Some(requests) = &self.requests {
                    requests.catch_up().await?;
                }
                Ok(read.with_model(|m| m.position())?.min(head))
            }
            (Scope::Broadcaster(_), None) => Ok(0),
        }
    }

    /// Up to `q.limit` events after `q.after`, reading no further than what can be
    /// served now.
    pub async fn page(&self, q: &FeedQuery) -> Result<FeedPage, AppError> {
        let ceiling = self.ceiling(q.scope).await?;
        let mut page = FeedPage {
            events: Vec::new(),
            next_after: q.after,
            at_end: false,
        };
        while page.events.len() < q.limit {
            if page.next_after >= ceiling {
                page.at_end = true;
                break;
            }
            let want = usize::try_from(ceiling - page.next_after)
                .unwrap_or(usize::MAX)
                .min(READ_PAGE);
            let records = self.store.read_all(page.next_after, want).await?;
            if records.is_empty() {
                page.at_end = true;
                break;
            }
            for r in &records {
                if r.position > ceiling || page.events.len() >= q.limit {
                    break;
                }
                page.next_after = r.position;
                if let Some(e) = self.selected(r, q.types.as_ref(), q.scope)? {
                    page.events.push(e);
                }
            }
        }
        Ok(page)
    }

    /// [`page`](Self::page) as NDJSON lines (one JSON object and `\n` per event),
    /// for readers that only forward the bytes (`GET /v1/events`): the same
    /// events, `next_after` and `at_end`. Faster on more than one core: the next
    /// chunk of records is read (chains verified, in order) while the chunks
    /// before it are decoded, projected, filtered and serialized on blocking
    /// threads, two at a time, and their lines are appended in log order.
    pub async fn page_ndjson(&self, q: &FeedQuery) -> Result<NdjsonPage, AppError> {
        /// Chunks being projected at once (besides the one being read).
        const IN_FLIGHT: usize = 2;
        let ceiling = self.ceiling(q.scope).await?;
        let mut out = NdjsonPage {
            body: Vec::new(),
            events: 0,
            next_after: q.after,
            at_end: false,
        };
        if q.limit == 0 {
            return Ok(out);
        }
        // A small page reads small chunks: at most IN_FLIGHT of them ahead.
        let chunk_size = READ_PAGE.min(q.limit.max(256));
        let mut read_to = q.after;
        let mut chunks = std::collections::VecDeque::new();
        let mut read_all = false;
        loop {
            // Keep reading ahead while fewer than IN_FLIGHT chunks are projected.
            while !read_all && chunks.len() < IN_FLIGHT {
                if read_to >= ceiling {
                    read_all = true;
                    break;
                }
                let want = usize::try_from(ceiling - read_to)
                    .unwrap_or(usize::MAX)
                    .min(chunk_size);
                let records = self.store.read_all(read_to, want).await?;
                let Some(last) = records.last().map(|r| r.position) else {
                    read_all = true;
                    break;
                };
                read_to = last.min(ceiling);
                let (feed, types, scope) = (self.clone(), q.types.clone(), q.scope);
                chunks.push_back(tokio::task::spawn_blocking(move || {
                    feed.lines(&records, ceiling, types.as_ref(), scope)
                }));
            }
            let Some(next) = chunks.pop_front() else {
                out.at_end = true;
                return Ok(out);
            };
            let chunk = next
                .await
                .map_err(|_| AppError::Io("a feed task failed".into()))??;
            let room = q.limit - out.events;
            if chunk.ends.len() > room {
                // The limit falls inside this chunk: up to its last event.
                let (end, position) = chunk.ends[room - 1];
                out.body.extend_from_slice(&chunk.body[..end]);
                out.events += room;
                out.next_after = position;
                return Ok(out);
            }
            out.body.extend_from_slice(&chunk.body);
            out.events += chunk.ends.len();
            out.next_after = chunk.examined;
            if out.events == q.limit {
                return Ok(out);
            }
        }
    }

    /// One chunk's lines (see [`page_ndjson`](Self::page_ndjson)).
    fn lines(
        &self,
        records: &[RecordedEvent],
        ceiling: u64,
        types: Option<&BTreeSet<EventType>>,
        scope: Scope,
    ) -> Result<Lines, AppError> {
        let mut l = Lines {
            body: Vec::with_capacity(records.len() * 512),
            ends: Vec::with_capacity(records.len()),
            examined: 0,
        };
        for r in records {
            if r.position > ceiling {
                break;
            }
            l.examined = r.position;
            let Some(e) = self.selected(r, types, scope)? else {
                continue;
            };
            // Strings, integers and vectors of them always serialize.
            if serde_json::to_writer(&mut l.body, &e).is_ok() {
                l.body.push(b'\n');
                l.ends.push((l.body.len(), r.position));
            }
        }
        Ok(l)
    }

    /// The record's public event, if it has one of `types` (any, if `None`) and
    /// the scope sees it.
    fn selected(
        &self,
        r: &RecordedEvent,
        types: Option<&BTreeSet<EventType>>,
        scope: Scope,
    ) -> Result<Option<PublicEvent>, AppError> {
        let Some(e) = public_event(r)? else {
            return Ok(None);
        };
        if types.is_some_and(|t| !t.contains(&e.event_type)) || !self.visible(&e, scope)? {
            return Ok(None);
        }
        Ok(Some(e))
    }

    /// Whether the scope sees the event (see the module documentation).
    fn visible(&self, e: &PublicEvent, scope: Scope) -> Result<bool, AppError> {
        let b = match scope {
            Scope::All => return Ok(true),
            Scope::Broadcaster(b) => b,
        };
        let Some(read) = &self.read else {
            return Ok(false);
        };
        let mine = e.broadcaster_id.as_deref() == Some(b.to_string().as_str());
        let customer = || {
            e.customer_id
                .as_deref()
                .and_then(|c| CustomerId::parse(c).ok())
        };
        Ok(match e.event_type {
            EventType::CustomerAnonymized => {
                mine || match customer() {
                    Some(c) => read.with_model(|m| {
                        m.customers
                            .get(c)
                            .is_some_and(|v| v.broadcasters.contains(&b))
                    })?,
                    None => false,
                }
            }
            EventType::SubscriptionTerminated => {
                let sid = match &e.data {
                    ledger_public_events::PublicData::Ids(ids) => ids
                        .subscription_id
                        .as_deref()
                        .and_then(|s| SubscriptionId::parse(s).ok()),
                    _ => None,
                };
                match (customer(), sid) {
                    (Some(c), Some(sid)) => read.with_model(|m| {
                        m.customers.get(c).is_some_and(|v| {
                            v.subscriptions
                                .iter()
                                .any(|s| s.subscription_id == sid && s.broadcaster_id == b)
                        })
                    })?,
                    _ => false,
                }
            }
            EventType::ErasureRequestReceived => mine,
            EventType::ErasureRequestDeferred
            | EventType::ErasureRequestCompleted
            | EventType::ErasureRequestRefused
            | EventType::ErasureRequestCancelled
            | EventType::ErasureRequestExtended => {
                let id = match &e.data {
                    ledger_public_events::PublicData::Request(r) => {
                        RequestId::parse(&r.request_id).ok()
                    }
                    _ => None,
                };
                let actor = Actor::Broadcaster {
                    broadcaster_id: b,
                    key_id: None,
                };
                match (id, &self.requests) {
                    (Some(id), Some(requests)) => requests
                        .get(id)
                        .is_some_and(|r| r.request.is_visible_to(&actor)),
                    _ => false,
                }
            }
            _ => mine,
        })
    }
}
