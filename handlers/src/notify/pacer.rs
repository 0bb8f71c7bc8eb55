//! Per-webhook pacing: Slack allows about one message per second per incoming
//! webhook. Deliveries queue for their turn rather than being dropped or
//! bouncing off 429s.

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// Hands out one request slot per `interval`, in arrival order (tokio's
/// `Mutex` is fair), and holds it while that request runs, so requests to one
/// webhook never overlap either.
#[derive(Debug)]
pub(super) struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

/// The right to send one request now; the next turn starts `interval` after
/// this one began, or later if the receiver asked for a pause.
pub(super) struct Turn<'a> {
    next: MutexGuard<'a, Instant>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Self { interval, next: Mutex::new(Instant::now()) }
    }

    /// Waits for this webhook's next free slot.
    pub async fn turn(&self) -> Turn<'_> {
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = Instant::now() + self.interval;
        Turn { next }
    }
}

impl Turn<'_> {
    /// Pushes every later turn back by at least `wait` (a 429's `Retry-After`
    /// applies to the whole webhook, not only to the request that got it).
    pub fn hold_off(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        if until > *self.next {
            *self.next = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_are_an_interval_apart_and_hold_off_delays_the_next() {
        let interval = Duration::from_millis(50);
        let pacer = Pacer::new(interval);
        let start = Instant::now();
        drop(pacer.turn().await);
        assert!(start.elapsed() < interval, "the first turn is immediate");
        drop(pacer.turn().await);
        assert!(start.elapsed() >= interval);
        let held = Instant::now();
        pacer.turn().await.hold_off(Duration::from_millis(200));
        drop(pacer.turn().await);
        assert!(held.elapsed() >= Duration::from_millis(200), "{:?}", held.elapsed());
    }
}
