//! The read side: pure folds of the event log into the models the dashboard, the
//! API, analytics consumers and auditors read. Each read model is a crate of its
//! own (`ledger-projection-customers`, `ledger-projection-revenue`, which an
//! analyst's or auditor's tool can use alone, and `ledger-projection-erasures`);
//! this thin crate folds them together in log order and owns the persistence port.
//!
//! # What it owns
//!
//! - [`CustomerViews`]: one [`CustomerView`] per customer (the dashboard's summary
//!   panel), turned into a **tombstone** by `CustomerAnonymized`. Personal blocks are
//!   copied **sealed**, with the id of the event they came from (the AAD the app needs
//!   to open them with the customer's data key); an open block is never stored.
//! - [`Revenue`]: totals per broadcaster × currency × UTC day × offer, in integer minor
//!   units, with a documented [canonical form](Revenue::canonical_bytes) and its
//!   sha256 [digest](Revenue::digest), the one string analytics consumers and auditors
//!   compare.
//! - [`Erasures`]: one [`ErasureRecord`] per anonymized customer, with the revenue
//!   digest of the erasing broadcaster just before and just after the erasure.
//! - [`ReadModel`]: the three folded together in log order.
//! - [`Changes`] and the [`ViewStore`] trait: the port through which the app
//!   persists changed rows with their positions (implemented by a backend crate).
//! - [`search`]: the normalisation of names and emails for the app's in-memory
//!   search index.
//!
//! # What it must not do, and why it is pure
//!
//! No I/O, no async runtime, no database driver, no clock reads, no randomness, no
//! logging, and no key material: it cannot open a personal block and must not hold a
//! plaintext one. The app reads the log, decodes each record into a
//! [`DomainEvent`], hands it here as an [`Envelope`], persists the rows this crate
//! reports as dirty ([`CustomerViews::take_dirty`], [`Revenue::take_dirty`],
//! [`Erasures::take_dirty`]) together with the position, and on restart loads them
//! back (`insert`, `set_position`) and applies the rest of the log. This crate only
//! folds events. That split is what makes the guarantees cheap to check:
//!
//! - a fold depends on the log alone, so rebuilding from zero, or from any persisted
//!   checkpoint, gives the same rows, and an auditor can recompute revenue offline
//!   with [`fold_revenue_from`] and compare digests;
//! - every `apply` ignores an event whose position is not past its own position, so
//!   an event seen twice (a subscription that re-reads after a restart) changes
//!   nothing;
//! - rebuilding from zero can never resurrect personal data: an erased customer's
//!   blocks are dropped by `CustomerAnonymized` whatever came before, and their key is
//!   gone anyway;
//! - erasure cannot change revenue: [`Revenue`] reads only amounts, currencies,
//!   offers, broadcasters and times, which live outside personal blocks, and ignores
//!   `CustomerAnonymized` entirely. The property tests check it over random histories.
//!
//! # How the read side agrees with the write side
//!
//! The log holds only events that `ledger_command::Customer::handle` decided against
//! the state of the events before them, so a payment id is captured once, a refund
//! refunds a payment of the same currency by the broadcaster that captured it, and a
//! subscription is started once and terminated at most once. On such a log every
//! figure here equals the aggregate's (a property test folds both). The projections
//! count events as they are: a capture adds its amount, a refund adds its own
//! amount, bucketed by its own broadcaster, offer and day as copied into the
//! `PaymentRefunded` event. Subscriptions follow the aggregate's "first occurrence
//! wins" rule for starts and terminations.

mod checkpoint;
mod model;

pub use checkpoint::{agreed_checkpoint_hash, Changes, Positions, ViewStore, ViewStoreError};
pub use ledger_events::Envelope;
pub use ledger_projection_customers::{
    search, CustomerView, CustomerViews, ErasureMark, SealedBlock, SubscriptionView, Totals,
};
pub use ledger_projection_erasures::{ErasureRecord, Erasures};
pub use ledger_projection_revenue::{
    canonical_day, fold_revenue_from, table as revenue_table, Revenue, RevenueFilter, RevenueKey,
    RevenueTotals, CANONICAL_HEADER,
};
pub use ledger_types::total as amount;
pub use model::ReadModel;

/// Folds a log (oldest first) into all three read models.
pub fn fold_read_model<'a>(events: impl IntoIterator<Item = Envelope<'a>>) -> ReadModel {
    let mut model = ReadModel::new();
    for e in events {
        model.apply(&e);
    }
    model
}
