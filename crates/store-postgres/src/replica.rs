//! Reading the log from a replica (`--read-store`) without ever showing a record
//! the primary does not hold.
//!
//! A streaming replica lags its primary, and after a fail-over a replica that
//! followed the old primary may even hold records the new primary never got
//! (written on the old primary and sent on, but not yet on the synchronous standby
//! that was promoted), until Patroni rewinds it. So a page read from the replica is
//! used only if it is *confirmed*: its chains verify (as every read's do) and the
//! log hash of its last record equals the primary's log hash at that position,
//! one index look-up on the primary per page. The log hash chains every record
//! before it (ADR 0003), so an equal hash means the replica's log up to that
//! position is the primary's, record for record; the page cannot hold a record
//! the primary lacks. A page the replica cannot serve (an error, no record past
//! `after` yet, or a different hash) is read from the primary instead, so a dead
//! or lagging replica costs load on the primary, never a wrong or missing record.
//!
//! [`PostgresStore`](crate::PostgresStore) also caps every page at its writer's
//! acknowledged head, so its read side sees only appends that were answered (or
//! would have been), whichever server served the page.

use std::sync::atomic::{AtomicU64, Ordering};

use ledger_store::{Position, RecordedEvent, StoreError};

use crate::read::Readers;

/// How many pages of `read_all` each server served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaReads {
    /// Pages read from the replica and confirmed on the primary.
    pub from_replica: u64,
    /// Pages read from the primary (replica behind, unreachable or diverged).
    pub from_primary: u64,
}

/// The replica's read pool and what it served.
#[derive(Debug)]
pub(crate) struct Replica {
    readers: Readers,
    from_replica: AtomicU64,
    from_primary: AtomicU64,
}

impl Replica {
    pub(crate) fn new(readers: Readers) -> Self {
        Self {
            readers,
            from_replica: AtomicU64::new(0),
            from_primary: AtomicU64::new(0),
        }
    }

    pub(crate) fn reads(&self) -> ReplicaReads {
        ReplicaReads {
            from_replica: self.from_replica.load(Ordering::Relaxed),
            from_primary: self.from_primary.load(Ordering::Relaxed),
        }
    }

    /// Up to `limit` records after `after`: from the replica if it confirms (see
    /// the module docs), else from the primary.
    pub(crate) async fn read_all(
        &self,
        primary: &Readers,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if let Some(page) = self.confirmed(primary, after, limit).await? {
            self.from_replica.fetch_add(1, Ordering::Relaxed);
            return Ok(page);
        }
        self.from_primary.fetch_add(1, Ordering::Relaxed);
        primary.read_all(after, limit).await
    }

    /// The replica's page if it holds a record past `after` and its last record
    /// is the primary's; `None` otherwise. Only the primary's failure is an error.
    async fn confirmed(
        &self,
        primary: &Readers,
        after: Position,
        limit: usize,
    ) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let page = match self.readers.read_all(after, limit).await {
            Ok(page) => page,
            Err(e) => {
                tracing::debug!(after, error = %e, "replica read failed; reading from the primary");
                return Ok(None);
            }
        };
        let Some(last) = page.last() else {
            return Ok(None);
        };
        match primary.log_hash_at(last.position).await? {
            Some(h) if h == last.log_hash => Ok(Some(page)),
            found => {
                tracing::warn!(
                    position = last.position,
                    on_primary = found.is_some(),
                    "the replica's log differs from the primary's (not yet rewound after a fail-over?); reading from the primary"
                );
                Ok(None)
            }
        }
    }
}
