//! Dependencies and blind subscriptions hold problems (README
//! "Dependencies"), on both backends, through the batcher, the gate, the
//! tick's release and the outbox.

use std::sync::Arc;

use protocol::{CheckResult, Status};

use super::tests::{Recorder, check_result, events_in_order, keepalive, send_all, start};
use crate::event::EventKind;
use crate::store::StoreConfig;
use crate::store::testing::{at, on_both_backends};

on_both_backends!(
    a_problem_is_held_while_its_dependency_fails_and_told_when_it_recovers,
    a_held_problem_that_recovers_is_never_told,
    a_subscription_whose_runners_are_lost_holds_its_problems,
);

/// A result of `api`, which depends on `canary`.
fn api(slot: i64, status: Status) -> CheckResult {
    let mut result = check_result("api", slot, status);
    result.policy.depends_on = vec!["canary".into()];
    result
}

fn canary(slot: i64, status: Status) -> CheckResult {
    check_result("canary", slot, status)
}

/// What slack got: (check, kind, output).
fn slack(recorder: &Recorder) -> Vec<(String, EventKind, String)> {
    let delivered = recorder.delivered.lock().unwrap();
    delivered
        .iter()
        .filter(|(handler, _)| handler == "slack")
        .map(|(_, e)| (e.check.clone(), e.kind, e.output.clone()))
        .collect()
}

async fn a_problem_is_held_while_its_dependency_fails_and_told_when_it_recovers(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    alerting.result_at(&canary(0, Status::Ok), at(0)).await.unwrap();
    alerting.result_at(&api(0, Status::Ok), at(0)).await.unwrap();
    alerting.result_at(&canary(10, Status::Critical), at(10)).await.unwrap();
    alerting.result_at(&api(20, Status::Critical), at(20)).await.unwrap();
    alerting.tick(at(21)).await.unwrap();
    send_all(&config, &recorder).await;
    let told = |recorder: &Recorder| slack(recorder).into_iter().map(|(c, k, _)| (c, k)).collect::<Vec<_>>();
    assert_eq!(told(&recorder), [("canary".to_owned(), EventKind::Problem)], "api is held");
    let held = events_in_order(&config).await.into_iter().find(|e| e.check == "api").unwrap();
    assert_eq!(
        (held.kind, held.handlers.len(), held.silenced_by),
        (EventKind::Problem, 0, vec!["depends_on:canary".into()])
    );

    alerting.result_at(&canary(30, Status::Ok), at(30)).await.unwrap();
    alerting.result_at(&api(30, Status::Critical), at(30)).await.unwrap();
    alerting.tick(at(31)).await.unwrap();
    alerting.tick(at(32)).await.unwrap();
    alerting.result_at(&api(40, Status::Ok), at(40)).await.unwrap();
    alerting.close().await;
    send_all(&config, &recorder).await;
    let slack = slack(&recorder);
    let kinds: Vec<_> = slack.iter().map(|(c, k, _)| (c.as_str(), *k)).collect();
    use EventKind::{Problem, Resolved};
    assert_eq!(
        kinds,
        [("canary", Problem), ("canary", Resolved), ("api", Problem), ("api", Resolved)],
        "told once when canary recovered, and resolved: {slack:?}"
    );
    assert_eq!(slack[2].2, "canary recovered; still CRITICAL: CRITICAL at 30");
}

/// Held while the canary fails, then OK before the canary recovers: its
/// resolve goes to the handlers told of it (none), and nothing is released.
async fn a_held_problem_that_recovers_is_never_told(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    alerting.result_at(&canary(10, Status::Critical), at(10)).await.unwrap();
    alerting.result_at(&api(20, Status::Critical), at(20)).await.unwrap();
    alerting.result_at(&api(30, Status::Ok), at(30)).await.unwrap();
    alerting.result_at(&canary(40, Status::Ok), at(40)).await.unwrap();
    alerting.tick(at(41)).await.unwrap();
    alerting.close().await;
    send_all(&config, &recorder).await;
    let checks: Vec<_> = slack(&recorder).into_iter().map(|(c, k, _)| (c, k)).collect();
    assert_eq!(checks, [("canary".to_owned(), EventKind::Problem), ("canary".to_owned(), EventKind::Resolved)]);
    let api: Vec<_> = events_in_order(&config).await.into_iter().filter(|e| e.check == "api").map(|e| e.kind).collect();
    assert_eq!(api, [EventKind::Problem, EventKind::Resolved], "both logged");
}

/// The only runner of `default` is lost: a problem there is held, by every
/// handler sharing the store, and told once the runner is back while it
/// still fails.
async fn a_subscription_whose_runners_are_lost_holds_its_problems(config: StoreConfig) {
    let recorder = Arc::new(Recorder::default());
    let alerting = start(&config, &recorder).await;
    alerting.keepalive_at(&keepalive("r1"), at(0)).await.unwrap();
    alerting.tick(at(35)).await.unwrap();
    alerting.result_at(&check_result("web", 40, Status::Critical), at(40)).await.unwrap();
    alerting.tick(at(41)).await.unwrap();
    let web = |config: &StoreConfig| {
        let config = config.clone();
        async move {
            events_in_order(&config)
                .await
                .into_iter()
                .filter(|e| e.check == "web")
                .map(|e| (e.kind, e.handlers.len(), e.silenced_by))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(web(&config).await, [(EventKind::Problem, 0, vec!["cannot_see:default".to_owned()])]);
    // A second handler on the store, hearing no keepalives, reads the lost
    // runner from the store and releases nothing either.
    let standby = start(&config, &recorder).await;
    standby.tick(at(45)).await.unwrap();
    standby.close().await;
    assert_eq!(web(&config).await.len(), 1, "released by a handler that cannot know");
    alerting.keepalive_at(&keepalive("r1"), at(50)).await.unwrap();
    alerting.tick(at(51)).await.unwrap();
    alerting.close().await;
    let logged = web(&config).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!((logged[1].0, logged[1].1), (EventKind::Problem, 2), "released to slack and pd");
    send_all(&config, &recorder).await;
    let told: Vec<_> = slack(&recorder).into_iter().filter(|(c, ..)| c == "web").map(|(_, k, o)| (k, o)).collect();
    assert_eq!(
        told,
        [(EventKind::Problem, "subscription default sees again; still CRITICAL: CRITICAL at 40".to_owned())]
    );
}
