//! Why a command was refused: a machine-readable code plus details that hold ids and
//! amounts only, never personal data, so a refusal is safe to log and to return in an
//! error body as is.

use ledger_types::{Money, SubscriptionId, Timestamp};

use crate::{JobState, RequestStatus};
use ledger_types::CustomerId;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use thiserror::Error;

/// A command the aggregate will not turn into events.
///
/// The `Display` messages and the serialized form contain ids, amounts and field
/// names only: a refusal never echoes a personal value (not even an invalid one).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The customer does not exist, or the broadcaster named in the command cannot
    /// see it. The two cases are deliberately indistinguishable (no existence oracle).
    #[error("customer not found")]
    NotFound,
    /// Only a white-label broadcaster may erase a customer.
    #[error("the broadcaster does not have a white-label integration")]
    NotWhiteLabel,
    /// The customer is linked to more than the requesting broadcaster.
    #[error("the customer account is shared with other broadcasters")]
    SharedAcrossBroadcasters,
    /// Subscriptions (of any broadcaster) that must be terminated before erasure.
    #[error(
        "the customer has active subscriptions that must be terminated first: {}",
        join(subscriptions)
    )]
    ActiveSubscription { subscriptions: Vec<SubscriptionId> },
    /// The customer was anonymized; nothing may add personal data to the account.
    #[error("the customer was anonymized")]
    CustomerAnonymized,
    #[error("a customer with this id already exists")]
    CustomerExists,
    #[error("the customer is already linked to this broadcaster")]
    AlreadyLinked,
    #[error("a subscription with this id already exists")]
    SubscriptionExists,
    #[error("subscription not found")]
    SubscriptionNotFound,
    #[error("the subscription is not active")]
    SubscriptionNotActive,
    #[error("a payment with this id already exists")]
    PaymentExists,
    #[error("payment not found")]
    PaymentNotFound,
    #[error("a refund with this id already exists")]
    RefundExists,
    /// The refund would take the refunded total above the captured amount.
    #[error("the refund exceeds the refundable amount of {refundable}")]
    RefundExceedsPayment { refundable: Money },
    #[error("the refund's currency differs from the payment's")]
    CurrencyMismatch,
    /// The subscription's `ends_at` is not after its start (the server's clock):
    /// the same body sent earlier would have been accepted, so this is a conflict
    /// with the present, not a malformed value.
    #[error("ends_at is not after the subscription starts (now)")]
    EndsAtPassed,
    /// An erasure request with this id was already received.
    #[error("an erasure request with this id already exists")]
    RequestExists,
    /// The day a request says it was received is in the future, or more than a
    /// year ago (the server's clock): a conflict with the present, as
    /// `ENDS_AT_PASSED` is.
    #[error("received_at must be between {earliest} and now")]
    ReceivedAtOutOfRange { earliest: Timestamp },
    /// The erasure request ended (completed, refused or cancelled): nothing changes
    /// it any more.
    #[error("the erasure request is {} and can no longer change", status.as_str())]
    RequestClosed { status: RequestStatus },
    /// An erasure request is extended once.
    #[error("the erasure request was already extended")]
    AlreadyExtended,
    /// The new due date is not after the request's current one.
    #[error("the new due date must be after the current one, {current}")]
    DueDateNotLater { current: Timestamp },
    /// The extension would take the due date past two months after the original.
    #[error(
        "the due date can be extended to {latest} at the latest (two months past the original)"
    )]
    ExtensionTooLong { latest: Timestamp },
    /// A request completes only once its customer's data key is destroyed.
    #[error("the customer's data key is not destroyed yet")]
    KeyNotDestroyed,
    /// An erasure job with this id was already submitted, for other customers or by
    /// another requester.
    #[error("an erasure job with this id already exists")]
    JobExists,
    /// The erasure job ended (succeeded, partially failed): it can no longer be
    /// cancelled.
    #[error("the erasure job is {} and can no longer change", state.as_str())]
    JobClosed { state: JobState },
    /// The erasure job is not in the state the command needs.
    #[error("the erasure job is {}", state.as_str())]
    JobState { state: JobState },
    /// An erasure job names more customers than allowed.
    #[error("an erasure job names at most {max} customers ({given} given)")]
    TooManyIds { given: usize, max: usize },
    /// An erasure job names a customer more than once.
    #[error("an erasure job names each customer once; {} are named more than once", ids.len())]
    DuplicateIds { ids: Vec<CustomerId> },
    /// A field of the command is malformed. Names the field, never its value.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        field: &'static str,
        reason: &'static str,
    },
}

