//! Bounded retries inside one delivery. A notifier gets a few quick tries; after
//! those the caller's outbox owns the event and tries again later, so a dead
//! receiver never holds a delivery for long.

use std::future::Future;
use std::time::Duration;

use crate::event::Event;

use super::{Delivered, NotifyError};

/// How many times one delivery is tried, and how long it waits in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RetryPolicy {
    /// Tries per delivery, the first included.
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub first_backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured in place; a receiver asking for more
    /// gets the event back later from the outbox instead of a stuck delivery.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// Five tries, 0.5 s → 1 s → 2 s → 4 s apart (8 s cap): about 8 s of
    /// waiting, on top of at most five HTTP timeouts.
    pub const STANDARD: Self = Self {
        attempts: 5,
        first_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
    };

    /// The wait after the `failures`-th failed try (1-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first_backoff.saturating_mul(1 << doublings).min(self.max_backoff)
    }
}

/// What one try of a delivery came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Attempt {
    Sent,
    /// Refused for good: retrying the same request cannot help.
    Dropped(String),
    /// Worth another try, after `after` when the receiver said so (`Retry-After`).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

/// Runs `attempt` until it is sent or dropped, or the policy's tries or
/// patience run out (then a [`NotifyError`] for the outbox).
///
/// `reason`s reaching here are already free of secrets; they are logged as is.
pub(super) async fn deliver<F, Fut>(
    policy: &RetryPolicy,
    handler: &str,
    event: &Event,
    mut attempt: F,
) -> Result<Delivered, NotifyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt>,
{
    let incident = event.incident_key();
    let mut tries = 0;
    loop {
        tries += 1;
        let (reason, after) = match attempt().await {
            Attempt::Sent => {
                tracing::debug!(handler, event = %event.kind, incident, tries, "notification delivered");
                return Ok(Delivered::Sent);
            }
            Attempt::Dropped(reason) => {
                tracing::error!(handler, event = %event.kind, incident, reason, "receiver refused the notification; dropped");
                return Ok(Delivered::Dropped(reason));
            }
            Attempt::Retry { reason, after } => (reason, after),
        };
        let wait = after.unwrap_or_else(|| policy.backoff(tries));
        let give_up = if tries >= policy.attempts {
            Some(format!("gave up after {tries} tries: {reason}"))
        } else if wait > policy.max_retry_after {
            Some(format!("asked to retry after {} s: {reason}", wait.as_secs()))
        } else {
            None
        };
        if let Some(reason) = give_up {
            tracing::warn!(handler, event = %event.kind, incident, reason, "notification not delivered; left for a later retry");
            return Err(NotifyError { handler: handler.to_owned(), reason });
        }
        tracing::warn!(
            handler,
            event = %event.kind,
            incident,
            tries,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            reason,
            "notification try failed; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_and_caps_at_eight() {
        let waits: Vec<_> = (1..=7).map(|n| RetryPolicy::STANDARD.backoff(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(RetryPolicy::STANDARD.backoff(u32::MAX), Duration::from_secs(8));
    }
}
