//! The silence gate: decides, inside the batcher's transaction, whom an event
//! is queued for. Silences gate notifications only; the event itself is
//! always logged, with the silences that held it back.
//!
//! - A **trigger** (problem, reminder, flapping start, runner lost, missed,
//!   a flapping end that is not OK) matched by an active silence or an open
//!   maintenance window is queued for nobody and kept as its incident's
//!   *held* problem; otherwise it is queued for its handlers, and each one's
//!   `notified` row records the status it was told.
//! - A **resolve** (resolved, runner back, caught up, a flapping end at OK)
//!   goes to exactly the handlers whose `notified` row says they were told of
//!   the problem, silenced or not, and clears those rows and the held one: no
//!   incident is orphaned, and nobody is told of the end of a problem they
//!   never heard of.
//! - When every silence of a held problem has ended and it is still open,
//!   [`super::Alerting::tick`] tells the handlers not yet told of its status
//!   ([`release`]); taking the held row is a conditional delete, so handlers
//!   sharing a store tell it once.
//! - A trigger is **held** the same way while a check it depends on
//!   (`depends_on`) fails in its subscription, or while its subscription
//!   cannot see (every runner lost, requests expiring): the reasons are
//!   [`Hold`] marks in `silenced_by`, beside silence ids, and the tick
//!   releases it once none holds any more.

use chrono::{DateTime, Utc};
use protocol::Status;
use protocol::silence::SilenceTarget;

use crate::event::{Event, EventKind};
use crate::silence::Silencers;
use crate::state::event_id;
use crate::store::{Batch, StoreError};

/// The silences and windows that silence `event` at `now`: a runner event
/// concerns every subscription the runner serves, and is silenced only when
/// each of them is.
pub(super) fn silenced_by(silencers: &Silencers, event: &Event, now: DateTime<Utc>) -> Vec<String> {
    silencers.silencing(targets(event), now)
}

/// What an event is judged against: its check, or, for a fleet event, each
/// subscription it concerns (a runner's are comma-separated).
fn targets(event: &Event) -> Vec<SilenceTarget<'_>> {
    match event.kind {
        EventKind::RunnerLost | EventKind::RunnerBack | EventKind::Missed | EventKind::CaughtUp => event
            .subscription
            .split(',')
            .map(|subscription| SilenceTarget { check: None, subscription, labels: &event.labels })
            .collect(),
        _ => {
            vec![SilenceTarget { check: Some(&event.check), subscription: &event.subscription, labels: &event.labels }]
        }
    }
}

/// Why a problem is held, as written in its `silenced_by`.
pub(super) enum Hold<'a> {
    /// A silence id, or `maintenance:<window>`.
    Silence,
    /// `depends_on:<check>`: that check fails in the same subscription.
    Dependency(&'a str),
    /// `cannot_see:<subscription>`: the subscription's runners are lost or
    /// its requests expire.
    Blind(&'a str),
}

const DEPENDS_ON: &str = "depends_on:";
const CANNOT_SEE: &str = "cannot_see:";

impl<'a> Hold<'a> {
    pub(super) fn of(mark: &'a str) -> Self {
        if let Some(check) = mark.strip_prefix(DEPENDS_ON) {
            Self::Dependency(check)
        } else if let Some(subscription) = mark.strip_prefix(CANNOT_SEE) {
            Self::Blind(subscription)
        } else {
            Self::Silence
        }
    }

    pub(super) fn dependency(check: &str) -> String {
        format!("{DEPENDS_ON}{check}")
    }

    pub(super) fn blind(subscription: &str) -> String {
        format!("{CANNOT_SEE}{subscription}")
    }
}

/// Whether an event ends its incident's problem.
fn resolves(event: &Event) -> bool {
    match event.kind {
        EventKind::Resolved | EventKind::RunnerBack | EventKind::CaughtUp => true,
        EventKind::FlappingEnd => event.status == Status::Ok,
        _ => false,
    }
}

/// Decides whom `event` is queued for (its handlers are those routed to it;
/// silences are judged at the time it occurred, `holds` are the other
/// [`Hold`]s of a trigger), then logs and queues it, keeping the `notified`
/// and `held` rows. Returns `false` when the event was already logged (a
/// replay), which queues nothing.
///
/// Every path touches `held` before `notified`, so two handlers' batches on
/// one PostgreSQL lock them in the same order; a resolve drops the held row
/// before it reads who was told, so it waits for a release of the same
/// incident committing elsewhere and then sees whom that release told.
pub(super) async fn add(
    batch: &mut Batch,
    silencers: &Silencers,
    event: &mut Event,
    holds: &[String],
) -> Result<bool, StoreError> {
    let incident = event.incident_key();
    if resolves(event) {
        batch.drop_held(&incident).await?;
        event.handlers = batch.told(&incident).await?.into_keys().collect();
        if !batch.add_event(event).await? {
            return Ok(false);
        }
        batch.forget_told(&incident).await?;
        return Ok(true);
    }
    event.silenced_by = silenced_by(silencers, event, event.occurred_at);
    event.silenced_by.extend_from_slice(holds);
    if event.silenced_by.is_empty() {
        if !batch.add_event(event).await? {
            return Ok(false);
        }
        batch.drop_held(&incident).await?;
        batch.record_told(event).await?;
        return Ok(true);
    }
    let routed = std::mem::take(&mut event.handlers);
    if !batch.add_event(event).await? {
        return Ok(false);
    }
    if !routed.is_empty() {
        batch.hold(&Event { handlers: routed, ..event.clone() }).await?;
    }
    Ok(true)
}

/// A held problem whose silences have all ended, to tell now.
pub(super) struct Release {
    pub held: Event,
    /// What ended, e.g. "silence 3f… by alice ended".
    pub ended: String,
    /// The newest output of the still-failing check.
    pub output: String,
}

/// Tells a released problem to the handlers it was routed to that were not
/// told of its status yet. It keeps the time it occurred (so a released
/// `missed` does not look like a newer episode); its output says what ended. `None` when another handler sharing the
/// store released it first, a newer event replaced it, or everyone was
/// already told.
pub(super) async fn release(batch: &mut Batch, release: &Release) -> Result<Option<Event>, StoreError> {
    let held = release.held.clone();
    let incident = held.incident_key();
    if !batch.take_held(&incident, &held.id).await? {
        return Ok(None);
    }
    let told = batch.told(&incident).await?;
    let status = held.status;
    let kind = if held.kind == EventKind::Reminder { EventKind::Problem } else { held.kind };
    let event = Event {
        id: event_id(&incident, kind, &format!("released {}", held.id)),
        kind,
        output: format!("{}; still {status}: {}", release.ended, release.output),
        handlers: held.handlers.iter().filter(|h| told.get(*h) != Some(&status)).cloned().collect(),
        silenced_by: Vec::new(),
        ..held
    };
    if event.handlers.is_empty() || !batch.add_event(&event).await? {
        return Ok(None);
    }
    batch.record_told(&event).await?;
    Ok(Some(event))
}
