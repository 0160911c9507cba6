//! The public event vocabulary, `ledger-events-v1`: what downstream consumers
//! (processors told of an erasure under GDPR Art. 19, data warehouses, CRMs) read
//! from the change feed. One line per stored record that a consumer has a use for,
//! with ids, amounts, offers, days and codes only.
//!
//! # What it owns
//!
//! - [`PublicEvent`] and its payloads ([`PublicData`]), with their serde form (the
//!   wire contract, `docs/events.md`) and, with the `schema` feature, their JSON
//!   Schema (utoipa `ToSchema`) for the API's OpenAPI document;
//! - [`EventType`]: the vocabulary's type names (`payment.captured`, ...), parsed
//!   from a consumer's `types=` filter;
//! - [`project`]: the projection from one decoded stored record to at most one
//!   public event.
//!
//! # What it must not do, and why it is a pure function
//!
//! No personal value can reach a public event: [`project`] reads only the fields of
//! the stored events that live **outside** personal blocks (ids, broadcaster, offer,
//! amount, currency, times, codes), never a `Personal<_>` block, which is sealed in
//! the log anyway, and never free text (an erasure request's `reference` is left
//! out for that reason). `LoginRecorded` (its only content is an IP address) has no
//! public event; `ProfileUpdated` becomes `customer.updated` with ids only.
//!
//! [`project`] is stateless, a function of one record: the feed can start at any
//! position, replay, or be rebuilt from zero and produce the same lines for the same
//! positions. What a stateless function cannot know (the broadcaster of a
//! terminated subscription, the customer of a later erasure-request event) is not
//! in the event; the feed's tenant scoping looks it up on the read side.
//!
//! No I/O, no clock, no logging.

use ledger_events::{
    Actor, CustomerEvent, DomainEvent, Envelope, ErasureRequestEvent, Integration,
};
use ledger_types::{Money, Timestamp};
use serde::{Deserialize, Serialize};

/// The vocabulary's version, in every event (`version`). A change that removes or
/// changes the meaning of a field, or of a type, is a new version; adding a type
/// or an optional field is not (consumers ignore what they do not know).
pub const VOCABULARY_VERSION: u16 = 1;

/// The vocabulary's name, as documented in `docs/events.md`.
pub const VOCABULARY: &str = "ledger-events-v1";

/// The type of a public event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub enum EventType {
    #[serde(rename = "broadcaster.registered")]
    BroadcasterRegistered,
    #[serde(rename = "customer.registered")]
    CustomerRegistered,
    #[serde(rename = "customer.linked")]
    CustomerLinked,
    #[serde(rename = "customer.updated")]
    CustomerUpdated,
    #[serde(rename = "subscription.started")]
    SubscriptionStarted,
    #[serde(rename = "subscription.terminated")]
    SubscriptionTerminated,
    #[serde(rename = "payment.captured")]
    PaymentCaptured,
    #[serde(rename = "payment.refunded")]
    PaymentRefunded,
    #[serde(rename = "customer.anonymized")]
    CustomerAnonymized,
    #[serde(rename = "erasure_request.received")]
    ErasureRequestReceived,
    #[serde(rename = "erasure_request.deferred")]
    ErasureRequestDeferred,
    #[serde(rename = "erasure_request.completed")]
    ErasureRequestCompleted,
    #[serde(rename = "erasure_request.refused")]
    ErasureRequestRefused,
    #[serde(rename = "erasure_request.cancelled")]
    ErasureRequestCancelled,
    #[serde(rename = "erasure_request.extended")]
    ErasureRequestExtended,
}

