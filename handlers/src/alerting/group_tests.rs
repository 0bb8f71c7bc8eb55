//! Grouped notifications (issue 15, "Storm") on both backends, through the
//! real pipeline: batcher, gate, outbox, sender, and the real Slack notifier
//! posting to a local receiver that records every request.

use std::sync::Arc;

use protocol::definition::handler::parse_handler;
use protocol::{CheckResult, Status};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::{Alerting, AlertingConfig, OutboxSender, SenderPolicy};
use crate::notify::Notifiers;
use crate::notify::receiver::{Receiver, Reply};
use crate::store::testing::{at, on_both_backends, outbox_rows};
use crate::store::{Store, StoreConfig};

on_both_backends!(
    a_storm_is_one_message_and_one_grouped_resolve,
    a_group_waiting_in_the_outbox_survives_a_restart,
    two_senders_on_one_store_send_a_group_once,
);

const CHECKS: usize = 50;

/// A result of `check` on `eu` for the slot at `slot` seconds, for `slack` only.
fn result(check: &str, slot: i64, status: Status) -> CheckResult {
    let mut result = super::tests::check_result(check, slot, status);
    result.subscription = "eu".into();
    result.policy.handlers = vec!["slack".into()];
    result
}

fn check(n: usize) -> String {
    format!("api-{n:02}")
}

/// A store and a recording Slack whose handler groups by subscription:
/// 10 s, at most 20 lines.
struct Harness {
    config: StoreConfig,
    store: Store,
    notifiers: Arc<Notifiers>,
    slack: Receiver,
    _secrets: TempDir,
}

impl Harness {
    async fn new(config: StoreConfig) -> Self {
        let slack = Receiver::start(vec![Reply::new(200, "ok")]).await;
        let secrets = tempfile::tempdir().unwrap();
        let hook = secrets.path().join("slack");
        std::fs::write(&hook, slack.url("/services/T0/B0/TOKEN")).unwrap();
        let definitions = [parse_handler(json!({"name": "slack", "type": "slack", "webhook_url": {"file": hook},
            "group": {"by": ["subscription"], "wait": "10s", "max": 20}}))
        .unwrap()];
        let store = Store::open(&config).await.unwrap();
        Self { config, store, notifiers: Arc::new(Notifiers::for_tests(&definitions)), slack, _secrets: secrets }
    }

    /// Every check's result at `slot`, decided at `slot` and the next second.
    async fn storm(&self, slot: i64, status: Status) {
        let alerting = Alerting::start(
            Store::open(&self.config).await.unwrap(),
            self.notifiers.clone(),
            AlertingConfig::default(),
        )
        .await
        .unwrap();
        for n in 0..CHECKS {
            let now = at(slot) + chrono::TimeDelta::milliseconds(i64::try_from(n * 20).unwrap());
            alerting.result_at(&result(&check(n), slot, status), now).await.unwrap();
        }
        alerting.close().await;
    }

    /// A sender on a store of its own (a handler process of its own).
    async fn sender(&self) -> OutboxSender<Notifiers> {
        OutboxSender::new(Store::open(&self.config).await.unwrap(), self.notifiers.clone(), SenderPolicy::default())
    }

    /// What Slack got: each message's attachment.
    fn slack(&self) -> Vec<Value> {
        self.slack.received().iter().map(|r| r.json()["attachments"][0].clone()).collect()
    }

    async fn pending(&self) -> usize {
        outbox_rows(&self.store).await.iter().filter(|row| row.state == "pending").count()
    }
}

/// The text of a grouped message: the first 20 checks' lines, then the rest counted.
fn lines(headline: &str, output: &str) -> String {
    let mut lines: Vec<_> = (0..20).map(|n| format!("{headline}: {} on eu: {output}", check(n))).collect();
    lines.push("and 30 more".to_owned());
    lines.join("\n")
}

/// 50 checks of one subscription fail within a second: one message listing
/// 20 and counting the rest, once the first has waited 10 s; their resolves
/// are one message too, never later than 10 s after the first of them.
async fn a_storm_is_one_message_and_one_grouped_resolve(config: StoreConfig) {
    let h = Harness::new(config).await;
    h.storm(10, Status::Critical).await;
    let sender = h.sender().await;
    assert_eq!(sender.send_due(at(19)).await.unwrap(), 0, "the group still waits");
    assert!(h.slack().is_empty());
    assert_eq!(sender.send_due(at(20)).await.unwrap(), 1);
    let slack = h.slack();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert_eq!(slack[0]["title"], "50 checks CRITICAL on subscription eu");
    assert_eq!(slack[0]["text"], lines("CRITICAL", "CRITICAL at 10"));
    assert_eq!(slack[0]["color"], "#a30200");
    assert_eq!(h.pending().await, 0, "every row of the group settled");

    h.storm(60, Status::Ok).await;
    assert_eq!(sender.send_due(at(69)).await.unwrap(), 0);
    assert_eq!(sender.send_due(at(70)).await.unwrap(), 1);
    let slack = h.slack();
    assert_eq!(slack.len(), 2, "{slack:?}");
    assert_eq!(slack[1]["title"], "50 checks RESOLVED on subscription eu");
    assert_eq!(slack[1]["text"], lines("RESOLVED", "OK at 60"));
    assert_eq!(h.pending().await, 0);
    assert_eq!(outbox_rows(&h.store).await.len(), 2 * CHECKS, "one row per event and handler");
}

/// The handler stops after the storm is queued and before its group is
/// ripe; a new one on the same store sends the same single message.
async fn a_group_waiting_in_the_outbox_survives_a_restart(config: StoreConfig) {
    let h = Harness::new(config).await;
    h.storm(10, Status::Critical).await;
    let first = h.sender().await;
    assert_eq!(first.send_due(at(15)).await.unwrap(), 0);
    drop(first);
    assert_eq!(h.pending().await, CHECKS, "the rows wait in the outbox");

    let second = h.sender().await;
    assert_eq!(second.send_due(at(20)).await.unwrap(), 1);
    h.storm(60, Status::Ok).await;
    assert_eq!(second.send_due(at(70)).await.unwrap(), 1);
    let titles: Vec<_> = h.slack().iter().map(|a| a["title"].clone()).collect();
    assert_eq!(titles, ["50 checks CRITICAL on subscription eu", "50 checks RESOLVED on subscription eu"]);
    assert_eq!(h.pending().await, 0);
}

/// Two handlers' senders on one store reach the ripe group at once: one
/// sends it whole, the other finds it taken.
async fn two_senders_on_one_store_send_a_group_once(config: StoreConfig) {
    let h = Harness::new(config).await;
    h.storm(10, Status::Critical).await;
    let (a, b) = (h.sender().await, h.sender().await);
    let (sent_a, sent_b) = tokio::join!(a.send_due(at(20)), b.send_due(at(20)));
    assert_eq!(sent_a.unwrap() + sent_b.unwrap(), 1);
    let slack = h.slack();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert_eq!(slack[0]["title"], "50 checks CRITICAL on subscription eu");
    assert_eq!(h.pending().await, 0);
}
