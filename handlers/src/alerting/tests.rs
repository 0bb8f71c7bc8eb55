//! Alerting end to end against both backends, with a recording notifier.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use protocol::message::AlertPolicy;
use protocol::transport::{DeadLetter, DeadReason};
use protocol::{CheckResult, Keepalive, Status};
use tokio_util::sync::CancellationToken;

use super::{Alerting, AlertingConfig, Deliver, OutboxSender, SenderPolicy};
use crate::consumer::{Accept, HandlerError};
use crate::event::{Event, EventKind};
use crate::group::Group;
use crate::notify::{Delivered, NotifyError};
use crate::store::testing::{self, at, count, on_both_backends, outbox_rows};
use crate::store::{StepSize, Store, StoreConfig};

/// A notifier that records deliveries. `pd` takes only CRITICAL; every other
/// handler takes everything. Scripted failures are played per handler first.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) delivered: Mutex<Vec<(String, Event)>>,
    script: Mutex<HashMap<String, VecDeque<Result<Delivered, String>>>>,
}

impl Recorder {
    fn script(&self, handler: &str, outcomes: impl IntoIterator<Item = Result<Delivered, String>>) {
        self.script.lock().unwrap().entry(handler.to_owned()).or_default().extend(outcomes);
    }

    fn delivered(&self) -> Vec<(String, EventKind)> {
        self.delivered.lock().unwrap().iter().map(|(h, e)| (h.clone(), e.kind)).collect()
    }
}

impl Deliver for Recorder {
    fn accepts(&self, handler: &str, status: Status) -> bool {
        handler != "pd" || status == Status::Critical
    }

    async fn deliver(&self, handler: &str, event: &Event) -> Result<Delivered, NotifyError> {
        let scripted = self.script.lock().unwrap().get_mut(handler).and_then(VecDeque::pop_front);
        match scripted.unwrap_or(Ok(Delivered::Sent)) {
            Ok(Delivered::Sent) => {
                self.delivered.lock().unwrap().push((handler.to_owned(), event.clone()));
                Ok(Delivered::Sent)
            }
            Ok(dropped) => Ok(dropped),
            Err(reason) => Err(NotifyError { handler: handler.to_owned(), reason }),
        }
    }

    async fn deliver_group(&self, handler: &str, group: &Group) -> Result<Delivered, NotifyError> {
        let mut delivered = self.delivered.lock().unwrap();
        delivered.extend(group.events.iter().map(|event| (handler.to_owned(), event.clone())));
        Ok(Delivered::Sent)
    }
}

/// A result of `check` routed to `slack` and `pd`, reminding every 30 minutes.
pub(super) fn check_result(check: &str, slot: i64, status: Status) -> CheckResult {
    let policy = AlertPolicy {
        handlers: vec!["slack".into(), "pd".into()],
        occurrences: 1,
        refresh_secs: 1800,
        ..AlertPolicy::default()
    };
    CheckResult { details: serde_json::Value::Null, policy, ..testing::result(check, slot, status) }
}

fn result(slot: i64, status: Status) -> CheckResult {
    check_result("web", slot, status)
}

fn fleet() -> AlertingConfig {
    AlertingConfig { fleet_handlers: vec!["slack".into()], ..AlertingConfig::default() }
}

pub(super) async fn start(config: &StoreConfig, recorder: &Arc<Recorder>) -> Alerting<Recorder> {
    Alerting::start(Store::open(config).await.unwrap(), recorder.clone(), fleet()).await.unwrap()
}

/// Events in the order they were logged.
pub(super) async fn events_in_order(config: &StoreConfig) -> Vec<Event> {
    let store = Store::open(config).await.unwrap();
    let events = store.recent_events(1000).await.unwrap();
    store.close().await;
    events.into_iter().rev().collect()
}

/// Event kinds in the order they were logged.
async fn logged(config: &StoreConfig) -> Vec<EventKind> {
    events_in_order(config).await.into_iter().map(|e| e.kind).collect()
}

