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

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(store) = fresh_store().await else { return };
                ledger_store::conformance::$check(store).await;
            }
        )*
    };
}

// Every check of `ledger_store::conformance` (the list `run_all` runs).
conformance!(
    check_append_and_read_stream_round_trip,
    check_empty_requests_are_invalid,
    check_expected_version_rules,
    check_concurrent_writers_one_wins,
    check_refused_appends_do_not_disturb_concurrent_ones,
    check_idempotent_retry,
    check_concurrent_retries_write_once,
    check_partial_or_foreign_event_ids_rejected,
    check_multi_event_append_is_atomic,
    check_append_batch_is_atomic,
    check_global_order_and_paging,
    check_read_stream_from_version,
    check_hash_chains_verify,
    check_wait_for_head,
    check_subscription_with_concurrent_writers,
    check_large_batch_round_trips,
);

/// The suite's list above must stay complete: compare it with `run_all`'s source.
#[test]
fn every_conformance_check_is_listed() {
    let listed = include_str!("conformance.rs");
    let suite = include_str!("../../store/src/conformance.rs");
    let mut missing = Vec::new();
    for line in suite.lines() {
        if let Some(rest) = line.strip_prefix("pub async fn check_") {
            let name = format!("check_{}", rest.split('(').next().unwrap_or(""));
            if !listed.contains(&format!("    {name},")) {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "conformance checks not run against KurrentDB: {missing:?}"
    );
}
