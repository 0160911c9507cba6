//! The binary's side of signed tree heads (ADR 0014): the signing key file, the
//! tree follower's start, `ledger signing-key show`, `ledger audit verify-receipt`,
//! and the signed-head checks of `ledger audit verify` (data folder and exports).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use ledger_app::audit::{Anchor, AuditReport, Problem};
use ledger_app::export::{self, ExportChecks};
use ledger_app::transparency::{
    self as t, HeadSigner, KeySource, PublicKey, SignedTreeHead, SigningPolicy, TransparencyError,
    TransparencyLog,
};
use ledger_app::Ledger;

/// The signing key used when neither `--signing-key` nor
/// `LEDGER_SIGNING_KEY_FILE` is given.
pub fn default_signing_key_file(data: &Path) -> PathBuf {
    data.join("signing-key.hex")
}

/// Every head the server signs is appended here, and the last one is checked
/// against the log at start.
pub fn heads_file(data: &Path) -> PathBuf {
    data.join("tree-heads.jsonl")
}

/// Loads (or creates) the signing key, builds the tree from the log, checks it
/// against the last head this data folder recorded, and prints the public key.
pub async fn open_log(
    ledger: &Ledger,
    data: &Path,
    key_file: Option<&Path>,
    policy: SigningPolicy,
) -> Result<TransparencyLog> {
    let path = key_file.map_or_else(|| default_signing_key_file(data), Path::to_path_buf);
    let (signer, source) = HeadSigner::load_or_create(&path)
        .with_context(|| format!("signing key {}", path.display()))?;
    if let KeySource::Created(p) = &source {
        eprintln!(
            "created a new tree-head signing key in {} (mode 0600); keep it apart from the data folder and its backups",
            p.display()
        );
    }
    let public = signer.public_key();
    let log = match TransparencyLog::open(
        ledger.store().clone(),
        signer,
        policy,
        Some(heads_file(data)),
    )
    .await
    {
        Ok(l) => l,
        Err(e @ TransparencyError::HeadNotInLog { .. }) => {
            // A restored backup, or a log cut back or rewritten. Serving goes on
            // (a restore must be able to start), but never as the old series: its
            // heads are kept aside as evidence, the new series starts from this
            // log, and the operator is told. Auditors who kept published heads
            // find the same with `audit verify --signed-head`.
            let aside = data.join(format!(
                "tree-heads.jsonl.superseded-{}",
                ledger_types::Timestamp::now().millis()
            ));
            std::fs::rename(heads_file(data), &aside)
                .with_context(|| format!("cannot move {} aside", heads_file(data).display()))?;
            tracing::error!(
                code = e.code(),
                error = %e,
                "the log no longer holds a tree head this server signed: restored from a backup, or cut back or rewritten; the old heads are kept aside and a new series starts"
            );
            eprintln!(
                "warning: {e}. The log was restored from an older backup, or cut back or rewritten, \
                 since that head was signed. Heads published since will not verify against this \
                 log; the old series is kept in {} and a new one starts. Tell your auditors.",
                aside.display()
            );
            let signer = HeadSigner::load(&path)
                .with_context(|| format!("signing key {}", path.display()))?;
            TransparencyLog::open(
                ledger.store().clone(),
                signer,
                policy,
                Some(heads_file(data)),
            )
            .await?
        }
        Err(e) => return Err(e.into()),
    };
    println!("tree heads signed with Ed25519 public key {public}");
    Ok(log)
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Print the public key (64 hex characters) that verifies the server's signed
    /// tree heads: publish it, and give it to auditors (`--public-key FILE`).
    Show {
        /// The signing key file [default: DATA/signing-key.hex].
        #[arg(long, env = "LEDGER_SIGNING_KEY_FILE")]
        signing_key: Option<PathBuf>,
    },
}

pub fn signing_key(cmd: SigningKeyCommand, data: &Path) -> Result<ExitCode> {
    let SigningKeyCommand::Show { signing_key } = cmd;
    let path = signing_key.unwrap_or_else(|| default_signing_key_file(data));
    if !path.exists() {
        eprintln!(
            "no signing key at {} (`ledger serve` creates it on first run)",
            path.display()
        );
        return Ok(ExitCode::from(3));
    }
    let signer =
        HeadSigner::load(&path).with_context(|| format!("signing key {}", path.display()))?;
    println!("{}", signer.public_key());
    Ok(ExitCode::SUCCESS)
}

