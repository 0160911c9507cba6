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
        }
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty() && self.revenue.is_empty() && self.erasures.is_empty()
    }
}

/// Where the read models are persisted between runs. `load` returns the rows and
/// positions as last saved (nothing marked dirty); `save` writes [`Changes`]
/// atomically; `clear` forgets one projection (`"customers"`, `"revenue"`,
/// `"erasures"`, the latter with revenue, see [`crate::Erasures`]) or all (`None`),
/// rows and checkpoint together.
pub trait ViewStore: Send + Sync + std::fmt::Debug {
    fn load(&self) -> Result<ReadModel, ViewStoreError>;
    fn save(&self, changes: &Changes) -> Result<(), ViewStoreError>;
    fn clear(&self, name: Option<&str>) -> Result<(), ViewStoreError>;
}
