//! The conformance suite every event store backend runs against itself.
//!
//! Each `check_*` function takes a fresh, empty store and panics with a message that
//! names the broken guarantee. A backend either calls [`run_all`] with a factory, or
//! runs every check as its own test with [`conformance_tests!`](crate::conformance_tests)
//! so a failure points at one rule; both take the list of checks from
//! [`for_each_check!`](crate::for_each_check), the one place that names them:
//!
//! ```text
//! ledger_store::conformance_tests!(|| async {
//!     let (store, dir) = open_temp_store();
//!     Some((store, dir)) // None: the backend's server is missing; the test is skipped
//! });
//! ```
//!
//! The checks only use the [`EventStore`] trait and [`Subscription`]; they assume a
//! multi-threaded tokio runtime (they spawn concurrent writers). This module is test
//! support: it panics by design and must never be called on a production store.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_types::{EventId, Timestamp};

use crate::chain::{log_link_ok, stream_link_ok};
use crate::{
    AppendRequest, AppendResult, EventStore, ExpectedVersion, Hash32, NewEvent, Position,
    RecordedEvent, StoreError, Subscription, ZERO_HASH,
};

/// Invokes `CALLBACK! { [EXTRA] check_a, check_b, ... }` with every check of the
/// suite: the one list that [`run_all`] and
/// [`conformance_tests!`](crate::conformance_tests) share.
#[macro_export]
macro_rules! for_each_check {
    ([$($callback:tt)*] $($extra:tt)*) => {
        $($callback)*! { [$($extra)*]
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
            check_large_batch_round_trips
        }
    };
}

/// One `#[tokio::test]` per check. `$make` is a closure returning a future of
/// `Option<(Arc<dyn EventStore>, G)>`: a fresh empty store and a guard kept alive
/// for the test (a temp dir, a scratch database), or `None` when the backend's
/// server is unavailable (the closure prints the one `skipped: ...` line).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::for_each_check!([$crate::__conformance_each] $make);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_each {
    ([$make:expr] $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some((store, _guard)) = ($make)().await else {
                    return;
                };
                $crate::conformance::$check(store).await;
            }
        )*
    };
}

/// Runs every check, each against a fresh empty store from `make_store`.
pub async fn run_all<F, Fut>(make_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn EventStore>>,
{
    macro_rules! run {
        ([] $($check:ident),*) => {
            $($check(make_store().await).await;)*
        };
    }
    crate::for_each_check!([run]);
}

// ---------------------------------------------------------------------------
// helpers

/// A test event with a deterministic payload of `len` bytes derived from `n`.
fn event(n: u64, len: usize) -> NewEvent {
    let mut payload = Vec::with_capacity(len);
    let seed = n.to_be_bytes();
    for i in 0..len {
        payload.push(seed[i % 8] ^ (i as u8));
    }
    NewEvent {
        event_id: EventId::new(),
        event_type: format!("Conformance{}", n % 3),
        schema_version: 1 + (n % 2) as u16,
        payload,
        recorded_at: Timestamp::from_millis(1_700_000_000_000 + n as i64),
    }
}

fn events(count: usize, seed: u64) -> Vec<NewEvent> {
    (0..count as u64).map(|i| event(seed + i, 64)).collect()
}

fn req(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream.to_owned(),
        expected,
        events,
    }
}

fn ok<T>(r: Result<T, StoreError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("conformance: {what}: unexpected error: {e}"),
    }
}

async fn append(store: &Arc<dyn EventStore>, r: AppendRequest, what: &str) -> AppendResult {
    ok(store.append(r).await, what)
}

async fn read_stream(store: &Arc<dyn EventStore>, s: &str, from: u64) -> Vec<RecordedEvent> {
    ok(
        store.read_stream(s, from).await,
        &format!("read_stream({s}, {from})"),
    )
}

/// Reads the whole log in pages of `page`.
async fn read_everything(store: &Arc<dyn EventStore>, page: usize) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut after = 0;
    loop {
        let batch = ok(
            store.read_all(after, page).await,
            &format!("read_all({after}, {page})"),
        );
        assert!(
            batch.len() <= page,
            "conformance: read_all({after}, {page}) returned {} events, more than the limit",
            batch.len()
        );
        let Some(last) = batch.last() else { break };
        after = last.position;
        out.extend(batch);
    }
    out
}

/// Asserts that `got` carries exactly the content of `sent`, in order.
fn assert_same_events(got: &[RecordedEvent], sent: &[NewEvent], what: &str) {
    assert_eq!(
        got.len(),
        sent.len(),
        "conformance: {what}: read back {} events, appended {}",
        got.len(),
        sent.len()
    );
    for (g, s) in got.iter().zip(sent) {
        assert_eq!(
            g.event_id, s.event_id,
            "conformance: {what}: event id differs"
        );
        assert_eq!(
            g.event_type, s.event_type,
            "conformance: {what}: event type"
        );
        assert_eq!(
            g.schema_version, s.schema_version,
            "conformance: {what}: schema version"
        );
        assert!(
            g.payload == s.payload,
            "conformance: {what}: payload differs"
        );
        assert_eq!(
            g.recorded_at, s.recorded_at,
            "conformance: {what}: recorded_at"
        );
    }
}

