//! `ledger bench`: durable append throughput and latency with 1 and N concurrent
//! writers (one event per append, each writer on its own streams), bulk import and
//! full replay (with hash-chain verification), on a scratch store in the data
//! folder; `--read-side` the projection rebuild and search; `--erasures N` the
//! single-request erasure path (16 concurrent clients with the key destructions
//! grouped and with one key-store transaction each, and one client). Each figure is measured `--runs` times on a fresh store; the report gives
//! every run and the median.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use ledger_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use ledger_store_sqlite::SqliteStore;

use crate::backends::{open_event_store, Closer, StoreKind};
use ledger_types::{EventId, Timestamp};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Appends by the single writer.
    #[arg(long, default_value_t = 2_000)]
    single: usize,
    /// Number of concurrent writers.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Appends per concurrent writer.
    #[arg(long, default_value_t = 500)]
    per_writer: usize,
    /// Events written by the bulk import (10,000 per transaction).
    #[arg(long, default_value_t = 300_000)]
    bulk: usize,
    /// Independent runs; the report gives the median of each figure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// Measure the read side instead: projection rebuild events/s and search
    /// latency over a demo data set of `--customers` customers.
    #[arg(long)]
    read_side: bool,
    /// Customers in the read-side data set (100,000 make about 1.1M events).
    #[arg(long, default_value_t = 100_000)]
    customers: usize,
    /// Run the Merkle tree follower beside the appends, as `serve` does, and
    /// measure the tree on the scratch log (build, proofs, signed heads).
    #[arg(long)]
    with_tree: bool,
    /// Measure erasures instead (`--store` as for appends): this many customers
    /// erased one request at a time, as the API does (decision, key destruction, read side
    /// caught up), by `--erasure-clients` concurrent clients and by one.
    #[arg(long, default_value_t = 0)]
    erasures: usize,
    /// Concurrent clients of the erasure measurement.
    #[arg(long, default_value_t = 16)]
    erasure_clients: usize,
    /// Measure bulk erasure jobs instead (`--store` as for appends): this many
    /// customers erased by one job (validation, filing, key destruction, receipts projected).
    #[arg(long, default_value_t = 0)]
    jobs: usize,
    /// Measure publishing to NATS JetStream at this URL instead (`serve
    /// --publish`'s sink, Cargo feature `nats`): the public events of a demo data
    /// set of `--customers` customers, each run to a new stream (deleted after).
    #[arg(long)]
    publish: Option<String>,
    /// Measure webhook fan-out instead (embedded store, in one process): this many
    /// customers registered per second, each event delivered to every endpoint
    /// (`--webhook-endpoints`) at a local receiver that checks the signatures.
    #[arg(long, default_value_t = 0)]
    webhooks: usize,
    /// How long the webhook load lasts, in seconds.
    #[arg(long, default_value_t = 10)]
    webhook_secs: u64,
    /// Platform-wide endpoints of the webhook measurement.
    #[arg(long, default_value_t = 1)]
    webhook_endpoints: usize,
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    single_events_per_s: f64,
    single_p50_ms: f64,
    single_p99_ms: f64,
    concurrent_events_per_s: f64,
    concurrent_p50_ms: f64,
    concurrent_p99_ms: f64,
    bulk_events_per_s: f64,
    replay_events: u64,
    replay_events_per_s: f64,
    /// With --with-tree: how long the follower took to hold every record after the
    /// last append.
    #[serde(skip_serializing_if = "Option::is_none")]
    tree_lag_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tree: Option<crate::bench_tree::TreeFigures>,
}

/// A ~300-byte JSON payload, like the peer benchmark's events.
fn payload(i: usize) -> Vec<u8> {
    format!(
        r#"{{"amount":{},"ref":"pay-{i}","memo":"{}"}}"#,
        100 + i % 1000,
        "m".repeat(240)
    )
    .into_bytes()
}

fn event(i: usize) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        event_type: "BenchEvent".into(),
        schema_version: 1,
        payload: payload(i),
        recorded_at: Timestamp::now(),
    }
}

/// Appends `n` single-event appends to streams `prefix-k` (10 events a stream).
async fn writer(store: Arc<dyn EventStore>, prefix: String, n: usize) -> Result<Vec<Duration>> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let req = AppendRequest {
            stream: format!("{prefix}-{}", i / 10),
            expected: ExpectedVersion::Exact((i % 10) as u64),
            events: vec![event(i)],
        };
        let t = Instant::now();
        store.append(req).await?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1e3
}

/// A fresh, empty scratch store of the kind under test, and how to remove it.
enum Scratch {
    Sqlite(std::path::PathBuf),
    #[cfg(feature = "postgres")]
    Postgres {
        admin_url: String,
        database: String,
    },
}

impl Scratch {
    fn new(kind: &StoreKind, dir: &Path) -> Result<Self> {
        Ok(match kind {
            StoreKind::Sqlite(_) => Scratch::Sqlite(dir.to_path_buf()),
            #[cfg(feature = "kurrentdb")]
            StoreKind::Kurrent(_) => {
                anyhow::bail!("ledger bench measures sqlite and postgres stores; KurrentDB is not benchmarked here (no server)")
            }
            #[cfg(feature = "postgres")]
            StoreKind::Postgres(url) => Scratch::Postgres {
                admin_url: url.clone(),
                database: scratch_url(url, &format!("ledger_bench_{}", std::process::id()))?,
            },
        })
    }

