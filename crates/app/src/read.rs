//! The read side: the projections (customer views, revenue, erasure receipts) kept
//! up to date from the log, persisted with their checkpoints, and the in-memory
//! search index over the customers' opened profiles.
//!
//! Catch-up reads the log from the lowest checkpoint, folds each page into the read
//! model, then saves the changed rows and the new checkpoints in one transaction of
//! the [`ViewStore`]. A crash between the fold and the save only means the page is
//! folded again at the next start; folding is idempotent by position.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use ledger_crypto::{Keyring, Opened};
use ledger_events::{DomainEvent, Profile, ProfilePatch};
use ledger_projections::{
    Changes, CustomerView, Envelope, ErasureRecord, ReadModel, RevenueFilter, RevenueKey,
    RevenueTotals, ViewStore,
};
use ledger_store::{EventStore, StoreError};
use ledger_types::{BroadcasterId, Currency, CustomerId};
use serde::Serialize;
use tracing::{debug, info, instrument, warn};

use crate::health::{Health, Part};
use crate::search::{Entry, SearchIndex};
use crate::{decode_record, AppError};

const PAGE: usize = 10_000;

/// A customer's summary as served: the view plus the opened profile (None for a
/// tombstone).
#[derive(Debug, Clone)]
pub struct CustomerSummary {
    pub view: CustomerView,
    pub profile: Option<Profile>,
}

/// Revenue totals for a selection, with the digest of their canonical form.
#[derive(Debug, Clone, Serialize)]
pub struct RevenueReport {
    pub digest: String,
    pub per_currency: Vec<(Currency, RevenueTotals)>,
    pub rows: Vec<(RevenueKey, RevenueTotals)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CatchUp {
    pub events: u64,
    pub position: u64,
    pub seconds: f64,
}

async fn join_save(
    h: tokio::task::JoinHandle<Result<std::time::Duration, ledger_projections::ViewStoreError>>,
) -> Result<std::time::Duration, AppError> {
    Ok(h.await
        .map_err(|_| AppError::Io("view writer panicked".into()))??)
}

/// One page of the log, read and decoded ahead of the fold.
struct Page {
    /// The position the page was read after.
    after: u64,
    records: Vec<ledger_store::RecordedEvent>,
    decoded: Vec<DomainEvent>,
    read: std::time::Duration,
    decode: std::time::Duration,
}

/// The log after a position, page by page in order, read ahead (ADR 0012). Pages
/// are read one at a time until one comes back full; then the head is asked once,
/// and up to `READ_AHEAD` pages up to it are read (with their chain checks) and
/// decoded at once, on the blocking pool, while the caller folds. Positions are
/// gap-free, so the page after `a` is requested as "after `a + PAGE`" before page
/// `a` is back; continuity decides: a page that does not start right after the
/// previous one (because that one came back short) is dropped with everything read
/// ahead of it, and reading is planned again from there. A gap is an integrity
/// error. Past that head, pages are read one at a time until one comes back empty.
struct Pages {
    store: Arc<dyn EventStore>,
    /// `after` of the next page to request.
    next_after: u64,
    /// The head, asked once the first full page shows there is more to read:
    /// read-ahead stops there.
    planned_until: u64,
    head_asked: bool,
    /// The last position handed out.
    done_until: u64,
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<Page, AppError>>>,
}

const READ_AHEAD: usize = 3;

impl Pages {
    /// Reads one page at a time until a page comes back full: a catch-up after a
    /// write (a few events) costs what it did before read-ahead existed.
    fn new(store: Arc<dyn EventStore>, from: u64) -> Self {
        Self {
            store,
            next_after: from,
            planned_until: from,
            done_until: from,
            head_asked: false,
            in_flight: Default::default(),
        }
    }