/// Asserts the log chain and position contiguity of a full read from position 1.
fn assert_log_chain(all: &[RecordedEvent], what: &str) {
    let mut prev: Hash32 = ZERO_HASH;
    for (i, e) in all.iter().enumerate() {
        assert_eq!(
            e.position,
            i as Position + 1,
            "conformance: {what}: positions are not 1..=n without gaps"
        );
        assert!(
            log_link_ok(e, &prev),
            "conformance: {what}: log hash does not verify at position {}",
            e.position
        );
        prev = e.log_hash;
    }
}

/// Asserts the stream chain and version contiguity of a full stream read.
fn assert_stream_chain(events: &[RecordedEvent], stream: &str, what: &str) {
    let mut prev: Hash32 = ZERO_HASH;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.stream, stream, "conformance: {what}: wrong stream");
        assert_eq!(
            e.version,
            i as u64 + 1,
            "conformance: {what}: versions are not 1..=n without gaps"
        );
        assert!(
            stream_link_ok(e, &prev),
            "conformance: {what}: stream hash does not verify at version {}",
            e.version
        );
        prev = e.hash;
    }
}

fn assert_conflict(
    r: Result<AppendResult, StoreError>,
    stream: &str,
    expected: ExpectedVersion,
    actual: u64,
    what: &str,
) {
    match r {
        Err(StoreError::Conflict {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(s, stream, "conformance: {what}: conflict names the stream");
            assert_eq!(
                e, expected,
                "conformance: {what}: conflict names the expected version"
            );
            assert_eq!(
                a, actual,
                "conformance: {what}: conflict names the actual version"
            );
        }
        other => panic!("conformance: {what}: expected a version conflict, got {other:?}"),
    }
}

fn assert_duplicate_id(r: Result<AppendResult, StoreError>, what: &str) {
    match r {
        Err(StoreError::DuplicateEventId { .. }) => {}
        other => panic!("conformance: {what}: expected DuplicateEventId, got {other:?}"),
    }
}

async fn assert_head(store: &Arc<dyn EventStore>, want: Position, what: &str) {
    let head = ok(store.head().await, "head");
    assert_eq!(head, want, "conformance: {what}: head");
}

// ---------------------------------------------------------------------------
// checks

/// Appended events read back unchanged from their stream, with versions from 1, and
/// the append result reports where they landed. An unknown stream is empty.
pub async fn check_append_and_read_stream_round_trip(store: Arc<dyn EventStore>) {
    assert_head(&store, 0, "empty store").await;
    assert!(
        read_stream(&store, "never-written", 1).await.is_empty(),
        "conformance: an unknown stream must read as empty"
    );
    assert!(
        ok(store.read_all(0, 100).await, "read_all on empty").is_empty(),
        "conformance: an empty store's read_all must be empty"
    );

    let first = events(3, 10);
    let r = append(
        &store,
        req("order-1", ExpectedVersion::NoStream, first.clone()),
        "first append",
    )
    .await;
    assert_eq!(
        r,
        AppendResult {
            first_position: 1,
            last_position: 3,
            stream_version: 3,
            duplicate: false
        },
        "conformance: first append result"
    );
    let mut second = vec![event(20, 0), event(21, 4096)];
    second[0].payload.clear();
    let r = append(
        &store,
        req("order-1", ExpectedVersion::Exact(3), second.clone()),
        "second append",
    )
    .await;
    assert_eq!(
        (
            r.first_position,
            r.last_position,
            r.stream_version,
            r.duplicate
        ),
        (4, 5, 5, false),
        "conformance: second append result"
    );

    let got = read_stream(&store, "order-1", 1).await;
    let sent: Vec<NewEvent> = first.into_iter().chain(second).collect();
    assert_same_events(&got, &sent, "read_stream round trip");
    assert_stream_chain(&got, "order-1", "read_stream round trip");
    for (i, e) in got.iter().enumerate() {
        assert_eq!(
            e.position,
            i as u64 + 1,
            "conformance: positions of order-1"
        );
    }
    // Version 0 is read as "from the start".
    assert_eq!(read_stream(&store, "order-1", 0).await.len(), 5);
    assert_head(&store, 5, "after two appends").await;
}

/// Empty requests, empty batches and empty stream names are `Invalid`, and write nothing.
pub async fn check_empty_requests_are_invalid(store: Arc<dyn EventStore>) {
    let is_invalid = |r: &Result<_, StoreError>| matches!(r, Err(StoreError::Invalid(_)));
    let r = store
        .append(req("s", ExpectedVersion::Any, Vec::new()))
        .await;
    assert!(
        is_invalid(&r),
        "conformance: an append with no events must be Invalid, got {r:?}"
    );
    let r = store.append_batch(Vec::new()).await;
    assert!(
        matches!(r, Err(StoreError::Invalid(_))),
        "conformance: an empty append_batch must be Invalid, got {r:?}"
    );
    let r = store
        .append_batch(vec![
            req("a", ExpectedVersion::Any, events(1, 0)),
            req("b", ExpectedVersion::Any, Vec::new()),
        ])
        .await;
    assert!(
        matches!(r, Err(StoreError::Invalid(_))),
        "conformance: a batch holding an empty request must be Invalid, got {r:?}"
    );
    let r = store
        .append(req("", ExpectedVersion::Any, events(1, 0)))
        .await;
    assert!(
        is_invalid(&r),
        "conformance: an empty stream name must be Invalid, got {r:?}"
    );
    let dup = event(1, 8);
    let r = store
        .append(req("s", ExpectedVersion::Any, vec![dup.clone(), dup]))
        .await;
    assert!(
        matches!(
            r,
            Err(StoreError::Invalid(_)) | Err(StoreError::DuplicateEventId { .. })
        ),
        "conformance: one event id twice in a request must be rejected, got {r:?}"
    );
    assert_head(&store, 0, "after invalid appends").await;
}

/// `NoStream`, `Exact(n)` and `Any` preconditions, and the content of a conflict.
pub async fn check_expected_version_rules(store: Arc<dyn EventStore>) {
    // NoStream on a new stream succeeds, then fails once the stream exists.
    append(
        &store,
        req("acct-1", ExpectedVersion::NoStream, events(2, 0)),
        "NoStream on a new stream",
    )
    .await;
    let r = store
        .append(req("acct-1", ExpectedVersion::NoStream, events(1, 2)))
        .await;
    assert_conflict(
        r,
        "acct-1",
        ExpectedVersion::NoStream,
        2,
        "NoStream on a stream",
    );

    // Exact(0) means "no stream" too.
    append(
        &store,
        req("acct-2", ExpectedVersion::Exact(0), events(1, 3)),
        "Exact(0) on a new stream",
    )
    .await;
    let r = store
        .append(req("acct-2", ExpectedVersion::Exact(0), events(1, 4)))
        .await;
    assert_conflict(
        r,
        "acct-2",
        ExpectedVersion::Exact(0),
        1,
        "Exact(0) on a stream",
    );

    // Exact(n): too low, too high, then right.
    let r = store
        .append(req("acct-1", ExpectedVersion::Exact(1), events(1, 5)))
        .await;
    assert_conflict(r, "acct-1", ExpectedVersion::Exact(1), 2, "stale Exact");
    let r = store
        .append(req("acct-1", ExpectedVersion::Exact(7), events(1, 6)))
        .await;
    assert_conflict(r, "acct-1", ExpectedVersion::Exact(7), 2, "future Exact");
    let r = store
        .append(req("acct-3", ExpectedVersion::Exact(1), events(1, 7)))
        .await;
    assert_conflict(
        r,
        "acct-3",
        ExpectedVersion::Exact(1),
        0,
        "Exact on no stream",
    );
    let r = append(
        &store,
        req("acct-1", ExpectedVersion::Exact(2), events(1, 8)),
        "right Exact",
    )
    .await;
    assert_eq!(r.stream_version, 3, "conformance: version after Exact(2)");

    // Any on a new and an existing stream.
    let r = append(
        &store,
        req("acct-4", ExpectedVersion::Any, events(1, 9)),
        "Any on a new stream",
    )
    .await;
    assert_eq!(r.stream_version, 1);
    let r = append(
        &store,
        req("acct-1", ExpectedVersion::Any, events(2, 10)),
        "Any on a stream",
    )
    .await;
    assert_eq!(r.stream_version, 5);

    // Failed appends wrote nothing.
    assert_eq!(read_stream(&store, "acct-1", 1).await.len(), 5);
    assert!(read_stream(&store, "acct-3", 1).await.is_empty());
    assert_head(&store, 2 + 1 + 1 + 1 + 2, "after conflicts").await;
    assert_log_chain(&read_everything(&store, 3).await, "after conflicts");
}

/// Two writers racing with the same expected version: exactly one wins, the other
/// gets a conflict naming the expected and the actual version.
pub async fn check_concurrent_writers_one_wins(store: Arc<dyn EventStore>) {
    const ROUNDS: u64 = 20;
    let stream = "race-1";
    for round in 0..ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for w in 0..2u64 {
            let store = store.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(req(
                        stream,
                        ExpectedVersion::Exact(round),
                        events(1, round * 2 + w),
                    ))
                    .await
            }));
        }
        let mut wins = 0;
        let mut conflicts = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(r)) => {
                    assert_eq!(r.stream_version, round + 1, "conformance: winner's version");
                    wins += 1;
                }
                Ok(r @ Err(_)) => {
                    assert_conflict(
                        r,
                        stream,
                        ExpectedVersion::Exact(round),
                        round + 1,
                        "losing concurrent writer",
                    );
                    conflicts += 1;
                }
                Err(e) => panic!("conformance: writer task failed: {e}"),
            }
        }
        assert_eq!(
            (wins, conflicts),
            (1, 1),
            "conformance: round {round}: exactly one concurrent writer must win"
        );
    }
    let got = read_stream(&store, stream, 1).await;
    assert_stream_chain(&got, stream, "after races");
    assert_eq!(got.len() as u64, ROUNDS);
    assert_head(&store, ROUNDS, "after races").await;
}