    #[cfg(feature = "postgres")]
    fn db_name(&self) -> Option<&str> {
        match self {
            Scratch::Postgres { database, .. } => database
                .split('?')
                .next()
                .and_then(|u| u.rsplit_once('/'))
                .map(|(_, d)| d),
            Scratch::Sqlite(_) => None,
        }
    }

    async fn open(&self) -> Result<(Arc<dyn EventStore>, Closer)> {
        self.remove().await?;
        match self {
            Scratch::Sqlite(dir) => {
                std::fs::create_dir_all(dir)?;
                open_event_store(&StoreKind::Sqlite(dir.join("events.sqlite"))).await
            }
            #[cfg(feature = "postgres")]
            Scratch::Postgres {
                admin_url,
                database,
            } => {
                let db = self.db_name().unwrap_or_default();
                admin(admin_url, &format!("CREATE DATABASE {db}")).await?;
                open_event_store(&StoreKind::Postgres(database.clone())).await
            }
        }
    }

    /// The key store and the view store beside the scratch event store (its
    /// folder, or its database), for the erasure measurements.
    fn state(
        &self,
    ) -> Result<(
        Arc<dyn ledger_crypto::KeyStore>,
        Arc<dyn ledger_projections::ViewStore>,
    )> {
        Ok(match self {
            Scratch::Sqlite(dir) => (
                Arc::new(ledger_crypto::SqliteKeyStore::open(
                    &dir.join("keys.sqlite"),
                )?),
                Arc::new(ledger_store_sqlite::SqliteViewStore::open(
                    &dir.join("views.sqlite"),
                )?),
            ),
            #[cfg(feature = "postgres")]
            Scratch::Postgres { database, .. } => (
                Arc::new(ledger_store_postgres::PgKeyStore::connect(database)?),
                Arc::new(ledger_store_postgres::PgViewStore::connect(database)?),
            ),
        })
    }

    /// What the erasure measurements ran on, for their reports.
    fn label(&self) -> &'static str {
        match self {
            Scratch::Sqlite(_) => {
                "sqlite (WAL, synchronous=FULL, group commit; key destructions grouped)"
            }
            #[cfg(feature = "postgres")]
            Scratch::Postgres { .. } => {
                "postgres (synchronous_commit=on, group commit; key destructions grouped)"
            }
        }
    }

    async fn remove(&self) -> Result<()> {
        match self {
            Scratch::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            #[cfg(feature = "postgres")]
            Scratch::Postgres { admin_url, .. } => {
                let db = self.db_name().unwrap_or_default();
                admin(
                    admin_url,
                    &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                )
                .await?;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "postgres")]
/// `url` naming database `db` instead, keeping its options (a multi-host URL's
/// `target_session_attrs=read-write` must survive, or the scratch store could land
/// on a standby).
fn scratch_url(url: &str, db: &str) -> Result<String> {
    let (before, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (base, _db) = before
        .rsplit_once('/')
        .filter(|(b, _)| b.contains("://") && !b.ends_with('/'))
        .context("--store postgres:// URL needs a database name")?;
    Ok(match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    })
}

/// Runs one statement on the server the bench URL names (scratch databases).
#[cfg(feature = "postgres")]
async fn admin(url: &str, sql: &str) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to PostgreSQL to make a scratch database")?;
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await?;
    drop(client);
    let _ = task.await;
    Ok(())
}

