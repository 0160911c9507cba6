//! The stores survive connection loss (issue 9): sessions killed again and again
//! under load, sessions killed while idle, and a server that is unreachable for a
//! while. Each store reconnects by itself, answers `Unavailable` (never a plain
//! backend error) while it cannot, and loses or duplicates nothing it acknowledged.
//! The test server and the skip rule are described in `common/mod.rs`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Killer, Kills, TestDb};
use ledger_crypto::{CryptoError, KeyState, KeyStore, WrappedKey};
use ledger_projections::{
    Changes, Positions, RevenueKey, RevenueTotals, ViewStore, ViewStoreError,
};
use ledger_store::conformance::fixtures::*;
use ledger_store::{AppendRequest, AppendResult, EventStore, ExpectedVersion, StoreError};
use ledger_store_postgres::{PgKeyStore, PgViewStore, PostgresStore};
use ledger_types::{BroadcasterId, Currency, CustomerId, EventId, OfferId, Timestamp};

/// How long the killer runs in the load tests, and how often it kills.
const KILL_PHASE: Duration = Duration::from_secs(10);
const KILL_EVERY: Duration = Duration::from_millis(500);
/// Every client must have been answered successfully within this long after the
/// last kill.
const RECOVERY_BOUND: Duration = Duration::from_secs(5);
/// A call while the server is unreachable is answered within this long.
const FAIL_FAST_BOUND: Duration = Duration::from_secs(5);
/// A client gives up on one request after this long of failures (the test fails).
const GIVE_UP: Duration = Duration::from_secs(30);

/// Errors seen, by class.
#[derive(Debug, Default, Clone)]
struct Seen {
    unavailable: usize,
    other: Vec<String>,
}

impl Seen {
    fn add(&mut self, unavailable: bool, e: &dyn std::fmt::Display) {
        if unavailable {
            self.unavailable += 1;
        } else {
            self.other.push(e.to_string());
        }
    }

    fn merge(&mut self, o: Seen) {
        self.unavailable += o.unavailable;
        self.other.extend(o.other);
    }
}