/// Appends refused for a conflict or a reused id, racing with good appends (so a
/// backend that shares commits puts them in the same one), do not make the good
/// ones fail or lose events.
pub async fn check_refused_appends_do_not_disturb_concurrent_ones(store: Arc<dyn EventStore>) {
    const TASKS: u64 = 48;
    let stored = events(1, 0);
    append(
        &store,
        req("busy", ExpectedVersion::NoStream, stored.clone()),
        "setup",
    )
    .await;
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let barrier = barrier.clone();
        let reused = stored[0].clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = match t % 3 {
                0 => req(
                    &format!("good-{t}"),
                    ExpectedVersion::NoStream,
                    events(2, t * 10),
                ),
                1 => req("busy", ExpectedVersion::Exact(0), events(1, t * 10)),
                _ => req(&format!("reuse-{t}"), ExpectedVersion::Any, vec![reused]),
            };
            (t, store.append(r).await)
        }));
    }
    let mut good = 0u64;
    for task in tasks {
        let (t, r) = match task.await {
            Ok(v) => v,
            Err(e) => panic!("conformance: append task failed: {e}"),
        };
        match t % 3 {
            0 => {
                let r = ok(r, "good append beside refused ones");
                assert_eq!(r.stream_version, 2);
                assert_eq!(r.last_position, r.first_position + 1);
                good += 1;
            }
            1 => assert_conflict(r, "busy", ExpectedVersion::Exact(0), 1, "stale append"),
            _ => assert_duplicate_id(r, "reused id beside good appends"),
        }
    }
    for t in (0..TASKS).filter(|t| t % 3 == 0) {
        let got = read_stream(&store, &format!("good-{t}"), 1).await;
        assert_eq!(got.len(), 2, "conformance: good-{t} lost events");
    }
    assert_eq!(read_stream(&store, "busy", 1).await.len(), 1);
    assert_head(&store, 1 + good * 2, "after mixed appends").await;
    assert_log_chain(&read_everything(&store, 1000).await, "after mixed appends");
}