fn join(ids: &[SubscriptionId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Refusal {
    /// The stable machine-readable code (what the API returns and clients match on).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound => "NOT_FOUND",
            Refusal::NotWhiteLabel => "NOT_WHITE_LABEL",
            Refusal::SharedAcrossBroadcasters => "SHARED_ACROSS_BROADCASTERS",
            Refusal::ActiveSubscription { .. } => "ACTIVE_SUBSCRIPTION",
            Refusal::CustomerAnonymized => "CUSTOMER_ANONYMIZED",
            Refusal::CustomerExists => "CUSTOMER_EXISTS",
            Refusal::AlreadyLinked => "ALREADY_LINKED",
            Refusal::SubscriptionExists => "SUBSCRIPTION_EXISTS",
            Refusal::SubscriptionNotFound => "SUBSCRIPTION_NOT_FOUND",
            Refusal::SubscriptionNotActive => "SUBSCRIPTION_NOT_ACTIVE",
            Refusal::PaymentExists => "PAYMENT_EXISTS",
            Refusal::PaymentNotFound => "PAYMENT_NOT_FOUND",
            Refusal::RefundExists => "REFUND_EXISTS",
            Refusal::RefundExceedsPayment { .. } => "REFUND_EXCEEDS_PAYMENT",
            Refusal::CurrencyMismatch => "CURRENCY_MISMATCH",
            Refusal::EndsAtPassed => "ENDS_AT_PASSED",
            Refusal::RequestExists => "REQUEST_EXISTS",
            Refusal::ReceivedAtOutOfRange { .. } => "RECEIVED_AT_OUT_OF_RANGE",
            Refusal::RequestClosed { .. } => "REQUEST_CLOSED",
            Refusal::AlreadyExtended => "ALREADY_EXTENDED",
            Refusal::DueDateNotLater { .. } => "DUE_DATE_NOT_LATER",
            Refusal::ExtensionTooLong { .. } => "EXTENSION_TOO_LONG",
            Refusal::KeyNotDestroyed => "KEY_NOT_DESTROYED",
            Refusal::JobExists => "JOB_EXISTS",
            Refusal::JobClosed { .. } => "JOB_CLOSED",
            Refusal::JobState { .. } => "JOB_STATE",
            Refusal::TooManyIds { .. } => "TOO_MANY_IDS",
            Refusal::DuplicateIds { .. } => "DUPLICATE_IDS",
            Refusal::InvalidInput { .. } => "INVALID_INPUT",
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: &'static str) -> Self {
        Refusal::InvalidInput { field, reason }
    }
}

/// Serializes as `{"code": "...", "message": "...", ...details}` where the details
/// are `subscriptions` (ACTIVE_SUBSCRIPTION), `refundable` (REFUND_EXCEEDS_PAYMENT),
/// `status` (REQUEST_CLOSED), `state` (JOB_CLOSED, JOB_STATE), `given` and `max`
/// (TOO_MANY_IDS), `duplicates` (DUPLICATE_IDS), `earliest_received_at`
/// (RECEIVED_AT_OUT_OF_RANGE), `current_due_at` (DUE_DATE_NOT_LATER), `latest_due_at`
/// (EXTENSION_TOO_LONG) or `field` and
/// `reason` (INVALID_INPUT).
impl Serialize for Refusal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("code", self.code())?;
        m.serialize_entry("message", &self.to_string())?;
        match self {
            Refusal::ActiveSubscription { subscriptions } => {
                m.serialize_entry("subscriptions", subscriptions)?;
            }
            Refusal::RefundExceedsPayment { refundable } => {
                m.serialize_entry("refundable", refundable)?;
            }
            Refusal::RequestClosed { status } => {
                m.serialize_entry("status", status)?;
            }
            Refusal::ReceivedAtOutOfRange { earliest } => {
                m.serialize_entry("earliest_received_at", &earliest.to_rfc3339())?;
            }
            Refusal::DueDateNotLater { current } => {
                m.serialize_entry("current_due_at", &current.to_rfc3339())?;
            }
            Refusal::ExtensionTooLong { latest } => {
                m.serialize_entry("latest_due_at", &latest.to_rfc3339())?;
            }
            Refusal::JobClosed { state } | Refusal::JobState { state } => {
                m.serialize_entry("state", state)?;
            }
            Refusal::TooManyIds { given, max } => {
                m.serialize_entry("given", given)?;
                m.serialize_entry("max", max)?;
            }
            Refusal::DuplicateIds { ids } => {
                m.serialize_entry("duplicates", ids)?;
            }
            Refusal::InvalidInput { field, reason } => {
                m.serialize_entry("field", field)?;
                m.serialize_entry("reason", reason)?;
            }
            _ => {}
        }
        m.end()
    }
}
