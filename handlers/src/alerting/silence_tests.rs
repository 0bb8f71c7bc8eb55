//! The silence semantics (issue 12, README "Silences"), one test per row, on
//! both backends, through the real pipeline: batcher, gate, outbox, sender,
//! and the real Slack and PagerDuty notifiers posting to local receivers
//! that record every request. Each test asserts every message each
//! receiver got.

use std::sync::Arc;

use protocol::definition::MaintenanceWindow;
use protocol::definition::window::parse_window;
use tokio::sync::watch;

use chrono::Utc;
use protocol::definition::handler::parse_handler;
use protocol::transport::{DeadLetter, DeadReason};
use protocol::{CheckResult, Keepalive, Status};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::{Alerting, AlertingConfig, OutboxSender, SenderPolicy};
use crate::event::{Event, EventKind};
use crate::notify::Notifiers;
use crate::notify::receiver::{Receiver, Reply};
use crate::silence::{Expiry, Silence, SilenceState};
use crate::store::testing::{at, on_both_backends};
use crate::store::{Store, StoreConfig};

const PD_ACCEPTED: &str = r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#;

/// A result of `check` on `default` for the slot at `slot` seconds, routed
/// to `slack` (takes everything) and `pd` (takes CRITICAL only), labelled
/// `team=payments`.
fn result(check: &str, slot: i64, status: Status) -> CheckResult {
    let mut result = super::tests::check_result(check, slot, status);
    result.policy.labels = [("team".to_owned(), "payments".to_owned())].into();
    result
}

/// A store, a recording Slack and PagerDuty, and the notifiers for them.
pub(super) struct Harness {
    pub(super) config: StoreConfig,
    pub(super) store: Store,
    pub(super) notifiers: Arc<Notifiers>,
    pub(super) slack: Receiver,
    pub(super) pd: Receiver,
    _secrets: TempDir,
}

impl Harness {
    async fn new(config: StoreConfig) -> Self {
        Self::with(config, &json!({}), &json!({})).await
    }

    /// Handlers `slack` and `pd` (CRITICAL only), their definitions with
    /// the fields of `slack_fields` and `pd_fields` added.
    pub(super) async fn with(config: StoreConfig, slack_fields: &Value, pd_fields: &Value) -> Self {
        let slack = Receiver::start(vec![Reply::new(200, "ok")]).await;
        let pd = Receiver::start(vec![Reply::new(202, PD_ACCEPTED)]).await;
        let secrets = tempfile::tempdir().unwrap();
        let hook = secrets.path().join("slack");
        std::fs::write(&hook, slack.url("/services/T0/B0/TOKEN")).unwrap();
        let key = secrets.path().join("pd");
        std::fs::write(&key, "R0UTINGKEY").unwrap();
        let with = |mut definition: Value, fields: &Value| {
            definition.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
            parse_handler(definition).unwrap()
        };
        let definitions = [
            with(json!({"name": "slack", "type": "slack", "webhook_url": {"file": hook}}), slack_fields),
            with(
                json!({"name": "pd", "type": "pagerduty", "routing_key": {"file": key},
                    "api_url": pd.url("/v2/enqueue"), "severities": ["critical"]}),
                pd_fields,
            ),
        ];
        let store = Store::open(&config).await.unwrap();
        Self { config, store, notifiers: Arc::new(Notifiers::for_tests(&definitions)), slack, pd, _secrets: secrets }
    }

    /// An alerting sink on the harness's store (several may run at once).
    async fn alerting(&self) -> Alerting<Notifiers> {
        self.alerting_with(AlertingConfig::default()).await
    }

    async fn alerting_with(&self, config: AlertingConfig) -> Alerting<Notifiers> {
        let config = AlertingConfig { fleet_handlers: vec!["slack".into()], ..config };
        Alerting::start(Store::open(&self.config).await.unwrap(), self.notifiers.clone(), config).await.unwrap()
    }

    /// Stores a silence by alice from `starts` to `ends` (seconds).
    async fn silence(&self, id: &str, matcher: Value, starts: i64, ends: i64, ends_on_resolve: bool) -> Silence {
        let silence = Silence {
            id: id.into(),
            matcher: serde_json::from_value(matcher).unwrap(),
            starts_at: at(starts),
            ends_at: at(ends),
            ends_on_resolve,
            comment: "planned work".into(),
            created_by: "alice".into(),
            created_at: at(starts),
            expired: None,
        };
        self.store.add_silence(&silence).await.unwrap();
        silence
    }

