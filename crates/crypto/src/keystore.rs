//! Where wrapped data keys live, and how they are really deleted.
//!
//! [`SqliteKeyStore`] keeps them in their own SQLite file, apart from the event log,
//! with `secure_delete` on (deleted cells and freed pages are overwritten with
//! zeros) and the WAL checkpointed and truncated after every destruction, so that a
//! destroyed wrapped key no longer occurs in any file of the data folder. A
//! tombstone row records when each key was destroyed; a destroyed customer can
//! never get a new key.

use std::path::Path;
use std::sync::Mutex;

use ledger_types::{CustomerId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

use crate::CryptoError;

/// A data key wrapped by the KEK. Useless without the KEK; still destroyed for real.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(pub(crate) Vec<u8>);

impl WrappedKey {
    /// A wrapped key as a key store backend read it back.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WrappedKey(<redacted>)")
    }
}

/// What the key store knows of a customer's data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Active(WrappedKey),
    Destroyed { at: Timestamp },
    Missing,
}

/// Turns a stored wrapped key into its replacement (see [`KeyStore::rewrap_all`]).
pub type Rewrap = Box<dyn Fn(CustomerId, &WrappedKey) -> Result<WrappedKey, CryptoError> + Send>;

/// A store of wrapped data keys with real deletion.
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Stores keys for customers that have none. For each customer returns the state
    /// after the call: the new key, an existing key (another writer won), or
    /// `Destroyed` (no key is ever created again for an erased customer).
    fn insert_new(&self, keys: &[(CustomerId, WrappedKey)]) -> Result<Vec<KeyState>, CryptoError>;
    fn get(&self, customer: CustomerId) -> Result<KeyState, CryptoError>;
    /// Destroys the keys for good and records tombstones; returns how many keys
    /// were present. Idempotent.
    fn destroy(&self, customers: &[CustomerId], at: Timestamp) -> Result<usize, CryptoError>;
    /// Ids of customers that still have a key.
    fn active_ids(&self) -> Result<Vec<CustomerId>, CryptoError>;
    /// Ids of customers whose key was destroyed (the tombstones). An auditor
    /// checks each against a `CustomerAnonymized` in the log: a tombstone without
    /// one means the log lost its tail (or was restored from an older backup).
    fn destroyed_ids(&self) -> Result<Vec<CustomerId>, CryptoError>;
    /// Replaces every stored wrapped key by `rewrap(customer, key)` in one
    /// transaction: if one call fails, nothing changes. The replaced values are
    /// then scrubbed from the store's files the way destroyed keys are. Returns how
    /// many keys were replaced. For KEK rotation ([`crate::rotate_kek`]).
    fn rewrap_all(&self, rewrap: Rewrap) -> Result<usize, CryptoError>;
}

fn db_err(e: rusqlite::Error) -> CryptoError {
    // rusqlite errors name SQL and SQLite codes, never bound values.
    use rusqlite::ErrorCode as C;
    // As `ledger_store_sqlite::SqliteErrorKind`: growing the `-shm` file fails
    // with SQLITE_IOERR_SHMSIZE when the disk is full.
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE {
            return CryptoError::Full;
        }
    }
    match e.sqlite_error_code() {
        Some(C::DiskFull) => CryptoError::Full,
        Some(C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::CannotOpen) => {
            CryptoError::Unavailable(e.to_string())
        }
        _ => CryptoError::Store(e.to_string()),
    }
}

/// The embedded key store.
#[derive(Debug)]
pub struct SqliteKeyStore {
    conn: Mutex<Connection>,
    read_only: bool,
}

