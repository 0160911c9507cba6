//! What is failing right now, for readiness.
//!
//! The background loops (projector, reconciler) report how their last run went,
//! and write requests report a full disk; `/readyz` reads this, adds its own live
//! probes of the stores, and answers 503 naming every failing part. A part recovers when its
//! next operation succeeds. "Storage full" is sticky until something proves space
//! is back (a successful write, or the serve loop's probe file), because with a
//! full disk reads keep working and would otherwise clear it.

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
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Projector => "projector",
            Part::Reconciler => "reconciler",
            Part::Transparency => "transparency",
        }
    }
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
}

impl Health {
    pub fn new() -> Self {
        Self::default()
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
    /// until space is shown to be back; a successful write shows it. (Unreachable
    /// stores are found by readiness's own probes, and refusals are the caller's
    /// business, not the service's.)
    pub fn observe_write<T>(&self, r: &Result<T, AppError>) {
        match r {
            Ok(_) => self.space_back(),
            Err(e) => self.note_full(e),
        }
    }

    /// Space was shown to be available again (a write or a probe succeeded).
    pub fn space_back(&self) {
        if let Ok(mut f) = self.full_since.lock() {
            *f = None;
        }
    }

    /// Whether a store reported a full disk that no write has cleared since.
    pub fn storage_full(&self) -> Option<Duration> {
        self.full_since.lock().ok()?.map(|t| t.elapsed())
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
