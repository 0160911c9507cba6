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
    /// Latency of each first arrival, in ms, per message id and endpoint path.
    latencies: Vec<f64>,
    seen: HashMap<(String, String), ()>,
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
    let occurred = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["occurred_at"].as_str().map(str::to_owned))
        .and_then(|t| Timestamp::parse_rfc3339(&t).ok());
    if let Ok(mut g) = r.got.lock() {
        if !verified {
            g.bad_signatures += 1;
        }
        if g.seen.insert((id, endpoint), ()).is_none() {
            if let Some(t) = occurred {
                g.latencies.push((now.millis() - t.millis()) as f64);
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
    use ledger_command::CustomerCommand;
    use ledger_events::{Integration, Profile};
    use ledger_types::{BroadcasterId, CustomerId};

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

    // The load: `rate` registrations a second, in ticks of 10 ms.
    let b = BroadcasterId::new();
    ledger
        .register_broadcaster(
            b,
            "Bench Broadcaster",
            Integration::WhiteLabel,
            Timestamp::now(),
        )
        .await?;
    let per_tick = rate.div_ceil(100);
    let ticks = (secs * 100) as usize;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut written = 0usize;
    for t in 0..ticks {
        let due = started + Duration::from_millis(10 * t as u64);
        tokio::time::sleep_until(due.into()).await;
        for i in 0..per_tick.min(rate * secs as usize - written) {
            let ledger = ledger.clone();
            let n = written + i;
            tasks.spawn(async move {
                let c = CustomerId::new();
                let cmd = CustomerCommand::Register {
                    customer_id: c,
                    broadcaster_id: b,
                    profile: Profile {
                        email: format!("hook{n}@example.org"),
                        password_hash: "argon2id$bench".into(),
                        first_name: "Bench".into(),
                        last_name: format!("Hook{n}"),
                        address: None,
                        company_name: None,
                        phone_number: None,
                        custom_answers: vec![],
                        registration_ip: None,
                    },
                    at: Timestamp::now(),
                };
                ledger.execute(c, &cmd).await
            });
        }
        written += per_tick.min(rate * secs as usize - written);
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
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
    let (mut lat, bad, last) = {
        let g = receiver
            .got
            .lock()
            .map_err(|_| anyhow::anyhow!("receiver lock"))?;
        (g.latencies.clone(), g.bad_signatures, g.last_at)
    };
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
            "latency_p50_ms": pct(&lat, 0.50),
            "latency_p99_ms": pct(&lat, 0.99),
            "latency_max_ms": pct(&lat, 1.0),
            "backlog_records": backlog_records,
            "backlog_deliveries": backlog,
            "backlog_deliveries_per_s": replay_rate,
        }
    });
    if json {
        println!("{figures}");
    } else {
        println!(
            "webhooks: {rate} events/s x {endpoints} endpoint(s) for {secs}s: {expected} deliveries at {sustained:.0}/s, \
             latency from the event's time to arrival p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             backlog of {backlog} deliveries again at {replay_rate:.0}/s",
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            pct(&lat, 1.0),
        );
    }
    Ok(())
}
