//! Erasure requests (GDPR Art. 12): filing one, moving it on, cancelling and
//! extending it, and the index that lists them.
//!
//! # The process
//!
//! A request lives in its own stream (`erasure-request-{id}`, see
//! `ledger_events::ErasureRequestEvent`). [`Ledger::request_erasure`] records
//! `ErasureRequested` and then [`Ledger::advance_request`] decides what happens
//! next from the customer's state ([`ledger_command::Customer::erasure_plan`]):
//!
//! - nothing blocks: the erasure runs (the same task as the one-button erasure,
//!   `CustomerAnonymized` naming this request and its actor, then the key
//!   destruction) and, once the key store confirms the key gone,
//!   `ErasureCompleted` records the receipt's position. If the key store failed,
//!   the request stays open; the next [`Ledger::advance_request`] (a retry, or the
//!   process that follows deferred requests) finds the erasure in the log and
//!   completes it once the key is gone;
//! - only active subscriptions block: `ErasureDeferred` (it completes later, by
//!   itself, once none is active);
//! - a permanent blocker (`NOT_WHITE_LABEL`, `SHARED_ACROSS_BROADCASTERS`):
//!   `ErasureRefused`, so a refusal is on record with its reason (Art. 12(4));
//! - the customer was erased before: `ErasureCompleted` with the first receipt.
//!
//! A customer the requester cannot see is `NOT_FOUND` and nothing is recorded (no
//! existence oracle, and nothing of another tenant's goes into this one's records).
//!
//! Every step is idempotent: advancing a request twice appends nothing the second
//! time, and a completed request never gets a second erasure.
//!
//! # The index
//!
//! [`RequestIndex`] folds every request stream of the log in memory, in the order
//! the requests were received, and follows the log from the last position it
//! folded ([`RequestIndex::catch_up`]). It is rebuilt at start by reading the log,
//! as the reconciler's first sweep does; request events are few next to the
//! customers' and hold no personal data (ADR 0023).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ledger_command::{
    ErasurePlan, ErasureRequest, JobState, Refusal, RequestCommand, RequestStatus,
};
use ledger_events::{
    streams, Actor, BlockerCode, CustomerEvent, ErasureJobEvent, ErasureRequestEvent,
    ExtensionReason, JobEnd,
};
use ledger_store::{EventStore, Position};
use ledger_types::{CustomerId, JobId, Reference, RequestId, SubscriptionId, Timestamp};
use tracing::{info, instrument};

use crate::service::ErasedBy;
use crate::{AppError, ErasureReceipt, Ledger};

const MAX_ATTEMPTS: usize = 8;
const PAGE: usize = 10_000;

/// How long a request has before it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasurePolicy {
    /// Calendar months from receipt to the due date (GDPR Art. 12(3): one).
    pub due_months: u32,
}

impl Default for ErasurePolicy {
    fn default() -> Self {
        Self { due_months: 1 }
    }
}

/// A request to file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// The request's id (a client may choose it, to retry safely).
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub by: Actor,
    pub reference: Option<Reference>,
    /// When the data subject's request reached the controller, if before it is
    /// filed here (a letter, an email to support): the due date counts from it.
    /// `None` is now.
    pub received_at: Option<Timestamp>,
}

/// How long before its filing a request may say it was received: a year.
pub const RECEIVED_AT_MAX_AGE_MS: i64 = 366 * 24 * 3_600_000;

/// How far ahead of the server's clock a `received_at` may be (the client's
/// clock may run a little fast); such a time is taken as now.
pub const RECEIVED_AT_CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// The receipt time of a request filed `now` that says it was received `given`.
pub fn received_at(given: Option<Timestamp>, now: Timestamp) -> Result<Timestamp, Refusal> {
    let Some(t) = given else { return Ok(now) };
    let earliest = Timestamp::from_millis(now.millis().saturating_sub(RECEIVED_AT_MAX_AGE_MS));
    if t < earliest || t.millis() > now.millis().saturating_add(RECEIVED_AT_CLOCK_SKEW_MS) {
        return Err(Refusal::ReceivedAtOutOfRange { earliest });
    }
    Ok(t.min(now))
}

/// A request as it stands after a step, with the erasure receipt when it completed
/// or when its erasure is decided but its key destruction still pending.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    pub id: RequestId,
    pub request: ErasureRequest,
    pub receipt: Option<ErasureReceipt>,
}

