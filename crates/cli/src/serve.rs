//! `ledger serve`: the HTTP API and the projector in one process, and
//! `ledger api-key`: the operator's key commands.
//!
//! Configuration, highest precedence first: command-line flags, environment
//! variables (`LEDGER_LISTEN`, `LEDGER_STORE`, ...), the optional config file
//! (`--config FILE`, TOML or JSON by extension; an unknown key is refused, named),
//! built-in defaults. The layers are merged by `figment` ([`settings`]; ADR 0020).
//! With none of them, `ledger serve` stores everything in `./ledger-data` and
//! listens on 127.0.0.1:8080.
//!
//! Shutdown on SIGTERM or SIGINT: stop accepting, finish in-flight requests, stop
//! the projector, close the event store (everything acknowledged is committed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use figment::providers::{Env, Format as _, Json, Serialized, Toml};
use figment::Figment;
use ledger_api::auth::{new_token, ADMIN_KEY_PREFIX};
use ledger_api::{AdminKey, ApiConfig, ApiKeys, ApiState, Services};
use ledger_app::demo;
use ledger_app::health::{Health, Part};
use ledger_app::transparency::SigningPolicy;
use ledger_store::responses::ResponseStore;

use crate::backends::{Backends, StoreKind, Stores};
use crate::folder::Access;
use crate::listener::Limits;
use ledger_types::BroadcasterId;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// The flags of `ledger serve`. Each setting is also an environment variable and a
/// config file key ([`ENV`], [`Settings`]); a flag given wins over both.
#[derive(Debug, Args, Serialize)]
pub struct ServeArgs {
    /// Address to listen on; env LEDGER_LISTEN, config key `listen` [default:
    /// 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Optional configuration file (TOML, or JSON if it ends in .json); unknown keys
    /// are refused.
    #[arg(long, env = "LEDGER_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Fill an empty store with the demo data set first, and print one API key per
    /// demo broadcaster.
    #[arg(long)]
    #[serde(skip)]
    demo: bool,
    /// Customers in the demo data set; env LEDGER_DEMO_CUSTOMERS, config key
    /// `demo_customers` [default: 10000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    demo_customers: Option<usize>,
    /// Largest request body, in bytes; env LEDGER_BODY_LIMIT, config key
    /// `body_limit` [default: 65536].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    body_limit: Option<usize>,
    /// Request timeout in seconds; env LEDGER_REQUEST_TIMEOUT_SECS, config key
    /// `request_timeout_secs` [default: 30].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    request_timeout_secs: Option<u64>,
    /// How long answers to writes sent with an Idempotency-Key are kept, in seconds;
    /// env LEDGER_IDEMPOTENCY_TTL_SECS, config key `idempotency_ttl_secs`
    /// [default: 86400].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_ttl_secs: Option<u64>,
    /// Most connections open at once; keep it below the open-files limit
    /// (LimitNOFILE) minus what the stores need; env LEDGER_MAX_CONNECTIONS, config
    /// key `max_connections` [default: 768].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    /// Seconds a connection has to send a complete request head; env
    /// LEDGER_HEADER_READ_TIMEOUT_SECS, config key `header_read_timeout_secs`
    /// [default: 10].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    header_read_timeout_secs: Option<u64>,
    /// Seconds a kept-alive connection may wait for its next request; keep it longer
    /// than a proxy's upstream keep-alive; env LEDGER_IDLE_TIMEOUT_SECS, config key
    /// `idle_timeout_secs` [default: 75].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout_secs: Option<u64>,
    #[command(flatten)]
    #[serde(flatten)]
    signing: SigningArgs,
    #[command(flatten)]
    #[serde(flatten)]
    publish: PublishArgs,
    #[command(flatten)]
    #[serde(flatten)]
    webhooks: WebhookArgs,
}

