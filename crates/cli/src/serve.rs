//! `ledger serve`: the HTTP API and the projector in one process, and
//! `ledger api-key`: the operator's key commands.
//!
//! Configuration, highest precedence first: command-line flags, environment
//! variables (`LEDGER_LISTEN`, `LEDGER_STORE`, ...), the optional config file
//! (`--config FILE`, TOML or JSON by extension), built-in defaults. With none of
//! them, `ledger serve` stores everything in `./ledger-data` and listens on
//! 127.0.0.1:8080.
//!
//! Shutdown on SIGTERM or SIGINT: stop accepting, finish in-flight requests, stop
//! the projector, close the event store (everything acknowledged is committed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ledger_api::auth::{new_token, ADMIN_KEY_PREFIX};
use ledger_api::{AdminKey, ApiConfig, ApiKeys, ApiState};
use ledger_app::demo;

use crate::backends::{Backends, StoreKind};
use ledger_types::BroadcasterId;
use serde::Deserialize;
use tracing::{info, warn};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "LEDGER_LISTEN")]
    listen: Option<String>,
    /// Optional configuration file (TOML, or JSON if it ends in .json).
    #[arg(long, env = "LEDGER_CONFIG")]
    config: Option<PathBuf>,
    /// Fill an empty store with the demo data set first, and print one API key per
    /// demo broadcaster.
    #[arg(long)]
    demo: bool,
    /// Customers in the demo data set.
    #[arg(long, env = "LEDGER_DEMO_CUSTOMERS")]
    demo_customers: Option<usize>,
    /// Largest request body, in bytes [default: 65536].
    #[arg(long, env = "LEDGER_BODY_LIMIT")]
    body_limit: Option<usize>,
    /// Request timeout in seconds [default: 30].
    #[arg(long, env = "LEDGER_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: Option<u64>,
    /// Most connections open at once; keep it below the open-files limit
    /// (LimitNOFILE) minus what the stores need [default: 768].
    #[arg(long, env = "LEDGER_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a connection has to send a complete request head [default: 10].
    #[arg(long, env = "LEDGER_HEADER_READ_TIMEOUT_SECS")]
    header_read_timeout_secs: Option<u64>,
    /// Seconds a kept-alive connection may wait for its next request; keep it longer
    /// than a proxy's upstream keep-alive [default: 75].
    #[arg(long, env = "LEDGER_IDLE_TIMEOUT_SECS")]
    idle_timeout_secs: Option<u64>,
}

/// The config file. Every field is optional; flags and environment win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    store: Option<String>,
    demo_customers: Option<usize>,
    body_limit: Option<usize>,
    request_timeout_secs: Option<u64>,
    idempotency_capacity: Option<usize>,
    ready_max_lag: Option<u64>,
    max_connections: Option<usize>,
    header_read_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
}

fn read_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))
    } else {
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The admin key: `LEDGER_ADMIN_KEY` if set; else the hash in `DATA/admin-key.sha256`;
/// else a new key, printed once, whose hash only is written there (mode 0600).
fn admin_key(data: &Path) -> Result<AdminKey> {
    if let Ok(t) = std::env::var("LEDGER_ADMIN_KEY") {
        if t.trim().len() < 32 {
            bail!("LEDGER_ADMIN_KEY must be at least 32 characters");
        }
        return Ok(AdminKey::from_token(t.trim()));
    }
    let path = data.join("admin-key.sha256");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return AdminKey::from_hash_hex(&text)
            .with_context(|| format!("{} must hold 64 hex characters", path.display()));
    }
    let token = new_token(ADMIN_KEY_PREFIX);
    let key = AdminKey::from_token(&token);
    write_private(&path, &format!("{}\n", key.hash_hex()))?;
    println!(
        "admin key (shown once; only its hash is kept, in {}):",
        path.display()
    );
    println!("  {token}");
    Ok(key)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutdown signal received: finishing in-flight requests");
}

