//! The transparency log: a Merkle tree over the event log, kept up to date in the
//! running server, with signed tree heads and the proofs auditors and data subjects
//! check against them (issue 10, item 4; ADR 0014).
//!
//! - **Leaves** are the log's records in position order: leaf `i` is the record at
//!   position `i + 1`, and its data is the record's canonical bytes
//!   (`ledger_store::chain`, `ledger.record.v1`), the same bytes both hash chains
//!   cover. They hold the sealed payload, so a leaf still verifies after the
//!   customer's data key is destroyed, and they name the position, so a leaf
//!   cannot be moved.
//! - [`TransparencyLog`] builds the tree from the log at start and then follows
//!   new commits (`wait_for_head` + `read_all`), whatever the backend. It signs a
//!   head every [`SigningPolicy::every_events`] records or
//!   [`SigningPolicy::every`] (when the log grew), and on demand.
//! - [`head`]: the signed byte string, the Ed25519 key, and head verification.
//! - [`receipt`]: the proof an erasure receipt carries, and its offline check.
//!
//! Everything here is ids, positions and hashes: no personal data.

pub mod head;
pub mod receipt;

use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use std::sync::Arc;

use ledger_merkle::{leaf_hash, ConsistencyProof, Hash, InclusionProof, MerkleTree, TreeError};
use ledger_store::chain::RecordFields;
use ledger_store::{EventStore, RecordedEvent, StoreError};
use ledger_types::Timestamp;
use thiserror::Error;
use tracing::{info, instrument, warn};

pub use head::{HeadError, HeadSigner, KeySource, PublicKey, SignedTreeHead};
pub use receipt::{verify_receipt, ReceiptProof, ReceiptVerification};

use crate::health::{Health, Part};
use crate::AppError;

const PAGE: usize = 10_000;

/// When the follower signs a new head: once the log has grown by `every_events`
/// records since the last signed head, or `every` has passed and it grew at all.
/// Between two catch-ups it pauses `pause`, so that it reads the commits of that
/// interval in one page instead of waking for every commit (which cost the
/// single-writer path a quarter of its throughput on two cores); the tree lags by
/// at most that much, and receipts catch up themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningPolicy {
    pub every_events: u64,
    pub every: Duration,
    pub pause: Duration,
}

impl Default for SigningPolicy {
    fn default() -> Self {
        Self {
            every_events: 1_000,
            every: Duration::from_secs(10),
            pause: Duration::from_millis(50),
        }
    }
}

/// The leaf data of a record: its canonical bytes.
pub fn leaf_data(r: &RecordedEvent) -> Vec<u8> {
    RecordFields::of(r).canonical()
}

/// The RFC 6962 leaf hash of a record, `SHA-256(0x00 || canonical bytes)`.
pub fn record_leaf_hash(r: &RecordedEvent) -> Hash {
    leaf_hash(&leaf_data(r))
}

/// A proof request the tree cannot answer, or a store failure.
#[derive(Debug, Error)]
pub enum TransparencyError {
    /// The size asked for is larger than the log (as followed so far).
    #[error("tree size {requested} is beyond the {size} records in the log")]
    SizeBeyondTree { requested: u64, size: u64 },
    /// No such proof exists (position 0, sizes out of order, from size 0).
    #[error("no such proof: {0}")]
    NoSuchProof(ledger_merkle::ProofError),
    /// The log no longer holds a head signed earlier: it was cut back or
    /// rewritten. Nothing is signed over it.
    #[error("the log does not hold the tree head signed at size {size}: {reason}")]
    HeadNotInLog { size: u64, reason: &'static str },
    #[error(transparent)]
    App(#[from] AppError),
}

impl TransparencyError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TransparencyError::SizeBeyondTree { .. } => "SIZE_BEYOND_TREE",
            TransparencyError::NoSuchProof(_) => "NO_SUCH_PROOF",
            TransparencyError::HeadNotInLog { .. } => "TREE_HEAD_NOT_IN_LOG",
            TransparencyError::App(e) => e.code(),
        }
    }
}

impl From<TreeError> for TransparencyError {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::SizeBeyondTree { requested, size } => {
                TransparencyError::SizeBeyondTree { requested, size }
            }
            TreeError::NoSuchProof(p) => TransparencyError::NoSuchProof(p),
        }
    }
}

impl From<StoreError> for TransparencyError {
    fn from(e: StoreError) -> Self {
        TransparencyError::App(e.into())
    }
}

