//! Signed tree heads: the byte string we sign, the Ed25519 key that signs it, and
//! the check a verifier (ours, or one in another language) runs.
//!
//! # The signed bytes (`ledger-tree-head-v1`)
//!
//! ```text
//! offset  length  field
//!  0      20      ASCII "ledger-tree-head-v1\n" (the format name and a line feed)
//! 20       8      tree size, unsigned, big-endian
//! 28      32      root hash (RFC 6962 MTH of the first `size` leaves), raw bytes
//! 60       8      timestamp, milliseconds since the Unix epoch, signed, big-endian
//! ```
//!
//! 68 bytes in all, signed with pure Ed25519 (RFC 8032, no pre-hash, no context).
//! The JSON form carries `size`, `root_hash` (64 hex digits), `timestamp` (the
//! integer milliseconds), `signature` (128 hex digits), `public_key` (64 hex digits,
//! informative only: a verifier uses the key it trusts, never the one in the head)
//! and `algorithm` (`"ed25519"`), plus `format` (`"ledger-tree-head-v1"`).

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ledger_merkle::{Hash, TreeHead};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

/// The name of the signed format, and the first line of the signed bytes.
pub const HEAD_FORMAT: &str = "ledger-tree-head-v1";
/// The signature algorithm of every head.
pub const ALGORITHM: &str = "ed25519";
const PREFIX: &[u8; 20] = b"ledger-tree-head-v1\n";
/// Length of the signed bytes.
pub const SIGNED_LEN: usize = 68;

/// Why a signing key or a public key could not be had, or a head did not verify.
/// Holds I/O error kinds and fixed reasons only (never key material).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeadError {
    #[error("signing key file: {0}")]
    KeyIo(String),
    #[error("a key must be 64 hexadecimal digits (32 bytes)")]
    KeyFormat,
    #[error("the public key is not a valid Ed25519 point")]
    BadPublicKey,
    #[error("the tree head is of format {0:?}, not ledger-tree-head-v1 with ed25519")]
    UnknownFormat(String),
    #[error("the signature is not 128 hexadecimal digits")]
    SignatureFormat,
    #[error("the signature does not verify with the public key")]
    BadSignature,
}

/// `"ledger-tree-head-v1\n" || size u64 BE || root || timestamp_ms i64 BE`.
pub fn signed_bytes(head: &TreeHead, timestamp_ms: i64) -> [u8; SIGNED_LEN] {
    let mut b = [0u8; SIGNED_LEN];
    b[..20].copy_from_slice(PREFIX);
    b[20..28].copy_from_slice(&head.size.to_be_bytes());
    b[28..60].copy_from_slice(head.root_hash.as_bytes());
    b[60..].copy_from_slice(&timestamp_ms.to_be_bytes());
    b
}

/// A public key that verifies tree heads: 32 bytes, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl PublicKey {
    /// From 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<Self, HeadError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| HeadError::KeyFormat)?;
        VerifyingKey::from_bytes(&b)
            .map(PublicKey)
            .map_err(|_| HeadError::BadPublicKey)
    }

    /// From a file holding the 64 hex digits `ledger signing-key show` prints.
    pub fn from_file(path: &Path) -> Result<Self, HeadError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| HeadError::KeyIo(e.kind().to_string()))?;
        Self::from_hex(&text)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Checks an Ed25519 signature over `msg` (strict: no malleable signatures, no
    /// small-order keys).
    fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), HeadError> {
        self.0
            .verify_strict(msg, sig)
            .map_err(|_| HeadError::BadSignature)
    }
}

/// Where the signing key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Created(PathBuf),
    /// Made for this process only (tests, a server without a key file).
    Ephemeral,
}

/// The Ed25519 key that signs tree heads. Its `Debug` shows the public key only.
pub struct HeadSigner {
    key: SigningKey,
}

impl fmt::Debug for HeadSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeadSigner(public {})", self.public_key())
    }
}

impl HeadSigner {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *seed);
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    fn from_hex(text: &str) -> Result<Self, HeadError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut *seed).map_err(|_| HeadError::KeyFormat)?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads the key from `file` (64 hex digits: the 32-byte Ed25519 seed).
    pub fn load(file: &Path) -> Result<Self, HeadError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(file).map_err(|e| HeadError::KeyIo(e.kind().to_string()))?,
        );
        Self::from_hex(&text)
    }

    /// Reads the key from `file`, or creates the file (mode 0600) with a new key.
    pub fn load_or_create(file: &Path) -> Result<(Self, KeySource), HeadError> {
        if file.exists() {
            return Ok((Self::load(file)?, KeySource::File(file.to_owned())));
        }
        let signer = Self::generate();
        let hexed = Zeroizing::new(hex::encode(signer.key.to_bytes()));
        ledger_crypto::write_private(file, hexed.as_bytes())
            .map_err(|e| HeadError::KeyIo(e.kind().to_string()))?;
        Ok((signer, KeySource::Created(file.to_owned())))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs `head` as of `timestamp_ms`.
    pub fn sign(&self, head: TreeHead, timestamp_ms: i64) -> SignedTreeHead {
        let sig = self.key.sign(&signed_bytes(&head, timestamp_ms));
        SignedTreeHead {
            format: HEAD_FORMAT.to_owned(),
            size: head.size,
            root_hash: head.root_hash,
            timestamp: timestamp_ms,
            signature: hex::encode(sig.to_bytes()),
            public_key: self.public_key().to_hex(),
            algorithm: ALGORITHM.to_owned(),
        }
    }
}

