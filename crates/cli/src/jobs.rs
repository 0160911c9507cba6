//! `ledger erasure-jobs submit|status|cancel`: bulk erasure jobs on the data folder.
//!
//! Like `ledger erasure-requests`, these read and write the data folder directly
//! (no HTTP client in the binary): `status` is read-only and works beside a
//! running `serve`; `submit` and `cancel` write, so they take the writer lock (stop
//! `serve` first, or use `POST /v1/erasure-jobs` there). `submit` runs the job to
//! its end in this process, with a progress bar on a terminal and plain lines
//! otherwise; interrupted, it resumes with the same `--job-id` (or in `serve`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ledger_api::jobs::ErasureJobDto;
use ledger_app::jobs::{SubmitJob, CHUNK};
use ledger_command::{ErasureJob, JobState};
use ledger_events::Actor;
use ledger_types::{BroadcasterId, CustomerId, JobId, Reference};

use crate::backends::Backends;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Submit a bulk erasure job from a file of customer ids and run it to its end
    /// (writes the data folder: stop `serve` first). Exit 1 if partially failed.
    Submit {
        /// One customer id (UUID) per line, or a CSV with an `id` or `customer_id`
        /// column.
        #[arg(long)]
        file: PathBuf,
        /// The broadcaster filing the job (UUID).
        #[arg(
            long,
            conflicts_with = "operator",
            required_unless_present = "operator"
        )]
        broadcaster: Option<String>,
        /// File the job as the platform operator (its erasure rules apply).
        #[arg(long)]
        operator: bool,
        /// The job's id (UUID): the same id and file resume or retry the job.
        #[arg(long)]
        job_id: Option<String>,
        /// A ticket or case number (1-64 of A-Z a-z 0-9 . _ - : / #; never personal data).
        #[arg(long)]
        reference: Option<String>,
        /// Print the finished job as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A job's state and counts by item state (read-only; works beside `serve`).
    Status {
        /// The job's id (UUID).
        job_id: String,
        /// Print the job as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: no item is filed after this (writes the data folder).
    Cancel {
        /// The job's id (UUID).
        job_id: String,
        /// Print the job as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The customer ids of a file: one per line, or a CSV whose header names an `id`
/// or `customer_id` column. Malformed lines are reported by number, never by
/// content (a wrong file may hold personal data).
pub fn read_ids(path: &Path) -> Result<Vec<CustomerId>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_ids(&text)
}

fn field(s: &str) -> &str {
    s.trim().trim_matches('"').trim()
}

fn parse_ids(text: &str) -> Result<Vec<CustomerId>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let mut column = None;
    if let Some((_, first)) = lines.peek() {
        if CustomerId::parse(field(first.split(',').next().unwrap_or(""))).is_err() {
            let header: Vec<String> = first
                .split(',')
                .map(|h| field(h).to_ascii_lowercase())
                .collect();
            let Some(i) = header.iter().position(|h| h == "id" || h == "customer_id") else {
                bail!("line 1 is neither a customer id nor a CSV header with an id or customer_id column");
            };
            column = Some(i);
            lines.next();
        }
    }
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in lines {
        let value = match column {
            Some(i) => line.split(',').nth(i).map(field).unwrap_or(""),
            None => field(line),
        };
        match CustomerId::parse(value) {
            Ok(c) => ids.push(c),
            Err(_) => bad.push(n + 1),
        }
    }
    if !bad.is_empty() {
        let shown: Vec<String> = bad.iter().take(20).map(ToString::to_string).collect();
        bail!(
            "INVALID_INPUT: {} lines are not canonical UUIDs (lines {}{}); nothing was submitted",
            bad.len(),
            shown.join(", "),
            if bad.len() > 20 { ", ..." } else { "" }
        );
    }
    Ok(ids)
}

fn print_job(job: &ErasureJob, json: bool) -> Result<()> {
    let dto = ErasureJobDto::of(job).context("no such erasure job")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&dto)?);
        return Ok(());
    }
    println!("erasure job {}: {}", dto.job_id, dto.state);
    println!("  submitted: {}", dto.submitted_at);
    if let Some(r) = &dto.reference {
        println!("  reference: {r}");
    }
    let c = &dto.counts;
    println!(
        "  {} items: {} completed, {} deferred, {} refused, {} not found, {} cancelled, {} pending",
        dto.total, c.completed, c.deferred, c.refused, c.not_found, c.cancelled, c.pending
    );
    if !dto.validation.is_empty() {
        let found: Vec<String> = dto
            .validation
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        println!("  validation: {}", found.join(", "));
    }
    Ok(())
}

