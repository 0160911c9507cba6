//! Shared set-up of the app's integration tests.

use std::path::Path;
use std::sync::Arc;

use ledger_app::Ledger;
use ledger_crypto::{Kek, Keyring, SqliteKeyStore};
use ledger_store::EventStore;
use ledger_store_sqlite::SqliteStore;

/// A ledger on a fresh SQLite event store and key store in `dir`, with a new KEK.
pub fn scratch_ledger(dir: &Path) -> (Arc<dyn EventStore>, Ledger) {
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(&dir.join("events.sqlite")).unwrap());
    let keys = SqliteKeyStore::open(&dir.join("keys.sqlite")).unwrap();
    let ledger = Ledger::new(
        store.clone(),
        Arc::new(Keyring::new(Kek::generate(), Arc::new(keys))),
    );
    (store, ledger)
}
