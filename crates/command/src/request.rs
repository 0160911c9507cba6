//! The erasure request aggregate: the lifecycle of one data subject's request to be
//! erased (design §2), kept in its own stream (`erasure-request-{id}`).
//!
//! ```text
//!            Receive                 Complete (key destroyed)
//!   (none) ──────────► open ───────────────────────────────► completed
//!                       │  ▲ Defer (only ACTIVE_SUBSCRIPTION)     ▲
//!                       ▼  │                                      │
//!                     deferred ───────────────────────────────────┘
//!   open | deferred ── Refuse (a permanent blocker) ──► refused
//!   open | deferred ── Cancel ──► cancelled
//!   open | deferred ── Extend (once, at most 2 months past the original due date)
//! ```
//!
//! The rules that matter:
//! - a request **completes only with its key destroyed**: `Complete` carries the
//!   `CustomerAnonymized` the customer stream holds and whether the data key is gone,
//!   and is refused (`KEY_NOT_DESTROYED`) while it is not, so a completed request
//!   always means an irrecoverable erasure (a property test checks it over random
//!   command sequences);
//! - only `ACTIVE_SUBSCRIPTION` defers; the other blockers are permanent for the
//!   requester and refuse (`Refuse` with `ACTIVE_SUBSCRIPTION` is invalid input);
//! - an ended request (completed, refused, cancelled) changes no more; repeating the
//!   command that ended it is a no-op, any other is `REQUEST_CLOSED`;
//! - a broadcaster sees, cancels and extends only the requests it filed (another
//!   tenant's request is `NOT_FOUND`); the platform operator acts on any.
//!
//! What to do with a request given the customer's state is [`Customer::erasure_plan`].

use ledger_events::{
    Actor, BlockerCode, CustomerAnonymized, ErasureCancelled, ErasureCompleted, ErasureDeferred,
    ErasureExtended, ErasureRefused, ErasureRequestEvent, ErasureRequested, ExtensionReason,
};
use ledger_types::{CustomerId, Reference, RequestId, SubscriptionId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{BroadcasterRef, Customer, Refusal};

/// How many months past the original due date an extension may reach (GDPR Art.
/// 12(3): "extended by two further months where necessary").
pub const MAX_EXTENSION_MONTHS: u32 = 2;

/// Where a request is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Received, not ended, not waiting.
    Open,
    /// Waiting for the customer's last active subscription to end.
    Deferred,
    Completed,
    Refused,
    Cancelled,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 5] = [
        RequestStatus::Open,
        RequestStatus::Deferred,
        RequestStatus::Completed,
        RequestStatus::Refused,
        RequestStatus::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::Deferred => "deferred",
            RequestStatus::Completed => "completed",
            RequestStatus::Refused => "refused",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the request reached an end (nothing changes it any more).
    pub fn is_ended(&self) -> bool {
        matches!(
            self,
            RequestStatus::Completed | RequestStatus::Refused | RequestStatus::Cancelled
        )
    }
}

/// A command on an erasure request. Times arrive inside (the aggregate reads no
/// clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestCommand {
    /// File the request. `due_at` is computed by the app from its policy (one month
    /// after receipt by default) and must be after `received_at`.
    Receive {
        request_id: RequestId,
        customer_id: CustomerId,
        requested_by: Actor,
        reference: Option<Reference>,
        received_at: Timestamp,
        due_at: Timestamp,
    },
    /// The erasure must wait for these active subscriptions to end.
    Defer {
        subscriptions: Vec<SubscriptionId>,
        at: Timestamp,
    },
    /// The customer stream holds `anonymized` at `position`; `data_key_destroyed`
    /// says whether the key store confirmed the key gone.
    Complete {
        anonymized: CustomerAnonymized,
        position: u64,
        data_key_destroyed: bool,
        at: Timestamp,
    },
    /// A permanent blocker: the erasure will not be done.
    Refuse {
        code: BlockerCode,
        at: Timestamp,
    },
    Cancel {
        by: Actor,
        at: Timestamp,
    },
    Extend {
        due_at: Timestamp,
        reason: ExtensionReason,
        by: Actor,
        at: Timestamp,
    },
}

