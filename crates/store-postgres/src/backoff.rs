//! When to try a lost connection again: capped exponential backoff with jitter,
//! shared by every connection of this crate (writer, read pool, key and view
//! stores).
//!
//! The first attempt after a loss is immediate (a killed session or a restarted
//! server is usually back at once); after each failed attempt the wait doubles from
//! [`FIRST_RETRY`] up to [`MAX_RETRY`], scaled by a random factor in [1/2, 1] so that
//! connections that lost the server together do not hammer it in step. A request
//! that finds its connection down waits for the next attempt (at most `MAX_RETRY`)
//! and is answered by it: an outage costs each request a bounded wait and an
//! `Unavailable`, and the first request after the server is back succeeds.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// The wait after the first failed attempt.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest wait between attempts.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(2);
/// How long opening a session (TCP, start-up, authentication) may take.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
    next: Option<Instant>,
}

impl Backoff {
    /// When the next attempt may start (`None`: now).
    pub(crate) fn next_attempt(&self) -> Option<Instant> {
        self.next
    }

    /// Failed attempts since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failed attempt and schedules the next one. An attempt that failed
    /// while the next one was already scheduled (a concurrent attempt of the read
    /// pool) does not lengthen the wait again.
    pub(crate) fn failed(&mut self) -> Duration {
        let now = Instant::now();
        if let Some(next) = self.next.filter(|n| *n > now) {
            return next - now;
        }
        self.failures = self.failures.saturating_add(1);
        let wait = delay(self.failures, random());
        self.next = Some(now + wait);
        wait
    }

    pub(crate) fn succeeded(&mut self) {
        *self = Self::default();
    }
}

/// Sleeps until `at`, or forever for `None` (a `select!` branch that is off).
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The wait after `failures` failed attempts, `r` a random number.
fn delay(failures: u32, r: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let capped = FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY);
    let half = u64::try_from(capped.as_nanos() / 2).unwrap_or(u64::MAX / 2);
    Duration::from_nanos(half + r % (half + 1))
}

/// A random number without a dependency: each `RandomState` is freshly keyed.
fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter() {
        let ms = |d: Duration| d.as_millis();
        // r = 0 gives the lower bound (half), r = u64::MAX close to the full wait.
        assert_eq!(ms(delay(1, 0)), 25);
        assert_eq!(ms(delay(2, 0)), 50);
        assert_eq!(ms(delay(3, 0)), 100);
        assert_eq!(ms(delay(6, 0)), 800);
        assert_eq!(ms(delay(7, 0)), 1000);
        assert_eq!(ms(delay(40, 0)), 1000);
        for f in 1..50 {
            let d = delay(f, random());
            assert!(d <= MAX_RETRY && d >= FIRST_RETRY / 2, "{f}: {d:?}");
        }
    }

    #[tokio::test]
    async fn the_first_attempt_is_immediate_and_success_resets() {
        let mut b = Backoff::default();
        assert!(b.next_attempt().is_none());
        let w = b.failed();
        assert!(w <= FIRST_RETRY && b.failures() == 1);
        // A concurrent failure in the same window does not count twice.
        b.failed();
        assert_eq!(b.failures(), 1);
        b.succeeded();
        assert!(b.next_attempt().is_none() && b.failures() == 0);
    }
}
