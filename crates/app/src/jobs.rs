//! Bulk erasure jobs (issue 12, part 4): up to [`MAX_JOB_ITEMS`] customers filed at
//! once, each as an erasure request of its own.
//!
//! # The job
//!
//! A job lives in its own stream (`erasure-job-{id}`, see
//! `ledger_events::ErasureJobEvent` and the `ErasureJob` aggregate). Submitting it
//! records the list (`validating`), then every item is checked as the erasure
//! preview checks it and the findings are recorded (`ready`). The runner then
//! starts it by itself (`running`; ADR 0025 says why there is no start call) and
//! takes the items in chunks of consecutive items: `ErasureJobChunkStarted`, the
//! chunk's requests filed and taken as far as they go, `ErasureJobItemsSettled`
//! with each item's outcome. When every item is settled the job ends `succeeded`
//! (every item completed or deferred) or `partially_failed` (one was refused or
//! not found). A cancel stops it between chunks.
//!
//! # One request per item, never two
//!
//! Item `i` is filed as the request [`request_id_for`]`(job, customer)`: a UUID
//! derived from the two ids, so a restart, a retried chunk or a second runner
//! files the same request again, which its stream refuses (`NoStream`) or the
//! request path answers as the retry it is. So each item has exactly one request,
//! each request ends once (`ErasureCompleted` is appended against version 1, or by
//! the aggregate), and each customer has at most one `CustomerAnonymized` (the
//! customer stream's expected version).
//!
//! # The fast path and the safe path
//!
//! A chunk is first tried in bulk (what makes 5,000 erasures/s possible on the
//! embedded store): every customer of the chunk is loaded and planned, then one
//! atomic append files every request (`ErasureRequested`, with `ErasureDeferred`
//! or `ErasureRefused` when that is the plan) together with every
//! `CustomerAnonymized`; the erased customers go on the forget list; their keys are
//! destroyed in one key-store transaction; then one atomic append records every
//! `ErasureCompleted` together with the job's `ErasureJobItemsSettled`. An erasure
//! is still completed only after its key is gone.
//!
//! Anything unusual sends the chunk down the safe path, item by item through
//! [`Ledger::request_erasure`] (idempotent, see `crate::requests`): a concurrent
//! change to one of the streams (an append conflict), a customer already erased, and
//! above all a chunk found in flight after a restart, whatever step the crash
//! interrupted (the shredder's start-up sweep has destroyed the keys of any
//! `CustomerAnonymized` by then, ADR 0016).
//!
//! While a runner drives a chunk it claims the chunk's requests in the
//! [`RequestIndex`](crate::requests::RequestIndex), so the process manager does not
//! race it on requests it is about to complete; it sees them again once released.

use std::sync::Arc;
use std::time::Duration;

use ledger_command::{
    check_ids, Customer, CustomerCommand, Eraser, ErasureJob, ErasurePlan, ErasureRequest,
    JobCommand, JobState, Refusal, RequestCommand, RequestStatus,
};
use ledger_events::{
    streams, Actor, CustomerEvent, ErasureJobSubmitted, ItemCheck, ItemFinding, ItemOutcome,
    MAX_JOB_ITEMS,
};
use ledger_store::{AppendRequest, ExpectedVersion, StoreError};
use ledger_types::{CustomerId, JobId, Reference, RequestId, Timestamp};
use sha2::{Digest, Sha256};
use tracing::{info, instrument, warn};

use crate::forget::ForgetEntry;
use crate::requests::FileRequest;
use crate::service::ErasedBy;
use crate::stream::{expected, new_event};
use crate::{encode_customer_event, failpoint, AppError, Ledger};

/// Items per chunk: one chunk is one atomic filing, one key-store transaction and
/// one atomic completion; after a crash, at most one chunk is redone item by item.
pub const CHUNK: usize = 1_000;
/// How often the runner looks for jobs when nothing wakes it.
pub const PASS_EVERY: Duration = Duration::from_secs(10);
/// Concurrent customer reads while validating or planning a chunk.
const READERS: usize = 8;

/// A job to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitJob {
    /// The job's id (a client may choose it, to retry safely).
    pub job_id: JobId,
    pub by: Actor,
    pub reference: Option<Reference>,
    pub customer_ids: Vec<CustomerId>,
}