pub async fn run(
    args: ServeArgs,
    data: &Path,
    kek_file: Option<&Path>,
    store: Option<&str>,
    state_store: Option<&str>,
) -> Result<ExitCode> {
    let file = match &args.config {
        Some(p) => read_config(p)?,
        None => FileConfig::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen}: expected IP:PORT"))?;
    let defaults = ApiConfig::default();
    let config = ApiConfig {
        body_limit: args
            .body_limit
            .or(file.body_limit)
            .unwrap_or(defaults.body_limit),
        timeout: args
            .request_timeout_secs
            .or(file.request_timeout_secs)
            .map_or(defaults.timeout, Duration::from_secs),
        idempotency_capacity: file
            .idempotency_capacity
            .unwrap_or(defaults.idempotency_capacity),
        idempotency_ttl: defaults.idempotency_ttl,
        ready_max_lag: file.ready_max_lag.unwrap_or(defaults.ready_max_lag),
    };
    let limits = crate::listener::Limits::new(
        args.max_connections.or(file.max_connections),
        args.header_read_timeout_secs
            .or(file.header_read_timeout_secs),
        args.idle_timeout_secs.or(file.idle_timeout_secs),
    )?;
    let store_url = store.map(str::to_owned).or(file.store);
    let backends = Backends::open(store_url.as_deref(), state_store, data, kek_file).await?;
    let ledger = backends.ledger(true).await?;

    let demo_data = if args.demo {
        let n = args
            .demo_customers
            .or(file.demo_customers)
            .unwrap_or(10_000);
        let data_set = demo::generate(2026, n);
        if ledger.store().head().await? == 0 {
            eprintln!("filling the empty store with the demo data set ({n} customers)...");
            let started = std::time::Instant::now();
            let s = demo::load(&ledger, &data_set).await?;
            eprintln!(
                "demo data written: {} broadcasters, {} customers, {} events in {:.1}s",
                s.broadcasters,
                s.customers,
                s.events,
                started.elapsed().as_secs_f64()
            );
        } else {
            eprintln!("the store already holds events: demo data not written again");
        }
        Some(data_set)
    } else {
        None
    };

    let read = Arc::new(backends.read_side().await?);
    let keys = Arc::new(ApiKeys::open(&data.join("api-keys.jsonl"))?);
    let admin = admin_key(data)?;

    let listener =
        crate::listener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    println!("ledger API listening on http://{local}");
    println!("  dashboard: http://{local}/ (sign in with a broadcaster API key)");
    println!("  OpenAPI document: http://{local}/v1/openapi.json");

    if let Some(d) = &demo_data {
        println!("demo API keys (one per broadcaster; shown once, stored hashed):");
        let mut tokens = std::collections::HashMap::new();
        for b in &d.broadcasters {
            if ledger.broadcaster(b.id).await.is_err() {
                continue;
            }
            let (_, token) = keys.issue(b.id, Some("demo".into()))?;
            let kind = match b.integration {
                ledger_events::Integration::WhiteLabel => "white_label",
                ledger_events::Integration::Shared => "shared",
            };
            println!("  {}  {:<20} {:<11} {token}", b.id, b.name, kind);
            tokens.insert(b.id, token);
        }
        // A customer of the first broadcaster with a key, to try the API on.
        let sample = d.customers.iter().find_map(|c| match c.commands.first() {
            Some(ledger_command::CustomerCommand::Register { broadcaster_id, .. }) => {
                tokens.get(broadcaster_id).map(|t| (c.id, t))
            }
            _ => None,
        });
        if let Some((c, token)) = sample {
            println!(
                "try: curl -H 'Authorization: Bearer {token}' http://{local}/v1/customers/{c}"
            );
        }
    }

    let state = ApiState::new(ledger.clone(), read.clone(), keys, admin, config);
    let app = ledger_api::router(state);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower = {
        let read = read.clone();
        tokio::spawn(async move {
            let stop = async {
                let _ = stop_rx.await;
            };
            if let Err(e) = read.follow(stop).await {
                warn!(code = e.code(), error = %e, "projector stopped with an error");
            }
        })
    };

    info!(%local, "serving");
    crate::listener::serve(listener, app, limits, shutdown_signal()).await;

    let _ = stop_tx.send(());
    let _ = follower.await;
    // Persist what the projector folded last, then commit everything queued.
    if let Err(e) = read.catch_up().await {
        warn!(code = e.code(), "final read model catch-up failed");
    }
    drop(read);
    drop(ledger);
    backends.close().await;
    info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Issue an API key for a broadcaster; prints the token once (only its hash is
    /// stored). Works while the server runs.
    Create {
        #[arg(long)]
        broadcaster: String,
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke an API key by its id (the running server stops accepting it within a
    /// second).
    Revoke {
        #[arg(long)]
        key_id: String,
    },
    /// List a broadcaster's keys (ids and dates, never tokens).
    List {
        #[arg(long)]
        broadcaster: Option<String>,
    },
}

pub async fn api_key(cmd: ApiKeyCommand, data: &Path, store: Option<&str>) -> Result<ExitCode> {
    std::fs::create_dir_all(data)?;
    let keys = ApiKeys::open(&data.join("api-keys.jsonl"))?;
    match cmd {
        ApiKeyCommand::Create { broadcaster, label } => {
            let b = BroadcasterId::parse(&broadcaster)?;
            // Read only: the server may be running and holding the writer.
            let stream = ledger_events::streams::broadcaster(b);
            let records = match StoreKind::parse(store, data)? {
                StoreKind::Sqlite(p) => {
                    let s = ledger_store_sqlite::SqliteStore::open(&p)?;
                    let r = ledger_store::EventStore::read_stream(&s, &stream, 1).await?;
                    s.close().await;
                    r
                }
                StoreKind::Postgres(url) => {
                    ledger_store_postgres::PostgresReader::new(&url)?
                        .read_stream(&stream, 1)
                        .await?
                }
                StoreKind::Kurrent(url) => {
                    let s = ledger_store_kurrentdb::connect(&url).await?;
                    ledger_store::EventStore::read_stream(&s, &stream, 1).await?
                }
            };
            if records.is_empty() {
                eprintln!("no broadcaster {b} in this store");
                return Ok(ExitCode::from(3));
            }
            let (info, token) = keys.issue(b, label)?;
            println!("key id: {}", info.key_id);
            println!("token (shown once): {token}");
        }
        ApiKeyCommand::Revoke { key_id } => {
            let k = uuid::Uuid::parse_str(&key_id).context("--key-id must be a UUID")?;
            match keys.revoke(k) {
                Ok(_) => println!("key {k} revoked"),
                Err(ledger_api::auth::KeyFileError::UnknownKey) => {
                    eprintln!("no key {k}");
                    return Ok(ExitCode::from(3));
                }
                Err(e) => return Err(e.into()),
            }
        }
        ApiKeyCommand::List { broadcaster } => {
            let b = broadcaster
                .as_deref()
                .map(BroadcasterId::parse)
                .transpose()?;
            for k in keys.list(b) {
                println!(
                    "{}  {}  {}  {}{}",
                    k.key_id,
                    k.broadcaster_id,
                    k.issued_at.to_rfc3339(),
                    if k.revoked { "revoked" } else { "active" },
                    k.label.map(|l| format!("  {l}")).unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
