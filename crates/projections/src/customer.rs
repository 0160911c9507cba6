//! Customer summaries: what the dashboard's summary panel shows, one row per
//! customer, and the tombstone an erasure leaves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ledger_events::{
    CustomerEvent, CustomerRegistered, DomainEvent, Personal, Profile, ProfilePatch,
};
use ledger_types::{
    BroadcasterId, Currency, CustomerId, EventId, OfferId, RequestId, SubscriptionId, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::Envelope;

/// A personal block copied from an event, still sealed, with the id of that event:
/// the app opens it with the customer's data key and `(customer id, event id)` as
/// associated data. Serializes as the event id and the base64url ciphertext; its
/// `Debug` shows the ciphertext's length only.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct SealedBlock<T> {
    pub event_id: EventId,
    /// Always [`Personal::Sealed`] in a view (`Personal` refuses to serialize an
    /// open block, and the fold never stores one).
    pub block: Personal<T>,
}

impl<T> SealedBlock<T> {
    /// A sealed copy of `block`, or `None` if the block is open: the read side stores
    /// nothing rather than plaintext.
    fn copy(event_id: EventId, block: &Personal<T>) -> Option<Self> {
        block.as_sealed().map(|s| SealedBlock {
            event_id,
            block: Personal::Sealed(s.clone()),
        })
    }
}

/// One subscription as the summary shows it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct SubscriptionView {
    pub subscription_id: SubscriptionId,
    /// The broadcaster that started it.
    pub broadcaster_id: BroadcasterId,
    pub offer_id: OfferId,
    /// `terminated_at.is_none()`, kept as a field for readers of the stored row.
    pub active: bool,
    pub started_at: Timestamp,
    pub terminated_at: Option<Timestamp>,
}

/// A customer's payments in one currency, in minor units. Sums are `i128` (see
/// [`crate::amount`]): they cannot overflow.
#[derive(Serialize, Deserialize, Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Totals {
    /// The sum of the captured amounts.
    #[serde(with = "crate::amount")]
    pub captured: i128,
    /// The sum of the refunded amounts.
    #[serde(with = "crate::amount")]
    pub refunded: i128,
    /// `captured - refunded`.
    #[serde(with = "crate::amount")]
    pub net: i128,
}

/// Where and when a customer was erased: present on a tombstone.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct ErasureMark {
    pub at: Timestamp,
    pub request_id: RequestId,
    /// The log position of the `CustomerAnonymized` event.
    pub position: u64,
    /// The broadcaster on whose behalf the customer was erased.
    pub broadcaster_id: BroadcasterId,
}

/// The summary of one customer.
///
/// Holds personal data only as [`SealedBlock`]s (the registration profile and the
/// later patches, in log order); a tombstone ([`is_tombstone`](Self::is_tombstone))
/// holds none and never gets any again. Everything else (links, subscriptions,
/// payment counts and totals) is not personal and survives erasure unchanged.
///
/// `updated_at` is the event time (`at`) of the last event of the customer's stream
/// applied after registration, whatever its kind (a login too); not the time the
/// store recorded it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct CustomerView {
    pub customer_id: CustomerId,
    pub registered_by: BroadcasterId,
    /// Every broadcaster the account is linked to, the registering one included.
    pub broadcasters: BTreeSet<BroadcasterId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// In the order they were started.
    pub subscriptions: Vec<SubscriptionView>,
    pub payment_count: u64,
    pub refund_count: u64,
    pub totals: BTreeMap<Currency, Totals>,
    pub profile: Option<SealedBlock<Profile>>,
    /// In log order; the app applies them to the opened profile one after another.
    pub patches: Vec<SealedBlock<ProfilePatch>>,
    /// `Some` on a tombstone.
    pub erasure: Option<ErasureMark>,
}

impl CustomerView {
    fn registered(customer_id: CustomerId, e: &CustomerRegistered, event_id: EventId) -> Self {
        CustomerView {
            customer_id,
            registered_by: e.broadcaster_id,
            broadcasters: BTreeSet::from([e.broadcaster_id]),
            created_at: e.at,
            updated_at: e.at,
            subscriptions: Vec::new(),
            payment_count: 0,
            refund_count: 0,
            totals: BTreeMap::new(),
            profile: SealedBlock::copy(event_id, &e.profile),
            patches: Vec::new(),
            erasure: None,
        }
    }

