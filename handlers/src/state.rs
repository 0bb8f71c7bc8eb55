//! The alerting state of one (check, subscription): what the handler remembers
//! between results, and the pure rules that turn the next result into events.
//!
//! Nothing here does I/O or reads a clock: the caller passes `now`, loads the
//! state from the store and saves it back in the same transaction as the
//! events, which is what makes a restarted handler neither re-trigger nor
//! forget to resolve.
//!
//! Rules (Sensu's, with the duplicates and flapping fixed):
//! - `problem`: the status is non-OK and `occurrences` consecutive non-OK
//!   results were reached, or a notified problem changed status (WARNING →
//!   CRITICAL, CRITICAL → UNKNOWN, …); the latter carries `previous`.
//! - `resolved`: OK after a *notified* problem, never for a check that was
//!   never notified as failing.
//! - `reminder`: still failing with the notified status `refresh` after the
//!   last notification.
//! - `flapping_start` / `flapping_end`: see [`flap_percent`]. While flapping,
//!   problem, resolved and reminder are held back; when flapping ends the
//!   ordinary rules apply to the current status, so a status that differs from
//!   what was last notified is notified then.
//! - Late results (see [`Arrival`]) change the state but raise only
//!   `resolved`: no problem, reminder or flap event is news when it comes
//!   from a backlog. The first fresh result then raises what is true now.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};
use protocol::{CheckResult, Status};
use serde::{Deserialize, Serialize};

use crate::event::{ACROSS, Event, EventKind};

/// Statuses kept per (check, subscription): Sensu's flap-detection window.
pub const HISTORY_LEN: usize = 21;

/// What the handler remembers about one (check, subscription). Serialized as
/// JSON in the store, so fields only ever get added with serde defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckState {
    /// The last [`HISTORY_LEN`] statuses, oldest first.
    pub history: VecDeque<Status>,
    /// Consecutive non-OK results, the current one included.
    pub occurrences: u32,
    /// When the status last differed from the one before it.
    pub last_change: Option<DateTime<Utc>>,
    /// The problem last notified; `None` when never notified or since resolved.
    pub notified: Option<Notified>,
    pub flapping: bool,
    /// The newest result applied: the duplicate and ordering watermark.
    pub last_applied: Option<AppliedResult>,
    /// The last result applied came from a check with a `quorum`, so this
    /// subscription's problems were logged for nobody and the check-wide
    /// incident paged. A result without one (the quorum removed from the
    /// definition) resolves that incident and pages this subscription's
    /// problems on their own again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub voting: bool,
}

/// A problem as last told to the handlers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notified {
    pub status: Status,
    pub at: DateTime<Utc>,
}

/// Identifies the newest result applied to a state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppliedResult {
    pub request_id: String,
    pub scheduled_at: DateTime<Utc>,
}

/// Whether a result may be applied to a state.
///
/// Request ids are a hash of (check, subscription, slot) and slots only move
/// forward, so for one (check, subscription) a result is new exactly when its
/// slot is later than the newest slot applied. Keeping that watermark in the
/// state row makes duplicate detection exact, durable across restarts and
/// free of any pruning: a redelivered result (handler crash before the ack,
/// two schedulers briefly both leading) carries an applied slot, and a result
/// overtaken in transit by a newer one would only rewind the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    New,
    /// Same request id, or the same slot, as a result already applied.
    Duplicate,
    /// Older than the newest result applied.
    Stale,
}

/// When a result reached the handler, relative to its slot.
///
/// A handler that was down or behind drains its backlog at once; the
/// transitions it replays happened long ago, and paging for them is paging
/// for old news. A late result updates the state (history, occurrences, the
/// watermark) so the next fresh one is judged against the truth, but the only
/// event it may raise is a resolve: nothing ever suppresses a resolve, so a
/// notified problem always gets its end. Flapping is judged on fresh results
/// only, so a late one leaves the flag as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    Fresh,
    Late,
}

impl CheckState {
    pub fn admission(&self, result: &CheckResult) -> Admission {
        match &self.last_applied {
            None => Admission::New,
            Some(last) if last.request_id == result.request_id || last.scheduled_at == result.scheduled_at => {
                Admission::Duplicate
            }
            Some(last) if result.scheduled_at < last.scheduled_at => Admission::Stale,
            Some(_) => Admission::New,
        }
    }

