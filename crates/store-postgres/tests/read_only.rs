//! Read-only access for the operator's commands beside a running server:
//! `PostgresReader`, `PgKeyStore::connect_read_only` and
//! `PgViewStore::connect_read_only` read what the writer commits while it holds the
//! writer lock, create nothing (no table, no migration), write nothing, say
//! clearly when the database holds no ledger, and reconnect like every session of
//! this crate. The test server and the skip rule are described in `common/mod.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestDb;
use ledger_crypto::{CryptoError, KeyState, KeyStore, WrappedKey};
use ledger_projections::{Changes, Positions, ViewStore, ViewStoreError};
use ledger_store::conformance::fixtures::*;
use ledger_store::{EventStore, StoreError};
use ledger_store_postgres::{PgKeyStore, PgViewStore, PostgresReader};
use ledger_types::{CustomerId, Timestamp};

/// Runs a key or view store call on a blocking thread (they block).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking call")
}

/// A key store and a view store on `url`, read-only or not.
async fn state_stores(url: &str, read_only: bool) -> (Arc<PgKeyStore>, Arc<PgViewStore>) {
    let url = url.to_owned();
    blocking(move || {
        let (keys, views) = if read_only {
            (
                PgKeyStore::connect_read_only(&url),
                PgViewStore::connect_read_only(&url),
            )
        } else {
            (PgKeyStore::connect(&url), PgViewStore::connect(&url))
        };
        (
            Arc::new(keys.expect("key store")),
            Arc::new(views.expect("view store")),
        )
    })
    .await
}

/// No rows, every checkpoint at `p`.
fn at(p: u64) -> Changes {
    Changes {
        positions: Positions {
            customers: p,
            revenue: p,
            erasures: p,
        },
        log_hash: None,
        ..Changes::default()
    }
}

