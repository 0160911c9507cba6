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
use ledger_api::{AdminKey, ApiConfig, ApiKeys, ApiState, Services};
use ledger_app::demo;
use ledger_app::health::{Health, Part};
use ledger_app::transparency::SigningPolicy;
use ledger_store::responses::ResponseStore;

use crate::backends::{Backends, StoreKind};
use crate::folder::Access;
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
    /// How long answers to writes sent with an Idempotency-Key are kept, in
    /// seconds [default: 86400].
    #[arg(long, env = "LEDGER_IDEMPOTENCY_TTL_SECS")]
    idempotency_ttl_secs: Option<u64>,
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
    #[command(flatten)]
    signing: SigningArgs,
}

/// Signed tree heads (ADR 0014).
#[derive(Debug, Args)]
pub struct SigningArgs {
    /// File holding the Ed25519 key that signs tree heads, as 64 hex characters
    /// [default: DATA/signing-key.hex, created with mode 0600 on first run; move it
    /// out of the data folder in production, like the KEK].
    #[arg(long, env = "LEDGER_SIGNING_KEY_FILE")]
    signing_key: Option<PathBuf>,
    /// Sign a tree head once the log has grown by this many records [default: 1000].
    #[arg(long, env = "LEDGER_SIGN_EVERY_EVENTS")]
    sign_every_events: Option<u64>,
    /// Sign a tree head at least this often while the log grows, in seconds
    /// [default: 10].
    #[arg(long, env = "LEDGER_SIGN_EVERY_SECS")]
    sign_every_secs: Option<u64>,
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
    idempotency_ttl_secs: Option<u64>,
    ready_max_lag: Option<u64>,
    max_connections: Option<usize>,
    header_read_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    signing_key: Option<PathBuf>,
    sign_every_events: Option<u64>,
    sign_every_secs: Option<u64>,
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

/// The future of SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives once the
/// server answers requests is always a graceful shutdown, never the default
/// action that kills the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let (mut term, mut int) = (term, int);
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term => {},
                _ = int => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        info!("shutdown signal received: finishing in-flight requests");
    }
}

pub async fn run(
    args: ServeArgs,
    data: &Path,
    kek_file: Option<&Path>,
    forget_list: Option<&Path>,
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
        idempotency_ttl: args
            .idempotency_ttl_secs
            .or(file.idempotency_ttl_secs)
            .map_or(defaults.idempotency_ttl, Duration::from_secs),
        ready_max_lag: file.ready_max_lag.unwrap_or(defaults.ready_max_lag),
    };
    let limits = crate::listener::Limits::new(
        args.max_connections.or(file.max_connections),
        args.header_read_timeout_secs
            .or(file.header_read_timeout_secs),
        args.idle_timeout_secs.or(file.idle_timeout_secs),
    )?;
    let store_url = store.map(str::to_owned).or(file.store);
    let backends = Backends::open(
        store_url.as_deref(),
        state_store,
        data,
        kek_file,
        forget_list,
        Access::Create,
        "serve",
    )
    .await?;
    let ledger = backends.ledger().await?;

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
    let transparency = Arc::new(
        crate::transparency::open_log(
            &ledger,
            data,
            args.signing.signing_key.or(file.signing_key).as_deref(),
            SigningPolicy {
                every_events: args
                    .signing
                    .sign_every_events
                    .or(file.sign_every_events)
                    .unwrap_or(SigningPolicy::default().every_events)
                    .max(1),
                every: args
                    .signing
                    .sign_every_secs
                    .or(file.sign_every_secs)
                    .map_or(SigningPolicy::default().every, Duration::from_secs),
                ..SigningPolicy::default()
            },
        )
        .await?,
    );
    let keys = Arc::new(ApiKeys::open(&data.join("api-keys.jsonl"))?);
    let admin = admin_key(data)?;

    // Before the socket exists, so no request can be answered before a SIGTERM
    // is handled gracefully.
    let shutdown = shutdown_signal();
    let listener =
        crate::listener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    println!("ledger API listening on http://{local}");
    println!("  dashboard: http://{local}/ (sign in with a broadcaster API key)");
    println!("  OpenAPI document: http://{local}/v1/openapi.json");
    if let Some(list) = backends.forget_list() {
        println!("  forget list: {list} (keep it apart from the data folder's backups)");
    }

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

    // Where the stores are local files, only the space probe below clears a full
    // disk (on a full disk some SQLite writes still succeed, in room a failed
    // commit left in a WAL file).
    let folders = backends.local_folders().to_vec();
    let health = Arc::new(if folders.is_empty() {
        Health::new()
    } else {
        Health::with_space_probe()
    });
    let responses = backends.responses();
    let (ttl, capacity) = (config.idempotency_ttl, config.idempotency_capacity);
    let state = ApiState::with_services(
        ledger.clone(),
        read.clone(),
        keys,
        admin,
        config,
        Services {
            health: health.clone(),
            responses: responses.clone(),
            transparency: Some(transparency.clone()),
        },
    );
    let app = ledger_api::router(state);

    // The background loops: the projector and the reconciler restart by themselves
    // after any error and report into `health`; the space probe clears a "storage
    // full" state once the data folder takes writes again.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let projector = {
        let (read, health, stop) = (read.clone(), health.clone(), stopped());
        tokio::spawn(async move { read.follow(stop, &health).await })
    };
    let reconciler = {
        let (ledger, health, stop) = (ledger.clone(), health.clone(), stopped());
        tokio::spawn(async move {
            let shredder = ledger.shredder();
            // Space back: finish pending destructions now, not after the backoff.
            let space = async {
                loop {
                    health.space_returned().await;
                    shredder.retry_now();
                }
            };
            let sweeps = shredder.run(stop, |r| match r {
                Ok(_) => health.ok(Part::Reconciler),
                Err(e) => health.failed(Part::Reconciler, e),
            });
            tokio::select! {
                () = sweeps => {}
                () = space => {}
            }
        })
    };
    let tree_follower = {
        let (t, health, stop) = (transparency.clone(), health.clone(), stopped());
        tokio::spawn(async move { t.follow(stop, &health).await })
    };
    let expiry = {
        let stop = stopped();
        tokio::spawn(async move { expire_answers(&*responses, ttl, capacity, stop).await })
    };
    let space_probe = {
        let (health, stop) = (health.clone(), stopped());
        tokio::spawn(async move { probe_space(&folders, &health, stop).await })
    };

    info!(%local, "serving");
    crate::listener::serve(listener, app, limits, shutdown).await;

    let _ = stop_tx.send(true);
    let _ = tokio::join!(projector, reconciler, space_probe, expiry, tree_follower);
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