/// An inclusion proof with the leaf hash it proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    pub proof: InclusionProof,
    pub leaf_hash: Hash,
}

/// The Merkle tree over the log, followed from the store, and the key that signs
/// its heads. Shared by the follower loop, the API and the receipts.
#[derive(Debug)]
pub struct TransparencyLog {
    store: Arc<dyn EventStore>,
    signer: HeadSigner,
    policy: SigningPolicy,
    tree: RwLock<MerkleTree>,
    /// One catch-up at a time.
    folding: tokio::sync::Mutex<()>,
    latest: RwLock<Option<SignedTreeHead>>,
    /// When the follower last signed by the policy, and at which size (`None`:
    /// not yet).
    last_recorded: Mutex<Option<(Instant, u64)>>,
    /// Where every head the follower signs is appended (JSON lines), if anywhere.
    heads_file: Option<PathBuf>,
}

impl TransparencyLog {
    /// An empty tree over `store`; [`catch_up`](Self::catch_up) builds it.
    pub fn new(store: Arc<dyn EventStore>, signer: HeadSigner, policy: SigningPolicy) -> Self {
        Self {
            store,
            signer,
            policy,
            tree: RwLock::new(MerkleTree::new()),
            folding: tokio::sync::Mutex::new(()),
            latest: RwLock::new(None),
            last_recorded: Mutex::new(None),
            heads_file: None,
        }
    }

    /// Builds the tree from the log, then checks it against the last head recorded
    /// in `heads_file` (if the file exists) and goes on appending every head it
    /// signs there. A log that no longer holds that head (cut back, rewritten) is
    /// [`TransparencyError::HeadNotInLog`]: nothing is signed over it.
    #[instrument(skip(store, signer, heads_file))]
    pub async fn open(
        store: Arc<dyn EventStore>,
        signer: HeadSigner,
        policy: SigningPolicy,
        heads_file: Option<PathBuf>,
    ) -> Result<Self, TransparencyError> {
        let mut t = Self::new(store, signer, policy);
        let started = Instant::now();
        let size = t.catch_up().await?;
        info!(
            size,
            ms = started.elapsed().as_millis() as u64,
            "Merkle tree built from the log"
        );
        if let Some(file) = &heads_file {
            if let Some(last) = last_recorded_head(file)? {
                let key = t.signer.public_key();
                if last.verify(&key).is_ok() {
                    t.check_head(&last.head())?;
                    *t.last_recorded.lock().map_err(|_| poisoned())? =
                        Some((Instant::now(), last.size));
                    *t.latest.write().map_err(|_| poisoned())? = Some(last);
                } else {
                    warn!("the last recorded tree head was signed with another key; not checked");
                }
            }
        }
        t.heads_file = heads_file;
        Ok(t)
    }

    /// Checks that the tree holds `head` (its size and root).
    pub fn check_head(&self, head: &ledger_merkle::TreeHead) -> Result<(), TransparencyError> {
        let tree = self.tree.read().map_err(|_| poisoned())?;
        if head.size > tree.size() {
            return Err(TransparencyError::HeadNotInLog {
                size: head.size,
                reason: "the log holds fewer records (truncated)",
            });
        }
        if tree.root(head.size)? != head.root_hash {
            return Err(TransparencyError::HeadNotInLog {
                size: head.size,
                reason: "the root of the log's first records differs (rewritten)",
            });
        }
        Ok(())
    }

    pub fn public_key(&self) -> PublicKey {
        self.signer.public_key()
    }

    /// The number of records in the tree.
    pub fn size(&self) -> u64 {
        self.tree.read().map_or(0, |t| t.size())
    }