impl EventType {
    /// Every type, in the order of `docs/events.md`.
    pub const ALL: [EventType; 15] = [
        EventType::BroadcasterRegistered,
        EventType::CustomerRegistered,
        EventType::CustomerLinked,
        EventType::CustomerUpdated,
        EventType::SubscriptionStarted,
        EventType::SubscriptionTerminated,
        EventType::PaymentCaptured,
        EventType::PaymentRefunded,
        EventType::CustomerAnonymized,
        EventType::ErasureRequestReceived,
        EventType::ErasureRequestDeferred,
        EventType::ErasureRequestCompleted,
        EventType::ErasureRequestRefused,
        EventType::ErasureRequestCancelled,
        EventType::ErasureRequestExtended,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::BroadcasterRegistered => "broadcaster.registered",
            EventType::CustomerRegistered => "customer.registered",
            EventType::CustomerLinked => "customer.linked",
            EventType::CustomerUpdated => "customer.updated",
            EventType::SubscriptionStarted => "subscription.started",
            EventType::SubscriptionTerminated => "subscription.terminated",
            EventType::PaymentCaptured => "payment.captured",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::CustomerAnonymized => "customer.anonymized",
            EventType::ErasureRequestReceived => "erasure_request.received",
            EventType::ErasureRequestDeferred => "erasure_request.deferred",
            EventType::ErasureRequestCompleted => "erasure_request.completed",
            EventType::ErasureRequestRefused => "erasure_request.refused",
            EventType::ErasureRequestCancelled => "erasure_request.cancelled",
            EventType::ErasureRequestExtended => "erasure_request.extended",
        }
    }

    /// The type named `s` exactly, or `None`.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One public event: the envelope every type shares, and its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct PublicEvent {
    /// The stored event's id: stable across replays and redeliveries, the key to
    /// deduplicate on.
    pub id: String,
    /// The event's type; says which shape `data` has.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The vocabulary's version ([`VOCABULARY_VERSION`]).
    pub version: u16,
    /// The record's position in the log (1-based, gap-free, increasing): the
    /// cursor to resume after.
    pub position: u64,
    /// When it happened (the event's own time), RFC 3339 UTC (`Timestamp::to_rfc3339`).
    pub occurred_at: String,
    /// The broadcaster the event names, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcaster_id: Option<String>,
    /// The customer it concerns, when the record says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The type's payload (ids, amounts, codes; never a personal value).
    pub data: PublicData,
}

/// The payload of each type. Untagged on the wire: the envelope's `type` says which.
///
/// The variants are in an order in which reading back untagged picks the right one
/// (a refund before a payment, a payment before a subscription, an erasure before
/// a request), but a consumer should dispatch on `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum PublicData {
    Broadcaster(BroadcasterData),
    Refund(RefundData),
    Payment(PaymentData),
    Subscription(SubscriptionData),
    Anonymized(AnonymizedData),
    Request(RequestData),
    /// `customer.registered`, `customer.linked`, `customer.updated`,
    /// `subscription.terminated` carry their ids in the envelope (and the
    /// subscription id here for the latter).
    Ids(IdsData),
}

/// `broadcaster.registered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct BroadcasterData {
    /// `white_label` or `shared`.
    pub integration: String,
}

/// `customer.registered`, `customer.linked`, `customer.updated` (empty) and
/// `subscription.terminated` (the subscription).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct IdsData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
}

/// `subscription.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SubscriptionData {
    pub subscription_id: String,
    pub offer_id: String,
    /// When it ends by itself (RFC 3339), if it was started with an end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

/// An amount: integer minor units, the currency, and its exponent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AmountData {
    /// Minor units (1999 EUR is 19.99 EUR).
    pub minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Digits of the minor unit (2 for EUR, 0 for JPY, 3 for BHD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponent: Option<u8>,
}

impl AmountData {
    fn of(m: &Money) -> Self {
        Self {
            minor: m.minor(),
            currency: m.currency().to_string(),
            exponent: m.currency().exponent(),
        }
    }
}

/// `payment.captured`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct PaymentData {
    pub payment_id: String,
    pub offer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    pub amount: AmountData,
    /// The UTC day it counts on in revenue, `YYYY-MM-DD`.
    pub day: String,
}

/// `payment.refunded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct RefundData {
    pub refund_id: String,
    pub payment_id: String,
    pub offer_id: String,
    pub amount: AmountData,
    /// The UTC day it counts on in revenue (the refund's own day), `YYYY-MM-DD`.
    pub day: String,
}