    fn request(&self, after: u64) -> tokio::task::JoinHandle<Result<Page, AppError>> {
        let store = self.store.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let records = store.read_all(after, PAGE).await?;
            let read = t.elapsed();
            // A full page takes milliseconds to decode: off the async workers.
            let large = records.len() >= PAGE / 10;
            let decode = move || {
                let t = Instant::now();
                let decoded = records
                    .iter()
                    .map(decode_record)
                    .collect::<Result<Vec<DomainEvent>, _>>()?;
                Ok(Page {
                    after,
                    records,
                    decoded,
                    read,
                    decode: t.elapsed(),
                })
            };
            if large {
                tokio::task::spawn_blocking(decode)
                    .await
                    .map_err(|_| AppError::Io("log decoder panicked".into()))?
            } else {
                decode()
            }
        })
    }

    /// The next page, or None past the end of the log.
    async fn next(&mut self) -> Result<Option<Page>, AppError> {
        loop {
            while self.in_flight.len() < READ_AHEAD && self.next_after < self.planned_until {
                self.in_flight.push_back(self.request(self.next_after));
                self.next_after += PAGE as u64;
            }
            let handle = match self.in_flight.pop_front() {
                Some(h) => h,
                None => self.request(self.done_until),
            };
            let page = handle
                .await
                .map_err(|_| AppError::Io("log reader panicked".into()))??;
            let in_order = page.after == self.done_until;
            let expected = self.done_until + 1;
            // Where the page stops following on from the last position handed out.
            let gap = (expected..)
                .zip(&page.records)
                .find(|(want, r)| r.position != *want);
            match (page.records.first(), gap) {
                (None, _) if in_order => return Ok(None),
                (Some(last_ok), None) => {
                    self.done_until = page.records.last().map_or(last_ok.position, |r| r.position);
                    self.next_after = self.next_after.max(self.done_until);
                    if page.records.len() == PAGE && !self.head_asked {
                        self.head_asked = true;
                        self.planned_until = self.store.head().await?;
                    }
                    return Ok(Some(page));
                }
                (Some(first), Some((want, r))) if in_order || first.position == expected => {
                    return Err(StoreError::Integrity {
                        position: want,
                        reason: format!("missing record: next stored position is {}", r.position),
                    }
                    .into())
                }
                // Read ahead of a short page (or past the end): plan again from
                // here, one page at a time if this one came back empty.
                _ => {
                    for h in self.in_flight.drain(..) {
                        h.abort();
                    }
                    self.next_after = self.done_until;
                    if page.records.is_empty() {
                        self.planned_until = self.done_until;
                    }
                }
            }
        }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        for h in self.in_flight.drain(..) {
            h.abort();
        }
    }
}

#[derive(Debug)]
struct State {
    model: ReadModel,
    /// None in a read side opened for reports ([`ReadSide::open_unindexed`]).
    search: Option<SearchIndex>,
}

#[derive(Debug)]
pub struct ReadSide {
    store: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
    views: Arc<dyn ViewStore>,
    state: RwLock<State>,
    folding: tokio::sync::Mutex<()>,
    /// A fold failed: reload the model from the view store before folding again.
    stale: std::sync::atomic::AtomicBool,
    /// False for a snapshot ([`ReadSide::snapshot`]): folds stay in memory.
    persist: bool,
    /// The last position a fold may reach (`u64::MAX` but for a snapshot).
    limit: u64,
}

fn poisoned() -> AppError {
    AppError::Io("read model lock poisoned".into())
}

impl ReadSide {
    /// Where the projections are persisted (which also keeps the outbound sinks'
    /// checkpoints and the webhook endpoints).
    pub fn views(&self) -> &Arc<dyn ViewStore> {
        &self.views
    }

    /// Loads the persisted projections, catches up, and builds the search index.
    #[instrument(skip_all)]
    pub async fn open(
        store: Arc<dyn EventStore>,
        keyring: Arc<Keyring>,
        views: Arc<dyn ViewStore>,
    ) -> Result<Self, AppError> {
        let me = Self::open_unindexed(store, keyring, views).await?;
        let _one_at_a_time = me.folding.lock().await;
        me.reindex_all()?;
        drop(_one_at_a_time);
        Ok(me)
    }

