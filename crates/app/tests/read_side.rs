//! The read side against the real embedded stores: projections built live equal a
//! rebuild from zero, erasures turn views into tombstones that a rebuild never
//! resurrects, revenue and its digest are unchanged by erasures, and search finds
//! an erased customer by id only.

use std::sync::Arc;

use ledger_app::read::ReadSide;
use ledger_app::{demo, Ledger};
use ledger_crypto::{Kek, Keyring, SqliteKeyStore};
use ledger_projections::{RevenueFilter, ViewStore};
use ledger_store::{
    AppendRequest, AppendResult, EventStore, Position, RecordedEvent, StoreError, Version,
};
use ledger_store_sqlite::{SqliteStore, SqliteViewStore};
use ledger_types::RequestId;

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    views_path: std::path::PathBuf,
    data: demo::DemoData,
    summary: demo::DemoSummary,
}

async fn fixture(customers: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(&dir.path().join("events.sqlite")).unwrap());
    let keys = SqliteKeyStore::open(&dir.path().join("keys.sqlite")).unwrap();
    let ledger = Ledger::new(
        store,
        Arc::new(Keyring::new(Kek::generate(), Arc::new(keys))),
    );
    let data = demo::generate(7, customers);
    let summary = demo::load(&ledger, &data).await.unwrap();
    Fixture {
        views_path: dir.path().join("views.sqlite"),
        _dir: dir,
        ledger,
        data,
        summary,
    }
}

/// The same views, revenue (canonical bytes) and erasure receipts.
fn assert_same_model(a: &ReadSide, b: &ReadSide) {
    let all = RevenueFilter::all();
    a.with_model(|a| {
        b.with_model(|b| {
            assert_eq!(a.customers.len(), b.customers.len());
            for v in a.customers.iter() {
                assert_eq!(Some(v), b.customers.get(v.customer_id));
            }
            assert_eq!(
                a.revenue.canonical_bytes(&all),
                b.revenue.canonical_bytes(&all)
            );
            assert_eq!(
                a.erasures.iter().collect::<Vec<_>>(),
                b.erasures.iter().collect::<Vec<_>>()
            );
        })
        .unwrap()
    })
    .unwrap();
}