/// Re-sending an appended request returns the original positions with
/// `duplicate = true` and writes nothing, whatever its expected version says.
pub async fn check_idempotent_retry(store: Arc<dyn EventStore>) {
    append(
        &store,
        req("pay-0", ExpectedVersion::NoStream, events(1, 0)),
        "unrelated",
    )
    .await;
    let request = req("pay-1", ExpectedVersion::NoStream, events(3, 1));
    let original = append(&store, request.clone(), "original").await;
    assert!(
        !original.duplicate,
        "conformance: a first append is no duplicate"
    );
    append(
        &store,
        req("pay-1", ExpectedVersion::Exact(3), events(1, 4)),
        "after original",
    )
    .await;

    let retry = append(&store, request.clone(), "faithful retry").await;
    assert_eq!(
        retry,
        AppendResult {
            duplicate: true,
            ..original
        },
        "conformance: a retry returns the original positions, flagged duplicate"
    );
    // Single-event retry, and a retry with another expected version.
    let single = req("pay-2", ExpectedVersion::Any, events(1, 5));
    let first = append(&store, single.clone(), "single").await;
    let mut again = single.clone();
    again.expected = ExpectedVersion::Exact(42);
    let second = append(&store, again, "single retry").await;
    assert_eq!(
        second,
        AppendResult {
            duplicate: true,
            ..first
        }
    );

    // A retry through append_batch, alone and beside a new request.
    let rs = ok(
        store.append_batch(vec![request.clone()]).await,
        "retry in a batch",
    );
    assert_eq!(
        rs,
        vec![AppendResult {
            duplicate: true,
            ..original
        }]
    );
    let head_before = ok(store.head().await, "head");
    let rs = ok(
        store
            .append_batch(vec![
                request,
                req("pay-3", ExpectedVersion::NoStream, events(1, 6)),
            ])
            .await,
        "retry beside a new request",
    );
    assert_eq!(
        rs[0],
        AppendResult {
            duplicate: true,
            ..original
        }
    );
    assert_eq!(
        (rs[1].first_position, rs[1].duplicate),
        (head_before + 1, false),
        "conformance: the new request of a batch holding a retry is written"
    );

    assert_eq!(read_stream(&store, "pay-1", 1).await.len(), 4);
    assert_head(&store, 1 + 3 + 1 + 1 + 1, "after retries").await;
    assert_log_chain(&read_everything(&store, 100).await, "after retries");
}

