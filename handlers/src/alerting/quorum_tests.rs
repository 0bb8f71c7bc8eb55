//! Quorum across subscriptions (README "Quorum"), on both backends, through
//! the batcher, the gate and the outbox.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use protocol::definition::Quorum;
use protocol::transport::{DeadLetter, DeadReason};
use protocol::{CheckResult, Keepalive, Status};

use super::tests::{Recorder, check_result, events_in_order, keepalive, send_all, start};
use crate::event::{ACROSS, EventKind};
use crate::store::testing::{at, on_both_backends};
use crate::store::{Store, StoreConfig};

on_both_backends!(
    one_incident_opens_at_the_quorum_and_resolves_below_it,
    a_subscription_whose_runners_are_lost_leaves_the_vote,
    a_subscription_whose_requests_expire_leaves_the_vote,
    a_subscription_whose_dependency_fails_leaves_the_vote,
    a_late_vote_raises_no_problem_but_still_resolves,
    removing_the_quorum_resolves_the_check_wide_incident_and_pages_per_subscription,
);

const SUBSCRIPTIONS: [&str; 3] = ["eu", "us", "ap"];

/// A result of `web` in `subscription`, with a quorum over eu, us and ap.
fn voting(quorum: Quorum, subscription: &str, slot: i64, status: Status) -> CheckResult {
    let mut result = check_result("web", slot, status);
    result.subscription = subscription.to_owned();
    result.request_id = format!("web-{subscription}-{slot}");
    result.policy.quorum = Some(quorum);
    result.policy.subscriptions = SUBSCRIPTIONS.map(str::to_owned).to_vec();
    result
}

/// One slot of results at `slot` seconds, `failing` CRITICAL and the rest
/// OK, from the subscriptions in `reporting`.
async fn slot(alerting: &super::Alerting<Recorder>, quorum: Quorum, slot: i64, reporting: &[&str], failing: &[&str]) {
    for subscription in reporting {
        let status = if failing.contains(subscription) { Status::Critical } else { Status::Ok };
        alerting.result_at(&voting(quorum, subscription, slot, status), at(slot)).await.unwrap();
    }
}

/// (kind, subscription, handlers) of every event logged, in order.
async fn logged(config: &StoreConfig) -> Vec<(EventKind, String, Vec<String>)> {
    events_in_order(config).await.into_iter().map(|e| (e.kind, e.subscription, e.handlers)).collect()
}

/// The check-wide events logged, in order: (kind, when, output).
async fn across(config: &StoreConfig) -> Vec<(EventKind, DateTime<Utc>, String)> {
    let events = events_in_order(config).await.into_iter().filter(|e| e.subscription == ACROSS);
    events.map(|e| (e.kind, e.occurred_at, e.output)).collect()
}

/// What the recorder delivered: (handler, kind, dedup key, output).
fn delivered(recorder: &Recorder) -> Vec<(String, EventKind, String, String)> {
    let delivered = recorder.delivered.lock().unwrap();
    delivered.iter().map(|(h, e)| (h.clone(), e.kind, e.incident_key(), e.output.clone())).collect()
}