impl RequestCommand {
    /// The command's name, for spans and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            RequestCommand::Receive { .. } => "ReceiveErasureRequest",
            RequestCommand::Defer { .. } => "DeferErasure",
            RequestCommand::Complete { .. } => "CompleteErasure",
            RequestCommand::Refuse { .. } => "RefuseErasure",
            RequestCommand::Cancel { .. } => "CancelErasureRequest",
            RequestCommand::Extend { .. } => "ExtendErasureRequest",
        }
    }
}

/// The erasure request aggregate. `Default` is a request not received yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureRequest {
    requested: Option<ErasureRequested>,
    status: Option<RequestStatus>,
    due_at: Option<Timestamp>,
    extended: Option<ErasureExtended>,
    deferred: Option<ErasureDeferred>,
    completed: Option<ErasureCompleted>,
    refused: Option<ErasureRefused>,
    cancelled: Option<ErasureCancelled>,
}

impl ErasureRequest {
    /// Folds a stream's events, oldest first.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ErasureRequestEvent>) -> Self {
        let mut r = ErasureRequest::default();
        for e in events {
            r.apply(e);
        }
        r
    }

    /// Evolves the state by one event. Never fails: what cannot apply (an event
    /// before the request, anything after its end) is ignored, first one wins.
    pub fn apply(&mut self, event: &ErasureRequestEvent) {
        if let ErasureRequestEvent::Requested(e) = event {
            if self.requested.is_none() {
                self.due_at = Some(e.due_at);
                self.status = Some(RequestStatus::Open);
                self.requested = Some(e.clone());
            }
            return;
        }
        if self.status.is_none_or(|s| s.is_ended()) {
            return;
        }
        match event {
            ErasureRequestEvent::Requested(_) => {}
            ErasureRequestEvent::Deferred(e) => {
                self.status = Some(RequestStatus::Deferred);
                self.deferred = Some(e.clone());
            }
            ErasureRequestEvent::Completed(e) => {
                self.status = Some(RequestStatus::Completed);
                self.completed = Some(e.clone());
            }
            ErasureRequestEvent::Refused(e) => {
                self.status = Some(RequestStatus::Refused);
                self.refused = Some(e.clone());
            }
            ErasureRequestEvent::Cancelled(e) => {
                self.status = Some(RequestStatus::Cancelled);
                self.cancelled = Some(e.clone());
            }
            ErasureRequestEvent::Extended(e) => {
                if self.extended.is_none() {
                    self.due_at = Some(e.due_at);
                    self.extended = Some(e.clone());
                }
            }
        }
    }

    pub fn exists(&self) -> bool {
        self.requested.is_some()
    }

    /// What was received (`None` before).
    pub fn requested(&self) -> Option<&ErasureRequested> {
        self.requested.as_ref()
    }

    pub fn status(&self) -> Option<RequestStatus> {
        self.status
    }

    /// The due date now (the extended one, if extended).
    pub fn due_at(&self) -> Option<Timestamp> {
        self.due_at
    }

    pub fn extended(&self) -> Option<&ErasureExtended> {
        self.extended.as_ref()
    }

    pub fn deferred(&self) -> Option<&ErasureDeferred> {
        self.deferred.as_ref()
    }

    pub fn completed(&self) -> Option<&ErasureCompleted> {
        self.completed.as_ref()
    }

    pub fn refused(&self) -> Option<&ErasureRefused> {
        self.refused.as_ref()
    }

    pub fn cancelled(&self) -> Option<&ErasureCancelled> {
        self.cancelled.as_ref()
    }

    /// When the request ended, if it did.
    pub fn ended_at(&self) -> Option<Timestamp> {
        self.completed
            .as_ref()
            .map(|e| e.at)
            .or(self.refused.as_ref().map(|e| e.at))
            .or(self.cancelled.as_ref().map(|e| e.at))
    }

    /// Whether `now` is past the due date and the request has not ended.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        !self.status.is_none_or(|s| s.is_ended()) && self.due_at.is_some_and(|d| now > d)
    }

    /// Whether `actor` may see and act on this request: the broadcaster that filed
    /// it, or the platform operator.
    pub fn is_visible_to(&self, actor: &Actor) -> bool {
        match (actor, &self.requested) {
            (_, None) => false,
            (Actor::Operator, Some(_)) => true,
            (Actor::Broadcaster { broadcaster_id, .. }, Some(r)) => {
                r.requested_by.broadcaster() == Some(*broadcaster_id)
            }
        }
    }

    /// Decides a command: the events it produces, or why it is refused. Pure.
    /// `Ok(vec![])` means "accepted, nothing to record" (the repeat of the command
    /// that ended the request, or a deferral that lists the same subscriptions).
    pub fn handle(&self, cmd: &RequestCommand) -> Result<Vec<ErasureRequestEvent>, Refusal> {
        if let RequestCommand::Receive {
            request_id,
            customer_id,
            requested_by,
            reference,
            received_at,
            due_at,
        } = cmd
        {
            if self.exists() {
                return Err(Refusal::RequestExists);
            }
            if due_at <= received_at {
                return Err(Refusal::invalid("due_at", "must be after received_at"));
            }
            return Ok(vec![ErasureRequestEvent::Requested(ErasureRequested {
                request_id: *request_id,
                customer_id: *customer_id,
                requested_by: *requested_by,
                reference: reference.clone(),
                received_at: *received_at,
                due_at: *due_at,
            })]);
        }
        let (Some(requested), Some(status)) = (&self.requested, self.status) else {
            return Err(Refusal::NotFound);
        };
        match cmd {
            RequestCommand::Receive { .. } => Err(Refusal::RequestExists),
            RequestCommand::Defer { subscriptions, at } => {
                self.open(status)?;
                if subscriptions.is_empty() {
                    return Err(Refusal::invalid(
                        "subscriptions",
                        "a deferral waits for at least one active subscription",
                    ));
                }
                let mut subscriptions = subscriptions.clone();
                subscriptions.sort();
                subscriptions.dedup();
                if self.deferred.as_ref().is_some_and(|d| {
                    status == RequestStatus::Deferred && d.subscriptions == subscriptions
                }) {
                    return Ok(vec![]);
                }
                Ok(vec![ErasureRequestEvent::Deferred(ErasureDeferred {
                    blockers: vec![BlockerCode::ActiveSubscription],
                    subscriptions,
                    at: *at,
                })])
            }
            RequestCommand::Complete {
                anonymized,
                position,
                data_key_destroyed,
                at,
            } => {
                if anonymized.customer_id != requested.customer_id {
                    return Err(Refusal::invalid(
                        "anonymized",
                        "names another customer than the request",
                    ));
                }
                if status == RequestStatus::Completed {
                    return Ok(vec![]);
                }
                self.open(status)?;
                if !data_key_destroyed {
                    return Err(Refusal::KeyNotDestroyed);
                }
                Ok(vec![ErasureRequestEvent::Completed(ErasureCompleted {
                    anonymized_request_id: anonymized.request_id,
                    anonymized_position: *position,
                    anonymized_at: anonymized.at,
                    data_key_destroyed: true,
                    at: *at,
                })])
            }
            RequestCommand::Refuse { code, at } => {
                if !code.is_permanent() {
                    return Err(Refusal::invalid(
                        "code",
                        "ACTIVE_SUBSCRIPTION defers an erasure, it never refuses it",
                    ));
                }
                if self.refused.as_ref().is_some_and(|r| r.code == *code) {
                    return Ok(vec![]);
                }
                self.open(status)?;
                Ok(vec![ErasureRequestEvent::Refused(ErasureRefused {
                    code: *code,
                    at: *at,
                })])
            }
            RequestCommand::Cancel { by, at } => {
                if !self.is_visible_to(by) {
                    return Err(Refusal::NotFound);
                }
                if status == RequestStatus::Cancelled {
                    return Ok(vec![]);
                }
                self.open(status)?;
                Ok(vec![ErasureRequestEvent::Cancelled(ErasureCancelled {
                    by: *by,
                    at: *at,
                })])
            }
            RequestCommand::Extend {
                due_at,
                reason,
                by,
                at,
            } => {
                if !self.is_visible_to(by) {
                    return Err(Refusal::NotFound);
                }
                self.open(status)?;
                if self.extended.is_some() {
                    return Err(Refusal::AlreadyExtended);
                }
                let current = self.due_at.unwrap_or(requested.due_at);
                if *due_at <= current {
                    return Err(Refusal::DueDateNotLater { current });
                }
                let latest = requested
                    .due_at
                    .add_months(MAX_EXTENSION_MONTHS)
                    .unwrap_or(requested.due_at);
                if *due_at > latest {
                    return Err(Refusal::ExtensionTooLong { latest });
                }
                Ok(vec![ErasureRequestEvent::Extended(ErasureExtended {
                    due_at: *due_at,
                    reason: *reason,
                    by: *by,
                    at: *at,
                })])
            }
        }
    }

    fn open(&self, status: RequestStatus) -> Result<(), Refusal> {
        if status.is_ended() {
            Err(Refusal::RequestClosed { status })
        } else {
            Ok(())
        }
    }
}

