//! How long a consumer waits before requeueing a delivery it could not
//! handle: exponential in the consecutive failures, capped, with jitter so
//! that several consumers (or one consumer's many in-flight deliveries) do
//! not return their messages to the broker in lockstep.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Shared by every delivery of one consumer: one success resets it.
#[derive(Debug)]
pub struct RequeueBackoff {
    start: Duration,
    cap: Duration,
    failures: AtomicU32,
}

impl Default for RequeueBackoff {
    /// 100 ms doubling up to 5 s: a store that is back is used again within
    /// seconds, and a long outage costs one redelivery per message every few
    /// seconds.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl RequeueBackoff {
    pub fn new(start: Duration, cap: Duration) -> Self {
        Self { start, cap, failures: AtomicU32::new(0) }
    }

    /// Records a failure; returns the delay before its requeue, between half
    /// and all of `min(cap, start × 2^failures)`.
    pub fn failed(&self) -> Duration {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed).min(20);
        let ceiling = self.start.saturating_mul(1 << failures).min(self.cap);
        ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let backoff = RequeueBackoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = backoff.failed();
        assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first), "{first:?}");
        let later: Vec<_> = (0..10).map(|_| backoff.failed()).collect();
        assert!(later.iter().all(|d| *d <= Duration::from_secs(1)), "{later:?}");
        assert!(later.last().unwrap() >= &Duration::from_millis(500), "{later:?}");
        backoff.succeeded();
        assert!(backoff.failed() <= Duration::from_millis(100));
    }
}
