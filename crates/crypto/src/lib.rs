//! Sealing of personal data and crypto-shredding.
//!
//! Every personal block of an event is sealed with XChaCha20-Poly1305 under a
//! per-customer 256-bit data key, with associated data binding the ciphertext to the
//! customer and the event (a sealed block copied into another event or customer does
//! not open). Data keys are stored only wrapped by the key-encryption key ([`Kek`]) in
//! a [`KeyStore`] that supports real deletion. Destroying a customer's data key makes
//! every sealed block of that customer permanently unreadable, wherever copies of
//! the log live (replicas, exports, backups): that is the erasure.
//!
//! This crate owns keys and ciphertext formats. It must never log, print or return
//! plaintext or key material in errors; its errors name customer ids at most.

mod kek;
mod keyring;
mod keystore;
mod seal;

pub use kek::{check_kek, rotate_kek, write_private, Kek, KekSource, Rotation};
pub use keyring::{Keyring, Opened};
pub use keystore::{KeyState, KeyStore, Rewrap, SqliteKeyStore, WrappedKey};
pub use seal::{open_block, seal_block, DataKey};

use ledger_types::CustomerId;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("the key-encryption key is invalid: {0}")]
    BadKek(&'static str),
    #[error("could not read or create the key-encryption key file: {0}")]
    KekIo(String),
    #[error("a sealed block failed authentication (wrong key, wrong binding or altered bytes)")]
    Unauthentic,
    #[error("a sealed block has an unknown format")]
    BadFormat,
    #[error("the data key of customer {0} was destroyed")]
    KeyDestroyed(CustomerId),
    #[error("customer {0} has no data key")]
    NoKey(CustomerId),
    #[error("the key-encryption key does not open the stored data key of customer {0} (a wrong KEK, or the keys were rotated to another one)")]
    WrongKek(CustomerId),
    #[error("key store error: {0}")]
    Store(String),
    /// The key store cannot be reached now (lost connection, locked file); retry.
    #[error("key store unavailable: {0}")]
    Unavailable(String),
    /// The key store's disk is full; nothing was written.
    #[error("key store is full")]
    Full,
    #[error("personal block could not be encoded or decoded")]
    Codec,
}
