//! The versioned event schema, shared by the writing side (command, app) and the
//! reading side (projections, audit).
//!
//! Every event that carries personal data carries it in a [`Personal`] block. On the
//! writing side a block starts [`Personal::Open`] (plaintext, in memory only); the app
//! seals it before encoding, and encoding an open block is an error, so plaintext
//! personal data cannot reach the store through this schema by construction. On the
//! reading side a block is [`Personal::Sealed`] until a holder of the customer's data
//! key opens it; once the key is destroyed it can never be opened again.
//!
//! Events are stored as `(event_type, schema_version, JSON payload)`. Adding a field
//! with a default is a compatible change; anything else bumps the type's version and
//! adds an upcaster in [`CustomerEvent::decode`]. This crate does no I/O.

mod job;
mod personal;
mod request;

pub use job::{
    ErasureJobCancelled, ErasureJobChunkStarted, ErasureJobEvent, ErasureJobFinished,
    ErasureJobItemsSettled, ErasureJobStarted, ErasureJobSubmitted, ErasureJobValidated, ItemCheck,
    ItemFinding, ItemOutcome, JobEnd, MAX_JOB_ITEMS,
};
pub use personal::{
    Answer, LoginData, PaymentData, Personal, PersonalCategory, Profile, ProfilePatch, SealedBox,
};
pub use request::{
    Actor, BlockerCode, ErasureCancelled, ErasureCompleted, ErasureDeferred, ErasureExtended,
    ErasureRefused, ErasureRequestEvent, ErasureRequested, ExtensionReason,
};

use ledger_types::{
    BroadcasterId, CustomerId, JobId, Money, OfferId, PaymentId, RefundId, RequestId,
    SubscriptionId, Timestamp,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The schema version every event type is written with today.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("refusing to encode an event whose personal data is not sealed")]
    Unsealed,
    #[error("unknown event type {event_type} v{version}")]
    UnknownType { event_type: String, version: u16 },
    #[error("malformed {event_type} payload: {reason}")]
    Malformed {
        event_type: &'static str,
        reason: String,
    },
}

/// How a broadcaster is integrated with the platform; only white-label broadcasters
/// own their customers exclusively and may erase them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Integration {
    WhiteLabel,
    Shared,
}

/// Events of the broadcaster stream (`broadcaster-{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcasterRegistered {
    pub broadcaster_id: BroadcasterId,
    /// The broadcaster's business name (a company, not a person).
    pub name: String,
    pub integration: Integration,
    pub at: Timestamp,
}

/// A precondition checked before an erasure, recorded in its receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Precondition {
    /// The customer is visible to the requesting broadcaster.
    CustomerVisibleToBroadcaster,
    /// The requesting broadcaster has a white-label integration.
    BroadcasterIsWhiteLabel,
    /// The customer is linked to the requesting broadcaster alone.
    NotSharedAcrossBroadcasters,
    /// No subscription of the customer, with any broadcaster, is active.
    NoActiveSubscription,
    /// Not checked again: the erasure was decided before, is on the forget list
    /// kept apart from the data, and is re-applied to a log restored from a backup
    /// older than it (see `ledger_app::forget`).
    OnForgetList,
    /// The platform operator erased the account (the admin key): the broadcaster
    /// rules (white-label, not shared) do not apply to it, only
    /// `NoActiveSubscription` with every broadcaster.
    PlatformOperator,
}

impl Precondition {
    pub const ALL: [Precondition; 4] = [
        Precondition::CustomerVisibleToBroadcaster,
        Precondition::BroadcasterIsWhiteLabel,
        Precondition::NotSharedAcrossBroadcasters,
        Precondition::NoActiveSubscription,
    ];
}

/// The events of a customer stream (`customer-{id}`): profile, links to broadcasters,
/// subscriptions, payments, refunds and the erasure decision.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerEvent {
    Registered(CustomerRegistered),
    Linked(CustomerLinked),
    ProfileUpdated(ProfileUpdated),
    LoginRecorded(LoginRecorded),
    SubscriptionStarted(SubscriptionStarted),
    SubscriptionTerminated(SubscriptionTerminated),
    PaymentCaptured(PaymentCaptured),
    PaymentRefunded(PaymentRefunded),
    Anonymized(CustomerAnonymized),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRegistered {
    pub customer_id: CustomerId,
    pub broadcaster_id: BroadcasterId,
    pub at: Timestamp,
    pub profile: Personal<Profile>,
}