impl SqliteKeyStore {
    pub fn open(path: &Path) -> Result<Self, CryptoError> {
        let conn = Connection::open(path).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000;
             PRAGMA secure_delete = ON;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA auto_vacuum = NONE;
             CREATE TABLE IF NOT EXISTS data_keys (
                 customer_id BLOB PRIMARY KEY,
                 wrapped BLOB NOT NULL,
                 created_at INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS destroyed_keys (
                 customer_id BLOB PRIMARY KEY,
                 destroyed_at INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(db_err)?;
        Ok(Self {
            conn: Mutex::new(conn),
            read_only: false,
        })
    }

    /// Opens an existing key store to read key states only (nothing is created,
    /// written or destroyed), for the operator's read-only commands beside a
    /// running server. A missing file is an error. `open` is how to open the file
    /// read-only (the embedded store's `schema::open_read_only`, which knows when
    /// SQLite may skip its `-wal` and `-shm` files).
    pub fn open_read_only(
        path: &Path,
        open: impl FnOnce(&Path) -> rusqlite::Result<Connection>,
    ) -> Result<Self, CryptoError> {
        if !path.is_file() {
            return Err(CryptoError::Store(format!(
                "no key store at {}",
                path.display()
            )));
        }
        let conn = open(path).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err)?;
        Ok(Self {
            conn: Mutex::new(conn),
            read_only: true,
        })
    }

    fn ids(&self, sql: &str) -> Result<Vec<CustomerId>, CryptoError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(sql).map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(db_err)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(customer_of(&r.map_err(db_err)?)?);
        }
        Ok(out)
    }

    fn writable(&self) -> Result<(), CryptoError> {
        if self.read_only {
            return Err(CryptoError::Store(
                "the key store was opened read-only".into(),
            ));
        }
        Ok(())
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, CryptoError> {
        self.conn
            .lock()
            .map_err(|_| CryptoError::Store("key store lock poisoned".into()))
    }

    fn state_in(conn: &Connection, c: CustomerId) -> Result<KeyState, CryptoError> {
        let id = c.as_bytes().as_slice();
        if let Some(w) = conn
            .prepare_cached("SELECT wrapped FROM data_keys WHERE customer_id = ?1")
            .map_err(db_err)?
            .query_row([id], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(db_err)?
        {
            return Ok(KeyState::Active(WrappedKey(w)));
        }
        let destroyed = conn
            .prepare_cached("SELECT destroyed_at FROM destroyed_keys WHERE customer_id = ?1")
            .map_err(db_err)?
            .query_row([id], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(db_err)?;
        Ok(match destroyed {
            Some(ms) => KeyState::Destroyed {
                at: Timestamp::from_millis(ms),
            },
            None => KeyState::Missing,
        })
    }
}

impl KeyStore for SqliteKeyStore {
    fn insert_new(&self, keys: &[(CustomerId, WrappedKey)]) -> Result<Vec<KeyState>, CryptoError> {
        self.writable()?;
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(db_err)?;
        let now = Timestamp::now().millis();
        let mut out = Vec::with_capacity(keys.len());
        for (c, w) in keys {
            match Self::state_in(&tx, *c)? {
                KeyState::Missing => {
                    tx.prepare_cached(
                        "INSERT INTO data_keys (customer_id, wrapped, created_at) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(db_err)?
                    .execute(params![c.as_bytes().as_slice(), w.0, now])
                    .map_err(db_err)?;
                    out.push(KeyState::Active(w.clone()));
                }
                other => out.push(other),
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    fn get(&self, customer: CustomerId) -> Result<KeyState, CryptoError> {
        Self::state_in(&*self.conn()?, customer)
    }

    fn destroy(&self, customers: &[CustomerId], at: Timestamp) -> Result<usize, CryptoError> {
        self.writable()?;
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(db_err)?;
        let mut present = 0;
        for c in customers {
            let id = c.as_bytes().as_slice();
            present += tx
                .prepare_cached("DELETE FROM data_keys WHERE customer_id = ?1")
                .map_err(db_err)?
                .execute([id])
                .map_err(db_err)?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO destroyed_keys (customer_id, destroyed_at) VALUES (?1, ?2)",
            )
            .map_err(db_err)?
            .execute(params![id, at.millis()])
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        scrub_wal(&conn)?;
        Ok(present)
    }

    fn rewrap_all(&self, rewrap: Rewrap) -> Result<usize, CryptoError> {
        self.writable()?;
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let rows: Vec<(Vec<u8>, Vec<u8>)> = {
            let mut stmt = tx
                .prepare("SELECT customer_id, wrapped FROM data_keys")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)?
        };
        for (id, wrapped) in &rows {
            let new = rewrap(customer_of(id)?, &WrappedKey(wrapped.clone()))?;
            tx.prepare_cached("UPDATE data_keys SET wrapped = ?2 WHERE customer_id = ?1")
                .map_err(db_err)?
                .execute(params![id, new.0])
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        scrub_wal(&conn)?;
        Ok(rows.len())
    }

    fn active_ids(&self) -> Result<Vec<CustomerId>, CryptoError> {
        self.ids("SELECT customer_id FROM data_keys")
    }

    fn destroyed_ids(&self) -> Result<Vec<CustomerId>, CryptoError> {
        self.ids("SELECT customer_id FROM destroyed_keys")
    }
}

fn customer_of(id: &[u8]) -> Result<CustomerId, CryptoError> {
    let arr: [u8; 16] = id
        .try_into()
        .map_err(|_| CryptoError::Store("malformed customer id in key store".into()))?;
    Ok(CustomerId::from_uuid(uuid::Uuid::from_bytes(arr)))
}

/// Moves the zeroed pages into the main file and empties the WAL, so that no
/// frame holding a deleted or replaced wrapped key survives in any file.
fn scrub_wal(conn: &Connection) -> Result<(), CryptoError> {
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .map_err(db_err)?;
    if busy != 0 {
        // A reader (an audit beside the server) still holds old frames: transient;
        // the caller keeps the destruction pending and retries.
        return Err(CryptoError::Unavailable(
            "WAL checkpoint after rewriting keys did not complete: a reader holds the WAL".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    #[test]
    fn growing_the_wal_index_on_a_full_disk_is_full_not_unavailable() {
        let e = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        assert!(matches!(
            db_err(e(ffi::SQLITE_IOERR_SHMSIZE)),
            CryptoError::Full
        ));
        assert!(matches!(db_err(e(ffi::SQLITE_FULL)), CryptoError::Full));
        assert!(matches!(
            db_err(e(ffi::SQLITE_IOERR_WRITE)),
            CryptoError::Unavailable(_)
        ));
    }
}
