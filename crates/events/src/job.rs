//! The events of a bulk erasure job's stream (`erasure-job-{id}`).
//!
//! A job is a list of customers to erase, filed at once (Stripe's redaction jobs,
//! Segment's regulation requests). Every customer of it becomes one erasure request
//! of its own (`erasure-request-{id}`, with a request id derived from the job and
//! the customer), so deferral, refusals and deadlines apply to each; the job's
//! stream records what was asked, what the validation found, and how far the
//! runner got, in chunks of consecutive items:
//!
//! ```text
//! ErasureJobSubmitted ──► ErasureJobValidated ──► ErasureJobStarted
//!   (validating)            (ready)                 (running)
//!                                                      │ ┌──────────────────────────┐
//!                                                      ▼ ▼                          │
//!                                 ErasureJobChunkStarted ──► ErasureJobItemsSettled ┘
//!                                                      │
//!                                                      ▼
//!                                 ErasureJobFinished (succeeded | partially_failed)
//! ErasureJobCancelled: from validating, ready or running (a chunk in flight is still
//! settled after it, so that what was done is on record).
//! ```
//!
//! Nothing here is personal data: ids, codes, counts, times and a reference whose
//! format makes personal data impossible to put in ([`Reference`]).

use ledger_types::{CustomerId, JobId, Reference, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{Actor, BlockerCode, CodecError};

/// Most customers one job may name.
pub const MAX_JOB_ITEMS: usize = 10_000;

/// What the validation found for one customer of a job (the preview's blockers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemCheck {
    /// The requester cannot see the customer (unknown, or another tenant's: the
    /// two are not told apart).
    NotFound,
    NotWhiteLabel,
    SharedAcrossBroadcasters,
    /// Erasure waits for the customer's active subscriptions to end.
    ActiveSubscription,
}

impl ItemCheck {
    pub fn code(&self) -> &'static str {
        match self {
            ItemCheck::NotFound => "NOT_FOUND",
            ItemCheck::NotWhiteLabel => "NOT_WHITE_LABEL",
            ItemCheck::SharedAcrossBroadcasters => "SHARED_ACROSS_BROADCASTERS",
            ItemCheck::ActiveSubscription => "ACTIVE_SUBSCRIPTION",
        }
    }
}

impl From<BlockerCode> for ItemCheck {
    fn from(b: BlockerCode) -> Self {
        match b {
            BlockerCode::NotWhiteLabel => ItemCheck::NotWhiteLabel,
            BlockerCode::SharedAcrossBroadcasters => ItemCheck::SharedAcrossBroadcasters,
            BlockerCode::ActiveSubscription => ItemCheck::ActiveSubscription,
        }
    }
}

/// The validation's finding for one item (only items with a blocker are listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemFinding {
    /// The item's index in the job's list.
    pub index: u32,
    pub checks: Vec<ItemCheck>,
}

/// How one item of a job ended, as far as the job is concerned (its request may
/// move on afterwards: a deferred request completes by itself later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    /// Erased: the request completed (the data key is destroyed).
    Completed,
    /// Filed and waiting for the customer's active subscriptions to end.
    Deferred,
    /// Filed and refused for a permanent reason (recorded on the request).
    Refused,
    /// The requester cannot see the customer: no request was filed.
    NotFound,
    /// The item's request was cancelled before it ended.
    Cancelled,
}

impl ItemOutcome {
    /// Whether the item counts as a failure of the job.
    pub fn is_failure(&self) -> bool {
        matches!(self, ItemOutcome::Refused | ItemOutcome::NotFound)
    }
}

/// How a job that ran to its end ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEnd {
    /// Every item completed or is deferred.
    Succeeded,
    /// At least one item was refused or not found.
    PartiallyFailed,
}

/// A job was submitted: who asked, and for which customers, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureJobSubmitted {
    pub job_id: JobId,
    pub requested_by: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    pub customer_ids: Vec<CustomerId>,
    pub at: Timestamp,
}

/// Every item was checked as the erasure preview checks it; only the items with
/// a blocker are listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureJobValidated {
    pub findings: Vec<ItemFinding>,
    pub at: Timestamp,
}

/// The job started running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureJobStarted {
    pub at: Timestamp,
}

/// The runner is about to file the requests of items `from..to` (a crash before
/// they are settled is recovered item by item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureJobChunkStarted {
    pub from: u32,
    pub to: u32,
    pub at: Timestamp,
}

