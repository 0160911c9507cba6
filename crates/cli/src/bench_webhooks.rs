//! `ledger bench --webhooks RATE`: webhook fan-out on the embedded store, in one
//! process: customers registered at RATE per second for `--webhook-secs`, each
//! event delivered to `--webhook-endpoints` platform-wide endpoints, all pointing
//! at a local receiver (an axum server on loopback that checks every signature),
//! through the dispatcher `serve` runs. Reports deliveries per second and the
//! latency from the event's own time (taken before its append, so the figure
//! includes the commit) to its arrival; then the rate at which a backlog of every
//! message since position 0 is delivered again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ledger_types::Timestamp;
use ledger_webhooks::{DispatchConfig, Dispatcher, NewEndpoint, Owner, Registry};

#[derive(Debug, Default)]
struct Received {
    /// Latency of each first arrival from the event's own time, in ms.
    latencies: Vec<f64>,
    /// Each first arrival's log position and time (ms since the epoch).
    arrivals: Vec<(u64, i64)>,
    seen: std::collections::HashSet<(String, String)>,
    bad_signatures: u64,
    last_at: Option<Instant>,
}

struct Receiver {
    secrets: Mutex<HashMap<String, standardwebhooks::Webhook>>,
    got: Mutex<Received>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    axum::extract::Path(endpoint): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = Timestamp::now();
    let verified = r
        .secrets
        .lock()
        .map(|s| {
            s.get(&endpoint)
                .is_some_and(|w| w.verify(&body, &headers).is_ok())
        })
        .unwrap_or(false);
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let parsed = serde_json::from_slice::<serde_json::Value>(&body).ok();
    let occurred = parsed
        .as_ref()
        .and_then(|v| v["occurred_at"].as_str())
        .and_then(|t| Timestamp::parse_rfc3339(t).ok());
    let position = parsed.as_ref().and_then(|v| v["position"].as_u64());
    if let Ok(mut g) = r.got.lock() {
        if !verified {
            g.bad_signatures += 1;
        }
        if g.seen.insert((id, endpoint)) {
            if let Some(t) = occurred {
                g.latencies.push((now.millis() - t.millis()) as f64);
            }
            if let Some(p) = position {
                g.arrivals.push((p, now.millis()));
            }
        }
        g.last_at = Some(Instant::now());
    }
    StatusCode::NO_CONTENT
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub async fn run(dir: &Path, rate: usize, secs: u64, endpoints: usize, json: bool) -> Result<()> {
    use ledger_types::CustomerId;

    ensure!(
        rate > 0 && secs > 0 && endpoints > 0,
        "--webhooks, --webhook-secs and --webhook-endpoints must be at least 1"
    );
    let (store, ledger) = crate::bench::scratch_ledger(dir)?;
    let views: Arc<dyn ledger_projections::ViewStore> = Arc::new(
        ledger_store_sqlite::SqliteViewStore::open(&dir.join("views.sqlite"))?,
    );

    // The receiver.
    let receiver = Arc::new(Receiver {
        secrets: Mutex::new(HashMap::new()),
        got: Mutex::new(Received::default()),
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route("/hooks/{endpoint}", axum::routing::post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // The endpoints and the dispatcher.
    let registry = Registry::new(views, store.clone());
    registry.ready().await?;
    let mut ids = Vec::new();
    for i in 0..endpoints {
        let (e, secret) = registry
            .create(
                Owner::Platform,
                NewEndpoint {
                    url: format!("http://127.0.0.1:{port}/hooks/e{i}"),
                    ..NewEndpoint::default()
                },
                true,
            )
            .await?;
        receiver
            .secrets
            .lock()
            .map_err(|_| anyhow::anyhow!("receiver lock"))?
            .insert(format!("e{i}"), standardwebhooks::Webhook::new(&secret)?);
        ids.push(e.id);
    }
    let dispatcher = Dispatcher::new(
        registry.clone(),
        ledger_app::feed::Feed::unscoped(store.clone()),
        store.clone(),
        DispatchConfig {
            allow_private: true,
            ..DispatchConfig::default()
        },
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let dispatching = tokio::spawn(async move {
        dispatcher
            .run(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await;
    });

    // When each position became durable: the head's advance, the signal the
    // dispatcher itself waits on.
    let commits: Arc<Mutex<Vec<i64>>> =
        Arc::new(Mutex::new(vec![0; store.head().await? as usize + 1]));
    let watcher = {
        let (store, commits) = (store.clone(), commits.clone());
        tokio::spawn(async move {
            let mut seen = store.head().await?;
            loop {
                let head = store.wait_for_head(seen, Duration::from_secs(1)).await?;
                let now = Timestamp::now().millis();
                if let Ok(mut c) = commits.lock() {
                    c.resize(head as usize + 1, now);
                }
                seen = head;
            }
            #[allow(unreachable_code)]
            Ok::<(), ledger_store::StoreError>(())
        })
    };

    // The load: `rate` registrations a second, in ticks of 10 ms.
    let b = crate::bench::bench_broadcaster(&ledger).await?;
    let per_tick = rate.div_ceil(100);
    let ticks = (secs * 100) as usize;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut written = 0usize;
    let mut append_ms = Vec::with_capacity(rate * secs as usize);
    for t in 0..ticks {
        let due = started + Duration::from_millis(10 * t as u64);
        tokio::time::sleep_until(due.into()).await;
        for i in 0..per_tick.min(rate * secs as usize - written) {
            let ledger = ledger.clone();
            let n = written + i;
            tasks.spawn(async move {
                let c = CustomerId::new();
                let cmd = crate::bench::register(c, b, n);
                let t = Instant::now();
                ledger.execute(c, &cmd).await.map(|_| t.elapsed())
            });
        }
        written += per_tick.min(rate * secs as usize - written);
        while let Some(r) = tasks.try_join_next() {
            append_ms.push(r??.as_secs_f64() * 1000.0);
        }
    }
    while let Some(r) = tasks.join_next().await {
        append_ms.push(r??.as_secs_f64() * 1000.0);
    }
    append_ms.sort_by(f64::total_cmp);
    let appended_in = started.elapsed().as_secs_f64();
    let expected = written * endpoints;
    let count = || receiver.got.lock().map(|g| g.seen.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while count() < expected {
        ensure!(
            Instant::now() < deadline,
            "{} of {expected} delivered after 2 minutes",
            count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    watcher.abort();
    let (mut lat, bad, last, arrivals) = {
        let g = receiver
            .got
            .lock()
            .map_err(|_| anyhow::anyhow!("receiver lock"))?;
        (
            g.latencies.clone(),
            g.bad_signatures,
            g.last_at,
            g.arrivals.clone(),
        )
    };
    let mut from_commit: Vec<f64> = {
        let c = commits
            .lock()
            .map_err(|_| anyhow::anyhow!("commit times lock"))?;
        arrivals
            .iter()
            .filter_map(|(p, at)| {
                c.get(*p as usize)
                    .filter(|t| **t > 0)
                    .map(|t| (at - t).max(0) as f64)
            })
            .collect()
    };
    from_commit.sort_by(f64::total_cmp);
    ensure!(bad == 0, "{bad} messages failed their signature check");
    let elapsed = last
        .map_or(started.elapsed(), |l| l - started)
        .as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let sustained = expected as f64 / elapsed;

    // The backlog: everything since position 0 again, to every endpoint.
    let head = store.head().await?;
    let backlog_records = head as usize;
    if let Ok(mut g) = receiver.got.lock() {
        g.seen.clear();
    }
    let replay_started = Instant::now();
    for id in &ids {
        registry.redeliver_since(Owner::Platform, *id, 0).await?;
    }
    // The broadcaster's registration is a public event too.
    let backlog = (written + 1) * endpoints;
    let deadline = Instant::now() + Duration::from_secs(300);
    while count() < backlog {
        ensure!(
            Instant::now() < deadline,
            "{} of {backlog} redelivered after 5 minutes",
            count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let replay_rate = backlog as f64 / replay_started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    dispatching.await.context("the dispatcher")?;

    let figures = serde_json::json!({
        "webhooks": {
            "endpoints": endpoints,
            "offered_events_per_s": rate,
            "seconds": secs,
            "deliveries": expected,
            "deliveries_per_s": sustained,
            "appended_events_per_s": written as f64 / appended_in,
            "append_p50_ms": pct(&append_ms, 0.50),
            "append_p99_ms": pct(&append_ms, 0.99),
            "commit_to_delivery_p50_ms": pct(&from_commit, 0.50),
            "commit_to_delivery_p99_ms": pct(&from_commit, 0.99),
            "commit_to_delivery_max_ms": pct(&from_commit, 1.0),
            "event_time_to_delivery_p50_ms": pct(&lat, 0.50),
            "event_time_to_delivery_p99_ms": pct(&lat, 0.99),
            "backlog_records": backlog_records,
            "backlog_deliveries": backlog,
            "backlog_deliveries_per_s": replay_rate,
        }
    });
    if json {
        println!("{figures}");
    } else {
        println!(
            "webhooks: {rate} events/s x {endpoints} endpoint(s) for {secs}s (appended at {:.0}/s, append p50 {:.1} ms, p99 {:.1} ms): {expected} deliveries at {sustained:.0}/s, \
             commit to delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
             (from the event's own time, append included: p50 {:.1} ms, p99 {:.1} ms); \
             backlog of {backlog} deliveries again at {replay_rate:.0}/s",
            written as f64 / appended_in,
            pct(&append_ms, 0.50),
            pct(&append_ms, 0.99),
            pct(&from_commit, 0.50),
            pct(&from_commit, 0.99),
            pct(&from_commit, 1.0),
            pct(&lat, 0.50),
            pct(&lat, 0.99),
        );
    }
    Ok(())
}