    /// Appends every record committed since the last call; returns the size.
    pub async fn catch_up(&self) -> Result<u64, AppError> {
        let _one_at_a_time = self.folding.lock().await;
        let mut after = self.size();
        let mut buf = Vec::with_capacity(1024);
        loop {
            let page = self.store.read_all(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            let full = page.len() == PAGE;
            let mut hashes = Vec::with_capacity(page.len());
            for r in &page {
                if r.position != after + 1 {
                    return Err(StoreError::Integrity {
                        position: r.position,
                        reason: format!("position {} follows {after}", r.position),
                    }
                    .into());
                }
                buf.clear();
                RecordFields::of(r).write_canonical(&mut buf);
                hashes.push(leaf_hash(&buf));
                after = r.position;
            }
            debug_assert_eq!(after, last.position);
            self.tree
                .write()
                .map_err(|_| AppError::Io("tree lock poisoned".into()))?
                .append_leaf_hashes(&hashes);
            if !full {
                break;
            }
        }
        Ok(after)
    }

    /// The head the follower signed last, if any.
    pub fn latest(&self) -> Option<SignedTreeHead> {
        self.latest.read().ok().and_then(|l| l.clone())
    }

    /// Signs the current head, makes it the latest, and records it in the heads
    /// file (the follower's heads, by the policy).
    pub fn sign_now(&self) -> Result<SignedTreeHead, TransparencyError> {
        self.sign(true)
    }

    /// Signs the current head and makes it the latest. Heads signed on demand (for
    /// a receipt, for a reader) are not recorded: the file grows by the policy, not
    /// by the erasure rate, and any head is a prefix of the later ones anyway.
    fn sign(&self, record: bool) -> Result<SignedTreeHead, TransparencyError> {
        let head = self.tree.read().map_err(|_| poisoned())?.head();
        let sth = self.signer.sign(head, Timestamp::now().millis());
        {
            let mut latest = self.latest.write().map_err(|_| poisoned())?;
            // Never step back (two signers racing): keep the larger head.
            if latest.as_ref().is_some_and(|l| l.size > sth.size) {
                return Ok(latest.clone().unwrap_or(sth));
            }
            *latest = Some(sth.clone());
        }
        if !record {
            return Ok(sth);
        }
        if let Ok(mut at) = self.last_recorded.lock() {
            *at = Some((Instant::now(), sth.size));
        }
        if let Some(file) = &self.heads_file {
            if let Err(e) = append_head(file, &sth) {
                warn!(error = %e, "could not record the signed tree head");
            }
        }
        info!(size = sth.size, root = %sth.root_hash, "signed tree head");
        Ok(sth)
    }

    /// The latest signed head, catching up and signing one first if there is none
    /// yet, or if it does not cover `at_least` records.
    pub async fn latest_covering(
        &self,
        at_least: u64,
    ) -> Result<SignedTreeHead, TransparencyError> {
        if let Some(l) = self.latest().filter(|l| l.size >= at_least && l.size > 0) {
            return Ok(l);
        }
        if self.size() < at_least.max(1) {
            self.catch_up().await?;
        }
        let size = self.size();
        if size < at_least {
            return Err(TransparencyError::SizeBeyondTree {
                requested: at_least,
                size,
            });
        }
        self.sign(false)
    }

    /// A head signed now for a past (or the current) size.
    pub async fn signed_head_at(&self, size: u64) -> Result<SignedTreeHead, TransparencyError> {
        if size > self.size() {
            self.catch_up().await?;
        }
        let head = self.tree.read().map_err(|_| poisoned())?.tree_head(size)?;
        Ok(self.signer.sign(head, Timestamp::now().millis()))
    }

    /// The inclusion proof of the record at `position` in the tree of `size`
    /// records (default: the latest signed head's size, signing a newer head if
    /// that one does not hold the record yet).
    pub async fn inclusion(
        &self,
        position: u64,
        size: Option<u64>,
    ) -> Result<Inclusion, TransparencyError> {
        if position == 0 {
            return Err(TransparencyError::NoSuchProof(
                ledger_merkle::ProofError::IndexOutOfRange { index: 0, size: 0 },
            ));
        }
        let size = match size {
            Some(s) => {
                if s > self.size() {
                    self.catch_up().await?;
                }
                s
            }
            None => self.latest_covering(position).await?.size,
        };
        let tree = self.tree.read().map_err(|_| poisoned())?;
        let proof = tree.inclusion_proof(position - 1, size)?;
        let leaf_hash = tree
            .leaf(position - 1)
            .ok_or(TransparencyError::SizeBeyondTree {
                requested: position,
                size: tree.size(),
            })?;
        Ok(Inclusion { proof, leaf_hash })
    }

    /// The proof that the tree of `from` records is a prefix of the tree of `to`
    /// records (default: the latest signed head's size).
    pub async fn consistency(
        &self,
        from: u64,
        to: Option<u64>,
    ) -> Result<ConsistencyProof, TransparencyError> {
        let to = match to {
            Some(t) => {
                if t > self.size() {
                    self.catch_up().await?;
                }
                t
            }
            None => self.latest_covering(from).await?.size,
        };
        Ok(self
            .tree
            .read()
            .map_err(|_| poisoned())?
            .consistency_proof(from, to)?)
    }

    /// What an erasure receipt carries for the record at `position`: its canonical
    /// bytes, its inclusion proof, and the signed head the proof leads to.
    #[instrument(skip(self))]
    pub async fn receipt_proof(&self, position: u64) -> Result<ReceiptProof, TransparencyError> {
        let sth = self.latest_covering(position).await?;
        let record = self
            .store
            .read_all(position.saturating_sub(1), 1)
            .await?
            .into_iter()
            .next()
            .filter(|r| r.position == position)
            .ok_or(TransparencyError::SizeBeyondTree {
                requested: position,
                size: self.size(),
            })?;
        let proof = self
            .tree
            .read()
            .map_err(|_| poisoned())?
            .inclusion_proof(position - 1, sth.size)?;
        Ok(ReceiptProof::new(&leaf_data(&record), proof, sth))
    }

    /// Whether the policy asks for a head now (`at_stop`: whenever the log grew
    /// since the last one, so the heads file ends at the log's end).
    fn due(&self, at_stop: bool) -> bool {
        let size = self.size();
        let Ok(last) = self.last_recorded.lock() else {
            return true;
        };
        let Some((at, recorded)) = *last else {
            return true;
        };
        size > recorded
            && (at_stop
                || size - recorded >= self.policy.every_events
                || at.elapsed() >= self.policy.every)
    }

    /// Follows the log until `stop` resolves: catches up a `pause` after commits and
    /// signs heads by the policy. Never gives up: after an error it reports the
    /// part as failing in `health` and retries with a backoff up to 30 s.
    pub async fn follow(&self, stop: impl std::future::Future<Output = ()>, health: &Health) {
        tokio::pin!(stop);
        let mut backoff = Duration::from_millis(250);
        let tick = self
            .policy
            .every
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            let err: TransparencyError = loop {
                let size = match self.catch_up().await {
                    Ok(s) => s,
                    Err(e) => break e.into(),
                };
                if self.due(false) {
                    if let Err(e) = self.sign_now() {
                        break e;
                    }
                }
                health.ok(Part::Transparency);
                backoff = Duration::from_millis(250);
                // Let the commits of a short interval gather, then wait for one.
                let mut stopped = tokio::select! {
                    _ = &mut stop => true,
                    _ = tokio::time::sleep(self.policy.pause) => false,
                };
                if !stopped {
                    tokio::select! {
                        _ = &mut stop => stopped = true,
                        r = self.store.wait_for_head(size, tick) => {
                            if let Err(e) = r { break e.into(); }
                        }
                    }
                }
                if stopped {
                    // A last head over everything committed, for the next start.
                    if self.catch_up().await.is_ok() && self.due(true) {
                        let _ = self.sign_now();
                    }
                    return;
                }
            };
            match err {
                TransparencyError::App(e) => {
                    health.failed(Part::Transparency, &e);
                    warn!(code = e.code(), error = %e, "tree follower failed; restarting after a backoff");
                }
                e => {
                    warn!(code = e.code(), error = %e, "tree follower failed; restarting after a backoff")
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// The whole tree's memory (about 64 bytes per record).
    pub fn memory_bytes(&self) -> usize {
        self.tree.read().map_or(0, |t| t.memory_bytes())
    }
}

fn poisoned() -> TransparencyError {
    TransparencyError::App(AppError::Io("tree lock poisoned".into()))
}

fn file_error(e: std::io::Error) -> TransparencyError {
    TransparencyError::App(AppError::Io(e.kind().to_string()))
}

/// The last head recorded in a heads file (JSON lines), if any.
fn last_recorded_head(file: &std::path::Path) -> Result<Option<SignedTreeHead>, TransparencyError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(e)),
    };
    // A torn last line (a crash while appending) is skipped.
    Ok(text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<SignedTreeHead>(l).ok()))
}

fn append_head(file: &std::path::Path, sth: &SignedTreeHead) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    // Private like every file in the data folder (its heads are public, but a
    // data folder holds nothing readable by others).
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(file)?;
    let mut line = serde_json::to_vec(sth).map_err(std::io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)
}

/// Builds the tree over every record of `store` (one pass), for checks that run
/// without the server: `audit verify --signed-head`.
pub async fn tree_of(store: &Arc<dyn EventStore>) -> Result<MerkleTree, AppError> {
    let log = TransparencyLog::new(
        store.clone(),
        HeadSigner::generate(),
        SigningPolicy::default(),
    );
    log.catch_up().await?;
    log.tree
        .into_inner()
        .map_err(|_| AppError::Io("tree lock poisoned".into()))
}
