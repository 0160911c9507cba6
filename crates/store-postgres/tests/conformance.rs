//! The shared conformance suite, one test per check, each on its own fresh database;
//! plus the PostgreSQL-specific tests: reconnect durability, tampering, the writer
//! lock, a killed writer session, schema versions, bad input and password hygiene.
//! Repeated connection loss has its own file, `connection_loss.rs`. The test server
//! and the skip rule are described in `common/mod.rs`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestDb;

use ledger_store::conformance;
use ledger_store::conformance::fixtures::*;
use ledger_store::{
    AppendRequest, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
};
use ledger_store_postgres::{PostgresOptions, PostgresStore};

ledger_store::conformance_tests!(|| async {
    let db = TestDb::create().await?;
    let store: Arc<dyn EventStore> = db.store().await;
    Some((store, db))
});

#[tokio::test(flavor = "multi_thread")]
async fn run_all_passes_with_a_fresh_database_per_check() {
    let Some(probe) = TestDb::create().await else {
        return;
    };
    drop(probe);
    let dbs: Arc<Mutex<Vec<TestDb>>> = Arc::default();
    conformance::run_all(|| {
        let dbs = dbs.clone();
        async move {
            let db = TestDb::create().await.expect("server went away");
            let store: Arc<dyn EventStore> = db.store().await;
            dbs.lock().expect("dbs").push(db);
            store
        }
    })
    .await;
}

fn as_new(e: &RecordedEvent) -> NewEvent {
    NewEvent {
        event_id: e.event_id,
        event_type: e.event_type.clone(),
        schema_version: e.schema_version,
        payload: e.payload.clone(),
        recorded_at: e.recorded_at,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_events_survive_reconnect_and_positions_continue() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    {
        // Dropped without close: the next connect waits for the lock to be released.
        let store = PostgresStore::connect(&db.url).await.expect("connect");
        fill(&store).await;
        store
            .append_batch(vec![
                req("s-0", vec![event(100)]),
                req("t", vec![event(101)]),
            ])
            .await
            .expect("batch");
    }
    let store = PostgresStore::connect(&db.url).await.expect("reconnect");
    assert_eq!(store.head().await.expect("head"), 32);
    let all = store.read_all(0, 1000).await.expect("read_all");
    assert_eq!(all.len(), 32);
    verify_log(&all);
    let s0 = store.read_stream("s-0", 1).await.expect("read_stream");
    assert_eq!(s0.len(), 11);
    verify_stream(&s0);
    // The writer resumed from the stored head: versions, positions and chains go on.
    let r = store
        .append(AppendRequest {
            stream: "s-0".into(),
            expected: ExpectedVersion::Exact(11),
            events: vec![event(200)],
        })
        .await
        .expect("append after reconnect");
    assert_eq!((r.first_position, r.stream_version), (33, 12));
    verify_log(&store.read_all(0, 1000).await.expect("read_all"));
    verify_stream(&store.read_stream("s-0", 1).await.expect("read_stream"));
    // Idempotency survives the reconnect too.
    let again = store
        .append(req("s-0", vec![as_new(&s0[0])]))
        .await
        .expect("retry");
    assert!(again.duplicate);
    assert_eq!(again.first_position, s0[0].position);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn close_stops_the_writer_and_later_appends_are_refused() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    fill(store.as_ref()).await;
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
    // The lock went with the writer's connection: a new writer connects at once.
    let next = PostgresStore::connect_with(
        &db.url,
        PostgresOptions {
            lock_wait: Duration::ZERO,
            ..PostgresOptions::default()
        },
    )
    .await
    .expect("a new writer after close");
    next.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_writer_is_refused_with_a_clear_error() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let first = db.store().await;
    first
        .append(req("s-0", vec![event(0)]))
        .await
        .expect("first writer appends");
    let second = PostgresStore::connect_with(
        &db.url,
        PostgresOptions {
            lock_wait: Duration::from_millis(200),
            ..PostgresOptions::default()
        },
    )
    .await;
    match second {
        Err(StoreError::Backend(msg)) => {
            assert!(
                msg.contains("locked by another writer") && msg.contains(&db.name),
                "the error names the lock and the database: {msg}"
            );
        }
        Err(other) => panic!("expected a Backend error naming the lock, got {other:?}"),
        Ok(_) => panic!("a second writer connected while the first holds the lock"),
    }
    // The first writer is unaffected.
    let r = first
        .append(req("s-0", vec![event(1)]))
        .await
        .expect("first writer still appends");
    assert_eq!(r.first_position, 2);
    first.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_writer_recovers_after_its_connection_is_killed() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    fill(store.as_ref()).await;
    let killed = db
        .raw()
        .await
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'ledger-store-postgres writer'",
            &[],
        )
        .await
        .expect("terminate the writer's backend");
    assert_eq!(killed.len(), 1, "exactly one writer session");
    // An append that meets the loss may fail, as `Unavailable` and never silently;
    // the writer reconnects, re-takes the lock, reloads its state and goes on.
    let mut landed = None;
    for _ in 0..20 {
        match store.append(req("s-1", vec![event(500)])).await {
            Ok(r) => {
                landed = Some(r);
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("unexpected error after connection loss: {e}"),
        }
    }
    let r = landed.expect("the writer recovered");
    assert_eq!((r.first_position, r.stream_version), (31, 11));
    let all = store.read_all(0, 1000).await.expect("read_all");
    assert_eq!(all.len(), 31);
    verify_log(&all);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_schema_is_refused() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    db.store().await.close().await;
    db.exec("UPDATE schema_meta SET value = 99 WHERE key = 'schema_version'")
        .await;
    match PostgresStore::connect(&db.url).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a schema version error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_errors_never_show_the_password() {
    // Needs no server: nothing listens on port 1.
    let url = "postgres://ledger:s3cret-pw-value@127.0.0.1:1/ledger?connect_timeout=2";
    match PostgresStore::connect(url).await {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains("s3cret-pw-value"), "{msg}");
            assert!(
                msg.contains("127.0.0.1:1/ledger"),
                "names the target: {msg}"
            );
        }
        Ok(_) => panic!("connected to port 1"),
    }
    let bad = "postgres://ledger:s3cret-pw-value@127.0.0.1:notaport/ledger";
    match PostgresStore::connect(bad).await {
        Err(e) => assert!(!e.to_string().contains("s3cret-pw-value"), "{e}"),
        Ok(_) => panic!("parsed a bad URL"),
    }
}