/// The signer for `audit export`: the key file given, or DATA/signing-key.hex if it
/// exists (an export never creates a key).
pub fn export_signer(data: &Path, key_file: Option<&Path>) -> Result<Option<HeadSigner>> {
    let path = key_file.map_or_else(|| default_signing_key_file(data), Path::to_path_buf);
    if key_file.is_none() && !path.exists() {
        eprintln!(
            "warning: no signing key at {}: the export's trailer carries no signed tree head",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some(HeadSigner::load(&path).with_context(|| {
        format!("signing key {}", path.display())
    })?))
}

/// Adds the Merkle proof of an erasure to the receipt `ledger anonymize --json`
/// prints, as the API's receipts carry it, when the signing key is at hand
/// (`LEDGER_SIGNING_KEY_FILE`, or DATA/signing-key.hex if it exists): the tree is
/// built from the log for this one proof. Without a key the receipt has none.
pub async fn add_receipt_proof(
    receipt: &mut serde_json::Value,
    ledger: &Ledger,
    data: &Path,
    position: u64,
) -> Result<()> {
    let key_file = std::env::var_os("LEDGER_SIGNING_KEY_FILE").map(PathBuf::from);
    let path = key_file.unwrap_or_else(|| default_signing_key_file(data));
    if !path.exists() {
        return Ok(());
    }
    let signer =
        HeadSigner::load(&path).with_context(|| format!("signing key {}", path.display()))?;
    let log = TransparencyLog::new(ledger.store().clone(), signer, SigningPolicy::default());
    let proof = log.receipt_proof(position).await?;
    if let (Some(map), serde_json::Value::Object(extra)) =
        (receipt.as_object_mut(), serde_json::to_value(&proof)?)
    {
        map.extend(extra);
    }
    Ok(())
}

fn public_key(file: &Path) -> Result<PublicKey> {
    PublicKey::from_file(file).with_context(|| format!("public key {}", file.display()))
}

fn signed_head(file: &Path) -> Result<SignedTreeHead> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a signed tree head (as GET /v1/audit/tree-head serves it)",
            file.display()
        )
    })
}

/// Prints the outcome line and every problem, "1 DISCREPANCY" in the singular.
pub fn print_problems(ok: bool, problems: &[Problem]) {
    if ok {
        println!("result: OK, no discrepancy");
        return;
    }
    match problems.len() {
        1 => println!("result: 1 DISCREPANCY"),
        n => println!("result: {n} DISCREPANCIES"),
    }
    for p in problems {
        println!(
            "  {} at position {} stream {}: {}",
            p.code,
            p.position.map_or("-".into(), |x| x.to_string()),
            p.stream.as_deref().unwrap_or("-"),
            p.detail
        );
    }
}

