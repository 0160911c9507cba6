//! The keyring: the KEK, the key store and a cache of unwrapped data keys, behind
//! the two operations the rest of the system needs: seal for a customer, open for a
//! customer. Destroying a key also evicts it from the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ledger_events::SealedBox;
use ledger_types::{CustomerId, EventId, Timestamp};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::kek::Kek;
use crate::keystore::{KeyState, KeyStore};
use crate::seal::{open_block, seal_block, DataKey};
use crate::CryptoError;

/// The result of opening a customer's sealed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened<T> {
    Open(T),
    /// The customer's data key was destroyed: the data is gone for good.
    Erased,
}

#[derive(Debug)]
pub struct Keyring {
    kek: Kek,
    store: Arc<dyn KeyStore>,
    cache: Mutex<HashMap<CustomerId, Arc<DataKey>>>,
}

impl Keyring {
    pub fn new(kek: Kek, store: Arc<dyn KeyStore>) -> Self {
        Self {
            kek,
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Checks that this keyring's KEK opens a stored data key ([`crate::check_kek`]).
    pub fn check_kek(&self) -> Result<(), CryptoError> {
        crate::check_kek(&*self.store, &self.kek)
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    fn cached(&self, c: CustomerId) -> Option<Arc<DataKey>> {
        self.cache.lock().ok().and_then(|m| m.get(&c).cloned())
    }

    fn remember(&self, c: CustomerId, k: Arc<DataKey>) {
        if let Ok(mut m) = self.cache.lock() {
            m.insert(c, k);
        }
    }

    /// Ensures every customer has a data key, creating the missing ones in one
    /// durable write. Fails with `KeyDestroyed` for an erased customer.
    pub fn ensure_keys(&self, customers: &[CustomerId]) -> Result<(), CryptoError> {
        let missing: Vec<CustomerId> = customers
            .iter()
            .copied()
            .filter(|c| self.cached(*c).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let fresh: Vec<_> = missing
            .iter()
            .map(|c| (*c, self.kek.wrap(*c, &DataKey::generate())))
            .collect();
        let states = self.store.insert_new(&fresh)?;
        for (c, state) in missing.iter().zip(states) {
            match state {
                KeyState::Active(w) => {
                    let k = self.kek.unwrap_key(*c, &w)?;
                    self.remember(*c, Arc::new(k));
                }
                KeyState::Destroyed { .. } => return Err(CryptoError::KeyDestroyed(*c)),
                KeyState::Missing => return Err(CryptoError::NoKey(*c)),
            }
        }
        Ok(())
    }

    /// The customer's data key, from the cache or the key store.
    pub fn key(&self, c: CustomerId) -> Result<Arc<DataKey>, CryptoError> {
        if let Some(k) = self.cached(c) {
            return Ok(k);
        }
        match self.store.get(c)? {
            KeyState::Active(w) => {
                let k = Arc::new(self.kek.unwrap_key(c, &w)?);
                self.remember(c, k.clone());
                Ok(k)
            }
            KeyState::Destroyed { .. } => Err(CryptoError::KeyDestroyed(c)),
            KeyState::Missing => Err(CryptoError::NoKey(c)),
        }
    }

    /// A 16-byte value derived from `message` under the customer's data key
    /// (HMAC-SHA-256, truncated): the same input gives the same value while the
    /// key lives, and nothing links the value to its input once the key is
    /// destroyed. Used for event ids that must be found again on a retry
    /// (`ledger_app::retry`) without storing a digest of personal data in the log.
    pub fn derive_id(
        &self,
        c: CustomerId,
        domain: &[u8],
        message: &[u8],
    ) -> Result<[u8; 16], CryptoError> {
        let mac = self.key(c)?.mac(domain, message);
        let mut id = [0u8; 16];
        id.copy_from_slice(&mac[..16]);
        Ok(id)
    }

    pub fn seal<T: Serialize>(
        &self,
        c: CustomerId,
        event: EventId,
        value: &T,
    ) -> Result<SealedBox, CryptoError> {
        seal_block(&*self.key(c)?, c, event, value)
    }

    /// Opens a block, or reports that the customer was erased.
    pub fn open<T: DeserializeOwned>(
        &self,
        c: CustomerId,
        event: EventId,
        sealed: &SealedBox,
    ) -> Result<Opened<T>, CryptoError> {
        match self.key(c) {
            Ok(k) => open_block(&k, c, event, sealed).map(Opened::Open),
            Err(CryptoError::KeyDestroyed(_)) => Ok(Opened::Erased),
            Err(e) => Err(e),
        }
    }

    /// Destroys the customers' data keys for good (idempotent). Returns how many
    /// keys were still present.
    pub fn destroy(&self, customers: &[CustomerId], at: Timestamp) -> Result<usize, CryptoError> {
        if let Ok(mut m) = self.cache.lock() {
            for c in customers {
                m.remove(c);
            }
        }
        let n = self.store.destroy(customers, at)?;
        // A concurrent `key()` may have re-cached a key between eviction and
        // deletion; evict again now that the store no longer has it.
        if let Ok(mut m) = self.cache.lock() {
            for c in customers {
                m.remove(c);
            }
        }
        Ok(n)
    }

    pub fn state(&self, c: CustomerId) -> Result<KeyState, CryptoError> {
        self.store.get(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::{SqliteKeyStore, WrappedKey};
    use ledger_events::LoginData;

    fn keyring(dir: &std::path::Path) -> Keyring {
        let store = SqliteKeyStore::open(&dir.join("keys.sqlite")).unwrap();
        Keyring::new(Kek::generate(), Arc::new(store))
    }

    #[test]
    fn after_destruction_sealed_data_reads_as_erased_and_no_new_key_can_be_made() {
        let dir = tempfile::tempdir().unwrap();
        let kr = keyring(dir.path());
        let (c, e) = (CustomerId::new(), EventId::new());
        kr.ensure_keys(&[c]).unwrap();
        let s = kr
            .seal(
                c,
                e,
                &LoginData {
                    ip: "198.51.100.7".into(),
                },
            )
            .unwrap();
        assert!(matches!(
            kr.open::<LoginData>(c, e, &s),
            Ok(Opened::Open(_))
        ));
        assert_eq!(kr.destroy(&[c], Timestamp::now()).unwrap(), 1);
        assert_eq!(kr.destroy(&[c], Timestamp::now()).unwrap(), 0);
        assert_eq!(kr.open::<LoginData>(c, e, &s).unwrap(), Opened::Erased);
        assert!(matches!(
            kr.ensure_keys(&[c]),
            Err(CryptoError::KeyDestroyed(_))
        ));
        assert!(matches!(kr.state(c).unwrap(), KeyState::Destroyed { .. }));
        assert!(kr.store().active_ids().unwrap().is_empty());
    }

    #[test]
    fn a_destroyed_wrapped_key_occurs_in_no_file_of_the_key_store() {
        let dir = tempfile::tempdir().unwrap();
        let kr = keyring(dir.path());
        let keep = CustomerId::new();
        let gone = CustomerId::new();
        kr.ensure_keys(&[keep, gone]).unwrap();
        let KeyState::Active(w) = kr.state(gone).unwrap() else {
            panic!("no key")
        };
        let hit = |needle: &[u8]| {
            std::fs::read_dir(dir.path()).unwrap().any(|f| {
                let bytes = std::fs::read(f.unwrap().path()).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle)
            })
        };
        assert!(hit(w.as_bytes()), "the key is on disk before destruction");
        kr.destroy(&[gone], Timestamp::now()).unwrap();
        assert!(!hit(w.as_bytes()), "the destroyed key is still in a file");
        assert!(matches!(kr.state(keep).unwrap(), KeyState::Active(_)));
    }

    #[test]
    fn kek_rotation_rewraps_every_key_keeps_sealed_data_readable_and_scrubs_the_old_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteKeyStore::open(&dir.path().join("keys.sqlite")).unwrap());
        let old = Kek::generate();
        let kr = Keyring::new(old.clone(), store.clone());
        let customers: Vec<CustomerId> = (0..50).map(|_| CustomerId::new()).collect();
        kr.ensure_keys(&customers).unwrap();
        let e = EventId::new();
        let login = LoginData {
            ip: "198.51.100.7".into(),
        };
        let sealed: Vec<_> = customers
            .iter()
            .map(|c| kr.seal(*c, e, &login).unwrap())
            .collect();
        let old_wraps: Vec<WrappedKey> = customers
            .iter()
            .map(|c| match store.get(*c).unwrap() {
                KeyState::Active(w) => w,
                other => panic!("{other:?}"),
            })
            .collect();
        let new = Kek::generate();

        // A KEK that opens nothing changes nothing.
        let stranger = Kek::generate();
        assert!(matches!(
            crate::rotate_kek(&*store, &stranger, &new),
            Err(CryptoError::WrongKek(_))
        ));
        assert!(matches!(
            crate::rotate_kek(&*store, &old, &old),
            Err(CryptoError::BadKek(_))
        ));
        assert_eq!(
            store.get(customers[0]).unwrap(),
            KeyState::Active(old_wraps[0].clone())
        );

        let done = crate::rotate_kek(&*store, &old, &new).unwrap();
        assert_eq!((done.rewrapped, done.already_new), (50, 0));
        crate::check_kek(&*store, &new).unwrap();
        assert!(matches!(
            crate::check_kek(&*store, &old),
            Err(CryptoError::WrongKek(_))
        ));
        // The same data keys, so every sealed block opens under the new KEK.
        let after = Keyring::new(new.clone(), store.clone());
        for (c, s) in customers.iter().zip(&sealed) {
            assert!(matches!(
                after.open::<LoginData>(*c, e, s),
                Ok(Opened::Open(l)) if l.ip == "198.51.100.7"
            ));
        }
        // No file of the key store still holds a key wrapped with the old KEK.
        for w in &old_wraps {
            for f in std::fs::read_dir(dir.path()).unwrap() {
                let bytes = std::fs::read(f.unwrap().path()).unwrap();
                assert!(!bytes.windows(w.as_bytes().len()).any(|x| x == w.as_bytes()));
            }
        }
        // Run again (say, after an interruption): nothing left to re-wrap.
        let again = crate::rotate_kek(&*store, &old, &new).unwrap();
        assert_eq!((again.rewrapped, again.already_new), (0, 50));
    }
}