    /// Applies one admitted result at `now` (the handler's clock) and returns
    /// the events it raises, in order. Events are routed to every handler of
    /// the policy; the caller narrows them to those that take the status.
    pub fn apply(&mut self, result: &CheckResult, now: DateTime<Utc>, arrival: Arrival) -> Vec<Event> {
        if self.left_the_vote(result) {
            // Its problems so far were told to nobody: its next one is news.
            self.notified = None;
        }
        self.voting = result.policy.quorum.is_some();
        let status = result.status;
        if self.history.back() != Some(&status) {
            self.last_change = Some(now);
        }
        self.history.push_back(status);
        while self.history.len() > HISTORY_LEN {
            self.history.pop_front();
        }
        self.occurrences = if status == Status::Ok { 0 } else { self.occurrences.saturating_add(1) };
        self.last_applied =
            Some(AppliedResult { request_id: result.request_id.clone(), scheduled_at: result.scheduled_at });

        let raise = Raise::new(result, now);
        if arrival == Arrival::Late {
            return if self.flapping { Vec::new() } else { self.resolve(&raise).into_iter().collect() };
        }
        let mut events = Vec::new();
        match self.flap_transition(result) {
            Some(FlapTransition::Start(percent)) => {
                events.push(raise.event(EventKind::FlappingStart, None, flap_line(percent, result)));
            }
            Some(FlapTransition::End(percent)) => {
                events.push(raise.event(EventKind::FlappingEnd, None, flap_line(percent, result)));
            }
            None => {}
        }
        if !self.flapping {
            events.extend(self.notification(&raise));
        }
        events
    }

    /// Whether `result` is the first of this subscription since its check's
    /// quorum was removed.
    pub fn left_the_vote(&self, result: &CheckResult) -> bool {
        self.voting && result.policy.quorum.is_none()
    }

    /// Updates the flapping flag; `Some` when it changed.
    fn flap_transition(&mut self, result: &CheckResult) -> Option<FlapTransition> {
        let thresholds = FlapThresholds::of(result);
        let percent = flap_percent(&self.history);
        match (thresholds, percent) {
            (Some(t), Some(p)) if !self.flapping && p >= t.high => {
                self.flapping = true;
                Some(FlapTransition::Start(p))
            }
            (Some(t), Some(p)) if self.flapping && p <= t.low => {
                self.flapping = false;
                Some(FlapTransition::End(p))
            }
            // Thresholds removed from the definition while flapping: flapping
            // can no longer be judged, so it ends rather than mute the check.
            (None, p) if self.flapping => {
                self.flapping = false;
                Some(FlapTransition::End(p.unwrap_or(0.0)))
            }
            _ => None,
        }
    }

    /// The ordinary (not flapping) rules for the current status.
    fn notification(&mut self, raise: &Raise<'_>) -> Option<Event> {
        let status = raise.result.status;
        let policy = &raise.result.policy;
        match self.notified.clone() {
            Some(_) if status == Status::Ok => self.resolve(raise),
            None if status != Status::Ok && self.occurrences >= policy.occurrences.max(1) => {
                self.notified = Some(Notified { status, at: raise.now });
                Some(raise.event(EventKind::Problem, None, raise.result.output.clone()))
            }
            Some(notified) if status != Status::Ok && notified.status != status => {
                self.notified = Some(Notified { status, at: raise.now });
                Some(raise.event(EventKind::Problem, Some(notified.status), raise.result.output.clone()))
            }
            Some(notified) if status != Status::Ok && reminder_due(&notified, policy.refresh_secs, raise.now) => {
                self.notified = Some(Notified { status, at: raise.now });
                Some(raise.event(EventKind::Reminder, None, raise.result.output.clone()))
            }
            _ => None,
        }
    }

    /// `resolved` when the result is OK after a notified problem.
    fn resolve(&mut self, raise: &Raise<'_>) -> Option<Event> {
        let notified = self.notified.take_if(|_| raise.result.status == Status::Ok)?;
        Some(raise.event(EventKind::Resolved, Some(notified.status), raise.result.output.clone()))
    }
}