    /// Loads the persisted projections and catches up, without a search index: for
    /// the operator's commands (revenue, erasures, audit, rebuild), which never
    /// search and need not open every profile. [`search`](Self::search) by email
    /// or name fails on such a read side; by id it works.
    #[instrument(skip_all)]
    pub async fn open_unindexed(
        store: Arc<dyn EventStore>,
        keyring: Arc<Keyring>,
        views: Arc<dyn ViewStore>,
    ) -> Result<Self, AppError> {
        Self::load(store, keyring, views, true, Some(u64::MAX)).await
    }

    /// The read models as of one log position, for reports and audits beside a
    /// running server: the persisted views are loaded, then the position is fixed
    /// (`at`, or the log's head once the views are loaded, so the views cannot be
    /// ahead of it), and the log is folded onto them in memory up to it and no
    /// further ([`limit`](Self::limit)). Nothing is ever saved, and the view store
    /// may be opened read-only. Views persisted past the log's head (a restore
    /// that put them ahead of the log) are [`AppError::ViewsAheadOfLog`].
    #[instrument(skip_all)]
    pub async fn snapshot(
        store: Arc<dyn EventStore>,
        keyring: Arc<Keyring>,
        views: Arc<dyn ViewStore>,
        at: Option<u64>,
    ) -> Result<Self, AppError> {
        Self::load(store, keyring, views, false, at).await
    }

    /// Checks the loaded views against the log before folding on: their
    /// checkpoint must be a position the log holds (not past its end), with the
    /// log hash recorded there. Views restored from a later backup than the log,
    /// or beside another log, fail it. A writer then forgets them and folds again
    /// from zero (and says why); a snapshot reports it as an error.
    async fn check_against_log(&self, persist: bool, limit: u64) -> Result<(), AppError> {
        let (at, recorded) = self.with_model(|m| {
            let at = m
                .customers
                .position()
                .max(m.revenue.position())
                .max(m.erasures.position());
            (at, m.checkpoint_hash)
        })?;
        if at == 0 {
            return Ok(());
        }
        let head = if persist {
            self.store.head().await?
        } else {
            limit
        };
        let problem = if at > head {
            Some(AppError::ViewsAheadOfLog {
                views: at,
                log: head,
            })
        } else {
            let record = self.store.read_all(at - 1, 1).await?;
            match (record.first(), recorded) {
                (Some(r), Some(h)) if r.position == at && r.log_hash != h => {
                    Some(AppError::ViewsFromAnotherLog { position: at })
                }
                (Some(r), _) if r.position == at => None,
                _ => Some(AppError::ViewsAheadOfLog {
                    views: at,
                    log: head,
                }),
            }
        };
        let Some(problem) = problem else {
            return Ok(());
        };
        if !persist {
            return Err(problem);
        }
        warn!(
            code = problem.code(),
            reason = %problem,
            "the persisted projections do not match the log: forgotten, and folded again from zero"
        );
        let views = self.views.clone();
        tokio::task::spawn_blocking(move || views.clear(None))
            .await
            .map_err(|_| AppError::Io("view writer panicked".into()))??;
        self.state.write().map_err(|_| poisoned())?.model = ReadModel::new();
        Ok(())
    }

