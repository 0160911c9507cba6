//! The command side of the domain: the [`Customer`] aggregate, the commands it
//! accepts ([`CustomerCommand`]), why it refuses them ([`Refusal`]), and the rules of
//! design §2 made exact, including the one that matters most here: it is the only
//! place that decides to emit `CustomerAnonymized`.
//!
//! # What it owns
//!
//! - `decide` ([`Customer::handle`]): state + command → events or a refusal;
//! - `evolve` ([`Customer::apply`], [`Customer::from_events`]): state + event → state;
//! - the queries the app needs to answer before or after deciding (visibility, active
//!   subscriptions, the first erasure receipt, a dry-run list of erasure blockers,
//!   payments and refunds).
//!
//! # What it must not do, and why the aggregate is pure
//!
//! No I/O, no async runtime, no clock reads, no randomness, no logging: times and ids
//! arrive inside commands, and context that lives in other streams (the requesting
//! broadcaster's integration type) arrives as a [`BroadcasterRef`] loaded by the app.
//! The app wraps this crate in "load stream, decide, append with expected version,
//! then shred the key". Keeping the decision pure is what makes that safe and cheap:
//!
//! - a decision depends only on the events read at a stream version, so when an
//!   optimistic-concurrency append fails the app can reload and decide again with no
//!   side effect to undo (no key destroyed, nothing logged, no half-made erasure);
//! - replaying a stream (projections, audits, crash recovery) re-runs exactly the same
//!   `apply`, which can neither fail nor observe anything outside the log;
//! - every rule is testable as given events / when command / then events, and by
//!   property tests over thousands of random histories, in milliseconds.
//!
//! The state holds no personal data: `apply` never opens a [`Personal`] block, so a
//! stream whose blocks are sealed, or whose data key was destroyed by an erasure,
//! folds to the same state as its plaintext. Refusals carry ids, amounts and field
//! names only, never a personal value. Personal data in emitted events is in
//! [`Personal::Open`] blocks; sealing them is the app's job (with the crypto crate).
//!
//! [`Personal`]: ledger_events::Personal
//! [`Personal::Open`]: ledger_events::Personal::Open

use std::fmt;

mod customer;
mod decide;
mod job;
mod refusal;
mod request;
pub mod validate;

pub use customer::{Customer, Payment, Refund, Subscription};
pub use job::{check_ids, duplicate_ids, ErasureJob, ItemState, JobCommand, JobState};
pub use ledger_events::Integration;
pub use refusal::Refusal;
pub use request::{
    Eraser, ErasurePlan, ErasureRequest, RequestCommand, RequestStatus, MAX_EXTENSION_MONTHS,
};

use ledger_events::{BroadcasterRegistered, Profile, ProfilePatch};
use ledger_types::{
    BroadcasterId, CustomerId, KeyId, Money, OfferId, PaymentId, RefundId, RequestId,
    SubscriptionId, Timestamp,
};

/// What the Customer aggregate needs to know about the broadcaster requesting an
/// erasure. It lives in the broadcaster's own stream, so the app loads it and passes
/// it in with the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BroadcasterRef {
    pub id: BroadcasterId,
    pub integration: Integration,
}

impl From<&BroadcasterRegistered> for BroadcasterRef {
    fn from(e: &BroadcasterRegistered) -> Self {
        BroadcasterRef {
            id: e.broadcaster_id,
            integration: e.integration,
        }
    }
}

/// A request to change a customer. Each carries the time it happens at (the app
/// reads the clock, not the aggregate) and, except `Register` and `Link`, the
/// broadcaster acting, which must be able to see the customer.
///
/// `Debug` is written by hand: it shows ids, offers, amounts and times, and redacts
/// every personal field (profile, patch, IP addresses).
#[derive(Clone, PartialEq, Eq)]
pub enum CustomerCommand {
    /// Create the account, linked to the registering broadcaster.
    Register {
        customer_id: CustomerId,
        broadcaster_id: BroadcasterId,
        profile: Profile,
        at: Timestamp,
    },
    /// Link the account to one more broadcaster (a shared account).
    Link {
        broadcaster_id: BroadcasterId,
        at: Timestamp,
    },
    UpdateProfile {
        broadcaster_id: BroadcasterId,
        patch: ProfilePatch,
        at: Timestamp,
    },
    RecordLogin {
        broadcaster_id: BroadcasterId,
        ip: String,
        at: Timestamp,
    },
    /// Start a subscription; with `ends_at`, it ends by itself then (after `at`).
    StartSubscription {
        broadcaster_id: BroadcasterId,
        subscription_id: SubscriptionId,
        offer_id: OfferId,
        ends_at: Option<Timestamp>,
        at: Timestamp,
    },
    TerminateSubscription {
        broadcaster_id: BroadcasterId,
        subscription_id: SubscriptionId,
        at: Timestamp,
    },
    /// Record a captured payment. `subscription_id`, if given, must be a subscription
    /// of this customer started by the same broadcaster (active or not).
    CapturePayment {
        broadcaster_id: BroadcasterId,
        payment_id: PaymentId,
        offer_id: OfferId,
        subscription_id: Option<SubscriptionId>,
        amount: Money,
        payer_ip: Option<String>,
        at: Timestamp,
    },
    /// Refund (part of) a payment captured by the same broadcaster.
    RefundPayment {
        broadcaster_id: BroadcasterId,
        refund_id: RefundId,
        payment_id: PaymentId,
        amount: Money,
        at: Timestamp,
    },
    /// Erase the customer's personal data on behalf of `broadcaster` (design §2),
    /// which acted with the API key `key_id` (none from the operator's CLI).
    Anonymize {
        request_id: RequestId,
        broadcaster: BroadcasterRef,
        key_id: Option<KeyId>,
        at: Timestamp,
    },
    /// Erase the customer's personal data as the platform operator (the admin
    /// key): allowed for a shared account or a non-white-label broadcaster's
    /// customer, once no broadcaster has an active subscription for it.
    AnonymizeAsOperator {
        request_id: RequestId,
        at: Timestamp,
    },
    /// Record again an erasure that was decided before and is on the forget list,
    /// in a log restored from a backup older than it. No precondition is checked
    /// again: the erasure happened, whatever the restored log says (an active
    /// subscription in it ended after the backup). Idempotent.
    ReapplyErasure {
        request_id: RequestId,
        broadcaster_id: BroadcasterId,
        at: Timestamp,
    },
}