/// A tree head with its signature, as served, exported and put in receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTreeHead {
    /// `ledger-tree-head-v1`: the layout of the signed bytes.
    #[serde(default = "default_format")]
    pub format: String,
    /// Number of log records under the root (records at positions 1..=size).
    pub size: u64,
    /// RFC 6962 root of those records, 64 hex digits.
    pub root_hash: Hash,
    /// When it was signed, milliseconds since the Unix epoch (signed as i64 BE).
    pub timestamp: i64,
    /// Ed25519 signature of the signed bytes, 128 hex digits.
    pub signature: String,
    /// The signer's public key, 64 hex digits (informative: verify with the key
    /// you trust, not this one).
    pub public_key: String,
    /// Always `ed25519`.
    pub algorithm: String,
}

fn default_format() -> String {
    HEAD_FORMAT.to_owned()
}

impl SignedTreeHead {
    pub fn head(&self) -> TreeHead {
        TreeHead {
            size: self.size,
            root_hash: self.root_hash,
        }
    }

    /// Checks the format and the signature with `key`; returns the head it vouches
    /// for.
    pub fn verify(&self, key: &PublicKey) -> Result<TreeHead, HeadError> {
        if self.format != HEAD_FORMAT || self.algorithm != ALGORITHM {
            return Err(HeadError::UnknownFormat(format!(
                "{}/{}",
                self.format, self.algorithm
            )));
        }
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig).map_err(|_| HeadError::SignatureFormat)?;
        key.verify(
            &signed_bytes(&self.head(), self.timestamp),
            &Signature::from_bytes(&sig),
        )?;
        Ok(self.head())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> TreeHead {
        TreeHead {
            size: 0x0102,
            root_hash: Hash::from_bytes([0xab; 32]),
        }
    }

    #[test]
    fn the_signed_bytes_are_laid_out_as_documented() {
        let b = signed_bytes(&head(), -2);
        assert_eq!(&b[..20], b"ledger-tree-head-v1\n");
        assert_eq!(&b[20..28], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&b[28..60], &[0xab; 32]);
        assert_eq!(&b[60..], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
    }

    #[test]
    fn a_signed_head_verifies_with_its_key_only_and_any_change_breaks_it() {
        let signer = HeadSigner::generate();
        let sth = signer.sign(head(), 1_700_000_000_000);
        let key = signer.public_key();
        assert_eq!(sth.verify(&key), Ok(head()));
        let other = HeadSigner::generate().public_key();
        assert_eq!(sth.verify(&other), Err(HeadError::BadSignature));
        let json = serde_json::to_string(&sth).unwrap();
        let back: SignedTreeHead = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sth);
        let mut t = sth.clone();
        t.size += 1;
        assert!(t.verify(&key).is_err());
        let mut t = sth.clone();
        t.timestamp += 1;
        assert!(t.verify(&key).is_err());
        let mut t = sth.clone();
        let mut r = *t.root_hash.as_bytes();
        r[31] ^= 1;
        t.root_hash = Hash::from_bytes(r);
        assert!(t.verify(&key).is_err());
        let mut t = sth.clone();
        t.algorithm = "ed448".into();
        assert!(matches!(t.verify(&key), Err(HeadError::UnknownFormat(_))));
        let mut t = sth;
        t.signature.replace_range(
            0..1,
            if t.signature.starts_with('0') {
                "1"
            } else {
                "0"
            },
        );
        assert_eq!(t.verify(&key), Err(HeadError::BadSignature));
    }

    #[test]
    fn a_key_file_is_created_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signing-key.hex");
        let (a, src) = HeadSigner::load_or_create(&file).unwrap();
        assert_eq!(src, KeySource::Created(file.clone()));
        let (b, src) = HeadSigner::load_or_create(&file).unwrap();
        assert_eq!(src, KeySource::File(file.clone()));
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let pk = dir.path().join("public.hex");
        std::fs::write(&pk, a.public_key().to_hex()).unwrap();
        assert_eq!(PublicKey::from_file(&pk).unwrap(), a.public_key());
        assert_eq!(PublicKey::from_hex("zz"), Err(HeadError::KeyFormat));
    }
}