/// The tables of the test database's `public` schema.
async fn tables(db: &TestDb) -> Vec<String> {
    db.raw()
        .await
        .query(
            "SELECT relname::text FROM pg_class
             WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')
             ORDER BY 1",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_work_beside_the_writer_and_write_nothing() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    // The server's stores: the writer (holding the writer lock), keys and views.
    let writer = db.store().await;
    fill(writer.as_ref()).await;
    let (keys, views) = state_stores(&db.url, false).await;
    let (kept, gone) = (CustomerId::new(), CustomerId::new());
    let wrapped = WrappedKey::from_stored(vec![9u8; 60]);
    let (keys, views) = blocking(move || {
        keys.insert_new(&[(kept, wrapped.clone()), (gone, wrapped)])
            .unwrap();
        keys.destroy(&[gone], Timestamp::now()).unwrap();
        views.save(&at(30)).unwrap();
        (keys, views)
    })
    .await;
    let before = tables(&db).await;

    // The read-only stores open beside them.
    let reader = Arc::new(PostgresReader::connect(&db.url).await.expect("reader"));
    assert_eq!(reader.head().await.unwrap(), 30);
    let all = reader.read_all(0, 100).await.unwrap();
    assert_eq!(all, writer.read_all(0, 100).await.unwrap());
    verify_log(&all);
    assert_eq!(reader.read_stream("s-1", 1).await.unwrap().len(), 10);
    assert!(matches!(
        reader.append(req("s-1", vec![event(99)])).await,
        Err(StoreError::Invalid(m)) if m.contains("read-only")
    ));
    assert!(matches!(
        reader.append_batch(vec![req("s-9", vec![event(98)])]).await,
        Err(StoreError::Invalid(_))
    ));
    // It sees what the writer commits after it opened.
    let waiting = {
        let reader = reader.clone();
        tokio::spawn(async move { reader.wait_for_head(30, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer.append(req("s-1", vec![event(31)])).await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 31);
    assert_eq!(
        reader
            .wait_for_head(31, Duration::from_millis(120))
            .await
            .unwrap(),
        31,
        "nothing new: the head after the timeout"
    );

    let url = db.url.clone();
    blocking(move || {
        let rk = PgKeyStore::connect_read_only(&url).expect("read-only key store");
        assert!(matches!(rk.get(kept).unwrap(), KeyState::Active(_)));
        assert!(matches!(rk.get(gone).unwrap(), KeyState::Destroyed { .. }));
        assert_eq!(rk.active_ids().unwrap(), vec![kept]);
        assert_eq!(rk.destroyed_ids().unwrap(), vec![gone]);
        let w = WrappedKey::from_stored(vec![1u8; 60]);
        assert!(matches!(
            rk.insert_new(&[(CustomerId::new(), w)]),
            Err(CryptoError::Store(m)) if m.contains("read-only")
        ));
        assert!(matches!(
            rk.destroy(&[kept], Timestamp::now()),
            Err(CryptoError::Store(_))
        ));
        assert!(matches!(
            rk.rewrap_all(Box::new(|_, w| Ok(w.clone()))),
            Err(CryptoError::Store(_))
        ));
        assert!(matches!(rk.get(kept).unwrap(), KeyState::Active(_)));

        let rv = PgViewStore::connect_read_only(&url).expect("read-only view store");
        assert_eq!(rv.load().unwrap().position(), 30);
        assert!(matches!(
            rv.save(&at(31)),
            Err(ViewStoreError::Backend(m)) if m.contains("read-only")
        ));
        assert!(matches!(rv.clear(None), Err(ViewStoreError::Backend(_))));
    })
    .await;
    assert_eq!(tables(&db).await, before, "no table created");
    drop((keys, views));
    writer.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_database_is_refused_clearly_and_nothing_is_created() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let e = PostgresReader::connect(&db.url)
        .await
        .expect_err("no event store");
    let msg = e.to_string();
    assert!(msg.contains("no ledger event store"), "{msg}");
    assert!(msg.contains(&db.name), "names the database: {msg}");
    // A reader made without the check says the same on its first read.
    let lazy = PostgresReader::new(&db.url).unwrap();
    let e = lazy.read_all(0, 10).await.expect_err("no event store");
    assert!(e.to_string().contains("no ledger event store"), "{e}");
    let url = db.url.clone();
    blocking(move || {
        let e = PgKeyStore::connect_read_only(&url).expect_err("no key store");
        assert!(
            matches!(&e, CryptoError::Store(m) if m.contains("no ledger key store")),
            "{e}"
        );
        // Missing views load as empty views (the log is folded from zero).
        let views = PgViewStore::connect_read_only(&url).expect("views");
        assert_eq!(views.load().unwrap().position(), 0);
    })
    .await;
    assert_eq!(tables(&db).await, Vec::<String>::new(), "nothing created");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_refuses_a_newer_schema() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    db.store().await.close().await;
    db.exec("UPDATE schema_meta SET value = 99 WHERE key = 'schema_version'")
        .await;
    match PostgresReader::connect(&db.url).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a schema version error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_sessions_reconnect_after_being_killed() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let writer = db.store().await;
    fill(writer.as_ref()).await;
    let (keys, views) = state_stores(&db.url, false).await;
    let reader = PostgresReader::connect(&db.url).await.unwrap();
    let (rk, rv) = state_stores(&db.url, true).await;
    for round in 0..3 {
        assert_eq!(reader.head().await.unwrap(), 30, "round {round}");
        assert_eq!(reader.read_all(0, 100).await.unwrap().len(), 30);
        let (k, v) = (rk.clone(), rv.clone());
        blocking(move || {
            assert!(matches!(
                k.get(CustomerId::new()).unwrap(),
                KeyState::Missing
            ));
            v.load().unwrap();
        })
        .await;
        assert!(db.kill_sessions().await > 0);
        // Let the drivers notice the loss while idle.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((keys, views));
    writer.close().await;
}
