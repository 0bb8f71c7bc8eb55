//! Notifiers: deliver one event to one handler (Slack, PagerDuty, log).
//! INTERFACE ONLY: the bodies are being implemented.

use std::collections::{BTreeSet, HashMap};

use protocol::Status;
use protocol::definition::HandlerDefinition;

use crate::event::Event;

/// The result of delivering one event to one handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// The receiver accepted it.
    Sent,
    /// The receiver refused it for good (e.g. Slack 400 `invalid_payload`,
    /// PagerDuty 400): logged with the receiver's reason and not retried.
    Dropped(String),
}

/// A delivery that may succeed later (5xx, 429, timeouts after the
/// notifier's own retries): the outbox keeps it and tries again.
#[derive(Debug, thiserror::Error)]
#[error("{handler}: {reason}")]
pub struct NotifyError {
    pub handler: String,
    pub reason: String,
}

/// A handler definition that cannot be used: reported at start, exit 64.
#[derive(Debug, thiserror::Error)]
#[error("handler {handler:?}: {reason}")]
pub struct NotifierConfigError {
    pub handler: String,
    pub reason: String,
}

/// Every configured notifier, by handler name.
pub struct Notifiers {
    by_name: HashMap<String, ()>,
}

impl Notifiers {
    /// Builds the notifiers for the handlers in `needed` (the ones some check
    /// names), resolving their secrets now: a missing secret is an error
    /// naming the handler and the variable or file.
    pub fn build(definitions: &[HandlerDefinition], needed: &BTreeSet<String>) -> Result<Self, NotifierConfigError> {
        let _ = (definitions, needed);
        todo!()
    }

    /// Whether `handler` takes events of this status (its `severities`).
    pub fn accepts(&self, handler: &str, status: Status) -> bool {
        let _ = (handler, status, &self.by_name);
        todo!()
    }

    /// Delivers `event` to `handler`, with that notifier's rate limit and retries.
    pub async fn deliver(&self, handler: &str, event: &Event) -> Result<Delivered, NotifyError> {
        let _ = (handler, event);
        todo!()
    }
}