/// Every minute, forgets saved idempotent answers older than `ttl` and the oldest
/// beyond `capacity`.
async fn expire_answers(
    responses: &dyn ResponseStore,
    ttl: Duration,
    capacity: usize,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let before = ledger_types::Timestamp::from_millis(
            ledger_types::Timestamp::now()
                .millis()
                .saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        );
        match responses.expire(before, capacity).await {
            Ok(0) => {}
            Ok(n) => info!(answers = n, "expired saved idempotent answers"),
            Err(e) => warn!(error = %e, "could not expire saved idempotent answers"),
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

/// While a store reports a full disk, tries every 2 s to write (and sync) a 1 MiB
/// file in each of `folders` (where the SQLite files are); once that works in all,
/// space is back and readiness stops reporting `storage`. (With no local folder,
/// PostgreSQL, a later successful write clears it instead.)
async fn probe_space(
    folders: &[PathBuf],
    health: &Health,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if folders.is_empty() || health.storage_full().is_none() {
            continue;
        }
        let dirs = folders.to_vec();
        let written = tokio::task::spawn_blocking(move || {
            dirs.iter().all(|dir| {
                use std::io::Write as _;
                let path = dir.join(".space-probe");
                let r = std::fs::File::create(&path).and_then(|mut f| {
                    f.write_all(&vec![0u8; 1 << 20])?;
                    f.sync_all()
                });
                let _ = std::fs::remove_file(&path);
                r.is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if written {
            info!("the data folder takes writes again: storage no longer full");
            health.space_back();
        }
    }
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
    // The keys file may change while the server runs; the store is only read.
    crate::folder::prepare(data, Access::Read)?;
    let keys = ApiKeys::open(&data.join("api-keys.jsonl"))?;
    match cmd {
        ApiKeyCommand::Create { broadcaster, label } => {
            let b = BroadcasterId::parse(&broadcaster)?;
            // Read only: the server may be running and holding the writer.
            let stream = ledger_events::streams::broadcaster(b);
            let records = match StoreKind::parse(store, data)? {
                StoreKind::Sqlite(p) => {
                    let s = ledger_store_sqlite::SqliteStore::open_read_only(&p, false)?;
                    ledger_store::EventStore::read_stream(&s, &stream, 1).await?
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
