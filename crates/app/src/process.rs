//! The erasure process manager: it completes deferred erasure requests by itself
//! once the customer's last active subscription ends, and ends subscriptions that
//! reach their `ends_at`.
//!
//! # How it survives anything
//!
//! It keeps no state of its own that the log does not hold. Its "checkpoint" is the
//! request streams themselves: a request is unfinished exactly while its stream has
//! no `ErasureCompleted`, `ErasureRefused` or `ErasureCancelled`, and a subscription
//! is due to end exactly while the customer stream has its `SubscriptionStarted`
//! with an `ends_at` and no `SubscriptionTerminated`. So:
//!
//! - **after kill -9 at any point**, the next start folds the log
//!   ([`RequestIndex::catch_up`] from position 0) and looks at every unfinished
//!   request once: nothing is missed, whatever step was interrupted (the erasure
//!   appended but not completed, the key not yet destroyed, a termination appended
//!   but the request not yet looked at);
//! - **never twice**: every step is a decision of an aggregate under optimistic
//!   concurrency. `CustomerAnonymized` is appended at most once per customer (a
//!   second erasure is the first receipt again), `ErasureCompleted` at most once per
//!   request, and only with the key destroyed (the Shredder and its reconciler,
//!   ADR 0016, do the destruction and finish one a crash interrupted).
//!
//! While running, each pass folds the log past the last one, ends the
//! subscriptions whose `ends_at` has come (a `SubscriptionTerminated` dated at
//! `ends_at`, by the broadcaster that started it), and advances every unfinished
//! request that is open or whose customer's stream changed since it last looked.
//! Passes run when the log grows, when the next `ends_at` comes, and at least every
//! [`PASS_EVERY`]; a failing pass is retried with a backoff.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ledger_command::CustomerCommand;
use ledger_types::{CustomerId, RequestId, Timestamp};
use tracing::{info, warn};

use crate::{AppError, Ledger};

/// How often a pass runs when nothing wakes it.
pub const PASS_EVERY: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Subscriptions ended because their `ends_at` came.
    pub subscriptions_ended: usize,
    /// Requests looked at.
    pub advanced: usize,
    /// Requests that ended (completed, refused) in this pass.
    pub ended: usize,
    /// Requests whose step failed (retried on the next pass).
    pub failed: usize,
}

/// The process manager (see the module doc).
#[derive(Debug)]
pub struct ErasureProcess {
    ledger: Ledger,
    /// Requests to look at on the next pass whatever happens (a step failed).
    retry: std::sync::Mutex<BTreeSet<RequestId>>,
    /// Whether the first pass (which looks at every unfinished request) ran.
    started: std::sync::atomic::AtomicBool,
}

impl ErasureProcess {
    pub fn new(ledger: Ledger) -> Arc<Self> {
        Arc::new(Self {
            ledger,
            retry: Default::default(),
            started: Default::default(),
        })
    }

    /// Ends the customer's subscriptions whose `ends_at` is at or before `now`,
    /// each dated at its `ends_at`. Returns how many it ended.
    pub async fn end_due_subscriptions(
        &self,
        c: CustomerId,
        now: Timestamp,
    ) -> Result<usize, AppError> {
        let customer = self.ledger.customer(c).await?;
        let mut n = 0;
        for s in customer.subscriptions() {
            let Some(ends_at) = s.ends_at.filter(|e| *e <= now && s.is_active()) else {
                continue;
            };
            let cmd = CustomerCommand::TerminateSubscription {
                broadcaster_id: s.broadcaster_id,
                subscription_id: s.subscription_id,
                at: ends_at,
            };
            match self.ledger.execute(c, &cmd).await {
                Ok(_) => n += 1,
                // Terminated meanwhile by its broadcaster.
                Err(AppError::Refused(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// One pass (see the module doc). `now` decides which `ends_at` have come.
    pub async fn pass(&self, now: Timestamp) -> Result<Pass, AppError> {
        let index = self.ledger.requests();
        index.catch_up().await?;
        let mut pass = Pass::default();
        for c in index.take_due_endings(now) {
            pass.subscriptions_ended += self.end_due_subscriptions(c, now).await?;
        }
        if pass.subscriptions_ended > 0 {
            index.catch_up().await?;
        }
        let first = !self.started.swap(true, std::sync::atomic::Ordering::AcqRel);
        let touched = index.take_touched();
        let mut todo: BTreeSet<RequestId> = index
            .unfinished_entries()
            .into_iter()
            .filter(|(_, c, deferred)| first || !deferred || touched.contains(c))
            .map(|(id, _, _)| id)
            .collect();
        if let Ok(mut r) = self.retry.lock() {
            todo.extend(std::mem::take(&mut *r));
        }
        for id in todo {
            pass.advanced += 1;
            match self.ledger.advance_request(id).await {
                Ok(o) => {
                    if o.request.status().is_some_and(|s| s.is_ended()) {
                        pass.ended += 1;
                    }
                }
                Err(e) => {
                    pass.failed += 1;
                    warn!(request = %id, code = e.code(), "erasure request step failed; retried on the next pass");
                    if let Ok(mut r) = self.retry.lock() {
                        r.insert(id);
                    }
                }
            }
        }
        if pass.ended > 0 || pass.subscriptions_ended > 0 {
            index.catch_up().await?;
            info!(
                ended = pass.ended,
                subscriptions_ended = pass.subscriptions_ended,
                "erasure requests moved on"
            );
        }
        Ok(pass)
    }

    /// Runs passes until `stop` resolves: when the log grows, when the next
    /// `ends_at` comes, at least every [`PASS_EVERY`]; after a failure, again after
    /// a backoff doubling up to 10 s. `on_result` hears how each pass went.
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
        on_result: impl Fn(Result<Pass, &AppError>),
    ) {
        let next = |_: &Pass| {
            let next_end = self.ledger.requests().next_ending().map(|t| {
                let ms = t.millis().saturating_sub(Timestamp::now().millis()).max(0);
                Duration::from_millis(ms as u64)
            });
            next_end.map_or(PASS_EVERY, |d| d.min(PASS_EVERY))
        };
        follow_log(
            &self.ledger,
            || self.pass(Timestamp::now()),
            next,
            stop,
            on_result,
        )
        .await;
        info!("erasure process stopped");
    }
}

/// Runs `pass` until `stop` resolves: again when the log grows past what the
/// request index folded, or after `next(last pass)`; after a failure, again after
/// a backoff doubling up to 10 s. `on_result` hears how each pass went.
pub(crate) async fn follow_log<T, Fut>(
    ledger: &Ledger,
    mut pass: impl FnMut() -> Fut,
    next: impl Fn(&T) -> Duration,
    stop: impl std::future::Future<Output = ()>,
    on_result: impl Fn(Result<T, &AppError>),
) where
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(250);
    loop {
        let wait = match pass().await {
            Ok(p) => {
                let wait = next(&p);
                on_result(Ok(p));
                backoff = Duration::from_millis(250);
                wait
            }
            Err(e) => {
                on_result(Err(&e));
                warn!(code = e.code(), "pass failed; retrying");
                let w = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                w
            }
        };
        let position = ledger.requests().position();
        let store = ledger.store().clone();
        let woken = async move {
            // A store that fails answers at once: wait out the delay then.
            if store.wait_for_head(position, wait).await.is_err() {
                tokio::time::sleep(wait).await;
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            _ = woken => {}
        }
    }
}
