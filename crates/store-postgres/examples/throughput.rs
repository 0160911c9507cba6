//! Measures the PostgreSQL event store: one sequential writer, 64 concurrent writers
//! with one event per append (group commit), bulk `append_batch` import (10,000
//! events per call), and full replay with chain verification. Same workload and
//! output as `ledger-store-sqlite`'s throughput example; the measuring code only
//! sees `Arc<dyn EventStore>`.
//!
//! ```text
//! cargo run --release -p ledger-store-postgres --example throughput [-- BULK_EVENTS]
//! ```
//!
//! The server comes from `LEDGER_BENCH_POSTGRES_URL`, else `LEDGER_TEST_POSTGRES_URL`,
//! else `postgres://postgres@127.0.0.1:5432/postgres`; the run creates a fresh
//! database `ledger_bench_<random>` there and drops it at the end. Payloads are 300
//! bytes; event ids are random UUID v4 (`EVENT_IDS=v7` for time-ordered ones).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use ledger_store_postgres::PostgresStore;
use ledger_types::{EventId, Timestamp};
use tokio_postgres::NoTls;

const PAYLOAD: usize = 300;
/// `EVENT_IDS=v7` uses time-ordered UUIDs instead of the default random v4.
static V7: AtomicBool = AtomicBool::new(false);

fn event(n: u64) -> NewEvent {
    let mut payload = vec![0u8; PAYLOAD];
    for (i, b) in payload.iter_mut().enumerate() {
        *b = (n as u8).wrapping_add(i as u8);
    }
    NewEvent {
        event_id: if V7.load(Ordering::Relaxed) {
            EventId::from_uuid(uuid::Uuid::now_v7())
        } else {
            EventId::new()
        },
        event_type: "PaymentCaptured".into(),
        schema_version: 1,
        payload,
        recorded_at: Timestamp::now(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn report(name: &str, events: u64, elapsed: Duration, mut lat: Vec<Duration>) {
    let rate = events as f64 / elapsed.as_secs_f64();
    lat.sort_unstable();
    if lat.is_empty() {
        println!("{name:<32} {events:>9} events in {elapsed:>8.2?}  {rate:>10.0} ev/s");
    } else {
        println!(
            "{name:<32} {events:>9} events in {elapsed:>8.2?}  {rate:>10.0} ev/s  \
             latency p50 {:.2?} p99 {:.2?} max {:.2?}",
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0),
        );
    }
}

/// `writers` tasks, each appending `per_writer` single-event appends to its own stream.
async fn concurrent(store: &Arc<dyn EventStore>, tag: &str, writers: u64, per_writer: u64) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let stream = format!("{tag}-{w}");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_writer as usize);
            for i in 0..per_writer {
                let t = Instant::now();
                store
                    .append(AppendRequest {
                        stream: stream.clone(),
                        expected: ExpectedVersion::Exact(i),
                        events: vec![event(i)],
                    })
                    .await
                    .expect("append");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("writer"));
    }
    report(
        &format!("{writers} writers, 1 event/append"),
        writers * per_writer,
        start.elapsed(),
        lat,
    );
}

fn batch(tag: &str, batch_no: u64, first: u64) -> Vec<AppendRequest> {
    const STREAMS: u64 = 1_000;
    const PER_STREAM: u64 = 10;
    (0..STREAMS)
        .map(|s| AppendRequest {
            stream: format!("{tag}-{batch_no}-{s}"),
            expected: ExpectedVersion::NoStream,
            events: (0..PER_STREAM)
                .map(|i| event(first + s * PER_STREAM + i))
                .collect(),
        })
        .collect()
}

/// Bulk import: batches of 10,000 events over 1,000 streams (10 events each), built
/// and appended one after the other.
async fn bulk(store: &Arc<dyn EventStore>, name: &str, tag: &str, total: u64) {
    const PER_BATCH: u64 = 10_000;
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut n = 0u64;
    let mut batch_no = 0u64;
    while n < total {
        let requests = batch(tag, batch_no, n);
        let t = Instant::now();
        store.append_batch(requests).await.expect("batch");
        lat.push(t.elapsed());
        n += PER_BATCH;
        batch_no += 1;
    }
    report(&format!("{name} (10k/batch)"), n, start.elapsed(), lat);
}

/// Replays everything with chain verification, in pages of 10,000 and 50,000.
async fn replay(store: &Arc<dyn EventStore>) {
    let head = store.head().await.expect("head");
    for page in [10_000usize, 50_000] {
        let start = Instant::now();
        let mut after = 0;
        let mut count = 0u64;
        let mut bytes = 0usize;
        loop {
            let events = store.read_all(after, page).await.expect("read_all");
            let Some(last) = events.last() else { break };
            after = last.position;
            count += events.len() as u64;
            bytes += events.iter().map(|e| e.payload.len()).sum::<usize>();
        }
        assert_eq!(count, head);
        std::hint::black_box(bytes);
        report(
            &format!("replay read_all (page {page})"),
            count,
            start.elapsed(),
            Vec::new(),
        );
    }
}

/// The whole workload, against any store.
async fn run(store: Arc<dyn EventStore>, bulk_events: u64) {
    concurrent(&store, "one", 1, 1_000).await;
    concurrent(&store, "w64", 64, 500).await;
    concurrent(&store, "w64b", 64, 500).await;
    bulk(&store, "bulk append_batch", "bulk", bulk_events).await;
    replay(&store).await;
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the PostgreSQL server");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn with_database(url: &str, db: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (before_query, query) = match rest.split_once('?') {
                Some((b, q)) => (b, format!("?{q}")),
                None => (rest, String::new()),
            };
            let authority = before_query.split('/').next().unwrap_or(before_query);
            format!("{scheme}://{authority}/{db}{query}")
        }
        None => format!("{url} dbname={db}"),
    }
}

#[tokio::main]
async fn main() {
    let bulk_events: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    V7.store(
        std::env::var("EVENT_IDS").is_ok_and(|v| v == "v7"),
        Ordering::Relaxed,
    );
    let server = std::env::var("LEDGER_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("LEDGER_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("ledger_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = admin(&server).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create the bench database");

    let store = Arc::new(
        PostgresStore::connect(&with_database(&server, &name))
            .await
            .expect("connect"),
    );
    println!("store: postgres {}", store.database());
    run(store.clone(), bulk_events).await;
    store.close().await;

    let size: i64 = admin
        .query_one("SELECT pg_database_size($1)", &[&name])
        .await
        .and_then(|r| r.try_get(0))
        .unwrap_or(0);
    println!("database size: {} MiB", size >> 20);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .expect("drop the bench database");
}