impl Ledger {
    pub(crate) async fn load_request(
        &self,
        id: RequestId,
    ) -> Result<(ErasureRequest, u64), AppError> {
        crate::stream::load(&*self.store, &streams::erasure_request(id)).await
    }

    /// Decides a command on a request and appends its events with optimistic
    /// concurrency, retrying on a concurrent change. Returns the state after.
    async fn execute_request(
        &self,
        id: RequestId,
        cmd: &RequestCommand,
    ) -> Result<ErasureRequest, AppError> {
        crate::stream::execute(&*self.store, &streams::erasure_request(id), cmd).await
    }

    /// Files an erasure request and takes it as far as it can go now (see the
    /// module doc). `NOT_FOUND`, with nothing recorded, if the requester cannot see
    /// the customer. Filing the same request id again for the same customer and
    /// requester is a retry: it answers the request as it stands (moved on if it
    /// can be); with anything else it is `REQUEST_EXISTS`.
    #[instrument(skip(self, req), fields(request = %req.request_id, customer = %req.customer_id))]
    pub async fn request_erasure(&self, req: FileRequest) -> Result<RequestOutcome, AppError> {
        let eraser = self.eraser(ErasedBy::from(req.by)).await?;
        let customer = self.customer(req.customer_id).await?;
        customer.erasure_plan(&eraser)?;
        let received_at = received_at(req.received_at, Timestamp::now())?;
        let due_at = received_at
            .add_months(self.policy.due_months.max(1))
            .ok_or(Refusal::InvalidInput {
                field: "received_at",
                reason: "out of range",
            })?;
        let cmd = RequestCommand::Receive {
            request_id: req.request_id,
            customer_id: req.customer_id,
            requested_by: req.by,
            reference: req.reference.clone(),
            received_at,
            due_at,
        };
        match self.execute_request(req.request_id, &cmd).await {
            Ok(_) => info!(request = %req.request_id, "erasure request received"),
            Err(AppError::Refused(Refusal::RequestExists)) => {
                let (existing, _) = self.load_request(req.request_id).await?;
                let same = existing
                    .requested()
                    .is_some_and(|r| r.customer_id == req.customer_id && r.requested_by == req.by);
                if !same {
                    return Err(Refusal::RequestExists.into());
                }
            }
            Err(e) => return Err(e),
        }
        self.advance_request(req.request_id).await
    }