    /// Whether the customer was erased.
    pub fn is_tombstone(&self) -> bool {
        self.erasure.is_some()
    }

    /// Whether the view holds any (sealed) personal block.
    pub fn holds_personal_data(&self) -> bool {
        self.profile.is_some() || !self.patches.is_empty()
    }

    /// A customer is visible to exactly the broadcasters it is linked to; a tombstone
    /// stays visible to them (as a tombstone), like the aggregate.
    pub fn visible_to(&self, b: BroadcasterId) -> bool {
        self.broadcasters.contains(&b)
    }

    /// The subscriptions still active, with any broadcaster.
    pub fn active_subscriptions(&self) -> impl Iterator<Item = &SubscriptionView> {
        self.subscriptions.iter().filter(|s| s.active)
    }

    fn totals_mut(&mut self, currency: Currency) -> &mut Totals {
        self.totals.entry(currency).or_default()
    }

    /// Applies one event of this customer's stream (not a registration).
    fn apply(&mut self, position: u64, event_id: EventId, event: &CustomerEvent) {
        match event {
            // Handled by `CustomerViews::apply` (first registration wins).
            CustomerEvent::Registered(_) => return,
            CustomerEvent::Linked(e) => {
                self.broadcasters.insert(e.broadcaster_id);
            }
            CustomerEvent::ProfileUpdated(e) => {
                if !self.is_tombstone() {
                    if let Some(block) = SealedBlock::copy(event_id, &e.patch) {
                        self.patches.push(block);
                    }
                }
            }
            // The summary does not show login addresses; they stay in the log.
            CustomerEvent::LoginRecorded(_) => {}
            CustomerEvent::SubscriptionStarted(e) => {
                let known = self
                    .subscriptions
                    .iter()
                    .any(|s| s.subscription_id == e.subscription_id);
                if !known {
                    self.subscriptions.push(SubscriptionView {
                        subscription_id: e.subscription_id,
                        broadcaster_id: e.broadcaster_id,
                        offer_id: e.offer_id.clone(),
                        active: true,
                        started_at: e.at,
                        terminated_at: None,
                    });
                }
            }
            CustomerEvent::SubscriptionTerminated(e) => {
                if let Some(s) = self
                    .subscriptions
                    .iter_mut()
                    .find(|s| s.subscription_id == e.subscription_id)
                {
                    if s.terminated_at.is_none() {
                        s.terminated_at = Some(e.at);
                        s.active = false;
                    }
                }
            }
            // The payer block is not shown and not copied.
            CustomerEvent::PaymentCaptured(e) => {
                self.payment_count += 1;
                add(self.totals_mut(e.amount.currency()), e.amount.minor(), 0);
            }
            CustomerEvent::PaymentRefunded(e) => {
                self.refund_count += 1;
                add(self.totals_mut(e.amount.currency()), 0, e.amount.minor());
            }
            CustomerEvent::Anonymized(e) => {
                if self.erasure.is_none() {
                    self.erasure = Some(ErasureMark {
                        at: e.at,
                        request_id: e.request_id,
                        position,
                        broadcaster_id: e.broadcaster_id,
                    });
                }
                self.profile = None;
                self.patches.clear();
            }
        }
        self.updated_at = event_time(event);
    }
}

/// Amounts are `i64` and there are fewer than 2^64 events, so the `i128` sums
/// cannot reach their bounds; `saturating_` only keeps a release build from ever
/// wrapping.
fn add(t: &mut Totals, captured: i64, refunded: i64) {
    t.captured = t.captured.saturating_add(i128::from(captured));
    t.refunded = t.refunded.saturating_add(i128::from(refunded));
    t.net = t.captured.saturating_sub(t.refunded);
}