/// A refresh of 0 means no reminders (not one per result), and one too large
/// to represent never comes due.
pub(crate) fn reminder_due(notified: &Notified, refresh_secs: u64, now: DateTime<Utc>) -> bool {
    match i64::try_from(refresh_secs).ok().and_then(TimeDelta::try_seconds) {
        Some(refresh) => refresh_secs > 0 && now - notified.at >= refresh,
        None => false,
    }
}

enum FlapTransition {
    Start(f64),
    End(f64),
}

/// Flap detection is on only when the check sets both thresholds.
struct FlapThresholds {
    low: f64,
    high: f64,
}

impl FlapThresholds {
    fn of(result: &CheckResult) -> Option<Self> {
        match (result.policy.low_flap_threshold, result.policy.high_flap_threshold) {
            (Some(low), Some(high)) => Some(Self { low, high }),
            _ => None,
        }
    }
}

/// The weighted percent state change over the history, as Sensu and Nagios
/// compute it; `None` until the history holds [`HISTORY_LEN`] statuses.
///
/// With the statuses `s[0]` (oldest) … `s[20]` (newest), position `i` weighs
/// `w(i) = 0.80 + 0.02·i`, so recent changes count more (1.20 for the newest,
/// 0.82 for the oldest change). Position `i ≥ 1` is a change when
/// `s[i] ≠ s[i-1]`; position 0 has nothing before it and never is. Then
///
/// ```text
/// percent = Σ w(i) over changes / Σ w(i) over i = 1..20 × 100
/// ```
///
/// The denominator is the total weight, 20.2, so a status that changes on
/// every result scores exactly 100. Sensu divides by 20 instead, which reads
/// at most 1 % higher; thresholds written for Sensu behave the same here.
pub fn flap_percent(history: &VecDeque<Status>) -> Option<f64> {
    if history.len() < HISTORY_LEN {
        return None;
    }
    let (changed, total) = history.iter().zip(history.iter().skip(1)).enumerate().fold(
        (0.0, 0.0),
        |(changed, total), (position, (before, after))| {
            let weight = 0.80 + 0.02 * (position + 1) as f64;
            (if before == after { changed } else { changed + weight }, total + weight)
        },
    );
    Some(changed / total * 100.0)
}

fn flap_line(percent: f64, result: &CheckResult) -> String {
    format!("{percent:.0}% state change over the last {HISTORY_LEN} results; now: {}", result.output)
}

/// Builds the events of one result: for its (check, subscription), or for
/// the check across its subscriptions ([`ACROSS`]).
pub(crate) struct Raise<'a> {
    result: &'a CheckResult,
    now: DateTime<Utc>,
    subscription: &'a str,
}

impl<'a> Raise<'a> {
    fn new(result: &'a CheckResult, now: DateTime<Utc>) -> Self {
        Self { result, now, subscription: &result.subscription }
    }

    pub(crate) fn across(result: &'a CheckResult, now: DateTime<Utc>) -> Self {
        Self { result, now, subscription: ACROSS }
    }

    pub(crate) fn event(&self, kind: EventKind, previous: Option<Status>, output: String) -> Event {
        let result = self.result;
        let mut event = Event {
            id: String::new(),
            kind,
            check: result.check.clone(),
            subscription: self.subscription.to_owned(),
            runner: result.runner.clone(),
            status: result.status,
            previous,
            output,
            metrics: result.metrics.clone(),
            labels: result.policy.labels.clone(),
            occurred_at: self.now,
            handlers: result.policy.handlers.clone(),
            silenced_by: Vec::new(),
        };
        event.id = event_id(&event.incident_key(), kind, &result.request_id);
        event
    }
}

