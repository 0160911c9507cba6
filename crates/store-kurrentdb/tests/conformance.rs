//! The shared conformance suite against a real KurrentDB server, one test per check.
//!
//! The server comes from `LEDGER_TEST_KURRENTDB_URL` (a connection string such as
//! `esdb://localhost:2113?tls=false`). Each test opens the store in its own fresh
//! namespace (`ltest<random>`), so one server serves every test and every run
//! without cleanup. Without the variable, each test writes exactly one line
//! `skipped: LEDGER_TEST_KURRENTDB_URL not set (no KurrentDB server)` straight to
//! stderr (the harness does not capture that handle; CI counts those lines as
//! skips, not passes) and returns. The mapping and the store's logic are covered
//! without a server by the crate's unit tests, which run this same suite against
//! an in-memory emulation of KurrentDB.

use std::io::Write as _;
use std::sync::Arc;

use ledger_store::EventStore;
use ledger_store_kurrentdb::{connect_with, KurrentOptions};

const URL_VAR: &str = "LEDGER_TEST_KURRENTDB_URL";

/// A fresh store in its own namespace, or `None` (after the skip line) without a server.
async fn fresh_store() -> Option<Arc<dyn EventStore>> {
    let Ok(url) = std::env::var(URL_VAR) else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {URL_VAR} not set (no KurrentDB server)"
        );
        return None;
    };
    let namespace = format!("ltest{}", uuid::Uuid::new_v4().simple());
    let options = KurrentOptions {
        namespace,
        ..KurrentOptions::default()
    };
    match connect_with(&url, options).await {
        Ok(store) => Some(Arc::new(store)),
        Err(e) => panic!("{URL_VAR} is set but the store did not open: {e}"),
    }
}

// Every check of `ledger_store::conformance` (its `for_each_check!` list).
ledger_store::conformance_tests!(|| async { fresh_store().await.map(|s| (s, ())) });