/// `audit verify --signed-head FILE --public-key FILE` on the data folder: the head's
/// signature, and that the log's first `size` records have the signed root (a log
/// cut back or rewritten since the head was signed fails this).
pub async fn check_live_head(
    mut report: AuditReport,
    ledger: &Ledger,
    head_file: Option<&Path>,
    key_file: Option<&Path>,
) -> Result<AuditReport> {
    let Some(head_file) = head_file else {
        anyhow::ensure!(
            key_file.is_none(),
            "--public-key needs --signed-head FILE on the data folder"
        );
        return Ok(report);
    };
    let key_file = key_file.context("--signed-head needs --public-key FILE")?;
    let (sth, key) = (signed_head(head_file)?, public_key(key_file)?);
    report
        .checks
        .push("the signed tree head verifies with the public key");
    let head = match sth.verify(&key) {
        Ok(h) => h,
        Err(e) => {
            report.problems.push(Problem {
                code: "BAD_SIGNATURE",
                position: None,
                stream: None,
                detail: e.to_string(),
            });
            report.ok = false;
            return Ok(report);
        }
    };
    report
        .checks
        .push("the log holds the signed tree head (its first records have the signed root)");
    // A log whose chain is broken was already reported; the tree cannot be built.
    if let Ok(tree) = t::tree_of(ledger.store()).await {
        let detail = if head.size > tree.size() {
            Some(format!(
                "the log holds {} records, fewer than the {} under the signed head (truncated)",
                tree.size(),
                head.size
            ))
        } else if tree.root(head.size).ok() != Some(head.root_hash) {
            Some(
                "the root of the log's first records differs from the signed root (rewritten)"
                    .into(),
            )
        } else {
            None
        };
        if let Some(detail) = detail {
            report.problems.push(Problem {
                code: "SIGNED_HEAD_NOT_IN_LOG",
                position: Some(head.size),
                stream: None,
                detail,
            });
        }
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// `audit verify --from-export FILE [--from-export LATER]`: each export offline,
/// and with two, that the later extends the earlier.
pub fn verify_exports(
    files: &[PathBuf],
    expect_head: Option<&str>,
    key_file: Option<&Path>,
    signed_head_file: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    anyhow::ensure!(
        files.len() <= 2,
        "--from-export takes one export, or two (the earlier first) to check the later extends the earlier"
    );
    anyhow::ensure!(
        signed_head_file.is_none(),
        "--signed-head applies to the data folder; an export's signed head is in its trailer"
    );
    let anchor = expect_head
        .map(|s| Anchor::parse(s).context("--expect-head must be POSITION:64-hex-digit hash"))
        .transpose()?;
    let checks = ExportChecks {
        public_key: key_file.map(public_key).transpose()?,
        anchor,
    };
    let mut verified = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        // The expected head applies to the (later) export being checked.
        let mine = ExportChecks {
            anchor: checks.anchor.filter(|_| i + 1 == files.len()),
            ..checks.clone()
        };
        verified.push(export::verify_export_with(
            std::io::BufReader::new(f),
            &mine,
        )?);
    }
    let later = verified.pop().context("--from-export FILE is required")?;
    let Some(earlier) = verified.pop() else {
        let report = later.report;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_export(&files[0], &report);
            print_problems(report.ok, &report.problems);
        }
        return Ok(exit(report.ok));
    };
    let ext = export::verify_extension(earlier, later);
    if json {
        println!("{}", serde_json::to_string_pretty(&ext)?);
    } else {
        for (file, r) in files.iter().zip(&ext.exports) {
            print_export(file, r);
            print_problems(r.ok, &r.problems);
        }
        for c in &ext.checks {
            println!("  checked: {c}");
        }
        let ok_both = ext.exports.iter().all(|r| r.ok);
        if ok_both || !ext.problems.is_empty() {
            print_problems(ext.ok, &ext.problems);
        } else {
            println!("result: not compared (an export failed its own checks)");
        }
    }
    Ok(exit(ext.ok))
}

fn print_export(file: &Path, r: &export::ExportReport) {
    println!("offline verification of {}", file.display());
    println!("  events:         {}", r.events);
    println!("  erasures:       {}", r.erasures);
    println!("  head:           {}:{}", r.head_position, r.head_log_hash);
    println!("  Merkle root:    {}", r.root_hash);
    if let Some(s) = &r.signed_tree_head {
        println!("  signed head:    size {} root {}", s.size, s.root_hash);
    }
    println!("  revenue digest: {}", r.revenue_digest);
    for c in &r.checks {
        println!("  checked: {c}");
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `audit verify-receipt`: an erasure receipt against the operator's public key,
/// offline (no data folder, no log).
pub fn verify_receipt(receipt: &Path, key_file: &Path, json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(receipt)
        .with_context(|| format!("cannot read {}", receipt.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", receipt.display()))?;
    let key = public_key(key_file)?;
    let v = t::verify_receipt(&value, &key);
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("offline verification of the receipt {}", receipt.display());
        if let Some(p) = v.event_position {
            println!("  event position: {p}");
        }
        if let (Some(s), Some(r)) = (v.tree_size, &v.root_hash) {
            println!("  signed head:    size {s} root {r}");
        }
        for c in &v.checks {
            println!("  checked: {c}");
        }
        print_problems(v.ok, &v.problems);
    }
    Ok(exit(v.ok))
}