/// Failures in one subscription, then two, then one again: one problem and
/// one resolve under `picket/web`; each subscription's own events are
/// logged, queued for nobody.
async fn one_incident_opens_at_the_quorum_and_resolves_below_it(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let quorum = Quorum::Count(2);
    slot(&alerting, quorum, 0, &SUBSCRIPTIONS, &[]).await;
    slot(&alerting, quorum, 10, &SUBSCRIPTIONS, &["eu"]).await;
    slot(&alerting, quorum, 20, &SUBSCRIPTIONS, &["eu", "us"]).await;
    slot(&alerting, quorum, 30, &SUBSCRIPTIONS, &["eu", "us"]).await;
    slot(&alerting, quorum, 40, &SUBSCRIPTIONS, &["eu"]).await;
    slot(&alerting, quorum, 50, &SUBSCRIPTIONS, &["eu"]).await;
    alerting.close().await;

    use EventKind::{Problem, Resolved};
    assert_eq!(
        logged(&config).await,
        [
            (Problem, "eu".to_owned(), vec![]),
            (Problem, "us".to_owned(), vec![]),
            (Problem, ACROSS.to_owned(), vec!["slack".to_owned(), "pd".to_owned()]),
            (Resolved, "us".to_owned(), vec![]),
            // A resolve goes to those told, in name order.
            (Resolved, ACROSS.to_owned(), vec!["pd".to_owned(), "slack".to_owned()]),
        ]
    );
    send_all(&config, &recorder).await;
    let slack: Vec<_> = delivered(&recorder).into_iter().filter(|(h, ..)| h == "slack").collect();
    let problem = "2 of 3 subscriptions failing (eu, us), quorum 2; us: CRITICAL at 20";
    let resolve = "1 of 3 subscriptions failing (eu), quorum 2; us: OK at 40";
    assert_eq!(
        slack,
        [
            ("slack".to_owned(), Problem, "picket/web".to_owned(), problem.to_owned()),
            ("slack".to_owned(), Resolved, "picket/web".to_owned(), resolve.to_owned()),
        ]
    );
    let pd: Vec<_> =
        delivered(&recorder).into_iter().filter(|(h, ..)| h == "pd").map(|(_, k, key, _)| (k, key)).collect();
    assert_eq!(pd, [(Problem, "picket/web".to_owned()), (Resolved, "picket/web".to_owned())]);
    let store = Store::open(&config).await.unwrap();
    for (subscription, failing) in [("eu", true), ("us", false), ("ap", false)] {
        let state = store.state("web", subscription).await.unwrap().unwrap();
        assert_eq!(state.notified.is_some(), failing, "{subscription}'s own state stays");
    }
    store.close().await;
}

/// ap's state is CRITICAL when its only runner is lost: it leaves the vote,
/// so eu failing alone is 1 of 2 (below a quorum of 2), and eu and us
/// failing are 2 of 2 and page.
async fn a_subscription_whose_runners_are_lost_leaves_the_vote(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let quorum = Quorum::Count(2);
    let serving = |runner: &str, subscription: &str| Keepalive {
        subscriptions: vec![subscription.to_owned()],
        ..keepalive(runner)
    };
    for (runner, subscription) in [("r-eu", "eu"), ("r-us", "us"), ("r-ap", "ap")] {
        alerting.keepalive_at(&serving(runner, subscription), at(0)).await.unwrap();
    }
    slot(&alerting, quorum, 0, &SUBSCRIPTIONS, &["ap"]).await;
    for t in [10, 20, 30] {
        alerting.keepalive_at(&serving("r-eu", "eu"), at(t)).await.unwrap();
        alerting.keepalive_at(&serving("r-us", "us"), at(t)).await.unwrap();
    }
    alerting.tick(at(35)).await.unwrap();
    slot(&alerting, quorum, 40, &["eu", "us"], &["eu"]).await;
    slot(&alerting, quorum, 50, &["eu", "us"], &["eu", "us"]).await;
    alerting.close().await;

    assert_eq!(
        across(&config).await,
        [(
            EventKind::Problem,
            at(50),
            "2 of 2 subscriptions failing (eu, us), ap cannot see, quorum 2; us: CRITICAL at 50".to_owned()
        )]
    );
}

/// A subscription whose requests expire (`missed`) cannot see either: with
/// `"100%"`, eu and us failing page once ap's requests expire.
async fn a_subscription_whose_requests_expire_leaves_the_vote(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let quorum = Quorum::Percent(100);
    slot(&alerting, quorum, 0, &SUBSCRIPTIONS, &["eu", "us"]).await;
    let expired = DeadLetter {
        reason: DeadReason::Expired,
        check: Some("web".into()),
        subscription: Some("ap".into()),
        request_id: Some("web-ap-10".into()),
    };
    alerting.dead_letter_at(&expired, at(15)).await.unwrap();
    slot(&alerting, quorum, 20, &["eu", "us"], &["eu", "us"]).await;
    alerting.close().await;

    let told: Vec<_> = across(&config).await.into_iter().map(|(kind, at, _)| (kind, at)).collect();
    assert_eq!(told, [(EventKind::Problem, at(20))]);
}

