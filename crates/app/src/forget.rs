//! The forget list: every decided erasure, kept apart from the data, so that
//! restoring an old backup cannot bring an erased customer back.
//!
//! # Why it is shaped this way
//!
//! A backup of the data folder (or a database dump) taken before an erasure holds
//! the customer's data key and no `CustomerAnonymized`. Restored, it would serve
//! the customer again: crypto-shredding only helps if the key stays destroyed.
//! So every erasure, once decided, is also appended to a list that lives
//! somewhere else (another disk, another machine, never in the backups of the data
//! folder): customer id, request id, erasing broadcaster, log position and time,
//! nothing personal. At every start of a writing command, and on demand with
//! `ledger restore-check`, [`restore_check`] compares the list with the log:
//!
//! - a customer on the list whose erasure the restored log lacks gets its
//!   `CustomerAnonymized` appended again (`ReapplyErasure`: no precondition is
//!   checked again; the erasure happened);
//! - a customer on the list whose data key is alive has it destroyed;
//! - an erasure in the log that the list lacks (a crash between the decision and
//!   the list append, or a list started later) is added to it.
//!
//! Entries are written when an erasure is decided, before its key is destroyed:
//! the list says what must be forgotten, and the reconciler guarantees the rest.
//! The file is NDJSON, appended and fsynced, mode 0600.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ledger_command::CustomerCommand;
use ledger_crypto::KeyState;
use ledger_events::{CustomerEvent, DomainEvent};
use ledger_types::{BroadcasterId, CustomerId, RequestId, Timestamp};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{decode_record, AppError, Ledger};

/// One decided erasure. Ids, a position and a time: nothing personal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetEntry {
    pub customer_id: CustomerId,
    pub request_id: RequestId,
    pub broadcaster_id: BroadcasterId,
    /// Position of the `CustomerAnonymized` in the log it was first written to.
    pub position: u64,
    pub at: Timestamp,
}

/// Where the forget list is kept.
pub trait ForgetList: Send + Sync + std::fmt::Debug {
    /// Appends entries durably.
    fn append(&self, entries: &[ForgetEntry]) -> Result<(), AppError>;
    /// Every entry, oldest first (a customer may appear more than once).
    fn read(&self) -> Result<Vec<ForgetEntry>, AppError>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

/// The forget list in an NDJSON file outside the data folder.
///
/// Appends are group-committed, as the log's and the key store's writes are:
/// concurrent erasures queue their lines, and whoever holds the file writes
/// everything queued with one `fsync`. Each append still returns only once its
/// own lines are durable (or with the error of the write that carried them).
#[derive(Debug)]
pub struct FileForgetList {
    path: PathBuf,
    /// Held by the one thread writing the file.
    write: Mutex<()>,
    group: Mutex<Group>,
}

/// The queue of a [`FileForgetList`]'s group commit. Appends are numbered in the
/// order they were queued.
#[derive(Debug, Default)]
struct Group {
    /// Lines queued and not yet written.
    pending: String,
    /// Appends queued so far.
    queued: u64,
    /// Appends whose write ended (durable, or failed) so far.
    ended: u64,
    /// Failed writes: the appends each carried (after, up to and including), and
    /// the error. Failures are rare (a full disk); the oldest are dropped past
    /// [`FAILURES_KEPT`].
    failures: std::collections::VecDeque<(u64, u64, String)>,
}

const FAILURES_KEPT: usize = 1024;

impl Group {
    /// The outcome of append `n`, whose write has ended.
    fn outcome(&self, n: u64) -> Result<(), AppError> {
        match self
            .failures
            .iter()
            .find(|(after, to, _)| *after < n && n <= *to)
        {
            Some((_, _, e)) => Err(AppError::Io(e.clone())),
            None => Ok(()),
        }
    }
}

fn poisoned() -> AppError {
    AppError::Io("forget list lock poisoned".into())
}

fn io(what: &str, e: &std::io::Error) -> AppError {
    AppError::Io(format!("forget list: {what}: {}", e.kind()))
}

impl FileForgetList {
    /// Opens the list at `path`, creating an empty one (mode 0600) if `create`;
    /// otherwise a missing file is an error. Its folder must exist.
    pub fn open(path: &Path, create: bool) -> Result<Self, AppError> {
        if !path.exists() {
            if !create {
                return Err(AppError::Io(format!(
                    "no forget list at {}",
                    path.display()
                )));
            }
            let mut o = std::fs::OpenOptions::new();
            o.append(true).create(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                o.mode(0o600);
            }
            o.open(path).map_err(|e| io("cannot create it", &e))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            write: Mutex::new(()),
            group: Mutex::new(Group::default()),
        })
    }
}

