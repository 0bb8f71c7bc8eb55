//! Grouped notifications (issue 15, "Storm") on both backends, through the
//! real pipeline: batcher, gate, outbox, sender, and the real Slack and
//! PagerDuty notifiers posting to local receivers that record every request.

use protocol::{CheckResult, Status};
use serde_json::{Value, json};

use super::{Alerting, AlertingConfig, OutboxSender, SenderPolicy};
use crate::notify::Notifiers;
use crate::store::testing::{at, on_both_backends, outbox_rows};
use crate::store::{Store, StoreConfig};

on_both_backends!(
    a_storm_is_one_message_and_one_grouped_resolve,
    a_group_waiting_in_the_outbox_survives_a_restart,
    two_senders_on_one_store_send_a_group_once,
    a_group_within_the_storm_threshold_pages_each_incident,
    a_storm_larger_than_a_sender_round_is_still_one_message,
);

const CHECKS: usize = 50;

/// A result of `check` on `eu` for the slot at `slot` seconds, for `slack` and `pd`.
fn result(check: &str, slot: i64, status: Status) -> CheckResult {
    CheckResult { subscription: "eu".into(), ..super::tests::check_result(check, slot, status) }
}

fn check(n: usize) -> String {
    format!("api-{n:02}")
}

/// The silence tests' harness, its Slack handler grouping by subscription
/// (10 s, at most 20 lines) and its PagerDuty grouping the same way with a
/// storm threshold of 25.
struct Harness(super::silence_tests::Harness);

impl Harness {
    async fn new(config: StoreConfig) -> Self {
        let group = json!({"group": {"by": ["subscription"], "wait": "10s", "max": 20}});
        let mut storm = group.clone();
        storm["storm"] = json!(25);
        Self(super::silence_tests::Harness::with(config, &group, &storm).await)
    }

    /// Every check's result at `slot`, decided at `slot` and the next second.
    async fn storm(&self, slot: i64, status: Status) {
        self.results(CHECKS, slot, status).await;
    }

    /// The first `checks` checks' results at `slot`, decided 20 ms apart.
    async fn results(&self, checks: usize, slot: i64, status: Status) {
        let alerting = Alerting::start(
            Store::open(&self.0.config).await.unwrap(),
            self.0.notifiers.clone(),
            AlertingConfig::default(),
        )
        .await
        .unwrap();
        for n in 0..checks {
            let now = at(slot) + chrono::TimeDelta::milliseconds(i64::try_from(n * 20).unwrap());
            alerting.result_at(&result(&check(n), slot, status), now).await.unwrap();
        }
        alerting.close().await;
    }

    /// A sender on a store of its own (a handler process of its own).
    async fn sender(&self) -> OutboxSender<Notifiers> {
        OutboxSender::new(Store::open(&self.0.config).await.unwrap(), self.0.notifiers.clone(), SenderPolicy::default())
    }

    /// What Slack got: each message's attachment.
    fn slack(&self) -> Vec<Value> {
        self.0.slack.received().iter().map(|r| r.json()["attachments"][0].clone()).collect()
    }

    /// What PagerDuty got: `trigger <dedup key> <summary>` or `resolve <dedup key>`.
    fn pd(&self) -> Vec<String> {
        self.0
            .pd
            .received()
            .iter()
            .map(|r| {
                let body = r.json();
                let (action, key) = (body["event_action"].as_str().unwrap(), body["dedup_key"].as_str().unwrap());
                match body["payload"]["summary"].as_str() {
                    Some(summary) => format!("{action} {key} {summary}"),
                    None => format!("{action} {key}"),
                }
            })
            .collect()
    }

    /// The dedup key of the storm summary: from the first problem's event id.
    async fn storm_key(&self) -> String {
        let events = self.0.store.recent_events(1000).await.unwrap();
        let first = events.iter().rev().find(|e| e.check == check(0)).unwrap();
        format!("picket/storm/{}", first.id)
    }

    async fn pending(&self) -> usize {
        outbox_rows(&self.0.store).await.iter().filter(|row| row.state == "pending").count()
    }
}

/// The text of a grouped message: the first 20 checks' lines, then the rest counted.
fn lines(headline: &str, output: &str) -> String {
    let mut lines: Vec<_> = (0..20).map(|n| format!("{headline}: {} on eu: {output}", check(n))).collect();
    lines.push("and 30 more".to_owned());
    lines.join("\n")
}

