//! The Customer aggregate's state and its evolve function ([`Customer::apply`]).
//!
//! The state keeps only what the rules need: who can see the customer, which
//! subscriptions are active, what was captured and refunded, and the erasure receipt.
//! It keeps **no personal data**, so folding a stream whose personal blocks are sealed
//! (or whose data key is destroyed) yields exactly the same state as folding the
//! plaintext events: the aggregate works unchanged before and after an erasure.

use std::collections::{BTreeMap, BTreeSet};

use ledger_events::{CustomerAnonymized, CustomerEvent};
use ledger_types::{
    BroadcasterId, CustomerId, Money, OfferId, PaymentId, RefundId, SubscriptionId, Timestamp,
};

use crate::{BroadcasterRef, Integration, Refusal};

/// One subscription of the customer, as the aggregate knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subscription {
    pub subscription_id: SubscriptionId,
    /// The broadcaster that started it; only it can terminate it or charge against it.
    pub broadcaster_id: BroadcasterId,
    pub offer_id: OfferId,
    pub started_at: Timestamp,
    /// When it ends by itself, if it has an end date.
    pub ends_at: Option<Timestamp>,
    /// `None` while the subscription is active.
    pub terminated_at: Option<Timestamp>,
}

impl Subscription {
    pub fn is_active(&self) -> bool {
        self.terminated_at.is_none()
    }
}

/// One captured payment and how much of it was refunded so far.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Payment {
    pub payment_id: PaymentId,
    pub broadcaster_id: BroadcasterId,
    pub offer_id: OfferId,
    pub subscription_id: Option<SubscriptionId>,
    /// The captured amount, exactly as in the `PaymentCaptured` event.
    pub amount: Money,
    /// The sum of the refunds of this payment, in the payment's currency.
    pub refunded: Money,
    pub at: Timestamp,
}

impl Payment {
    /// What can still be refunded: captured minus refunded (never negative).
    pub fn refundable(&self) -> Money {
        let left = self
            .amount
            .minor()
            .saturating_sub(self.refunded.minor())
            .max(0);
        Money::new(left, self.amount.currency())
    }
}

/// One refund, as recorded by a `PaymentRefunded` event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refund {
    pub refund_id: RefundId,
    pub payment_id: PaymentId,
    pub broadcaster_id: BroadcasterId,
    pub offer_id: OfferId,
    pub amount: Money,
    pub at: Timestamp,
}

/// The Customer aggregate: the state decided on by [`Customer::handle`] and evolved by
/// [`Customer::apply`]. `Default` is the state of a customer that does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customer {
    pub(crate) id: Option<CustomerId>,
    pub(crate) registered_by: Option<BroadcasterId>,
    pub(crate) broadcasters: BTreeSet<BroadcasterId>,
    pub(crate) subscriptions: BTreeMap<SubscriptionId, Subscription>,
    pub(crate) payments: BTreeMap<PaymentId, Payment>,
    pub(crate) refunds: BTreeMap<RefundId, Refund>,
    pub(crate) anonymized: Option<CustomerAnonymized>,
}