impl FileForgetList {
    /// Appends `text` to the file and syncs it. A write that fails part way (a
    /// full disk) is cut off again, so no torn line is left for the next append to
    /// be glued to.
    fn write_durably(&self, text: &str) -> Result<(), AppError> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io("cannot open it", &e))?;
        let before = f
            .metadata()
            .map_err(|e| io("cannot read its size", &e))?
            .len();
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_data())
            .inspect_err(|_| {
                let _ = f.set_len(before);
            })
            .map_err(|e| {
                if e.raw_os_error() == Some(28) {
                    // ENOSPC: the disk holding the list is full.
                    AppError::Io("forget list: the disk is full".into())
                } else {
                    io("cannot append to it", &e)
                }
            })
    }
}

impl ForgetList for FileForgetList {
    fn append(&self, entries: &[ForgetEntry]) -> Result<(), AppError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for e in entries {
            let line = serde_json::to_string(e)
                .map_err(|_| AppError::Io("forget list: cannot encode an entry".into()))?;
            text.push_str(&line);
            text.push('\n');
        }
        let me = {
            let mut g = self.group.lock().map_err(|_| poisoned())?;
            g.pending.push_str(&text);
            g.queued += 1;
            g.queued
        };
        let _one = self.write.lock().map_err(|_| poisoned())?;
        // The writer before us may have carried our lines already.
        let (batch, after, upto) = {
            let mut g = self.group.lock().map_err(|_| poisoned())?;
            if g.ended >= me {
                return g.outcome(me);
            }
            (std::mem::take(&mut g.pending), g.ended, g.queued)
        };
        let written = self.write_durably(&batch);
        let mut g = self.group.lock().map_err(|_| poisoned())?;
        g.ended = upto;
        if let Err(e) = &written {
            if g.failures.len() == FAILURES_KEPT {
                g.failures.pop_front();
            }
            let message = match e {
                AppError::Io(m) => m.clone(),
                other => other.to_string(),
            };
            g.failures.push_back((after, upto, message));
        }
        written
    }

    fn read(&self) -> Result<Vec<ForgetEntry>, AppError> {
        let f = std::fs::File::open(&self.path).map_err(|e| io("cannot open it", &e))?;
        let mut out = Vec::new();
        for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| io("cannot read it", &e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(e) => out.push(e),
                // A torn last line (a crash mid-append) is skipped; anything else
                // means the file is not a forget list.
                Err(_) if n > 0 => warn!(line = n + 1, "forget list: unreadable line skipped"),
                Err(_) => {
                    return Err(AppError::Io(format!(
                        "{} is not a forget list (line 1 does not parse)",
                        self.path.display()
                    )))
                }
            }
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// What [`restore_check`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Distinct customers on the forget list.
    pub customers_on_list: u64,
    /// Erasures the log lacked, appended again.
    pub erasures_reapplied: u64,
    /// Customers on the list whose data key was alive, now destroyed.
    pub keys_destroyed: u64,
    /// Customers on the list that the log does not know at all (registered after
    /// the backup the log was restored from): nothing of theirs is in the log.
    pub not_in_log: u64,
    /// Erasures in the log that the list lacked, added to it.
    pub added_to_list: u64,
}

impl RestoreReport {
    /// Whether the check found the log and the keys behind the list.
    pub fn repaired_anything(&self) -> bool {
        self.erasures_reapplied > 0 || self.keys_destroyed > 0
    }
}