/// 50 checks of one subscription fail within a second: one Slack message
/// listing 20 and counting the rest, once the first has waited 10 s, and one
/// PagerDuty summary incident (more than 25); their resolves are one Slack
/// message too, and the last of them resolves the summary.
async fn a_storm_is_one_message_and_one_grouped_resolve(config: StoreConfig) {
    let h = Harness::new(config).await;
    h.storm(10, Status::Critical).await;
    let sender = h.sender().await;
    assert_eq!(sender.send_due(at(19)).await.unwrap(), 0, "the group still waits");
    assert!(h.slack().is_empty() && h.pd().is_empty());
    sender.send_due(at(20)).await.unwrap();
    let slack = h.slack();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert_eq!(slack[0]["title"], "50 checks CRITICAL on subscription eu");
    assert_eq!(slack[0]["text"], lines("CRITICAL", "CRITICAL at 10"));
    assert_eq!(slack[0]["color"], "#a30200");
    let storm = h.storm_key().await;
    let trigger = format!("trigger {storm} 50 checks CRITICAL on subscription eu");
    assert_eq!(h.pd(), std::slice::from_ref(&trigger));
    assert_eq!(h.pending().await, 0, "every row of the group settled");

    h.storm(60, Status::Ok).await;
    assert_eq!(sender.send_due(at(69)).await.unwrap(), 0);
    sender.send_due(at(70)).await.unwrap();
    sender.send_due(at(71)).await.unwrap();
    let slack = h.slack();
    assert_eq!(slack.len(), 2, "{slack:?}");
    assert_eq!(slack[1]["title"], "50 checks RESOLVED on subscription eu");
    assert_eq!(slack[1]["text"], lines("RESOLVED", "OK at 60"));
    assert_eq!(h.pd(), [trigger, format!("resolve {storm}")]);
    assert_eq!(h.pending().await, 0);
}

/// The handler stops after the storm is queued and before its group is
/// ripe; a new one on the same store sends the same single messages. That
/// one stops while the summary is open; the next one still resolves it.
async fn a_group_waiting_in_the_outbox_survives_a_restart(config: StoreConfig) {
    let h = Harness::new(config).await;
    h.storm(10, Status::Critical).await;
    let first = h.sender().await;
    assert_eq!(first.send_due(at(15)).await.unwrap(), 0);
    drop(first);
    assert_eq!(h.pending().await, 2 * CHECKS, "the rows wait in the outbox");

    h.sender().await.send_due(at(20)).await.unwrap();
    h.storm(60, Status::Ok).await;
    let third = h.sender().await;
    third.send_due(at(70)).await.unwrap();
    third.send_due(at(71)).await.unwrap();
    let titles: Vec<_> = h.slack().iter().map(|a| a["title"].clone()).collect();
    assert_eq!(titles, ["50 checks CRITICAL on subscription eu", "50 checks RESOLVED on subscription eu"]);
    let storm = h.storm_key().await;
    assert_eq!(h.pd(), [format!("trigger {storm} 50 checks CRITICAL on subscription eu"), format!("resolve {storm}")]);
    assert_eq!(h.pending().await, 0);
}

/// Two handlers' senders on one store reach the ripe groups at once: one
/// sends each whole, the other finds it taken.
async fn two_senders_on_one_store_send_a_group_once(config: StoreConfig) {
    let h = Harness::new(config).await;
    h.storm(10, Status::Critical).await;
    let (a, b) = (h.sender().await, h.sender().await);
    let (sent_a, sent_b) = tokio::join!(a.send_due(at(20)), b.send_due(at(20)));
    assert_eq!(sent_a.unwrap() + sent_b.unwrap(), 2, "one Slack message, one summary incident");
    let slack = h.slack();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert_eq!(slack[0]["title"], "50 checks CRITICAL on subscription eu");
    assert_eq!(h.pd().len(), 1, "{:?}", h.pd());
    assert_eq!(h.pending().await, 0);
}

/// Ten problems are no storm for a threshold of 25: PagerDuty gets ten
/// incidents and their ten resolves; Slack still one message each way.
async fn a_group_within_the_storm_threshold_pages_each_incident(config: StoreConfig) {
    let h = Harness::new(config).await;
    h.results(10, 10, Status::Critical).await;
    let sender = h.sender().await;
    sender.send_due(at(20)).await.unwrap();
    h.results(10, 60, Status::Ok).await;
    sender.send_due(at(70)).await.unwrap();
    let titles: Vec<_> = h.slack().iter().map(|a| a["title"].clone()).collect();
    assert_eq!(titles, ["10 checks CRITICAL on subscription eu", "10 checks RESOLVED on subscription eu"]);
    let mut expected: Vec<_> =
        (0..10).map(|n| format!("trigger picket/eu/{0} CRITICAL: {0} on eu: CRITICAL at 10", check(n))).collect();
    expected.extend((0..10).map(|n| format!("resolve picket/eu/{}", check(n))));
    assert_eq!(h.pd(), expected);
    assert_eq!(h.pending().await, 0);
}

/// 300 checks fail: far more rows than one sender round reads (100), and
/// still one Slack message and one summary incident.
async fn a_storm_larger_than_a_sender_round_is_still_one_message(config: StoreConfig) {
    let h = Harness::new(config).await;
    h.results(300, 10, Status::Critical).await;
    let sender = h.sender().await;
    sender.send_due(at(30)).await.unwrap();
    let titles: Vec<_> = h.slack().iter().map(|a| a["title"].clone()).collect();
    assert_eq!(titles, ["300 checks CRITICAL on subscription eu"]);
    let storm = h.storm_key().await;
    assert_eq!(h.pd(), [format!("trigger {storm} 300 checks CRITICAL on subscription eu")]);
    assert_eq!(h.pending().await, 0);
}