/// Retries `f` (the same request each time) until it succeeds, noting each error.
/// Returns the value and when it was answered.
async fn until_ok<T, E: std::fmt::Display, Fut: std::future::Future<Output = Result<T, E>>>(
    seen: &mut Seen,
    unavailable: impl Fn(&E) -> bool,
    mut f: impl FnMut() -> Fut,
) -> (T, Instant) {
    let started = Instant::now();
    loop {
        match f().await {
            Ok(v) => return (v, Instant::now()),
            Err(e) => {
                seen.add(unavailable(&e), &e);
                assert!(
                    started.elapsed() < GIVE_UP,
                    "no success for {GIVE_UP:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The blocking twin of [`until_ok`], for the key and view stores.
fn until_ok_blocking<T, E: std::fmt::Display>(
    seen: &mut Seen,
    unavailable: impl Fn(&E) -> bool,
    mut f: impl FnMut() -> Result<T, E>,
) -> (T, Instant) {
    let started = Instant::now();
    loop {
        match f() {
            Ok(v) => return (v, Instant::now()),
            Err(e) => {
                seen.add(unavailable(&e), &e);
                assert!(
                    started.elapsed() < GIVE_UP,
                    "no success for {GIVE_UP:?}: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn store_unavailable(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_))
}

fn key_unavailable(e: &CryptoError) -> bool {
    matches!(e, CryptoError::Unavailable(_))
}

fn view_unavailable(e: &ViewStoreError) -> bool {
    matches!(e, ViewStoreError::Unavailable(_))
}

/// The first success of each client after `last_kill`: how long after it the
/// slowest client was answered.
fn recovery(answers: &[Vec<Instant>], last_kill: Instant) -> Duration {
    answers
        .iter()
        .map(|a| {
            a.iter()
                .find(|t| **t > last_kill)
                .map(|t| *t - last_kill)
                .expect("a client got no answer after the last kill")
        })
        .max()
        .unwrap_or_default()
}

/// Runs a key or view store call on a blocking thread (they block).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking call")
}

/// A key store and a view store on `url`.
async fn state_stores(url: &str) -> (Arc<PgKeyStore>, Arc<PgViewStore>) {
    let url = url.to_owned();
    blocking(move || {
        (
            Arc::new(PgKeyStore::connect(&url).expect("key store")),
            Arc::new(PgViewStore::connect(&url).expect("view store")),
        )
    })
    .await
}

/// Kills every session of `db` every [`KILL_EVERY`] for [`KILL_PHASE`], then gives
/// the clients [`RECOVERY_BOUND`] to show they recovered and tells them to `stop`.
/// Returns what the killer did and when it last ended a session.
async fn kill_phase(db: &TestDb, stop: &AtomicBool) -> (Kills, Instant) {
    let killer = Killer::start(db, KILL_EVERY);
    tokio::time::sleep(KILL_PHASE).await;
    let kills = killer.stop().await;
    let last_kill = kills.last.expect("the killer ended sessions");
    tokio::time::sleep(RECOVERY_BOUND).await;
    stop.store(true, Ordering::Release);
    (kills, last_kill)
}

/// What every kill test expects: the killer really ran, the clients saw no error
/// but `Unavailable`, and each kind of client was answered again within
/// [`RECOVERY_BOUND`] of the last kill.
fn assert_survived(kills: &Kills, seen: &[(&str, &Seen)], recovered: &[(&str, Duration)]) {
    assert!(kills.rounds >= 10, "the killer ran: {kills:?}");
    for (who, seen) in seen {
        assert!(
            seen.other.is_empty(),
            "{who}: only Unavailable errors while sessions are killed: {:?}",
            seen.other
        );
    }
    for (who, after) in recovered {
        assert!(*after < RECOVERY_BOUND, "{who} resumed after {after:?}");
    }
}

/// One appender's record: every acknowledged append, and when answers came.
#[derive(Default)]
struct Appended {
    acked: Vec<(EventId, AppendResult)>,
    answered: Vec<Instant>,
    seen: Seen,
}

/// Appends to its own stream with exact expected versions (so a stale stream head
/// after a reconnect would show as a conflict) until `stop`, retrying each request
/// with its same event ids until it is acknowledged.
async fn appender(store: Arc<PostgresStore>, stream: String, stop: Arc<AtomicBool>) -> Appended {
    let mut out = Appended::default();
    let mut version = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        let e = event(n);
        let id = e.event_id;
        let request = AppendRequest {
            stream: stream.clone(),
            expected: ExpectedVersion::Exact(version),
            events: vec![e],
        };
        let (r, at) = until_ok(&mut out.seen, store_unavailable, || {
            store.append(request.clone())
        })
        .await;
        assert_eq!(
            r.stream_version,
            version + 1,
            "{stream}: versions follow on"
        );
        version = r.stream_version;
        out.acked.push((id, r));
        out.answered.push(at);
        n += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn appends_and_reads_survive_repeated_kills_under_load() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    let stop = Arc::new(AtomicBool::new(false));
    let appenders: Vec<_> = (0..8)
        .map(|a| tokio::spawn(appender(store.clone(), format!("a-{a}"), stop.clone())))
        .collect();
    // A reader pages through the log and reads streams all along.
    let reader = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let (mut seen, mut reads, mut answered) = (Seen::default(), 0usize, Vec::new());
            let mut after = 0;
            while !stop.load(Ordering::Acquire) {
                let page =
                    until_ok(&mut seen, store_unavailable, || store.read_all(after, 500)).await;
                after = page.0.last().map_or(0, |e| e.position);
                let stream = format!("a-{}", reads % 8);
                until_ok(&mut seen, store_unavailable, || {
                    store.read_stream(&stream, 1)
                })
                .await;
                answered.push(page.1);
                reads += 2;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (seen, reads, answered)
        }
    });

    let (kills, last_kill) = kill_phase(&db, &stop).await;

    let mut seen = Seen::default();
    let mut acked: Vec<(EventId, AppendResult)> = Vec::new();
    let mut answers = Vec::new();
    for a in appenders {
        let a = a.await.expect("appender");
        seen.merge(a.seen);
        acked.extend(a.acked);
        answers.push(a.answered);
    }
    let (read_seen, reads, read_answers) = reader.await.expect("reader");
    let recovered = recovery(&answers, last_kill);
    let reads_recovered = recovery(&[read_answers], last_kill);

    // Everything acknowledged is stored exactly once, where its answer said, and
    // nothing else is stored; the chains verify.
    let mut all = Vec::new();
    loop {
        let page = store
            .read_all(
                all.last()
                    .map_or(0, |e: &ledger_store::RecordedEvent| e.position),
                10_000,
            )
            .await
            .expect("read back");
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    verify_log(&all);
    let stored: HashMap<EventId, u64> = all.iter().map(|e| (e.event_id, e.position)).collect();
    assert_eq!(stored.len(), all.len(), "event ids are unique");
    for (id, r) in &acked {
        assert_eq!(
            stored.get(id),
            Some(&r.first_position),
            "acknowledged event {id} is stored at its acknowledged position"
        );
    }
    assert_eq!(
        all.len(),
        acked.len(),
        "nothing stored without acknowledgement"
    );
    for a in 0..8 {
        verify_stream(
            &store
                .read_stream(&format!("a-{a}"), 1)
                .await
                .expect("stream"),
        );
    }
    eprintln!(
        "event store under kills: {} kill rounds ended {} sessions over {:?}; {} appends \
         acknowledged and checked; {} reads; errors: {} Unavailable (appends) + {} \
         Unavailable (reads), {} other; all appenders answered {:?} and the reader {:?} \
         after the last kill",
        kills.rounds,
        kills.sessions,
        KILL_PHASE,
        acked.len(),
        reads,
        seen.unavailable,
        read_seen.unavailable,
        seen.other.len() + read_seen.other.len(),
        recovered,
        reads_recovered,
    );
    assert_survived(
        &kills,
        &[("appends", &seen), ("reads", &read_seen)],
        &[("appends", recovered), ("reads", reads_recovered)],
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_answers_survive_repeated_kills_beside_appends() {
    use ledger_store::responses::{ResponseStore, SavedResponse};
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    let stop = Arc::new(AtomicBool::new(false));
    // Each client appends, then saves an answer for the append (as the API does)
    // and reads it back, retrying each call until it is acknowledged: answers are
    // written in the same groups as other clients' appends.
    let clients: Vec<_> = (0..4u8)
        .map(|c| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut seen, mut saved, mut answered) = (Seen::default(), Vec::new(), Vec::new());
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let request = req(&format!("c-{c}"), vec![event(n)]);
                    let (r, _) = until_ok(&mut seen, store_unavailable, || {
                        store.append(request.clone())
                    })
                    .await;
                    let key = format!("key-{c}-{n}");
                    let answer = SavedResponse {
                        fingerprint: [c; 32],
                        status: 201,
                        content_type: Some("application/json".into()),
                        body: format!("{{\"position\":{}}}", r.first_position).into_bytes(),
                        saved_at: Timestamp::now(),
                    };
                    let (_, at) = until_ok(&mut seen, store_unavailable, || {
                        store.remember([c; 16], &key, answer.clone())
                    })
                    .await;
                    let (back, _) =
                        until_ok(&mut seen, store_unavailable, || store.recall([c; 16], &key))
                            .await;
                    assert_eq!(back.as_ref(), Some(&answer), "{key} read back");
                    saved.push((key, answer));
                    answered.push(at);
                    n += 1;
                }
                (seen, saved, answered)
            })
        })
        .collect();
    // 20 rounds when the machine is idle; `assert_survived` wants 10.
    let killer = Killer::start(&db, Duration::from_millis(250));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kills = killer.stop().await;
    let last_kill = kills.last.expect("the killer ended sessions");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Release);

    let (mut seen, mut saved, mut answers) = (Seen::default(), Vec::new(), Vec::new());
    for (c, client) in clients.into_iter().enumerate() {
        let (s, a, t) = client.await.expect("client");
        seen.merge(s);
        saved.extend(a.into_iter().map(|(k, a)| (c as u8, k, a)));
        answers.push(t);
    }
    let recovered = recovery(&answers, last_kill);
    // Every acknowledged answer is there, after the store is closed and reopened.
    store.close().await;
    drop(store);
    let store = db.store().await;
    for (c, key, answer) in &saved {
        assert_eq!(
            store.recall([*c; 16], key).await.unwrap().as_ref(),
            Some(answer),
            "acknowledged answer {key}"
        );
    }
    eprintln!(
        "saved answers under kills: {} kill rounds ended {} sessions; {} answers \
         acknowledged and recalled after a reopen; {} Unavailable, {} other; all clients \
         answered {:?} after the last kill",
        kills.rounds,
        kills.sessions,
        saved.len(),
        seen.unavailable,
        seen.other.len(),
        recovered
    );
    assert_survived(&kills, &[("answers", &seen)], &[("answers", recovered)]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_killed_while_idle_are_replaced_before_the_next_call() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    fill(store.as_ref()).await;
    // A pooled read connection, to be killed while idle too.
    assert_eq!(store.read_all(0, 100).await.expect("read").len(), 30);
    let (keys, views) = state_stores(&db.url).await;
    let customer = CustomerId::new();
    let k = keys.clone();
    blocking(move || k.insert_new(&[(customer, WrappedKey::from_stored(vec![7; 40]))]))
        .await
        .expect("insert a key");
    for round in 0..5u64 {
        let ended = db.kill_sessions().await;
        // Writer, reader, key store, view store.
        assert!(ended >= 4, "round {round}: ended {ended} sessions");
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Each store noticed the loss while idle and has a new session (or drops
        // the dead pooled one): the first call after it succeeds.
        store.head().await.expect("head after an idle kill");
        let r = store
            .append(req("s-0", vec![event(100 + round)]))
            .await
            .expect("append after an idle kill");
        assert_eq!(r.first_position, 31 + round);
        let s = store
            .read_stream("s-0", 1)
            .await
            .expect("read after an idle kill");
        assert_eq!(s.len() as u64, 11 + round);
        let (k, v) = (keys.clone(), views.clone());
        let (key, model) = blocking(move || (k.get(customer), v.load())).await;
        assert!(matches!(key, Ok(KeyState::Active(_))), "{key:?}");
        assert!(
            model.is_ok(),
            "view load after an idle kill: {:?}",
            model.err()
        );
    }
    verify_log(&store.read_all(0, 1000).await.expect("read_all"));
    store.close().await;
}

/// A one-row change set at `i`: a revenue row whose total is `i`, and every
/// checkpoint at `i`, so a load shows whether rows and checkpoints moved together.
fn changes_at(i: u64, key: &RevenueKey) -> Changes {
    Changes {
        customers: Vec::new(),
        revenue: vec![(
            key.clone(),
            RevenueTotals {
                gross_captured: i128::from(i),
                refunded: 0,
                net: i128::from(i),
                payment_count: i,
                refund_count: 0,
            },
        )],
        erasures: Vec::new(),
        positions: Positions {
            customers: i,
            revenue: i,
            erasures: i,
        },
        log_hash: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_and_view_stores_recover_from_repeated_kills() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (keys, views) = state_stores(&db.url).await;
    let stop = Arc::new(AtomicBool::new(false));

    // Keys: create, read, destroy every other one; remember what was acknowledged.
    let key_client = std::thread::spawn({
        let (keys, stop) = (keys.clone(), stop.clone());
        move || {
            let (mut seen, mut answered) = (Seen::default(), Vec::new());
            let (mut kept, mut destroyed) = (Vec::new(), Vec::new());
            let mut n = 0u8;
            while !stop.load(Ordering::Acquire) {
                let c = CustomerId::new();
                let wrapped = WrappedKey::from_stored(vec![n; 40]);
                let (states, at) = until_ok_blocking(&mut seen, key_unavailable, || {
                    keys.insert_new(&[(c, wrapped.clone())])
                });
                assert_eq!(states, vec![KeyState::Active(wrapped.clone())]);
                answered.push(at);
                let (state, at) = until_ok_blocking(&mut seen, key_unavailable, || keys.get(c));
                assert_eq!(state, KeyState::Active(wrapped.clone()));
                answered.push(at);
                if n.is_multiple_of(2) {
                    let (_, at) = until_ok_blocking(&mut seen, key_unavailable, || {
                        keys.destroy(&[c], Timestamp::now())
                    });
                    answered.push(at);
                    destroyed.push(c);
                } else {
                    kept.push((c, wrapped));
                }
                n = n.wrapping_add(1);
            }
            (seen, answered, kept, destroyed)
        }
    });
    // Views: save at 1, 2, 3, ... and load; remember the last acknowledged save.
    let key = RevenueKey {
        broadcaster_id: BroadcasterId::new(),
        currency: Currency::parse("EUR").expect("currency"),
        day: 20_000,
        offer_id: OfferId::parse("monthly").expect("offer"),
    };
    let view_client = std::thread::spawn({
        let (views, stop, key) = (views.clone(), stop.clone(), key.clone());
        move || {
            let (mut seen, mut answered, mut saved) = (Seen::default(), Vec::new(), 0u64);
            while !stop.load(Ordering::Acquire) {
                let next = saved + 1;
                let changes = changes_at(next, &key);
                let (_, at) =
                    until_ok_blocking(&mut seen, view_unavailable, || views.save(&changes));
                saved = next;
                answered.push(at);
                let (model, at) = until_ok_blocking(&mut seen, view_unavailable, || views.load());
                assert_eq!(model.position(), saved, "a load sees the last save");
                answered.push(at);
            }
            (seen, answered, saved)
        }
    });

    let (kills, last_kill) = kill_phase(&db, &stop).await;
    let (key_seen, key_answers, kept, destroyed) = key_client.join().expect("key client");
    let (view_seen, view_answers, saved) = view_client.join().expect("view client");
    let keys_recovered = recovery(&[key_answers], last_kill);
    let views_recovered = recovery(&[view_answers], last_kill);

    // Every acknowledged destruction is real: no key row, a tombstone; every kept
    // key is there with its bytes.
    let raw = db.raw().await;
    let ids: Vec<uuid::Uuid> = destroyed.iter().map(|c| *c.as_uuid()).collect();
    let rows: i64 = raw
        .query_one(
            "SELECT count(*) FROM ledger_data_keys WHERE customer_id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("count destroyed keys")
        .get(0);
    assert_eq!(rows, 0, "no acknowledged destroyed key has a row");
    let (k, d) = (keys.clone(), destroyed.clone());
    let states = blocking(move || d.iter().map(|c| k.get(*c)).collect::<Result<Vec<_>, _>>())
        .await
        .expect("states of destroyed keys");
    assert!(states
        .iter()
        .all(|s| matches!(s, KeyState::Destroyed { .. })));
    let (k, kept_now) = (keys.clone(), kept.clone());
    let kept_states = blocking(move || {
        kept_now
            .iter()
            .map(|(c, _)| k.get(*c))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .expect("states of kept keys");
    for ((_, wrapped), state) in kept.iter().zip(kept_states) {
        assert_eq!(state, KeyState::Active(wrapped.clone()));
    }
    // The view rows and checkpoints moved together, up to the last save.
    let v = views.clone();
    let model = blocking(move || v.load()).await.expect("load");
    assert_eq!(model.position(), saved);
    assert_eq!(
        model.revenue.get(&key).map(|t| t.gross_captured),
        Some(i128::from(saved))
    );

    eprintln!(
        "key and view stores under kills: {} kill rounds ended {} sessions over {:?}; \
         {} keys destroyed and {} kept, checked; {} saves checked; errors: {} \
         Unavailable (keys) + {} Unavailable (views), {} other; answered {:?} (keys) and \
         {:?} (views) after the last kill",
        kills.rounds,
        kills.sessions,
        KILL_PHASE,
        destroyed.len(),
        kept.len(),
        saved,
        key_seen.unavailable,
        view_seen.unavailable,
        key_seen.other.len() + view_seen.other.len(),
        keys_recovered,
        views_recovered,
    );
    assert!(
        !destroyed.is_empty() && saved > 0,
        "the clients made progress"
    );
    assert_survived(
        &kills,
        &[("keys", &key_seen), ("views", &view_seen)],
        &[("keys", keys_recovered), ("views", views_recovered)],
    );
}

/// Runs `f` and checks it fails as unavailable within [`FAIL_FAST_BOUND`].
async fn fails_fast<T: std::fmt::Debug, E: std::fmt::Debug>(
    what: &str,
    unavailable: impl Fn(&E) -> bool,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Duration {
    let started = Instant::now();
    let r = f.await;
    let took = started.elapsed();
    assert!(
        matches!(&r, Err(e) if unavailable(e)),
        "{what} while unreachable: {r:?}"
    );
    assert!(took < FAIL_FAST_BOUND, "{what} took {took:?} to fail");
    took
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_fails_calls_fast_and_the_first_call_after_it_is_back_succeeds() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (mut proxy, url) = db.behind_proxy().await;
    let store = Arc::new(PostgresStore::connect(&url).await.expect("connect"));
    fill(store.as_ref()).await;
    let (keys, views) = state_stores(&url).await;

    proxy.down().await;
    // Meanwhile the stores keep trying to reconnect while idle, so their backoff
    // grows to its cap (2 s): a call then waits for the next attempt, at most that.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut slowest = Duration::ZERO;
    for round in 0..3u64 {
        let took = [
            fails_fast("append", store_unavailable, async {
                store.append(req("s-0", vec![event(900 + round)])).await
            })
            .await,
            fails_fast("read", store_unavailable, store.read_stream("s-0", 1)).await,
            fails_fast("head", store_unavailable, store.head()).await,
            fails_fast("key get", key_unavailable, {
                let k = keys.clone();
                async move { blocking(move || k.get(CustomerId::new())).await }
            })
            .await,
            fails_fast("view load", view_unavailable, {
                let v = views.clone();
                async move { blocking(move || v.load().map(|m| m.position())).await }
            })
            .await,
        ];
        slowest = slowest.max(took.into_iter().max().unwrap_or_default());
    }

    proxy.up().await;
    let back = Instant::now();
    let r = store
        .append(req("s-0", vec![event(1000)]))
        .await
        .expect("the first append after the server is back");
    assert_eq!(
        r.first_position, 31,
        "nothing was written while unreachable"
    );
    assert_eq!(
        store
            .read_stream("s-0", 1)
            .await
            .expect("the first read after the server is back")
            .len(),
        11
    );
    assert_eq!(store.head().await.expect("head"), 31);
    let (k, v) = (keys.clone(), views.clone());
    let (key, model) = blocking(move || (k.get(CustomerId::new()), v.load())).await;
    assert!(matches!(key, Ok(KeyState::Missing)), "{key:?}");
    assert!(model.is_ok(), "{:?}", model.err());
    eprintln!(
        "unreachable server: slowest failing call {slowest:?}; all stores answered {:?} \
         after it was back",
        back.elapsed()
    );
    verify_log(&store.read_all(0, 1000).await.expect("read_all"));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_append_whose_commit_answer_was_lost_is_answered_as_committed() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (mut proxy, url) = db.behind_proxy().await;
    let store = Arc::new(PostgresStore::connect(&url).await.expect("connect"));
    fill(store.as_ref()).await;

    // The statement reaches the server and commits; its answer never comes back.
    proxy.swallow_replies();
    let e = event(500);
    let id = e.event_id;
    let append = tokio::spawn({
        let store = store.clone();
        async move { store.append(req("s-1", vec![e])).await }
    });
    let raw = db.raw().await;
    let committed = async {
        loop {
            let n: i64 = raw
                .query_one(
                    "SELECT count(*) FROM events WHERE event_id = $1",
                    &[id.as_uuid()],
                )
                .await
                .expect("look the event up")
                .get(0);
            if n == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), committed)
        .await
        .expect("the append committed");
    assert!(!append.is_finished(), "the answer was swallowed");
    // The session is cut with the answer in flight, and the server is back.
    proxy.down().await;
    proxy.up().await;
    let r = tokio::time::timeout(Duration::from_secs(10), append)
        .await
        .expect("answered within 10 s")
        .expect("join")
        .expect("a committed append is answered as committed");
    assert_eq!(
        (r.first_position, r.stream_version, r.duplicate),
        (31, 11, false),
        "answered with the position it committed at, as a first write"
    );
    let all = store.read_all(0, 1000).await.expect("read_all");
    assert_eq!(all.len(), 31, "stored once");
    verify_log(&all);
    verify_stream(&store.read_stream("s-1", 1).await.expect("stream"));
    // The writer goes on from there.
    let next = store
        .append(req("s-1", vec![event(501)]))
        .await
        .expect("next append");
    assert_eq!((next.first_position, next.stream_version), (32, 12));
    store.close().await;
}
