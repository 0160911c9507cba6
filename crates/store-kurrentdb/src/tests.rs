//! The store against the in-memory emulation of KurrentDB (`fake.rs`): the whole
//! conformance suite, recovery at start, lost answers, foreign writers and
//! tampering. No server needed.

use std::sync::Arc;
use std::time::Duration;

use ledger_store::{
    AppendRequest, EventStore, ExpectedVersion, NewEvent, StoreError, Subscription,
};
use ledger_types::{EventId, Timestamp};

use crate::backend::{Backend, RawNew};
use crate::fake::{FakeKurrent, Fault};
use crate::{KurrentOptions, KurrentStore};

async fn open_on(fake: &Arc<FakeKurrent>) -> KurrentStore {
    KurrentStore::open(fake.clone() as Arc<dyn Backend>, KurrentOptions::default())
        .await
        .expect("open on the fake")
}

async fn fresh() -> Arc<dyn EventStore> {
    Arc::new(open_on(&FakeKurrent::new()).await)
}

mod conformance_on_fake {
    ledger_store::conformance_tests!(|| async { Some((super::fresh().await, ())) });
}

fn ev(n: i64) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        event_type: "T".into(),
        schema_version: 1,
        payload: n.to_be_bytes().to_vec(),
        recorded_at: Timestamp::from_millis(n),
    }
}

fn req(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream.into(),
        expected,
        events,
    }
}

