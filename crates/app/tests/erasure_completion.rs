//! "Never half erased while running": an erasure, once its `CustomerAnonymized` is
//! committed, destroys the data key even if the caller stops waiting (a client
//! that disconnects, a request timeout), and the running reconciler finishes any
//! destruction the key store failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ledger_app::{demo, Ledger};
use ledger_crypto::{KeyState, Keyring, SqliteKeyStore};
use ledger_store::{
    AppendRequest, AppendResult, EventStore, Position, RecordedEvent, StoreError, Version,
};
use ledger_store_sqlite::SqliteStore;
use ledger_types::RequestId;

/// The real store, except that the append of a `CustomerAnonymized` answers
/// 300 ms after it committed: the erasure is decided, and the caller has time to
/// give up before the key is destroyed.
#[derive(Debug)]
struct SlowAfterDecision {
    inner: Arc<SqliteStore>,
    decided: AtomicBool,
}

#[async_trait]
impl EventStore for SlowAfterDecision {
    async fn append(&self, r: AppendRequest) -> Result<AppendResult, StoreError> {
        let erasure = r
            .events
            .iter()
            .any(|e| e.event_type == "CustomerAnonymized");
        let out = self.inner.append(r).await;
        if erasure && out.is_ok() {
            self.decided.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        out
    }
    async fn append_batch(&self, r: Vec<AppendRequest>) -> Result<Vec<AppendResult>, StoreError> {
        self.inner.append_batch(r).await
    }
    async fn read_stream(&self, s: &str, v: Version) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(s, v).await
    }
    async fn read_all(&self, a: Position, l: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(a, l).await
    }
    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }
    async fn wait_for_head(&self, a: Position, t: Duration) -> Result<Position, StoreError> {
        self.inner.wait_for_head(a, t).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_whose_caller_gives_up_after_the_decision_still_destroys_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(SqliteStore::open(&dir.path().join("events.sqlite")).unwrap());
    let store = Arc::new(SlowAfterDecision {
        inner,
        decided: AtomicBool::new(false),
    });
    let keys = SqliteKeyStore::open(&dir.path().join("keys.sqlite")).unwrap();
    let keyring = Arc::new(Keyring::new(ledger_crypto::Kek::generate(), Arc::new(keys)));
    let ledger = Ledger::new(store.clone(), keyring.clone());
    let data = demo::generate(11, 60);
    let summary = demo::load(&ledger, &data).await.unwrap();
    let (b, c) = summary.samples.erasable[0];
    assert!(matches!(keyring.state(c).unwrap(), KeyState::Active(_)));

    // The caller waits 100 ms and gives up (like a client that resets the
    // connection): the decision is committed by then, the destruction is not.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        ledger.anonymize(b, c, RequestId::new()),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the caller gave up before the erasure finished"
    );
    assert!(
        store.decided.load(Ordering::SeqCst),
        "the decision is committed"
    );

    let started = Instant::now();
    // The key goes, and the erasure is no longer pending.
    while matches!(keyring.state(c).unwrap(), KeyState::Active(_))
        || ledger.shredder().pending().count > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the key of an erasure whose caller gave up is still alive after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        keyring.state(c).unwrap(),
        KeyState::Destroyed { .. }
    ));
}
