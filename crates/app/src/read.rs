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
use ledger_store::EventStore;
use ledger_types::{BroadcasterId, Currency, CustomerId};
use serde::Serialize;
use tracing::{debug, info, instrument};

use crate::search::SearchIndex;
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
    records: Vec<ledger_store::RecordedEvent>,
    decoded: Vec<DomainEvent>,
    read: std::time::Duration,
    decode: std::time::Duration,
}

#[derive(Debug)]
struct State {
    model: ReadModel,
    search: SearchIndex,
}

#[derive(Debug)]
pub struct ReadSide {
    store: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
    views: Arc<dyn ViewStore>,
    state: RwLock<State>,
    folding: tokio::sync::Mutex<()>,
}

fn poisoned() -> AppError {
    AppError::Io("read model lock poisoned".into())
}

impl ReadSide {
    /// Loads the persisted projections, builds the search index, and catches up.
    #[instrument(skip_all)]
    pub async fn open(
        store: Arc<dyn EventStore>,
        keyring: Arc<Keyring>,
        views: Arc<dyn ViewStore>,
    ) -> Result<Self, AppError> {
        let v = views.clone();
        let model = tokio::task::spawn_blocking(move || v.load())
            .await
            .map_err(|_| AppError::Io("view loader panicked".into()))??;
        let me = Self {
            store,
            keyring,
            views,
            state: RwLock::new(State {
                model,
                search: SearchIndex::default(),
            }),
            folding: tokio::sync::Mutex::new(()),
        };
        me.fold(false).await?;
        me.reindex_all()?;
        Ok(me)
    }

    /// Opens a view's profile (registration block with its patches applied).
    fn open_profile(&self, v: &CustomerView) -> Result<Option<Profile>, AppError> {
        let Some(reg) = &v.profile else {
            return Ok(None);
        };
        let Some(sealed) = reg.block.as_sealed() else {
            return Ok(None);
        };
        let mut p: Profile = match self.keyring.open(v.customer_id, reg.event_id, sealed)? {
            Opened::Open(p) => p,
            Opened::Erased => return Ok(None),
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
        match self.open_profile(v)? {
            Some(p) if !v.is_tombstone() => {
                let bs: Vec<BroadcasterId> = v.broadcasters.iter().copied().collect();
                search.upsert(v.customer_id, &p, &bs);
            }
            _ => search.remove(v.customer_id),
        }
        Ok(())
    }

    fn reindex_all(&self) -> Result<(), AppError> {
        let started = Instant::now();
        let mut st = self.state.write().map_err(|_| poisoned())?;
        let mut search = SearchIndex::default();
        for v in st.model.customers.iter() {
            self.index(&mut search, v)?;
        }
        st.search = search;
        info!(
            customers = st.search.len(),
            ms = started.elapsed().as_millis() as u64,
            "search index built in memory"
        );
        Ok(())
    }

    /// Folds every event past the checkpoints into the read model and persists
    /// the changes page by page, keeping the search index up to date.
    pub async fn catch_up(&self) -> Result<CatchUp, AppError> {
        self.fold(true).await
    }

    /// The fold behind [`catch_up`](Self::catch_up). Reading and decoding the next
    /// page runs in its own task while this one folds and saves the current page,
    /// so the two halves use both cores. With `index` false the search index is
    /// left alone (the caller rebuilds it once at the end, which is cheaper than
    /// re-indexing a customer on every page that touches it).
    async fn fold(&self, index: bool) -> Result<CatchUp, AppError> {
        let _one_at_a_time = self.folding.lock().await;
        let started = Instant::now();
        let from = self.state.read().map_err(|_| poisoned())?.model.position();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Page, AppError>>(2);
        let store = self.store.clone();
        let reader = tokio::spawn(async move {
            let mut after = from;
            loop {
                let t = Instant::now();
                let page = match store.read_all(after, PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let Some(last) = page.last() else { return };
                after = last.position;
                let read = t.elapsed();
                let t = Instant::now();
                let decoded = page
                    .iter()
                    .map(decode_record)
                    .collect::<Result<Vec<DomainEvent>, _>>();
                let msg = decoded.map(|decoded| Page {
                    records: page,
                    decoded,
                    read,
                    decode: t.elapsed(),
                });
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        let mut events = 0u64;
        let zero = std::time::Duration::ZERO;
        let (mut read_t, mut decode_t, mut fold_t, mut save_t) = (zero, zero, zero, zero);
        let mut saving = None;
        while let Some(page) = rx.recv().await {
            let page = page?;
            read_t += page.read;
            decode_t += page.decode;
            let t = Instant::now();
            let changes = {
                let mut st = self.state.write().map_err(|_| poisoned())?;
                let st = &mut *st;
                for (r, e) in page.records.iter().zip(&page.decoded) {
                    st.model.apply(&Envelope {
                        position: r.position,
                        event_id: r.event_id,
                        recorded_at: r.recorded_at,
                        event: e,
                    });
                }
                let changed = st.model.customers.take_dirty();
                if index {
                    for c in &changed {
                        if let Some(v) = st.model.customers.get(*c) {
                            self.index(&mut st.search, v)?;
                        }
                    }
                }
                Changes::collect(&mut st.model, &changed)
            };
            fold_t += t.elapsed();
            // Saves stay in order: wait for the previous page's save, then start
            // this one and fold the next page while it runs.
            if let Some(prev) = saving.take() {
                save_t += join_save(prev).await?;
            }
            let views = self.views.clone();
            saving = Some(tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                views.save(&changes).map(|()| t.elapsed())
            }));
            events += page.records.len() as u64;
            debug!(events, "read model page folded");
        }
        if let Some(prev) = saving.take() {
            save_t += join_save(prev).await?;
        }
        reader
            .await
            .map_err(|_| AppError::Io("log reader panicked".into()))?;
        if events > 0 {
            let ms = |d: std::time::Duration| d.as_millis() as u64;
            info!(
                events,
                read_ms = ms(read_t),
                decode_ms = ms(decode_t),
                fold_ms = ms(fold_t),
                save_ms = ms(save_t),
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

    /// Follows the log until `stop` resolves, catching up after every commit.
    pub async fn follow(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), AppError> {
        tokio::pin!(stop);
        loop {
            let pos = self.catch_up().await?.position;
            tokio::select! {
                _ = &mut stop => return Ok(()),
                r = self.store.wait_for_head(pos, std::time::Duration::from_secs(1)) => { r?; }
            }
        }
    }

    /// Forgets the named projections (all if `None`) and folds them again from
    /// position zero. Rebuilding `erasures` rebuilds `revenue` with it (receipts
    /// need the revenue state at each erasure).
    pub async fn rebuild(&self, name: Option<&str>) -> Result<CatchUp, AppError> {
        let started = Instant::now();
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
        tokio::task::spawn_blocking(move || views.clear(which.as_deref()))
            .await
            .map_err(|_| AppError::Io("view writer panicked".into()))??;
        let done = self.fold(false).await?;
        self.reindex_all()?;
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
        Ok(if q.contains('@') {
            st.search.by_email(b, q)
        } else {
            st.search.by_name_prefix(b, q, limit)
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
            .filter(|r| b.is_none_or(|b| r.broadcaster_id == b))
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