    /// Delivers every due notification, then says what each receiver got
    /// so far: Slack `title | text`, PagerDuty `trigger summary` or
    /// `resolve dedup_key`.
    async fn delivered(&self) -> (Vec<String>, Vec<String>) {
        let sender = OutboxSender::new(self.store.clone(), self.notifiers.clone(), SenderPolicy::default());
        while sender.send_due(Utc::now()).await.unwrap() > 0 {}
        let slack = self
            .slack
            .received()
            .iter()
            .map(|r| {
                let attachment = &r.json()["attachments"][0];
                format!("{} | {}", attachment["title"].as_str().unwrap(), attachment["text"].as_str().unwrap())
            })
            .collect();
        let pd = self
            .pd
            .received()
            .iter()
            .map(|r| {
                let body = r.json();
                match body["event_action"].as_str().unwrap() {
                    "trigger" => format!("trigger {}", body["payload"]["summary"].as_str().unwrap()),
                    action => format!("{action} {}", body["dedup_key"].as_str().unwrap()),
                }
            })
            .collect();
        (slack, pd)
    }

    async fn events(&self) -> Vec<Event> {
        self.store.recent_events(1000).await.unwrap().into_iter().rev().collect()
    }
}

on_both_backends!(
    a_silence_gates_notifications_only,
    a_resolve_during_a_silence_reaches_exactly_the_notified,
    a_silence_ending_while_failing_tells_those_not_told,
    a_silence_starting_during_a_problem_sends_nothing,
    a_restart_and_a_second_handler_keep_it,
    ends_on_resolve_expires_once_everything_matched_is_ok_twice,
    fleet_events_are_silenced_by_subscription,
    a_maintenance_window_silences_while_open,
);

/// Row 1: checks fail and flap under a silence: no message, but the
/// results, the state (occurrences, flapping) and the event log keep the
/// real status and name the silence.
async fn a_silence_gates_notifications_only(config: StoreConfig) {
    let h = Harness::new(config).await;
    let alerting = h.alerting().await;
    h.silence("s1", json!({"check": "api-*", "labels": {"team": "pay*"}}), 0, 3600, false).await;
    alerting.result_at(&result("api-pay", 10, Status::Critical), at(10)).await.unwrap();
    alerting.result_at(&result("web", 10, Status::Critical), at(10)).await.unwrap();
    for slot in 0..25 {
        let mut flapping = result("api-flap", slot * 10, if slot % 2 == 0 { Status::Ok } else { Status::Critical });
        (flapping.policy.low_flap_threshold, flapping.policy.high_flap_threshold) = (Some(10.0), Some(40.0));
        alerting.result_at(&flapping, at(slot * 10)).await.unwrap();
    }
    alerting.close().await;

    let (slack, pd) = h.delivered().await;
    assert_eq!(slack, ["CRITICAL: web on default | CRITICAL at 10"], "only the unsilenced check");
    assert_eq!(pd, ["trigger CRITICAL: web on default: CRITICAL at 10"]);
    let state = h.store.state("api-pay", "default").await.unwrap().unwrap();
    assert_eq!((state.history.back(), state.occurrences), (Some(&Status::Critical), 1));
    assert_eq!(state.notified.map(|n| n.status), Some(Status::Critical), "the state machine decided the problem");
    assert_eq!(h.store.recent_results("api-pay", "default", 1).await.unwrap()[0].status, Status::Critical);
    assert!(h.store.state("api-flap", "default").await.unwrap().unwrap().flapping, "flapping is judged");
    let events = h.events().await;
    let logged: Vec<_> = events
        .iter()
        .filter(|e| e.kind != EventKind::Resolved && (e.kind != EventKind::Problem || e.check != "api-flap"))
        .map(|e| (e.check.as_str(), e.kind, e.handlers.len(), e.silenced_by.clone()))
        .collect();
    let s1 = || vec!["s1".to_owned()];
    assert_eq!(
        logged,
        [
            ("api-pay", EventKind::Problem, 0, s1()),
            ("web", EventKind::Problem, 2, vec![]),
            ("api-flap", EventKind::FlappingStart, 0, s1())
        ]
    );
}