impl Customer {
    /// Folds a stream's events, oldest first, into the current state.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a CustomerEvent>) -> Self {
        let mut c = Customer::default();
        for e in events {
            c.apply(e);
        }
        c
    }

    /// Evolves the state by one event. Never fails and never panics: the log is the
    /// truth, so an odd history (a duplicate id, a refund of an unknown payment, an
    /// event before registration) is absorbed by ignoring what cannot apply, and the
    /// first occurrence of anything wins. Personal blocks are never read, so sealed
    /// events apply exactly like open ones.
    pub fn apply(&mut self, event: &CustomerEvent) {
        match event {
            CustomerEvent::Registered(e) => {
                if self.id.is_none() {
                    self.id = Some(e.customer_id);
                    self.registered_by = Some(e.broadcaster_id);
                    self.broadcasters.insert(e.broadcaster_id);
                }
            }
            CustomerEvent::Linked(e) => {
                self.broadcasters.insert(e.broadcaster_id);
            }
            // Personal data only: nothing the rules depend on.
            CustomerEvent::ProfileUpdated(_) | CustomerEvent::LoginRecorded(_) => {}
            CustomerEvent::SubscriptionStarted(e) => {
                self.subscriptions
                    .entry(e.subscription_id)
                    .or_insert_with(|| Subscription {
                        subscription_id: e.subscription_id,
                        broadcaster_id: e.broadcaster_id,
                        offer_id: e.offer_id.clone(),
                        started_at: e.at,
                        ends_at: e.ends_at,
                        terminated_at: None,
                    });
            }
            CustomerEvent::SubscriptionTerminated(e) => {
                if let Some(s) = self.subscriptions.get_mut(&e.subscription_id) {
                    s.terminated_at.get_or_insert(e.at);
                }
            }
            CustomerEvent::PaymentCaptured(e) => {
                self.payments
                    .entry(e.payment_id)
                    .or_insert_with(|| Payment {
                        payment_id: e.payment_id,
                        broadcaster_id: e.broadcaster_id,
                        offer_id: e.offer_id.clone(),
                        subscription_id: e.subscription_id,
                        amount: e.amount,
                        refunded: Money::new(0, e.amount.currency()),
                        at: e.at,
                    });
            }
            CustomerEvent::PaymentRefunded(e) => {
                if self.refunds.contains_key(&e.refund_id) {
                    return;
                }
                let Some(p) = self.payments.get_mut(&e.payment_id) else {
                    return;
                };
                if p.amount.currency() != e.amount.currency() {
                    return;
                }
                p.refunded = Money::new(
                    p.refunded.minor().saturating_add(e.amount.minor()),
                    p.refunded.currency(),
                );
                self.refunds.insert(
                    e.refund_id,
                    Refund {
                        refund_id: e.refund_id,
                        payment_id: e.payment_id,
                        broadcaster_id: e.broadcaster_id,
                        offer_id: e.offer_id.clone(),
                        amount: e.amount,
                        at: e.at,
                    },
                );
            }
            CustomerEvent::Anonymized(e) => {
                // Irreversible, and the first receipt is the one that counts.
                if self.anonymized.is_none() {
                    self.anonymized = Some(e.clone());
                }
            }
        }
    }

    /// Whether the customer was registered.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn id(&self) -> Option<CustomerId> {
        self.id
    }

    /// The broadcaster that registered the customer.
    pub fn registered_by(&self) -> Option<BroadcasterId> {
        self.registered_by
    }

    /// Every broadcaster the account is linked to (the registering one included).
    pub fn broadcasters(&self) -> &BTreeSet<BroadcasterId> {
        &self.broadcasters
    }

    /// A customer is visible to exactly the broadcasters it is linked to, and to none
    /// before it is registered. An anonymized customer stays visible (as a tombstone).
    pub fn is_visible_to(&self, b: BroadcasterId) -> bool {
        self.exists() && self.broadcasters.contains(&b)
    }

    /// The active subscriptions with any broadcaster, sorted by id.
    pub fn active_subscriptions(&self) -> Vec<SubscriptionId> {
        self.subscriptions
            .values()
            .filter(|s| s.is_active())
            .map(|s| s.subscription_id)
            .collect()
    }

    pub fn subscription(&self, id: SubscriptionId) -> Option<&Subscription> {
        self.subscriptions.get(&id)
    }

    /// All subscriptions, sorted by id.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.subscriptions.values()
    }

    /// The first erasure receipt, if the customer was anonymized.
    pub fn anonymized(&self) -> Option<&CustomerAnonymized> {
        self.anonymized.as_ref()
    }

    pub fn is_anonymized(&self) -> bool {
        self.anonymized.is_some()
    }

    pub fn payment(&self, id: PaymentId) -> Option<&Payment> {
        self.payments.get(&id)
    }

    /// All payments, sorted by id.
    pub fn payments(&self) -> impl Iterator<Item = &Payment> {
        self.payments.values()
    }

    pub fn refund(&self, id: RefundId) -> Option<&Refund> {
        self.refunds.get(&id)
    }

    /// All refunds, sorted by id.
    pub fn refunds(&self) -> impl Iterator<Item = &Refund> {
        self.refunds.values()
    }

    /// What stands between `broadcaster` and erasing this customer, for a dry-run
    /// preview: `Err(NotFound)` if the broadcaster cannot see the customer, otherwise
    /// every blocker in the order `Anonymize` checks them (`NotWhiteLabel`,
    /// `SharedAcrossBroadcasters`, `ActiveSubscription`). Empty means an `Anonymize`
    /// command would be accepted now; that includes an already anonymized customer,
    /// for which the command is an idempotent no-op returning the first receipt.
    /// `handle(Anonymize)` refuses with exactly the first blocker listed here.
    pub fn erasure_blockers(&self, broadcaster: &BroadcasterRef) -> Result<Vec<Refusal>, Refusal> {
        if !self.is_visible_to(broadcaster.id) {
            return Err(Refusal::NotFound);
        }
        let mut blockers = Vec::new();
        if self.anonymized.is_some() {
            return Ok(blockers);
        }
        if broadcaster.integration != Integration::WhiteLabel {
            blockers.push(Refusal::NotWhiteLabel);
        }
        if self.broadcasters.iter().any(|b| *b != broadcaster.id) {
            blockers.push(Refusal::SharedAcrossBroadcasters);
        }
        let active = self.active_subscriptions();
        if !active.is_empty() {
            blockers.push(Refusal::ActiveSubscription {
                subscriptions: active,
            });
        }
        Ok(blockers)
    }
}