impl CustomerCommand {
    /// The command's name, for spans and metrics (holds no data).
    pub fn name(&self) -> &'static str {
        match self {
            CustomerCommand::Register { .. } => "Register",
            CustomerCommand::Link { .. } => "Link",
            CustomerCommand::UpdateProfile { .. } => "UpdateProfile",
            CustomerCommand::RecordLogin { .. } => "RecordLogin",
            CustomerCommand::StartSubscription { .. } => "StartSubscription",
            CustomerCommand::TerminateSubscription { .. } => "TerminateSubscription",
            CustomerCommand::CapturePayment { .. } => "CapturePayment",
            CustomerCommand::RefundPayment { .. } => "RefundPayment",
            CustomerCommand::Anonymize { .. } => "Anonymize",
            CustomerCommand::AnonymizeAsOperator { .. } => "AnonymizeAsOperator",
            CustomerCommand::ReapplyErasure { .. } => "ReapplyErasure",
        }
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for CustomerCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(self.name());
        match self {
            CustomerCommand::Register {
                customer_id,
                broadcaster_id,
                profile: _,
                at,
            } => d
                .field("customer_id", customer_id)
                .field("broadcaster_id", broadcaster_id)
                .field("profile", &REDACTED)
                .field("at", at),
            CustomerCommand::Link { broadcaster_id, at } => {
                d.field("broadcaster_id", broadcaster_id).field("at", at)
            }
            CustomerCommand::UpdateProfile {
                broadcaster_id,
                patch: _,
                at,
            } => d
                .field("broadcaster_id", broadcaster_id)
                .field("patch", &REDACTED)
                .field("at", at),
            CustomerCommand::RecordLogin {
                broadcaster_id,
                ip: _,
                at,
            } => d
                .field("broadcaster_id", broadcaster_id)
                .field("ip", &REDACTED)
                .field("at", at),
            CustomerCommand::StartSubscription {
                broadcaster_id,
                subscription_id,
                offer_id,
                ends_at,
                at,
            } => d
                .field("broadcaster_id", broadcaster_id)
                .field("subscription_id", subscription_id)
                .field("offer_id", offer_id)
                .field("ends_at", ends_at)
                .field("at", at),
            CustomerCommand::TerminateSubscription {
                broadcaster_id,
                subscription_id,
                at,
            } => d
                .field("broadcaster_id", broadcaster_id)
                .field("subscription_id", subscription_id)
                .field("at", at),
            CustomerCommand::CapturePayment {
                broadcaster_id,
                payment_id,
                offer_id,
                subscription_id,
                amount,
                payer_ip,
                at,
            } => d
                .field("broadcaster_id", broadcaster_id)
                .field("payment_id", payment_id)
                .field("offer_id", offer_id)
                .field("subscription_id", subscription_id)
                .field("amount", amount)
                .field("payer_ip", &payer_ip.as_ref().map(|_| REDACTED))
                .field("at", at),
            CustomerCommand::RefundPayment {
                broadcaster_id,
                refund_id,
                payment_id,
                amount,
                at,
            } => d
                .field("broadcaster_id", broadcaster_id)
                .field("refund_id", refund_id)
                .field("payment_id", payment_id)
                .field("amount", amount)
                .field("at", at),
            CustomerCommand::Anonymize {
                request_id,
                broadcaster,
                key_id,
                at,
            } => d
                .field("request_id", request_id)
                .field("broadcaster", broadcaster)
                .field("key_id", key_id)
                .field("at", at),
            CustomerCommand::AnonymizeAsOperator { request_id, at } => {
                d.field("request_id", request_id).field("at", at)
            }
            CustomerCommand::ReapplyErasure {
                request_id,
                broadcaster_id,
                at,
            } => d
                .field("request_id", request_id)
                .field("broadcaster_id", broadcaster_id)
                .field("at", at),
        };
        d.finish()
    }
}