/// The account was linked to one more broadcaster (a shared account).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerLinked {
    pub broadcaster_id: BroadcasterId,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdated {
    pub broadcaster_id: BroadcasterId,
    pub at: Timestamp,
    pub patch: Personal<ProfilePatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRecorded {
    pub broadcaster_id: BroadcasterId,
    pub at: Timestamp,
    pub login: Personal<LoginData>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionStarted {
    pub subscription_id: SubscriptionId,
    pub broadcaster_id: BroadcasterId,
    pub offer_id: OfferId,
    pub at: Timestamp,
    /// When the subscription ends by itself, if it has an end date: the erasure
    /// process ends it then (a `SubscriptionTerminated` dated at this time).
    /// Absent in events written before it existed, and left out when none, so
    /// those events keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionTerminated {
    pub subscription_id: SubscriptionId,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentCaptured {
    pub payment_id: PaymentId,
    pub broadcaster_id: BroadcasterId,
    pub offer_id: OfferId,
    pub subscription_id: Option<SubscriptionId>,
    pub amount: Money,
    pub at: Timestamp,
    /// The payer's IP address and any other personal detail of the payment.
    pub payer: Personal<PaymentData>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRefunded {
    pub refund_id: RefundId,
    pub payment_id: PaymentId,
    pub broadcaster_id: BroadcasterId,
    pub offer_id: OfferId,
    pub amount: Money,
    pub at: Timestamp,
}

/// The durable erasure decision. Appended before the customer's data key is
/// destroyed; a reconciler finishes any destruction a crash interrupted. Holds no
/// personal data: it is the erasure receipt's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerAnonymized {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub broadcaster_id: BroadcasterId,
    pub at: Timestamp,
    pub categories: Vec<PersonalCategory>,
    pub preconditions: Vec<Precondition>,
    /// Who acted: the broadcaster and its API key's id, or the platform operator.
    /// Absent in events written before it was recorded (and then left out of the
    /// stored form, so those events keep their bytes); `broadcaster_id` acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
}

impl CustomerAnonymized {
    /// Who acted, also for events written before the actor was recorded (then the
    /// broadcaster named, with no key id).
    pub fn actor(&self) -> Actor {
        self.actor.unwrap_or(Actor::Broadcaster {
            broadcaster_id: self.broadcaster_id,
            key_id: None,
        })
    }
}

impl CustomerEvent {
    /// The type name stored with the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            CustomerEvent::Registered(_) => "CustomerRegistered",
            CustomerEvent::Linked(_) => "CustomerLinked",
            CustomerEvent::ProfileUpdated(_) => "ProfileUpdated",
            CustomerEvent::LoginRecorded(_) => "LoginRecorded",
            CustomerEvent::SubscriptionStarted(_) => "SubscriptionStarted",
            CustomerEvent::SubscriptionTerminated(_) => "SubscriptionTerminated",
            CustomerEvent::PaymentCaptured(_) => "PaymentCaptured",
            CustomerEvent::PaymentRefunded(_) => "PaymentRefunded",
            CustomerEvent::Anonymized(_) => "CustomerAnonymized",
        }
    }

    /// Whether this event carries a personal block (sealed on the way to the store).
    pub fn carries_personal_data(&self) -> bool {
        matches!(
            self,
            CustomerEvent::Registered(_)
                | CustomerEvent::ProfileUpdated(_)
                | CustomerEvent::LoginRecorded(_)
                | CustomerEvent::PaymentCaptured(_)
        )
    }

    /// Encodes the payload as JSON. Fails with [`CodecError::Unsealed`] if any
    /// personal block is still open.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let r = match self {
            CustomerEvent::Registered(e) => serde_json::to_vec(e),
            CustomerEvent::Linked(e) => serde_json::to_vec(e),
            CustomerEvent::ProfileUpdated(e) => serde_json::to_vec(e),
            CustomerEvent::LoginRecorded(e) => serde_json::to_vec(e),
            CustomerEvent::SubscriptionStarted(e) => serde_json::to_vec(e),
            CustomerEvent::SubscriptionTerminated(e) => serde_json::to_vec(e),
            CustomerEvent::PaymentCaptured(e) => serde_json::to_vec(e),
            CustomerEvent::PaymentRefunded(e) => serde_json::to_vec(e),
            CustomerEvent::Anonymized(e) => serde_json::to_vec(e),
        };
        r.map_err(|e| {
            if e.to_string().contains(personal::UNSEALED_MARKER) {
                CodecError::Unsealed
            } else {
                CodecError::Malformed {
                    event_type: self.event_type(),
                    reason: e.to_string(),
                }
            }
        })
    }

    /// Decodes a stored payload of the given type and schema version.
    pub fn decode(event_type: &str, version: u16, payload: &[u8]) -> Result<Self, CodecError> {
        if version != SCHEMA_VERSION {
            return Err(CodecError::UnknownType {
                event_type: event_type.to_owned(),
                version,
            });
        }
        Ok(match event_type {
            "CustomerRegistered" => CustomerEvent::Registered(de("CustomerRegistered", payload)?),
            "CustomerLinked" => CustomerEvent::Linked(de("CustomerLinked", payload)?),
            "ProfileUpdated" => CustomerEvent::ProfileUpdated(de("ProfileUpdated", payload)?),
            "LoginRecorded" => CustomerEvent::LoginRecorded(de("LoginRecorded", payload)?),
            "SubscriptionStarted" => {
                CustomerEvent::SubscriptionStarted(de("SubscriptionStarted", payload)?)
            }
            "SubscriptionTerminated" => {
                CustomerEvent::SubscriptionTerminated(de("SubscriptionTerminated", payload)?)
            }
            "PaymentCaptured" => CustomerEvent::PaymentCaptured(de("PaymentCaptured", payload)?),
            "PaymentRefunded" => CustomerEvent::PaymentRefunded(de("PaymentRefunded", payload)?),
            "CustomerAnonymized" => CustomerEvent::Anonymized(de("CustomerAnonymized", payload)?),
            other => {
                return Err(CodecError::UnknownType {
                    event_type: other.to_owned(),
                    version,
                })
            }
        })
    }
}

