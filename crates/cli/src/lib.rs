//! `ledger`: the compliance ledger's command line, as a library so that more than one
//! binary can run it: `ledger` (this package's `src/main.rs`) and the system tests'
//! `ledger-under-test` (the top-level `tests/` package, ADR 0021), which Cargo can
//! only build and locate for a package's own binaries. [`main`] is the whole program.
//!
//! It is the only crate that picks concrete backends (`backends.rs`: SQLite embedded
//! by default, PostgreSQL and KurrentDB by URL, each behind its Cargo feature) and
//! the only one that uses `anyhow`. Output never contains personal data: ids,
//! counts and codes only.

mod backends;
mod bench;
mod bench_tree;
mod bench_webhooks;
mod events;
mod folder;
mod jobs;
mod listener;
mod publish;
mod revenue;
mod serve;
mod transparency;

use folder::Access;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ledger_app::audit::{self, Anchor};
use ledger_app::{demo, AppError};
use ledger_projections::RevenueFilter;
use ledger_types::{BroadcasterId, CustomerId, RequestId};

#[derive(Debug, Parser)]
#[command(
    name = "ledger",
    version,
    about = "Compliance ledger: an event-sourced system of record with GDPR erasure by crypto-shredding"
)]
struct Cli {
    /// Folder of the embedded store (events, keys, and the KEK unless given elsewhere).
    #[arg(
        long,
        global = true,
        env = "LEDGER_DATA",
        default_value = "./ledger-data"
    )]
    data: PathBuf,
    /// File holding the key-encryption key as 64 hex characters. The environment
    /// variable LEDGER_KEK, if set, takes precedence. Default: DATA/kek.hex, created
    /// with mode 0600 on first run.
    #[arg(long, global = true, env = "LEDGER_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// Where events, keys and projections live: `sqlite://PATH` (default: the
    /// embedded store in --data), `postgres://USER@HOST/DB` (Cargo feature
    /// `postgres`, on by default) or `esdb://HOST:2113` (events only; feature
    /// `kurrentdb`).
    #[arg(long, global = true, env = "LEDGER_STORE")]
    store: Option<String>,
    /// Where keys and projections live when the events are in KurrentDB: a
    /// `postgres://` URL (default: SQLite files in --data).
    #[arg(long, global = true, env = "LEDGER_STATE_STORE")]
    state_store: Option<String>,
    /// A streaming replica of the PostgreSQL --store (a `postgres://` URL) that
    /// serves the read side's catch-up and the audit's replay; each page read there
    /// is confirmed on the primary (or read from it), so nothing the primary lacks
    /// is ever shown.
    #[arg(long, global = true, env = "LEDGER_READ_STORE")]
    read_store: Option<String>,
    /// The forget list: every decided erasure, kept OUTSIDE the data folder so that
    /// restoring an old backup cannot bring an erased customer back (checked at
    /// every start of a writing command). Default: beside the data folder,
    /// DATA.forget-list.ndjson.
    #[arg(long, global = true, env = "LEDGER_FORGET_LIST")]
    forget_list: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of `serve`'s arguments beside the others' costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Fill an empty store with a realistic demo data set.
    Demo {
        /// Number of customers.
        #[arg(long, default_value_t = 10_000)]
        customers: usize,
        /// Seed of the deterministic generator.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Erase a customer's personal data on behalf of a broadcaster; prints the
    /// receipt, or the refusal with its code (exit status 3). With --json and the
    /// tree-head signing key at hand, the receipt carries its Merkle proof.
    Anonymize {
        /// The broadcaster asking for the erasure (UUID); it must be white-label and
        /// the customer's only broadcaster.
        #[arg(long)]
        broadcaster: String,
        /// The customer to erase (UUID).
        #[arg(long)]
        customer: String,
        /// Request id to file the receipt under (default: a new one).
        #[arg(long)]
        request_id: Option<String>,
        /// Print the receipt (or the refusal) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Auditor tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Revenue totals per currency (and rows with --rows) with the digest of their
    /// canonical form; identical before and after any erasure.
    Revenue {
        /// Only this broadcaster's revenue (UUID; default: every broadcaster).
        #[arg(long)]
        broadcaster: Option<String>,
        /// First day (YYYY-MM-DD, UTC), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Last day (YYYY-MM-DD, UTC), inclusive.
        #[arg(long)]
        to: Option<String>,
        /// ISO 4217 currency code.
        #[arg(long)]
        currency: Option<String>,
        /// Print only the digest.
        #[arg(long)]
        digest: bool,
        /// Also print every broadcaster x currency x day x offer row.
        #[arg(long)]
        rows: bool,
        /// Print the totals (and rows) with the digest as JSON.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Print the canonical rows for analysts: `csv` or `ndjson` (exactly what
        /// `GET /v1/revenue` serves for `Accept: text/csv` or
        /// `application/x-ndjson`; the digest on stderr), or `json` (digest, totals
        /// with each currency's exponent, rows with real dates).
        #[arg(long, value_enum, conflicts_with_all = ["digest", "rows"])]
        format: Option<revenue::Format>,
    },
    /// The erasure receipts, oldest first.
    Erasures {
        /// Only the receipts this broadcaster sees (UUID; default: all).
        #[arg(long)]
        broadcaster: Option<String>,
        /// Print the receipts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Erasure requests (GDPR Art. 12), read from the log: list or show.
    ErasureRequests {
        #[command(subcommand)]
        command: RequestsCommand,
    },
    /// Bulk erasure jobs (up to 10,000 customers each): submit, status, cancel.
    ErasureJobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// The change feed: public, PII-free events (docs/events.md) as NDJSON.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Right of access (GDPR Art. 15/20): all personal data held on a customer, as JSON.
    ExportCustomer {
        /// The broadcaster asking (UUID); it must see the customer.
        #[arg(long)]
        broadcaster: String,
        /// The customer whose data is exported (UUID).
        #[arg(long)]
        customer: String,
    },
    /// Projection maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Measure durable append throughput, bulk import and replay on a scratch store.
    Bench(bench::BenchArgs),
    /// Serve the HTTP API (and run the projector) on the embedded store.
    Serve(serve::ServeArgs),
    /// After a restore: compare the forget list with the log and the key store,
    /// re-apply every erasure the restored log lacks and destroy every key of a
    /// customer on the list (every writing command does this at start too).
    RestoreCheck {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Broadcaster API keys (operator command; needs the data folder).
    ApiKey {
        #[command(subcommand)]
        command: serve::ApiKeyCommand,
    },
    /// The Ed25519 key that signs tree heads (ADR 0014).
    SigningKey {
        #[command(subcommand)]
        command: transparency::SigningKeyCommand,
    },
    /// The key-encryption key (operator command; stop the service first).
    Kek {
        #[command(subcommand)]
        command: KekCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KekCommand {
    /// Re-wrap every customer's data key with a new key-encryption key, in one
    /// transaction, and scrub the old wrapped keys from the key store. The current
    /// KEK comes from LEDGER_KEK, --kek-file or DATA/kek.hex as usual; DATA/kek.hex
    /// is replaced by the new key when it was the one in use. Sealed data does not
    /// change. Stop `ledger serve` first.
    Rotate {
        /// File holding the new KEK as 64 hex characters (e.g. `openssl rand -hex 32`).
        #[arg(long)]
        new_kek_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Replay the whole log: chains, contiguity, schema, every erasure honoured,
    /// revenue recomputed equal to the projection. Exit status 1 on any discrepancy.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// A head recorded earlier, as POSITION:LOG_HASH; the log (or the export)
        /// must still hold it.
        #[arg(long)]
        expect_head: Option<String>,
        /// Verify an export file offline instead of the data folder: chains,
        /// contiguity, trailer and revenue digest. Needs no data folder and no keys.
        /// Given twice (the earlier export first), also proves the later export
        /// extends the earlier one (Merkle consistency proof between their heads).
        #[arg(long, value_name = "FILE")]
        from_export: Vec<PathBuf>,
        /// The operator's public key (64 hex characters, `ledger signing-key show`):
        /// an export's signed tree head must verify with it and its root must be
        /// the root recomputed from the records; with --signed-head, the same for
        /// the data folder's log.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// A signed tree head recorded earlier (JSON, as GET /v1/audit/tree-head
        /// serves it) that the data folder's log must still hold. Needs --public-key.
        #[arg(long, value_name = "FILE")]
        signed_head: Option<PathBuf>,
    },
    /// Check an erasure receipt (JSON, as the API serves it) offline against the
    /// operator's public key: its signed tree head, its leaf, and the inclusion
    /// proof from the leaf to the signed root. Needs no data folder.
    VerifyReceipt {
        /// The receipt, as JSON (as the API or `anonymize --json` gives it).
        #[arg(long, value_name = "FILE")]
        receipt: PathBuf,
        /// The operator's public key (64 hex characters, `ledger signing-key show`).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the whole log as NDJSON (sealed fields stay sealed), with a signed
    /// tree head of the exported records in the trailer.
    Export {
        /// The NDJSON file to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The tree-head signing key [default: DATA/signing-key.hex if it exists;
        /// without a key the trailer has no signed head].
        #[arg(long, env = "LEDGER_SIGNING_KEY_FILE", value_name = "FILE")]
        signing_key: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Every tenant's public events after a position, as NDJSON on stdout; with
    /// --follow, keeps waiting for new ones. Read-only; needs no KEK.
    Tail(events::TailArgs),
}

#[derive(Debug, Subcommand)]
enum RequestsCommand {
    /// Every erasure request (or one broadcaster's), oldest first.
    List {
        /// Only this broadcaster's requests (UUID; default: every broadcaster's).
        #[arg(long)]
        broadcaster: Option<String>,
        /// open, deferred, completed, refused or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Only the requests past their due date and not ended.
        #[arg(long)]
        overdue: bool,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// One erasure request, with its receipt once completed (JSON).
    Show {
        /// The erasure request's id (UUID).
        request_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Forget a projection (all if omitted) and fold it again from position zero.
    Rebuild {
        /// The projection to rebuild (default: all of them).
        #[arg(value_enum)]
        name: Option<Projection>,
    },
}

/// `ledger erasure-requests list|show`: the requests folded from the log, as the
/// operator sees them (every broadcaster's, or one's with `--broadcaster`).
async fn erasure_requests(
    command: RequestsCommand,
    backends: &backends::Backends,
) -> Result<ExitCode> {
    use ledger_api::dto::{ErasureRequestDto, ReceiptDto};
    use ledger_app::requests::RequestFilter;
    use ledger_command::RequestStatus;
    use ledger_events::Actor;

    // Requests and receipts hold no personal data: no KEK needed.
    let ledger = backends.reader(false)?;
    let now = ledger_types::Timestamp::now();
    match command {
        RequestsCommand::List {
            broadcaster,
            status,
            overdue,
            json,
        } => {
            let by = match broadcaster
                .as_deref()
                .map(BroadcasterId::parse)
                .transpose()?
            {
                Some(b) => Actor::Broadcaster {
                    broadcaster_id: b,
                    key_id: None,
                },
                None => Actor::Operator,
            };
            let status = status
                .as_deref()
                .map(|s| {
                    RequestStatus::parse(s)
                        .context("--status takes open, deferred, completed, refused or cancelled")
                })
                .transpose()?;
            let index = ledger.requests();
            index.catch_up().await?;
            let filter = RequestFilter {
                status,
                overdue: overdue.then_some(true),
                after: 0,
                limit: usize::MAX,
            };
            let items: Vec<ErasureRequestDto> = index
                .list(&by, &filter, now)
                .items
                .iter()
                .filter_map(|i| ErasureRequestDto::of(&i.request, now))
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                println!("{} erasure requests", items.len());
                for r in &items {
                    println!(
                        "  {} customer {} {}{} received {} due {}",
                        r.request_id,
                        r.customer_id,
                        r.status,
                        if r.overdue { " OVERDUE" } else { "" },
                        r.received_at,
                        r.due_at
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RequestsCommand::Show { request_id } => {
            let id = RequestId::parse(&request_id)?;
            match ledger.erasure_request(id, Actor::Operator).await {
                Ok(o) => {
                    let mut dto = ErasureRequestDto::of(&o.request, now)
                        .context("no such erasure request")?;
                    dto.receipt = o.receipt.as_ref().map(|r| ReceiptDto::of(r, None));
                    println!("{}", serde_json::to_string_pretty(&dto)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(AppError::Refused(r)) => {
                    eprintln!("{}: {r}", r.code());
                    Ok(ExitCode::from(3))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The projections `projections rebuild` can forget and fold again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Projection {
    /// Customer summaries and tombstones (the dashboard's panel and search).
    Customers,
    /// Revenue totals per broadcaster, currency, day and offer, with their digest.
    Revenue,
    /// Erasure receipts (revenue is folded again with them: the receipts hold its
    /// digests).
    Erasures,
}

impl Projection {
    /// The name the read side knows it by.
    fn name(self) -> &'static str {
        match self {
            Projection::Customers => "customers",
            Projection::Revenue => "revenue",
            Projection::Erasures => "erasures",
        }
    }
}

/// The log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// `LEDGER_LOG` is a target filter (`info`, `info,ledger_app=debug`): levels by
/// target prefix, parsed by `tracing_subscriber::filter::Targets`, which needs no
/// regular-expression engine (`EnvFilter`'s span-field matching, which nothing
/// here uses, brought two of the longest crates of a first build; ADR 0024). A
/// value that does not parse means `info`, with a warning that does not echo it.
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let info = || tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    let (filter, invalid) = match std::env::var("LEDGER_LOG") {
        Ok(v) if !v.trim().is_empty() => match v.parse() {
            Ok(f) => (f, false),
            Err(_) => (info(), true),
        },
        _ => (info(), false),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr is a file on a full disk) is
        // dropped. With this on, tracing-subscriber reports the failure with
        // `eprintln!`, which panics when stderr cannot be written either: a request
        // lost its connection, and the SQLite writer thread died for good.
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(filter);
    if format == LogFormat::Json {
        registry.with(layer.json()).init();
    } else {
        registry.with(layer).init();
    }
    if invalid {
        tracing::warn!(
            "LEDGER_LOG is not a valid filter (e.g. `info,ledger_app=debug`); logging at info"
        );
    }
}

fn parse_day(s: &str) -> Result<i64> {
    Ok(
        ledger_types::Timestamp::parse_rfc3339(&format!("{s}T00:00:00Z"))
            .map_err(|_| anyhow::anyhow!("a day must be YYYY-MM-DD"))?
            .day_number(),
    )
}

/// The `ledger` program: parses the arguments, runs the command, and returns the
/// exit status (0 done, 1 failed or a discrepancy found, 3 refused or not found).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let kek_file = cli.kek_file.as_deref();
    let forget_list = cli.forget_list.as_deref();
    let store = cli.store.as_deref();
    let state_store = cli.state_store.as_deref();
    let read_store = cli.read_store.as_deref();
    let stores = backends::Stores {
        store,
        state_store,
        read_store,
    };
    let open = |access: Access, what: &'static str| {
        backends::Backends::open(stores, &cli.data, kek_file, forget_list, access, what)
    };
    match cli.command {
        Command::Demo {
            customers,
            seed,
            json,
        } => {
            let backends = open(Access::Create, "demo").await?;
            let ledger = backends.ledger().await?;
            if ledger.store().head().await? != 0 {
                eprintln!(
                    "the store in {} already holds events; the demo fills an empty store only, nothing written (use --data to pick another folder)",
                    cli.data.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let started = std::time::Instant::now();
            let data = demo::generate(seed, customers);
            let summary = demo::load(&ledger, &data).await?;
            let secs = started.elapsed().as_secs_f64();
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print_demo(&cli.data, &data, &summary, secs);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Anonymize {
            broadcaster,
            customer,
            request_id,
            json,
        } => {
            let b = BroadcasterId::parse(&broadcaster)?;
            let c = CustomerId::parse(&customer)?;
            let r = request_id
                .as_deref()
                .map(RequestId::parse)
                .transpose()?
                .unwrap_or_default();
            let backends = open(Access::Write, "anonymize").await?;
            let ledger = backends.ledger().await?;
            match ledger.anonymize(b, c, r).await {
                Ok(receipt) => {
                    let read = backends.report_side().await?;
                    let record = read.erasure(c)?;
                    if json {
                        let mut v = serde_json::to_value(&receipt)?;
                        if let Some(r) = &record {
                            v["revenue_digest_before"] = r.revenue_digest_before.clone().into();
                            v["revenue_digest_after"] = r.revenue_digest_after.clone().into();
                        }
                        transparency::add_receipt_proof(
                            &mut v,
                            &ledger,
                            &cli.data,
                            receipt.event_position,
                        )
                        .await?;
                        println!("{}", serde_json::to_string_pretty(&v)?);
                    } else {
                        println!("customer {} anonymized", receipt.customer_id);
                        println!("  request id:     {}", receipt.request_id);
                        println!("  broadcaster:    {}", receipt.broadcaster_id);
                        println!("  at:             {}", receipt.at);
                        println!("  event position: {}", receipt.event_position);
                        let cats: Vec<String> = receipt
                            .categories_erased
                            .iter()
                            .map(|c| serde_json::to_string(c).unwrap_or_default())
                            .collect();
                        println!("  erased:         {}", cats.join(", ").replace('"', ""));
                        println!("  data key:       destroyed");
                        if let Some(r) = &record {
                            println!("  revenue digest before: {}", r.revenue_digest_before);
                            println!("  revenue digest after:  {}", r.revenue_digest_after);
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(AppError::Refused(refusal)) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"code": refusal.code(), "message": refusal.to_string()})
                        );
                    } else {
                        println!("refused: {} ({})", refusal.code(), refusal);
                    }
                    Ok(ExitCode::from(3))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    json,
                    expect_head,
                    from_export,
                    public_key,
                    signed_head,
                },
        } if !from_export.is_empty() => transparency::verify_exports(
            &from_export,
            expect_head.as_deref(),
            public_key.as_deref(),
            signed_head.as_deref(),
            json,
        ),
        Command::Audit {
            command:
                AuditCommand::VerifyReceipt {
                    receipt,
                    public_key,
                    json,
                },
        } => transparency::verify_receipt(&receipt, &public_key, json),
        Command::Audit {
            command: AuditCommand::Export { out, signing_key },
        } => {
            let signer = transparency::export_signer(&cli.data, signing_key.as_deref())?;
            let backends = open(Access::Read, "audit export").await?;
            let ledger = backends.reader(false)?;
            let f = std::fs::File::create(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let mut w = std::io::BufWriter::new(f);
            let report =
                ledger_app::export::export_signed(&ledger, &mut w, signer.as_ref()).await?;
            w.into_inner()
                .map_err(|e| anyhow::anyhow!("cannot write {}: {}", out.display(), e.error()))?
                .sync_all()?;
            println!(
                "exported {} events (head {}:{}, revenue digest {}) to {}",
                report.events,
                report.head_position,
                report.head_log_hash,
                report.revenue_digest,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    json,
                    expect_head,
                    from_export: _,
                    public_key,
                    signed_head,
                },
        } => {
            let anchor = expect_head
                .as_deref()
                .map(|s| {
                    Anchor::parse(s).context("--expect-head must be POSITION:64-hex-digit hash")
                })
                .transpose()?;
            // Read-only, beside a running server: one snapshot of the log, the
            // views and the key states, nothing written, nothing reconciled.
            let backends = open(Access::Read, "audit verify").await?;
            let ledger = backends.reader(false)?;
            let mut views_ahead = None;
            let read = match backends.snapshot().await {
                Ok(r) => Some(r),
                Err(e) => {
                    if let Some(
                        a @ (AppError::ViewsAheadOfLog { .. }
                        | AppError::ViewsFromAnotherLog { .. }),
                    ) = e.downcast_ref::<AppError>()
                    {
                        views_ahead = Some((a.code(), e.to_string()));
                    } else {
                        eprintln!("warning: the projections could not be opened, so they are not compared: {e:#}");
                    }
                    None
                }
            };
            let at = match &read {
                Some(r) => r.limit(),
                None => ledger.store().head().await?,
            };
            let report = audit::verify(&ledger, read.as_ref(), anchor, at).await?;
            let mut report = transparency::check_live_head(
                report,
                &ledger,
                signed_head.as_deref(),
                public_key.as_deref(),
            )
            .await?;
            if let Some((code, detail)) = views_ahead {
                report.ok = false;
                report.problems.push(audit::Problem {
                    code,
                    position: Some(at),
                    stream: None,
                    detail: format!("{detail}: the views do not describe this log (restored from another backup?); `ledger serve` or `ledger projections rebuild` folds them again from zero"),
                });
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("audit of {}", cli.data.display());
                println!("  events:               {}", report.events);
                println!("  streams:              {}", report.streams);
                println!("  broadcasters:         {}", report.broadcasters);
                println!("  customers:            {}", report.customers);
                println!("  anonymized customers: {}", report.anonymized_customers);
                println!(
                    "  head:                 {}:{}",
                    report.head_position, report.head_log_hash
                );
                for c in &report.checks {
                    println!("  checked: {c}");
                }
                transparency::print_problems(report.ok, &report.problems);
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Revenue {
            broadcaster,
            from,
            to,
            currency,
            digest,
            rows,
            json,
            format,
        } => {
            let filter = RevenueFilter {
                broadcaster_id: broadcaster
                    .as_deref()
                    .map(BroadcasterId::parse)
                    .transpose()?,
                currency: currency
                    .as_deref()
                    .map(ledger_types::Currency::parse)
                    .transpose()?,
                from_day: from.as_deref().map(parse_day).transpose()?,
                to_day: to.as_deref().map(parse_day).transpose()?,
            };
            let backends = open(Access::Read, "revenue").await?;
            let read = backends.snapshot().await?;
            let report = read.revenue(&filter)?;
            if let Some(format) = format {
                revenue::print(&report, format)?;
            } else if digest {
                println!("{}", report.digest);
            } else if json {
                let mut v = serde_json::json!({
                    "digest": report.digest,
                    "per_currency": report.per_currency.iter().map(|(c, t)| serde_json::json!({"currency": c, "totals": t})).collect::<Vec<_>>(),
                });
                if rows {
                    v["rows"] = serde_json::to_value(
                        report
                            .rows
                            .iter()
                            .map(|(k, t)| serde_json::json!({"key": k, "totals": t}))
                            .collect::<Vec<_>>(),
                    )?;
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<8} {:>16} {:>16} {:>16} {:>10} {:>8}",
                    "currency", "gross", "refunded", "net", "payments", "refunds"
                );
                for (c, t) in &report.per_currency {
                    println!(
                        "{:<8} {:>16} {:>16} {:>16} {:>10} {:>8}",
                        c.as_str(),
                        t.gross_captured,
                        t.refunded,
                        t.net,
                        t.payment_count,
                        t.refund_count
                    );
                }
                if rows {
                    for (k, t) in &report.rows {
                        println!(
                            "  {} {} {} {:<16} gross {} refunded {} net {}",
                            k.broadcaster_id,
                            k.currency,
                            ledger_projections::canonical_day(k.day),
                            k.offer_id,
                            t.gross_captured,
                            t.refunded,
                            t.net
                        );
                    }
                }
                println!("amounts in minor units; digest {}", report.digest);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Erasures { broadcaster, json } => {
            let b = broadcaster
                .as_deref()
                .map(BroadcasterId::parse)
                .transpose()?;
            let backends = open(Access::Read, "erasures").await?;
            let read = backends.snapshot().await?;
            let list = read.erasures(b)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{} erasures", list.len());
                for r in &list {
                    println!(
                        "  {} customer {} by {} at position {} (request {}), revenue digest {} before = {} after",
                        r.at,
                        r.customer_id,
                        r.broadcaster_id,
                        r.position,
                        r.request_id,
                        &r.revenue_digest_before[..16],
                        &r.revenue_digest_after[..16]
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Events {
            command: EventsCommand::Tail(args),
        } => {
            let backends = open(Access::Read, "events tail").await?;
            events::tail(backends.events.clone(), args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ErasureRequests { command } => {
            let backends = open(Access::Read, "erasure-requests").await?;
            erasure_requests(command, &backends).await
        }
        Command::ErasureJobs { command } => {
            let (access, what) = command.access();
            let backends = open(access, what).await?;
            jobs::run(command, backends).await
        }
        Command::ExportCustomer {
            broadcaster,
            customer,
        } => {
            let b = BroadcasterId::parse(&broadcaster)?;
            let c = CustomerId::parse(&customer)?;
            let backends = open(Access::Read, "export-customer").await?;
            let ledger = backends.reader(true)?;
            match ledger_app::access::export_customer(&ledger, b, c).await {
                Ok(doc) => {
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(AppError::Refused(r)) => {
                    println!("refused: {} ({})", r.code(), r);
                    Ok(ExitCode::from(3))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name },
        } => {
            let name = name.map(Projection::name);
            let backends = open(Access::Write, "projections rebuild").await?;
            // Finishes any interrupted erasure before reading.
            backends.ledger().await?;
            let read = backends.report_side().await?;
            let done = read.rebuild(name).await?;
            println!(
                "rebuilt {} from zero: {} events in {:.2}s ({:.0} events/s), now at position {}",
                name.unwrap_or("all projections"),
                done.events,
                done.seconds,
                done.events as f64 / done.seconds.max(1e-9),
                done.position
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            bench::run(&cli.data, store, args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve::run(args, &cli.data, kek_file, forget_list, stores).await,
        Command::RestoreCheck { json } => {
            let backends = open(Access::Write, "restore-check").await?;
            let (_, report) = backends.ledger_checked().await?;
            let report = report.context("no forget list")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("customers on the forget list: {}", report.customers_on_list);
                println!(
                    "erasures re-applied to the log: {}",
                    report.erasures_reapplied
                );
                println!("data keys destroyed again:      {}", report.keys_destroyed);
                println!("customers not in the log:       {}", report.not_in_log);
                println!("erasures added to the list:     {}", report.added_to_list);
                println!(
                    "result: {}",
                    if report.repaired_anything() {
                        "REPAIRED (the log or key store was restored from before some erasures)"
                    } else {
                        "OK, the log and key store honour every erasure on the list"
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiKey { command } => serve::api_key(command, &cli.data, store).await,
        Command::SigningKey { command } => transparency::signing_key(command, &cli.data),
        Command::Kek {
            command: KekCommand::Rotate { new_kek_file },
        } => {
            let new = std::fs::read_to_string(&new_kek_file)
                .map_err(|e| anyhow::anyhow!("cannot read --new-kek-file: {}", e.kind()))
                .and_then(|t| Ok(ledger_crypto::Kek::from_hex(&t)?))?;
            // The writer lock refuses this while `serve` runs (ADR 0015): a running
            // server would go on wrapping new keys with the old KEK.
            let backends = open(Access::Write, "kek rotate").await?;
            // Checks that the current KEK opens the stored keys, and finishes any
            // interrupted erasure first, so no key bound for destruction is re-wrapped.
            backends.ledger().await?;
            let old = backends::load_kek(&cli.data, kek_file, Access::Write)?
                .context("no key-encryption key")?;
            let done = ledger_crypto::rotate_kek(&*backends.keys, &old, &new)?;
            backends.close().await;
            println!(
                "re-wrapped {} data keys with the new key-encryption key ({} already were)",
                done.rewrapped, done.already_new
            );
            if std::env::var_os("LEDGER_KEK").is_none() && kek_file.is_none() {
                let file = backends::default_kek_file(&cli.data);
                new.replace_file(&file).with_context(|| {
                    format!(
                        "the keys are re-wrapped, but {} could not be replaced: copy the new key file there",
                        file.display()
                    )
                })?;
                println!(
                    "{} now holds the new key; back it up apart from the data folder",
                    file.display()
                );
            } else {
                println!(
                    "start ledger with the new key from now on (LEDGER_KEK or --kek-file); the old one opens nothing"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_demo(data_dir: &Path, data: &demo::DemoData, s: &demo::DemoSummary, secs: f64) {
    println!(
        "demo data written to {}: {} broadcasters, {} customers, {} events in {:.1}s",
        data_dir.display(),
        s.broadcasters,
        s.customers,
        s.events,
        secs
    );
    println!("broadcasters:");
    for b in &data.broadcasters {
        let kind = match b.integration {
            ledger_events::Integration::WhiteLabel => "white_label",
            ledger_events::Integration::Shared => "shared",
        };
        println!("  {}  {:<20} {:<11} {}", b.id, b.name, kind, b.currency);
    }
    let show = |label: &str, list: &[(BroadcasterId, CustomerId)]| {
        if let Some((b, c)) = list.first() {
            println!("  # {label}");
            println!(
                "  ledger --data {} anonymize --broadcaster {b} --customer {c}",
                data_dir.display()
            );
        }
    };
    println!("try:");
    show(
        "allowed: white-label, exclusive, no active subscription",
        &s.samples.erasable,
    );
    show(
        "refused: ACTIVE_SUBSCRIPTION",
        &s.samples.active_subscription,
    );
    show(
        "refused: SHARED_ACROSS_BROADCASTERS",
        &s.samples.shared_account,
    );
    show("refused: NOT_WHITE_LABEL", &s.samples.not_white_label);
    println!("  ledger --data {} audit verify", data_dir.display());
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every argument and subcommand below `command`, named by its path, whose help
    /// line is missing or blank.
    fn without_help(command: &clap::Command, path: &str, found: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            // clap's own --help and --version always have theirs; a global flag is
            // checked once, where it is declared, not in every subcommand.
            if arg.is_hide_set() || id == "help" || id == "version" {
                continue;
            }
            if arg.is_global_set() && path != "ledger" {
                continue;
            }
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                found.push(format!("{path} <{id}>"));
            }
            for value in arg.get_possible_values() {
                if !value.is_hide_set()
                    && value
                        .get_help()
                        .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    found.push(format!("{path} <{id}> value {}", value.get_name()));
                }
            }
        }
        for sub in command.get_subcommands() {
            let sub_path = format!("{path} {}", sub.get_name());
            if sub.get_name() != "help"
                && sub
                    .get_about()
                    .is_none_or(|h| h.to_string().trim().is_empty())
            {
                found.push(sub_path.clone());
            }
            without_help(sub, &sub_path, found);
        }
    }

    #[test]
    fn every_argument_and_subcommand_has_a_help_line() {
        let mut command = super::Cli::command();
        command.build();
        let mut found = Vec::new();
        without_help(&command, "ledger", &mut found);
        assert!(found.is_empty(), "without a help line: {found:#?}");
    }
}
