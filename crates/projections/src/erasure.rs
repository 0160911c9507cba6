//! Erasure records (the content of erasure receipts) and the three read models
//! folded together.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ledger_events::{
    CustomerAnonymized, CustomerEvent, DomainEvent, PersonalCategory, Precondition,
};
use ledger_types::{BroadcasterId, CustomerId, RequestId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{CustomerViews, Envelope, Revenue, RevenueFilter};

/// What an erasure receipt states: who asked, when, what was erased, which
/// preconditions were checked, where the decision is in the log, and the revenue
/// digest of the erasing broadcaster (all its rows, [`RevenueFilter::broadcaster`])
/// just before and just after the `CustomerAnonymized` event was folded. The two
/// digests are equal, which is the proof that the erasure changed no revenue figure.
/// Holds no personal data.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct ErasureRecord {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub broadcaster_id: BroadcasterId,
    pub at: Timestamp,
    pub categories: Vec<PersonalCategory>,
    pub preconditions: Vec<Precondition>,
    pub position: u64,
    pub revenue_digest_before: String,
    pub revenue_digest_after: String,
}

/// One [`ErasureRecord`] per erased customer (the first erasure only; the aggregate
/// never decides a second), the position of the last event folded, and the
/// customers whose record changed since the app last persisted them.
///
/// There is no `Erasures::apply`: a record needs the revenue state just before and
/// after its event, so erasures are only folded by [`ReadModel::apply`], together
/// with a [`Revenue`] fold at the same position. To rebuild erasure records, rebuild
/// revenue with them (from zero, or from rows of both persisted at one position).
#[derive(Debug, Default)]
pub struct Erasures {
    records: BTreeMap<CustomerId, ErasureRecord>,
    by_position: BTreeMap<u64, CustomerId>,
    position: u64,
    dirty: BTreeSet<CustomerId>,
}

impl Erasures {
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of the last event folded (0 before any).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Sets the position after loading persisted records.
    pub fn set_position(&mut self, p: u64) {
        self.position = p;
    }

    pub fn get(&self, customer: CustomerId) -> Option<&ErasureRecord> {
        self.records.get(&customer)
    }

    /// Every record, in log order.
    pub fn iter(&self) -> impl Iterator<Item = &ErasureRecord> {
        self.by_position
            .values()
            .filter_map(|c| self.records.get(c))
    }

    /// Puts a persisted record back (when loading at start). Not marked dirty.
    pub fn insert(&mut self, r: ErasureRecord) {
        if let Some(old) = self.records.get(&r.customer_id) {
            self.by_position.remove(&old.position);
        }
        self.dirty.remove(&r.customer_id);
        self.by_position.insert(r.position, r.customer_id);
        self.records.insert(r.customer_id, r);
    }

    /// The customers whose record was added since the last call, sorted.
    pub fn take_dirty(&mut self) -> Vec<CustomerId> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether the event at `position` erasing `customer` is one to record.
    fn wants(&self, position: u64, customer: CustomerId) -> bool {
        position > self.position && !self.records.contains_key(&customer)
    }

    fn advance(&mut self, position: u64) {
        self.position = self.position.max(position);
    }

    fn record(
        &mut self,
        position: u64,
        customer_id: CustomerId,
        e: &CustomerAnonymized,
        before: String,
        after: String,
    ) {
        let r = ErasureRecord {
            request_id: e.request_id,
            customer_id,
            broadcaster_id: e.broadcaster_id,
            at: e.at,
            categories: e.categories.clone(),
            preconditions: e.preconditions.clone(),
            position,
            revenue_digest_before: before,
            revenue_digest_after: after,
        };
        self.by_position.insert(position, customer_id);
        self.records.insert(customer_id, r);
        self.dirty.insert(customer_id);
        self.advance(position);
    }
}

/// The three read models folded together in log order. The erasure records need the
/// revenue state just before and just after each erasure, which only a fold in log
/// order has.
///
/// Each model keeps its own position, so customer views or revenue can be rebuilt
/// alone; [`position`](Self::position) is the smallest, the point to resume reading
/// the log from. For erasure records to be exact after a restart, persist the
/// revenue rows and the erasure records at the same position (one transaction): if
/// revenue were ahead of erasures, the digests of an erasure in between would be
/// taken from a later revenue state.
#[derive(Debug, Default)]
pub struct ReadModel {
    pub customers: CustomerViews,
    pub revenue: Revenue,
    pub erasures: Erasures,
    /// The log hash recorded with the loaded checkpoints, if all three projections
    /// were saved at one position with it: the log must hold that hash at that
    /// position, or these views were not folded from this log.
    pub checkpoint_hash: Option<[u8; 32]>,
    /// The last digest computed per broadcaster, with the revenue generation it was
    /// computed at: reused while the broadcaster's rows are unchanged, so a rebuild
    /// with many erasures does not rehash the same rows again and again.
    digests: HashMap<BroadcasterId, ((u64, u64), String)>,
}

impl ReadModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event into all three models (each ignores it if it is at or before
    /// its own position). On a `CustomerAnonymized` not seen before, the erasing
    /// broadcaster's revenue digest is taken before and after revenue folds the
    /// event, and an [`ErasureRecord`] is filed.
    pub fn apply(&mut self, e: &Envelope<'_>) {
        self.customers.apply(e);
        match e.event {
            DomainEvent::Customer(customer, CustomerEvent::Anonymized(a))
                if self.erasures.wants(e.position, *customer) =>
            {
                let before = self.broadcaster_digest(a.broadcaster_id);
                self.revenue.apply(e);
                let after = self.broadcaster_digest(a.broadcaster_id);
                self.erasures
                    .record(e.position, *customer, a, before, after);
            }
            _ => {
                self.revenue.apply(e);
                self.erasures.advance(e.position);
            }
        }
    }

    /// Forgets the chosen models (to rebuild them from position 0). Resetting the
    /// erasure records resets revenue too: records can only be rebuilt with it.
    pub fn reset(&mut self, customers: bool, revenue: bool, erasures: bool) {
        if customers {
            self.customers = CustomerViews::new();
        }
        if revenue || erasures {
            self.revenue = Revenue::new();
            self.digests.clear();
        }
        if erasures {
            self.erasures = Erasures::new();
        }
    }

    /// The position to resume the log from: the smallest of the three.
    pub fn position(&self) -> u64 {
        self.customers
            .position()
            .min(self.revenue.position())
            .min(self.erasures.position())
    }

    /// Sets all three positions (after loading rows persisted at one position).
    pub fn set_position(&mut self, p: u64) {
        self.customers.set_position(p);
        self.revenue.set_position(p);
        self.erasures.set_position(p);
    }

    /// The digest of all of `b`'s revenue rows. Computed afresh whenever the rows
    /// changed since the last computation (the digest is a function of the rows, so
    /// unchanged rows give the same string).
    fn broadcaster_digest(&mut self, b: BroadcasterId) -> String {
        let generation = self.revenue.generation(b);
        if let Some((g, d)) = self.digests.get(&b) {
            if *g == generation {
                return d.clone();
            }
        }
        let d = self.revenue.digest(&RevenueFilter::broadcaster(b));
        self.digests.insert(b, (generation, d.clone()));
        d
    }
}
