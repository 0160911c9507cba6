//! The key-encryption key (KEK): 32 bytes, given as 64 hex characters in an
//! environment variable or a file. Wrapped data keys are
//! `[0x01][24-byte nonce][XChaCha20-Poly1305(KEK, data key)]` with associated data
//! `"ledger.dek.v1" || customer id`, so a wrapped key moved to another customer's
//! row does not unwrap.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ledger_types::CustomerId;
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::keystore::{KeyState, KeyStore, WrappedKey};
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

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
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
        if let Some(found) = Self::load(env_var, file)? {
            return Ok(found);
        }
        let kek = Self::generate();
        let hexed = Zeroizing::new(hex::encode(kek.0));
        write_private(file, hexed.as_bytes())
            .map_err(|e| CryptoError::KekIo(e.kind().to_string()))?;
        Ok((kek, KekSource::Created(file.to_owned())))
    }

    /// The KEK from the environment variable, else from `file`; `None` if neither
    /// is there (nothing is created).
    pub fn load(env_var: &str, file: &Path) -> Result<Option<(Self, KekSource)>, CryptoError> {
        if let Ok(v) = std::env::var(env_var) {
            return Ok(Some((
                Self::from_hex(&v)?,
                KekSource::Env(env_var.to_owned()),
            )));
        }
        if file.exists() {
            let text = Zeroizing::new(
                fs::read_to_string(file).map_err(|e| CryptoError::KekIo(e.kind().to_string()))?,
            );
            return Ok(Some((
                Self::from_hex(&text)?,
                KekSource::File(file.to_owned()),
            )));
        }
        Ok(None)
    }

    /// Replaces `file` with this KEK (hex, mode 0600): written to a new file
    /// beside it, synced, then renamed over it, so the file always holds one whole
    /// key. Used by KEK rotation when the KEK lives in the data folder.
    pub fn replace_file(&self, file: &Path) -> Result<(), CryptoError> {
        let io = |e: std::io::Error| CryptoError::KekIo(e.kind().to_string());
        let tmp = file.with_extension("hex.new");
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let hexed = Zeroizing::new(hex::encode(self.0));
        write_private(&tmp, hexed.as_bytes()).map_err(io)?;
        fs::rename(&tmp, file).map_err(io)?;
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
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

/// Creates `path` (and its folder) holding `bytes` and a line feed, readable by the
/// owner only (mode 0600), synced; fails if it exists. For key files.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

/// What [`rotate_kek`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Keys unwrapped with the old KEK and wrapped with the new one.
    pub rewrapped: usize,
    /// Keys the new KEK already opened (left as they were).
    pub already_new: usize,
}

/// Re-wraps every data key in `keys` from `old` to `new` in one transaction of the
/// key store, then scrubs the old wrapped values from its files. A key that `old`
/// does not open but `new` does is left as it is (a rotation run again after an
/// interruption); a key neither opens fails the rotation and nothing changes. Data
/// keys themselves stay the same, so no sealed block changes. Run it with the
/// service stopped: a running process would go on wrapping new keys with `old`.
pub fn rotate_kek(keys: &dyn KeyStore, old: &Kek, new: &Kek) -> Result<Rotation, CryptoError> {
    if old.0 == new.0 {
        return Err(CryptoError::BadKek(
            "the new key-encryption key is the old one",
        ));
    }
    let already = Arc::new(AtomicUsize::new(0));
    let (o, n, a) = (old.clone(), new.clone(), already.clone());
    let total = keys.rewrap_all(Box::new(move |c, w| match o.unwrap_key(c, w) {
        Ok(key) => Ok(n.wrap(c, &key)),
        Err(_) => {
            n.unwrap_key(c, w).map_err(|_| CryptoError::WrongKek(c))?;
            a.fetch_add(1, Ordering::Relaxed);
            Ok(w.clone())
        }
    }))?;
    let already_new = already.load(Ordering::Relaxed);
    Ok(Rotation {
        rewrapped: total - already_new,
        already_new,
    })
}

/// Checks that `kek` opens a stored data key (any one), so that a process started
/// with the wrong KEK, or with the old one after a rotation, stops at once instead
/// of failing on every personal field later. An empty key store passes.
pub fn check_kek(keys: &dyn KeyStore, kek: &Kek) -> Result<(), CryptoError> {
    for c in keys.active_ids()?.into_iter().take(1) {
        if let KeyState::Active(w) = keys.get(c)? {
            kek.unwrap_key(c, &w)
                .map_err(|_| CryptoError::WrongKek(c))?;
        }
    }
    Ok(())
}