/// Webhook delivery (ADR 0028).
#[derive(Debug, Args, Serialize)]
pub struct WebhookArgs {
    /// Take webhook URLs in plain http and to loopback, private and link-local
    /// addresses (tests, closed networks); env LEDGER_ALLOW_PRIVATE_WEBHOOKS, config
    /// key `allow_private_webhooks` [default: false: https to public addresses only].
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_private_webhooks: bool,
    /// Seconds a webhook attempt may take, connection included; env
    /// LEDGER_WEBHOOK_TIMEOUT_SECS, config key `webhook_timeout_secs` [default: 10].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_timeout_secs: Option<u64>,
    /// The longest wait between two retries of a failed webhook (the first is 1 s,
    /// then doubling); env LEDGER_WEBHOOK_MAX_RETRY_INTERVAL_SECS, config key
    /// `webhook_max_retry_interval_secs` [default: 3600].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_max_retry_interval_secs: Option<u64>,
    /// Disable an endpoint whose deliveries have failed for this long; env
    /// LEDGER_WEBHOOK_GIVE_UP_AFTER_SECS, config key `webhook_give_up_after_secs`
    /// [default: 259200, 3 days].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_give_up_after_secs: Option<u64>,
}

/// Publishing the public events to NATS JetStream (ADR 0027; Cargo feature `nats`).
#[derive(Debug, Args, Serialize)]
pub struct PublishArgs {
    /// Publish every public event (`ledger-events-v1`, every tenant) to NATS
    /// JetStream at this URL, e.g. nats://127.0.0.1:4222, on subjects
    /// PREFIX.<broadcaster id or `platform`>.<type>; env LEDGER_PUBLISH, config key
    /// `publish` [default: none].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<String>,
    /// The JetStream stream to publish to (created if missing); env
    /// LEDGER_PUBLISH_STREAM, config key `publish_stream` [default: LEDGER].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_stream: Option<String>,
    /// The subjects' first token(s); env LEDGER_PUBLISH_PREFIX, config key
    /// `publish_prefix` [default: ledger].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_prefix: Option<String>,
}

/// Signed tree heads (ADR 0014).
#[derive(Debug, Args, Serialize)]
pub struct SigningArgs {
    /// File holding the Ed25519 key that signs tree heads, as 64 hex characters; env
    /// LEDGER_SIGNING_KEY_FILE, config key `signing_key` [default:
    /// DATA/signing-key.hex, created with mode 0600 on first run; move it out of the
    /// data folder in production, like the KEK].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_key: Option<PathBuf>,
    /// Sign a tree head once the log has grown by this many records; env
    /// LEDGER_SIGN_EVERY_EVENTS, config key `sign_every_events` [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    sign_every_events: Option<u64>,
    /// Sign a tree head at least this often while the log grows, in seconds; env
    /// LEDGER_SIGN_EVERY_SECS, config key `sign_every_secs` [default: 10].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    sign_every_secs: Option<u64>,
}

/// Every setting of `ledger serve`, once the layers are merged; its field names are
/// the config file's keys, and a key that is none of them is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    listen: String,
    /// Where the stores are (`--store` is a global flag); `None`: the data folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    demo_customers: usize,
    body_limit: usize,
    request_timeout_secs: u64,
    idempotency_capacity: usize,
    idempotency_ttl_secs: u64,
    ready_max_lag: u64,
    max_connections: usize,
    header_read_timeout_secs: u64,
    idle_timeout_secs: u64,
    /// `None`: `DATA/signing-key.hex`.
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_key: Option<PathBuf>,
    sign_every_events: u64,
    sign_every_secs: u64,
    /// `None`: nothing is published.
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<String>,
    publish_stream: String,
    publish_prefix: String,
    allow_private_webhooks: bool,
    webhook_timeout_secs: u64,
    webhook_max_retry_interval_secs: u64,
    webhook_give_up_after_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let api = ApiConfig::default();
        let signing = SigningPolicy::default();
        let hooks = ledger_webhooks::DispatchConfig::default();
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            store: None,
            demo_customers: 10_000,
            body_limit: api.body_limit,
            request_timeout_secs: api.timeout.as_secs(),
            idempotency_capacity: api.idempotency_capacity,
            idempotency_ttl_secs: api.idempotency_ttl.as_secs(),
            ready_max_lag: api.ready_max_lag,
            max_connections: Limits::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout_secs: Limits::DEFAULT_HEADER_READ_TIMEOUT_SECS,
            idle_timeout_secs: Limits::DEFAULT_IDLE_TIMEOUT_SECS,
            signing_key: None,
            sign_every_events: signing.every_events,
            sign_every_secs: signing.every.as_secs(),
            publish: None,
            publish_stream: "LEDGER".to_owned(),
            publish_prefix: "ledger".to_owned(),
            allow_private_webhooks: false,
            webhook_timeout_secs: hooks.timeout.as_secs(),
            webhook_max_retry_interval_secs: hooks.max_retry_interval.as_secs(),
            webhook_give_up_after_secs: hooks.give_up_after.as_secs(),
        }
    }
}

