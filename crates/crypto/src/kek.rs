//! The key-encryption key (KEK): 32 bytes, given as 64 hex characters in an
//! environment variable or a file. Wrapped data keys are
//! `[0x01][24-byte nonce][XChaCha20-Poly1305(KEK, data key)]` with associated data
//! `"ledger.dek.v1" || customer id`, so a wrapped key moved to another customer's
//! row does not unwrap.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ledger_types::CustomerId;
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::keystore::WrappedKey;
use crate::seal::DataKey;
use crate::CryptoError;

const WRAP_DOMAIN: &[u8] = b"ledger.dek.v1";

/// Where the KEK came from (reported to the operator; never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    Env(String),
    File(PathBuf),
    Created(PathBuf),
}

#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<Self, CryptoError> {
        let raw = Zeroizing::new(
            hex::decode(s.trim()).map_err(|_| CryptoError::BadKek("expected 64 hex characters"))?,
        );
        let arr: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::BadKek("expected 32 bytes (64 hex characters)"))?;
        Ok(Self(arr))
    }

    /// Loads the KEK from the environment variable `env_var` if set, else from
    /// `file` if it exists, else creates `file` with a fresh key (mode 0600).
    pub fn load_or_create(env_var: &str, file: &Path) -> Result<(Self, KekSource), CryptoError> {
        if let Ok(v) = std::env::var(env_var) {
            return Ok((Self::from_hex(&v)?, KekSource::Env(env_var.to_owned())));
        }
        if file.exists() {
            let text = Zeroizing::new(
                fs::read_to_string(file).map_err(|e| CryptoError::KekIo(e.kind().to_string()))?,
            );
            return Ok((Self::from_hex(&text)?, KekSource::File(file.to_owned())));
        }
        let kek = Self::generate();
        let hexed = Zeroizing::new(hex::encode(kek.0));
        write_private(file, hexed.as_bytes())
            .map_err(|e| CryptoError::KekIo(e.kind().to_string()))?;
        Ok((kek, KekSource::Created(file.to_owned())))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    fn aad(customer: CustomerId) -> [u8; 29] {
        let mut a = [0u8; 29];
        a[..13].copy_from_slice(WRAP_DOMAIN);
        a[13..].copy_from_slice(customer.as_bytes());
        a
    }

    pub fn wrap(&self, customer: CustomerId, key: &DataKey) -> WrappedKey {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce length cannot fail.
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: key.as_bytes(),
                    aad: &Self::aad(customer),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + 24 + ct.len());
        out.push(1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        WrappedKey(out)
    }

    pub fn unwrap_key(&self, customer: CustomerId, w: &WrappedKey) -> Result<DataKey, CryptoError> {
        let b = &w.0;
        if b.len() != 1 + 24 + 32 + 16 || b[0] != 1 {
            return Err(CryptoError::BadFormat);
        }
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    XNonce::from_slice(&b[1..25]),
                    Payload {
                        msg: &b[25..],
                        aad: &Self::aad(customer),
                    },
                )
                .map_err(|_| CryptoError::Unauthentic)?,
        );
        let arr: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::BadFormat)?;
        Ok(DataKey::from_bytes(arr))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_kek_file_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.hex");
        let (k1, src) = Kek::load_or_create("LEDGER_TEST_UNSET_KEK_VAR", &path).unwrap();
        assert_eq!(src, KekSource::Created(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, src) = Kek::load_or_create("LEDGER_TEST_UNSET_KEK_VAR", &path).unwrap();
        assert_eq!(src, KekSource::File(path));
        let c = CustomerId::new();
        let dk = DataKey::generate();
        let w = k1.wrap(c, &dk);
        assert_eq!(k2.unwrap_key(c, &w).unwrap().as_bytes(), dk.as_bytes());
        assert!(k2.unwrap_key(CustomerId::new(), &w).is_err());
        assert!(Kek::generate().unwrap_key(c, &w).is_err());
    }

    #[test]
    fn a_malformed_kek_is_refused_without_echoing_it() {
        let err = Kek::from_hex("zz").unwrap_err().to_string();
        assert!(!err.contains("zz"));
        assert!(Kek::from_hex(&"ab".repeat(31)).is_err());
    }
}