/// The same append sent by several tasks at once (a client retrying while its first
/// attempt is still queued, so a backend that shares commits may see them in one
/// group) is written once: one caller gets `duplicate = false`, every other one
/// `duplicate = true` with the same positions, whatever the expected version says.
pub async fn check_concurrent_retries_write_once(store: Arc<dyn EventStore>) {
    const TASKS: usize = 16;
    for (round, expected) in [ExpectedVersion::Any, ExpectedVersion::NoStream]
        .into_iter()
        .enumerate()
    {
        let stream = format!("retry-race-{round}");
        let request = req(&stream, expected, events(3, round as u64 * 10));
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let store = store.clone();
            let barrier = barrier.clone();
            let request = request.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.append(request).await
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            match t.await {
                Ok(r) => results.push(r),
                Err(e) => panic!("conformance: retry task failed: {e}"),
            }
        }
        let written: Vec<&AppendResult> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|r| !r.duplicate)
            .collect();
        assert_eq!(
            written.len(),
            1,
            "conformance: concurrent copies of one append must be written exactly once"
        );
        let original = *written[0];
        for r in &results {
            match r {
                Ok(r) => assert_eq!(
                    (r.first_position, r.last_position, r.stream_version),
                    (
                        original.first_position,
                        original.last_position,
                        original.stream_version
                    ),
                    "conformance: a concurrent retry returns the original positions"
                ),
                Err(e) => panic!("conformance: a concurrent retry failed: {e}"),
            }
        }
        let got = read_stream(&store, &stream, 1).await;
        assert_same_events(&got, &request.events, "concurrent retries");
    }
    assert_head(&store, 6, "after concurrent retries").await;
    assert_log_chain(
        &read_everything(&store, 100).await,
        "after concurrent retries",
    );
}

/// A request mixing stored and new ids, reordering stored ids, or reusing an id in
/// another stream, is `DuplicateEventId` and writes nothing.
pub async fn check_partial_or_foreign_event_ids_rejected(store: Arc<dyn EventStore>) {
    let stored = events(2, 0);
    append(
        &store,
        req("cust-1", ExpectedVersion::NoStream, stored.clone()),
        "original",
    )
    .await;

    let mixed = vec![stored[0].clone(), event(10, 16)];
    let r = store
        .append(req("cust-1", ExpectedVersion::Any, mixed))
        .await;
    assert_duplicate_id(r, "stored + new ids");

    let mixed = vec![event(11, 16), stored[1].clone()];
    let r = store
        .append(req("cust-1", ExpectedVersion::Any, mixed))
        .await;
    assert_duplicate_id(r, "new + stored ids");

    let r = store
        .append(req("cust-2", ExpectedVersion::Any, vec![stored[0].clone()]))
        .await;
    assert_duplicate_id(r, "id reused in another stream");

    let r = store
        .append(req("cust-2", ExpectedVersion::Any, stored.clone()))
        .await;
    assert_duplicate_id(r, "all ids reused in another stream");

    let reordered = vec![stored[1].clone(), stored[0].clone()];
    let r = store
        .append(req("cust-1", ExpectedVersion::Any, reordered))
        .await;
    assert_duplicate_id(r, "stored ids in another order");

    let r = store
        .append_batch(vec![
            req("cust-3", ExpectedVersion::Any, events(1, 20)),
            req("cust-4", ExpectedVersion::Any, vec![stored[0].clone()]),
        ])
        .await;
    assert!(
        matches!(r, Err(StoreError::DuplicateEventId { .. })),
        "conformance: a batch reusing a stored id elsewhere must fail, got {r:?}"
    );

    assert_eq!(read_stream(&store, "cust-1", 1).await.len(), 2);
    assert!(read_stream(&store, "cust-2", 1).await.is_empty());
    assert!(read_stream(&store, "cust-3", 1).await.is_empty());
    assert_head(&store, 2, "after rejected duplicates").await;
}

/// A multi-event append that conflicts writes none of its events, and a successful
/// one lands contiguously.
pub async fn check_multi_event_append_is_atomic(store: Arc<dyn EventStore>) {
    append(
        &store,
        req("sub-1", ExpectedVersion::NoStream, events(2, 0)),
        "setup",
    )
    .await;
    let r = store
        .append(req("sub-1", ExpectedVersion::Exact(1), events(50, 10)))
        .await;
    assert_conflict(
        r,
        "sub-1",
        ExpectedVersion::Exact(1),
        2,
        "stale multi-event",
    );
    assert_eq!(read_stream(&store, "sub-1", 1).await.len(), 2);
    assert_head(&store, 2, "after failed multi-event append").await;

    let r = append(
        &store,
        req("sub-1", ExpectedVersion::Exact(2), events(50, 100)),
        "multi-event",
    )
    .await;
    assert_eq!(
        (r.first_position, r.last_position, r.stream_version),
        (3, 52, 52),
        "conformance: a multi-event append lands contiguously"
    );
}