/// Who asks for an erasure, as the Customer aggregate needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eraser {
    /// A broadcaster (the rules of design §2 apply).
    Broadcaster(BroadcasterRef),
    /// The platform operator: only active subscriptions (with any broadcaster) block.
    Operator,
}

/// What to do with an erasure request now, given the customer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasurePlan {
    /// Nothing blocks: erase now.
    Erase,
    /// The customer was already erased: complete with the first receipt.
    AlreadyErased,
    /// Only active subscriptions block: wait for them to end.
    Defer(Vec<SubscriptionId>),
    /// A permanent blocker (the first in the preview's order): refuse.
    Refuse(BlockerCode),
}

impl Customer {
    /// What stands between the platform operator and erasing this customer:
    /// `Err(NotFound)` if it does not exist, otherwise `ActiveSubscription` listing
    /// every active subscription with any broadcaster, or nothing (an already erased
    /// customer included: the command is an idempotent no-op).
    pub fn operator_erasure_blockers(&self) -> Result<Vec<Refusal>, Refusal> {
        if !self.exists() {
            return Err(Refusal::NotFound);
        }
        let active = self.active_subscriptions();
        if self.is_anonymized() || active.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![Refusal::ActiveSubscription {
            subscriptions: active,
        }])
    }

    /// Every blocker for `eraser` (see [`Customer::erasure_blockers`] and
    /// [`Customer::operator_erasure_blockers`]).
    pub fn blockers_for(&self, eraser: &Eraser) -> Result<Vec<Refusal>, Refusal> {
        match eraser {
            Eraser::Broadcaster(b) => self.erasure_blockers(b),
            Eraser::Operator => self.operator_erasure_blockers(),
        }
    }

    /// What an erasure request by `eraser` should do now: `Err(NotFound)` if the
    /// eraser cannot see the customer, otherwise erase, complete with the first
    /// receipt, defer (the only blockers are active subscriptions) or refuse (a
    /// permanent blocker, even if subscriptions are active too).
    pub fn erasure_plan(&self, eraser: &Eraser) -> Result<ErasurePlan, Refusal> {
        let blockers = self.blockers_for(eraser)?;
        if self.is_anonymized() {
            return Ok(ErasurePlan::AlreadyErased);
        }
        let mut waiting = None;
        for b in blockers {
            match b {
                Refusal::NotWhiteLabel => {
                    return Ok(ErasurePlan::Refuse(BlockerCode::NotWhiteLabel))
                }
                Refusal::SharedAcrossBroadcasters => {
                    return Ok(ErasurePlan::Refuse(BlockerCode::SharedAcrossBroadcasters))
                }
                Refusal::ActiveSubscription { subscriptions } => waiting = Some(subscriptions),
                other => return Err(other),
            }
        }
        Ok(waiting.map_or(ErasurePlan::Erase, ErasurePlan::Defer))
    }
}