async fn read_side(f: &Fixture, path: &std::path::Path) -> ReadSide {
    let views: Arc<dyn ViewStore> = Arc::new(SqliteViewStore::open(path).unwrap());
    ReadSide::open(f.ledger.store().clone(), f.ledger.keyring().clone(), views)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn projections_built_live_equal_a_rebuild_from_zero_and_erasure_keeps_revenue() {
    let f = fixture(300).await;
    // Live: the read side follows the log while erasures happen.
    let live = read_side(&f, &f.views_path).await;
    let all = RevenueFilter::all();
    let digest_before = live.revenue(&all).unwrap().digest;
    let erasable = f.summary.samples.erasable.clone();
    assert!(
        erasable.len() >= 3,
        "the demo must offer erasable customers"
    );
    for (b, c) in &erasable {
        f.ledger.anonymize(*b, *c, RequestId::new()).await.unwrap();
        live.catch_up().await.unwrap();
        let r = live.erasure(*c).unwrap().expect("a receipt");
        assert_eq!(r.revenue_digest_before, r.revenue_digest_after);
        let s = live.summary(*b, *c).unwrap();
        assert!(s.view.is_tombstone() && !s.view.holds_personal_data() && s.profile.is_none());
    }
    assert_eq!(live.revenue(&all).unwrap().digest, digest_before);

    // From zero, into a fresh view store.
    let fresh = read_side(&f, &f.views_path.with_file_name("views-fresh.sqlite")).await;
    // And by rebuilding the persisted one in place.
    let reopened = read_side(&f, &f.views_path).await;
    reopened.rebuild(None).await.unwrap();
    for other in [&fresh, &reopened] {
        assert_same_model(&live, other);
    }
    // Tombstones stay tombstones after the rebuild.
    for (b, c) in &erasable {
        let s = reopened.summary(*b, *c).unwrap();
        assert!(s.view.is_tombstone() && s.profile.is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_by_email_and_accent_free_name_prefix_and_an_erased_customer_by_id_only() {
    let f = fixture(200).await;
    let rs = read_side(&f, &f.views_path).await;
    let (b, c) = f.summary.samples.erasable[0];
    let dc = f.data.customers.iter().find(|x| x.id == c).unwrap();
    let ledger_command::CustomerCommand::Register { profile, .. } = &dc.commands[0] else {
        panic!("first command registers")
    };
    assert_eq!(
        rs.search(b, &profile.email.to_uppercase(), 10).unwrap(),
        vec![c]
    );
    let prefix: String = profile.last_name.chars().take(4).collect();
    let folded = ledger_projections::search::normalize_name(&prefix).to_uppercase();
    assert!(
        rs.search(b, &folded, 1000).unwrap().contains(&c),
        "name prefix"
    );
    assert_eq!(rs.search(b, &c.to_string(), 10).unwrap(), vec![c]);
    // Another tenant finds nothing.
    let other = f.data.broadcasters.iter().find(|x| x.id != b).unwrap().id;
    assert!(rs.search(other, &profile.email, 10).unwrap().is_empty());
    assert!(rs.search(other, &c.to_string(), 10).unwrap().is_empty());

    f.ledger.anonymize(b, c, RequestId::new()).await.unwrap();
    rs.catch_up().await.unwrap();
    assert!(rs.search(b, &profile.email, 10).unwrap().is_empty());
    assert!(!rs.search(b, &folded, 1000).unwrap().contains(&c));
    assert_eq!(rs.search(b, &c.to_string(), 10).unwrap(), vec![c]);
}

#[tokio::test(flavor = "multi_thread")]
async fn catching_up_to_a_write_folds_it_and_a_position_already_folded_needs_no_fold() {
    let f = fixture(50).await;
    let rs = read_side(&f, &f.views_path).await;
    let (b, c) = f.summary.samples.erasable[0];
    let receipt = f.ledger.anonymize(b, c, RequestId::new()).await.unwrap();
    let at = receipt.event_position;
    assert!(rs.with_model(|m| m.position()).unwrap() < at);
    // The reader's own write is folded before it reads.
    rs.catch_up_to(at).await.unwrap();
    assert!(rs.with_model(|m| m.position()).unwrap() >= at);
    assert!(rs.erasure(c).unwrap().is_some(), "the receipt is readable");
    // A position the model holds returns without folding what came after it.
    let (b2, c2) = f.summary.samples.erasable[1];
    f.ledger.anonymize(b2, c2, RequestId::new()).await.unwrap();
    rs.catch_up_to(at).await.unwrap();
    assert!(
        rs.erasure(c2).unwrap().is_none(),
        "not folded: not asked for"
    );
    rs.catch_up().await.unwrap();
    assert!(rs.erasure(c2).unwrap().is_some());
}

/// A backend whose `read_all` hands out at most `max` records per call after
/// position `short_from` (full pages before it, so that reading ahead starts), and
/// can leave one position out (a store that does not check contiguity itself).
struct Pages {
    inner: Arc<dyn EventStore>,
    max: usize,
    short_from: Position,
    skip: Option<Position>,
}

#[async_trait::async_trait]
impl EventStore for Pages {
    async fn append(&self, r: AppendRequest) -> Result<AppendResult, StoreError> {
        self.inner.append(r).await
    }
    async fn append_batch(&self, r: Vec<AppendRequest>) -> Result<Vec<AppendResult>, StoreError> {
        self.inner.append_batch(r).await
    }
    async fn read_stream(&self, s: &str, v: Version) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(s, v).await
    }
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = if after >= self.short_from {
            limit.min(self.max)
        } else {
            limit
        };
        let mut page = self.inner.read_all(after, limit).await?;
        page.retain(|r| Some(r.position) != self.skip);
        Ok(page)
    }
    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }
    async fn wait_for_head(
        &self,
        after: Position,
        timeout: std::time::Duration,
    ) -> Result<Position, StoreError> {
        self.inner.wait_for_head(after, timeout).await
    }
}

async fn unindexed(
    f: &Fixture,
    store: Pages,
    file: &str,
) -> Result<ReadSide, ledger_app::AppError> {
    let views: Arc<dyn ViewStore> =
        Arc::new(SqliteViewStore::open(&f.views_path.with_file_name(file)).unwrap());
    let open = ReadSide::open_unindexed(Arc::new(store), f.ledger.keyring().clone(), views);
    tokio::time::timeout(std::time::Duration::from_secs(60), open)
        .await
        .expect("reading the log ends")
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_ahead_over_many_pages_gives_the_same_model_even_when_pages_come_back_short() {
    // About 33,000 events: four pages of 10,000 read ahead.
    let f = fixture(3_000).await;
    assert!(f.summary.events > 30_000, "{}", f.summary.events);
    let reference = read_side(&f, &f.views_path).await;
    for (max, file) in [
        (usize::MAX, "views-full.sqlite"),
        (7_001, "views-short.sqlite"),
    ] {
        let store = Pages {
            inner: f.ledger.store().clone(),
            max,
            short_from: 10_000,
            skip: None,
        };
        let rs = unindexed(&f, store, file).await.unwrap();
        let position = rs.with_model(|m| m.customers.position()).unwrap();
        assert_eq!(position, f.summary.events as u64);
        assert_same_model(&reference, &rs);
        // Without an index, search by id works and by email refuses.
        let (b, c) = f.summary.samples.erasable[0];
        assert_eq!(rs.search(b, &c.to_string(), 10).unwrap(), vec![c]);
        assert!(rs.search(b, "someone@example.com", 10).is_err());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_position_missing_from_the_log_is_an_integrity_error_not_a_hang() {
    let f = fixture(1_500).await;
    for skip in [1, 10_001, 12_345] {
        let store = Pages {
            inner: f.ledger.store().clone(),
            max: usize::MAX,
            short_from: 0,
            skip: Some(skip),
        };
        match unindexed(&f, store, &format!("views-gap-{skip}.sqlite")).await {
            Err(ledger_app::AppError::Store(StoreError::Integrity { position, .. })) => {
                assert_eq!(position, skip)
            }
            other => panic!(
                "expected an integrity error at {skip}, got {:?}",
                other.err()
            ),
        }
    }
}
