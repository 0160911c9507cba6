//! The three read models folded together in log order.

use std::collections::HashMap;

use ledger_events::{CustomerEvent, DomainEvent, Envelope};
use ledger_types::BroadcasterId;

use crate::{CustomerViews, Erasures, Revenue, RevenueFilter};

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
                let linked = self
                    .customers
                    .get(*customer)
                    .map(|v| v.broadcasters.iter().copied().collect::<Vec<_>>())
                    .unwrap_or_default();
                self.erasures
                    .record(e.position, *customer, a, (before, after), linked);
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