fn de<T: serde::de::DeserializeOwned>(name: &'static str, payload: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(payload).map_err(|e| CodecError::Malformed {
        event_type: name,
        // serde_json's messages name fields and positions, never values.
        reason: e.to_string(),
    })
}

impl BroadcasterRegistered {
    pub const EVENT_TYPE: &'static str = "BroadcasterRegistered";

    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(self).map_err(|e| CodecError::Malformed {
            event_type: Self::EVENT_TYPE,
            reason: e.to_string(),
        })
    }

    pub fn decode(version: u16, payload: &[u8]) -> Result<Self, CodecError> {
        if version != SCHEMA_VERSION {
            return Err(CodecError::UnknownType {
                event_type: Self::EVENT_TYPE.to_owned(),
                version,
            });
        }
        serde_json::from_slice(payload).map_err(|e| CodecError::Malformed {
            event_type: Self::EVENT_TYPE,
            reason: e.to_string(),
        })
    }
}

/// Any stored event, decoded by its stream and type (personal blocks stay sealed).
#[derive(Debug, Clone, PartialEq)]
pub enum DomainEvent {
    Customer(CustomerId, CustomerEvent),
    Broadcaster(BroadcasterId, BroadcasterRegistered),
    ErasureRequest(RequestId, ErasureRequestEvent),
    ErasureJob(JobId, ErasureJobEvent),
}

impl DomainEvent {
    /// Decodes a stored record from its stream name, type, schema version and payload.
    pub fn decode(
        stream: &str,
        event_type: &str,
        version: u16,
        payload: &[u8],
    ) -> Result<Self, CodecError> {
        if let Some(c) = streams::parse_customer(stream) {
            return Ok(DomainEvent::Customer(
                c,
                CustomerEvent::decode(event_type, version, payload)?,
            ));
        }
        if let Some(r) = streams::parse_erasure_request(stream) {
            return Ok(DomainEvent::ErasureRequest(
                r,
                ErasureRequestEvent::decode(event_type, version, payload)?,
            ));
        }
        if let Some(j) = streams::parse_erasure_job(stream) {
            return Ok(DomainEvent::ErasureJob(
                j,
                ErasureJobEvent::decode(event_type, version, payload)?,
            ));
        }
        if let Some(b) = streams::parse_broadcaster(stream) {
            if event_type == BroadcasterRegistered::EVENT_TYPE {
                return Ok(DomainEvent::Broadcaster(
                    b,
                    BroadcasterRegistered::decode(version, payload)?,
                ));
            }
        }
        Err(CodecError::UnknownType {
            event_type: event_type.to_owned(),
            version,
        })
    }
}

/// Stream names: one stream per customer, broadcaster, erasure request and erasure job.
pub mod streams {
    use ledger_types::{BroadcasterId, CustomerId, JobId, RequestId};

