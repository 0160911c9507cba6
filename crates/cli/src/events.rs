//! `ledger events tail [--after POS] [--follow]`: the change feed from the data
//! folder, as NDJSON on stdout: the public, PII-free events of every tenant
//! (`ledger-events-v1`, `docs/events.md`), exactly the lines `GET /v1/events`
//! serves to the admin key. Read-only, beside a running server, and without the
//! KEK: the projection never opens a personal block.
//!
//! `--stats` prints the count and rate on stderr at the end: with `--after 0` on a
//! large log and stdout to `/dev/null`, it is the feed's read benchmark.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ledger_app::feed::{Feed, FeedQuery, Scope};
use ledger_public_events::EventType;
use ledger_store::EventStore;

/// Events per page: the most `GET /v1/events` serves at once.
const PAGE: usize = 10_000;

/// What `ledger events tail` was asked.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Start after this log position (default 0: from the first event).
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Keep waiting for new events after the head (until interrupted).
    #[arg(long)]
    pub follow: bool,
    /// Only these types, comma-separated (e.g. customer.anonymized,payment.refunded).
    #[arg(long)]
    pub types: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the number of events and the rate on stderr at the end.
    #[arg(long)]
    pub stats: bool,
}

pub async fn tail(store: Arc<dyn EventStore>, args: TailArgs) -> Result<()> {
    let types = match &args.types {
        None => None,
        Some(s) => {
            let mut set = BTreeSet::new();
            for name in s.split(',') {
                match EventType::parse(name) {
                    Some(t) => set.insert(t),
                    None => bail!("unknown event type in --types (see docs/events.md)"),
                };
            }
            Some(set)
        }
    };
    let feed = Feed::unscoped(store.clone());
    let mut query = FeedQuery {
        after: args.after,
        limit: PAGE,
        types,
        scope: Scope::All,
    };
    let mut left = args.limit.unwrap_or(usize::MAX);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let started = Instant::now();
    let mut count = 0u64;
    // The next page is read and projected while this one is written: reading and
    // writing overlap (each page's chunks are projected on blocking threads).
    let fetch = |q: FeedQuery| {
        let feed = feed.clone();
        tokio::spawn(async move { feed.page_ndjson(&q).await })
    };
    query.limit = left.min(PAGE);
    let mut next = Some(fetch(query.clone()));
    while let Some(pending) = next.take() {
        let page = pending.await??;
        query.after = page.next_after;
        left -= page.events;
        query.limit = left.min(PAGE);
        if left > 0 && !page.at_end {
            next = Some(fetch(query.clone()));
        }
        if let Err(err) = out.write_all(&page.body) {
            // A reader that went away (`| head`) ends the tail quietly.
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(err.into());
        }
        count += page.events as u64;
        if page.at_end && left > 0 && args.follow {
            out.flush()?;
            store
                .wait_for_head(query.after, Duration::from_secs(15))
                .await?;
            next = Some(fetch(query.clone()));
        }
    }
    match out.flush() {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        r => r?,
    }
    if args.stats {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{count} events in {secs:.3} s: {:.0} events/s (after {}, last position examined {})",
            count as f64 / secs.max(1e-9),
            args.after,
            query.after
        );
    }
    Ok(())
}
