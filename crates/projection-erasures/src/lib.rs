//! Erasure records, the content of erasure receipts: one per anonymized customer,
//! with the erasing broadcaster's revenue digest just before and just after the
//! erasure. The digests come from the revenue fold at the same position, so these
//! records are folded together with revenue (`ledger_projections::ReadModel`);
//! this crate keeps them. Holds no personal data; pure.

use std::collections::{BTreeMap, BTreeSet};

use ledger_events::{Actor, CustomerAnonymized, PersonalCategory, Precondition};
use ledger_types::{BroadcasterId, CustomerId, RequestId, Timestamp};
use serde::{Deserialize, Serialize};

/// What an erasure receipt states: who asked, when, what was erased, which
/// preconditions were checked, where the decision is in the log, and the revenue
/// digest of the erasing broadcaster (all its rows, `RevenueFilter::broadcaster`)
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
    /// Who erased (absent for erasures recorded before the actor was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// For an erasure by the platform operator: every broadcaster the account was
    /// linked to, each of which sees this receipt among its own. Empty otherwise
    /// (a broadcaster erases only an account linked to it alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linked_broadcasters: Vec<BroadcasterId>,
}

impl ErasureRecord {
    /// Whether `b` sees this receipt among its own: it erased, or the operator
    /// erased an account linked to it.
    pub fn is_visible_to(&self, b: BroadcasterId) -> bool {
        self.broadcaster_id == b || self.linked_broadcasters.contains(&b)
    }

    /// Whether the platform operator erased.
    pub fn by_operator(&self) -> bool {
        self.actor.is_some_and(|a| a.is_operator())
    }
}

/// One [`ErasureRecord`] per erased customer (the first erasure only; the aggregate
/// never decides a second), the position of the last event folded, and the
/// customers whose record changed since the app last persisted them.
///
/// There is no `Erasures::apply`: a record needs the revenue state just before and
/// after its event, so erasures are only folded by `ledger_projections::ReadModel::apply`, together
/// with a `Revenue` fold at the same position. To rebuild erasure records, rebuild
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
    pub fn wants(&self, position: u64, customer: CustomerId) -> bool {
        position > self.position && !self.records.contains_key(&customer)
    }

    /// Moves the position on past an event that records nothing.
    pub fn advance(&mut self, position: u64) {
        self.position = self.position.max(position);
    }

    /// Records the erasure at `position`, with the erasing broadcaster's revenue
    /// digest just before and just after it (the fold that calls this computes
    /// them from the revenue state at that position), and the broadcasters the
    /// account is linked to (kept for an operator's erasure only).
    pub fn record(
        &mut self,
        position: u64,
        customer_id: CustomerId,
        e: &CustomerAnonymized,
        digests: (String, String),
        linked: impl IntoIterator<Item = BroadcasterId>,
    ) {
        let (before, after) = digests;
        let by_operator = e.actor.is_some_and(|a| a.is_operator());
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
            actor: e.actor,
            linked_broadcasters: if by_operator {
                linked.into_iter().collect()
            } else {
                Vec::new()
            },
        };
        self.by_position.insert(position, customer_id);
        self.records.insert(customer_id, r);
        self.dirty.insert(customer_id);
        self.advance(position);
    }
}