/// The request id of a job's item: a UUID (version 8, RFC 9562) made of the first
/// 16 bytes of `sha256("ledger-erasure-job-request-v1" || job || customer)`.
pub fn request_id_for(job: JobId, customer: CustomerId) -> RequestId {
    let mut h = Sha256::new();
    h.update(b"ledger-erasure-job-request-v1");
    h.update(job.as_bytes());
    h.update(customer.as_bytes());
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    RequestId::from_uuid(uuid::Uuid::from_bytes(b))
}

/// What the validation finds for one customer (the preview's blockers).
fn checks_of(customer: &Customer, eraser: &Eraser) -> Vec<ItemCheck> {
    match customer.blockers_for(eraser) {
        Err(_) => vec![ItemCheck::NotFound],
        Ok(blockers) => blockers
            .iter()
            .filter_map(|b| match b {
                Refusal::NotWhiteLabel => Some(ItemCheck::NotWhiteLabel),
                Refusal::SharedAcrossBroadcasters => Some(ItemCheck::SharedAcrossBroadcasters),
                Refusal::ActiveSubscription { .. } => Some(ItemCheck::ActiveSubscription),
                _ => None,
            })
            .collect(),
    }
}

/// The job outcome of an item's request as it stands; `None` while it has not
/// reached one (its key destruction is pending).
fn outcome_of(r: &ErasureRequest) -> Option<ItemOutcome> {
    match r.status()? {
        RequestStatus::Completed => Some(ItemOutcome::Completed),
        RequestStatus::Deferred => Some(ItemOutcome::Deferred),
        RequestStatus::Refused => Some(ItemOutcome::Refused),
        RequestStatus::Cancelled => Some(ItemOutcome::Cancelled),
        RequestStatus::Open => None,
    }
}

fn pending() -> AppError {
    AppError::Io("an item's key destruction is still pending; the chunk is retried".into())
}

/// Releases claimed requests when dropped (whatever way the chunk ends).
struct Claim<'a> {
    ledger: &'a Ledger,
    ids: Vec<RequestId>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.ledger.requests.release(&self.ids);
    }
}

impl Ledger {
    /// A job's state and stream version (0: no such job).
    pub async fn load_job(&self, id: JobId) -> Result<(ErasureJob, u64), AppError> {
        crate::stream::load(&*self.store, &streams::erasure_job(id)).await
    }

    async fn execute_job(&self, id: JobId, cmd: &JobCommand) -> Result<ErasureJob, AppError> {
        crate::stream::execute(&*self.store, &streams::erasure_job(id), cmd).await
    }

    /// Submits a job and validates it (see the module doc). Submitting the same
    /// job id again with the same requester, reference and customers is a retry:
    /// it answers the job as it stands (`false`: not created now); with anything
    /// else it is `JOB_EXISTS`. The list is refused whole (`TOO_MANY_IDS`,
    /// `DUPLICATE_IDS`, `INVALID_INPUT` when empty) with nothing recorded.
    #[instrument(skip(self, req), fields(job = %req.job_id, items = req.customer_ids.len()))]
    pub async fn submit_job(&self, req: SubmitJob) -> Result<(ErasureJob, bool), AppError> {
        check_ids(&req.customer_ids)?;
        // An unknown broadcaster sees no customer at all.
        self.eraser(ErasedBy::from(req.by)).await?;
        let cmd = JobCommand::Submit {
            job_id: req.job_id,
            requested_by: req.by,
            reference: req.reference,
            customer_ids: req.customer_ids,
            at: Timestamp::now(),
        };
        let (existing, _) = self.load_job(req.job_id).await?;
        if existing.exists() {
            if existing.is_same_submission(&cmd) {
                return Ok((existing, false));
            }
            return Err(Refusal::JobExists.into());
        }
        let job = self.execute_job(req.job_id, &cmd).await?;
        info!(job = %req.job_id, items = job.len(), "erasure job submitted");
        if !self.requests.claim_job(req.job_id) {
            // A runner has it already (it validates it).
            return Ok((job, true));
        }
        let r = self.validate_job(req.job_id).await;
        self.requests.release_job(req.job_id);
        Ok((r?, true))
    }