    /// "Terminate and erase": terminates every active subscription of the
    /// customer (all the calling broadcaster's own, or it could not erase at all),
    /// then files the erasure request, which completes at once. Only allowed when
    /// the broadcaster could erase the customer but for those subscriptions:
    /// a permanent blocker (`NOT_WHITE_LABEL`, `SHARED_ACROSS_BROADCASTERS`) is
    /// refused with nothing done, and the operator is refused (it terminates no
    /// broadcaster's subscriptions).
    #[instrument(skip(self, req), fields(request = %req.request_id, customer = %req.customer_id))]
    pub async fn terminate_and_erase(&self, req: FileRequest) -> Result<RequestOutcome, AppError> {
        let Actor::Broadcaster { broadcaster_id, .. } = req.by else {
            return Err(Refusal::InvalidInput {
                field: "caller",
                reason: "terminate-and-erase terminates a broadcaster's own subscriptions",
            }
            .into());
        };
        let eraser = self.eraser(ErasedBy::from(req.by)).await?;
        for _ in 0..MAX_ATTEMPTS {
            let customer = self.customer(req.customer_id).await?;
            let blockers = customer.blockers_for(&eraser)?;
            if let Some(permanent) = blockers
                .iter()
                .find(|b| !matches!(b, Refusal::ActiveSubscription { .. }))
            {
                return Err(permanent.clone().into());
            }
            let active = customer.active_subscriptions();
            if active.is_empty() {
                break;
            }
            let at = Timestamp::now();
            for s in active {
                let cmd = ledger_command::CustomerCommand::TerminateSubscription {
                    broadcaster_id,
                    subscription_id: s,
                    at,
                };
                match self.execute(req.customer_id, &cmd).await {
                    // Terminated meanwhile: fine.
                    Ok(_) | Err(AppError::Refused(Refusal::SubscriptionNotActive)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.request_erasure(req).await
    }

    /// Takes a request one step on from the customer's state now: erase and
    /// complete, defer, or refuse (see the module doc). An ended request is
    /// answered as it is. Safe to call any number of times, from any process step.
    #[instrument(skip(self))]
    pub async fn advance_request(&self, id: RequestId) -> Result<RequestOutcome, AppError> {
        let (state, _) = self.load_request(id).await?;
        let Some(requested) = state.requested().cloned() else {
            return Err(Refusal::NotFound.into());
        };
        let c = requested.customer_id;
        if state.status().is_some_and(|s| s.is_ended()) {
            let receipt = if state.status() == Some(RequestStatus::Completed) {
                self.receipt_of(c).await?
            } else {
                None
            };
            return Ok(RequestOutcome {
                id,
                request: state,
                receipt,
            });
        }
        let by = ErasedBy::from(requested.requested_by);
        let eraser = self.eraser(by).await?;
        let plan = self.customer(c).await?.erasure_plan(&eraser)?;
        let now = Timestamp::now();
        let cmd = match plan {
            ErasurePlan::Erase | ErasurePlan::AlreadyErased => {
                match self.erase(by, c, id).await {
                    Ok(receipt) => {
                        let destroyed = receipt.data_key_destroyed;
                        let cmd = RequestCommand::Complete {
                            anonymized: receipt.event.clone(),
                            position: receipt.event_position,
                            data_key_destroyed: destroyed,
                            at: now,
                        };
                        if !destroyed {
                            // Decided, key destruction pending: the request stays open
                            // until the reconciler confirms the key gone.
                            return Ok(RequestOutcome {
                                id,
                                request: state,
                                receipt: Some(receipt),
                            });
                        }
                        let request = self.execute_request(id, &cmd).await?;
                        return Ok(RequestOutcome {
                            id,
                            request,
                            receipt: Some(receipt),
                        });
                    }
                    // A subscription started, or a link was made, since the plan.
                    Err(AppError::Refused(r)) => match blocker_step(&r, now) {
                        Some(cmd) => cmd,
                        None => return Err(AppError::Refused(r)),
                    },
                    Err(e) => return Err(e),
                }
            }
            ErasurePlan::Defer(subscriptions) => RequestCommand::Defer {
                subscriptions,
                at: now,
            },
            ErasurePlan::Refuse(code) => RequestCommand::Refuse { code, at: now },
        };
        self.request_step(id, &cmd).await
    }

    /// The receipt of a customer's erasure, if the log holds one (whoever can see
    /// it: callers check visibility on the request).
    async fn receipt_of(&self, c: CustomerId) -> Result<Option<ErasureReceipt>, AppError> {
        let customer = self.customer(c).await?;
        let Some(b) = customer.registered_by() else {
            return Ok(None);
        };
        self.receipt(b, c).await
    }

    /// A request as `by` may see it: the broadcaster that filed it, or the operator;
    /// anything else is `NOT_FOUND`.
    pub async fn erasure_request(
        &self,
        id: RequestId,
        by: Actor,
    ) -> Result<RequestOutcome, AppError> {
        let (state, _) = self.load_request(id).await?;
        if !state.is_visible_to(&by) {
            return Err(Refusal::NotFound.into());
        }
        let receipt = match (state.status(), state.requested()) {
            (Some(RequestStatus::Completed), Some(r)) => self.receipt_of(r.customer_id).await?,
            _ => None,
        };
        Ok(RequestOutcome {
            id,
            request: state,
            receipt,
        })
    }

    /// Withdraws an open or deferred request. Cancelling a cancelled request again
    /// changes nothing; an ended one is `REQUEST_CLOSED`.
    #[instrument(skip(self))]
    pub async fn cancel_request(
        &self,
        id: RequestId,
        by: Actor,
    ) -> Result<RequestOutcome, AppError> {
        let cmd = RequestCommand::Cancel {
            by,
            at: Timestamp::now(),
        };
        self.request_step(id, &cmd).await
    }

    async fn request_step(
        &self,
        id: RequestId,
        cmd: &RequestCommand,
    ) -> Result<RequestOutcome, AppError> {
        let request = self.execute_request(id, cmd).await?;
        Ok(RequestOutcome {
            id,
            request,
            receipt: None,
        })
    }

    /// Moves an open or deferred request's due date, once, to at most two months
    /// past the original one.
    #[instrument(skip(self))]
    pub async fn extend_request(
        &self,
        id: RequestId,
        due_at: Timestamp,
        reason: ExtensionReason,
        by: Actor,
    ) -> Result<RequestOutcome, AppError> {
        let cmd = RequestCommand::Extend {
            due_at,
            reason,
            by,
            at: Timestamp::now(),
        };
        self.request_step(id, &cmd).await
    }
}

/// The request step for an erasure refused after its plan said go: defer on
/// active subscriptions, refuse on a permanent blocker.
fn blocker_step(r: &Refusal, at: Timestamp) -> Option<RequestCommand> {
    match r {
        Refusal::ActiveSubscription { subscriptions } => Some(RequestCommand::Defer {
            subscriptions: subscriptions.clone(),
            at,
        }),
        Refusal::NotWhiteLabel => Some(RequestCommand::Refuse {
            code: BlockerCode::NotWhiteLabel,
            at,
        }),
        Refusal::SharedAcrossBroadcasters => Some(RequestCommand::Refuse {
            code: BlockerCode::SharedAcrossBroadcasters,
            at,
        }),
        _ => None,
    }
}

/// Which requests to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    /// `Some(true)`: only those past their due date and not ended; `Some(false)`:
    /// only the others.
    pub overdue: Option<bool>,
    /// Only those received after this cursor (a position from an earlier page).
    pub after: u64,
    pub limit: usize,
}

/// One listed request.
#[derive(Debug, Clone)]
pub struct IndexedRequest {
    pub id: RequestId,
    /// The log position of its `ErasureRequested` (the paging cursor).
    pub position: u64,
    pub request: ErasureRequest,
}

/// A page of requests, and the cursor of the next page if there is one.
#[derive(Debug, Clone)]
pub struct RequestPage {
    pub items: Vec<IndexedRequest>,
    pub next: Option<u64>,
}

/// Counts of requests by status, and the oldest open one's receipt time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub by_status: BTreeMap<&'static str, u64>,
    pub overdue: u64,
    pub oldest_open_received_at: Option<Timestamp>,
}

#[derive(Debug, Default)]
struct Folded {
    scanned: Position,
    /// Position of each request's `ErasureRequested` → its id.
    order: BTreeMap<u64, RequestId>,
    requests: HashMap<RequestId, (u64, ErasureRequest)>,
    /// Customers whose stream changed since the process manager last looked.
    touched: HashSet<CustomerId>,
    /// Active subscriptions with an end date: (ends_at, customer, subscription).
    endings: BTreeSet<(Timestamp, CustomerId, SubscriptionId)>,
    ending_of: HashMap<SubscriptionId, (Timestamp, CustomerId)>,
    /// Erasure jobs, briefly (see [`JobBrief`]).
    jobs: BTreeMap<JobId, JobBrief>,
    /// Requests a job runner is taking through their steps itself: the process
    /// manager leaves them alone meanwhile (see `crate::jobs`).
    claimed: HashSet<RequestId>,
    /// Jobs a runner of this process is driving (one at a time per job).
    busy_jobs: HashSet<JobId>,
}

/// What the index keeps of an erasure job: enough for the runner to find the jobs
/// it must drive and for the metrics to count them by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobBrief {
    pub state: JobState,
    /// A chunk is begun and not settled.
    pub in_flight: bool,
}

impl JobBrief {
    /// Whether the runner still has something to do for this job.
    pub fn unfinished(&self) -> bool {
        !self.state.is_ended() || self.in_flight
    }

