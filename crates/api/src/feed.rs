//! The change feed, `GET /v1/events`: the log as public events
//! (`ledger-events-v1`, `docs/events.md`), after a position, filtered by type,
//! scoped to the caller's tenant (every tenant for the admin key; ADR 0026).
//!
//! Without `follow` the answer is one page of NDJSON (one event per line) with the
//! last position examined in `Ledger-Next-After`: the next page is `after=` that
//! value (the last line's `position` would do too, but a page whose events were
//! all filtered out still advances this way). With `follow=true` the answer is a
//! Server-Sent Events stream that stays open until the client disconnects (or the
//! server shuts down): each event is an SSE message with `id:` its position,
//! `event:` its type and `data:` the same JSON object; a comment line every 15 s
//! keeps idle connections alive, and a reconnecting client's `Last-Event-ID`
//! resumes after that position. SSE answers are never compressed (tower-http's
//! default predicate), so each event leaves as it is committed.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt as _;
use ledger_app::feed::{Feed, FeedQuery, Scope, READ_PAGE};
use ledger_public_events::EventType;
use serde::Deserialize;
use tokio::sync::watch;
use tracing::instrument;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::requests::decode_limit;
use crate::SharedState;

const DEFAULT_LIMIT: usize = 1_000;
const MAX_LIMIT: usize = 10_000;
/// Most types a `types=` filter may name (there are fewer types than this).
const MAX_TYPES: usize = 32;
/// How long a follower waits for a commit before it looks again.
const WAIT: Duration = Duration::from_secs(15);

/// The header carrying the last position a page examined.
pub const NEXT_AFTER: HeaderName = HeaderName::from_static("ledger-next-after");

pub fn router() -> Router<SharedState> {
    Router::new().route("/v1/events", get(events))
}

/// Set once the server shuts down: open follow streams end, so that a graceful
/// shutdown does not wait for every follower to hang up.
fn closing() -> &'static watch::Sender<bool> {
    static CLOSING: OnceLock<watch::Sender<bool>> = OnceLock::new();
    CLOSING.get_or_init(|| watch::channel(false).0)
}

/// Ends every open follow stream (called by `ledger serve` on its shutdown
/// signal). New follow requests are answered, then end at once.
pub fn close_streams() {
    closing().send_replace(true);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Serve events at positions after this one (default 0: from the start).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9223372036854775807_u64)]
    pub after: Option<String>,
    /// Most events in the answer, 1 to 10000 (default 1000). With `follow=true`,
    /// the stream ends after this many events if given.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    pub limit: Option<String>,
    /// Only these types, comma-separated (e.g. `customer.anonymized,payment.refunded`).
    #[param(
        pattern = "^(broadcaster\\.registered|customer\\.(registered|linked|updated|anonymized)|subscription\\.(started|terminated)|payment\\.(captured|refunded)|erasure_request\\.(received|deferred|completed|refused|cancelled|extended))(,(broadcaster\\.registered|customer\\.(registered|linked|updated|anonymized)|subscription\\.(started|terminated)|payment\\.(captured|refunded)|erasure_request\\.(received|deferred|completed|refused|cancelled|extended))){0,31}$"
    )]
    pub types: Option<String>,
    /// `true`: stream new events as Server-Sent Events until the client
    /// disconnects; `false` (default): one NDJSON page.
    #[param(value_type = Option<bool>)]
    pub follow: Option<String>,
}

fn parse_after(s: Option<&str>) -> Result<u64, ApiError> {
    match s {
        None => Ok(0),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n <= i64::MAX as u64 => Ok(n),
            _ => Err(ApiError::invalid_input(
                "after",
                "must be a log position (an integer >= 0)",
            )),
        },
    }
}

fn parse_types(s: Option<&str>) -> Result<Option<BTreeSet<EventType>>, ApiError> {
    let Some(s) = s else { return Ok(None) };
    let mut out = BTreeSet::new();
    for (i, name) in s.split(',').enumerate() {
        let t = EventType::parse(name)
            .filter(|_| i < MAX_TYPES)
            .ok_or_else(|| {
                ApiError::invalid_input(
                    "types",
                    "must be event types of docs/events.md, comma-separated",
                )
            })?;
        out.insert(t);
    }
    Ok(Some(out))
}