/// Row 2: a resolve during a silence goes to each handler told of the
/// problem (no orphaned PagerDuty incident), and to no handler never told.
async fn a_resolve_during_a_silence_reaches_exactly_the_notified(config: StoreConfig) {
    let h = Harness::new(config).await;
    let alerting = h.alerting().await;
    // Before the silence: api-told is CRITICAL (both told), api-warn
    // WARNING (Slack told; PagerDuty takes CRITICAL only).
    alerting.result_at(&result("api-told", 0, Status::Critical), at(0)).await.unwrap();
    alerting.result_at(&result("api-warn", 0, Status::Warning), at(0)).await.unwrap();
    alerting.result_at(&result("api-never", 0, Status::Ok), at(0)).await.unwrap();
    h.silence("s1", json!({"check": "api-*"}), 5, 3600, false).await;
    alerting.result_at(&result("api-warn", 10, Status::Critical), at(10)).await.unwrap();
    alerting.result_at(&result("api-never", 10, Status::Critical), at(10)).await.unwrap();
    for check in ["api-told", "api-warn", "api-never"] {
        alerting.result_at(&result(check, 20, Status::Ok), at(20)).await.unwrap();
    }
    alerting.close().await;

    let (slack, pd) = h.delivered().await;
    assert_eq!(
        slack,
        [
            "CRITICAL: api-told on default | CRITICAL at 0",
            "WARNING: api-warn on default | WARNING at 0",
            "RESOLVED: api-told on default | OK at 20",
            "RESOLVED: api-warn on default | OK at 20",
        ]
    );
    assert_eq!(pd, ["trigger CRITICAL: api-told on default: CRITICAL at 0", "resolve picket/default/api-told"]);
    for check in ["api-told", "api-warn", "api-never"] {
        assert!(h.store.notified(&format!("picket/default/{check}")).await.unwrap().is_empty(), "{check}");
    }
    assert!(h.store.held().await.unwrap().is_empty(), "resolved problems are no longer held");
}

/// Row 3: the silence ends while the check still fails: each handler never
/// told of this status is told once, saying the silence ended; a handler
/// already told of the same status is not paged again.
async fn a_silence_ending_while_failing_tells_those_not_told(config: StoreConfig) {
    let h = Harness::new(config).await;
    let alerting = h.alerting().await;
    alerting.result_at(&result("api-told", 0, Status::Critical), at(0)).await.unwrap();
    alerting.result_at(&result("api-warn", 0, Status::Warning), at(0)).await.unwrap();
    h.silence("s1", json!({"check": "api-*"}), 5, 100, false).await;
    alerting.result_at(&result("api-new", 10, Status::Critical), at(10)).await.unwrap();
    alerting.result_at(&result("api-warn", 10, Status::Critical), at(10)).await.unwrap();
    alerting.tick(at(50)).await.unwrap();
    for check in ["api-told", "api-warn", "api-new"] {
        alerting.result_at(&result(check, 60, Status::Critical), at(60)).await.unwrap();
    }
    let before = h.delivered().await;
    assert_eq!(before.0.len(), 2, "only what was told before the silence: {before:?}");
    assert_eq!(before.1.len(), 1, "{before:?}");

    alerting.tick(at(100)).await.unwrap();
    alerting.tick(at(110)).await.unwrap();
    alerting.tick(at(200)).await.unwrap();
    alerting.result_at(&result("api-new", 210, Status::Ok), at(210)).await.unwrap();
    alerting.close().await;
    let ended = "silence s1 by alice ended; still CRITICAL: CRITICAL at 60";
    let (slack, pd) = h.delivered().await;
    assert_eq!(
        slack,
        [
            "CRITICAL: api-told on default | CRITICAL at 0".to_owned(),
            "WARNING: api-warn on default | WARNING at 0".to_owned(),
            format!("CRITICAL: api-new on default | {ended}"),
            format!("CRITICAL (was WARNING): api-warn on default | {ended}"),
            "RESOLVED: api-new on default | OK at 210".to_owned(),
        ]
    );
    assert_eq!(
        pd,
        [
            "trigger CRITICAL: api-told on default: CRITICAL at 0".to_owned(),
            format!("trigger CRITICAL: api-new on default: {ended}"),
            format!("trigger CRITICAL (was WARNING): api-warn on default: {ended}"),
            "resolve picket/default/api-new".to_owned(),
        ]
    );
}

/// Row 4: a silence that starts while a problem is open sends nothing, then
/// or later (its reminders are held back too).
async fn a_silence_starting_during_a_problem_sends_nothing(config: StoreConfig) {
    let h = Harness::new(config).await;
    let alerting = h.alerting().await;
    alerting.result_at(&result("api", 0, Status::Critical), at(0)).await.unwrap();
    h.silence("s1", json!({"subscription": "default"}), 5, 3600, false).await;
    alerting.tick(at(5)).await.unwrap();
    alerting.result_at(&result("api", 10, Status::Critical), at(10)).await.unwrap();
    alerting.result_at(&result("api", 1900, Status::Critical), at(1900)).await.unwrap();
    alerting.tick(at(1950)).await.unwrap();
    alerting.close().await;

    let (slack, pd) = h.delivered().await;
    assert_eq!(slack, ["CRITICAL: api on default | CRITICAL at 0"]);
    assert_eq!(pd, ["trigger CRITICAL: api on default: CRITICAL at 0"]);
    let kinds: Vec<_> = h.events().await.iter().map(|e| (e.kind, e.silenced_by.clone())).collect();
    assert_eq!(kinds, [(EventKind::Problem, vec![]), (EventKind::Reminder, vec!["s1".to_owned()])]);
}