/// Items `from..to` reached the outcomes listed, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureJobItemsSettled {
    pub from: u32,
    pub to: u32,
    pub outcomes: Vec<ItemOutcome>,
    pub at: Timestamp,
}

/// Every item is settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureJobFinished {
    pub end: JobEnd,
    pub at: Timestamp,
}

/// The job was cancelled: no item is filed after this (one in flight is settled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureJobCancelled {
    pub by: Actor,
    pub at: Timestamp,
}

/// The events of an erasure job stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureJobEvent {
    Submitted(ErasureJobSubmitted),
    Validated(ErasureJobValidated),
    Started(ErasureJobStarted),
    ChunkStarted(ErasureJobChunkStarted),
    ItemsSettled(ErasureJobItemsSettled),
    Finished(ErasureJobFinished),
    Cancelled(ErasureJobCancelled),
}

impl ErasureJobEvent {
    /// The type name stored with the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            ErasureJobEvent::Submitted(_) => "ErasureJobSubmitted",
            ErasureJobEvent::Validated(_) => "ErasureJobValidated",
            ErasureJobEvent::Started(_) => "ErasureJobStarted",
            ErasureJobEvent::ChunkStarted(_) => "ErasureJobChunkStarted",
            ErasureJobEvent::ItemsSettled(_) => "ErasureJobItemsSettled",
            ErasureJobEvent::Finished(_) => "ErasureJobFinished",
            ErasureJobEvent::Cancelled(_) => "ErasureJobCancelled",
        }
    }

    /// Encodes the payload as JSON (nothing here is sealed: nothing is personal).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let r = match self {
            ErasureJobEvent::Submitted(e) => serde_json::to_vec(e),
            ErasureJobEvent::Validated(e) => serde_json::to_vec(e),
            ErasureJobEvent::Started(e) => serde_json::to_vec(e),
            ErasureJobEvent::ChunkStarted(e) => serde_json::to_vec(e),
            ErasureJobEvent::ItemsSettled(e) => serde_json::to_vec(e),
            ErasureJobEvent::Finished(e) => serde_json::to_vec(e),
            ErasureJobEvent::Cancelled(e) => serde_json::to_vec(e),
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
            "ErasureJobSubmitted" => {
                ErasureJobEvent::Submitted(de("ErasureJobSubmitted", payload)?)
            }
            "ErasureJobValidated" => {
                ErasureJobEvent::Validated(de("ErasureJobValidated", payload)?)
            }
            "ErasureJobStarted" => ErasureJobEvent::Started(de("ErasureJobStarted", payload)?),
            "ErasureJobChunkStarted" => {
                ErasureJobEvent::ChunkStarted(de("ErasureJobChunkStarted", payload)?)
            }
            "ErasureJobItemsSettled" => {
                ErasureJobEvent::ItemsSettled(de("ErasureJobItemsSettled", payload)?)
            }
            "ErasureJobFinished" => ErasureJobEvent::Finished(de("ErasureJobFinished", payload)?),
            "ErasureJobCancelled" => {
                ErasureJobEvent::Cancelled(de("ErasureJobCancelled", payload)?)
            }
            other => {
                return Err(CodecError::UnknownType {
                    event_type: other.to_owned(),
                    version,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_events_round_trip_through_their_stored_form() {
        let events = vec![
            ErasureJobEvent::Submitted(ErasureJobSubmitted {
                job_id: JobId::new(),
                requested_by: Actor::Operator,
                reference: Some(Reference::parse("ZD-1").unwrap()),
                customer_ids: vec![CustomerId::new(), CustomerId::new()],
                at: Timestamp::from_millis(1),
            }),
            ErasureJobEvent::Validated(ErasureJobValidated {
                findings: vec![ItemFinding {
                    index: 1,
                    checks: vec![ItemCheck::NotFound],
                }],
                at: Timestamp::from_millis(2),
            }),
            ErasureJobEvent::ItemsSettled(ErasureJobItemsSettled {
                from: 0,
                to: 2,
                outcomes: vec![ItemOutcome::Completed, ItemOutcome::NotFound],
                at: Timestamp::from_millis(3),
            }),
            ErasureJobEvent::Finished(ErasureJobFinished {
                end: JobEnd::PartiallyFailed,
                at: Timestamp::from_millis(4),
            }),
        ];
        for e in events {
            let bytes = e.encode().unwrap();
            let back =
                ErasureJobEvent::decode(e.event_type(), crate::SCHEMA_VERSION, &bytes).unwrap();
            assert_eq!(back, e);
        }
    }
}