/// Compares the forget list with the log and the key store, and repairs both
/// ways (see the module doc).
pub async fn restore_check(
    ledger: &Ledger,
    list: &dyn ForgetList,
) -> Result<RestoreReport, AppError> {
    let entries = list.read()?;
    let mut on_list: HashMap<CustomerId, ForgetEntry> = HashMap::new();
    for e in entries {
        on_list.entry(e.customer_id).or_insert(e);
    }
    // The erasures the log holds, with their entries.
    let mut in_log: HashMap<CustomerId, ForgetEntry> = HashMap::new();
    let mut after = 0;
    loop {
        let page = ledger.store().read_all(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for r in page.iter().filter(|r| r.event_type == "CustomerAnonymized") {
            if let DomainEvent::Customer(c, CustomerEvent::Anonymized(a)) = decode_record(r)? {
                in_log.entry(c).or_insert(ForgetEntry {
                    customer_id: c,
                    request_id: a.request_id,
                    broadcaster_id: a.broadcaster_id,
                    position: r.position,
                    at: a.at,
                });
            }
        }
    }
    let mut report = RestoreReport {
        customers_on_list: on_list.len() as u64,
        ..Default::default()
    };

    // Log -> list.
    let mut missing: Vec<ForgetEntry> = in_log
        .values()
        .filter(|e| !on_list.contains_key(&e.customer_id))
        .cloned()
        .collect();
    missing.sort_by_key(|e| e.position);
    list.append(&missing)?;
    report.added_to_list = missing.len() as u64;

    // List -> log.
    let mut ids: Vec<CustomerId> = on_list.keys().copied().collect();
    ids.sort();
    let known: HashSet<CustomerId> = in_log.keys().copied().collect();
    for c in &ids {
        if known.contains(c) {
            continue;
        }
        let e = &on_list[c];
        let cmd = CustomerCommand::ReapplyErasure {
            request_id: e.request_id,
            broadcaster_id: e.broadcaster_id,
            at: e.at,
        };
        match ledger.execute(*c, &cmd).await {
            Ok(x) if x.appended > 0 => {
                report.erasures_reapplied += 1;
                warn!(customer = %c, request = %e.request_id, "erasure on the forget list re-applied to the restored log");
            }
            Ok(_) => {}
            Err(AppError::Refused(ledger_command::Refusal::NotFound)) => report.not_in_log += 1,
            Err(e) => return Err(e),
        }
    }

    // List -> keys.
    let keys = ledger.keyring().store().clone();
    let alive: Vec<CustomerId> = tokio::task::spawn_blocking(move || {
        let mut alive = Vec::new();
        for c in ids {
            if matches!(keys.get(c)?, KeyState::Active(_)) {
                alive.push(c);
            }
        }
        Ok::<_, ledger_crypto::CryptoError>(alive)
    })
    .await
    .map_err(|_| AppError::Io("key store task panicked".into()))??;
    if !alive.is_empty() {
        for c in &alive {
            ledger.shredder().note(*c);
        }
        ledger.shredder().destroy(alive.clone()).await?;
        report.keys_destroyed = alive.len() as u64;
        warn!(
            keys = alive.len(),
            "data keys of customers on the forget list destroyed again (a restored key store)"
        );
    }
    if report.repaired_anything() || report.added_to_list > 0 {
        info!(
            on_list = report.customers_on_list,
            reapplied = report.erasures_reapplied,
            keys_destroyed = report.keys_destroyed,
            added_to_list = report.added_to_list,
            "forget list checked against the log"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(position: u64) -> ForgetEntry {
        ForgetEntry {
            customer_id: CustomerId::new(),
            request_id: RequestId::new(),
            broadcaster_id: BroadcasterId::new(),
            position,
            at: Timestamp::now(),
        }
    }

    fn append_concurrently(
        list: &std::sync::Arc<FileForgetList>,
        threads: u64,
        each: u64,
    ) -> Vec<Result<(), AppError>> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let list = list.clone();
                std::thread::spawn(move || {
                    (0..each)
                        .map(|i| list.append(&[entry(t * 1_000 + i)]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }

    #[test]
    fn concurrent_appends_are_each_written_once_and_answered_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let list = std::sync::Arc::new(FileForgetList::open(&dir.path().join("f"), true).unwrap());
        let results = append_concurrently(&list, 16, 50);
        assert!(results.iter().all(Result::is_ok));
        let mut positions: Vec<u64> = list.read().unwrap().iter().map(|e| e.position).collect();
        positions.sort_unstable();
        let expected: Vec<u64> = (0..16)
            .flat_map(|t| (0..50).map(move |i| t * 1_000 + i))
            .collect();
        assert_eq!(positions, expected);
    }

    #[test]
    fn every_append_a_failed_write_carried_gets_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let list = std::sync::Arc::new(FileForgetList::open(&path, true).unwrap());
        list.append(&[entry(1)]).unwrap();
        // The list is gone: no append may be answered durable.
        std::fs::remove_file(&path).unwrap();
        let results = append_concurrently(&list, 8, 20);
        assert_eq!(results.len(), 160);
        for r in results {
            let e = r.unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("i/o error: forget list: cannot open it"),
                "{e}"
            );
        }
    }
}