    /// Checks every item of a `validating` job and records the findings.
    async fn validate_job(&self, id: JobId) -> Result<ErasureJob, AppError> {
        let (job, _) = self.load_job(id).await?;
        let Some(sub) = job.submitted().cloned() else {
            return Err(Refusal::NotFound.into());
        };
        if job.state() != Some(JobState::Validating) {
            return Ok(job);
        }
        let eraser = self.eraser(ErasedBy::from(sub.requested_by)).await?;
        let customers = self.load_customers(&sub.customer_ids).await?;
        let findings = customers
            .iter()
            .enumerate()
            .filter_map(|(i, (c, _))| {
                let checks = checks_of(c, &eraser);
                (!checks.is_empty()).then_some(ItemFinding {
                    index: i as u32,
                    checks,
                })
            })
            .collect();
        let cmd = JobCommand::Validate {
            findings,
            at: Timestamp::now(),
        };
        self.execute_job(id, &cmd).await
    }

    /// Loads customers (state and stream version), [`READERS`] at a time, in order.
    async fn load_customers(&self, ids: &[CustomerId]) -> Result<Vec<(Customer, u64)>, AppError> {
        let mut tasks = tokio::task::JoinSet::new();
        let per = ids.len().div_ceil(READERS).max(1);
        for (k, part) in ids.chunks(per).enumerate() {
            let (store, part) = (self.store.clone(), part.to_vec());
            tasks.spawn(async move {
                let mut out = Vec::with_capacity(part.len());
                for c in part {
                    let records = store.read_stream(&streams::customer(c), 1).await?;
                    let mut customer = Customer::default();
                    for r in &records {
                        customer.apply(&CustomerEvent::decode(
                            &r.event_type,
                            r.schema_version,
                            &r.payload,
                        )?);
                    }
                    out.push((customer, records.last().map_or(0, |r| r.version)));
                }
                Ok::<_, AppError>((k, out))
            });
        }
        let mut parts = Vec::new();
        while let Some(r) = tasks.join_next().await {
            parts.push(r.map_err(|_| AppError::Io("customer read task failed".into()))??);
        }
        parts.sort_by_key(|(k, _)| *k);
        Ok(parts.into_iter().flat_map(|(_, p)| p).collect())
    }

    /// A job as `by` may see it: the broadcaster that submitted it, or the
    /// operator; anything else is `NOT_FOUND`.
    pub async fn erasure_job(&self, id: JobId, by: Actor) -> Result<ErasureJob, AppError> {
        let (job, _) = self.load_job(id).await?;
        if !job.is_visible_to(&by) {
            return Err(Refusal::NotFound.into());
        }
        Ok(job)
    }

    /// Cancels a job: no chunk is begun after this (the one in flight is settled).
    /// Cancelling twice changes nothing; an ended job is `JOB_CLOSED`.
    #[instrument(skip(self))]
    pub async fn cancel_job(&self, id: JobId, by: Actor) -> Result<ErasureJob, AppError> {
        let cmd = JobCommand::Cancel {
            by,
            at: Timestamp::now(),
        };
        self.execute_job(id, &cmd).await
    }

    /// Drives a job to its end (or until it is cancelled): validates, starts, then
    /// runs chunks of `chunk` items; `progress` hears the job after every step.
    /// Safe to call again after any failure or crash; `Ok(None)` when another
    /// runner of this process holds the job.
    pub async fn run_job(
        &self,
        id: JobId,
        chunk: usize,
        progress: &(dyn Fn(&ErasureJob) + Send + Sync),
    ) -> Result<Option<ErasureJob>, AppError> {
        if !self.requests.claim_job(id) {
            return Ok(None);
        }
        let r = self.drive_job(id, chunk.max(1), progress).await;
        self.requests.release_job(id);
        r.map(Some)
    }

    async fn drive_job(
        &self,
        id: JobId,
        chunk: usize,
        progress: &(dyn Fn(&ErasureJob) + Send + Sync),
    ) -> Result<ErasureJob, AppError> {
        loop {
            let (job, version) = self.load_job(id).await?;
            progress(&job);
            let Some(state) = job.state() else {
                return Err(Refusal::NotFound.into());
            };
            if let Some((from, to)) = job.in_flight() {
                self.settle_safely(id, &job, from, to).await?;
                continue;
            }
            let at = Timestamp::now();
            match state {
                JobState::Validating => {
                    self.validate_job(id).await?;
                }
                JobState::Ready => {
                    self.execute_job(id, &JobCommand::Start { at }).await?;
                    info!(job = %id, "erasure job started");
                }
                JobState::Running if job.settled() == job.len() => {
                    let done = self.execute_job(id, &JobCommand::Finish { at }).await?;
                    info!(job = %id, state = done.state().map_or("", |s| s.as_str()), "erasure job finished");
                }
                JobState::Running => {
                    let from = job.settled();
                    let to = (from + chunk).min(job.len());
                    let (from, to) = (from as u32, to as u32);
                    let begin = JobCommand::BeginChunk { from, to, at };
                    match self.execute_job(id, &begin).await {
                        Ok(_) => {}
                        // Cancelled meanwhile: the next turn sees it.
                        Err(AppError::Refused(Refusal::JobState { .. })) => continue,
                        Err(e) => return Err(e),
                    }
                    self.run_chunk(id, &job, version + 1, from, to).await?;
                }
                _ => return Ok(job),
            }
        }
    }