/// Row 5: a restarted handler, and two handlers on one store ticking at
/// once, tell a problem whose silence ended exactly once, and its resolve
/// still reaches everyone told.
async fn a_restart_and_a_second_handler_keep_it(config: StoreConfig) {
    let h = Harness::new(config).await;
    let first = h.alerting().await;
    h.silence("s1", json!({"check": "api"}), 0, 100, false).await;
    first.result_at(&result("api", 10, Status::Critical), at(10)).await.unwrap();
    first.close().await;

    let (a, b) = (h.alerting().await, h.alerting().await);
    let (ticked_a, ticked_b) = tokio::join!(a.tick(at(100)), b.tick(at(100)));
    ticked_a.unwrap();
    ticked_b.unwrap();
    b.tick(at(110)).await.unwrap();
    b.result_at(&result("api", 120, Status::Ok), at(120)).await.unwrap();
    a.close().await;
    b.close().await;

    let ended = "silence s1 by alice ended; still CRITICAL: CRITICAL at 10";
    let (slack, pd) = h.delivered().await;
    assert_eq!(
        slack,
        [format!("CRITICAL: api on default | {ended}"), "RESOLVED: api on default | OK at 120".to_owned()]
    );
    assert_eq!(pd, [format!("trigger CRITICAL: api on default: {ended}"), "resolve picket/default/api".to_owned()]);
}

/// Row 6: `ends_on_resolve` expires the silence, as picket, once everything
/// it matches has been OK for two consecutive results; later failures are
/// notified again.
async fn ends_on_resolve_expires_once_everything_matched_is_ok_twice(config: StoreConfig) {
    let h = Harness::new(config).await;
    let alerting = h.alerting().await;
    h.silence("s1", json!({"check": "api-*"}), 0, 3600, true).await;
    let state = |id: &'static str, now| {
        let store = h.store.clone();
        async move { store.silence(id).await.unwrap().unwrap().state_at(now) }
    };
    for check in ["api-a", "api-b"] {
        alerting.result_at(&result(check, 10, Status::Critical), at(10)).await.unwrap();
    }
    for slot in [20, 30] {
        alerting.result_at(&result("api-a", slot, Status::Ok), at(slot)).await.unwrap();
        alerting.result_at(&result("api-b", slot, Status::Critical), at(slot)).await.unwrap();
    }
    alerting.tick(at(35)).await.unwrap();
    assert_eq!(state("s1", at(35)).await, SilenceState::Active, "api-b still fails");
    alerting.result_at(&result("api-b", 40, Status::Ok), at(40)).await.unwrap();
    alerting.tick(at(45)).await.unwrap();
    assert_eq!(state("s1", at(45)).await, SilenceState::Active, "one OK result is not two");
    alerting.result_at(&result("api-b", 50, Status::Ok), at(50)).await.unwrap();
    alerting.tick(at(55)).await.unwrap();
    let expired = h.store.silence("s1").await.unwrap().unwrap().expired;
    assert_eq!(expired, Some(Expiry { at: at(55), by: "picket".into(), reason: "resolved".into() }));
    alerting.result_at(&result("api-a", 60, Status::Critical), at(60)).await.unwrap();
    alerting.close().await;

    let (slack, pd) = h.delivered().await;
    assert_eq!(slack, ["CRITICAL: api-a on default | CRITICAL at 60"], "nothing while silenced");
    assert_eq!(pd, ["trigger CRITICAL: api-a on default: CRITICAL at 60"]);
}

fn keepalive(runner: &str, subscriptions: &[&str]) -> Keepalive {
    Keepalive {
        subscriptions: subscriptions.iter().map(|s| (*s).to_owned()).collect(),
        ..super::tests::keepalive(runner)
    }
}