    /// The last position this read side folds to (`u64::MAX` unless a snapshot).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    async fn load(
        store: Arc<dyn EventStore>,
        keyring: Arc<Keyring>,
        views: Arc<dyn ViewStore>,
        persist: bool,
        limit: Option<u64>,
    ) -> Result<Self, AppError> {
        let v = views.clone();
        let model = tokio::task::spawn_blocking(move || v.load())
            .await
            .map_err(|_| AppError::Io("view loader panicked".into()))??;
        let limit = match limit {
            Some(l) => l,
            None => store.head().await?,
        };
        let me = Self {
            store,
            keyring,
            views,
            state: RwLock::new(State {
                model,
                search: None,
            }),
            folding: tokio::sync::Mutex::new(()),
            stale: Default::default(),
            persist,
            limit,
        };
        me.check_against_log(persist, limit).await?;
        me.fold(false).await?;
        Ok(me)
    }

    /// A snapshot of this read side's stores at the log's head now (see
    /// [`snapshot`](Self::snapshot)): for an audit inside the running server.
    pub async fn snapshot_now(&self) -> Result<ReadSide, AppError> {
        Self::snapshot(
            self.store.clone(),
            self.keyring.clone(),
            self.views.clone(),
            None,
        )
        .await
    }

    /// Opens a view's profile (registration block with its patches applied).
    fn open_profile(&self, v: &CustomerView) -> Result<Option<Profile>, AppError> {
        let Some(reg) = &v.profile else {
            return Ok(None);
        };
        let Some(sealed) = reg.block.as_sealed() else {
            return Ok(None);
        };
        let mut p: Profile = match self.keyring.open(v.customer_id, reg.event_id, sealed) {
            Ok(Opened::Open(p)) => p,
            Ok(Opened::Erased) => return Ok(None),
            // No key at all: a key store restored from before this customer was
            // registered. The customer's problem, reported by `audit verify`
            // (DATA_KEY_MISSING), never a reason to stop serving the others.
            Err(ledger_crypto::CryptoError::NoKey(_)) => {
                warn!(customer = %v.customer_id, "customer has no data key; shown without a profile");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        for patch in &v.patches {
            if let Some(sealed) = patch.block.as_sealed() {
                match self
                    .keyring
                    .open::<ProfilePatch>(v.customer_id, patch.event_id, sealed)?
                {
                    Opened::Open(pp) => pp.apply_to(&mut p),
                    Opened::Erased => return Ok(None),
                }
            }
        }
        Ok(Some(p))
    }

    fn index(&self, search: &mut SearchIndex, v: &CustomerView) -> Result<(), AppError> {
        match self.entry(v)? {
            Some(e) => search.insert(e),
            None => search.remove(v.customer_id),
        }
        Ok(())
    }

    /// The search entry of a view: None for a tombstone or an unopenable profile.
    fn entry(&self, v: &CustomerView) -> Result<Option<Entry>, AppError> {
        Ok(match self.open_profile(v)? {
            Some(p) if !v.is_tombstone() => {
                let bs: Vec<BroadcasterId> = v.broadcasters.iter().copied().collect();
                Some(Entry::new(v.customer_id, &p, &bs))
            }
            _ => None,
        })
    }

    /// Builds the search index from every view, opening the profiles on all
    /// cores. The caller holds `folding`, so no page is folded (and indexed into
    /// the old index) between reading the views and installing the new index.
    fn reindex_all(&self) -> Result<(), AppError> {
        let started = Instant::now();
        let entries = {
            let st = self.state.read().map_err(|_| poisoned())?;
            let views: Vec<&CustomerView> = st.model.customers.iter().collect();
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
            let chunk = views.len().div_ceil(threads).max(1);
            std::thread::scope(|s| {
                let workers: Vec<_> = views
                    .chunks(chunk)
                    .map(|part| {
                        s.spawn(move || {
                            let mut out = Vec::with_capacity(part.len());
                            for v in part {
                                out.extend(self.entry(v)?);
                            }
                            Ok::<_, AppError>(out)
                        })
                    })
                    .collect();
                let mut all = Vec::with_capacity(views.len());
                for w in workers {
                    let part = w
                        .join()
                        .map_err(|_| AppError::Io("search indexer panicked".into()))??;
                    all.extend(part);
                }
                Ok::<_, AppError>(all)
            })?
        };
        let search = SearchIndex::from_entries(entries);
        let customers = search.len();
        self.state.write().map_err(|_| poisoned())?.search = Some(search);
        info!(
            customers,
            ms = started.elapsed().as_millis() as u64,
            "search index built in memory"
        );
        Ok(())
    }

    /// Builds the search index again from the views (what `open` does at start) and
    /// returns how long it took. On a read side opened without an index, this adds
    /// one.
    pub async fn reindex(&self) -> Result<std::time::Duration, AppError> {
        let _one_at_a_time = self.folding.lock().await;
        let started = Instant::now();
        self.reindex_all()?;
        Ok(started.elapsed())
    }

    /// Folds every event past the checkpoints into the read model and persists
    /// the changes page by page, keeping the search index up to date.
    pub async fn catch_up(&self) -> Result<CatchUp, AppError> {
        self.fold(true).await
    }

    /// [`catch_up`](Self::catch_up) for a reader that needs the model to hold
    /// the log up to `position` (its own write): nothing to do, and no wait for
    /// the fold in progress, when the model already holds it, as it usually does
    /// once the follower has folded the commit while the writer went on.
    pub async fn catch_up_to(&self, position: u64) -> Result<(), AppError> {
        if self.with_model(|m| m.position())? >= position {
            return Ok(());
        }
        let _one_at_a_time = self.folding.lock().await;
        if self.with_model(|m| m.position())? >= position {
            return Ok(());
        }
        self.fold_locked(true).await.map(|_| ())
    }

    /// The fold behind [`catch_up`](Self::catch_up). Reading and decoding the next
    /// page runs in its own task while this one folds and saves the current page,
    /// so the two halves use both cores. With `index` false the search index is
    /// left alone (the caller rebuilds it once at the end, which is cheaper than
    /// re-indexing a customer on every page that touches it).
    async fn fold(&self, index: bool) -> Result<CatchUp, AppError> {
        let _one_at_a_time = self.folding.lock().await;
        self.fold_locked(index).await
    }

    /// [`fold`](Self::fold) for a caller that holds `folding`. A fold that failed
    /// may have taken changes whose save never happened, so the in-memory model
    /// can be ahead of the persisted rows: the next fold first reloads the model
    /// as persisted (what a restart would do), so a later save can never write a
    /// checkpoint past rows that were not saved.
    async fn fold_locked(&self, index: bool) -> Result<CatchUp, AppError> {
        if self.stale.load(std::sync::atomic::Ordering::Acquire) {
            let v = self.views.clone();
            let model = tokio::task::spawn_blocking(move || v.load())
                .await
                .map_err(|_| AppError::Io("view loader panicked".into()))??;
            self.state.write().map_err(|_| poisoned())?.model = model;
            self.stale
                .store(false, std::sync::atomic::Ordering::Release);
            info!("read model reloaded from the view store after a failed catch-up");
        }
        let r = self.fold_unchecked(index).await;
        if r.is_err() {
            self.stale.store(true, std::sync::atomic::Ordering::Release);
        }
        r
    }

    async fn fold_unchecked(&self, index: bool) -> Result<CatchUp, AppError> {
        let started = Instant::now();
        let from = self.state.read().map_err(|_| poisoned())?.model.position();
        let mut pages = Pages::new(self.store.clone(), from);
        let mut events = 0u64;
        let zero = std::time::Duration::ZERO;
        let (mut read_t, mut decode_t, mut fold_t, mut save_t) = (zero, zero, zero, zero);
        let (mut views_saved, mut revenue_saved) = (0usize, 0usize);
        let mut saving = None;
        // Customers taken from the dirty set for re-indexing, still to be saved.
        let mut unsaved: Vec<CustomerId> = Vec::new();
        // The last record folded: its log hash goes with the checkpoints it ends.
        let mut last_folded: Option<(u64, [u8; 32])> = None;
        let mut folded_since_save = 0usize;
        let mut more = true;
        while more {
            let mut page = pages.next().await?;
            // A snapshot folds up to its position and no further.
            if let Some(p) = page.as_mut() {
                if p.records.last().is_some_and(|r| r.position >= self.limit) {
                    let keep = p.records.partition_point(|r| r.position <= self.limit);
                    p.records.truncate(keep);
                    p.decoded.truncate(keep);
                    more = false;
                }
            }
            let t = Instant::now();
            let changes = {
                let mut st = self.state.write().map_err(|_| poisoned())?;
                let st = &mut *st;
                if let Some(page) = &page {
                    read_t += page.read;
                    decode_t += page.decode;
                    for (r, e) in page.records.iter().zip(&page.decoded) {
                        st.model.apply(&Envelope {
                            position: r.position,
                            event_id: r.event_id,
                            recorded_at: r.recorded_at,
                            event: e,
                        });
                    }
                    if let Some(r) = page.records.last() {
                        last_folded = Some((r.position, r.log_hash));
                    }
                    folded_since_save += page.records.len();
                    events += page.records.len() as u64;
                    if let (true, Some(search)) = (index, st.search.as_mut()) {
                        let changed = st.model.customers.take_dirty();
                        for c in &changed {
                            if let Some(v) = st.model.customers.get(*c) {
                                self.index(search, v)?;
                            }
                        }
                        unsaved.extend(changed);
                    }
                } else {
                    more = false;
                }
                // One save at a time, in order: the changes of every page folded
                // while a save runs go into the next one, so a row that changes on
                // many pages (a busy revenue bucket) is written once per save, not
                // once per page, and saving keeps pace with folding by itself. At
                // the end, whatever is left.
                let save_idle = saving
                    .as_ref()
                    .is_none_or(tokio::task::JoinHandle::is_finished);
                if folded_since_save > 0 && (save_idle || !more) {
                    folded_since_save = 0;
                    let mut c = Changes::collect(&mut st.model, &std::mem::take(&mut unsaved));
                    let p = &c.positions;
                    c.log_hash = last_folded
                        .filter(|(at, _)| {
                            p.customers == *at && p.revenue == *at && p.erasures == *at
                        })
                        .map(|(_, h)| h);
                    Some(c)
                } else {
                    None
                }
            };
            fold_t += t.elapsed();
            let Some(changes) = changes else { continue };
            if !self.persist {
                continue; // a snapshot keeps its fold in memory only
            }
            // Saves stay in order: wait for the previous save, then start this one
            // and fold on while it runs.
            if let Some(prev) = saving.take() {
                save_t += join_save(prev).await?;
            }
            views_saved += changes.customers.len();
            revenue_saved += changes.revenue.len();
            let views = self.views.clone();
            saving = Some(tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                views.save(&changes).map(|()| t.elapsed())
            }));
            debug!(events, "read model saved");
        }
        if let Some(prev) = saving.take() {
            save_t += join_save(prev).await?;
        }
        if events > 0 {
            let ms = |d: std::time::Duration| d.as_millis() as u64;
            info!(
                events,
                read_ms = ms(read_t),
                decode_ms = ms(decode_t),
                fold_ms = ms(fold_t),
                save_ms = ms(save_t),
                views_saved,
                revenue_saved,
                "read model caught up"
            );
        }
        let position = self.state.read().map_err(|_| poisoned())?.model.position();
        Ok(CatchUp {
            events,
            position,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Follows the log until `stop` resolves, catching up after every commit, and
    /// never gives up: after an error (a store unreachable, a full disk) it reports
    /// the projector as failing in `health`, waits with a backoff that doubles up
    /// to 30 s (cut short when `health` hears space is back), and starts again from
    /// the last checkpoint folded in memory.
    pub async fn follow(&self, stop: impl std::future::Future<Output = ()>, health: &Health) {
        tokio::pin!(stop);
        let mut backoff = std::time::Duration::from_millis(250);
        loop {
            let err = loop {
                let pos = match self.catch_up().await {
                    Ok(c) => c.position,
                    Err(e) => break e,
                };
                health.ok(Part::Projector);
                backoff = std::time::Duration::from_millis(250);
                tokio::select! {
                    _ = &mut stop => return,
                    r = self.store.wait_for_head(pos, std::time::Duration::from_secs(1)) => {
                        if let Err(e) = r { break e.into(); }
                    }
                }
            };
            health.failed(Part::Projector, &err);
            warn!(code = err.code(), error = %err, "projector failed; restarting after a backoff");
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(backoff) => {}
                _ = health.space_returned() => {}
            }
            backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
        }
    }

    /// Forgets the named projections (all if `None`) and folds them again from
    /// position zero. Rebuilding `erasures` rebuilds `revenue` with it (receipts
    /// need the revenue state at each erasure).
    pub async fn rebuild(&self, name: Option<&str>) -> Result<CatchUp, AppError> {
        let started = Instant::now();
        let _one_at_a_time = self.folding.lock().await;
        {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            let (c, r, e) = match name {
                None => (true, true, true),
                Some("customers") => (true, false, false),
                Some("revenue") => (false, true, false),
                Some("erasures") => (false, true, true),
                Some(_) => return Err(AppError::UnknownProjection),
            };
            st.model.reset(c, r, e);
        }
        let views = self.views.clone();
        let which = name.map(str::to_owned);
        let t = Instant::now();
        tokio::task::spawn_blocking(move || views.clear(which.as_deref()))
            .await
            .map_err(|_| AppError::Io("view writer panicked".into()))??;
        info!(
            ms = t.elapsed().as_millis() as u64,
            "projection rows forgotten"
        );
        let done = self.fold_locked(false).await?;
        if self.state.read().map_err(|_| poisoned())?.search.is_some() {
            self.reindex_all()?;
        }
        Ok(CatchUp {
            seconds: started.elapsed().as_secs_f64(),
            ..done
        })
    }

    /// The summary of a customer as broadcaster `b` may see it.
    pub fn summary(&self, b: BroadcasterId, c: CustomerId) -> Result<CustomerSummary, AppError> {
        let view = {
            let st = self.state.read().map_err(|_| poisoned())?;
            match st.model.customers.get(c) {
                Some(v) if v.visible_to(b) => v.clone(),
                _ => return Err(ledger_command::Refusal::NotFound.into()),
            }
        };
        let profile = self.open_profile(&view)?;
        Ok(CustomerSummary { view, profile })
    }

    /// Searches `b`'s customers: an id finds that customer (tombstones included),
    /// a string with `@` matches emails exactly, anything else is a name prefix.
    pub fn search(
        &self,
        b: BroadcasterId,
        q: &str,
        limit: usize,
    ) -> Result<Vec<CustomerId>, AppError> {
        let q = q.trim();
        let st = self.state.read().map_err(|_| poisoned())?;
        if let Ok(id) = CustomerId::parse(q) {
            return Ok(match st.model.customers.get(id) {
                Some(v) if v.visible_to(b) => vec![id],
                _ => vec![],
            });
        }
        let search = st.search.as_ref().ok_or_else(|| {
            AppError::Io("this read side was opened without a search index".into())
        })?;
        Ok(if q.contains('@') {
            search.by_email(b, q)
        } else {
            search.by_name_prefix(b, q, limit)
        }
        .into_iter()
        .take(limit)
        .collect())
    }

    pub fn revenue(&self, filter: &RevenueFilter) -> Result<RevenueReport, AppError> {
        let st = self.state.read().map_err(|_| poisoned())?;
        let rev = &st.model.revenue;
        Ok(RevenueReport {
            digest: rev.digest(filter),
            per_currency: rev.summary(filter).into_iter().collect(),
            rows: rev.rows(filter).map(|(k, t)| (k.clone(), *t)).collect(),
        })
    }

    /// Erasure receipts, oldest first, of one broadcaster or all.
    pub fn erasures(&self, b: Option<BroadcasterId>) -> Result<Vec<ErasureRecord>, AppError> {
        let st = self.state.read().map_err(|_| poisoned())?;
        Ok(st
            .model
            .erasures
            .iter()
            .filter(|r| b.is_none_or(|b| r.is_visible_to(b)))
            .cloned()
            .collect())
    }

    pub fn erasure(&self, c: CustomerId) -> Result<Option<ErasureRecord>, AppError> {
        let st = self.state.read().map_err(|_| poisoned())?;
        Ok(st.model.erasures.get(c).cloned())
    }

    /// Runs `f` over the read model (for audits and reports).
    pub fn with_model<T>(&self, f: impl FnOnce(&ReadModel) -> T) -> Result<T, AppError> {
        let st = self.state.read().map_err(|_| poisoned())?;
        Ok(f(&st.model))
    }
}
