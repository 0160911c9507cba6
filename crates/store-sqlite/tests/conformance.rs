//! The shared conformance suite, one test per check, each on its own temp-dir store;
//! plus the SQLite-specific durability and tamper tests.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ledger_store::chain::stream_link_ok;
use ledger_store::conformance;
use ledger_store::conformance::fixtures::*;
use ledger_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent, StoreError, ZERO_HASH};
use ledger_store_sqlite::SqliteStore;
use tempfile::TempDir;

fn open_temp() -> (Arc<dyn EventStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("events.db")).expect("open store");
    (Arc::new(store), dir)
}

ledger_store::conformance_tests!(|| async { Some(open_temp()) });

#[tokio::test(flavor = "multi_thread")]
async fn run_all_passes_with_a_fresh_store_per_check() {
    let dirs: Arc<Mutex<Vec<TempDir>>> = Arc::default();
    conformance::run_all(|| {
        let dirs = dirs.clone();
        async move {
            let (store, dir) = open_temp();
            dirs.lock().expect("dirs").push(dir);
            store
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_events_survive_reopen_and_positions_continue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data").join("events.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        fill(&store).await;
        store
            .append_batch(vec![
                req("s-0", vec![event(100)]),
                req("t", vec![event(101)]),
            ])
            .await
            .expect("batch");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.head().await.expect("head"), 32);
    let all = store.read_all(0, 1000).await.expect("read_all");
    assert_eq!(all.len(), 32);
    verify_log(&all);
    let s0 = store.read_stream("s-0", 1).await.expect("read_stream");
    assert_eq!(s0.len(), 11);
    let mut prev = ZERO_HASH;
    for e in &s0 {
        assert!(stream_link_ok(e, &prev));
        prev = e.hash;
    }
    // The writer resumed from the stored head: versions, positions and chains go on.
    let r = store
        .append(AppendRequest {
            stream: "s-0".into(),
            expected: ExpectedVersion::Exact(11),
            events: vec![event(200)],
        })
        .await
        .expect("append after reopen");
    assert_eq!((r.first_position, r.stream_version), (33, 12));
    verify_log(&store.read_all(0, 1000).await.expect("read_all"));
    // Idempotency survives the reopen too.
    let again = store
        .append(req(
            "s-0",
            vec![s0[0].clone()]
                .into_iter()
                .map(|e| NewEvent {
                    event_id: e.event_id,
                    event_type: e.event_type,
                    schema_version: e.schema_version,
                    payload: e.payload,
                    recorded_at: e.recorded_at,
                })
                .collect(),
        ))
        .await
        .expect("retry");
    assert!(again.duplicate);
    assert_eq!(again.first_position, s0[0].position);
}

#[tokio::test(flavor = "multi_thread")]
async fn close_stops_the_writer_and_later_appends_are_refused() {
    let (dir, store) = {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("e.db")).expect("open");
        (dir, store)
    };
    fill(&store).await;
    store.checkpoint_truncate().await.expect("checkpoint");
    let wal = dir.path().join("e.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "checkpoint_truncate empties the WAL");
    store.close().await;
    store.close().await;
    let r = store.append(req("s-0", vec![event(1)])).await;
    assert!(matches!(r, Err(StoreError::Closed)), "got {r:?}");
    assert_eq!(
        store
            .read_all(0, 100)
            .await
            .expect("reads still work")
            .len(),
        30
    );
}

/// Opens the file behind the store's back, like an attacker with disk access.
fn tamper(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).expect("open raw");
    conn.execute_batch(sql).expect("tamper");
    assert!(
        conn.total_changes() > 0,
        "tamper statement changed nothing: {sql}"
    );
}

async fn tampered_store(sql: &str) -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        fill(&store).await;
    }
    tamper(&path, sql);
    let store = SqliteStore::open(&path).expect("reopen");
    (store, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_payload_byte_is_detected() {
    // Position 14 is s-1 version 5.
    let (store, _dir) = tampered_store(
        "UPDATE events SET payload = CAST(replace(CAST(payload AS TEXT), '0', '1') AS BLOB) \
         WHERE position = 14",
    )
    .await;
    assert_integrity(store.read_all(0, 1000).await, "read_all");
    assert_integrity(store.read_all(13, 1).await, "read_all page at the record");
    assert_integrity(store.read_stream("s-1", 1).await, "read_stream");
    assert_integrity(
        store.read_stream("s-1", 5).await,
        "read_stream from the record",
    );
    // Untouched streams still read.
    assert_eq!(store.read_stream("s-0", 1).await.expect("s-0").len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_middle_row_is_detected() {
    let (store, _dir) = tampered_store("DELETE FROM events WHERE position = 14").await;
    assert_integrity(store.read_all(0, 1000).await, "read_all");
    assert_integrity(store.read_all(13, 10).await, "read_all after the hole");
    assert_integrity(store.read_all(14, 10).await, "read_all from the hole");
    assert_integrity(store.read_stream("s-1", 1).await, "read_stream");
    assert_integrity(
        store.read_stream("s-1", 6).await,
        "read_stream after the hole",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn swapped_payloads_are_detected() {
    // Positions 4 and 7 are s-0 versions 2 and 3; 5 is s-1 version 2.
    for (a, b, stream) in [(4, 7, "s-0"), (4, 5, "s-1")] {
        let (store, _dir) = tampered_store(&format!(
            "CREATE TEMP TABLE t AS SELECT position, payload FROM events \
               WHERE position IN ({a}, {b}); \
             UPDATE events SET payload = \
               (SELECT payload FROM t WHERE t.position = {a} + {b} - events.position) \
             WHERE position IN ({a}, {b});"
        ))
        .await;
        assert_integrity(store.read_all(0, 1000).await, "read_all");
        assert_integrity(store.read_stream(stream, 1).await, "read_stream");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_without_writing() {
    let (store, _dir) = open_temp();
    let long = "x".repeat(ledger_store_sqlite::MAX_STREAM_NAME_BYTES + 1);
    for r in [
        req(&long, vec![event(1)]),
        req("bad\nname", vec![event(1)]),
        req(
            "s",
            vec![NewEvent {
                event_type: String::new(),
                ..event(1)
            }],
        ),
    ] {
        let got = store.append(r).await;
        assert!(matches!(got, Err(StoreError::Invalid(_))), "got {got:?}");
    }
    assert_eq!(store.head().await.expect("head"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_answers_conform_and_survive_a_reopen() {
    use ledger_store::responses::{self, ResponseStore, SavedResponse};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.db");
    let saved = SavedResponse {
        fingerprint: [7; 32],
        status: 201,
        content_type: Some("application/json".into()),
        body: b"{\"customer_id\":\"x\"}".to_vec(),
        saved_at: ledger_types::Timestamp::now(),
    };
    {
        let store = SqliteStore::open(&path).expect("open");
        responses::conformance(&store).await;
        // Saved beside a concurrent append: both in group commits.
        let (a, b) = tokio::join!(
            store.remember([9; 16], "retry-me", saved.clone()),
            store.append(req("s", vec![event(1)]))
        );
        a.expect("remember");
        b.expect("append");
        store.close().await;
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store.recall([9; 16], "retry-me").await.expect("recall"),
        Some(saved)
    );
}