/// What the progress display shows: a bar on a terminal, lines otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines(AtomicUsize),
}

impl Progress {
    fn new(total: usize) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} customers ({per_sec}, {eta} left) {msg}",
            ) {
                bar.set_style(style);
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines(AtomicUsize::new(usize::MAX))
        }
    }

    fn show(&self, job: &ErasureJob) {
        let state = job.state().map_or("", |s| s.as_str());
        match self {
            Progress::Bar(bar) => {
                bar.set_position(job.settled() as u64);
                bar.set_message(state);
            }
            Progress::Lines(last) => {
                let settled = job.settled();
                if last.swap(settled, Ordering::Relaxed) != settled {
                    eprintln!("{settled}/{} customers settled ({state})", job.len());
                }
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}

impl JobsCommand {
    /// What the command needs of the data folder, and its name for messages.
    pub fn access(&self) -> (crate::Access, &'static str) {
        match self {
            JobsCommand::Submit { .. } => (crate::Access::Write, "erasure-jobs submit"),
            JobsCommand::Status { .. } => (crate::Access::Read, "erasure-jobs status"),
            JobsCommand::Cancel { .. } => (crate::Access::Write, "erasure-jobs cancel"),
        }
    }
}

/// Runs the command on the backends opened with [`JobsCommand::access`].
pub async fn run(command: JobsCommand, backends: Backends) -> Result<ExitCode> {
    match command {
        JobsCommand::Submit {
            file,
            broadcaster,
            operator,
            job_id,
            reference,
            json,
        } => {
            let by = match (broadcaster, operator) {
                (Some(b), false) => Actor::Broadcaster {
                    broadcaster_id: BroadcasterId::parse(&b)?,
                    key_id: None,
                },
                (None, true) => Actor::Operator,
                _ => bail!("give --broadcaster UUID or --operator"),
            };
            let reference = reference
                .as_deref()
                .map(Reference::parse)
                .transpose()
                .context("--reference: 1-64 of A-Z a-z 0-9 . _ - : / #")?;
            let customer_ids = read_ids(&file)?;
            let job_id = job_id
                .as_deref()
                .map(JobId::parse)
                .transpose()?
                .unwrap_or_default();
            let ledger = backends.ledger().await?;
            let req = SubmitJob {
                job_id,
                by,
                reference,
                customer_ids,
            };
            let (job, created) = ledger
                .submit_job(req)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
            eprintln!(
                "erasure job {job_id} {} ({} customers)",
                if created { "submitted" } else { "found" },
                job.len()
            );
            let progress = Progress::new(job.len());
            let job = ledger
                .run_job(job_id, CHUNK, &|j| progress.show(j))
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?
                .context("the job is being run by another task")?;
            progress.finish();
            print_job(&job, json)?;
            backends.close().await;
            Ok(if job.state() == Some(JobState::PartiallyFailed) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        JobsCommand::Status { job_id, json } => {
            let id = JobId::parse(&job_id)?;
            // Jobs hold no personal data: no KEK needed.
            let ledger = backends.reader(false)?;
            let job = ledger.erasure_job(id, Actor::Operator).await?;
            print_job(&job, json)?;
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Cancel { job_id, json } => {
            let id = JobId::parse(&job_id)?;
            let ledger = backends.ledger().await?;
            let job = ledger
                .cancel_job(id, Actor::Operator)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
            print_job(&job, json)?;
            backends.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00000001-0000-4000-8000-000000000001";
    const B: &str = "00000001-0000-4000-8000-000000000002";

    #[test]
    fn a_file_of_one_id_per_line_gives_the_ids_in_order() {
        let ids = parse_ids(&format!("{A}\n\n{B}\n")).unwrap();
        assert_eq!(
            ids,
            vec![CustomerId::parse(A).unwrap(), CustomerId::parse(B).unwrap()]
        );
    }

    #[test]
    fn a_csv_with_a_customer_id_column_gives_that_column() {
        let ids = parse_ids(&format!("ticket,customer_id\nZD-1,{A}\nZD-2,\"{B}\"\n")).unwrap();
        assert_eq!(
            ids,
            vec![CustomerId::parse(A).unwrap(), CustomerId::parse(B).unwrap()]
        );
    }

    #[test]
    fn a_malformed_line_is_reported_by_number_never_by_content() {
        let e = parse_ids(&format!("{A}\njane@example.org\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line") && e.contains('2'), "{e}");
        assert!(!e.contains("jane"), "{e}");
    }

    #[test]
    fn a_csv_without_an_id_column_is_refused() {
        assert!(parse_ids("name,email\nx,y\n").is_err());
    }
}