/// `append_batch` is all-or-nothing across streams; results come in request order.
pub async fn check_append_batch_is_atomic(store: Arc<dyn EventStore>) {
    append(
        &store,
        req("b-1", ExpectedVersion::NoStream, events(1, 0)),
        "setup",
    )
    .await;
    let r = store
        .append_batch(vec![
            req("b-2", ExpectedVersion::NoStream, events(3, 1)),
            req("b-3", ExpectedVersion::Any, events(2, 4)),
            req("b-1", ExpectedVersion::NoStream, events(1, 6)),
            req("b-4", ExpectedVersion::Any, events(2, 7)),
        ])
        .await;
    match r {
        Err(StoreError::Conflict {
            stream, actual: 1, ..
        }) if stream == "b-1" => {}
        other => panic!("conformance: a batch with one conflict must fail with it, got {other:?}"),
    }
    for s in ["b-2", "b-3", "b-4"] {
        assert!(
            read_stream(&store, s, 1).await.is_empty(),
            "conformance: a failed batch wrote to {s}"
        );
    }
    assert_head(&store, 1, "after failed batch").await;

    // Two requests to one stream in a batch apply in order.
    let rs = ok(
        store
            .append_batch(vec![
                req("b-2", ExpectedVersion::NoStream, events(3, 10)),
                req("b-1", ExpectedVersion::Exact(1), events(1, 13)),
                req("b-2", ExpectedVersion::Exact(3), events(2, 14)),
            ])
            .await,
        "batch",
    );
    let got: Vec<_> = rs
        .iter()
        .map(|r| {
            (
                r.first_position,
                r.last_position,
                r.stream_version,
                r.duplicate,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(2, 4, 3, false), (5, 5, 2, false), (6, 7, 5, false)],
        "conformance: batch results"
    );
    assert_stream_chain(&read_stream(&store, "b-2", 1).await, "b-2", "batch stream");
    assert_log_chain(&read_everything(&store, 2).await, "after batch");
}

/// Positions are 1..=n without gaps and `read_all(after, limit)` pages return exactly
/// them, in order, whatever the page size.
pub async fn check_global_order_and_paging(store: Arc<dyn EventStore>) {
    let mut sent: Vec<EventId> = Vec::new();
    for i in 0..40u64 {
        let stream = format!("g-{}", i % 7);
        let evs = events(1 + (i % 3) as usize, i * 10);
        sent.extend(evs.iter().map(|e| e.event_id));
        append(&store, req(&stream, ExpectedVersion::Any, evs), "setup").await;
    }
    let n = sent.len() as u64;
    assert_head(&store, n, "after setup").await;

    for page in [1usize, 3, 7, 64, 10_000] {
        let all = read_everything(&store, page).await;
        let ids: Vec<EventId> = all.iter().map(|e| e.event_id).collect();
        assert_eq!(
            ids, sent,
            "conformance: read_all pages of {page} return the events in append order"
        );
        assert_log_chain(&all, &format!("pages of {page}"));
    }
    // Pages from arbitrary positions.
    for after in [0, 1, n / 2, n - 1] {
        let page = ok(store.read_all(after, 5).await, "read_all");
        let positions: Vec<Position> = page.iter().map(|e| e.position).collect();
        let want: Vec<Position> = (after + 1..=n.min(after + 5)).collect();
        assert_eq!(positions, want, "conformance: read_all({after}, 5)");
    }
    assert!(ok(store.read_all(n, 10).await, "read_all at head").is_empty());
    assert!(ok(store.read_all(n + 10, 10).await, "read_all past head").is_empty());
    assert!(ok(store.read_all(0, 0).await, "read_all limit 0").is_empty());
}

/// `read_stream` from a version > 1 returns that version onwards, verified.
pub async fn check_read_stream_from_version(store: Arc<dyn EventStore>) {
    let sent = events(10, 0);
    for (i, e) in sent.iter().enumerate() {
        append(
            &store,
            req("v-1", ExpectedVersion::Exact(i as u64), vec![e.clone()]),
            "setup",
        )
        .await;
        append(
            &store,
            req("v-other", ExpectedVersion::Any, events(1, 100 + i as u64)),
            "noise",
        )
        .await;
    }
    for from in [1u64, 2, 5, 10] {
        let got = read_stream(&store, "v-1", from).await;
        assert_same_events(&got, &sent[from as usize - 1..], &format!("from {from}"));
        let versions: Vec<u64> = got.iter().map(|e| e.version).collect();
        assert_eq!(versions, (from..=10).collect::<Vec<_>>());
    }
    assert!(read_stream(&store, "v-1", 11).await.is_empty());
    assert!(read_stream(&store, "v-1", 1000).await.is_empty());
}

/// Every record read back verifies with [`stream_link_ok`] and [`log_link_ok`].
pub async fn check_hash_chains_verify(store: Arc<dyn EventStore>) {
    for i in 0..30u64 {
        let stream = format!("h-{}", i % 4);
        let mut evs = events(1 + (i % 2) as usize, i * 3);
        evs[0].payload = vec![i as u8; (i * 37 % 600) as usize];
        append(&store, req(&stream, ExpectedVersion::Any, evs), "setup").await;
    }
    ok(
        store
            .append_batch(vec![
                req("h-0", ExpectedVersion::Any, events(2, 500)),
                req("h-9", ExpectedVersion::Any, events(2, 600)),
            ])
            .await,
        "batch",
    );
    let all = read_everything(&store, 8).await;
    assert_log_chain(&all, "whole log");

    let mut prev_in_stream: HashMap<&str, (u64, Hash32)> = HashMap::new();
    for e in &all {
        let (v, prev) = prev_in_stream
            .get(e.stream.as_str())
            .copied()
            .unwrap_or((0, ZERO_HASH));
        assert_eq!(
            e.version,
            v + 1,
            "conformance: stream versions in log order"
        );
        assert!(
            stream_link_ok(e, &prev),
            "conformance: stream hash in read_all at position {}",
            e.position
        );
        prev_in_stream.insert(&e.stream, (e.version, e.hash));
    }
    for stream in ["h-0", "h-1", "h-2", "h-3", "h-9"] {
        let got = read_stream(&store, stream, 1).await;
        assert_stream_chain(&got, stream, stream);
        let from_log: Vec<&RecordedEvent> = all.iter().filter(|e| e.stream == stream).collect();
        assert_eq!(got.len(), from_log.len());
        for (a, b) in got.iter().zip(from_log) {
            assert!(a == b, "conformance: read_stream and read_all disagree");
        }
    }
}

/// `wait_for_head` returns at once when the head is already past `after`, wakes up
/// on a new append, and otherwise times out returning the current head.
pub async fn check_wait_for_head(store: Arc<dyn EventStore>) {
    let t = Instant::now();
    let h = ok(
        store.wait_for_head(0, Duration::from_millis(150)).await,
        "wait on empty",
    );
    assert_eq!(h, 0, "conformance: timed-out wait returns the head");
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "conformance: wait_for_head returned before its timeout with no new event"
    );

    append(
        &store,
        req("w-1", ExpectedVersion::Any, events(2, 0)),
        "setup",
    )
    .await;
    let t = Instant::now();
    let h = ok(
        store.wait_for_head(1, Duration::from_secs(10)).await,
        "wait behind head",
    );
    assert_eq!(h, 2);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "conformance: no wait needed"
    );

    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let h = store.wait_for_head(2, Duration::from_secs(20)).await;
            (h, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(
        &store,
        req("w-1", ExpectedVersion::Any, events(1, 5)),
        "wake",
    )
    .await;
    let (h, elapsed) = match tokio::time::timeout(Duration::from_secs(30), waiter).await {
        Ok(Ok(v)) => v,
        other => panic!("conformance: waiter task failed: {other:?}"),
    };
    assert_eq!(
        ok(h, "woken wait"),
        3,
        "conformance: woken wait returns the new head"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "conformance: wait_for_head did not wake up on an append ({elapsed:?})"
    );
}

