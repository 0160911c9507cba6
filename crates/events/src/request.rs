//! The events of an erasure request's stream (`erasure-request-{id}`).
//!
//! An erasure request is the record of a data subject's request to be erased and of
//! what the ledger did with it (GDPR Art. 12(3) and 12(4)): when it was received,
//! by whom, when it is due, and how it ended. It lives in a stream of its own, apart
//! from the customer's, so that a refusal, a wait or a cancellation is recorded
//! without touching the customer stream (a refused erasure appends nothing there).
//!
//! ```text
//! ErasureRequested ──► ErasureCompleted                (erased; the receipt's position)
//!        │         ──► ErasureRefused                  (a permanent reason)
//!        │         ──► ErasureCancelled
//!        ▼
//! ErasureDeferred  ──► ErasureCompleted | ErasureRefused | ErasureCancelled
//! (ErasureExtended may come once while the request is open, deferred or not)
//! ```
//!
//! Nothing here is personal data: ids, codes, times and a reference whose format
//! makes personal data impossible to put in ([`Reference`]).

use ledger_types::{
    BroadcasterId, CustomerId, KeyId, Reference, RequestId, SubscriptionId, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::CodecError;

/// Who acted on an erasure: a broadcaster (with the id of the API key it used, when
/// it came through the API; none from the operator's CLI acting for it), or the
/// platform operator (the admin key, which has no id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Actor {
    Broadcaster {
        broadcaster_id: BroadcasterId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<KeyId>,
    },
    Operator,
}

impl Actor {
    /// The broadcaster that acted, if one did.
    pub fn broadcaster(&self) -> Option<BroadcasterId> {
        match self {
            Actor::Broadcaster { broadcaster_id, .. } => Some(*broadcaster_id),
            Actor::Operator => None,
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Actor::Operator)
    }
}

/// What blocks an erasure, as a code (the refusal codes of the Customer aggregate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BlockerCode {
    /// The requesting broadcaster is not white-label (permanent for it).
    NotWhiteLabel,
    /// The account is linked to other broadcasters too (permanent for a broadcaster).
    SharedAcrossBroadcasters,
    /// A subscription is active: the erasure waits until none is (not permanent).
    ActiveSubscription,
}

impl BlockerCode {
    pub fn code(&self) -> &'static str {
        match self {
            BlockerCode::NotWhiteLabel => "NOT_WHITE_LABEL",
            BlockerCode::SharedAcrossBroadcasters => "SHARED_ACROSS_BROADCASTERS",
            BlockerCode::ActiveSubscription => "ACTIVE_SUBSCRIPTION",
        }
    }

    /// Whether no change of the customer's subscriptions can lift it: the request
    /// is then refused rather than deferred.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, BlockerCode::ActiveSubscription)
    }
}

/// Why a request's deadline was extended (GDPR Art. 12(3): "taking into account the
/// complexity and number of the requests").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExtensionReason {
    Complexity,
    NumberOfRequests,
}

/// The request was received. `due_at` is when it must have ended (received_at plus
/// the configured period, one month by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequested {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub requested_by: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    pub received_at: Timestamp,
    pub due_at: Timestamp,
}

/// The erasure waits: its only blocker is an active subscription. It completes by
/// itself once none of the listed (or any later) subscriptions is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureDeferred {
    pub blockers: Vec<BlockerCode>,
    pub subscriptions: Vec<SubscriptionId>,
    pub at: Timestamp,
}

/// The erasure is done: `CustomerAnonymized` is in the customer's stream at
/// `anonymized_position` and the data key is destroyed. `anonymized_request_id`
/// is the request id that event carries: this request's own, or an earlier one's
/// when the customer had already been erased (the first receipt stands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureCompleted {
    pub anonymized_request_id: RequestId,
    pub anonymized_position: u64,
    pub anonymized_at: Timestamp,
    pub data_key_destroyed: bool,
    pub at: Timestamp,
}

/// The erasure will not be done, for a permanent reason (Art. 12(4)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRefused {
    pub code: BlockerCode,
    pub at: Timestamp,
}

/// The requester withdrew the request before it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureCancelled {
    pub by: Actor,
    pub at: Timestamp,
}

/// The deadline moved to `due_at` (at most two months past the original one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureExtended {
    pub due_at: Timestamp,
    pub reason: ExtensionReason,
    pub by: Actor,
    pub at: Timestamp,
}

/// The events of an erasure request stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureRequestEvent {
    Requested(ErasureRequested),
    Deferred(ErasureDeferred),
    Completed(ErasureCompleted),
    Refused(ErasureRefused),
    Cancelled(ErasureCancelled),
    Extended(ErasureExtended),
}

impl ErasureRequestEvent {
    /// The type name stored with the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            ErasureRequestEvent::Requested(_) => "ErasureRequested",
            ErasureRequestEvent::Deferred(_) => "ErasureDeferred",
            ErasureRequestEvent::Completed(_) => "ErasureCompleted",
            ErasureRequestEvent::Refused(_) => "ErasureRefused",
            ErasureRequestEvent::Cancelled(_) => "ErasureCancelled",
            ErasureRequestEvent::Extended(_) => "ErasureExtended",
        }
    }

    /// Whether `event_type` names an event of this stream type.
    pub fn is_type(event_type: &str) -> bool {
        matches!(
            event_type,
            "ErasureRequested"
                | "ErasureDeferred"
                | "ErasureCompleted"
                | "ErasureRefused"
                | "ErasureCancelled"
                | "ErasureExtended"
        )
    }

    /// Encodes the payload as JSON (nothing here is sealed: nothing is personal).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let r = match self {
            ErasureRequestEvent::Requested(e) => serde_json::to_vec(e),
            ErasureRequestEvent::Deferred(e) => serde_json::to_vec(e),
            ErasureRequestEvent::Completed(e) => serde_json::to_vec(e),
            ErasureRequestEvent::Refused(e) => serde_json::to_vec(e),
            ErasureRequestEvent::Cancelled(e) => serde_json::to_vec(e),
            ErasureRequestEvent::Extended(e) => serde_json::to_vec(e),
        };
        r.map_err(|e| CodecError::Malformed {
            event_type: self.event_type(),
            reason: e.to_string(),
        })
    }

    /// Decodes a stored payload of the given type and schema version.
    pub fn decode(event_type: &str, version: u16, payload: &[u8]) -> Result<Self, CodecError> {
        use crate::de;
        if version != crate::SCHEMA_VERSION {
            return Err(CodecError::UnknownType {
                event_type: event_type.to_owned(),
                version,
            });
        }
        Ok(match event_type {
            "ErasureRequested" => ErasureRequestEvent::Requested(de("ErasureRequested", payload)?),
            "ErasureDeferred" => ErasureRequestEvent::Deferred(de("ErasureDeferred", payload)?),
            "ErasureCompleted" => ErasureRequestEvent::Completed(de("ErasureCompleted", payload)?),
            "ErasureRefused" => ErasureRequestEvent::Refused(de("ErasureRefused", payload)?),
            "ErasureCancelled" => ErasureRequestEvent::Cancelled(de("ErasureCancelled", payload)?),
            "ErasureExtended" => ErasureRequestEvent::Extended(de("ErasureExtended", payload)?),
            other => {
                return Err(CodecError::UnknownType {
                    event_type: other.to_owned(),
                    version,
                })
            }
        })
    }
}
