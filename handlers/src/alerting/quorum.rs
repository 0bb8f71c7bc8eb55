//! The quorum vote of a check with `quorum` (README "Quorum"): one incident
//! across its subscriptions, kept in the state of (check, [`ACROSS`]).
//!
//! Each subscription keeps its own state and events (logged, paged to
//! nobody); a subscription votes "failing" while its own state holds a
//! raised problem (its `occurrences` reached). Subscriptions that cannot see
//! (every runner lost, or requests expiring: `missed`), or where a
//! `depends_on` check fails, leave the vote. The
//! vote is counted again at every result of the check, so a change of who
//! can see counts from the check's next result.

use chrono::{DateTime, Utc};
use protocol::definition::Quorum;
use protocol::{CheckResult, Status};

use crate::event::{Event, EventKind};
use crate::state::{Arrival, CheckState, Notified, Raise, reminder_due};

/// The subscriptions that can see, and those of them failing with the
/// status their own state raised.
pub(super) struct Vote {
    pub live: usize,
    pub failing: Vec<(String, Status)>,
    /// Subscriptions left out: their runners are lost, their requests
    /// expire, or a dependency fails there.
    pub blind: Vec<String>,
}

impl Vote {
    /// "2 of 3 subscriptions failing (eu, us)", plus those that cannot see.
    fn summary(&self) -> String {
        let names: Vec<&str> = self.failing.iter().map(|(name, _)| name.as_str()).collect();
        let mut line = format!("{} of {} subscriptions failing", self.failing.len(), self.live);
        if !names.is_empty() {
            line.push_str(&format!(" ({})", names.join(", ")));
        }
        if !self.blind.is_empty() {
            line.push_str(&format!(", {} cannot see", self.blind.join(", ")));
        }
        line
    }

    fn worst(&self) -> Status {
        self.failing.iter().map(|(_, status)| *status).fold(Status::Ok, Status::worst)
    }
}

/// The resolve of the check-wide incident once the check's quorum is removed
/// from its definition (its first result without one, in any subscription):
/// its subscriptions page on their own from now on, and the incident paged
/// so far must not be left open.
pub(super) fn removed(across: &mut CheckState, result: &CheckResult, now: DateTime<Utc>) -> Option<Event> {
    let notified = across.notified.take()?;
    let line = format!(
        "the quorum was removed from the check; each subscription alerts on its own from now on; {}: {}",
        result.subscription, result.output
    );
    let mut event = Raise::across(result, now).event(EventKind::Resolved, Some(notified.status), line);
    event.status = Status::Ok;
    Some(event)
}

/// The check-wide event this vote raises, if any, updating `across`. Like a
/// subscription's own rules: a problem when the quorum is reached (again when
/// the worst status changes, a reminder after `refresh`), a resolve when a
/// notified one is no longer reached. A late result raises only the resolve.
pub(super) fn decide(
    across: &mut CheckState,
    vote: &Vote,
    quorum: Quorum,
    result: &CheckResult,
    now: DateTime<Utc>,
    arrival: Arrival,
) -> Option<Event> {
    let required = quorum.required(vote.live);
    let reached = required.is_some_and(|required| vote.failing.len() >= required);
    let raise = Raise::across(result, now);
    let worst = vote.worst();
    let quorum_line = match required {
        Some(required) => format!("quorum {required}"),
        None => "no subscription can see".to_owned(),
    };
    let line = format!("{}, {quorum_line}; {}: {}", vote.summary(), result.subscription, result.output);
    let (kind, previous) = match across.notified.clone() {
        Some(notified) if !reached => {
            across.notified = None;
            let mut event = raise.event(EventKind::Resolved, Some(notified.status), line);
            event.status = Status::Ok;
            return Some(event);
        }
        _ if !reached || arrival == Arrival::Late => return None,
        None => (EventKind::Problem, None),
        Some(notified) if notified.status != worst => (EventKind::Problem, Some(notified.status)),
        Some(notified) if reminder_due(&notified, result.policy.refresh_secs, now) => (EventKind::Reminder, None),
        Some(_) => return None,
    };
    across.notified = Some(Notified { status: worst, at: now });
    let mut event = raise.event(kind, previous, line);
    event.status = worst;
    Some(event)
}