/// Who acted: a broadcaster (with the id of the API key, when known) or the
/// platform operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ActorData {
    /// `broadcaster` or `operator`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcaster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl ActorData {
    fn of(a: &Actor) -> Self {
        match a {
            Actor::Broadcaster {
                broadcaster_id,
                key_id,
            } => Self {
                kind: "broadcaster".into(),
                broadcaster_id: Some(broadcaster_id.to_string()),
                key_id: key_id.map(|k| k.to_string()),
            },
            Actor::Operator => Self {
                kind: "operator".into(),
                broadcaster_id: None,
                key_id: None,
            },
        }
    }
}

/// `customer.anonymized`: the receipt's parts the log holds. The revenue digests
/// before and after are on the receipt (`GET /v1/erasures`), which folds revenue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AnonymizedData {
    /// The erasure's request id (the receipt's id).
    pub request_id: String,
    pub actor: ActorData,
    /// The personal data categories erased (`EMAIL`, `IP_ADDRESSES`, ...).
    pub categories: Vec<String>,
    /// The preconditions checked (`NO_ACTIVE_SUBSCRIPTION`, ...).
    pub preconditions: Vec<String>,
}

/// `erasure_request.*`. Fields by type: `received` has `actor` and `due_at`;
/// `deferred` has `blockers` and `subscription_ids`; `completed` has
/// `anonymized_position` and `data_key_destroyed`; `refused` has `code`;
/// `cancelled` has `actor`; `extended` has `due_at`, `reason` and `actor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct RequestData {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<ActorData>,
    /// The due date (RFC 3339): one month after receipt, or as extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscription_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymized_position: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key_destroyed: Option<bool>,
    /// The refusal's code (`NOT_WHITE_LABEL`, `SHARED_ACROSS_BROADCASTERS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The extension's reason (`COMPLEXITY`, `NUMBER_OF_REQUESTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RequestData {
    fn new(request_id: String) -> Self {
        Self {
            request_id,
            actor: None,
            due_at: None,
            blockers: Vec::new(),
            subscription_ids: Vec::new(),
            anonymized_position: None,
            data_key_destroyed: None,
            code: None,
            reason: None,
        }
    }
}

fn day(t: Timestamp) -> String {
    ledger_projection_revenue::canonical_day(t.day_number())
}