async fn one_run(scratch: &Scratch, args: &BenchArgs, first: bool) -> Result<Run> {
    let (store, closer) = scratch.open().await?;
    let follower = args
        .with_tree
        .then(|| crate::bench_tree::Follower::start(store.clone()));

    let t = Instant::now();
    let mut single = writer(store.clone(), "single".into(), args.single).await?;
    let single_secs = t.elapsed().as_secs_f64();
    single.sort();

    let t = Instant::now();
    let handles: Vec<_> = (0..args.writers)
        .map(|w| tokio::spawn(writer(store.clone(), format!("w{w}"), args.per_writer)))
        .collect();
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await??);
    }
    let concurrent_secs = t.elapsed().as_secs_f64();
    lat.sort();

    let t = Instant::now();
    let per_batch = 10_000;
    let mut written = 0;
    while written < args.bulk {
        let n = per_batch.min(args.bulk - written);
        let reqs: Vec<AppendRequest> = (0..n.div_ceil(10))
            .map(|s| AppendRequest {
                stream: format!("bulk-{}-{s}", written / per_batch),
                expected: ExpectedVersion::NoStream,
                events: (0..10.min(n - s * 10)).map(|i| event(s * 10 + i)).collect(),
            })
            .collect();
        store.append_batch(reqs).await?;
        written += n;
    }
    let bulk_secs = t.elapsed().as_secs_f64();
    let tree_lag_ms = match follower {
        Some(f) => Some(f.finish(store.head().await?).await?),
        None => None,
    };

    let t = Instant::now();
    let mut after = 0;
    let mut replayed = 0u64;
    loop {
        let page = store.read_all(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        replayed += page.len() as u64;
    }
    let replay_secs = t.elapsed().as_secs_f64();
    let tree = if args.with_tree && first {
        Some(crate::bench_tree::measure(store.clone()).await?)
    } else {
        None
    };
    closer.close().await;
    drop(closer);
    drop(store);
    scratch.remove().await?;

    Ok(Run {
        single_events_per_s: args.single as f64 / single_secs,
        single_p50_ms: pct(&single, 0.50),
        single_p99_ms: pct(&single, 0.99),
        concurrent_events_per_s: lat.len() as f64 / concurrent_secs,
        concurrent_p50_ms: pct(&lat, 0.50),
        concurrent_p99_ms: pct(&lat, 0.99),
        bulk_events_per_s: args.bulk as f64 / bulk_secs,
        replay_events: replayed,
        replay_events_per_s: replayed as f64 / replay_secs,
        tree_lag_ms,
        tree,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

pub async fn run(data: &Path, store: Option<&str>, args: BenchArgs) -> Result<()> {
    let dir = data.join(format!("bench-{}", std::process::id()));
    let kind = StoreKind::parse(store, data)?;
    if let Some(url) = &args.publish {
        let target = crate::publish::Target::parse(url, "LEDGER", "ledger")?;
        crate::publish::check_built(Some(&target))?;
        #[cfg(feature = "nats")]
        {
            let r = publish(&dir, url, &args).await;
            let _ = std::fs::remove_dir_all(&dir);
            return r;
        }
    }
    if args.webhooks > 0 {
        anyhow::ensure!(
            matches!(kind, StoreKind::Sqlite(_)),
            "--webhooks measures the embedded store only"
        );
        let r = crate::bench_webhooks::run(
            &dir,
            args.webhooks,
            args.webhook_secs,
            args.webhook_endpoints,
            args.json,
        )
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    if args.read_side {
        anyhow::ensure!(
            matches!(kind, StoreKind::Sqlite(_)),
            "--read-side measures the embedded store only"
        );
        let r = read_side(&dir, &args).await;
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    let scratch = Scratch::new(&kind, &dir)?;
    if args.erasures > 0 || args.jobs > 0 {
        let r = if args.jobs > 0 {
            jobs(&scratch, &dir, &args).await
        } else {
            erasures(&scratch, &dir, &args).await
        };
        scratch.remove().await?;
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    let mut runs = Vec::new();
    for i in 0..args.runs.max(1) {
        let r = one_run(&scratch, &args, i == 0).await?;
        if !args.json {
            eprintln!("run {}: {:?}", i + 1, r);
        }
        runs.push(r);
    }
    let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let summary = serde_json::json!({
        "store": match kind {
            StoreKind::Sqlite(_) => "sqlite (WAL, synchronous=FULL, group commit)",
            #[cfg(feature = "postgres")]
            StoreKind::Postgres(_) => "postgres (synchronous_commit=on, group commit)",
            #[cfg(feature = "kurrentdb")]
            StoreKind::Kurrent(_) => "kurrentdb",
        },
        "runs": runs.len(),
        "tree_follower": args.with_tree,
        "tree": runs.first().and_then(|r| r.tree.clone()),
        "median": {
            "append_1_writer_events_per_s": m(|r| r.single_events_per_s),
            "append_1_writer_p50_ms": m(|r| r.single_p50_ms),
            "append_1_writer_p99_ms": m(|r| r.single_p99_ms),
            "append_concurrent_writers": args.writers,
            "append_concurrent_events_per_s": m(|r| r.concurrent_events_per_s),
            "append_concurrent_p50_ms": m(|r| r.concurrent_p50_ms),
            "append_concurrent_p99_ms": m(|r| r.concurrent_p99_ms),
            "bulk_import_events_per_s": m(|r| r.bulk_events_per_s),
            "replay_events_per_s": m(|r| r.replay_events_per_s),
            "replay_events": runs.first().map_or(0, |r| r.replay_events),
        },
        "all_runs": runs,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    let md = &summary["median"];
    let f = |k: &str| md[k].as_f64().unwrap_or(0.0);
    println!(
        "ledger bench: {} store, durable appends{}; medians of {} runs",
        kind.label(),
        if args.with_tree {
            ", Merkle tree follower running"
        } else {
            ""
        },
        runs.len()
    );
    println!(
        "  append, 1 writer, 1 event/append:    {:>10.0} events/s   p50 {:.2} ms  p99 {:.2} ms",
        f("append_1_writer_events_per_s"),
        f("append_1_writer_p50_ms"),
        f("append_1_writer_p99_ms")
    );
    println!(
        "  append, {} writers, 1 event/append:  {:>10.0} events/s   p50 {:.2} ms  p99 {:.2} ms",
        args.writers,
        f("append_concurrent_events_per_s"),
        f("append_concurrent_p50_ms"),
        f("append_concurrent_p99_ms")
    );
    println!(
        "  bulk import (10,000 events/commit):  {:>10.0} events/s",
        f("bulk_import_events_per_s")
    );
    println!(
        "  full replay, chains verified:        {:>10.0} events/s   ({} events)",
        f("replay_events_per_s"),
        md["replay_events"]
    );
    if let Some(t) = runs.first().and_then(|r| r.tree.as_ref()) {
        println!(
            "  tree of {} records: built in {:.2}s ({:.0} records/s), {:.0} MB; follower lag after the last append {:.1} ms",
            t.size,
            t.build_s,
            t.build_events_per_s,
            t.memory_mb,
            runs.first().and_then(|r| r.tree_lag_ms).unwrap_or(0.0)
        );
        println!(
            "  inclusion proof:   mean {:.1} us  p99 {:.1} us  ({} hashes at most)",
            t.inclusion_mean_us, t.inclusion_p99_us, t.inclusion_hashes_max
        );
        println!(
            "  consistency proof: mean {:.1} us  p99 {:.1} us  ({} hashes at most)",
            t.consistency_mean_us, t.consistency_p99_us, t.consistency_hashes_max
        );
        println!("  signed tree head:  mean {:.1} us", t.signed_head_mean_us);
    }
    Ok(())
}

/// Read-side figures: demo load, projection rebuild from zero (fold, persist, and
/// the in-memory search index), and in-process search latency by email and by
/// name prefix.
/// One erasure measurement: `n` customers erased by `clients` concurrent clients.
#[derive(Debug, Clone, Serialize)]
struct ErasureRun {
    grouped: bool,
    clients: usize,
    erasures: usize,
    erasures_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A fresh scratch ledger with `n` registered customers of one white-label
/// broadcaster: the ledger (destroying keys in groups or not), the read side
/// caught up with them, the broadcaster, the customers, and the event store's
/// closer. On the scratch store of the kind under test (its folder, or a fresh
/// PostgreSQL database for the key store and the views too), with a forget list
/// in `dir` as `serve` keeps one.
struct ScratchLedger {
    ledger: ledger_app::Ledger,
    read: Arc<ledger_app::read::ReadSide>,
    broadcaster: ledger_types::BroadcasterId,
    customers: Vec<ledger_types::CustomerId>,
    closer: Closer,
}

/// Registers the white-label broadcaster whose customers a bench writes.
pub(crate) async fn bench_broadcaster(
    ledger: &ledger_app::Ledger,
) -> Result<ledger_types::BroadcasterId> {
    let b = ledger_types::BroadcasterId::new();
    ledger
        .register_broadcaster(
            b,
            "Bench Broadcaster",
            ledger_events::Integration::WhiteLabel,
            Timestamp::now(),
        )
        .await?;
    Ok(b)
}

/// The registration of bench customer `i` (made-up personal data, sealed like
/// any customer's).
pub(crate) fn register(
    c: ledger_types::CustomerId,
    b: ledger_types::BroadcasterId,
    i: usize,
) -> ledger_command::CustomerCommand {
    ledger_command::CustomerCommand::Register {
        customer_id: c,
        broadcaster_id: b,
        profile: ledger_events::Profile {
            email: format!("bench{i}@example.org"),
            password_hash: "argon2id$bench".into(),
            first_name: "Bench".into(),
            last_name: format!("Customer{i}"),
            address: None,
            company_name: None,
            phone_number: None,
            custom_answers: vec![],
            registration_ip: None,
        },
        at: Timestamp::now(),
    }
}

async fn scratch_customers(
    scratch: &Scratch,
    dir: &Path,
    n: usize,
    grouped: bool,
) -> Result<ScratchLedger> {
    use ledger_app::forget::FileForgetList;
    use ledger_app::{read::ReadSide, Ledger};
    use ledger_crypto::{Kek, Keyring};
    use ledger_types::CustomerId;

    let (store, closer) = scratch.open().await?;
    let (keys, views) = scratch.state()?;
    std::fs::create_dir_all(dir)?;
    let forget = dir.join("forget-list.ndjson");
    let _ = std::fs::remove_file(&forget);
    let ledger = Ledger::new(store.clone(), Arc::new(Keyring::new(Kek::generate(), keys)))
        .with_grouped_destruction(grouped)
        .with_forget_list(Arc::new(FileForgetList::open(&forget, true)?));
    let b = bench_broadcaster(&ledger).await?;
    let customers: Vec<CustomerId> = (0..n).map(|_| CustomerId::new()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in customers.chunks(n.div_ceil(64).max(1)) {
        let (ledger, chunk) = (ledger.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for (i, c) in chunk.into_iter().enumerate() {
                ledger.execute(c, &register(c, b, i)).await?;
            }
            Ok::<_, ledger_app::AppError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let read =
        Arc::new(ReadSide::open_unindexed(store.clone(), ledger.keyring().clone(), views).await?);
    Ok(ScratchLedger {
        ledger,
        read,
        broadcaster: b,
        customers,
        closer,
    })
}

/// Erases `n` fresh customers with `clients` concurrent clients, each erasure as
/// the API runs it: `Ledger::erase` (decision, forget list, grouped key
/// destruction) then the read side caught up (read-your-writes).
async fn erasure_run(
    scratch: &Scratch,
    dir: &Path,
    n: usize,
    clients: usize,
    grouped: bool,
) -> Result<ErasureRun> {
    use ledger_app::ErasedBy;
    use ledger_types::RequestId;

    let ScratchLedger {
        ledger,
        read,
        broadcaster: b,
        customers,
        closer,
    } = scratch_customers(scratch, dir, n, grouped).await?;
    let by = ErasedBy::Broadcaster {
        broadcaster_id: b,
        key_id: None,
    };
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in customers.chunks(n.div_ceil(clients.max(1)).max(1)) {
        let (ledger, read, chunk) = (ledger.clone(), read.clone(), chunk.to_vec());
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(chunk.len());
            for c in chunk {
                let start = Instant::now();
                let receipt = ledger.erase(by, c, RequestId::new()).await?;
                anyhow::ensure!(receipt.data_key_destroyed, "a key survived its erasure");
                read.catch_up().await?;
                lat.push(start.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut lat = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        lat.extend(r??);
    }
    let secs = t.elapsed().as_secs_f64();
    closer.close().await;
    lat.sort();
    Ok(ErasureRun {
        grouped,
        clients,
        erasures: n,
        erasures_per_s: n as f64 / secs,
        p50_ms: pct(&lat, 0.50),
        p99_ms: pct(&lat, 0.99),
    })
}

/// One bulk job measurement.
#[derive(Debug, Clone, Serialize)]
struct JobRun {
    customers: usize,
    /// From the submission (validation included) to the last receipt projected.
    customers_per_s: f64,
    validate_ms: f64,
    run_ms: f64,
    project_ms: f64,
}

/// Registers `n` customers, then erases them all with one job as `serve` runs it:
/// submitted and validated, run in chunks (requests filed, erasures appended,
/// the forget list written, keys destroyed in one key-store transaction per chunk,
/// requests completed), every key checked gone, then the read side caught up (the
/// receipts projected). All durable: SQLite `synchronous=FULL`, fsync'd key store
/// and forget list.
async fn job_run(scratch: &Scratch, dir: &Path, n: usize) -> Result<JobRun> {
    use ledger_app::jobs::{SubmitJob, CHUNK};
    use ledger_crypto::KeyState;
    use ledger_events::Actor;
    use ledger_types::JobId;

    let ScratchLedger {
        ledger,
        read,
        broadcaster: b,
        customers,
        closer,
    } = scratch_customers(scratch, dir, n, true).await?;
    let job_id = JobId::new();
    let t = Instant::now();
    let (job, _) = ledger
        .submit_job(SubmitJob {
            job_id,
            by: Actor::Broadcaster {
                broadcaster_id: b,
                key_id: None,
            },
            reference: None,
            customer_ids: customers.clone(),
        })
        .await?;
    anyhow::ensure!(job.state() == Some(ledger_command::JobState::Ready));
    let validated = t.elapsed();
    let job = ledger
        .run_job(job_id, CHUNK, &|_| {})
        .await?
        .context("job held elsewhere")?;
    let ran = t.elapsed();
    read.catch_up().await?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        job.state() == Some(ledger_command::JobState::Succeeded),
        "the job did not succeed: {:?}",
        job.state()
    );
    let keyring = ledger.keyring().clone();
    let alive = tokio::task::spawn_blocking(move || {
        customers
            .iter()
            .filter(|c| matches!(keyring.state(**c), Ok(KeyState::Active(_))))
            .count()
    })
    .await?;
    anyhow::ensure!(alive == 0, "{alive} keys survived their erasure");
    closer.close().await;
    Ok(JobRun {
        customers: n,
        customers_per_s: n as f64 / secs,
        validate_ms: validated.as_secs_f64() * 1e3,
        run_ms: (ran - validated).as_secs_f64() * 1e3,
        project_ms: (secs - ran.as_secs_f64()) * 1e3,
    })
}

/// `ledger bench --jobs N`: one bulk erasure job of N customers, `--runs` times,
/// beside the single-request path (`--erasures` with N/4 customers, 16 clients).
async fn jobs(scratch: &Scratch, dir: &Path, args: &BenchArgs) -> Result<()> {
    let mut runs = Vec::new();
    let mut single = Vec::new();
    for i in 0..args.runs.max(1) {
        let j = job_run(scratch, dir, args.jobs).await?;
        let s = erasure_run(
            scratch,
            dir,
            (args.jobs / 4).max(1),
            args.erasure_clients,
            true,
        )
        .await?;
        if !args.json {
            eprintln!("run {}: {:?} {:?}", i + 1, j, s);
        }
        runs.push(j);
        single.push(s);
    }
    let m = |f: fn(&JobRun) -> f64| median(runs.iter().map(f).collect());
    let summary = serde_json::json!({
        "store": scratch.label(),
        "runs": args.runs.max(1),
        "median": {
            "job_customers": args.jobs,
            "job_customers_per_s": m(|r| r.customers_per_s),
            "job_validate_ms": m(|r| r.validate_ms),
            "job_run_ms": m(|r| r.run_ms),
            "job_project_ms": m(|r| r.project_ms),
            "single_erasure_clients": args.erasure_clients,
            "single_erasures_per_s": median(single.iter().map(|r| r.erasures_per_s).collect()),
            "single_erasure_p50_ms": median(single.iter().map(|r| r.p50_ms).collect()),
            "single_erasure_p99_ms": median(single.iter().map(|r| r.p99_ms).collect()),
        },
        "all_runs": { "jobs": runs, "single": single },
    });
    report(&summary, args.json, |f| {
        println!(
            "bulk erasure job, {} customers: {:.0} customers/s end to end (validate {:.0} ms, run {:.0} ms, project {:.0} ms; median of {} runs)",
            args.jobs,
            f("job_customers_per_s"),
            f("job_validate_ms"),
            f("job_run_ms"),
            f("job_project_ms"),
            args.runs.max(1)
        );
        println!(
            "single erasures, {} clients: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
            args.erasure_clients,
            f("single_erasures_per_s"),
            f("single_erasure_p50_ms"),
            f("single_erasure_p99_ms")
        );
    })
}

/// Prints `summary` as JSON, or calls `text` with its medians by name.
fn report(
    summary: &serde_json::Value,
    json: bool,
    text: impl FnOnce(&dyn Fn(&str) -> f64),
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        let md = &summary["median"];
        text(&|k: &str| md[k].as_f64().unwrap_or(0.0));
    }
    Ok(())
}

/// `ledger bench --erasures N`: the single-request erasure path, with
/// `--erasure-clients` concurrent clients and with one, `--runs` times each.
async fn erasures(scratch: &Scratch, dir: &Path, args: &BenchArgs) -> Result<()> {
    let mut concurrent = Vec::new();
    let mut ungrouped = Vec::new();
    let mut single = Vec::new();
    for i in 0..args.runs.max(1) {
        let (n, clients) = (args.erasures, args.erasure_clients);
        let c = erasure_run(scratch, dir, n, clients, true).await?;
        let u = erasure_run(scratch, dir, n, clients, false).await?;
        let s = erasure_run(scratch, dir, (n / 4).max(1), 1, true).await?;
        if !args.json {
            eprintln!("run {}: {:?} {:?} {:?}", i + 1, c, u, s);
        }
        concurrent.push(c);
        ungrouped.push(u);
        single.push(s);
    }
    let m = |runs: &[ErasureRun], f: fn(&ErasureRun) -> f64| median(runs.iter().map(f).collect());
    let summary = serde_json::json!({
        "store": scratch.label(),
        "runs": args.runs.max(1),
        "median": {
            "erasure_clients": args.erasure_clients,
            "erasures_per_s": m(&concurrent, |r| r.erasures_per_s),
            "erasure_p50_ms": m(&concurrent, |r| r.p50_ms),
            "erasure_p99_ms": m(&concurrent, |r| r.p99_ms),
            "ungrouped_erasures_per_s": m(&ungrouped, |r| r.erasures_per_s),
            "ungrouped_erasure_p50_ms": m(&ungrouped, |r| r.p50_ms),
            "ungrouped_erasure_p99_ms": m(&ungrouped, |r| r.p99_ms),
            "erasures_1_client_per_s": m(&single, |r| r.erasures_per_s),
            "erasure_1_client_p50_ms": m(&single, |r| r.p50_ms),
            "erasure_1_client_p99_ms": m(&single, |r| r.p99_ms),
        },
        "all_runs": { "concurrent": concurrent, "ungrouped": ungrouped, "one_client": single },
    });
    report(&summary, args.json, |f| {
        println!(
            "erasures, {} clients: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms (median of {} runs)",
            args.erasure_clients,
            f("erasures_per_s"),
            f("erasure_p50_ms"),
            f("erasure_p99_ms"),
            args.runs.max(1)
        );
        println!(
            "erasures, {} clients, a key-store transaction each: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
            args.erasure_clients,
            f("ungrouped_erasures_per_s"),
            f("ungrouped_erasure_p50_ms"),
            f("ungrouped_erasure_p99_ms")
        );
        println!(
            "erasures, 1 client: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
            f("erasures_1_client_per_s"),
            f("erasure_1_client_p50_ms"),
            f("erasure_1_client_p99_ms")
        );
    })
}

/// `--publish URL`: the demo data set's public events published to JetStream by
/// the serve loop's sink (pipelined pages, acknowledgements awaited, checkpoint
/// saved per page), `--runs` times, each to a stream of its own; events/s.
#[cfg(feature = "nats")]
async fn publish(dir: &Path, url: &str, args: &BenchArgs) -> Result<()> {
    use ledger_app::demo;
    use ledger_app::feed::public_event;
    use ledger_app::health::Health;

    let (store, ledger) = scratch_ledger(dir)?;
    demo::load(&ledger, &demo::generate(2026, args.customers)).await?;
    let head = store.head().await?;
    let mut events = 0u64;
    let mut after = 0;
    while after < head {
        let page = store.read_all(after, 10_000).await?;
        for r in &page {
            events += u64::from(public_event(r)?.is_some());
            after = r.position;
        }
    }
    let mut rates = Vec::new();
    for run in 0..args.runs.max(1) {
        let id = format!("{}_{run}", std::process::id());
        let target = crate::publish::Target::parse(
            url,
            &format!("LEDGER_BENCH_{id}"),
            &format!("ledger_bench_{id}"),
        )?;
        let views: Arc<dyn ledger_projections::ViewStore> = Arc::new(
            ledger_store_sqlite::SqliteViewStore::open(&dir.join(format!("views-{run}.sqlite")))?,
        );
        let sink = crate::publish::sink(&target, store.clone(), views);
        let health = Health::new();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let done = async {
            while health.sink().is_none_or(|s| s.position < head) {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(600),
                    "not published within 10 minutes: {:?}",
                    health.sink()
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let secs = started.elapsed().as_secs_f64();
            let _ = stop_tx.send(true);
            Ok::<f64, anyhow::Error>(secs)
        };
        let stop = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        let (_, secs) = tokio::join!(sink.run(stop, &health), done);
        let secs = secs?;
        ledger_sink_nats::delete_stream(url, target.stream()).await?;
        let rate = events as f64 / secs;
        eprintln!(
            "run {}: {events} events in {secs:.2}s: {rate:.0} events/s",
            run + 1
        );
        rates.push(rate);
    }
    let m = median(rates.clone());
    if args.json {
        println!(
            "{}",
            serde_json::json!({"publish": {"events": events, "records": head, "events_per_second": rates, "median_events_per_second": m}})
        );
    } else {
        println!("JetStream publishing: {events} public events ({head} records), median {m:.0} events/s over {} runs", rates.len());
    }
    Ok(())
}

/// An empty SQLite log and key store in `dir` (emptied first), and a ledger on them.
pub(crate) fn scratch_ledger(dir: &Path) -> Result<(Arc<dyn EventStore>, ledger_app::Ledger)> {
    use ledger_crypto::{Kek, Keyring, SqliteKeyStore};
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&dir.join("events.sqlite"))?);
    let keys = SqliteKeyStore::open(&dir.join("keys.sqlite"))?;
    let ledger = ledger_app::Ledger::new(
        store.clone(),
        Arc::new(Keyring::new(Kek::generate(), Arc::new(keys))),
    );
    Ok((store, ledger))
}

async fn read_side(dir: &Path, args: &BenchArgs) -> Result<()> {
    use ledger_app::{demo, read::ReadSide};
    use rand::{Rng, SeedableRng};

    let (store, ledger) = scratch_ledger(dir)?;
    let data = demo::generate(2026, args.customers);
    let t = Instant::now();
    let summary = demo::load(&ledger, &data).await?;
    let load_s = t.elapsed().as_secs_f64();

    let views = Arc::new(ledger_store_sqlite::SqliteViewStore::open(
        &dir.join("views.sqlite"),
    )?);
    let t = Instant::now();
    let read = ReadSide::open(store.clone(), ledger.keyring().clone(), views).await?;
    let first_s = t.elapsed().as_secs_f64();
    // `ledger projections rebuild`: forget the rows, then read with chain checks,
    // decode, fold and persist rows and checkpoints. The search index is not part
    // of it (it lives in memory and is built at start); it is timed apart.
    let mut rebuilds = Vec::new();
    let mut reindex_ms = Vec::new();
    for _ in 0..args.runs.max(1) {
        let report_side = ReadSide::open_unindexed(
            store.clone(),
            ledger.keyring().clone(),
            Arc::new(ledger_store_sqlite::SqliteViewStore::open(
                &dir.join("views.sqlite"),
            )?),
        )
        .await?;
        let r = report_side.rebuild(None).await?;
        rebuilds.push(r.events as f64 / r.seconds);
        reindex_ms.push(read.reindex().await?.as_secs_f64() * 1000.0);
    }
    // The same fold in memory only (read with chain checks, decode, fold; nothing
    // persisted, no search index): what the peer's "projection rebuild" measures.
    let mut folds = Vec::new();
    for _ in 0..args.runs.max(1) {
        folds.push(fold_in_memory(&store).await?);
    }
    // The floor: every row read, nothing decoded or verified; then the records
    // read with both chains verified (the store's read path), nothing decoded.
    let scanner = SqliteStore::open_read_only(&dir.join("events.sqlite"), false)?;
    let (mut scans, mut replays) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        let (rows, _bytes) = scanner.raw_scan().await?;
        scans.push(rows as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let (mut after, mut n) = (0, 0u64);
        loop {
            let page = store.read_all(after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            n += page.len() as u64;
        }
        replays.push(n as f64 / t.elapsed().as_secs_f64());
    }
    let limit = median(scans.clone());
    let share = |v: f64| v / limit;

    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (mut by_email, mut by_name) = (Vec::new(), Vec::new());
    let mut misses = 0;
    for _ in 0..2_000 {
        let dc = &data.customers[rng.gen_range(0..data.customers.len())];
        let Some(ledger_command::CustomerCommand::Register {
            profile,
            broadcaster_id,
            ..
        }) = dc.commands.first()
        else {
            continue;
        };
        let t = Instant::now();
        let hits = read.search(*broadcaster_id, &profile.email, 20)?;
        by_email.push(t.elapsed());
        if !hits.contains(&dc.id) {
            misses += 1;
        }
        let prefix: String = profile.last_name.chars().take(3).collect();
        let t = Instant::now();
        let hits = read.search(*broadcaster_id, &prefix, 20)?;
        by_name.push(t.elapsed());
        if hits.is_empty() {
            misses += 1;
        }
    }
    anyhow::ensure!(misses == 0, "{misses} searches did not find their customer");
    by_email.sort();
    by_name.sort();
    let ms = |d: &[Duration], p: f64| pct(d, p);
    let us = |v: f64| v * 1000.0;
    let report = serde_json::json!({
        "customers": summary.customers,
        "events": summary.events,
        "demo_load_events_per_s": summary.events as f64 / load_s,
        "first_open_seconds": first_s,
        "raw_scan_events_per_s_median": limit,
        "replay_chains_verified_events_per_s_median": median(replays.clone()),
        "replay_share_of_raw_scan": share(median(replays.clone())),
        "fold_share_of_raw_scan": share(median(folds.clone())),
        "rebuild_share_of_raw_scan": share(median(rebuilds.clone())),
        "rebuild_events_per_s_runs": rebuilds,
        "rebuild_events_per_s_median": median(rebuilds.clone()),
        "fold_in_memory_events_per_s_median": median(folds.clone()),
        "search_index_build_ms_median": median(reindex_ms.clone()),
        "search_email_p50_us": us(ms(&by_email, 0.5)),
        "search_email_p99_us": us(ms(&by_email, 0.99)),
        "search_name_prefix_p50_us": us(ms(&by_name, 0.5)),
        "search_name_prefix_p99_us": us(ms(&by_name, 0.99)),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "ledger bench --read-side: {} customers, {} events (demo load {:.0} events/s)",
        summary.customers,
        summary.events,
        summary.events as f64 / load_s
    );
    println!("  raw scan of the log (every row read, nothing decoded or verified, the limit): median {limit:.0} events/s");
    println!(
        "  replay with both chains verified (nothing decoded): median {:.0} events/s ({:.2} of the raw scan)",
        median(replays.clone()),
        share(median(replays.clone()))
    );
    println!(
        "  projections folded in memory (read + verify + decode + fold):  median {:.0} events/s ({:.2} of the raw scan)",
        median(folds.clone()),
        share(median(folds.clone()))
    );
    println!(
        "  projection rebuild from zero (read + verify + decode + fold + persist): median {:.0} events/s over {} runs ({:.2} of the raw scan)",
        median(rebuilds.clone()),
        rebuilds.len(),
        share(median(rebuilds.clone()))
    );
    println!(
        "  search index built from the views (open every profile): median {:.0} ms for {} customers",
        median(reindex_ms.clone()),
        summary.customers
    );
    println!(
        "  search by email:        p50 {:.1} us  p99 {:.1} us  (2,000 queries, in-process)",
        us(ms(&by_email, 0.5)),
        us(ms(&by_email, 0.99))
    );
    println!(
        "  search by name prefix:  p50 {:.1} us  p99 {:.1} us  (3 letters, first 20 hits)",
        us(ms(&by_name, 0.5)),
        us(ms(&by_name, 0.99))
    );
    Ok(())
}

/// Reads the whole log (chains verified), decodes and folds it into a fresh read
/// model, with reading and decoding on one task and folding on another. Returns
/// events/s.
async fn fold_in_memory(store: &Arc<dyn EventStore>) -> Result<f64> {
    let t = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                let page = store.read_all(after, 10_000).await?;
                let Some(last) = page.last() else { break };
                after = last.position;
                let decoded = page
                    .iter()
                    .map(ledger_app::decode_record)
                    .collect::<Result<Vec<_>, _>>()?;
                if tx.send((page, decoded)).await.is_err() {
                    break;
                }
            }
            anyhow::Ok(())
        })
    };
    let mut model = ledger_projections::ReadModel::new();
    let mut n = 0u64;
    while let Some((page, decoded)) = rx.recv().await {
        for (r, e) in page.iter().zip(&decoded) {
            model.apply(&ledger_projections::Envelope {
                position: r.position,
                event_id: r.event_id,
                recorded_at: r.recorded_at,
                event: e,
            });
        }
        n += page.len() as u64;
    }
    reader.await??;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_database_keeps_the_hosts_and_options_of_the_url() {
        let url = "postgres://u@h1:1,h2:2/ledger?target_session_attrs=read-write";
        let scratch = scratch_url(url, "ledger_bench_7").unwrap();
        assert_eq!(
            scratch,
            "postgres://u@h1:1,h2:2/ledger_bench_7?target_session_attrs=read-write"
        );
        let s = Scratch::Postgres {
            admin_url: url.into(),
            database: scratch,
        };
        assert_eq!(s.db_name(), Some("ledger_bench_7"));
        assert_eq!(
            scratch_url("postgres://u@h/db", "x").unwrap(),
            "postgres://u@h/x"
        );
        assert!(scratch_url("postgres://u@h", "x").is_err());
    }
}