/// A subscription from 0, started while 8 writers append 2,000 events, sees each
/// event exactly once, in position order, across catch-up and live.
pub async fn check_subscription_with_concurrent_writers(store: Arc<dyn EventStore>) {
    const WRITERS: u64 = 8;
    const PER_WRITER: u64 = 250;
    const TOTAL: u64 = WRITERS * PER_WRITER;

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let stream = format!("sub-writer-{w}");
            for i in 0..PER_WRITER {
                let evs = events(1, w * 10_000 + i);
                ids.push(evs[0].event_id);
                store
                    .append(req(&stream, ExpectedVersion::Exact(i), evs))
                    .await?;
            }
            Ok::<_, StoreError>(ids)
        }));
    }
    // Start once some events exist, so the subscription both catches up and follows.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ok(store.head().await, "head") < TOTAL / 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut sub = Subscription::new(store.clone(), 0);
    let mut seen: Vec<RecordedEvent> = Vec::with_capacity(TOTAL as usize);
    let collect = async {
        while (seen.len() as u64) < TOTAL {
            seen.push(ok(sub.next().await, "subscription next"));
        }
    };
    if tokio::time::timeout(Duration::from_secs(120), collect)
        .await
        .is_err()
    {
        panic!(
            "conformance: subscription stalled after {} events",
            seen.len()
        );
    }
    let mut written = HashSet::new();
    for w in writers {
        match w.await {
            Ok(Ok(ids)) => written.extend(ids),
            other => panic!("conformance: subscription writer failed: {other:?}"),
        }
    }
    assert_log_chain(&seen, "subscription");
    let seen_ids: HashSet<EventId> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(
        seen_ids.len() as u64,
        TOTAL,
        "conformance: subscription handed out a duplicate"
    );
    assert!(
        seen_ids == written,
        "conformance: subscription saw other events than were written"
    );
    assert_eq!(sub.position(), TOTAL);
    // Nothing more arrives.
    let more = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(more.is_err(), "conformance: subscription invented an event");
}