/// The text of a unit-variant enum as serde writes it (`"EMAIL"`), without quotes.
fn code<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The public event of one stored record, or `None` for a record consumers have no
/// use for (`LoginRecorded`, a bulk erasure job's bookkeeping). A function of the record alone (see the crate's
/// documentation): the same record always gives the same event.
pub fn project(e: &Envelope<'_>) -> Option<PublicEvent> {
    let mut broadcaster_id = None;
    let mut customer_id = None;
    let (event_type, at, data) = match e.event {
        DomainEvent::Broadcaster(b, r) => {
            broadcaster_id = Some(b.to_string());
            let integration = match r.integration {
                Integration::WhiteLabel => "white_label",
                Integration::Shared => "shared",
            };
            (
                EventType::BroadcasterRegistered,
                r.at,
                PublicData::Broadcaster(BroadcasterData {
                    integration: integration.into(),
                }),
            )
        }
        DomainEvent::Customer(c, event) => {
            customer_id = Some(c.to_string());
            let ids =
                |subscription_id: Option<String>| PublicData::Ids(IdsData { subscription_id });
            let (t, b, at, data) = match event {
                CustomerEvent::Registered(r) => (
                    EventType::CustomerRegistered,
                    Some(r.broadcaster_id),
                    r.at,
                    ids(None),
                ),
                CustomerEvent::Linked(l) => (
                    EventType::CustomerLinked,
                    Some(l.broadcaster_id),
                    l.at,
                    ids(None),
                ),
                CustomerEvent::ProfileUpdated(u) => (
                    EventType::CustomerUpdated,
                    Some(u.broadcaster_id),
                    u.at,
                    ids(None),
                ),
                CustomerEvent::LoginRecorded(_) => return None,
                CustomerEvent::SubscriptionStarted(s) => (
                    EventType::SubscriptionStarted,
                    Some(s.broadcaster_id),
                    s.at,
                    PublicData::Subscription(SubscriptionData {
                        subscription_id: s.subscription_id.to_string(),
                        offer_id: s.offer_id.to_string(),
                        ends_at: s.ends_at.map(|t| t.to_rfc3339()),
                    }),
                ),
                CustomerEvent::SubscriptionTerminated(s) => (
                    EventType::SubscriptionTerminated,
                    None,
                    s.at,
                    ids(Some(s.subscription_id.to_string())),
                ),
                CustomerEvent::PaymentCaptured(p) => (
                    EventType::PaymentCaptured,
                    Some(p.broadcaster_id),
                    p.at,
                    PublicData::Payment(PaymentData {
                        payment_id: p.payment_id.to_string(),
                        offer_id: p.offer_id.to_string(),
                        subscription_id: p.subscription_id.map(|s| s.to_string()),
                        amount: AmountData::of(&p.amount),
                        day: day(p.at),
                    }),
                ),
                CustomerEvent::PaymentRefunded(r) => (
                    EventType::PaymentRefunded,
                    Some(r.broadcaster_id),
                    r.at,
                    PublicData::Refund(RefundData {
                        refund_id: r.refund_id.to_string(),
                        payment_id: r.payment_id.to_string(),
                        offer_id: r.offer_id.to_string(),
                        amount: AmountData::of(&r.amount),
                        day: day(r.at),
                    }),
                ),
                CustomerEvent::Anonymized(a) => (
                    EventType::CustomerAnonymized,
                    Some(a.broadcaster_id),
                    a.at,
                    PublicData::Anonymized(AnonymizedData {
                        request_id: a.request_id.to_string(),
                        actor: ActorData::of(&a.actor()),
                        categories: a.categories.iter().map(code).collect(),
                        preconditions: a.preconditions.iter().map(code).collect(),
                    }),
                ),
            };
            broadcaster_id = b.map(|b| b.to_string());
            (t, at, data)
        }
        DomainEvent::ErasureRequest(r, event) => {
            let mut d = RequestData::new(r.to_string());
            let (t, at) = match event {
                ErasureRequestEvent::Requested(q) => {
                    customer_id = Some(q.customer_id.to_string());
                    broadcaster_id = q.requested_by.broadcaster().map(|b| b.to_string());
                    d.actor = Some(ActorData::of(&q.requested_by));
                    d.due_at = Some(q.due_at.to_rfc3339());
                    (EventType::ErasureRequestReceived, q.received_at)
                }
                ErasureRequestEvent::Deferred(q) => {
                    d.blockers = q.blockers.iter().map(|b| b.code().to_owned()).collect();
                    d.subscription_ids = q.subscriptions.iter().map(|s| s.to_string()).collect();
                    (EventType::ErasureRequestDeferred, q.at)
                }
                ErasureRequestEvent::Completed(q) => {
                    d.anonymized_position = Some(q.anonymized_position);
                    d.data_key_destroyed = Some(q.data_key_destroyed);
                    (EventType::ErasureRequestCompleted, q.at)
                }
                ErasureRequestEvent::Refused(q) => {
                    d.code = Some(q.code.code().to_owned());
                    (EventType::ErasureRequestRefused, q.at)
                }
                ErasureRequestEvent::Cancelled(q) => {
                    d.actor = Some(ActorData::of(&q.by));
                    (EventType::ErasureRequestCancelled, q.at)
                }
                ErasureRequestEvent::Extended(q) => {
                    d.actor = Some(ActorData::of(&q.by));
                    d.due_at = Some(q.due_at.to_rfc3339());
                    d.reason = Some(code(&q.reason));
                    (EventType::ErasureRequestExtended, q.at)
                }
            };
            (t, at, PublicData::Request(d))
        }
        // A bulk job's own events (submitted, validated, chunks settled) are the
        // job's bookkeeping: each of its customers appears as an erasure request
        // of its own (`erasure_request.*`), which is what a consumer acts on.
        DomainEvent::ErasureJob(..) => return None,
    };
    Some(PublicEvent {
        id: e.event_id.to_string(),
        event_type,
        version: VOCABULARY_VERSION,
        position: e.position,
        occurred_at: at.to_rfc3339(),
        broadcaster_id,
        customer_id,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_parse_back_and_match_serde() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.as_str().to_owned())
            );
        }
        assert_eq!(EventType::parse("payment"), None);
        assert_eq!(EventType::parse("PAYMENT.CAPTURED"), None);
    }
}