async fn log_of(store: &KurrentStore) -> Vec<ledger_store::RecordedEvent> {
    store.read_all(0, 1_000_000).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_recovers_head_chains_streams_and_ids() {
    let fake = FakeKurrent::new();
    let store = open_on(&fake).await;
    let first = req("a", ExpectedVersion::NoStream, vec![ev(1), ev(2)]);
    let r1 = store.append(first.clone()).await.unwrap();
    for i in 0..20 {
        store
            .append(req(
                &format!("s-{}", i % 3),
                ExpectedVersion::Any,
                vec![ev(i)],
            ))
            .await
            .unwrap();
    }
    let before = log_of(&store).await;
    drop(store);

    let store = open_on(&fake).await;
    assert_eq!(store.head().await.unwrap(), 22);
    assert!(log_of(&store).await == before);
    // The event-id index came back: a retry is a duplicate with its positions.
    let again = store.append(first).await.unwrap();
    assert_eq!(
        again,
        ledger_store::AppendResult {
            duplicate: true,
            ..r1
        }
    );
    // The stream heads came back: versions and chains continue.
    let r = store
        .append(req("a", ExpectedVersion::Exact(2), vec![ev(99)]))
        .await
        .unwrap();
    assert_eq!((r.first_position, r.stream_version), (23, 3));
    let a = store.read_stream("a", 1).await.unwrap();
    assert_eq!(a.len(), 3);
    let all = log_of(&store).await;
    assert_eq!(all.len(), 23);
    assert!(all[..22] == before[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_recovered_and_the_retry_is_a_duplicate() {
    let fake = FakeKurrent::new();
    let store = open_on(&fake).await;
    store
        .append(req("a", ExpectedVersion::NoStream, vec![ev(1)]))
        .await
        .unwrap();
    let request = req("a", ExpectedVersion::Exact(1), vec![ev(2), ev(3)]);
    fake.inject(Fault::WriteThenFail);
    let e = store.append(request.clone()).await.unwrap_err();
    assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
    // The writer caught up with what the server stored.
    assert_eq!(store.head().await.unwrap(), 3);
    let retry = store.append(request).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.first_position, retry.last_position), (2, 3));
    assert_eq!(log_of(&store).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_writes_nothing_and_the_store_goes_on() {
    let fake = FakeKurrent::new();
    let store = open_on(&fake).await;
    fake.inject(Fault::Fail);
    let e = store
        .append(req("a", ExpectedVersion::Any, vec![ev(1)]))
        .await
        .unwrap_err();
    match e {
        StoreError::Backend(m) => assert!(m.starts_with("kurrentdb: server error"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.head().await.unwrap(), 0);
    let r = store
        .append(req("a", ExpectedVersion::NoStream, vec![ev(2)]))
        .await
        .unwrap();
    assert_eq!(r.first_position, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_midway_is_completed_by_its_retry() {
    let fake = FakeKurrent::new();
    let store = open_on(&fake).await;
    let batch = vec![
        req("a", ExpectedVersion::NoStream, vec![ev(1), ev(2)]),
        req("b", ExpectedVersion::NoStream, vec![ev(3)]),
    ];
    // The first stream's append succeeds, the second fails.
    fake.inject_after_one(Fault::Fail);
    let e = store.append_batch(batch.clone()).await.unwrap_err();
    match e {
        StoreError::Backend(m) => assert!(m.contains("partly written"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.head().await.unwrap(), 2);
    let rs = store.append_batch(batch).await.unwrap();
    assert!(rs[0].duplicate && !rs[1].duplicate);
    assert_eq!(rs[1].first_position, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_follows_the_writer() {
    let fake = FakeKurrent::new();
    let writer = open_on(&fake).await;
    writer
        .append(req("a", ExpectedVersion::Any, vec![ev(1)]))
        .await
        .unwrap();
    let reader: Arc<dyn EventStore> = Arc::new(open_on(&fake).await);
    assert_eq!(reader.head().await.unwrap(), 1);
    let mut sub = Subscription::new(reader.clone(), 0);
    assert_eq!(sub.next().await.unwrap().position, 1);
    writer
        .append(req("b", ExpectedVersion::Any, vec![ev(2), ev(3)]))
        .await
        .unwrap();
    let h = reader
        .wait_for_head(1, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(h >= 2, "the follower saw the other process's append");
    let e2 = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    let e3 = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e2.position, e3.position), (2, 3));
    // Taking turns (not racing) keeps one log: the reader may write next.
    let r = reader
        .append(req("b", ExpectedVersion::Exact(2), vec![ev(4)]))
        .await
        .unwrap();
    assert_eq!(r.first_position, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_position_fence_the_store() {
    let fake = FakeKurrent::new();
    let store = open_on(&fake).await;
    store
        .append(req("a", ExpectedVersion::Any, vec![ev(1)]))
        .await
        .unwrap();
    // A rogue process that did not see position 2 being taken writes its own
    // position 1 to another stream (a copy of a record at position 1).
    let rogue = log_of(&store).await[0].clone();
    let mut forged = rogue.clone();
    forged.event_id = EventId::new();
    forged.stream = "z".into();
    let raw = crate::mapping::encode("ledger", uuid::Uuid::new_v4(), &forged);
    fake.raw_append("ledger-z", vec![raw]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.fenced().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(store.fenced().is_some(), "the collision was detected");
    let e = store
        .append(req("a", ExpectedVersion::Any, vec![ev(2)]))
        .await
        .unwrap_err();
    match e {
        StoreError::Backend(m) => assert!(m.contains("two writers"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_revision_race_is_a_conflict_or_a_replan() {
    let fake = FakeKurrent::new();
    let store = open_on(&fake).await;
    store
        .append(req("a", ExpectedVersion::Any, vec![ev(1)]))
        .await
        .unwrap();
    // Something not written by the ledger lands in the stream: the server refuses
    // the writer's exact revision, the writer re-reads, and the append fails
    // loudly instead of forking the stream.
    fake.raw_append(
        "ledger-a",
        vec![RawNew {
            id: uuid::Uuid::new_v4(),
            event_type: "Intruder".into(),
            data: vec![],
            metadata: vec![],
        }],
    );
    let e = store
        .append(req("a", ExpectedVersion::Exact(1), vec![ev(2)]))
        .await
        .unwrap_err();
    match e {
        StoreError::Conflict {
            stream,
            expected,
            actual,
        } => {
            assert_eq!(stream, "a");
            assert_eq!(expected, ExpectedVersion::Exact(1));
            assert_eq!(actual, 2, "the server's revision 1 is our version 2");
        }
        other => panic!("{other:?}"),
    }
    // Reading the stream shows the intrusion.
    assert!(matches!(
        store.read_stream("a", 1).await,
        Err(StoreError::Integrity { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_on_read_and_at_start() {
    let fake = FakeKurrent::new();
    let store = open_on(&fake).await;
    store
        .append(req("a", ExpectedVersion::Any, vec![ev(1), ev(2), ev(3)]))
        .await
        .unwrap();
    let victim = log_of(&store).await[1].event_id;
    fake.tamper(*victim.as_uuid());
    assert!(matches!(
        store.read_all(0, 10).await,
        Err(StoreError::Integrity { position: 2, .. })
    ));
    assert!(matches!(
        store.read_stream("a", 1).await,
        Err(StoreError::Integrity { position: 2, .. })
    ));
    drop(store);
    match KurrentStore::open(fake.clone() as Arc<dyn Backend>, KurrentOptions::default()).await {
        Err(StoreError::Integrity { position: 2, .. }) => {}
        other => panic!("a tampered log must not open: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_separate_ledgers_on_one_cluster() {
    let fake = FakeKurrent::new();
    let a = open_on(&fake).await;
    let b = KurrentStore::open(
        fake.clone() as Arc<dyn Backend>,
        KurrentOptions {
            namespace: "other".into(),
            ..KurrentOptions::default()
        },
    )
    .await
    .unwrap();
    a.append(req("s", ExpectedVersion::NoStream, vec![ev(1)]))
        .await
        .unwrap();
    let r = b
        .append(req("s", ExpectedVersion::NoStream, vec![ev(2)]))
        .await
        .unwrap();
    assert_eq!(r.first_position, 1);
    assert_eq!(log_of(&a).await.len(), 1);
    assert_eq!(log_of(&b).await.len(), 1);
    assert_eq!(b.namespace(), "other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_appends_and_dollar_types_are_invalid() {
    let store = open_on(&FakeKurrent::new()).await;
    let mut big = ev(1);
    big.payload = vec![0; crate::DEFAULT_MAX_APPEND_BYTES];
    assert!(matches!(
        store
            .append(req("a", ExpectedVersion::Any, vec![big]))
            .await,
        Err(StoreError::Invalid(_))
    ));
    let mut system = ev(2);
    system.event_type = "$metadata".into();
    assert!(matches!(
        store
            .append(req("a", ExpectedVersion::Any, vec![system]))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.head().await.unwrap(), 0);
}

#[tokio::test]
async fn connect_refuses_other_urls_without_echoing_them() {
    for url in [
        "postgres://u:secret@h/db",
        "http://admin:secret@node:2113",
        "sqlite:./x",
    ] {
        match crate::connect(url).await {
            Err(StoreError::Invalid(m)) => assert!(!m.contains("secret"), "{m}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    match crate::connect("esdb://admin:secret@").await {
        Err(StoreError::Invalid(m)) => assert!(!m.contains("secret"), "{m}"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("an empty host list must not parse"),
    }
    assert!(crate::is_kurrentdb_url("esdb://localhost:2113?tls=false"));
    assert!(crate::is_kurrentdb_url("kurrentdb+discover://cluster:2113"));
    assert!(!crate::is_kurrentdb_url("postgres://localhost"));
}
