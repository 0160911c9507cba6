//! What is failing right now, for readiness.
//!
//! The background loops (projector, reconciler) report how their last run went,
//! and write requests report a full disk; `/readyz` reads this, adds its own live
//! probes of the stores, and answers 503 naming every failing part. A part recovers when its
//! next operation succeeds. "Storage full" is sticky until something proves space
//! is back, because with a full disk reads keep working and would otherwise clear
//! it: the serve loop's probe file where the stores are local files
//! ([`Health::with_space_probe`]), else a successful write. (On a full disk some
//! writes still succeed, in room a failed commit left in a WAL file, so a write
//! proves nothing where a probe can look.) When space is back, the background
//! loops hear it ([`Health::space_returned`]) and retry at once.
//!
//! The outbound publisher (`serve --publish`) reports its state and checkpoint
//! here too ([`Health::set_sink`]), shown by `/readyz` and `/metrics` but never a
//! reason to be not ready.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{AppError, StorageCondition};

/// A part of the running service whose failure makes it not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The projector (read model catch-up and its view store).
    Projector,
    /// The reconciler (key destructions).
    Reconciler,
    /// The Merkle tree follower that signs tree heads (`transparency`).
    Transparency,
    /// The erasure process manager (deferred requests, subscription end dates).
    ErasureProcess,
    /// The runner of bulk erasure jobs.
    ErasureJobs,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Projector => "projector",
            Part::Reconciler => "reconciler",
            Part::Transparency => "transparency",
            Part::ErasureProcess => "erasure_process",
            Part::ErasureJobs => "erasure_jobs",
        }
    }
}

/// What the outbound publisher (`ledger serve --publish`) is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkState {
    /// Connecting to the destination (at start, and after a failure).
    Connecting,
    /// Connected: publishing, or waiting for new commits.
    Publishing,
    /// The last attempt failed; waiting out a backoff before the next.
    Retrying,
}

impl SinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkState::Connecting => "connecting",
            SinkState::Publishing => "publishing",
            SinkState::Retrying => "retrying",
        }
    }
}

/// The publisher's state and checkpoint, for `/readyz` and `/metrics`. Reported
/// beside readiness, never as a failing part: a broker that is down must not take
/// the API out of a load balancer's rotation (the publisher catches up later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkStatus {
    pub state: SinkState,
    /// The last position the destination acknowledged (the durable checkpoint).
    pub position: u64,
    /// The code of the last failure, while not publishing.
    pub error: Option<&'static str>,
}

/// How a failing part failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: &'static str,
    pub since: Instant,
}

#[derive(Debug, Default)]
pub struct Health {
    failing: Mutex<BTreeMap<Part, Failure>>,
    /// Since when a store reported a full disk (cleared by [`Health::space_back`]).
    full_since: Mutex<Option<Instant>>,
    /// Only [`Health::space_back`] clears a full disk, not a successful write.
    probed: bool,
    /// Told when a full disk is cleared.
    space: tokio::sync::Notify,
    /// The outbound publisher's, when one runs.
    sink: Mutex<Option<SinkStatus>>,
}

impl Health {
    /// A full disk is cleared by a successful write or [`Health::space_back`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A full disk is cleared only by [`Health::space_back`]: for a process whose
    /// stores are files in folders a probe can write to.
    pub fn with_space_probe() -> Self {
        Self {
            probed: true,
            ..Self::default()
        }
    }

    /// The part's last operation succeeded.
    pub fn ok(&self, part: Part) {
        if let Ok(mut f) = self.failing.lock() {
            f.remove(&part);
        }
    }

    /// The part's last operation failed with `e`.
    pub fn failed(&self, part: Part, e: &AppError) {
        self.note_full(e);
        if let Ok(mut f) = self.failing.lock() {
            f.entry(part).or_insert_with(|| Failure {
                code: e.code(),
                since: Instant::now(),
            });
        }
    }

    fn note_full(&self, e: &AppError) {
        if e.storage_condition() == Some(StorageCondition::Full) {
            if let Ok(mut f) = self.full_since.lock() {
                f.get_or_insert_with(Instant::now);
            }
        }
    }

    /// Reports a write request's result: a full disk makes the service not ready
    /// until space is shown to be back; without a probe, a successful write shows
    /// it. (Unreachable stores are found by readiness's own probes, and refusals
    /// are the caller's business, not the service's.)
    pub fn observe_write<T>(&self, r: &Result<T, AppError>) {
        match r {
            Ok(_) if !self.probed => self.space_back(),
            Ok(_) => {}
            Err(e) => self.note_full(e),
        }
    }

    /// Space was shown to be available again (a probe, or a write without one).
    pub fn space_back(&self) {
        let was_full = self
            .full_since
            .lock()
            .map(|mut f| f.take().is_some())
            .unwrap_or(false);
        if was_full {
            self.space.notify_waiters();
        }
    }

    /// Resolves when a full disk is cleared after this call: a loop waiting out a
    /// backoff retries then, rather than at the end of it.
    pub fn space_returned(&self) -> tokio::sync::futures::Notified<'_> {
        self.space.notified()
    }

    /// Whether a store reported a full disk that no write has cleared since.
    pub fn storage_full(&self) -> Option<Duration> {
        self.full_since.lock().ok()?.map(|t| t.elapsed())
    }

    /// The outbound publisher reports how it is doing.
    pub fn set_sink(&self, status: SinkStatus) {
        if let Ok(mut s) = self.sink.lock() {
            *s = Some(status);
        }
    }

    /// The outbound publisher's last report (`None` when none runs).
    pub fn sink(&self) -> Option<SinkStatus> {
        self.sink.lock().ok().and_then(|s| *s)
    }

    /// The failing parts, by name, with their code and how long they have failed.
    pub fn failing(&self) -> Vec<(&'static str, &'static str, Duration)> {
        self.failing
            .lock()
            .map(|f| {
                f.iter()
                    .map(|(p, x)| (p.name(), x.code, x.since.elapsed()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_store::StoreError;

    fn full() -> Result<(), AppError> {
        Err(AppError::Store(StoreError::Full))
    }

    #[test]
    fn without_a_probe_a_successful_write_clears_a_full_disk() {
        let h = Health::new();
        h.observe_write(&full());
        assert!(h.storage_full().is_some());
        h.observe_write(&Ok(()));
        assert!(h.storage_full().is_none());
    }

    #[tokio::test]
    async fn with_a_probe_only_the_probe_clears_a_full_disk_and_wakes_the_loops() {
        let h = Health::with_space_probe();
        h.observe_write(&full());
        h.observe_write(&Ok(()));
        assert!(
            h.storage_full().is_some(),
            "a write on a full disk proves no space"
        );
        let woken = h.space_returned();
        h.space_back();
        assert!(h.storage_full().is_none());
        tokio::time::timeout(std::time::Duration::from_secs(1), woken)
            .await
            .expect("a loop waiting for space is woken");
    }
}