/// The environment variables of the settings (after the `LEDGER_` prefix) and the
/// keys they set. The other `LEDGER_*` variables (`LEDGER_DATA`, `LEDGER_KEK`,
/// `LEDGER_ADMIN_KEY`, `LEDGER_LOG`, ...) are not settings of this layer and are
/// left alone. `idempotency_capacity` and `ready_max_lag` are file-only.
const ENV: &[(&str, &str)] = &[
    ("LISTEN", "listen"),
    ("STORE", "store"),
    ("DEMO_CUSTOMERS", "demo_customers"),
    ("BODY_LIMIT", "body_limit"),
    ("REQUEST_TIMEOUT_SECS", "request_timeout_secs"),
    ("IDEMPOTENCY_TTL_SECS", "idempotency_ttl_secs"),
    ("MAX_CONNECTIONS", "max_connections"),
    ("HEADER_READ_TIMEOUT_SECS", "header_read_timeout_secs"),
    ("IDLE_TIMEOUT_SECS", "idle_timeout_secs"),
    ("SIGNING_KEY_FILE", "signing_key"),
    ("SIGN_EVERY_EVENTS", "sign_every_events"),
    ("SIGN_EVERY_SECS", "sign_every_secs"),
    ("PUBLISH", "publish"),
    ("PUBLISH_STREAM", "publish_stream"),
    ("PUBLISH_PREFIX", "publish_prefix"),
    ("ALLOW_PRIVATE_WEBHOOKS", "allow_private_webhooks"),
    ("WEBHOOK_TIMEOUT_SECS", "webhook_timeout_secs"),
    (
        "WEBHOOK_MAX_RETRY_INTERVAL_SECS",
        "webhook_max_retry_interval_secs",
    ),
    ("WEBHOOK_GIVE_UP_AFTER_SECS", "webhook_give_up_after_secs"),
];

/// The settings: defaults, then the config file, then the environment variables
/// named `{env_prefix}{ENV name}`, then the flags (`store`: the global `--store`,
/// which clap has already taken from `LEDGER_STORE` if the flag is not given).
fn settings(args: &ServeArgs, store: Option<&str>, env_prefix: &str) -> Result<Settings> {
    let mut layers = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(path) = &args.config {
        if !path.is_file() {
            bail!("cannot read config file {}", path.display());
        }
        layers = if path.extension().is_some_and(|e| e == "json") {
            layers.merge(Json::file_exact(path))
        } else {
            layers.merge(Toml::file_exact(path))
        };
    }
    let prefix = env_prefix.to_owned();
    let env = Env::prefixed(env_prefix).filter_map(move |name| {
        let (var, key) = ENV.iter().find(|(n, _)| name == *n)?;
        // An empty variable counts as unset, as with clap's `env`.
        let set = std::env::var_os(format!("{prefix}{var}")).is_some_and(|v| !v.is_empty());
        set.then(|| (*key).into())
    });
    layers = layers.merge(env).merge(Serialized::defaults(args));
    if let Some(s) = store {
        layers = layers.merge(Serialized::default("store", s));
    }
    // figment's message names the key and where it came from (the file, the
    // variable); keys and these values are not personal data.
    layers
        .extract()
        .map_err(|e| anyhow!("invalid configuration: {e}"))
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
        // Followers of the change feed would otherwise hold the shutdown open.
        ledger_api::feed::close_streams();
    }
}

