//! Reading the log from a replica (`PostgresOptions::read_replica`,
//! `PostgresReader::connect_with_replica`): a page comes from the replica only when
//! the primary holds the same record at its last position; a lagging replica, one
//! that diverged (as one following a dead primary does until it is rewound) or one
//! that is unreachable never shows a record the primary lacks. Appends past the
//! writer's head are never shown either.
//!
//! A second database on the test server plays the replica: it is written through a
//! store of its own with the same requests as the primary (identical records and
//! hashes: the requests carry their ids and times), then with different ones. The
//! test server and the skip rule are described in `common/mod.rs`.

mod common;

use common::TestDb;
use ledger_store::conformance::fixtures::*;
use ledger_store::{AppendRequest, EventStore, RecordedEvent};
use ledger_store_postgres::{PostgresOptions, PostgresReader, PostgresStore, ReplicaReads};

async fn append_all(store: &PostgresStore, requests: &[AppendRequest]) {
    for r in requests {
        store.append(r.clone()).await.expect("append");
    }
}

/// Everything `store` shows from position 0, page by page.
async fn read_everything(store: &dyn EventStore, page: usize) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.position);
        let got = store.read_all(after, page).await.expect("read_all");
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// The primary's log, read without a replica.
async fn truth(db: &TestDb) -> Vec<RecordedEvent> {
    let reader = PostgresReader::connect(&db.url).await.expect("reader");
    read_everything(&reader, 1000).await
}

fn requests(n: u64, tag: u64) -> Vec<AppendRequest> {
    (0..n)
        .map(|i| req(&format!("s-{}", i % 3), vec![event(tag * 1000 + i)]))
        .collect()
}

fn reads(from_replica: u64, from_primary: u64) -> Option<ReplicaReads> {
    Some(ReplicaReads {
        from_replica,
        from_primary,
    })
}

#[tokio::test]
async fn pages_come_from_the_replica_only_where_the_primary_holds_the_same_log() {
    let (Some(primary_db), Some(replica_db)) = (TestDb::create().await, TestDb::create().await)
    else {
        return;
    };
    let log = requests(10, 1);
    // The replica has the first 6 records of the primary's log (it lags).
    let replica_writer = PostgresStore::connect(&replica_db.url)
        .await
        .expect("replica");
    append_all(&replica_writer, &log[..6]).await;
    let options = PostgresOptions {
        read_replica: Some(replica_db.url.clone()),
        ..PostgresOptions::default()
    };
    let primary = PostgresStore::connect_with(&primary_db.url, options)
        .await
        .expect("primary");
    append_all(&primary, &log).await;
    let truth = truth(&primary_db).await;
    assert_eq!(truth.len(), 10);

    // 1-6 from the replica, confirmed; 7-10 from the primary (the replica has none).
    let first = primary.read_all(0, 100).await.unwrap();
    assert_eq!(first, truth[..6]);
    assert_eq!(primary.replica_reads(), reads(1, 0));
    let rest = primary.read_all(6, 100).await.unwrap();
    assert_eq!(rest, truth[6..]);
    assert_eq!(primary.replica_reads(), reads(1, 1));

    // The replica now holds different records at 7-9 (it followed another
    // primary): never shown, the primary serves them.
    append_all(&replica_writer, &requests(3, 2)).await;
    assert_eq!(primary.read_all(6, 100).await.unwrap(), truth[6..]);
    assert_eq!(primary.replica_reads(), reads(1, 2));
    // Short pages within the common prefix still come from the replica.
    assert_eq!(primary.read_all(2, 3).await.unwrap(), truth[2..5]);
    assert_eq!(primary.replica_reads(), reads(2, 2));
    assert_eq!(read_everything(&primary, 4).await, truth);

    // The operator's read-only reader (the audit's replay) does the same.
    let reader = PostgresReader::connect_with_replica(&primary_db.url, &replica_db.url)
        .await
        .expect("reader");
    assert_eq!(read_everything(&reader, 4).await, truth);
    let served = reader.replica_reads().unwrap();
    assert!(
        served.from_replica >= 1 && served.from_primary >= 1,
        "{served:?}"
    );

    // An unreachable replica costs load on the primary, not a failed read.
    replica_writer.close().await;
    drop(replica_writer);
    let gone = replica_db.name.clone();
    drop(replica_db);
    let reader_before = primary.replica_reads().unwrap();
    assert_eq!(
        read_everything(&primary, 4).await,
        truth,
        "replica {gone} dropped"
    );
    let after = primary.replica_reads().unwrap();
    assert!(after.from_primary > reader_before.from_primary);
    assert_eq!(after.from_replica, reader_before.from_replica);
    primary.close().await;
}

#[tokio::test]
async fn a_replica_ahead_of_the_writers_head_shows_nothing_past_it() {
    let (Some(primary_db), Some(replica_db)) = (TestDb::create().await, TestDb::create().await)
    else {
        return;
    };
    let log = requests(8, 3);
    // The "replica" holds all 8 records; the primary only 5 (as a replica that got
    // WAL the promoted standby never had).
    let replica_writer = PostgresStore::connect(&replica_db.url)
        .await
        .expect("replica");
    append_all(&replica_writer, &log).await;
    let options = PostgresOptions {
        read_replica: Some(replica_db.url.clone()),
        ..PostgresOptions::default()
    };
    let primary = PostgresStore::connect_with(&primary_db.url, options)
        .await
        .expect("primary");
    append_all(&primary, &log[..5]).await;
    let shown = read_everything(&primary, 100).await;
    assert_eq!(shown.len(), 5, "nothing past the primary's head");
    assert_eq!(shown, truth(&primary_db).await);
    // The page was capped at the head before the replica was asked, so it came
    // from the replica and was confirmed.
    assert_eq!(primary.replica_reads(), reads(1, 0));

    // The reader has no writer head: the primary's confirmation alone keeps the
    // replica's extra records out.
    let reader = PostgresReader::connect_with_replica(&primary_db.url, &replica_db.url)
        .await
        .expect("reader");
    assert_eq!(read_everything(&reader, 100).await, shown);
    replica_writer.close().await;
    primary.close().await;
}