/// Runs sender rounds until nothing is due; returns the delivery attempts.
pub(super) async fn send_all(config: &StoreConfig, recorder: &Arc<Recorder>) -> usize {
    let store = Store::open(config).await.unwrap();
    let sender = OutboxSender::new(store.clone(), recorder.clone(), SenderPolicy::default());
    let mut attempts = 0;
    loop {
        match sender.send_due(Utc::now()).await.unwrap() {
            0 => break,
            round => attempts += round,
        }
    }
    store.close().await;
    attempts
}

/// Deliveries to one handler, in order (handlers are served concurrently).
fn delivered_to(recorder: &Recorder, handler: &str) -> Vec<EventKind> {
    recorder.delivered().into_iter().filter(|(h, _)| h == handler).map(|(_, kind)| kind).collect()
}

on_both_backends!(
    state_survives_a_restart,
    the_outbox_resends_after_a_crash,
    a_running_sender_delivers_each_event_once,
    duplicate_and_stale_results_are_dropped,
    the_history_counts_each_run_once_across_a_restart,
    a_running_sender_prunes_the_history_by_step_size,
    events_go_to_the_handlers_that_take_them,
    failed_deliveries_are_retried_then_given_up,
    runners_are_lost_and_back_on_the_handler_clock,
    a_runner_that_stopped_cleanly_is_not_lost,
    a_lost_runner_is_still_resolved_after_a_restart,
    handlers_sharing_a_store_judge_runners_as_one,
    expired_requests_raise_missed_once_a_minute,
    a_subscription_that_keeps_up_again_resolves_missed,
    an_open_missed_is_still_resolved_after_a_restart,
    a_database_that_is_down_fails_accept,
    committed_events_reach_the_hook,
    a_drained_backlog_pages_only_for_what_is_true_now,
);

async fn state_survives_a_restart(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    alerting.accept(&result(0, Status::Critical)).await.unwrap();
    alerting.accept(&result(10, Status::Critical)).await.unwrap();
    alerting.close().await;

    let alerting = start(&config, &recorder).await;
    alerting.accept(&result(20, Status::Critical)).await.unwrap();
    alerting.accept(&result(30, Status::Ok)).await.unwrap();
    alerting.accept(&result(40, Status::Ok)).await.unwrap();
    alerting.close().await;
    assert_eq!(logged(&config).await, [EventKind::Problem, EventKind::Resolved]);
}

async fn the_outbox_resends_after_a_crash(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    // Committed, then "crashed" before any sender ran.
    let alerting = start(&config, &recorder).await;
    alerting.accept(&result(0, Status::Critical)).await.unwrap();
    alerting.close().await;
    assert!(recorder.delivered().is_empty());

    assert_eq!(send_all(&config, &recorder).await, 2);
    assert_eq!(send_all(&config, &recorder).await, 0, "delivered rows are done");
    assert_eq!(delivered_to(&recorder, "slack"), [EventKind::Problem]);
    assert_eq!(delivered_to(&recorder, "pd"), [EventKind::Problem]);
}