/// Row 7: `runner_lost` and `missed` are silenced by subscription (a runner
/// only when every subscription it serves is), told when the silence ends
/// while still open, and resolved to whoever was told.
async fn fleet_events_are_silenced_by_subscription(config: StoreConfig) {
    let h = Harness::new(config).await;
    let alerting = h.alerting().await;
    h.silence("s1", json!({"subscription": "default"}), 0, 100, false).await;
    alerting.keepalive_at(&keepalive("r1", &["default"]), at(0)).await.unwrap();
    alerting.keepalive_at(&keepalive("r2", &["default", "edge"]), at(0)).await.unwrap();
    alerting.tick(at(31)).await.unwrap();
    let expired = DeadLetter {
        reason: DeadReason::Expired,
        check: Some("api".into()),
        subscription: Some("default".into()),
        request_id: Some("api-40".into()),
    };
    alerting.dead_letter_at(&expired, at(40)).await.unwrap();
    let before = h.delivered().await;
    assert_eq!(
        before.0,
        ["RUNNER LOST: runner r2 in default,edge | no keepalive from runner r2 for 31s (interval 10s)"]
    );

    alerting.tick(at(100)).await.unwrap();
    alerting.keepalive_at(&keepalive("r1", &["default"]), at(150)).await.unwrap();
    alerting.keepalive_at(&keepalive("r1", &["default"]), at(190)).await.unwrap();
    alerting.tick(at(200)).await.unwrap();
    alerting.close().await;
    let (slack, pd) = h.delivered().await;
    assert_eq!(
        slack,
        [
            "RUNNER LOST: runner r2 in default,edge | no keepalive from runner r2 for 31s (interval 10s)",
            "RUNNER LOST: runner r1 in default | silence s1 by alice ended; still CRITICAL: no keepalive from runner r1 \
             for 31s (interval 10s)",
            "MISSED RUNS: subscription default | silence s1 by alice ended; still WARNING: requests for subscription default \
             expire before a runner starts them (last: api)",
            "RUNNER BACK: runner r1 in default | runner r1 is back after 119s",
            "CAUGHT UP: subscription default | requests for subscription default start in time again (the last one \
             expired 160s ago)",
        ]
    );
    assert!(pd.is_empty(), "fleet events go to the fleet handlers: {pd:?}");
}

/// A maintenance window silences like a silence named `maintenance:<name>`,
/// by git, while it is open on the clock the test passes: at(0) is
/// 22:13:20 UTC, so the daily 23:00 window is open from at(2800) to at(4600).
/// It arrives by reload, after the handler started.
async fn a_maintenance_window_silences_while_open(config: StoreConfig) {
    let h = Harness::new(config).await;
    let (reload, windows) = watch::channel::<Arc<[MaintenanceWindow]>>(Arc::from([]));
    let alerting = h.alerting_with(AlertingConfig { windows, ..AlertingConfig::default() }).await;
    let nightly = parse_window(json!({"kind": "maintenance", "name": "nightly", "match": {"check": "api-*"},
        "cron": "0 23 * * *", "duration": "30m", "comment": "nightly restarts"}))
    .unwrap();
    reload.send(Arc::from([nightly])).unwrap();
    alerting.result_at(&result("api-told", 2700, Status::Critical), at(2700)).await.unwrap();
    alerting.result_at(&result("api-new", 2700, Status::Ok), at(2700)).await.unwrap();
    alerting.result_at(&result("api-new", 2800, Status::Critical), at(2800)).await.unwrap();
    alerting.result_at(&result("web", 2800, Status::Critical), at(2800)).await.unwrap();
    alerting.result_at(&result("api-told", 2900, Status::Ok), at(2900)).await.unwrap();
    alerting.tick(at(4599)).await.unwrap();
    assert_eq!(h.delivered().await.0.len(), 3, "api-told's problem and resolve, web's problem");
    alerting.tick(at(4600)).await.unwrap();
    alerting.result_at(&result("api-told", 4700, Status::Critical), at(4700)).await.unwrap();
    alerting.close().await;

    let (slack, pd) = h.delivered().await;
    let ended = "silence maintenance:nightly by git ended; still CRITICAL: CRITICAL at 2800";
    assert_eq!(
        slack,
        [
            "CRITICAL: api-told on default | CRITICAL at 2700".to_owned(),
            "CRITICAL: web on default | CRITICAL at 2800".to_owned(),
            "RESOLVED: api-told on default | OK at 2900".to_owned(),
            format!("CRITICAL: api-new on default | {ended}"),
            "CRITICAL: api-told on default | CRITICAL at 4700".to_owned(),
        ]
    );
    assert_eq!(pd.len(), 5, "the same, to PagerDuty: {pd:?}");
    let silenced: Vec<_> = h.events().await.into_iter().filter(|e| !e.silenced_by.is_empty()).collect();
    assert_eq!(silenced.len(), 1);
    assert_eq!(
        (silenced[0].check.as_str(), silenced[0].silenced_by.as_slice()),
        ("api-new", ["maintenance:nightly".to_owned()].as_slice())
    );
}
