//! The bulk erasure job aggregate: a list of customers to erase, each filed as an
//! erasure request of its own, kept in its own stream (`erasure-job-{id}`).
//!
//! ```text
//!          Submit          Validate          Start
//!  (none) ───────► validating ───────► ready ───────► running ──► succeeded
//!                      │                 │              │    └──► partially_failed
//!                      └──── Cancel ─────┴──────────────┴──► cancelled
//!  running:             BeginChunk(from..to) then Settle(from..to, outcomes), repeated
//!  cancelled:           Settle of the chunk in flight only
//! ```
//!
//! The rules that matter:
//! - **items are settled in order, one chunk at a time**: a chunk is begun before
//!   any of its requests is filed and settled once every one of them reached an
//!   outcome, so after a crash the job says exactly which items may be half done
//!   (the chunk in flight) and which were not touched (after it);
//! - **finishing needs every item settled**; the end (`succeeded` or
//!   `partially_failed`) follows from the outcomes, it is not chosen;
//! - **cancel stops filing, never undoes**: a cancelled job begins no chunk, but the
//!   chunk in flight is still settled so that what was done is on record; items never
//!   begun are `cancelled`. An ended job changes no more (`JOB_CLOSED`), and
//!   cancelling a cancelled job again is a no-op;
//! - **visibility**: a broadcaster sees and cancels only the jobs it submitted
//!   (another tenant's job is `NOT_FOUND`); the platform operator sees all.

use ledger_events::{
    Actor, ErasureJobCancelled, ErasureJobChunkStarted, ErasureJobEvent, ErasureJobFinished,
    ErasureJobItemsSettled, ErasureJobStarted, ErasureJobSubmitted, ErasureJobValidated, ItemCheck,
    ItemFinding, ItemOutcome, JobEnd, MAX_JOB_ITEMS,
};
use ledger_types::{CustomerId, JobId, Reference, Timestamp};
use serde::{Deserialize, Serialize};

use crate::Refusal;

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Validating,
    Ready,
    Running,
    Succeeded,
    PartiallyFailed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Validating,
        JobState::Ready,
        JobState::Running,
        JobState::Succeeded,
        JobState::PartiallyFailed,
        JobState::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Validating => "validating",
            JobState::Ready => "ready",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::PartiallyFailed => "partially_failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job reached an end (nothing is filed for it any more).
    pub fn is_ended(&self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::PartiallyFailed | JobState::Cancelled
        )
    }
}

/// Where one item of a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Not settled yet (not begun, or in the chunk in flight).
    Pending,
    Completed,
    Deferred,
    Refused,
    NotFound,
    /// Never filed: the job was cancelled first; or its request was cancelled.
    Cancelled,
}

impl ItemState {
    pub const ALL: [ItemState; 6] = [
        ItemState::Pending,
        ItemState::Completed,
        ItemState::Deferred,
        ItemState::Refused,
        ItemState::NotFound,
        ItemState::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Completed => "completed",
            ItemState::Deferred => "deferred",
            ItemState::Refused => "refused",
            ItemState::NotFound => "not_found",
            ItemState::Cancelled => "cancelled",
        }
    }
}

impl From<ItemOutcome> for ItemState {
    fn from(o: ItemOutcome) -> Self {
        match o {
            ItemOutcome::Completed => ItemState::Completed,
            ItemOutcome::Deferred => ItemState::Deferred,
            ItemOutcome::Refused => ItemState::Refused,
            ItemOutcome::NotFound => ItemState::NotFound,
            ItemOutcome::Cancelled => ItemState::Cancelled,
        }
    }
}

/// A command on a job. Times arrive inside (the aggregate reads no clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCommand {
    /// Submit the job: 1 to [`MAX_JOB_ITEMS`] distinct customers.
    Submit {
        job_id: JobId,
        requested_by: Actor,
        reference: Option<Reference>,
        customer_ids: Vec<CustomerId>,
        at: Timestamp,
    },
    /// Record what the validation found (only items with a blocker).
    Validate {
        findings: Vec<ItemFinding>,
        at: Timestamp,
    },
    Start {
        at: Timestamp,
    },
    /// The runner is about to file items `from..to`.
    BeginChunk {
        from: u32,
        to: u32,
        at: Timestamp,
    },
    /// Items `from..to` (the chunk in flight) reached these outcomes.
    Settle {
        from: u32,
        to: u32,
        outcomes: Vec<ItemOutcome>,
        at: Timestamp,
    },
    /// Every item is settled: end the job.
    Finish {
        at: Timestamp,
    },
    Cancel {
        by: Actor,
        at: Timestamp,
    },
}