async fn a_running_sender_delivers_each_event_once(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let policy = SenderPolicy { poll: Duration::from_secs(3600), ..SenderPolicy::default() };
    let shutdown = CancellationToken::new();
    let sender = tokio::spawn(alerting.outbox_sender(policy).run(shutdown.clone()));
    alerting.accept(&result(0, Status::Critical)).await.unwrap();
    alerting.accept(&result(10, Status::Ok)).await.unwrap();
    // Woken by the commits (the poll is an hour): problem and resolved, to
    // slack and to pd.
    for _ in 0..200 {
        if recorder.delivered().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    sender.await.unwrap();
    alerting.close().await;
    assert_eq!(delivered_to(&recorder, "slack"), [EventKind::Problem, EventKind::Resolved]);
    assert_eq!(delivered_to(&recorder, "pd"), [EventKind::Problem, EventKind::Resolved]);
}

async fn duplicate_and_stale_results_are_dropped(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    alerting.accept(&result(10, Status::Critical)).await.unwrap();
    alerting.accept(&result(10, Status::Critical)).await.unwrap();
    alerting.close().await;
    // A redelivery after a restart, and a result overtaken by a newer one.
    let alerting = start(&config, &recorder).await;
    alerting.accept(&result(10, Status::Critical)).await.unwrap();
    alerting.accept(&result(0, Status::Ok)).await.unwrap();
    alerting.accept(&result(0, Status::Ok)).await.unwrap();
    alerting.close().await;

    // The overtaken result joins the history, once, and resolves nothing.
    assert_eq!(logged(&config).await, [EventKind::Problem]);
    let store = Store::open(&config).await.unwrap();
    assert_eq!(count(&store, "results").await, 2);
    assert_eq!(
        store.state("web", "default").await.unwrap().unwrap().admission(&result(10, Status::Ok)),
        crate::state::Admission::Duplicate
    );
    store.close().await;
}

/// A redelivery and an overtaken result after a restart count in no step:
/// only the results the state admits as new do.
async fn the_history_counts_each_run_once_across_a_restart(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    alerting.accept(&result(40, Status::Critical)).await.unwrap();
    alerting.accept(&result(60, Status::Ok)).await.unwrap();
    alerting.close().await;
    let alerting = start(&config, &recorder).await;
    alerting.accept(&result(60, Status::Ok)).await.unwrap();
    alerting.accept(&result(50, Status::Ok)).await.unwrap();
    alerting.accept(&result(70, Status::Warning)).await.unwrap();
    alerting.close().await;

    let store = Store::open(&config).await.unwrap();
    for size in StepSize::ALL {
        let steps = store.history("web", "default", size, at(-3600)).await.unwrap();
        let counted: Vec<_> = steps.iter().map(|s| (s.runs, s.critical, s.warning)).collect();
        assert_eq!(counted, [(3, 1, 1)], "{size:?}");
    }
    store.close().await;
}

/// The sender prunes at start: a run three days old has left its minute
/// (kept 48 h) but not its hour (kept 90 days). The minute after it is its
/// pair's open step, kept with the state until a later run closes it.
async fn a_running_sender_prunes_the_history_by_step_size(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let hour = TimeDelta::hours(1).num_milliseconds();
    let old = DateTime::from_timestamp_millis((Utc::now() - TimeDelta::hours(72)).timestamp_millis() / hour * hour)
        .unwrap()
        + TimeDelta::minutes(10);
    for (slot, at) in [old, old + TimeDelta::minutes(1)].into_iter().enumerate() {
        let run = CheckResult { scheduled_at: at, started_at: at, ..result(slot as i64, Status::Ok) };
        alerting.accept(&run).await.unwrap();
    }
    let store = Store::open(&config).await.unwrap();
    let stored = |size| {
        let store = store.clone();
        async move { store.history("web", "default", size, old - TimeDelta::hours(1)).await.unwrap().len() }
    };
    assert_eq!((stored(StepSize::Minute).await, stored(StepSize::Hour).await), (2, 1));

    let shutdown = CancellationToken::new();
    let sender = tokio::spawn(alerting.outbox_sender(SenderPolicy::default()).run(shutdown.clone()));
    let mut pruned = false;
    for _ in 0..200 {
        if stored(StepSize::Minute).await == 1 {
            pruned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    shutdown.cancel();
    sender.await.unwrap();
    alerting.close().await;
    assert!(pruned, "the minute step was never pruned");
    assert_eq!(stored(StepSize::Hour).await, 1);
    store.close().await;
}

async fn events_go_to_the_handlers_that_take_them(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    alerting.accept(&result(0, Status::Warning)).await.unwrap();
    alerting.accept(&result(10, Status::Ok)).await.unwrap();
    alerting.accept(&result(20, Status::Critical)).await.unwrap();
    alerting.accept(&result(30, Status::Ok)).await.unwrap();
    alerting.close().await;
    assert_eq!(send_all(&config, &recorder).await, 6);
    use EventKind::{Problem, Resolved};
    assert_eq!(delivered_to(&recorder, "slack"), [Problem, Resolved, Problem, Resolved]);
    // pd takes CRITICAL only: not the WARNING nor its resolve, but the
    // resolve of the CRITICAL it was told about.
    assert_eq!(delivered_to(&recorder, "pd"), [Problem, Resolved]);
}

async fn failed_deliveries_are_retried_then_given_up(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    recorder.script("slack", [Err("503".to_owned())]);
    recorder.script("pd", [Err("timeout".to_owned()), Err("timeout".to_owned())]);
    let alerting = start(&config, &recorder).await;
    alerting.accept(&result(0, Status::Critical)).await.unwrap();
    alerting.close().await;

    let store = Store::open(&config).await.unwrap();
    let policy = SenderPolicy { first_retry: Duration::from_secs(10), max_attempts: 2, ..SenderPolicy::default() };
    let sender = OutboxSender::new(store.clone(), recorder.clone(), policy);
    assert_eq!(sender.send_due(Utc::now()).await.unwrap(), 2);
    assert_eq!(sender.send_due(Utc::now()).await.unwrap(), 0, "backing off");
    assert_eq!(sender.send_due(Utc::now() + TimeDelta::seconds(11)).await.unwrap(), 2);
    let states: Vec<_> = outbox_rows(&store)
        .await
        .into_iter()
        .map(|row| (row.handler, row.state, row.attempts, row.last_error))
        .collect();
    assert_eq!(
        states,
        [
            ("slack".to_owned(), "sent".to_owned(), 2, None),
            ("pd".to_owned(), "dropped".to_owned(), 2, Some("gave up after 2 attempts: timeout".to_owned())),
        ]
    );
    store.close().await;
}

/// A keepalive of `runner` serving `edge` and `default`, every 10 s.
pub(super) fn keepalive(runner: &str) -> Keepalive {
    Keepalive {
        runner: runner.into(),
        subscriptions: vec!["edge".into(), "default".into()],
        version: "0.1.0".into(),
        started_at: at(-1000),
        in_flight: 0,
        executed: 0,
        interval: 10,
        stopping: false,
    }
}

async fn runners_are_lost_and_back_on_the_handler_clock(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    // The runner's clock is a day off; only the handler's clock counts.
    let skewed = Keepalive { started_at: at(86_400), ..keepalive("r1") };
    alerting.keepalive_at(&skewed, at(0)).await.unwrap();
    alerting.keepalive_at(&keepalive("r2"), at(0)).await.unwrap();
    alerting.keepalive_at(&keepalive("r2"), at(25)).await.unwrap();
    alerting.tick(at(30)).await.unwrap();
    assert!(logged(&config).await.is_empty(), "3 intervals is not yet more than 3");
    alerting.tick(at(31)).await.unwrap();
    alerting.tick(at(45)).await.unwrap();
    alerting.tick(at(90)).await.unwrap();
    alerting.keepalive_at(&keepalive("r1"), at(100)).await.unwrap();
    alerting.keepalive_at(&keepalive("r1"), at(110)).await.unwrap();
    alerting.tick(at(115)).await.unwrap();
    alerting.close().await;

    let events = events_in_order(&config).await;
    let seen: Vec<_> = events.iter().map(|e| (e.kind, e.runner.as_str(), e.status)).collect();
    assert_eq!(
        seen,
        [
            (EventKind::RunnerLost, "r1", Status::Critical),
            (EventKind::RunnerLost, "r2", Status::Critical),
            (EventKind::RunnerBack, "r1", Status::Ok),
        ]
    );
    assert_eq!(events[0].incident_key(), "picket/default,edge/runner/r1");
    assert_eq!(events[0].incident_key(), events[2].incident_key(), "back resolves lost");
    assert_eq!(events[0].handlers, ["slack"]);
}

async fn a_runner_that_stopped_cleanly_is_not_lost(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    alerting.keepalive_at(&keepalive("scaled-in"), at(0)).await.unwrap();
    alerting.keepalive_at(&keepalive("crashed"), at(0)).await.unwrap();
    alerting.keepalive_at(&Keepalive { stopping: true, ..keepalive("scaled-in") }, at(5)).await.unwrap();
    // A runner that was lost and then says goodbye resolves its incident.
    alerting.keepalive_at(&keepalive("flaky"), at(0)).await.unwrap();
    alerting.tick(at(31)).await.unwrap();
    alerting.keepalive_at(&Keepalive { stopping: true, ..keepalive("flaky") }, at(40)).await.unwrap();
    alerting.tick(at(300)).await.unwrap();
    alerting.close().await;

    let events = events_in_order(&config).await;
    let of = |runner: &str| events.iter().filter(|e| e.runner == runner).map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(of("scaled-in"), []);
    assert_eq!(of("crashed"), [EventKind::RunnerLost]);
    assert_eq!(of("flaky"), [EventKind::RunnerLost, EventKind::RunnerBack]);
}

async fn a_lost_runner_is_still_resolved_after_a_restart(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    alerting.keepalive_at(&keepalive("r1"), at(0)).await.unwrap();
    alerting.tick(at(31)).await.unwrap();
    alerting.close().await;

    let alerting = start(&config, &recorder).await;
    alerting.tick(at(200)).await.unwrap();
    alerting.keepalive_at(&keepalive("r1"), at(300)).await.unwrap();
    alerting.close().await;
    assert_eq!(logged(&config).await, [EventKind::RunnerLost, EventKind::RunnerBack]);
    let store = Store::open(&config).await.unwrap();
    assert!(store.lost_runners().await.unwrap().is_empty());
    store.close().await;
}

/// Handler `a` hears r1 and r2, then `b` takes over the keepalive queue and
/// hears r1 only (r2 died in the handover): `a`, now deaf, raises no false
/// `runner_lost` for r1; r2, and later r1, are reported once each although
/// both handlers judge them.
async fn handlers_sharing_a_store_judge_runners_as_one(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let a = start(&config, &recorder).await;
    let b = start(&config, &recorder).await;
    a.keepalive_at(&keepalive("r1"), at(0)).await.unwrap();
    a.keepalive_at(&keepalive("r2"), at(0)).await.unwrap();
    a.keepalive_at(&keepalive("r1"), at(10)).await.unwrap();
    b.tick(at(20)).await.unwrap();
    for t in (20..=60).step_by(10) {
        b.keepalive_at(&keepalive("r1"), at(t)).await.unwrap();
        a.tick(at(t + 5)).await.unwrap();
        b.tick(at(t + 5)).await.unwrap();
    }
    let lost = |events: Vec<Event>| events.into_iter().map(|e| (e.kind, e.runner)).collect::<Vec<_>>();
    assert_eq!(lost(events_in_order(&config).await), [(EventKind::RunnerLost, "r2".to_owned())]);
    // r1 dies after its keepalive at 60.
    for t in (70..=120).step_by(5) {
        a.tick(at(t)).await.unwrap();
        b.tick(at(t)).await.unwrap();
    }
    a.close().await;
    b.close().await;
    assert_eq!(
        lost(events_in_order(&config).await),
        [(EventKind::RunnerLost, "r2".to_owned()), (EventKind::RunnerLost, "r1".to_owned())]
    );
}

async fn expired_requests_raise_missed_once_a_minute(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let letter = |subscription: &str, reason: DeadReason, id: &str| DeadLetter {
        reason,
        check: Some("web".into()),
        subscription: Some(subscription.into()),
        request_id: Some(id.into()),
    };
    alerting.dead_letter_at(&letter("default", DeadReason::Expired, "a"), at(0)).await.unwrap();
    alerting.dead_letter_at(&letter("default", DeadReason::Expired, "b"), at(30)).await.unwrap();
    alerting.dead_letter_at(&letter("default", DeadReason::Overlap, "c"), at(70)).await.unwrap();
    alerting.dead_letter_at(&letter("edge", DeadReason::Expired, "d"), at(30)).await.unwrap();
    alerting.dead_letter_at(&letter("default", DeadReason::Expired, "e"), at(60)).await.unwrap();
    alerting.accept(&DeadLetter { subscription: None, ..letter("x", DeadReason::Expired, "f") }).await.unwrap();
    alerting.close().await;

    let events = events_in_order(&config).await;
    let seen: Vec<_> = events.iter().map(|e| (e.kind, e.subscription.as_str(), e.status)).collect();
    assert_eq!(
        seen,
        [
            (EventKind::Missed, "default", Status::Warning),
            (EventKind::Missed, "edge", Status::Warning),
            (EventKind::Missed, "default", Status::Warning),
        ]
    );
}

async fn a_subscription_that_keeps_up_again_resolves_missed(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let expired = |id: &str| DeadLetter {
        reason: DeadReason::Expired,
        check: Some("web".into()),
        subscription: Some("default".into()),
        request_id: Some(id.into()),
    };
    alerting.dead_letter_at(&expired("a"), at(0)).await.unwrap();
    // Still expiring (rate-limited, no event): the quiet period restarts.
    alerting.dead_letter_at(&expired("b"), at(50)).await.unwrap();
    alerting.tick(at(120)).await.unwrap();
    alerting.tick(at(171)).await.unwrap();
    alerting.tick(at(200)).await.unwrap();
    // A new episode raises at once, not a minute after the last `missed`.
    alerting.dead_letter_at(&expired("c"), at(205)).await.unwrap();
    alerting.close().await;

    let events = events_in_order(&config).await;
    let seen: Vec<_> = events.iter().map(|e| (e.kind, e.status, e.occurred_at)).collect();
    assert_eq!(
        seen,
        [
            (EventKind::Missed, Status::Warning, at(0)),
            (EventKind::CaughtUp, Status::Ok, at(171)),
            (EventKind::Missed, Status::Warning, at(205)),
        ]
    );
    assert_eq!(events[0].incident_key(), events[1].incident_key(), "caught_up resolves missed");
}

async fn an_open_missed_is_still_resolved_after_a_restart(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let expired = |subscription: &str, id: &str| DeadLetter {
        reason: DeadReason::Expired,
        check: Some("web".into()),
        subscription: Some(subscription.into()),
        request_id: Some(id.into()),
    };
    let alerting = start(&config, &recorder).await;
    alerting.dead_letter_at(&expired("default", "d1"), at(0)).await.unwrap();
    alerting.dead_letter_at(&expired("edge", "e1"), at(0)).await.unwrap();
    alerting.dead_letter_at(&expired("edge", "e2"), at(50)).await.unwrap();
    alerting.tick(at(130)).await.unwrap();
    alerting.close().await;

    // Restarted: `edge` is still open and closes; `default` closed before.
    let alerting = start(&config, &recorder).await;
    alerting.tick(at(200)).await.unwrap();
    alerting.tick(at(300)).await.unwrap();
    alerting.close().await;
    let events = events_in_order(&config).await;
    let seen: Vec<_> = events.iter().map(|e| (e.kind, e.subscription.as_str(), e.occurred_at)).collect();
    assert_eq!(
        seen,
        [
            (EventKind::Missed, "default", at(0)),
            (EventKind::Missed, "edge", at(0)),
            (EventKind::CaughtUp, "default", at(130)),
            (EventKind::CaughtUp, "edge", at(200)),
        ]
    );
}

async fn a_database_that_is_down_fails_accept(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let store = Store::open(&config).await.unwrap();
    let alerting = Alerting::start(store.clone(), recorder.clone(), fleet()).await.unwrap();
    store.close().await;
    let error = alerting.accept(&result(0, Status::Critical)).await.unwrap_err();
    assert!(matches!(&error, HandlerError::Sink(reason) if reason.contains("state store")), "{error}");
    alerting.close().await;
    assert!(logged(&config).await.is_empty(), "nothing committed");
}

async fn committed_events_reach_the_hook(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let config_with_hook = AlertingConfig {
        on_event: Some(Arc::new(move |event: &Event| hook_seen.lock().unwrap().push(event.kind))),
        ..fleet()
    };
    let alerting = Alerting::start(Store::open(&config).await.unwrap(), recorder, config_with_hook).await.unwrap();
    alerting.accept(&result(0, Status::Ok)).await.unwrap();
    alerting.accept(&result(10, Status::Critical)).await.unwrap();
    alerting.close().await;
    assert_eq!(*seen.lock().unwrap(), [EventKind::Problem]);
}

/// Many results in flight at once (they share transactions): each `accept`
/// returns only once its own result is committed.
#[tokio::test]
async fn concurrent_accepts_return_after_their_commit() {
    crate::store::testing::with_db(crate::store::Backend::Sqlite, |config| async move {
        let recorder = Arc::new(Recorder::default());
        let alerting = Arc::new(start(&config, &recorder).await);
        let mut accepts = tokio::task::JoinSet::new();
        for check in 0..200 {
            let alerting = alerting.clone();
            accepts.spawn(async move {
                let result = CheckResult { check: format!("c{check}"), ..result(0, Status::Critical) };
                alerting.accept(&result).await
            });
        }
        while let Some(done) = accepts.join_next().await {
            done.unwrap().unwrap();
        }
        let store = Store::open(&config).await.unwrap();
        assert_eq!(count(&store, "check_state").await, 200);
        assert_eq!(store.outbox_pending().await.unwrap(), 400);
        store.close().await;
    })
    .await;
}

/// A webhook receiver that takes one message at a time, `pace` each, and
/// counts what it received per event.
struct PacedReceiver {
    pace: Duration,
    line: tokio::sync::Mutex<()>,
    received: Mutex<HashMap<String, usize>>,
}

impl Deliver for PacedReceiver {
    fn accepts(&self, _: &str, _: Status) -> bool {
        true
    }

    async fn deliver(&self, _: &str, event: &Event) -> Result<Delivered, NotifyError> {
        let _line = self.line.lock().await;
        tokio::time::sleep(self.pace).await;
        *self.received.lock().unwrap().entry(event.id.clone()).or_default() += 1;
        Ok(Delivered::Sent)
    }

    async fn deliver_group(&self, _: &str, group: &Group) -> Result<Delivered, NotifyError> {
        let _line = self.line.lock().await;
        let mut received = self.received.lock().unwrap();
        for event in &group.events {
            *received.entry(event.id.clone()).or_default() += 1;
        }
        Ok(Delivered::Sent)
    }
}

/// Two handlers' senders on one PostgreSQL outbox, behind a slow webhook:
/// a backlog of 100 takes far longer than one lease, and still every
/// message arrives exactly once (the lease runs from each claim).
#[tokio::test]
async fn two_senders_behind_a_slow_webhook_deliver_each_message_once() {
    crate::store::testing::with_db(crate::store::Backend::Postgres, |config| async move {
        let receiver = Arc::new(PacedReceiver {
            pace: Duration::from_millis(20),
            line: tokio::sync::Mutex::new(()),
            received: Mutex::default(),
        });
        let alerting = Alerting::start(Store::open(&config).await.unwrap(), receiver.clone(), fleet()).await.unwrap();
        for check in 0..100 {
            let mut backlog = CheckResult { check: format!("c{check}"), ..result(0, Status::Critical) };
            backlog.policy.handlers = vec!["slack".into()];
            alerting.accept(&backlog).await.unwrap();
        }
        alerting.close().await;

        let policy = SenderPolicy {
            poll: Duration::from_millis(50),
            lease: Duration::from_millis(300),
            ..SenderPolicy::default()
        };
        let shutdown = CancellationToken::new();
        let mut senders = Vec::new();
        for _ in 0..2 {
            let store = Store::open(&config).await.unwrap();
            senders.push(tokio::spawn(OutboxSender::new(store, receiver.clone(), policy).run(shutdown.clone())));
        }
        let store = Store::open(&config).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while store.outbox_pending().await.unwrap() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "the backlog is not delivered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Rows claimed twice would be delivered again just after settling.
        tokio::time::sleep(policy.lease * 2).await;
        shutdown.cancel();
        for sender in senders {
            sender.await.unwrap();
        }
        let received = receiver.received.lock().unwrap().clone();
        assert_eq!(received.len(), 100, "every message arrives");
        let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_swaps_the_notifiers_for_the_next_delivery() {
    let (old, new) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let (swap, current) = tokio::sync::watch::channel(old.clone());
    let reloading = super::Reloading::new(current);
    let event: Event = serde_json::from_value(serde_json::json!({
        "id": "evt-1", "kind": "problem", "check": "web", "subscription": "default", "runner": "r1",
        "status": 2, "previous": 0, "output": "down", "metrics": {}, "labels": {},
        "occurred_at": at(0), "handlers": ["ops"]
    }))
    .unwrap();
    reloading.deliver("ops", &event).await.unwrap();
    swap.send_replace(new.clone());
    reloading.deliver("ops", &event).await.unwrap();
    assert_eq!(old.delivered(), [("ops".to_owned(), EventKind::Problem)]);
    assert_eq!(new.delivered(), [("ops".to_owned(), EventKind::Problem)]);
    assert!(!reloading.accepts("pd", Status::Warning), "routing asks the current set too");
}

/// A result of a check run every 10 s, so one received more than 20 s after
/// its slot is late.
fn every_10s(check: &str, slot: i64, status: Status) -> CheckResult {
    let mut result = check_result(check, slot, status);
    result.policy.period_ms = Some(10_000);
    result
}

/// The handler is stopped for five minutes. Meanwhile `blip` goes CRITICAL
/// and back to OK, `down` fails and stays failing, and `known` (notified
/// before the stop) recovers. On restart the backlog drains at once: no
/// problem for `blip`, `known`'s resolve, and one problem for `down`, from
/// its first fresh result. Nothing else, not even the reminders that fell
/// due meanwhile (refresh 30 minutes; the backlog is 5).
async fn a_drained_backlog_pages_only_for_what_is_true_now(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    for check in ["blip", "down", "known"] {
        alerting.result_at(&every_10s(check, 0, Status::Ok), at(1)).await.unwrap();
    }
    alerting.result_at(&every_10s("known", 10, Status::Critical), at(11)).await.unwrap();
    alerting.close().await;

    let alerting = start(&config, &recorder).await;
    let drained = at(320);
    for slot in (20..=320).step_by(10) {
        let blip = if (100..200).contains(&slot) { Status::Critical } else { Status::Ok };
        let known = if slot < 150 { Status::Critical } else { Status::Ok };
        for (check, status) in [("blip", blip), ("down", Status::Critical), ("known", known)] {
            alerting.result_at(&every_10s(check, slot, status), drained).await.unwrap();
        }
    }
    alerting.close().await;

    let events = events_in_order(&config).await;
    let told: Vec<_> = events.iter().map(|e| (e.check.as_str(), e.kind, e.occurred_at)).collect();
    assert_eq!(
        told,
        [
            ("known", EventKind::Problem, at(11)),
            ("known", EventKind::Resolved, drained),
            ("down", EventKind::Problem, drained)
        ]
    );
    assert!(events[2].output.ends_with("at 300"), "the first fresh result raised it: {}", events[2].output);
    send_all(&config, &recorder).await;
    // Incidents are delivered independently: compare the set.
    let mut slack: Vec<_> = recorder
        .delivered
        .lock()
        .unwrap()
        .iter()
        .filter(|(handler, _)| handler == "slack")
        .map(|(_, event)| (event.check.clone(), event.kind))
        .collect();
    slack.sort_by_key(|(check, kind)| (check.clone(), kind.to_string()));
    let expected = [("down", EventKind::Problem), ("known", EventKind::Problem), ("known", EventKind::Resolved)];
    assert_eq!(slack, expected.map(|(check, kind)| (check.to_owned(), kind)));
    let store = Store::open(&config).await.unwrap();
    let blip = store.state("blip", "default").await.unwrap().unwrap();
    assert_eq!((blip.history.len(), blip.notified), (21, None), "late results are state");
    assert_eq!(count(&store, "results").await, 3 + 1 + 3 * 31);
    store.close().await;
}