async fn tampered_store(sql: &str) -> Option<(PostgresStore, TestDb)> {
    let db = TestDb::create().await?;
    let store = db.store().await;
    fill(store.as_ref()).await;
    store.close().await;
    assert!(
        db.exec(sql).await > 0,
        "tamper statement changed nothing: {sql}"
    );
    let store = PostgresStore::connect(&db.url).await.expect("reconnect");
    Some((store, db))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_payload_byte_is_detected() {
    // Position 14 is s-1 version 5.
    let Some((store, _db)) = tampered_store(
        "UPDATE events SET payload = set_byte(payload, 0, get_byte(payload, 0) # 1) \
         WHERE position = 14",
    )
    .await
    else {
        return;
    };
    assert_integrity(store.read_all(0, 1000).await, "read_all");
    assert_integrity(store.read_all(13, 1).await, "read_all page at the record");
    assert_integrity(store.read_stream("s-1", 1).await, "read_stream");
    assert_integrity(
        store.read_stream("s-1", 5).await,
        "read_stream from the record",
    );
    // Untouched streams still read.
    assert_eq!(store.read_stream("s-0", 1).await.expect("s-0").len(), 10);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_middle_row_is_detected() {
    let Some((store, _db)) = tampered_store("DELETE FROM events WHERE position = 14").await else {
        return;
    };
    assert_integrity(store.read_all(0, 1000).await, "read_all");
    assert_integrity(store.read_all(13, 10).await, "read_all after the hole");
    assert_integrity(store.read_all(14, 10).await, "read_all from the hole");
    assert_integrity(store.read_stream("s-1", 1).await, "read_stream");
    assert_integrity(
        store.read_stream("s-1", 6).await,
        "read_stream after the hole",
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn swapped_payloads_are_detected() {
    // Positions 4 and 7 are s-0 versions 2 and 3; 5 is s-1 version 2.
    for (a, b, stream) in [(4, 7, "s-0"), (4, 5, "s-1")] {
        let Some((store, _db)) = tampered_store(&format!(
            "UPDATE events SET payload = \
               (SELECT o.payload FROM events o WHERE o.position = {a} + {b} - events.position) \
             WHERE position IN ({a}, {b})"
        ))
        .await
        else {
            return;
        };
        assert_integrity(store.read_all(0, 1000).await, "read_all");
        assert_integrity(store.read_stream(stream, 1).await, "read_stream");
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_without_writing() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    let long = "x".repeat(ledger_store_postgres::MAX_STREAM_NAME_BYTES + 1);
    for r in [
        req(&long, vec![event(1)]),
        req("bad\nname", vec![event(1)]),
        req("nul\0name", vec![event(1)]),
        req(
            "s",
            vec![NewEvent {
                event_type: String::new(),
                ..event(1)
            }],
        ),
        req(
            "s",
            vec![NewEvent {
                event_type: "Nul\0Type".into(),
                ..event(1)
            }],
        ),
    ] {
        let got = store.append(r).await;
        assert!(matches!(got, Err(StoreError::Invalid(_))), "got {got:?}");
    }
    assert_eq!(store.head().await.expect("head"), 0);
    // The writer is healthy afterwards.
    store
        .append(req("s", vec![event(2)]))
        .await
        .expect("a good append after refused ones");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_store_destroys_for_good_and_rotates_the_kek_in_one_transaction() {
    use ledger_crypto::{
        check_kek, rotate_kek, CryptoError, Kek, KeyState, KeyStore, Keyring, Opened,
    };
    use ledger_store_postgres::PgKeyStore;
    use ledger_types::{CustomerId, EventId, Timestamp};

    let Some(db) = TestDb::create().await else {
        return;
    };
    let url = db.url.clone();
    // The key store's actor runs its own runtime: drive it from a plain thread.
    let checked = std::thread::spawn(move || {
        let store = Arc::new(PgKeyStore::connect(&url).expect("key store"));
        let old = Kek::generate();
        let kr = Keyring::new(old.clone(), store.clone());
        let (keep, gone) = (CustomerId::new(), CustomerId::new());
        kr.ensure_keys(&[keep, gone]).unwrap();
        let e = EventId::new();
        let login = ledger_events::LoginData {
            ip: "198.51.100.7".into(),
        };
        let sealed = kr.seal(keep, e, &login).unwrap();
        assert_eq!(kr.destroy(&[gone], Timestamp::now()).unwrap(), 1);
        assert!(matches!(
            store.get(gone).unwrap(),
            KeyState::Destroyed { .. }
        ));

        let new = Kek::generate();
        assert!(matches!(
            rotate_kek(&*store, &Kek::generate(), &new),
            Err(CryptoError::WrongKek(c)) if c == keep
        ));
        check_kek(&*store, &old).expect("a refused rotation changes nothing");
        let done = rotate_kek(&*store, &old, &new).unwrap();
        assert_eq!((done.rewrapped, done.already_new), (1, 0));
        assert!(matches!(
            check_kek(&*store, &old),
            Err(CryptoError::WrongKek(_))
        ));
        let after = Keyring::new(new, store.clone());
        assert!(matches!(
            after.open::<ledger_events::LoginData>(keep, e, &sealed),
            Ok(Opened::Open(l)) if l.ip == "198.51.100.7"
        ));
        assert!(matches!(
            after.ensure_keys(&[gone]),
            Err(CryptoError::KeyDestroyed(_))
        ));
    })
    .join();
    assert!(checked.is_ok(), "key store checks failed");
}

/// Revenue totals are i128: a table made while they were BIGINT is widened on
/// connect with its rows intact, and totals beyond i64 then round-trip exactly.
#[tokio::test(flavor = "multi_thread")]
async fn revenue_totals_beyond_i64_round_trip_and_old_bigint_tables_are_widened() {
    use ledger_projections::{Changes, Positions, RevenueKey, RevenueTotals, ViewStore};
    use ledger_store_postgres::PgViewStore;
    use ledger_types::{BroadcasterId, Currency, OfferId};

    let Some(db) = TestDb::create().await else {
        return;
    };
    db.exec(
        "CREATE TABLE ledger_revenue (
            broadcaster_id UUID NOT NULL, currency TEXT NOT NULL, day BIGINT NOT NULL,
            offer_id TEXT NOT NULL, gross_captured BIGINT NOT NULL, refunded BIGINT NOT NULL,
            net BIGINT NOT NULL, payment_count BIGINT NOT NULL, refund_count BIGINT NOT NULL,
            PRIMARY KEY (broadcaster_id, currency, day, offer_id))",
    )
    .await;
    db.exec(
        "INSERT INTO ledger_revenue VALUES ('00000002-0000-4000-8000-000000000001', 'EUR', 1,
         'premium', 9223372036854775807, 0, 9223372036854775807, 1, 0)",
    )
    .await;
    let url = db.url.clone();
    // The view store's actor runs its own runtime: drive it from a plain thread.
    std::thread::spawn(move || {
        let key = |day| RevenueKey {
            broadcaster_id: BroadcasterId::parse("00000002-0000-4000-8000-000000000001").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            day,
            offer_id: OfferId::parse("premium").unwrap(),
        };
        let store = PgViewStore::connect(&url).expect("view store");
        let old = store.load().expect("load after widening");
        assert_eq!(
            old.revenue.get(&key(1)).map(|t| t.gross_captured),
            Some(i128::from(i64::MAX))
        );
        let big = i128::from(i64::MAX) + 3_000_000_000_000;
        let t = RevenueTotals {
            gross_captured: big,
            refunded: 5,
            net: big - 5,
            payment_count: 4,
            refund_count: 1,
        };
        store
            .save(&Changes {
                customers: vec![],
                revenue: vec![(key(1), t)],
                erasures: vec![],
                positions: Positions {
                    customers: 9,
                    revenue: 9,
                    erasures: 9,
                },
                log_hash: None,
            })
            .expect("save");
        assert_eq!(store.load().unwrap().revenue.get(&key(1)), Some(&t));
    })
    .join()
    .expect("view store thread");
}

fn answer(n: u8, body: &str) -> ledger_store::responses::SavedResponse {
    ledger_store::responses::SavedResponse {
        fingerprint: [n; 32],
        status: 201,
        content_type: Some("application/json".into()),
        body: body.as_bytes().to_vec(),
        saved_at: ledger_types::Timestamp::now(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_answers_conform() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    ledger_store::responses::conformance(store.as_ref()).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_answers_survive_closing_and_reopening_the_store() {
    use ledger_store::responses::ResponseStore;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    let scope = [7u8; 16];
    let mut first = answer(1, r#"{"customer_id":"c1"}"#);
    first.content_type = None;
    store.remember(scope, "k1", first.clone()).await.unwrap();
    store
        .remember(scope, "k2", answer(2, r#"{"n":2}"#))
        .await
        .unwrap();
    store.close().await;
    drop(store);
    let store = db.store().await;
    assert_eq!(store.recall(scope, "k1").await.unwrap(), Some(first));
    assert_eq!(
        store.recall(scope, "k2").await.unwrap().map(|a| a.body),
        Some(br#"{"n":2}"#.to_vec())
    );
    assert_eq!(store.recall([8u8; 16], "k1").await.unwrap(), None);
    let rows = db
        .raw()
        .await
        .query_one("SELECT count(*) FROM ledger_responses", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(rows, 2, "the answers live in the ledger_responses table");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_saved_beside_appends_share_their_groups_and_the_last_one_wins() {
    use ledger_store::responses::ResponseStore;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    let scope = [3u8; 16];
    // Appends and answers queued together (the same key many times: one
    // statement cannot upsert a row twice, so the group keeps the last).
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64u8 {
        let s = store.clone();
        tasks.spawn(async move {
            s.append(req(&format!("s-{i}"), vec![event(u64::from(i))]))
                .await
                .map(|_| ())
        });
        let s = store.clone();
        tasks.spawn(async move {
            s.remember(scope, "same", answer(i, &format!("{{\"i\":{i}}}")))
                .await
        });
        let s = store.clone();
        tasks.spawn(async move { s.remember(scope, &format!("k{i}"), answer(i, "{}")).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().expect("every append and answer is acknowledged");
    }
    assert_eq!(store.head().await.unwrap(), 64);
    for i in 0..64u8 {
        let got = store.recall(scope, &format!("k{i}")).await.unwrap();
        assert_eq!(got.map(|a| a.fingerprint), Some([i; 32]));
    }
    assert!(store.recall(scope, "same").await.unwrap().is_some());
    // A key PostgreSQL text cannot hold is refused alone.
    assert!(matches!(
        store.remember(scope, "a\0b", answer(1, "{}")).await,
        Err(StoreError::Invalid(_))
    ));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_checkpoints_survive_a_reconnect_and_a_rebuild_and_stay_apart() {
    use ledger_projections::{Changes, Positions, ViewStore};
    use ledger_store_postgres::PgViewStore;

    let Some(db) = TestDb::create().await else {
        return;
    };
    let url = db.url.clone();
    // The view store's actor runs its own runtime: drive it from a plain thread.
    std::thread::spawn(move || {
        let store = PgViewStore::connect(&url).expect("view store");
        assert_eq!(store.sink_position("nats:LEDGER").unwrap(), 0);
        let changes = Changes {
            positions: Positions {
                customers: 7,
                revenue: 7,
                erasures: 7,
            },
            log_hash: Some([9; 32]),
            ..Changes::default()
        };
        store.save(&changes).expect("save");
        store.save_sink_position("nats:LEDGER", 5).unwrap();
        store.save_sink_position("nats:LEDGER", 6).unwrap();
        store.clear(None).unwrap();
        store.save(&changes).expect("save");
        drop(store);
        let store = PgViewStore::connect(&url).expect("view store");
        assert_eq!(store.sink_position("nats:LEDGER").unwrap(), 6);
        assert_eq!(store.sink_position("nats:OTHER").unwrap(), 0);
        assert_eq!(store.load().unwrap().checkpoint_hash, Some([9; 32]));
        let reader = PgViewStore::connect_read_only(&url).expect("reader");
        assert_eq!(reader.sink_position("nats:LEDGER").unwrap(), 6);
        assert!(reader.save_sink_position("nats:LEDGER", 7).is_err());
    })
    .join()
    .expect("view store thread");
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_endpoints_and_attempts_are_kept_apart_and_pruned() {
    use ledger_projections::ViewStore;
    use ledger_store_postgres::PgViewStore;

    let Some(db) = TestDb::create().await else {
        return;
    };
    let url = db.url.clone();
    std::thread::spawn(move || {
        let store = PgViewStore::connect(&url).expect("view store");
        assert!(store.webhook_endpoints().unwrap().is_empty());
        store.put_webhook_endpoint("e1", Some("{\"v\":1}")).unwrap();
        store.put_webhook_endpoint("e1", Some("{\"v\":2}")).unwrap();
        let docs: Vec<String> = (0..6).map(|i| format!("{{\"a\":{i}}}")).collect();
        for chunk in docs.chunks(2) {
            store.add_webhook_attempts("e1", chunk, 5).unwrap();
        }
        store.clear(None).unwrap();
        drop(store);
        let store = PgViewStore::connect(&url).expect("view store");
        assert_eq!(store.webhook_endpoints().unwrap(), ["{\"v\":2}"]);
        let newest: Vec<u64> = store
            .webhook_attempts("e1", None, 3)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(newest, [6, 5, 4]);
        let rest = store.webhook_attempts("e1", Some(4), 10).unwrap();
        assert_eq!(rest.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(rest[1].1, "{\"a\":1}");
        let reader = PgViewStore::connect_read_only(&url).expect("reader");
        assert_eq!(reader.webhook_endpoints().unwrap().len(), 1);
        assert!(reader.put_webhook_endpoint("e1", None).is_err());
        store.put_webhook_endpoint("e1", None).unwrap();
        store.add_webhook_attempts("e1", &[], 0).unwrap();
        assert!(store.webhook_endpoints().unwrap().is_empty());
        assert!(store.webhook_attempts("e1", None, 10).unwrap().is_empty());
    })
    .join()
    .expect("view store thread");
}