impl JobCommand {
    /// The command's name, for spans and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            JobCommand::Submit { .. } => "SubmitErasureJob",
            JobCommand::Validate { .. } => "ValidateErasureJob",
            JobCommand::Start { .. } => "StartErasureJob",
            JobCommand::BeginChunk { .. } => "BeginErasureJobChunk",
            JobCommand::Settle { .. } => "SettleErasureJobItems",
            JobCommand::Finish { .. } => "FinishErasureJob",
            JobCommand::Cancel { .. } => "CancelErasureJob",
        }
    }
}

/// The erasure job aggregate. `Default` is a job not submitted yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureJob {
    submitted: Option<ErasureJobSubmitted>,
    state: Option<JobState>,
    /// Validation findings by item index.
    findings: Vec<Vec<ItemCheck>>,
    /// Outcomes of the items settled so far (items `0..outcomes.len()`).
    outcomes: Vec<ItemOutcome>,
    /// The chunk begun and not settled yet.
    in_flight: Option<(u32, u32)>,
    started_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
    cancelled: Option<ErasureJobCancelled>,
}

impl ErasureJob {
    /// Folds a stream's events, oldest first.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ErasureJobEvent>) -> Self {
        let mut j = ErasureJob::default();
        for e in events {
            j.apply(e);
        }
        j
    }

    /// Evolves the state by one event. Never fails: what cannot apply is ignored.
    pub fn apply(&mut self, event: &ErasureJobEvent) {
        if let ErasureJobEvent::Submitted(e) = event {
            if self.submitted.is_none() {
                self.findings = vec![Vec::new(); e.customer_ids.len()];
                self.state = Some(JobState::Validating);
                self.submitted = Some(e.clone());
            }
            return;
        }
        let Some(state) = self.state else { return };
        match event {
            ErasureJobEvent::Submitted(_) => {}
            ErasureJobEvent::Validated(e) if state == JobState::Validating => {
                for f in &e.findings {
                    if let Some(slot) = self.findings.get_mut(f.index as usize) {
                        slot.clone_from(&f.checks);
                    }
                }
                self.state = Some(JobState::Ready);
            }
            ErasureJobEvent::Started(e) if state == JobState::Ready => {
                self.started_at = Some(e.at);
                self.state = Some(JobState::Running);
            }
            ErasureJobEvent::ChunkStarted(e) if state == JobState::Running => {
                self.in_flight = Some((e.from, e.to));
            }
            ErasureJobEvent::ItemsSettled(e) if self.in_flight == Some((e.from, e.to)) => {
                self.outcomes.extend(e.outcomes.iter().copied());
                self.in_flight = None;
            }
            ErasureJobEvent::Finished(e) if state == JobState::Running => {
                self.ended_at = Some(e.at);
                self.state = Some(match e.end {
                    JobEnd::Succeeded => JobState::Succeeded,
                    JobEnd::PartiallyFailed => JobState::PartiallyFailed,
                });
            }
            ErasureJobEvent::Cancelled(e) if !state.is_ended() => {
                self.ended_at = Some(e.at);
                self.cancelled = Some(e.clone());
                self.state = Some(JobState::Cancelled);
            }
            _ => {}
        }
    }

    pub fn exists(&self) -> bool {
        self.submitted.is_some()
    }

    pub fn submitted(&self) -> Option<&ErasureJobSubmitted> {
        self.submitted.as_ref()
    }

    pub fn state(&self) -> Option<JobState> {
        self.state
    }

    /// How many items the job has.
    pub fn len(&self) -> usize {
        self.submitted.as_ref().map_or(0, |s| s.customer_ids.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn customer_ids(&self) -> &[CustomerId] {
        self.submitted
            .as_ref()
            .map_or(&[], |s| s.customer_ids.as_slice())
    }

    /// How many items are settled (items `0..settled()`).
    pub fn settled(&self) -> usize {
        self.outcomes.len()
    }

    /// The chunk begun and not settled yet, if any.
    pub fn in_flight(&self) -> Option<(u32, u32)> {
        self.in_flight
    }

    pub fn started_at(&self) -> Option<Timestamp> {
        self.started_at
    }

    pub fn ended_at(&self) -> Option<Timestamp> {
        self.ended_at
    }

    pub fn cancelled(&self) -> Option<&ErasureJobCancelled> {
        self.cancelled.as_ref()
    }

    /// What the validation found for item `i` (empty: nothing blocks it).
    pub fn findings(&self, i: usize) -> &[ItemCheck] {
        self.findings.get(i).map_or(&[], Vec::as_slice)
    }

    /// How item `i` was settled, if it was.
    pub fn outcome(&self, i: usize) -> Option<ItemOutcome> {
        self.outcomes.get(i).copied()
    }

    /// Where item `i` is.
    pub fn item_state(&self, i: usize) -> ItemState {
        match self.outcomes.get(i) {
            Some(o) => ItemState::from(*o),
            None if self.state == Some(JobState::Cancelled)
                && !self
                    .in_flight
                    .is_some_and(|(f, t)| (f as usize..t as usize).contains(&i)) =>
            {
                ItemState::Cancelled
            }
            None => ItemState::Pending,
        }
    }

    /// How many items are in each state (every state listed, zeros included).
    pub fn counts(&self) -> Vec<(ItemState, usize)> {
        let mut counts: Vec<(ItemState, usize)> = ItemState::ALL.iter().map(|s| (*s, 0)).collect();
        for i in 0..self.len() {
            let s = self.item_state(i);
            if let Some(c) = counts.iter_mut().find(|(k, _)| *k == s) {
                c.1 += 1;
            }
        }
        counts
    }

    /// Whether `actor` may see and act on this job: the broadcaster that submitted
    /// it, or the platform operator.
    pub fn is_visible_to(&self, actor: &Actor) -> bool {
        match (actor, &self.submitted) {
            (_, None) => false,
            (Actor::Operator, Some(_)) => true,
            (Actor::Broadcaster { broadcaster_id, .. }, Some(s)) => {
                s.requested_by.broadcaster() == Some(*broadcaster_id)
            }
        }
    }

    /// Whether `cmd` is a `Submit` of this very job again (same requester, same
    /// customers in the same order): a retry, answered with the job as it stands.
    pub fn is_same_submission(&self, cmd: &JobCommand) -> bool {
        match (cmd, &self.submitted) {
            (
                JobCommand::Submit {
                    job_id,
                    requested_by,
                    reference,
                    customer_ids,
                    ..
                },
                Some(s),
            ) => {
                s.job_id == *job_id
                    && s.requested_by.broadcaster() == requested_by.broadcaster()
                    && s.reference == *reference
                    && s.customer_ids == *customer_ids
            }
            _ => false,
        }
    }

    /// Decides a command: the events it produces, or why it is refused. Pure.
    /// `Ok(vec![])` means "accepted, nothing to record".
    pub fn handle(&self, cmd: &JobCommand) -> Result<Vec<ErasureJobEvent>, Refusal> {
        if let JobCommand::Submit {
            job_id,
            requested_by,
            reference,
            customer_ids,
            at,
        } = cmd
        {
            if self.exists() {
                return if self.is_same_submission(cmd) {
                    Ok(vec![])
                } else {
                    Err(Refusal::JobExists)
                };
            }
            check_ids(customer_ids)?;
            return Ok(vec![ErasureJobEvent::Submitted(ErasureJobSubmitted {
                job_id: *job_id,
                requested_by: *requested_by,
                reference: reference.clone(),
                customer_ids: customer_ids.clone(),
                at: *at,
            })]);
        }
        let Some(state) = self.state else {
            return Err(Refusal::NotFound);
        };
        let expect = |want: JobState| {
            if state == want {
                Ok(())
            } else {
                Err(Refusal::JobState { state })
            }
        };
        match cmd {
            JobCommand::Submit { .. } => Err(Refusal::JobExists),
            JobCommand::Validate { findings, at } => {
                if state != JobState::Validating {
                    return Ok(vec![]);
                }
                if findings.iter().any(|f| f.index as usize >= self.len()) {
                    return Err(Refusal::invalid(
                        "findings",
                        "an index past the job's items",
                    ));
                }
                Ok(vec![ErasureJobEvent::Validated(ErasureJobValidated {
                    findings: findings.clone(),
                    at: *at,
                })])
            }
            JobCommand::Start { at } => {
                if state == JobState::Running {
                    return Ok(vec![]);
                }
                expect(JobState::Ready)?;
                Ok(vec![ErasureJobEvent::Started(ErasureJobStarted {
                    at: *at,
                })])
            }
            JobCommand::BeginChunk { from, to, at } => {
                if self.in_flight == Some((*from, *to)) {
                    return Ok(vec![]);
                }
                expect(JobState::Running)?;
                if self.in_flight.is_some() {
                    return Err(Refusal::invalid("from", "another chunk is in flight"));
                }
                if *from as usize != self.settled() || to <= from || *to as usize > self.len() {
                    return Err(Refusal::invalid(
                        "to",
                        "a chunk starts at the first unsettled item and ends within the job",
                    ));
                }
                Ok(vec![ErasureJobEvent::ChunkStarted(
                    ErasureJobChunkStarted {
                        from: *from,
                        to: *to,
                        at: *at,
                    },
                )])
            }
            JobCommand::Settle {
                from,
                to,
                outcomes,
                at,
            } => {
                if self.in_flight != Some((*from, *to)) {
                    return Err(Refusal::invalid("from", "not the chunk in flight"));
                }
                if outcomes.len() != (*to - *from) as usize {
                    return Err(Refusal::invalid("outcomes", "one outcome per item"));
                }
                Ok(vec![ErasureJobEvent::ItemsSettled(
                    ErasureJobItemsSettled {
                        from: *from,
                        to: *to,
                        outcomes: outcomes.clone(),
                        at: *at,
                    },
                )])
            }
            JobCommand::Finish { at } => {
                if matches!(state, JobState::Succeeded | JobState::PartiallyFailed) {
                    return Ok(vec![]);
                }
                expect(JobState::Running)?;
                if self.in_flight.is_some() || self.settled() != self.len() {
                    return Err(Refusal::invalid("items", "not every item is settled"));
                }
                let end = if self.outcomes.iter().any(ItemOutcome::is_failure) {
                    JobEnd::PartiallyFailed
                } else {
                    JobEnd::Succeeded
                };
                Ok(vec![ErasureJobEvent::Finished(ErasureJobFinished {
                    end,
                    at: *at,
                })])
            }
            JobCommand::Cancel { by, at } => {
                if !self.is_visible_to(by) {
                    return Err(Refusal::NotFound);
                }
                if state == JobState::Cancelled {
                    return Ok(vec![]);
                }
                if state.is_ended() {
                    return Err(Refusal::JobClosed { state });
                }
                Ok(vec![ErasureJobEvent::Cancelled(ErasureJobCancelled {
                    by: *by,
                    at: *at,
                })])
            }
        }
    }
}

/// The rules on a job's list of customers: 1 to [`MAX_JOB_ITEMS`], no id twice.
pub fn check_ids(ids: &[CustomerId]) -> Result<(), Refusal> {
    if ids.is_empty() {
        return Err(Refusal::invalid(
            "customer_ids",
            "a job names at least one customer",
        ));
    }
    if ids.len() > MAX_JOB_ITEMS {
        return Err(Refusal::TooManyIds {
            given: ids.len(),
            max: MAX_JOB_ITEMS,
        });
    }
    let duplicates = duplicate_ids(ids);
    if !duplicates.is_empty() {
        return Err(Refusal::DuplicateIds { ids: duplicates });
    }
    Ok(())
}

/// The ids that occur more than once, each once, in order of first occurrence.
pub fn duplicate_ids(ids: &[CustomerId]) -> Vec<CustomerId> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut reported = std::collections::HashSet::new();
    ids.iter()
        .filter(|c| !seen.insert(**c) && reported.insert(**c))
        .copied()
        .collect()
}
