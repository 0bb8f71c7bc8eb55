//! Events: what the handler decided is worth telling someone about. The state
//! machine produces them; notifiers deliver them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use protocol::Status;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Status turned non-OK and the check's occurrences were reached, or a
    /// notified problem changed status (WARNING → CRITICAL).
    Problem,
    /// Back to OK after a notified problem.
    Resolved,
    /// Still failing `refresh` after the last notification.
    Reminder,
    FlappingStart,
    FlappingEnd,
    /// No keepalive from a runner for 3 of its intervals (handler's clock).
    RunnerLost,
    RunnerBack,
    /// Requests for a subscription expired unrun: the pool is not keeping up.
    Missed,
    /// No request of a subscription that raised `missed` has expired for two
    /// `missed` periods: the pool keeps up again. Resolves `missed`.
    CaughtUp,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        Self::Problem,
        Self::Resolved,
        Self::Reminder,
        Self::FlappingStart,
        Self::FlappingEnd,
        Self::RunnerLost,
        Self::RunnerBack,
        Self::Missed,
        Self::CaughtUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Problem => "problem",
            Self::Resolved => "resolved",
            Self::Reminder => "reminder",
            Self::FlappingStart => "flapping_start",
            Self::FlappingEnd => "flapping_end",
            Self::RunnerLost => "runner_lost",
            Self::RunnerBack => "runner_back",
            Self::Missed => "missed",
            Self::CaughtUp => "caught_up",
        }
    }
}

/// An unknown event kind; the message lists the known ones.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?} ({known})", known = EventKind::ALL.map(EventKind::as_str).join(", "))]
pub struct UnknownEventKind(pub String);

impl std::str::FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(name: &str) -> Result<Self, UnknownEventKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name).ok_or_else(|| UnknownEventKind(name.to_owned()))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, complete enough for any notifier to render on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event; notifiers use it to make retries idempotent.
    pub id: String,
    pub kind: EventKind,
    /// The check, for check events; empty for runner events.
    pub check: String,
    /// The subscription (runner pool) the event concerns.
    pub subscription: String,
    /// The runner that produced the result, or the runner lost/back.
    pub runner: String,
    pub status: Status,
    /// The status before this event, when it changed.
    pub previous: Option<Status>,
    /// One human line: the check's output or what happened.
    pub output: String,
    pub metrics: BTreeMap<String, f64>,
    pub labels: BTreeMap<String, String>,
    pub occurred_at: DateTime<Utc>,
    /// The handler names this event is queued for: none when silenced.
    pub handlers: Vec<String>,
    /// The silences (and `maintenance:<name>` windows) that held this event
    /// back from every handler. Absent in events logged before silences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silenced_by: Vec<String>,
}

/// The subscription of a check-wide event: the incident of a check with a
/// `quorum`, across its subscriptions. Never a subscription's name (names
/// are `[a-z0-9_.-]`).
pub const ACROSS: &str = "*";

impl Event {
    /// PagerDuty's dedup key, also the identity of an incident: one per
    /// (subscription, check), per check across its subscriptions with a
    /// quorum (`picket/<check>`), or per runner for runner events.
    pub fn incident_key(&self) -> String {
        match self.kind {
            _ if self.subscription == ACROSS => format!("picket/{}", self.check),
            EventKind::RunnerLost | EventKind::RunnerBack => {
                format!("picket/{}/runner/{}", self.subscription, self.runner)
            }
            EventKind::Missed | EventKind::CaughtUp => format!("picket/{}/missed", self.subscription),
            _ => format!("picket/{}/{}", self.subscription, self.check),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_their_names_and_unknown_ones_list_the_known() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str(), "serde and as_str agree");
        }
        let error = "page".parse::<EventKind>().unwrap_err().to_string();
        assert!(error.contains("\"page\"") && error.contains("caught_up"), "{error}");
    }
}
