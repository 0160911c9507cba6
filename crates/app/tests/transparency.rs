//! The tree over the log, as the server keeps it: built from the log at start,
//! following new commits, signing heads by the policy, answering proofs that check
//! against those heads; receipts that verify offline and refuse any flipped bit; a
//! log cut back under a recorded head refused at start.

use std::sync::Arc;
use std::time::Duration;

use ledger_app::health::Health;
use ledger_app::transparency::{
    record_leaf_hash, verify_receipt, HeadSigner, SigningPolicy, TransparencyError, TransparencyLog,
};
use ledger_app::{demo, Ledger};
use ledger_crypto::{Kek, Keyring, SqliteKeyStore};
use ledger_merkle::MerkleTree;
use ledger_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use ledger_store_sqlite::SqliteStore;
use ledger_types::{EventId, RequestId, Timestamp};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<dyn EventStore>,
    ledger: Ledger,
    summary: demo::DemoSummary,
}

async fn fixture(customers: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(&path.join("events.sqlite")).unwrap());
    let keys = SqliteKeyStore::open(&path.join("keys.sqlite")).unwrap();
    let keyring = Arc::new(Keyring::new(Kek::generate(), Arc::new(keys)));
    let ledger = Ledger::new(store.clone(), keyring);
    let summary = demo::load(&ledger, &demo::generate(5, customers))
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        path,
        store,
        ledger,
        summary,
    }
}

/// The tree rebuilt independently from every record of the log.
async fn reference_tree(store: &Arc<dyn EventStore>) -> MerkleTree {
    let mut tree = MerkleTree::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        tree.extend(page.iter().map(record_leaf_hash));
    }
    tree
}