/// A deterministic event id: the same decision replayed yields the same id,
/// so the event log and the outbox keep one row and receivers can dedupe.
/// `cause` names what raised the event (a request id, a lost-runner episode).
pub fn event_id(incident_key: &str, kind: EventKind, cause: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{incident_key}\n{kind}\n{cause}").as_bytes());
    digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::message::AlertPolicy;

    const T0: i64 = 1_700_000_000;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(T0 + secs, 0).unwrap()
    }

    fn policy(occurrences: u32, refresh_secs: u64) -> AlertPolicy {
        AlertPolicy { handlers: vec!["ops".into()], occurrences, refresh_secs, ..AlertPolicy::default() }
    }

    /// A result for slot `slot` (seconds after T0), with request id = slot.
    fn result(slot: i64, status: Status, policy: &AlertPolicy) -> CheckResult {
        CheckResult {
            request_id: format!("req-{slot}"),
            check: "web".into(),
            subscription: "default".into(),
            runner: "r1".into(),
            status,
            output: format!("{status} at {slot}"),
            scheduled_at: at(slot),
            started_at: at(slot),
            duration_ms: 5,
            lateness_ms: 0,
            metrics: Default::default(),
            details: serde_json::Value::Null,
            policy: policy.clone(),
        }
    }

    /// Feeds one status per 10 s slot and returns (slot index, kind, previous) per event.
    fn run(
        state: &mut CheckState,
        statuses: &[Status],
        policy: &AlertPolicy,
    ) -> Vec<(usize, EventKind, Option<Status>)> {
        let start = state.last_applied.as_ref().map_or(0, |a| (a.scheduled_at - at(0)).num_seconds() / 10 + 1);
        statuses
            .iter()
            .enumerate()
            .flat_map(|(i, &status)| {
                let slot = (start + i as i64) * 10;
                state
                    .apply(&result(slot, status, policy), at(slot), Arrival::Fresh)
                    .into_iter()
                    .map(move |e| (i, e.kind, e.previous))
            })
            .collect()
    }

    use EventKind::*;
    use Status::{Critical as C, Ok as O, Unknown as U, Warning as W};

    #[test]
    fn ok_to_critical_with_one_occurrence_is_a_problem_at_once() {
        let mut state = CheckState::default();
        assert_eq!(run(&mut state, &[O, C, C], &policy(1, 0)), vec![(1, Problem, None)]);
        assert_eq!(state.notified.as_ref().map(|n| n.status), Some(C));
    }

    #[test]
    fn three_occurrences_wait_for_the_third_failure() {
        let mut state = CheckState::default();
        assert_eq!(run(&mut state, &[O, C, C, C, C], &policy(3, 0)), vec![(3, Problem, None)]);
    }

    #[test]
    fn three_occurrences_interrupted_by_ok_raise_nothing() {
        let mut state = CheckState::default();
        assert_eq!(run(&mut state, &[C, C, O], &policy(3, 0)), vec![]);
        assert_eq!(state.occurrences, 0);
        assert_eq!(state.notified, None);
    }

    #[test]
    fn critical_then_ok_resolves_with_the_notified_status() {
        let mut state = CheckState::default();
        assert_eq!(run(&mut state, &[C, O, O], &policy(1, 0)), vec![(0, Problem, None), (1, Resolved, Some(C))]);
        assert_eq!(state.notified, None);
    }

    #[test]
    fn status_changes_while_notified_are_problems_with_previous() {
        let mut state = CheckState::default();
        assert_eq!(
            run(&mut state, &[W, C, C, U, O], &policy(1, 0)),
            vec![(0, Problem, None), (1, Problem, Some(W)), (3, Problem, Some(C)), (4, Resolved, Some(U))]
        );
    }

    #[test]
    fn warning_critical_ok() {
        let mut state = CheckState::default();
        assert_eq!(
            run(&mut state, &[O, W, C, O], &policy(1, 0)),
            vec![(1, Problem, None), (2, Problem, Some(W)), (3, Resolved, Some(C))]
        );
    }

    #[test]
    fn ok_to_ok_notifies_nothing() {
        let mut state = CheckState::default();
        assert_eq!(run(&mut state, &[O; 30], &policy(1, 60)), vec![]);
    }

    #[test]
    fn a_failure_never_notified_is_never_resolved() {
        let mut state = CheckState::default();
        assert_eq!(run(&mut state, &[C, C, O, C, O], &policy(3, 0)), vec![]);
    }

    #[test]
    fn reminders_follow_refresh_from_the_last_notification() {
        let p = policy(1, 60);
        let mut state = CheckState::default();
        let kinds = |events: Vec<Event>| events.into_iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(kinds(state.apply(&result(0, C, &p), at(0), Arrival::Fresh)), vec![Problem]);
        assert_eq!(kinds(state.apply(&result(10, C, &p), at(59), Arrival::Fresh)), vec![]);
        assert_eq!(kinds(state.apply(&result(20, C, &p), at(60), Arrival::Fresh)), vec![Reminder]);
        assert_eq!(kinds(state.apply(&result(30, C, &p), at(100), Arrival::Fresh)), vec![]);
        assert_eq!(kinds(state.apply(&result(40, C, &p), at(125), Arrival::Fresh)), vec![Reminder]);
        // A status change is a problem and restarts the refresh clock.
        assert_eq!(kinds(state.apply(&result(50, W, &p), at(150), Arrival::Fresh)), vec![Problem]);
        assert_eq!(kinds(state.apply(&result(60, W, &p), at(200), Arrival::Fresh)), vec![]);
        assert_eq!(kinds(state.apply(&result(70, W, &p), at(210), Arrival::Fresh)), vec![Reminder]);
    }

    #[test]
    fn refresh_zero_sends_no_reminders() {
        let p = policy(1, 0);
        let mut state = CheckState::default();
        let events: Vec<_> =
            (0..5).flat_map(|i| state.apply(&result(i * 10, C, &p), at(i * 3600), Arrival::Fresh)).collect();
        assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![Problem]);
    }

    /// Feeds (slot, status, arrival) and returns the kinds raised per result.
    fn arrive(state: &mut CheckState, p: &AlertPolicy, results: &[(i64, Status, Arrival)]) -> Vec<Vec<EventKind>> {
        results
            .iter()
            .map(|&(slot, status, arrival)| {
                state.apply(&result(slot, status, p), at(slot + 300), arrival).into_iter().map(|e| e.kind).collect()
            })
            .collect()
    }

    use Arrival::{Fresh, Late};

    #[test]
    fn a_late_failure_raises_nothing_and_the_first_fresh_one_is_the_problem() {
        let p = policy(2, 60);
        let mut state = CheckState::default();
        let raised =
            arrive(&mut state, &p, &[(0, C, Late), (10, C, Late), (20, O, Late), (30, C, Late), (40, C, Fresh)]);
        assert_eq!(raised, [vec![], vec![], vec![], vec![], vec![Problem]]);
        assert_eq!(state.occurrences, 2, "late results count towards occurrences");
        assert_eq!(state.history.len(), 5);
    }

    #[test]
    fn a_late_ok_still_resolves_a_notified_problem() {
        let p = policy(1, 60);
        let mut state = CheckState::default();
        let raised =
            arrive(&mut state, &p, &[(0, C, Fresh), (10, W, Late), (20, C, Late), (30, O, Late), (40, O, Fresh)]);
        assert_eq!(raised, [vec![Problem], vec![], vec![], vec![Resolved], vec![]]);
        assert_eq!(state.notified, None);
    }

    #[test]
    fn a_change_seen_only_late_is_told_once_by_the_next_fresh_result() {
        let p = policy(1, 60);
        let mut state = CheckState::default();
        // Reminders were due (refresh 60 s, 5 minutes late) and the status
        // changed twice in the backlog: one problem, from the fresh result.
        let raised =
            arrive(&mut state, &p, &[(0, W, Fresh), (10, C, Late), (20, U, Late), (30, C, Fresh), (40, C, Fresh)]);
        assert_eq!(raised, [vec![Problem], vec![], vec![], vec![Problem], vec![]]);
        assert_eq!(state.notified.as_ref().map(|n| n.status), Some(C));
    }

    #[test]
    fn flapping_is_judged_on_fresh_results_only() {
        let p = AlertPolicy { low_flap_threshold: Some(10.0), high_flap_threshold: Some(40.0), ..policy(1, 0) };
        let mut state = CheckState::default();
        let backlog: Vec<_> = (0..30).map(|i| (i * 10, if i % 2 == 0 { O } else { C }, Late)).collect();
        assert!(arrive(&mut state, &p, &backlog).iter().all(Vec::is_empty));
        assert!(!state.flapping);
        assert_eq!(arrive(&mut state, &p, &[(300, C, Fresh)]), [vec![FlappingStart]]);
    }

    #[test]
    fn flap_percent_weights_recent_changes_more() {
        let steady: VecDeque<Status> = std::iter::repeat_n(O, 21).collect();
        assert_eq!(flap_percent(&steady), Some(0.0));
        assert_eq!(flap_percent(&steady.iter().copied().take(20).collect()), None);
        let alternating: VecDeque<Status> = (0..21).map(|i| if i % 2 == 0 { O } else { C }).collect();
        assert!((flap_percent(&alternating).unwrap() - 100.0).abs() < 1e-9);
        let mut newest_change = steady.clone();
        newest_change[20] = C;
        let mut oldest_change = steady.clone();
        oldest_change[0] = C;
        assert!((flap_percent(&newest_change).unwrap() - 1.20 / 20.2 * 100.0).abs() < 1e-9);
        assert!((flap_percent(&oldest_change).unwrap() - 0.82 / 20.2 * 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_flapping_series_starts_and_ends_flapping_once() {
        let p = AlertPolicy { low_flap_threshold: Some(10.0), high_flap_threshold: Some(40.0), ..policy(1, 0) };
        let mut state = CheckState::default();
        let mut series: Vec<Status> = (0..30).map(|i| if i % 2 == 0 { O } else { C }).collect();
        series.extend([W; 30]);
        let events = run(&mut state, &series, &p);
        let flaps: Vec<_> = events.iter().filter(|(_, k, _)| matches!(k, FlappingStart | FlappingEnd)).collect();
        assert_eq!(flaps.len(), 2, "{events:?}");
        let (start, end) = (flaps[0].0, flaps[1].0);
        assert_eq!((flaps[0].1, flaps[1].1), (FlappingStart, FlappingEnd));
        assert_eq!(start, 20, "never before 21 results, and at once at 100 %");
        assert!(
            events.iter().all(|(i, k, _)| *i <= start || *i >= end || matches!(k, FlappingStart | FlappingEnd)),
            "nothing is notified while flapping: {events:?}"
        );
        // Result 19's CRITICAL was the last notification (result 20 already
        // flapped); the check settled on WARNING, notified when flapping ends.
        let at_end: Vec<_> = events.iter().filter(|(i, _, _)| *i == end).map(|(_, k, p)| (*k, *p)).collect();
        assert_eq!(at_end, vec![(FlappingEnd, None), (Problem, Some(C))]);
        assert!(!state.flapping);
    }

    #[test]
    fn flapping_needs_both_thresholds() {
        let p = AlertPolicy { high_flap_threshold: Some(40.0), ..policy(1, 0) };
        let mut state = CheckState::default();
        let series: Vec<Status> = (0..30).map(|i| if i % 2 == 0 { O } else { C }).collect();
        let events = run(&mut state, &series, &p);
        assert!(events.iter().all(|(_, k, _)| matches!(k, Problem | Resolved)), "{events:?}");
        assert_eq!(events.len(), 29, "every change from result 1 on is notified");
    }

    #[test]
    fn duplicates_and_stale_results_are_refused() {
        let p = policy(1, 0);
        let mut state = CheckState::default();
        let first = result(10, C, &p);
        assert_eq!(state.admission(&first), Admission::New);
        state.apply(&first, at(10), Arrival::Fresh);
        assert_eq!(state.admission(&first), Admission::Duplicate);
        let same_slot = CheckResult { request_id: "other".into(), ..first.clone() };
        assert_eq!(state.admission(&same_slot), Admission::Duplicate);
        assert_eq!(state.admission(&result(0, O, &p)), Admission::Stale);
        assert_eq!(state.admission(&result(20, O, &p)), Admission::New);
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct_per_kind() {
        let p = policy(1, 0);
        let mut a = CheckState::default();
        let mut b = CheckState::default();
        let ea = a.apply(&result(0, C, &p), at(0), Arrival::Fresh);
        let eb = b.apply(&result(0, C, &p), at(5), Arrival::Fresh);
        assert_eq!(ea[0].id, eb[0].id);
        assert_ne!(event_id("k", Problem, "r"), event_id("k", Reminder, "r"));
        assert_eq!(ea[0].id.len(), 32);
    }

    #[test]
    fn history_keeps_the_last_21_and_tracks_changes() {
        let p = policy(1, 0);
        let mut state = CheckState::default();
        run(&mut state, &[O; 25], &p);
        assert_eq!(state.history.len(), HISTORY_LEN);
        assert_eq!(state.last_change, Some(at(0)));
        run(&mut state, &[C], &p);
        assert_eq!(state.last_change, Some(at(250)));
        assert_eq!(state.occurrences, 1);
    }

    #[test]
    fn state_round_trips_as_json() {
        let p = policy(1, 0);
        let mut state = CheckState::default();
        run(&mut state, &[O, W, C], &p);
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<CheckState>(&json).unwrap(), state);
    }
}