/// One `append_batch` of 10,000 events across 100 streams round-trips.
pub async fn check_large_batch_round_trips(store: Arc<dyn EventStore>) {
    const STREAMS: u64 = 100;
    const PER_STREAM: u64 = 100;
    append(
        &store,
        req("big-0", ExpectedVersion::Any, events(1, 0)),
        "setup",
    )
    .await;
    let requests: Vec<AppendRequest> = (0..STREAMS)
        .map(|s| {
            let evs = (0..PER_STREAM)
                .map(|i| event(s * 1000 + i, 300))
                .collect::<Vec<_>>();
            req(&format!("big-{s}"), ExpectedVersion::Any, evs)
        })
        .collect();
    let rs = ok(store.append_batch(requests.clone()).await, "large batch");
    assert_eq!(rs.len() as u64, STREAMS);
    let mut next = 2;
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(
            (r.first_position, r.last_position, r.duplicate),
            (next, next + PER_STREAM - 1, false),
            "conformance: large batch result {i}"
        );
        let want_version = if i == 0 { PER_STREAM + 1 } else { PER_STREAM };
        assert_eq!(r.stream_version, want_version);
        next += PER_STREAM;
    }
    let all = read_everything(&store, 4096).await;
    assert_eq!(all.len() as u64, STREAMS * PER_STREAM + 1);
    assert_log_chain(&all, "large batch");
    let sent: Vec<NewEvent> = requests.iter().flat_map(|r| r.events.clone()).collect();
    assert_same_events(&all[1..], &sent, "large batch via read_all");
    let s7 = read_stream(&store, "big-7", 1).await;
    assert_same_events(&s7, &requests[7].events, "large batch via read_stream");
    assert_stream_chain(&s7, "big-7", "large batch stream");

    // Retried as a whole, the batch is a duplicate and writes nothing.
    let again = ok(store.append_batch(requests).await, "large batch retry");
    assert!(again.iter().all(|r| r.duplicate));
    assert_eq!(again[5].first_position, rs[5].first_position);
    assert_head(&store, STREAMS * PER_STREAM + 1, "after batch retry").await;
}

/// Fixtures for the backends' own tests (durability, tamper, input checks), so
/// each backend does not keep its own copy.
pub mod fixtures {
    use crate::chain::{log_link_ok, stream_link_ok};
    use crate::{
        AppendRequest, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError, ZERO_HASH,
    };
    use ledger_types::{EventId, Timestamp};

    pub fn event(n: u64) -> NewEvent {
        NewEvent {
            event_id: EventId::new(),
            event_type: "Tested".into(),
            schema_version: 1,
            payload: format!("sealed-payload-{n:06}").into_bytes(),
            recorded_at: Timestamp::from_millis(1_700_000_000_000 + n as i64),
        }
    }

    pub fn req(stream: &str, events: Vec<NewEvent>) -> AppendRequest {
        AppendRequest {
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            events,
        }
    }

    /// Three streams, 30 events, interleaved one per append.
    pub async fn fill(store: &dyn EventStore) {
        for i in 0..30u64 {
            let stream = format!("s-{}", i % 3);
            store
                .append(req(&stream, vec![event(i)]))
                .await
                .expect("append");
        }
    }

    pub fn verify_log(all: &[RecordedEvent]) {
        let mut prev = ZERO_HASH;
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.position, i as u64 + 1);
            assert!(log_link_ok(e, &prev), "log chain at {}", e.position);
            prev = e.log_hash;
        }
    }

    pub fn verify_stream(events: &[RecordedEvent]) {
        let mut prev = ZERO_HASH;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version, i as u64 + 1);
            assert!(stream_link_ok(e, &prev), "stream chain at {}", e.version);
            prev = e.hash;
        }
    }

    pub fn assert_integrity<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
        assert!(
            matches!(r, Err(StoreError::Integrity { .. })),
            "{what}: expected an integrity error, got {r:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    /// The list in `for_each_check!` must name every `check_*` of this module.
    #[test]
    fn every_check_is_listed() {
        let source = include_str!("conformance.rs");
        let (list, rest) = source
            .split_once("macro_rules! conformance_tests {")
            .expect("the list comes first");
        let missing: Vec<&str> = rest
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn check_"))
            .map(|r| r.split('(').next().unwrap_or(""))
            .filter(|name| {
                let n = format!("check_{name}");
                !list.lines().any(|l| l.trim().trim_end_matches(',') == n)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "checks missing from for_each_check!: {missing:?}"
        );
    }
}
