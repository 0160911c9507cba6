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
#[derive(Debug)]
pub struct FileForgetList {
    path: PathBuf,
    write: Mutex<()>,
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
        let _one = self
            .write
            .lock()
            .map_err(|_| AppError::Io("forget list lock poisoned".into()))?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io("cannot open it", &e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| {
                if e.raw_os_error() == Some(28) {
                    // ENOSPC: the disk holding the list is full.
                    AppError::Io("forget list: the disk is full".into())
                } else {
                    io("cannot append to it", &e)
                }
            })
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