    fn apply(brief: Option<Self>, e: &ErasureJobEvent) -> Option<Self> {
        let mut b = match (brief, e) {
            (None, ErasureJobEvent::Submitted(_)) => {
                return Some(JobBrief {
                    state: JobState::Validating,
                    in_flight: false,
                })
            }
            (None, _) => return None,
            (Some(b), _) => b,
        };
        let ended = b.state.is_ended();
        match e {
            ErasureJobEvent::Submitted(_) => {}
            ErasureJobEvent::Validated(_) if b.state == JobState::Validating => {
                b.state = JobState::Ready
            }
            ErasureJobEvent::Started(_) if b.state == JobState::Ready => {
                b.state = JobState::Running
            }
            ErasureJobEvent::ChunkStarted(_) if b.state == JobState::Running => b.in_flight = true,
            ErasureJobEvent::ItemsSettled(_) => b.in_flight = false,
            ErasureJobEvent::Finished(f) if b.state == JobState::Running => {
                b.state = match f.end {
                    JobEnd::Succeeded => JobState::Succeeded,
                    JobEnd::PartiallyFailed => JobState::PartiallyFailed,
                }
            }
            ErasureJobEvent::Cancelled(_) if !ended => b.state = JobState::Cancelled,
            _ => {}
        }
        Some(b)
    }
}

impl Folded {
    fn customer_event(&mut self, c: CustomerId, e: &CustomerEvent) {
        match e {
            CustomerEvent::SubscriptionStarted(s) => {
                if let Some(t) = s.ends_at {
                    if let std::collections::hash_map::Entry::Vacant(v) =
                        self.ending_of.entry(s.subscription_id)
                    {
                        v.insert((t, c));
                        self.endings.insert((t, c, s.subscription_id));
                    }
                }
            }
            CustomerEvent::SubscriptionTerminated(s) => {
                if let Some((t, c)) = self.ending_of.remove(&s.subscription_id) {
                    self.endings.remove(&(t, c, s.subscription_id));
                }
            }
            _ => {}
        }
        self.touched.insert(c);
    }
}

/// The customer events the process manager follows (the others are not decoded).
fn followed(event_type: &str) -> bool {
    matches!(
        event_type,
        "SubscriptionStarted" | "SubscriptionTerminated" | "CustomerLinked" | "CustomerAnonymized"
    )
}

/// Every erasure request, folded from the log in memory (see the module doc).
#[derive(Debug)]
pub struct RequestIndex {
    store: Arc<dyn EventStore>,
    folded: Mutex<Folded>,
    /// Serializes catch-ups.
    catching: tokio::sync::Mutex<()>,
}

impl RequestIndex {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            folded: Mutex::new(Folded::default()),
            catching: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Folded>, AppError> {
        self.folded
            .lock()
            .map_err(|_| AppError::Io("request index lock poisoned".into()))
    }