/// The event time of a customer event.
pub(crate) fn event_time(e: &CustomerEvent) -> Timestamp {
    match e {
        CustomerEvent::Registered(e) => e.at,
        CustomerEvent::Linked(e) => e.at,
        CustomerEvent::ProfileUpdated(e) => e.at,
        CustomerEvent::LoginRecorded(e) => e.at,
        CustomerEvent::SubscriptionStarted(e) => e.at,
        CustomerEvent::SubscriptionTerminated(e) => e.at,
        CustomerEvent::PaymentCaptured(e) => e.at,
        CustomerEvent::PaymentRefunded(e) => e.at,
        CustomerEvent::Anonymized(e) => e.at,
    }
}

/// Every customer's summary, the position of the last event folded, and the ids of
/// the summaries changed since the app last persisted them.
///
/// Rules of the fold:
/// - `CustomerRegistered` creates the view (a second registration is ignored, as by
///   the aggregate); events of a customer before its registration are ignored (the
///   aggregate never emits any).
/// - `CustomerAnonymized` makes the view a tombstone: `profile = None`, `patches`
///   cleared, `erasure = Some(..)` (the first erasure's mark); links, subscriptions,
///   counts and totals are kept. A tombstone never stores a personal block again;
///   later revenue events still count.
/// - Personal blocks are copied sealed; an open block (which the read side should
///   never see) is not stored at all.
/// - Broadcaster events do not touch customer views (they advance the position).
#[derive(Debug, Default)]
pub struct CustomerViews {
    views: HashMap<CustomerId, Slot>,
    position: u64,
    /// The ids whose slot is marked dirty, each once (one hash lookup per event).
    dirty: Vec<CustomerId>,
}

/// A view is shared with the [`Changes`](crate::Changes) being saved (no copy per
/// save); folding into a view still being saved copies it first.
#[derive(Debug)]
struct Slot {
    view: Arc<CustomerView>,
    dirty: bool,
}

impl CustomerViews {
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of the last event folded (0 before any).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Sets the position after loading persisted rows: events at or before it are
    /// then ignored.
    pub fn set_position(&mut self, p: u64) {
        self.position = p;
    }

    /// Folds one event. An event at or before [`position`](Self::position) is
    /// ignored, so seeing an event twice changes nothing.
    pub fn apply(&mut self, e: &Envelope<'_>) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        let DomainEvent::Customer(id, event) = e.event else {
            return;
        };
        if let CustomerEvent::Registered(r) = event {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.views.entry(*id) {
                slot.insert(Slot {
                    view: Arc::new(CustomerView::registered(*id, r, e.event_id)),
                    dirty: true,
                });
                self.dirty.push(*id);
            }
            return;
        }
        if let Some(slot) = self.views.get_mut(id) {
            Arc::make_mut(&mut slot.view).apply(e.position, e.event_id, event);
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(*id);
            }
        }
    }

    pub fn get(&self, id: CustomerId) -> Option<&CustomerView> {
        self.views.get(&id).map(|s| &*s.view)
    }

    /// The view of `id`, shared (for saving it while folding goes on).
    pub fn get_shared(&self, id: CustomerId) -> Option<Arc<CustomerView>> {
        self.views.get(&id).map(|s| s.view.clone())
    }

    /// Every view, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &CustomerView> {
        self.views.values().map(|s| &*s.view)
    }

    /// Puts a persisted view back (when loading rows at start). Not marked dirty.
    pub fn insert(&mut self, v: CustomerView) {
        let id = v.customer_id;
        if let Some(old) = self.views.insert(
            id,
            Slot {
                view: Arc::new(v),
                dirty: false,
            },
        ) {
            if old.dirty {
                self.dirty.retain(|d| *d != id);
            }
        }
    }

    /// The ids of the views changed since the last call, sorted; the app persists
    /// those rows with [`position`](Self::position).
    pub fn take_dirty(&mut self) -> Vec<CustomerId> {
        let mut ids = std::mem::take(&mut self.dirty);
        for id in &ids {
            if let Some(slot) = self.views.get_mut(id) {
                slot.dirty = false;
            }
        }
        ids.sort_unstable();
        ids
    }

    pub fn len(&self) -> usize {
        self.views.len()
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }
}
