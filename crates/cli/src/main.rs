//! `ledger`: the compliance ledger's binary. It is the only crate that picks concrete
//! backends (SQLite for events and keys, embedded by default) and the only one that
//! uses `anyhow`. Output never contains personal data: ids, counts and codes only.

mod bench;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ledger_app::audit::{self, Anchor};
use ledger_app::{demo, AppError, Ledger};
use ledger_crypto::{Kek, KekSource, Keyring, SqliteKeyStore};
use ledger_store::EventStore;
use ledger_store_sqlite::SqliteStore;
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
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

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
    /// receipt, or the refusal with its code (exit status 3).
    Anonymize {
        #[arg(long)]
        broadcaster: String,
        #[arg(long)]
        customer: String,
        /// Request id to file the receipt under (default: a new one).
        #[arg(long)]
        request_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Auditor tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Measure durable append throughput, bulk import and replay on a scratch store.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Replay the whole log: chains, contiguity, schema, every erasure honoured.
    /// Exit status 1 on any discrepancy.
    Verify {
        #[arg(long)]
        json: bool,
        /// A head recorded earlier, as POSITION:LOG_HASH; the log must still hold it.
        #[arg(long)]
        expect_head: Option<String>,
    },
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEDGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Opens the embedded store, keys and KEK in `data`, then finishes any erasure a
/// crash interrupted. With `strict`, a reconciler failure (e.g. a tampered log)
/// stops the command; the auditor's command goes on to report it instead.
async fn open_ledger(data: &Path, kek_file: Option<&Path>, strict: bool) -> Result<Ledger> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data folder {}", data.display()))?;
    let kek_path = kek_file.map_or_else(|| data.join("kek.hex"), Path::to_path_buf);
    let (kek, source) = Kek::load_or_create("LEDGER_KEK", &kek_path)?;
    if let KekSource::Created(p) = &source {
        eprintln!(
            "created a new key-encryption key in {} (mode 0600); back it up apart from the data folder",
            p.display()
        );
    }
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&data.join("events.sqlite"))?);
    let keys = SqliteKeyStore::open(&data.join("keys.sqlite"))?;
    let ledger = Ledger::new(store, Arc::new(Keyring::new(kek, Arc::new(keys))));
    match ledger.reconcile().await {
        Ok(_) => {}
        Err(e) if !strict => eprintln!("warning: the reconciler could not finish: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(ledger)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
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
    match cli.command {
        Command::Demo {
            customers,
            seed,
            json,
        } => {
            let ledger = open_ledger(&cli.data, kek_file, true).await?;
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
            let ledger = open_ledger(&cli.data, kek_file, true).await?;
            match ledger.anonymize(b, c, r).await {
                Ok(receipt) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&receipt)?);
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
            command: AuditCommand::Verify { json, expect_head },
        } => {
            let anchor = expect_head
                .as_deref()
                .map(|s| {
                    Anchor::parse(s).context("--expect-head must be POSITION:64-hex-digit hash")
                })
                .transpose()?;
            let ledger = open_ledger(&cli.data, kek_file, false).await?;
            let report = audit::verify(&ledger, anchor).await?;
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
                if report.ok {
                    println!("result: OK, no discrepancy");
                } else {
                    println!("result: {} DISCREPANCIES", report.problems.len());
                    for p in &report.problems {
                        println!(
                            "  {} at position {} stream {}: {}",
                            p.code,
                            p.position.map_or("-".into(), |x| x.to_string()),
                            p.stream.as_deref().unwrap_or("-"),
                            p.detail
                        );
                    }
                }
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench(args) => {
            bench::run(&cli.data, args).await?;
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