    /// The log position folded up to.
    pub fn position(&self) -> Position {
        self.lock().map(|f| f.scanned).unwrap_or(0)
    }

    /// Folds every request event committed since the last catch-up. Returns the
    /// position folded up to.
    pub async fn catch_up(&self) -> Result<Position, AppError> {
        let _one = self.catching.lock().await;
        let mut after = self.position();
        loop {
            let page = self.store.read_all(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            let last = last.position;
            let mut decoded = Vec::new();
            let mut customers = Vec::new();
            let mut jobs = Vec::new();
            for r in &page {
                if let Some(id) = streams::parse_erasure_job(&r.stream) {
                    let e = ErasureJobEvent::decode(&r.event_type, r.schema_version, &r.payload)?;
                    jobs.push((id, e));
                } else if let Some(id) = streams::parse_erasure_request(&r.stream) {
                    let e =
                        ErasureRequestEvent::decode(&r.event_type, r.schema_version, &r.payload)?;
                    decoded.push((r.position, id, e));
                } else if followed(&r.event_type) {
                    if let Some(c) = streams::parse_customer(&r.stream) {
                        let e = CustomerEvent::decode(&r.event_type, r.schema_version, &r.payload)?;
                        customers.push((c, e));
                    }
                }
            }
            let mut f = self.lock()?;
            for (c, e) in customers {
                f.customer_event(c, &e);
            }
            for (id, e) in jobs {
                let brief = JobBrief::apply(f.jobs.get(&id).copied(), &e);
                if let Some(b) = brief {
                    f.jobs.insert(id, b);
                }
            }
            for (position, id, e) in decoded {
                let entry = f
                    .requests
                    .entry(id)
                    .or_insert_with(|| (position, ErasureRequest::default()));
                let first = !entry.1.exists();
                entry.1.apply(&e);
                if first && entry.1.exists() {
                    entry.0 = position;
                    f.order.insert(position, id);
                }
            }
            f.scanned = last;
            after = last;
        }
        Ok(after)
    }

    /// One request, if folded.
    pub fn get(&self, id: RequestId) -> Option<IndexedRequest> {
        let f = self.lock().ok()?;
        f.requests
            .get(&id)
            .map(|(position, request)| IndexedRequest {
                id,
                position: *position,
                request: request.clone(),
            })
    }

    /// The requests `by` may see (its own; every one for the operator), oldest
    /// first, filtered and paged. `now` decides what is overdue.
    pub fn list(&self, by: &Actor, filter: &RequestFilter, now: Timestamp) -> RequestPage {
        let Ok(f) = self.lock() else {
            return RequestPage {
                items: vec![],
                next: None,
            };
        };
        let limit = filter.limit.max(1);
        let mut items = Vec::new();
        let mut next = None;
        for (position, id) in f.order.range(filter.after.saturating_add(1)..) {
            let Some((_, r)) = f.requests.get(id) else {
                continue;
            };
            if !r.is_visible_to(by)
                || filter.status.is_some_and(|s| r.status() != Some(s))
                || filter.overdue.is_some_and(|o| r.is_overdue(now) != o)
            {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|i: &IndexedRequest| i.position);
                break;
            }
            items.push(IndexedRequest {
                id: *id,
                position: *position,
                request: r.clone(),
            });
        }
        RequestPage { items, next }
    }