/// The public events after a position, as NDJSON, or followed as SSE.
///
/// A broadcaster key sees its own tenant's events, the admin key every tenant's
/// (`docs/events.md`). With `follow=true`, a reconnecting SSE client's
/// `Last-Event-ID` header (a position) resumes after it when it is past `after`;
/// a `Last-Event-ID` that is not a position is refused (400 `INVALID_INPUT`). The
/// header is not a documented parameter: `EventSource` sends it by itself.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "NDJSON: one PublicEvent per line, the last position examined in Ledger-Next-After. With follow=true: an SSE stream (id = position, event = type, data = PublicEvent)",
            headers(("ledger-next-after" = u64, description = "The last log position this page examined (NDJSON answers)")),
            content(
                (PublicEvent = "application/x-ndjson"),
                (String = "text/event-stream"),
            )),
        (status = 400, description = "Invalid after, limit, types, follow or Last-Event-ID, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ),
    security(("bearer" = []), ("admin" = [])))]
#[instrument(skip(state, q, headers), fields(caller = ?caller))]
pub async fn events(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let mut after = parse_after(q.after.as_deref())?;
    // An SSE client's reconnect: always one of our positions, so anything else is
    // refused (with or without `follow`, as the header is documented for both).
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n <= i64::MAX as u64)
                .ok_or_else(|| {
                    ApiError::invalid_input(
                        "last-event-id",
                        "must be a log position (an integer >= 0)",
                    )
                })?,
        ),
    };
    let types = parse_types(q.types.as_deref())?;
    let follow = match q.follow.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid_input("follow", "must be true or false")),
    };
    let limit = match (follow, q.limit.as_deref()) {
        (true, None) => usize::MAX,
        (_, l) => decode_limit(l, DEFAULT_LIMIT, MAX_LIMIT)?,
    };
    let scope = match caller {
        Caller::Broadcaster { broadcaster_id, .. } => Scope::Broadcaster(broadcaster_id),
        Caller::Operator => Scope::All,
    };
    let feed = Feed::new(
        state.ledger.store().clone(),
        state.read.clone(),
        state.ledger.requests().clone(),
    );
    if !follow {
        let page = feed
            .page_ndjson(&FeedQuery {
                after,
                limit,
                types,
                scope,
            })
            .await?;
        return Ok((
            [
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-ndjson"),
                ),
                (NEXT_AFTER, HeaderValue::from(page.next_after)),
            ],
            page.body,
        )
            .into_response());
    }
    if let Some(last) = last_event_id {
        after = after.max(last);
    }
    let store = state.ledger.store().clone();
    let follower = Follower {
        feed,
        query: FeedQuery {
            after,
            limit: READ_PAGE,
            types,
            scope,
        },
        left: limit,
        closing: closing().subscribe(),
    };
    let stream = futures_util::stream::unfold(follower, move |mut f| {
        let store = store.clone();
        async move {
            let batch = f.next_batch(&*store).await?;
            Some((batch, f))
        }
    })
    .flat_map(futures_util::stream::iter)
    .fuse();
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(WAIT))
        .into_response())
}

/// A follow stream's state: where it is, what it may still send.
struct Follower {
    feed: Feed,
    query: FeedQuery,
    left: usize,
    closing: watch::Receiver<bool>,
}

impl Follower {
    /// The next non-empty batch of SSE messages, waiting for commits as needed;
    /// `None` ends the stream (limit reached, server closing, storage failing).
    async fn next_batch(
        &mut self,
        store: &dyn ledger_store::EventStore,
    ) -> Option<Vec<Result<Event, Infallible>>> {
        loop {
            if self.left == 0 || *self.closing.borrow() {
                return None;
            }
            self.query.limit = self.left.min(READ_PAGE);
            let page = match self.feed.page(&self.query).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(code = e.code(), "event feed stream stopped");
                    return None;
                }
            };
            let advanced = page.next_after > self.query.after;
            self.query.after = page.next_after;
            if !page.events.is_empty() {
                self.left -= page.events.len();
                return Some(
                    page.events
                        .iter()
                        .map(|e| {
                            let data = serde_json::to_string(e).unwrap_or_default();
                            Ok(Event::default()
                                .id(e.position.to_string())
                                .event(e.event_type.as_str())
                                .data(data))
                        })
                        .collect(),
                );
            }
            if advanced && !page.at_end {
                continue;
            }
            // Nothing new to serve: wait for a commit past what was examined (or,
            // when the read side is behind the log, a moment for it to fold).
            let head = tokio::select! {
                h = store.wait_for_head(self.query.after, WAIT) => h.ok(),
                _ = self.closing.changed() => return None,
            };
            if head.is_some_and(|h| h > self.query.after) && !advanced {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub use ledger_public_events::{
    ActorData, AmountData, AnonymizedData, BroadcasterData, IdsData, PaymentData, PublicData,
    PublicEvent, RefundData, RequestData, SubscriptionData,
};