    pub const CUSTOMER_PREFIX: &str = "customer-";
    pub const BROADCASTER_PREFIX: &str = "broadcaster-";
    pub const ERASURE_REQUEST_PREFIX: &str = "erasure-request-";
    pub const ERASURE_JOB_PREFIX: &str = "erasure-job-";

    pub fn erasure_job(id: JobId) -> String {
        format!("{ERASURE_JOB_PREFIX}{id}")
    }
    pub fn parse_erasure_job(stream: &str) -> Option<JobId> {
        stream
            .strip_prefix(ERASURE_JOB_PREFIX)
            .and_then(|s| JobId::parse(s).ok())
    }

    pub fn erasure_request(id: RequestId) -> String {
        format!("{ERASURE_REQUEST_PREFIX}{id}")
    }
    pub fn parse_erasure_request(stream: &str) -> Option<RequestId> {
        stream
            .strip_prefix(ERASURE_REQUEST_PREFIX)
            .and_then(|s| RequestId::parse(s).ok())
    }

    pub fn customer(id: CustomerId) -> String {
        format!("{CUSTOMER_PREFIX}{id}")
    }
    pub fn broadcaster(id: BroadcasterId) -> String {
        format!("{BROADCASTER_PREFIX}{id}")
    }
    pub fn parse_customer(stream: &str) -> Option<CustomerId> {
        stream
            .strip_prefix(CUSTOMER_PREFIX)
            .and_then(|s| CustomerId::parse(s).ok())
    }
    pub fn parse_broadcaster(stream: &str) -> Option<BroadcasterId> {
        stream
            .strip_prefix(BROADCASTER_PREFIX)
            .and_then(|s| BroadcasterId::parse(s).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_types::Currency;

    fn sealed() -> SealedBox {
        SealedBox::from_bytes(vec![7u8; 40])
    }

    #[test]
    fn an_event_with_an_open_personal_block_refuses_to_encode() {
        let e = CustomerEvent::LoginRecorded(LoginRecorded {
            broadcaster_id: BroadcasterId::new(),
            at: Timestamp::from_millis(1),
            login: Personal::Open(LoginData {
                ip: "192.0.2.1".into(),
            }),
        });
        assert!(matches!(e.encode(), Err(CodecError::Unsealed)));
    }

    #[test]
    fn sealed_events_round_trip_through_their_stored_form() {
        let events = vec![
            CustomerEvent::LoginRecorded(LoginRecorded {
                broadcaster_id: BroadcasterId::new(),
                at: Timestamp::from_millis(1),
                login: Personal::Sealed(sealed()),
            }),
            CustomerEvent::PaymentCaptured(PaymentCaptured {
                payment_id: PaymentId::new(),
                broadcaster_id: BroadcasterId::new(),
                offer_id: OfferId::parse("basic").unwrap(),
                subscription_id: None,
                amount: Money::positive(500, Currency::parse("EUR").unwrap()).unwrap(),
                at: Timestamp::from_millis(2),
                payer: Personal::Sealed(sealed()),
            }),
        ];
        for e in events {
            let bytes = e.encode().unwrap();
            let back = CustomerEvent::decode(e.event_type(), SCHEMA_VERSION, &bytes).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn unknown_types_versions_and_fields_are_rejected() {
        assert!(CustomerEvent::decode("Nope", 1, b"{}").is_err());
        assert!(CustomerEvent::decode("CustomerLinked", 2, b"{}").is_err());
        let linked = format!(
            r#"{{"broadcaster_id":"{}","at":1,"extra":1}}"#,
            BroadcasterId::new()
        );
        assert!(CustomerEvent::decode("CustomerLinked", 1, linked.as_bytes()).is_err());
    }

    fn old_anonymized_payload(r: RequestId, c: CustomerId, b: BroadcasterId) -> String {
        format!(
            r#"{{"request_id":"{r}","customer_id":"{c}","broadcaster_id":"{b}","at":1767225600000,"categories":["email"],"preconditions":["CUSTOMER_VISIBLE_TO_BROADCASTER","NO_ACTIVE_SUBSCRIPTION"]}}"#
        )
    }

    #[test]
    fn an_erasure_stored_before_the_actor_was_recorded_decodes_and_keeps_its_bytes() {
        let (r, c, b) = (RequestId::new(), CustomerId::new(), BroadcasterId::new());
        let stored = old_anonymized_payload(r, c, b);
        let e = CustomerEvent::decode("CustomerAnonymized", 1, stored.as_bytes()).unwrap();
        let CustomerEvent::Anonymized(a) = &e else {
            panic!("decoded as {e:?}")
        };
        assert_eq!(a.actor, None);
        assert_eq!(
            a.actor(),
            Actor::Broadcaster {
                broadcaster_id: b,
                key_id: None
            }
        );
        assert_eq!(e.encode().unwrap(), stored.as_bytes());
    }

    #[test]
    fn an_erasure_names_its_actor_a_key_or_the_operator() {
        let (r, c, b) = (RequestId::new(), CustomerId::new(), BroadcasterId::new());
        let k = ledger_types::KeyId::new();
        let stored = old_anonymized_payload(r, c, b);
        let base = CustomerEvent::decode("CustomerAnonymized", 1, stored.as_bytes()).unwrap();
        for (actor, json) in [
            (
                Actor::Broadcaster {
                    broadcaster_id: b,
                    key_id: Some(k),
                },
                format!(
                    r#","actor":{{"kind":"broadcaster","broadcaster_id":"{b}","key_id":"{k}"}}}}"#
                ),
            ),
            (
                Actor::Operator,
                r#","actor":{"kind":"operator"}}"#.to_owned(),
            ),
        ] {
            let CustomerEvent::Anonymized(mut a) = base.clone() else {
                unreachable!()
            };
            a.actor = Some(actor);
            let e = CustomerEvent::Anonymized(a);
            let bytes = e.encode().unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(text.ends_with(&json), "{text}");
            let back = CustomerEvent::decode("CustomerAnonymized", 1, &bytes).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn erasure_request_events_round_trip_in_their_own_stream() {
        let r = RequestId::new();
        let stream = streams::erasure_request(r);
        assert_eq!(streams::parse_erasure_request(&stream), Some(r));
        assert_eq!(streams::parse_customer(&stream), None);
        let at = Timestamp::from_millis(1_767_225_600_000);
        let events = vec![
            ErasureRequestEvent::Requested(ErasureRequested {
                request_id: r,
                customer_id: CustomerId::new(),
                requested_by: Actor::Operator,
                reference: Some(ledger_types::Reference::parse("ZD-1").unwrap()),
                received_at: at,
                due_at: at.add_months(1).unwrap(),
            }),
            ErasureRequestEvent::Deferred(ErasureDeferred {
                blockers: vec![BlockerCode::ActiveSubscription],
                subscriptions: vec![SubscriptionId::new()],
                at,
            }),
            ErasureRequestEvent::Completed(ErasureCompleted {
                anonymized_request_id: r,
                anonymized_position: 7,
                anonymized_at: at,
                data_key_destroyed: true,
                at,
            }),
            ErasureRequestEvent::Refused(ErasureRefused {
                code: BlockerCode::NotWhiteLabel,
                at,
            }),
            ErasureRequestEvent::Cancelled(ErasureCancelled {
                by: Actor::Operator,
                at,
            }),
            ErasureRequestEvent::Extended(ErasureExtended {
                due_at: at.add_months(3).unwrap(),
                reason: ExtensionReason::Complexity,
                by: Actor::Operator,
                at,
            }),
        ];
        for e in events {
            let bytes = e.encode().unwrap();
            assert!(ErasureRequestEvent::is_type(e.event_type()));
            let back =
                DomainEvent::decode(&stream, e.event_type(), SCHEMA_VERSION, &bytes).unwrap();
            assert_eq!(back, DomainEvent::ErasureRequest(r, e));
        }
        // A reference that could be personal data does not even decode.
        let bad = format!(
            r#"{{"request_id":"{r}","customer_id":"{}","requested_by":{{"kind":"operator"}},"reference":"ada@example.org","received_at":1,"due_at":2}}"#,
            CustomerId::new()
        );
        assert!(ErasureRequestEvent::decode("ErasureRequested", 1, bad.as_bytes()).is_err());
    }

    #[test]
    fn stream_names_round_trip() {
        let c = CustomerId::new();
        assert_eq!(streams::parse_customer(&streams::customer(c)), Some(c));
        assert_eq!(streams::parse_customer("broadcaster-x"), None);
    }
}

/// One stored event as the projections see it: its global position in the log
/// (gap-free, starting at 1), its id, when the store recorded it, and the decoded
/// event with its personal blocks sealed.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub position: u64,
    pub event_id: ledger_types::EventId,
    pub recorded_at: Timestamp,
    pub event: &'a DomainEvent,
}