    /// The chunk's items: (index, customer, request id).
    fn items(
        id: JobId,
        sub: &ErasureJobSubmitted,
        from: u32,
        to: u32,
    ) -> Vec<(usize, CustomerId, RequestId)> {
        (from as usize..to as usize)
            .filter_map(|i| {
                sub.customer_ids
                    .get(i)
                    .map(|c| (i, *c, request_id_for(id, *c)))
            })
            .collect()
    }

    fn claim<'a>(&'a self, items: &[(usize, CustomerId, RequestId)]) -> Claim<'a> {
        let ids: Vec<RequestId> = items.iter().map(|(_, _, r)| *r).collect();
        self.requests.claim(&ids);
        Claim { ledger: self, ids }
    }

    /// The safe path for the chunk in flight: every item through the request path
    /// (idempotent), then the chunk settled. For a cancelled job, items that were
    /// never filed stay unfiled (`cancelled`).
    async fn settle_safely(
        &self,
        id: JobId,
        job: &ErasureJob,
        from: u32,
        to: u32,
    ) -> Result<(), AppError> {
        let Some(sub) = job.submitted() else {
            return Err(Refusal::NotFound.into());
        };
        let cancelled = job.state() == Some(JobState::Cancelled);
        let items = Self::items(id, sub, from, to);
        let _claim = self.claim(&items);
        let mut outcomes = Vec::with_capacity(items.len());
        for (_, c, r) in &items {
            outcomes.push(self.item_safely(sub, *c, *r, cancelled).await?);
        }
        let cmd = JobCommand::Settle {
            from,
            to,
            outcomes,
            at: Timestamp::now(),
        };
        self.execute_job(id, &cmd).await?;
        Ok(())
    }

    /// One item through the request path: filed (or found filed) and taken as far
    /// as it goes.
    async fn item_safely(
        &self,
        sub: &ErasureJobSubmitted,
        c: CustomerId,
        r: RequestId,
        cancelled: bool,
    ) -> Result<ItemOutcome, AppError> {
        let request = if cancelled {
            let (existing, _) = self.load_request(r).await?;
            if !existing.exists() {
                return Ok(ItemOutcome::Cancelled);
            }
            self.advance_request(r).await
        } else {
            self.request_erasure(FileRequest {
                request_id: r,
                customer_id: c,
                by: sub.requested_by,
                reference: sub.reference.clone(),
                received_at: None,
            })
            .await
        };
        match request {
            Ok(o) => outcome_of(&o.request).ok_or_else(pending),
            Err(AppError::Refused(Refusal::NotFound)) => Ok(ItemOutcome::NotFound),
            Err(e) => Err(e),
        }
    }

    /// The fast path for a chunk just begun (see the module doc); `job_version` is
    /// the job stream's version after `ErasureJobChunkStarted`.
    async fn run_chunk(
        &self,
        id: JobId,
        job: &ErasureJob,
        job_version: u64,
        from: u32,
        to: u32,
    ) -> Result<(), AppError> {
        let Some(sub) = job.submitted() else {
            return Err(Refusal::NotFound.into());
        };
        let items = Self::items(id, sub, from, to);
        let claim = self.claim(&items);
        let by = ErasedBy::from(sub.requested_by);
        let eraser = self.eraser(by).await?;
        let at = Timestamp::now();
        let due_at = at
            .add_months(self.policy.due_months.max(1))
            .ok_or(Refusal::InvalidInput {
                field: "received_at",
                reason: "out of range",
            })?;
        let ids: Vec<CustomerId> = items.iter().map(|(_, c, _)| *c).collect();
        let customers = self.load_customers(&ids).await?;

        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        let mut appends = Vec::new();
        // (item, index of its customer append, the decision, its request's state)
        let mut erased: Vec<(
            usize,
            usize,
            ledger_events::CustomerAnonymized,
            ErasureRequest,
        )> = Vec::new();
        for (k, ((_, c, r), (customer, version))) in items.iter().zip(&customers).enumerate() {
            let plan = match customer.erasure_plan(&eraser) {
                Ok(p) => p,
                Err(Refusal::NotFound) => {
                    outcomes[k] = Some(ItemOutcome::NotFound);
                    continue;
                }
                Err(_) => continue,
            };
            let mut request = ErasureRequest::default();
            let mut decision = None;
            let mut steps = vec![RequestCommand::Receive {
                request_id: *r,
                customer_id: *c,
                requested_by: sub.requested_by,
                reference: sub.reference.clone(),
                received_at: at,
                due_at,
            }];
            match plan {
                ErasurePlan::Erase => {
                    let cmd = match (eraser, by) {
                        (Eraser::Broadcaster(b), ErasedBy::Broadcaster { key_id, .. }) => {
                            CustomerCommand::Anonymize {
                                request_id: *r,
                                broadcaster: b,
                                key_id,
                                at,
                            }
                        }
                        _ => CustomerCommand::AnonymizeAsOperator { request_id: *r, at },
                    };
                    let decided = customer.handle(&cmd)?;
                    let Some(CustomerEvent::Anonymized(a)) = decided.first().cloned() else {
                        continue;
                    };
                    let events = decided
                        .into_iter()
                        .map(|e| encode_customer_event(self.keyring(), *c, e, at))
                        .collect::<Result<Vec<_>, _>>()?;
                    decision = Some((appends.len(), a));
                    appends.push(AppendRequest {
                        stream: streams::customer(*c),
                        expected: expected(*version),
                        events,
                    });
                }
                ErasurePlan::Defer(subscriptions) => {
                    steps.push(RequestCommand::Defer { subscriptions, at });
                    outcomes[k] = Some(ItemOutcome::Deferred);
                }
                ErasurePlan::Refuse(code) => {
                    steps.push(RequestCommand::Refuse { code, at });
                    outcomes[k] = Some(ItemOutcome::Refused);
                }
                // The first receipt stands: the request path completes with it.
                ErasurePlan::AlreadyErased => continue,
            }
            let mut events = Vec::new();
            for step in &steps {
                for e in request.handle(step)? {
                    request.apply(&e);
                    events.push(new_event::<ErasureRequest>(&e, at)?);
                }
            }
            appends.push(AppendRequest {
                stream: streams::erasure_request(*r),
                expected: ExpectedVersion::NoStream,
                events,
            });
            if let Some((p, a)) = decision {
                erased.push((k, p, a, request));
            }
        }

        let positions = if appends.is_empty() {
            Vec::new()
        } else {
            match self.store.append_batch(appends).await {
                Ok(results) => results,
                Err(StoreError::Conflict { .. } | StoreError::DuplicateEventId { .. }) => {
                    drop(claim);
                    let (job, _) = self.load_job(id).await?;
                    return self.settle_safely(id, &job, from, to).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        failpoint::hit(failpoint::JOB_AFTER_FILE);

        let gone: Vec<CustomerId> = erased.iter().map(|(k, _, _, _)| items[*k].1).collect();
        if let Some(list) = self.forget_list().filter(|_| !erased.is_empty()) {
            let entries: Vec<ForgetEntry> = erased
                .iter()
                .map(|(k, p, a, _)| ForgetEntry {
                    customer_id: items[*k].1,
                    request_id: a.request_id,
                    broadcaster_id: a.broadcaster_id,
                    position: positions.get(*p).map_or(0, |r| r.last_position),
                    at: a.at,
                })
                .collect();
            let list = list.clone();
            let r = tokio::task::spawn_blocking(move || list.append(&entries)).await;
            if !matches!(r, Ok(Ok(()))) {
                warn!(job = %id, "could not append the job's erasures to the forget list; the next start adds them");
            }
        }
        for c in &gone {
            self.shredder().note(*c);
        }
        self.shredder().destroy(gone).await?;
        failpoint::hit(failpoint::JOB_AFTER_DESTROY);

        // Every item not decided in bulk takes the request path now.
        for (k, (_, c, r)) in items.iter().enumerate() {
            if outcomes[k].is_none() && !erased.iter().any(|(e, _, _, _)| *e == k) {
                outcomes[k] = Some(self.item_safely(sub, *c, *r, false).await?);
            }
        }
        let mut finals = Vec::new();
        for (k, p, a, request) in &erased {
            let r = items[*k].2;
            let cmd = RequestCommand::Complete {
                anonymized: a.clone(),
                position: positions.get(*p).map_or(0, |r| r.last_position),
                data_key_destroyed: true,
                at,
            };
            let events = request
                .handle(&cmd)?
                .iter()
                .map(|e| new_event::<ErasureRequest>(e, at))
                .collect::<Result<Vec<_>, _>>()?;
            outcomes[*k] = Some(ItemOutcome::Completed);
            finals.push(AppendRequest {
                stream: streams::erasure_request(r),
                expected: ExpectedVersion::Exact(1),
                events,
            });
        }
        let settle = JobCommand::Settle {
            from,
            to,
            outcomes: outcomes
                .into_iter()
                .map(|o| o.unwrap_or(ItemOutcome::NotFound))
                .collect(),
            at,
        };
        let (state, _) = self.load_job(id).await?;
        let settled = state
            .handle(&settle)?
            .iter()
            .map(|e| new_event::<ErasureJob>(e, at))
            .collect::<Result<Vec<_>, _>>()?;
        finals.push(AppendRequest {
            stream: streams::erasure_job(id),
            expected: ExpectedVersion::Exact(job_version),
            events: settled,
        });
        match self.store.append_batch(finals).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { .. }) => {
                drop(claim);
                let (job, _) = self.load_job(id).await?;
                self.settle_safely(id, &job, from, to).await
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What one pass of the [`JobRunner`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Jobs driven to their end (or to their cancellation).
    pub driven: usize,
    /// Jobs another task of this process held (a submission validating it).
    pub held: usize,
}

/// Drives every unfinished job, in `serve` (see the module doc). It keeps no
/// state of its own: the job streams are its checkpoint, as the request streams
/// are the process manager's (ADR 0023).
#[derive(Debug)]
pub struct JobRunner {
    ledger: Ledger,
    chunk: usize,
}

impl JobRunner {
    pub fn new(ledger: Ledger) -> Arc<Self> {
        Arc::new(Self {
            ledger,
            chunk: CHUNK,
        })
    }

    /// One pass: every unfinished job driven to its end. Returns how many jobs it
    /// drove and how many another task held (the submitting request validating
    /// one: the next pass comes soon); a job that failed is tried again on the
    /// next pass.
    pub async fn pass(&self) -> Result<Pass, AppError> {
        let index = self.ledger.requests();
        index.catch_up().await?;
        let mut pass = Pass::default();
        let mut failed = None;
        for id in index.unfinished_jobs() {
            match self.ledger.run_job(id, self.chunk, &|_| {}).await {
                Ok(Some(_)) => pass.driven += 1,
                Ok(None) => pass.held += 1,
                Err(e) => {
                    warn!(job = %id, code = e.code(), "erasure job step failed; retried on the next pass");
                    failed = Some(e);
                }
            }
        }
        if pass.driven > 0 {
            index.catch_up().await?;
        }
        failed.map_or(Ok(pass), Err)
    }

    /// Runs passes until `stop` resolves: when the log grows, at least every
    /// [`PASS_EVERY`]; after a failure, again after a backoff doubling up to 10 s.
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
        on_result: impl Fn(Result<Pass, &AppError>),
    ) {
        let next = |p: &Pass| {
            if p.held > 0 {
                Duration::from_millis(100)
            } else {
                PASS_EVERY
            }
        };
        crate::process::follow_log(&self.ledger, || self.pass(), next, stop, on_result).await;
        info!("erasure job runner stopped");
    }
}

/// The most items a job may name (re-exported for the API and the CLI).
pub const MAX_ITEMS: usize = MAX_JOB_ITEMS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_items_request_id_is_the_same_for_the_same_job_and_customer_only() {
        let (j, c) = (JobId::new(), CustomerId::new());
        assert_eq!(request_id_for(j, c), request_id_for(j, c));
        assert_ne!(request_id_for(j, c), request_id_for(JobId::new(), c));
        assert_ne!(request_id_for(j, c), request_id_for(j, CustomerId::new()));
        let s = request_id_for(j, c).to_string();
        assert_eq!(RequestId::parse(&s).unwrap(), request_id_for(j, c));
        assert_eq!(&s[14..15], "8", "a version 8 UUID");
    }
}