async fn append_some(store: &Arc<dyn EventStore>, stream: &str, n: usize) {
    for i in 0..n {
        store
            .append(AppendRequest {
                stream: stream.into(),
                expected: ExpectedVersion::Exact(i as u64),
                events: vec![NewEvent {
                    event_id: EventId::new(),
                    event_type: "TestEvent".into(),
                    schema_version: 1,
                    payload: format!("{{\"i\":{i}}}").into_bytes(),
                    recorded_at: Timestamp::now(),
                }],
            })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_builds_the_tree_from_the_log_then_follows_commits_and_signs_by_the_policy() {
    let f = fixture(30).await;
    let signer = HeadSigner::generate();
    let key = signer.public_key();
    let policy = SigningPolicy {
        every_events: 5,
        every: Duration::from_secs(3600),
        ..SigningPolicy::default()
    };
    let log = Arc::new(
        TransparencyLog::open(f.store.clone(), signer, policy, None)
            .await
            .unwrap(),
    );
    let start = f.store.head().await.unwrap();
    assert_eq!(log.size(), start);
    let reference = reference_tree(&f.store).await;
    let mut expected_head = reference.head();

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let health = Arc::new(Health::new());
    let follower = {
        let (log, health) = (log.clone(), health.clone());
        tokio::spawn(async move {
            log.follow(
                async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                },
                &health,
            )
            .await
        })
    };
    // The first head is signed at once, over the whole log.
    let first = wait_for_latest(&log, start).await;
    assert_eq!(first.verify(&key).unwrap(), expected_head);

    // 3 records: fewer than the policy's 5, no new head; 2 more make 5: a head.
    append_some(&f.store, "test-a", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(log.latest().unwrap().size, start);
    append_some(&f.store, "test-b", 2).await;
    let second = wait_for_latest(&log, start + 5).await;
    let reference = reference_tree(&f.store).await;
    expected_head = reference.head();
    assert_eq!(second.verify(&key).unwrap(), expected_head);

    // Proofs against the signed heads, for old and new records.
    for position in [1, start / 2, start, start + 1, start + 5] {
        let i = log.inclusion(position, None).await.unwrap();
        assert_eq!(i.proof.tree_size, second.size);
        assert_eq!(i.leaf_hash, reference.leaf(position - 1).unwrap());
        i.proof.verify(&i.leaf_hash, &second.head()).unwrap();
    }
    let c = log.consistency(first.size, None).await.unwrap();
    c.verify(&first.head(), &second.head()).unwrap();
    // A head for a past size, signed now, has that size's root.
    let past = log.signed_head_at(start / 2).await.unwrap();
    assert_eq!(
        past.verify(&key).unwrap(),
        reference.tree_head(start / 2).unwrap()
    );
    // Requests the tree cannot answer.
    assert!(matches!(
        log.signed_head_at(start + 100).await,
        Err(TransparencyError::SizeBeyondTree { .. })
    ));
    assert!(matches!(
        log.consistency(0, None).await,
        Err(TransparencyError::NoSuchProof(_))
    ));
    assert!(matches!(
        log.inclusion(start + 6, Some(start + 5)).await,
        Err(TransparencyError::NoSuchProof(_))
    ));
    let _ = stop_tx.send(true);
    follower.await.unwrap();
}

async fn wait_for_latest(
    log: &TransparencyLog,
    size: u64,
) -> ledger_app::transparency::SignedTreeHead {
    for _ in 0..200 {
        if let Some(l) = log.latest().filter(|l| l.size >= size) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no head of size {size} signed in time");
}

fn flip_hex(s: &str, at: usize) -> String {
    let mut b: Vec<u8> = s.bytes().collect();
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_proof_verifies_offline_and_any_flipped_bit_is_refused() {
    let f = fixture(40).await;
    let signer = HeadSigner::generate();
    let key = signer.public_key();
    let log = TransparencyLog::open(f.store.clone(), signer, SigningPolicy::default(), None)
        .await
        .unwrap();
    let (b, c) = f.summary.samples.erasable[0];
    let receipt = f.ledger.anonymize(b, c, RequestId::new()).await.unwrap();
    let proof = log.receipt_proof(receipt.event_position).await.unwrap();
    // The receipt as the API serves it: its fields and the proof's.
    let mut doc = serde_json::to_value(&receipt).unwrap();
    for (k, v) in serde_json::to_value(&proof).unwrap().as_object().unwrap() {
        doc[k] = v.clone();
    }
    let v = verify_receipt(&doc, &key);
    assert!(v.ok, "{v:?}");
    assert_eq!(v.checks.len(), 6);
    assert_eq!(v.tree_size, Some(receipt.event_position));

    let other = HeadSigner::generate().public_key();
    assert_eq!(
        verify_receipt(&doc, &other).problems[0].code,
        "BAD_SIGNATURE"
    );
    let refused = |edit: &dyn Fn(&mut serde_json::Value), code: &str| {
        let mut d = doc.clone();
        edit(&mut d);
        let v = verify_receipt(&d, &key);
        assert!(!v.ok);
        assert_eq!(v.problems.len(), 1, "{v:?}");
        assert_eq!(v.problems[0].code, code, "{v:?}");
    };
    refused(
        &|d| {
            let h = d["inclusion_proof"][0].as_str().unwrap().to_owned();
            d["inclusion_proof"][0] = flip_hex(&h, 10).into();
        },
        "NOT_INCLUDED",
    );
    refused(
        &|d| {
            let h = d["signed_tree_head"]["root_hash"]
                .as_str()
                .unwrap()
                .to_owned();
            d["signed_tree_head"]["root_hash"] = flip_hex(&h, 63).into();
        },
        "BAD_SIGNATURE",
    );
    refused(
        &|d| {
            let h = d["signed_tree_head"]["signature"]
                .as_str()
                .unwrap()
                .to_owned();
            d["signed_tree_head"]["signature"] = flip_hex(&h, 5).into();
        },
        "BAD_SIGNATURE",
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let leaf = b64.decode(doc["leaf_data"].as_str().unwrap()).unwrap();
    // A flipped bit in the payload's last byte (inside the JSON: still parses as a
    // record, but is not the leaf under the root).
    let mut flipped = leaf.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0x01;
    refused(
        &|d| d["leaf_data"] = b64.encode(&flipped).into(),
        "LEAF_MISMATCH",
    );
    // The leaf of another record (same customer's stream, earlier position).
    refused(
        &|d| d["event_position"] = (receipt.event_position - 1).into(),
        "LEAF_MISMATCH",
    );
    refused(
        &|d| d["tree_size"] = (receipt.event_position + 1).into(),
        "HEAD_SIZE_MISMATCH",
    );
    refused(
        &|d| {
            d.as_object_mut().unwrap().remove("inclusion_proof");
        },
        "RECEIPT_WITHOUT_PROOF",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_back_under_a_recorded_head_is_refused_at_start() {
    let f = fixture(20).await;
    let heads = f.path.join("tree-heads.jsonl");
    let signer_file = f.path.join("signing-key.hex");
    let (signer, _) = HeadSigner::load_or_create(&signer_file).unwrap();
    let log = TransparencyLog::open(
        f.store.clone(),
        signer,
        SigningPolicy::default(),
        Some(heads.clone()),
    )
    .await
    .unwrap();
    let signed = log.sign_now().unwrap();
    let size = signed.size;
    drop(log);
    // The same log reopens fine against its recorded head.
    let (signer, _) = HeadSigner::load_or_create(&signer_file).unwrap();
    TransparencyLog::open(
        f.store.clone(),
        signer,
        SigningPolicy::default(),
        Some(heads.clone()),
    )
    .await
    .unwrap();
    // Cut the log back by three records.
    drop(f.ledger);
    let store = f.store;
    drop(store);
    let conn = rusqlite::Connection::open(f.path.join("events.sqlite")).unwrap();
    conn.execute("DELETE FROM events WHERE position > ?1", [size as i64 - 3])
        .unwrap();
    drop(conn);
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(&f.path.join("events.sqlite")).unwrap());
    let (signer, _) = HeadSigner::load_or_create(&signer_file).unwrap();
    let err = TransparencyLog::open(store, signer, SigningPolicy::default(), Some(heads))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransparencyError::HeadNotInLog { size: s, .. } if s == size),
        "{err}"
    );
}
