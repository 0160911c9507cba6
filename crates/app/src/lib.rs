//! The application layer: where the pure domain meets storage and keys.
//!
//! [`Ledger`] loads a customer's stream, asks the aggregate to decide, seals every
//! personal block under the customer's data key, appends with optimistic concurrency
//! and, for an erasure, destroys the data key once `CustomerAnonymized` is durable.
//! [`Ledger::reconcile`] finishes any destruction a crash interrupted, so the log is
//! the single source of truth for "was this customer erased". [`audit`] replays the
//! whole log for auditors and [`demo`] makes a realistic data set.
//!
//! This crate is backend-agnostic (`Arc<dyn EventStore>`, `Keyring`); only the binary
//! picks concrete backends. It logs ids and positions, never personal data.

pub mod access;
pub mod audit;
mod codec;
pub mod demo;
pub mod export;
pub mod failpoint;
pub mod feed;
pub mod forget;
pub mod health;
pub mod jobs;
pub mod process;
pub mod read;
pub mod requests;
pub mod retry;
pub mod search;
mod service;
pub mod shred;
pub mod sink;
mod stream;
pub mod transparency;

pub use codec::{decode_record, encode_customer_event};
pub use service::{ErasedBy, ErasureReceipt, Executed, Ledger};

use ledger_command::Refusal;
use ledger_crypto::CryptoError;
use ledger_events::CodecError;
use ledger_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AppError {
    /// The domain refused the command; the refusal carries the machine-readable code.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The broadcaster is unknown.
    #[error("broadcaster not found")]
    UnknownBroadcaster,
    /// A broadcaster with this id already exists.
    #[error("broadcaster already exists")]
    BroadcasterExists,
    /// Concurrent writers kept winning; the command was not applied.
    #[error("the customer kept changing concurrently; retry the command")]
    Contention,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// No projection has this name.
    #[error("unknown projection (expected customers, revenue or erasures)")]
    UnknownProjection,
    #[error(transparent)]
    Views(#[from] ledger_projections::ViewStoreError),
    /// The persisted read models are past the log's end (a restore put them ahead).
    #[error("the read models are at position {views}, past the log's position {log}")]
    ViewsAheadOfLog { views: u64, log: u64 },
    /// The persisted read models' checkpoint names a log hash the log does not
    /// hold at that position (they were folded from another log).
    #[error("the read models were folded from another log (position {position})")]
    ViewsFromAnotherLog { position: u64 },
    /// A file could not be read or written (the message names the I/O error kind).
    #[error("i/o error: {0}")]
    Io(String),
}

/// Why storage could not take a request now (see [`AppError::storage_condition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageCondition {
    /// A store cannot be reached (connection lost, server down, file locked).
    Unavailable,
    /// A store's disk is full.
    Full,
}

impl AppError {
    /// Whether this error is a store being unreachable or full, rather than a
    /// failure of the request itself: callers answer "retry later" (503) or
    /// "storage full" (507), and readiness reports it.
    pub fn storage_condition(&self) -> Option<StorageCondition> {
        use ledger_projections::ViewStoreError as V;
        match self {
            AppError::Store(StoreError::Unavailable(_))
            | AppError::Crypto(CryptoError::Unavailable(_))
            | AppError::Views(V::Unavailable(_)) => Some(StorageCondition::Unavailable),
            AppError::Store(StoreError::Full)
            | AppError::Crypto(CryptoError::Full)
            | AppError::Views(V::Full) => Some(StorageCondition::Full),
            _ => None,
        }
    }

    /// The machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self.storage_condition() {
            Some(StorageCondition::Unavailable) => return "STORE_UNAVAILABLE",
            Some(StorageCondition::Full) => return "STORAGE_FULL",
            None => {}
        }
        match self {
            AppError::Refused(r) => r.code(),
            AppError::UnknownBroadcaster => "NOT_FOUND",
            AppError::BroadcasterExists => "BROADCASTER_EXISTS",
            AppError::Contention => "CONCURRENCY_CONFLICT",
            AppError::Store(StoreError::Integrity { .. }) => "INTEGRITY_VIOLATION",
            AppError::Store(_) => "STORAGE_ERROR",
            // Opening or sealing for an erased customer: the data is gone.
            AppError::Crypto(CryptoError::KeyDestroyed(_)) => "CUSTOMER_ANONYMIZED",
            AppError::Crypto(_) => "KEY_ERROR",
            AppError::Codec(_) => "CODEC_ERROR",
            AppError::Io(_) => "IO_ERROR",
            AppError::UnknownProjection => "UNKNOWN_PROJECTION",
            AppError::ViewsAheadOfLog { .. } => "VIEWS_AHEAD_OF_LOG",
            AppError::ViewsFromAnotherLog { .. } => "VIEWS_FROM_ANOTHER_LOG",
            AppError::Views(_) => "STORAGE_ERROR",
        }
    }
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        AppError::Refused(r)
    }
}