/// With `depends_on`, a subscription where the canary fails leaves the vote
/// too: eu failing behind its failed canary is not a vote, so eu and us
/// failing are 1 of 2 live ones; ap failing as well makes 2 of 2.
async fn a_subscription_whose_dependency_fails_leaves_the_vote(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let quorum = Quorum::Count(2);
    let mut canary = check_result("canary", 0, Status::Critical);
    canary.subscription = "eu".into();
    alerting.result_at(&canary, at(0)).await.unwrap();
    let dependent = |subscription: &str, slot: i64, status: Status| {
        let mut result = voting(quorum, subscription, slot, status);
        result.policy.depends_on = vec!["canary".into()];
        result
    };
    for subscription in ["eu", "us"] {
        alerting.result_at(&dependent(subscription, 10, Status::Critical), at(10)).await.unwrap();
    }
    alerting.result_at(&dependent("ap", 20, Status::Critical), at(20)).await.unwrap();
    alerting.close().await;

    assert_eq!(
        across(&config).await,
        [(
            EventKind::Problem,
            at(20),
            "2 of 2 subscriptions failing (us, ap), eu cannot see, quorum 2; ap: CRITICAL at 20".to_owned()
        )]
    );
}

/// Lateness applies to the vote as to a subscription: a quorum reached in a
/// drained backlog pages only from the next fresh result, and a backlog
/// that ends the incident resolves it.
async fn a_late_vote_raises_no_problem_but_still_resolves(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let quorum = Quorum::Count(2);
    let every_10s = |subscription: &str, slot: i64, status: Status| {
        let mut result = voting(quorum, subscription, slot, status);
        result.policy.period_ms = Some(10_000);
        result
    };
    let drained = at(300);
    for subscription in ["eu", "us"] {
        alerting.result_at(&every_10s(subscription, 0, Status::Critical), drained).await.unwrap();
    }
    assert_eq!(across(&config).await, [], "a late vote");
    alerting.result_at(&every_10s("eu", 290, Status::Critical), drained).await.unwrap();
    alerting.result_at(&every_10s("us", 10, Status::Ok), drained).await.unwrap();
    alerting.result_at(&every_10s("us", 290, Status::Critical), drained).await.unwrap();
    alerting.result_at(&every_10s("us", 300, Status::Ok), at(600)).await.unwrap();
    alerting.close().await;

    let told: Vec<_> = across(&config).await.into_iter().map(|(kind, at, _)| (kind, at)).collect();
    assert_eq!(told, [(EventKind::Problem, drained), (EventKind::Resolved, at(600))], "fresh problem, late resolve");
}

/// The quorum removed from the definition while its incident is open: the
/// first result without it resolves `picket/web` (nothing is left open),
/// and the subscriptions still failing page on their own from then on.
async fn removing_the_quorum_resolves_the_check_wide_incident_and_pages_per_subscription(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    let quorum = Quorum::Count(2);
    slot(&alerting, quorum, 0, &SUBSCRIPTIONS, &[]).await;
    slot(&alerting, quorum, 10, &SUBSCRIPTIONS, &["eu", "us"]).await;
    for (t, subscription, status) in
        [(20, "eu", Status::Critical), (20, "us", Status::Critical), (20, "ap", Status::Ok)]
    {
        let mut result = voting(quorum, subscription, t, status);
        result.policy.quorum = None;
        alerting.result_at(&result, at(t)).await.unwrap();
    }
    alerting.close().await;
    send_all(&config, &recorder).await;

    use EventKind::{Problem, Resolved};
    let slack: Vec<_> =
        delivered(&recorder).into_iter().filter(|(h, ..)| h == "slack").map(|(_, kind, key, _)| (kind, key)).collect();
    assert_eq!(
        slack.iter().filter(|(_, key)| key == "picket/web").collect::<Vec<_>>(),
        [&(Problem, "picket/web".to_owned()), &(Resolved, "picket/web".to_owned())],
        "{slack:?}"
    );
    let own: Vec<_> = slack.iter().filter(|(_, key)| key != "picket/web").collect();
    assert_eq!(own.len(), 2, "eu and us page on their own once the quorum is gone: {slack:?}");
    assert!(own.iter().all(|(kind, _)| *kind == Problem), "{slack:?}");
    let resolve = across(&config).await.into_iter().find(|(kind, ..)| *kind == Resolved).expect("a check-wide resolve");
    assert_eq!(resolve.1, at(20));
    assert!(resolve.2.starts_with("the quorum was removed from the check"), "{}", resolve.2);
}