pub async fn run(
    args: ServeArgs,
    data: &Path,
    kek_file: Option<&Path>,
    forget_list: Option<&Path>,
    stores: Stores<'_>,
) -> Result<ExitCode> {
    let store = stores.store;
    let conf = settings(&args, store, "LEDGER_")?;
    let addr: SocketAddr = conf
        .listen
        .parse()
        .with_context(|| format!("--listen {}: expected IP:PORT", conf.listen))?;
    let config = ApiConfig {
        body_limit: conf.body_limit,
        // An erasure job's 10,000 ids (about 400 KB) fit, whatever `body_limit` is.
        bulk_body_limit: ApiConfig::default().bulk_body_limit,
        timeout: Duration::from_secs(conf.request_timeout_secs),
        idempotency_capacity: conf.idempotency_capacity,
        idempotency_ttl: Duration::from_secs(conf.idempotency_ttl_secs),
        ready_max_lag: conf.ready_max_lag,
        allow_private_webhooks: conf.allow_private_webhooks,
    };
    if conf.webhook_timeout_secs == 0 || conf.webhook_max_retry_interval_secs == 0 {
        bail!("invalid configuration: webhook_timeout_secs and webhook_max_retry_interval_secs must be at least 1");
    }
    let hooks = ledger_webhooks::DispatchConfig {
        allow_private: conf.allow_private_webhooks,
        timeout: Duration::from_secs(conf.webhook_timeout_secs),
        max_retry_interval: Duration::from_secs(conf.webhook_max_retry_interval_secs),
        give_up_after: Duration::from_secs(conf.webhook_give_up_after_secs),
        ..ledger_webhooks::DispatchConfig::default()
    };
    // Checked before anything is opened: a malformed URL, or one this build
    // cannot publish to, changes nothing.
    let publish = conf
        .publish
        .as_deref()
        .map(|u| crate::publish::Target::parse(u, &conf.publish_stream, &conf.publish_prefix))
        .transpose()?;
    crate::publish::check_built(publish.as_ref())?;
    let limits = Limits::new(
        Some(conf.max_connections),
        Some(conf.header_read_timeout_secs),
        Some(conf.idle_timeout_secs),
    )?;
    let store_url = conf.store.clone();
    let backends = Backends::open(
        Stores {
            store: store_url.as_deref(),
            ..stores
        },
        data,
        kek_file,
        forget_list,
        Access::Create,
        "serve",
    )
    .await?;
    let ledger = backends.ledger().await?;

    let demo_data = if args.demo {
        let n = conf.demo_customers;
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
            conf.signing_key.as_deref(),
            SigningPolicy {
                every_events: conf.sign_every_events.max(1),
                every: Duration::from_secs(conf.sign_every_secs),
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
    let webhooks = ledger_webhooks::Registry::new(backends.views(), ledger.store().clone());
    let dispatcher = ledger_webhooks::Dispatcher::new(
        webhooks.clone(),
        ledger_app::feed::Feed::new(
            ledger.store().clone(),
            read.clone(),
            ledger.requests().clone(),
        ),
        ledger.store().clone(),
        hooks,
    )
    .map_err(|e| anyhow!(e))?;
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
            webhooks: Some(webhooks),
        },
    );
    // The state's recorder is the process's too: the `metrics` macros anywhere in
    // the process report into what `/metrics` renders (ADR 0020).
    state.metrics.install_global();
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
    // Deferred erasure requests complete by themselves once the customer's last
    // subscription ends (ADR 0023).
    let erasure_process = {
        let (ledger, health, stop) = (ledger.clone(), health.clone(), stopped());
        tokio::spawn(async move {
            let process = ledger_app::process::ErasureProcess::new(ledger);
            process
                .run(stop, |r| match r {
                    Ok(_) => health.ok(Part::ErasureProcess),
                    Err(e) => health.failed(Part::ErasureProcess, e),
                })
                .await
        })
    };
    // Bulk erasure jobs run to their end here, and resume after any restart
    // (ADR 0025).
    let erasure_jobs = {
        let (ledger, health, stop) = (ledger.clone(), health.clone(), stopped());
        tokio::spawn(async move {
            let runner = ledger_app::jobs::JobRunner::new(ledger);
            runner
                .run(stop, |r| match r {
                    Ok(_) => health.ok(Part::ErasureJobs),
                    Err(e) => health.failed(Part::ErasureJobs, e),
                })
                .await
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
    // Signed webhooks, one worker per enabled endpoint, each from its own
    // checkpoint (ADR 0028).
    let webhook_dispatcher = {
        let stop = stopped();
        tokio::spawn(async move { dispatcher.run(stop).await })
    };
    // The public events to NATS JetStream, from its own checkpoint (ADR 0027).
    let publisher = publish.as_ref().map(|target| {
        info!(
            stream = target.stream(),
            "publishing the public events to NATS JetStream"
        );
        crate::publish::spawn(
            target,
            ledger.store().clone(),
            backends.views(),
            health.clone(),
            stopped(),
        )
    });

    info!(%local, "serving");
    crate::listener::serve(listener, app, limits, shutdown).await;

    let _ = stop_tx.send(true);
    let _ = tokio::join!(
        projector,
        reconciler,
        space_probe,
        expiry,
        tree_follower,
        erasure_process,
        erasure_jobs,
        webhook_dispatcher
    );
    if let Some(p) = publisher {
        let _ = p.await;
    }
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
        /// The broadcaster the key acts for (UUID; it must exist in the store).
        #[arg(long)]
        broadcaster: String,
        /// A note for operators, shown by `list` (not secret, not personal).
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke an API key by its id (the running server stops accepting it within a
    /// second).
    Revoke {
        /// The key's id (UUID, as `create` and `list` print it; never the token).
        #[arg(long)]
        key_id: String,
    },
    /// List a broadcaster's keys (ids and dates, never tokens).
    List {
        /// Only this broadcaster's keys (UUID; default: every key).
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
                #[cfg(feature = "postgres")]
                StoreKind::Postgres(url) => {
                    ledger_store_postgres::PostgresReader::new(&url)?
                        .read_stream(&stream, 1)
                        .await?
                }
                #[cfg(feature = "kurrentdb")]
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(argv: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("serve").chain(argv.iter().copied()))
            .expect("valid flags")
            .serve
    }

    /// Why the settings with this config file are refused.
    fn refused(config: &Path) -> String {
        settings(
            &args(&["--config", config.to_str().unwrap()]),
            None,
            "LEDGER_TEST_REFUSED_",
        )
        .unwrap_err()
        .to_string()
    }

    /// The tests that set variables use a prefix of their own, one at a time.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    #[test]
    fn with_nothing_given_the_defaults_are_the_documented_ones() {
        let s = settings(&args(&[]), None, "LEDGER_TEST_NONE_").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(
            (s.listen.as_str(), s.body_limit, s.request_timeout_secs),
            ("127.0.0.1:8080", 65_536, 30)
        );
        assert_eq!(
            (
                s.max_connections,
                s.header_read_timeout_secs,
                s.idle_timeout_secs
            ),
            (768, 10, 75)
        );
        assert_eq!((s.sign_every_events, s.sign_every_secs), (1000, 10));
        assert_eq!((s.idempotency_capacity, s.ready_max_lag), (1_000_000, 1000));
    }

    #[test]
    fn a_file_value_is_overridden_by_the_environment_which_is_overridden_by_a_flag() {
        let _lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.toml");
        std::fs::write(
            &file,
            "listen = \"10.0.0.1:1000\"\nbody_limit = 1000\nrequest_timeout_secs = 7\n\
             store = \"sqlite:///from/file\"\nsigning_key = \"/from/file.hex\"\n\
             ready_max_lag = 5\n",
        )
        .unwrap();
        let p = "LEDGER_TEST_LAYERS_";
        std::env::set_var(format!("{p}LISTEN"), "10.0.0.2:2000");
        std::env::set_var(format!("{p}BODY_LIMIT"), "2000");
        std::env::set_var(format!("{p}SIGNING_KEY_FILE"), "/from/env.hex");
        std::env::set_var(format!("{p}DATA"), "not a setting: left alone");
        let config = file.to_str().unwrap();
        let s = settings(
            &args(&["--config", config, "--listen", "10.0.0.3:3000"]),
            None,
            p,
        );
        let only_env = settings(&args(&["--config", config]), Some("sqlite:///flag"), p);
        for k in ["LISTEN", "BODY_LIMIT", "SIGNING_KEY_FILE", "DATA"] {
            std::env::remove_var(format!("{p}{k}"));
        }
        let (s, only_env) = (s.unwrap(), only_env.unwrap());
        // Flag over environment over file over default.
        assert_eq!(s.listen, "10.0.0.3:3000");
        assert_eq!(only_env.listen, "10.0.0.2:2000");
        assert_eq!(s.body_limit, 2000);
        assert_eq!(s.signing_key.as_deref(), Some(Path::new("/from/env.hex")));
        assert_eq!(s.request_timeout_secs, 7);
        assert_eq!(s.ready_max_lag, 5);
        assert_eq!(s.idle_timeout_secs, 75);
        // The global --store (or LEDGER_STORE, through clap) over the file.
        assert_eq!(s.store.as_deref(), Some("sqlite:///from/file"));
        assert_eq!(only_env.store.as_deref(), Some("sqlite:///flag"));
    }

    #[test]
    fn publish_settings_come_from_the_environment_and_the_flags() {
        let _lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let d = settings(&args(&[]), None, "LEDGER_TEST_NONE_").unwrap();
        assert_eq!(
            (
                d.publish,
                d.publish_stream.as_str(),
                d.publish_prefix.as_str()
            ),
            (None, "LEDGER", "ledger")
        );
        let p = "LEDGER_TEST_PUBLISH_";
        std::env::set_var(format!("{p}PUBLISH"), "nats://10.0.0.1:4222");
        std::env::set_var(format!("{p}PUBLISH_STREAM"), "FROM_ENV");
        let s = settings(&args(&["--publish-prefix", "flag.prefix"]), None, p);
        let flag = settings(&args(&["--publish", "nats://10.0.0.2:4222"]), None, p);
        for k in ["PUBLISH", "PUBLISH_STREAM"] {
            std::env::remove_var(format!("{p}{k}"));
        }
        let (s, flag) = (s.unwrap(), flag.unwrap());
        assert_eq!(s.publish.as_deref(), Some("nats://10.0.0.1:4222"));
        assert_eq!(
            (s.publish_stream.as_str(), s.publish_prefix.as_str()),
            ("FROM_ENV", "flag.prefix")
        );
        assert_eq!(flag.publish.as_deref(), Some("nats://10.0.0.2:4222"));
    }

    #[test]
    fn addresses_from_the_environment_stay_strings_and_an_empty_one_is_unset() {
        let _lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let p = "LEDGER_TEST_ADDRESSES_";
        for (given, got) in [
            ("[::1]:8080", "[::1]:8080"),
            ("0.0.0.0:8080", "0.0.0.0:8080"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("", "127.0.0.1:8080"),
        ] {
            std::env::set_var(format!("{p}LISTEN"), given);
            let s = settings(&args(&[]), None, p);
            std::env::remove_var(format!("{p}LISTEN"));
            assert_eq!(s.unwrap().listen, got, "{given:?}");
        }
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("ledger.toml", "listen = \"127.0.0.1:1\"\nbody_limt = 5\n"),
            (
                "ledger.json",
                "{\"listen\": \"127.0.0.1:1\", \"body_limt\": 5}",
            ),
        ] {
            let file = dir.path().join(name);
            std::fs::write(&file, text).unwrap();
            let e = refused(&file);
            assert!(e.contains("body_limt"), "{e}");
            assert!(e.contains(name), "the file is named: {e}");
        }
    }

    #[test]
    fn a_wrong_type_or_a_missing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.toml");
        std::fs::write(&file, "body_limit = \"big\"\n").unwrap();
        let e = refused(&file);
        assert!(e.contains("body_limit"), "{e}");
        let e = refused(&dir.path().join("missing.toml"));
        assert!(e.contains("cannot read config file"), "{e}");
    }
}