    /// Every unfinished (open or deferred) request, oldest first, with its
    /// customer and whether it is deferred (the process manager walks these).
    pub fn unfinished_entries(&self) -> Vec<(RequestId, CustomerId, bool)> {
        let Ok(f) = self.lock() else { return vec![] };
        f.order
            .values()
            .filter(|id| !f.claimed.contains(id))
            .filter_map(|id| {
                let (_, r) = f.requests.get(id)?;
                let status = r.status().filter(|s| !s.is_ended())?;
                let c = r.requested()?.customer_id;
                Some((*id, c, status == RequestStatus::Deferred))
            })
            .collect()
    }

    /// Marks requests as driven by a job runner: [`RequestIndex::unfinished_entries`]
    /// leaves them out until [`RequestIndex::release`].
    pub fn claim(&self, ids: &[RequestId]) {
        if let Ok(mut f) = self.lock() {
            f.claimed.extend(ids.iter().copied());
        }
    }

    /// Hands requests back to the process manager.
    pub fn release(&self, ids: &[RequestId]) {
        if let Ok(mut f) = self.lock() {
            for id in ids {
                f.claimed.remove(id);
            }
        }
    }

    /// Takes a job for this caller alone; `false` if another holds it.
    pub fn claim_job(&self, id: JobId) -> bool {
        self.lock().is_ok_and(|mut f| f.busy_jobs.insert(id))
    }

    /// Lets another caller take the job.
    pub fn release_job(&self, id: JobId) {
        if let Ok(mut f) = self.lock() {
            f.busy_jobs.remove(&id);
        }
    }

    /// The erasure jobs the runner still has something to do for, oldest id first.
    pub fn unfinished_jobs(&self) -> Vec<JobId> {
        let Ok(f) = self.lock() else { return vec![] };
        f.jobs
            .iter()
            .filter(|(_, b)| b.unfinished())
            .map(|(id, _)| *id)
            .collect()
    }

    /// How many erasure jobs are in each state (every state listed).
    pub fn job_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut out: BTreeMap<&'static str, u64> =
            JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        if let Ok(f) = self.lock() {
            for b in f.jobs.values() {
                *out.entry(b.state.as_str()).or_default() += 1;
            }
        }
        out
    }

    /// The customers whose stream changed since the last call (and forgets them).
    pub fn take_touched(&self) -> HashSet<CustomerId> {
        self.lock()
            .map(|mut f| std::mem::take(&mut f.touched))
            .unwrap_or_default()
    }

    /// The customers with an active subscription whose `ends_at` is at or before
    /// `now` (they stay listed until the termination is folded).
    pub fn take_due_endings(&self, now: Timestamp) -> Vec<CustomerId> {
        let Ok(f) = self.lock() else { return vec![] };
        let mut out: Vec<CustomerId> = f
            .endings
            .iter()
            .take_while(|(t, _, _)| *t <= now)
            .map(|(_, c, _)| *c)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The earliest `ends_at` of an active subscription, if any.
    pub fn next_ending(&self) -> Option<Timestamp> {
        self.lock().ok()?.endings.iter().next().map(|(t, _, _)| *t)
    }

    /// Counts by status (every request), overdue ones, and the oldest open one.
    pub fn counts(&self, now: Timestamp) -> RequestCounts {
        let mut c = RequestCounts::default();
        for s in RequestStatus::ALL {
            c.by_status.insert(s.as_str(), 0);
        }
        let Ok(f) = self.lock() else { return c };
        for (_, r) in f.requests.values() {
            let Some(s) = r.status() else { continue };
            *c.by_status.entry(s.as_str()).or_default() += 1;
            if r.is_overdue(now) {
                c.overdue += 1;
            }
            if !s.is_ended() {
                let received = r.requested().map(|q| q.received_at);
                c.oldest_open_received_at = match (c.oldest_open_received_at, received) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        c
    }
}
