//! The persistence port of the read models: what the app hands a view store after
//! folding a page of the log ([`Changes`]), and the trait a backend implements
//! ([`ViewStore`]). This crate defines the port and does no I/O itself; backends
//! (e.g. `store-sqlite`'s view store) implement it.

use std::sync::Arc;

use ledger_types::CustomerId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{CustomerView, ErasureRecord, ReadModel, RevenueKey, RevenueTotals};

/// Why a view store could not load or save. Messages name tables, rows and
/// backend conditions, never a personal value (views hold personal blocks sealed
/// only, and a backend must not put row contents in an error).
#[derive(Debug, Error)]
pub enum ViewStoreError {
    #[error("view store backend error: {0}")]
    Backend(String),
    #[error("view store holds a corrupt {0}")]
    Corrupt(String),
    /// The view store cannot be reached now (lost connection, locked file); retry.
    #[error("view store unavailable: {0}")]
    Unavailable(String),
    /// The view store's disk is full; nothing was saved.
    #[error("view store is full")]
    Full,
}

/// The position each read model has folded up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    pub customers: u64,
    pub revenue: u64,
    pub erasures: u64,
}

/// The rows changed since the last save, with the positions they are current at.
/// A view store writes all of it in one transaction, so that a checkpoint never runs
/// ahead of (or behind) the rows it covers.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Changed customer views, sorted by id (shared with the model, not copied).
    pub customers: Vec<Arc<CustomerView>>,
    /// Changed revenue rows, in key order.
    pub revenue: Vec<(RevenueKey, RevenueTotals)>,
    /// New erasure records, sorted by customer id.
    pub erasures: Vec<ErasureRecord>,
    pub positions: Positions,
    /// The log hash of the record at `positions`, when all three are at that one
    /// position (the caller knows it, from the record it folded last). Saved with
    /// the checkpoints, so that a view store restored beside a different log is
    /// found out at start (see `ReadModel::checkpoint_hash`).
    pub log_hash: Option<[u8; 32]>,
}

impl Changes {
    /// Takes the model's changes: the customer views named in `customers` (ids the
    /// caller already took with [`crate::CustomerViews::take_dirty`], e.g. to
    /// re-index them) plus any still marked dirty, and the dirty revenue rows and
    /// erasure records. Everything taken is no longer dirty.
    pub fn collect(model: &mut ReadModel, customers: &[CustomerId]) -> Changes {
        let mut ids = model.customers.take_dirty();
        ids.extend_from_slice(customers);
        ids.sort_unstable();
        ids.dedup();
        Changes {
            customers: ids
                .iter()
                .filter_map(|id| model.customers.get_shared(*id))
                .collect(),
            revenue: model
                .revenue
                .take_dirty()
                .into_iter()
                .filter_map(|k| model.revenue.get(&k).copied().map(|t| (k, t)))
                .collect(),
            erasures: model
                .erasures
                .take_dirty()
                .into_iter()
                .filter_map(|c| model.erasures.get(c).cloned())
                .collect(),
            positions: Positions {
                customers: model.customers.position(),
                revenue: model.revenue.position(),
                erasures: model.erasures.position(),
            },
            log_hash: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty() && self.revenue.is_empty() && self.erasures.is_empty()
    }
}

/// The log hash the three checkpoint rows agree on: all at one position, all with
/// the same 32-byte hash; `None` otherwise (a partial rebuild left them apart, or
/// they were saved before hashes were recorded). For view stores' `load`.
pub fn agreed_checkpoint_hash(rows: &[(u64, Option<Vec<u8>>)]) -> Option<[u8; 32]> {
    let (position, hash) = rows.first()?;
    if rows.len() != 3 || rows.iter().any(|(p, h)| p != position || h != hash) {
        return None;
    }
    hash.as_deref()?.try_into().ok()
}

/// Where the read models are persisted between runs. `load` returns the rows and
/// positions as last saved (nothing marked dirty); `save` writes [`Changes`]
/// atomically; `clear` forgets one projection (`"customers"`, `"revenue"`,
/// `"erasures"`, the latter with revenue, see [`crate::Erasures`]) or all (`None`),
/// rows and checkpoint together. The same store keeps the outbound sinks'
/// checkpoints (`sink_position`), so that they are as durable as the views'.
pub trait ViewStore: Send + Sync + std::fmt::Debug {
    fn load(&self) -> Result<ReadModel, ViewStoreError>;
    fn save(&self, changes: &Changes) -> Result<(), ViewStoreError>;
    fn clear(&self, name: Option<&str>) -> Result<(), ViewStoreError>;
    /// The position an outbound sink (e.g. `nats:LEDGER`, the JetStream publisher)
    /// has delivered up to; 0 if none is saved. Sinks' checkpoints live in a table
    /// of their own, apart from the projections' (whose three rows must agree on
    /// one log hash): `clear` and a rebuild leave them alone.
    fn sink_position(&self, name: &str) -> Result<u64, ViewStoreError>;
    /// Saves a sink's position; the sink calls it only once its destination has
    /// acknowledged every event up to `position`.
    fn save_sink_position(&self, name: &str, position: u64) -> Result<(), ViewStoreError>;
    /// Every webhook endpoint's document (`ledger-webhooks` owns its JSON form:
    /// URL, event types, signing secret, state). Configuration, not derived from
    /// the log: `clear` and a rebuild leave it alone, like the sinks' checkpoints.
    fn webhook_endpoints(&self) -> Result<Vec<String>, ViewStoreError>;
    /// Saves (`Some`) or deletes (`None`) endpoint `id`'s document.
    fn put_webhook_endpoint(&self, id: &str, doc: Option<&str>) -> Result<(), ViewStoreError>;
    /// Appends delivery attempts' documents to `endpoint`'s history, numbered on
    /// from its last, in one transaction, and forgets all but its newest `keep`.
    fn add_webhook_attempts(
        &self,
        endpoint: &str,
        docs: &[String],
        keep: usize,
    ) -> Result<(), ViewStoreError>;
    /// Up to `limit` of `endpoint`'s attempts numbered below `before` (all, if
    /// `None`), newest first, with their numbers.
    fn webhook_attempts(
        &self,
        endpoint: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, ViewStoreError>;
}
