//! Every store test runs against SQLite (a temporary file) and PostgreSQL (a
//! schema of its own on the machine's server).

use chrono::TimeDelta;
use protocol::Status;

use super::testing::{OutboxRow, at, count, on_both_backends, outbox_rows, result, schema_exists};
use super::{Backend, EventQuery, Settlement, StateQuery, Store, StoreConfig};
use crate::event::{Event, EventKind};
use crate::silence::{Expiry, Silence, SilenceState};
use crate::state::{Arrival, CheckState};

fn event(id: &str, check: &str, kind: EventKind, handlers: &[&str]) -> Event {
    Event {
        id: id.into(),
        kind,
        check: check.into(),
        subscription: "default".into(),
        runner: "r1".into(),
        status: Status::Critical,
        previous: None,
        output: "down".into(),
        metrics: Default::default(),
        labels: Default::default(),
        occurred_at: at(0),
        handlers: handlers.iter().map(|h| (*h).to_owned()).collect(),
        silenced_by: Vec::new(),
    }
}

on_both_backends!(
    state_results_and_events_commit_together,
    an_uncommitted_batch_leaves_nothing,
    reopening_keeps_everything_and_migrates_once,
    results_are_pruned_per_check,
    events_are_pruned_by_age,
    outbox_delivers_an_incident_in_order,
    a_claim_is_exclusive_until_it_expires,
    settled_rows_record_attempts_and_prune,
    replayed_events_queue_nothing_twice,
    lost_runners_are_remembered,
    runners_are_seen_forward_and_marked_once,
    states_are_listed_in_order,
    silences_are_listed_by_state_and_expired_once,
    told_and_held_rows_follow_the_incident,
    states_carry_their_newest_result_and_open_problem,
    events_are_filtered_and_paged_newest_first,
    notifications_of_incidents_and_the_oldest_pending,
    the_upgrade_remembers_who_was_told_of_open_incidents,
);

async fn state_results_and_events_commit_together(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut state = CheckState::default();
    let crit = result("web", 10, Status::Critical);
    let events = state.apply(&crit, at(10), Arrival::Fresh);
    let mut batch = store.begin().await.unwrap();
    assert_eq!(batch.state("web", "default").await.unwrap(), None);
    batch.put_state("web", "default", &state, at(10)).await.unwrap();
    batch.add_result(&crit, at(10)).await.unwrap();
    for e in &events {
        batch.add_event(e).await.unwrap();
    }
    batch.commit().await.unwrap();

    assert_eq!(store.state("web", "default").await.unwrap(), Some(state));
    assert_eq!(store.recent_results("web", "default", 10).await.unwrap(), vec![crit]);
    assert_eq!(store.recent_events(10).await.unwrap(), events);
    assert_eq!(store.outbox_pending().await.unwrap(), 1);
    store.close().await;
}

async fn an_uncommitted_batch_leaves_nothing(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    batch.put_state("web", "default", &CheckState::default(), at(0)).await.unwrap();
    batch.add_result(&result("web", 0, Status::Ok), at(0)).await.unwrap();
    batch.add_event(&event("e1", "web", EventKind::Problem, &["ops"])).await.unwrap();
    batch.count_run(&result("web", 0, Status::Ok)).await.unwrap();
    drop(batch);
    assert_eq!(store.state("web", "default").await.unwrap(), None);
    for table in ["check_state", "results", "events", "outbox", "latency_steps"] {
        assert_eq!(count(&store, table).await, 0, "{table}");
    }
    store.close().await;
}

async fn reopening_keeps_everything_and_migrates_once(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    batch.add_event(&event("e1", "web", EventKind::Problem, &["ops"])).await.unwrap();
    batch.commit().await.unwrap();
    store.close().await;

    let store = Store::open(&config).await.unwrap();
    assert_eq!(store.recent_events(10).await.unwrap().len(), 1);
    assert_eq!(count(&store, "_sqlx_migrations").await, 7);
    if store.backend() == Backend::Postgres {
        assert!(schema_exists(config.schema.as_deref().unwrap()).await, "created at first open");
    }
    store.close().await;
}

async fn events_are_pruned_by_age(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    for (id, second) in [("old", 10), ("edge", 50), ("new", 100)] {
        let event = Event { occurred_at: at(second), ..event(id, "web", EventKind::Problem, &[]) };
        batch.add_event(&event).await.unwrap();
    }
    batch.commit().await.unwrap();
    assert_eq!(store.prune_events(at(50)).await.unwrap(), 1);
    let kept: Vec<String> = store.recent_events(10).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(kept, ["new", "edge"]);
    store.close().await;
}

async fn results_are_pruned_per_check(config: StoreConfig) {
    let store = Store::open(&StoreConfig { keep_results: 3, ..config }).await.unwrap();
    for slot in 0..5 {
        let mut batch = store.begin().await.unwrap();
        batch.add_result(&result("web", slot, Status::Ok), at(slot)).await.unwrap();
        batch.add_result(&result("dns", slot, Status::Ok), at(slot)).await.unwrap();
        batch.commit().await.unwrap();
    }
    let web = store.recent_results("web", "default", 10).await.unwrap();
    assert_eq!(web.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["web-4", "web-3", "web-2"]);
    assert_eq!(store.recent_results("dns", "default", 10).await.unwrap().len(), 3);
    store.close().await;
}

async fn outbox_delivers_an_incident_in_order(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    batch.add_event(&event("p1", "web", EventKind::Problem, &["slack", "pd"])).await.unwrap();
    batch.add_event(&event("r1", "web", EventKind::Resolved, &["slack", "pd"])).await.unwrap();
    batch.add_event(&event("p2", "dns", EventKind::Problem, &["pd"])).await.unwrap();
    batch.commit().await.unwrap();

    let due = store.due_outbox(at(0), 100).await.unwrap();
    let ids = |items: &[super::OutboxItem]| {
        items.iter().map(|i| (i.event().unwrap().id, i.handler.clone())).collect::<Vec<_>>()
    };
    let pair = |id: &str, handler: &str| (id.to_owned(), handler.to_owned());
    assert_eq!(ids(&due), [pair("p1", "slack"), pair("p1", "pd"), pair("p2", "pd")]);

    // Slack took the problem; PagerDuty failed and retries later: its
    // resolve must wait behind its problem, Slack's need not.
    store.settle(due[0].seq, &Settlement::Sent, at(1)).await.unwrap();
    let retry = Settlement::Retry { error: "503".into(), at: at(60) };
    store.settle(due[1].seq, &retry, at(1)).await.unwrap();
    store.settle(due[2].seq, &Settlement::Sent, at(1)).await.unwrap();
    assert_eq!(ids(&store.due_outbox(at(2), 100).await.unwrap()), [pair("r1", "slack")]);
    assert_eq!(ids(&store.due_outbox(at(60), 100).await.unwrap()), [pair("p1", "pd"), pair("r1", "slack")]);
    store.close().await;
}

async fn a_claim_is_exclusive_until_it_expires(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    batch.add_event(&event("p1", "web", EventKind::Problem, &["ops"])).await.unwrap();
    batch.commit().await.unwrap();

    let mine = store.due_outbox(at(0), 10).await.unwrap().remove(0);
    let theirs = mine.clone();
    assert!(store.claim(&mine, at(60)).await.unwrap());
    assert!(!store.claim(&theirs, at(60)).await.unwrap(), "a second sender loses the race");
    assert!(store.due_outbox(at(59), 10).await.unwrap().is_empty(), "leased");
    let expired = store.due_outbox(at(60), 10).await.unwrap();
    assert_eq!(expired.len(), 1, "a sender that died mid-delivery is retried after its lease");
    assert!(store.claim(&expired[0], at(120)).await.unwrap());
    store.close().await;
}

async fn settled_rows_record_attempts_and_prune(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    batch.add_event(&event("p1", "web", EventKind::Problem, &["a", "b"])).await.unwrap();
    batch.commit().await.unwrap();
    let due = store.due_outbox(at(0), 10).await.unwrap();
    store.settle(due[0].seq, &Settlement::Retry { error: "timeout".into(), at: at(5) }, at(0)).await.unwrap();
    store.settle(due[1].seq, &Settlement::Dropped("400 invalid_payload".into()), at(0)).await.unwrap();
    let again = store.due_outbox(at(5), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    store.settle(again[0].seq, &Settlement::Sent, at(6)).await.unwrap();

    let row = |handler: &str, state: &str, attempts, last_error: Option<&str>| OutboxRow {
        event_id: "p1".into(),
        handler: handler.into(),
        state: state.into(),
        attempts,
        last_error: last_error.map(str::to_owned),
    };
    assert_eq!(
        outbox_rows(&store).await,
        [row("a", "sent", 2, None), row("b", "dropped", 1, Some("400 invalid_payload"))]
    );
    assert_eq!(store.outbox_pending().await.unwrap(), 0);
    assert_eq!(store.prune_outbox(at(6)).await.unwrap(), 1, "rows done before the cutoff only");
    assert_eq!(store.prune_outbox(at(6) + TimeDelta::milliseconds(1)).await.unwrap(), 1);
    assert!(outbox_rows(&store).await.is_empty());
    store.close().await;
}

async fn replayed_events_queue_nothing_twice(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    for _ in 0..2 {
        let mut batch = store.begin().await.unwrap();
        batch.add_event(&event("p1", "web", EventKind::Problem, &["ops"])).await.unwrap();
        batch.commit().await.unwrap();
    }
    assert_eq!(count(&store, "events").await, 1);
    assert_eq!(store.outbox_pending().await.unwrap(), 1);
    store.close().await;
}

async fn lost_runners_are_remembered(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let lost = |runner: &str| super::LostRunner {
        runner: runner.into(),
        subscriptions: "default,edge".into(),
        interval_secs: 10,
        since: at(30),
    };
    let mut batch = store.begin().await.unwrap();
    batch.mark_runner_lost(&lost("r1")).await.unwrap();
    batch.mark_runner_lost(&lost("r2")).await.unwrap();
    batch.commit().await.unwrap();
    let mut batch = store.begin().await.unwrap();
    batch.clear_runner_lost("r1").await.unwrap();
    batch.commit().await.unwrap();
    assert_eq!(store.lost_runners().await.unwrap(), [lost("r2")]);
    store.close().await;
}

#[tokio::test]
async fn bad_urls_and_schemas_are_config_errors() {
    let err = |config: StoreConfig| async move { Store::open(&config).await.err().unwrap().to_string() };
    assert!(err(StoreConfig::new("mysql://x/y")).await.contains("sqlite:// or postgres://"));
    assert!(err(StoreConfig::new("sqlite::memory:")).await.contains("needs a file"));
    let quoted = StoreConfig::new("postgres://postgres@127.0.0.1:5432/test").with_schema("a\"; drop");
    assert!(err(quoted).await.contains("lowercase"));
}

#[tokio::test]
async fn schemas_keep_installations_apart() {
    super::testing::with_db(Backend::Postgres, |a| async move {
        super::testing::with_db(Backend::Postgres, |b| async move {
            let store_a = Store::open(&a).await.unwrap();
            let store_b = Store::open(&b).await.unwrap();
            let mut batch = store_a.begin().await.unwrap();
            batch.add_event(&event("p1", "web", EventKind::Problem, &["ops"])).await.unwrap();
            batch.commit().await.unwrap();
            assert_eq!(store_a.recent_events(10).await.unwrap().len(), 1);
            assert!(store_b.recent_events(10).await.unwrap().is_empty());
            store_a.close().await;
            store_b.close().await;
        })
        .await;
    })
    .await;
}

/// Two handlers writing one runner: its last keepalive never moves back, and
/// the lost and back marks succeed once each.
async fn runners_are_seen_forward_and_marked_once(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let seen = |secs: i64| super::SeenRunner {
        runner: "r1".into(),
        subscriptions: "default".into(),
        interval_secs: 2,
        last_seen: at(secs),
    };
    let lost =
        super::LostRunner { runner: "r1".into(), subscriptions: "default".into(), interval_secs: 2, since: at(20) };
    let mut batch = store.begin().await.unwrap();
    batch.runner_seen(&seen(10)).await.unwrap();
    batch.runner_seen(&seen(5)).await.unwrap();
    assert!(batch.mark_runner_lost(&lost).await.unwrap());
    assert!(!batch.mark_runner_lost(&lost).await.unwrap(), "marked twice");
    batch.commit().await.unwrap();
    assert_eq!(store.runner_last_seen("r1").await.unwrap(), Some(at(10)));
    assert_eq!(store.runners().await.unwrap(), [seen(10)]);
    let mut batch = store.begin().await.unwrap();
    assert!(batch.clear_runner_lost("r1").await.unwrap());
    assert!(!batch.clear_runner_lost("r1").await.unwrap(), "cleared twice");
    batch.forget_runner("r1").await.unwrap();
    batch.commit().await.unwrap();
    assert_eq!(store.runner_last_seen("r1").await.unwrap(), None);
    store.close().await;
}

async fn states_are_listed_in_order(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    assert!(store.states(StateQuery::default()).await.unwrap().is_empty());
    let mut batch = store.begin().await.unwrap();
    let mut states = Vec::new();
    for (check, status) in [("web", Status::Critical), ("api", Status::Ok)] {
        let mut state = CheckState::default();
        state.apply(&result(check, 10, status), at(10), Arrival::Fresh);
        batch.put_state(check, "default", &state, at(10)).await.unwrap();
        states.push((check, state));
    }
    batch.commit().await.unwrap();
    let listed = store.states(StateQuery::default()).await.unwrap();
    let names: Vec<_> = listed.iter().map(|row| (row.check.as_str(), row.subscription.as_str())).collect();
    assert_eq!(names, [("api", "default"), ("web", "default")]);
    assert_eq!(listed[0].state, states[1].1);
    assert_eq!(listed[1].state, states[0].1);
    assert_eq!(listed[1].updated_at, at(10));
    store.close().await;
}

fn silence(id: &str, starts: i64, ends: i64, created: i64) -> Silence {
    Silence {
        id: id.into(),
        matcher: serde_json::from_str(r#"{"check": "api-*", "labels": {"team": "pay*"}}"#).unwrap(),
        starts_at: at(starts),
        ends_at: at(ends),
        ends_on_resolve: id == "pending",
        comment: format!("{id} work"),
        created_by: "alice".into(),
        created_at: at(created),
        expired: None,
    }
}

async fn silences_are_listed_by_state_and_expired_once(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let (active, pending, ended) =
        (silence("active", 0, 100, 1), silence("pending", 50, 100, 2), silence("ended", 0, 10, 0));
    for s in [&active, &pending, &ended] {
        store.add_silence(s).await.unwrap();
    }
    assert!(store.add_silence(&active).await.is_err(), "an id is taken once");
    let ids = |silences: Vec<Silence>| silences.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let now = at(20);
    assert_eq!(ids(store.silences(now, None).await.unwrap()), ["pending", "active", "ended"], "newest first");
    assert_eq!(ids(store.silences(now, Some(SilenceState::Active)).await.unwrap()), ["active"]);
    assert_eq!(ids(store.silences(now, Some(SilenceState::Pending)).await.unwrap()), ["pending"]);
    assert_eq!(ids(store.silences(now, Some(SilenceState::Expired)).await.unwrap()), ["ended"]);
    assert_eq!(store.silence("pending").await.unwrap(), Some(pending.clone()), "every field round-trips");

    let expiry = Expiry { at: at(30), by: "bob".into(), reason: "expired by hand".into() };
    let expired = store.expire_silence("active", "bob", "expired by hand", at(30)).await.unwrap().unwrap();
    assert_eq!(expired, Silence { expired: Some(expiry.clone()), ..active.clone() });
    let again = store.expire_silence("active", "carol", "again", at(40)).await.unwrap().unwrap();
    assert_eq!(again.expired, Some(expiry), "the first expiry stays");
    let past_end = store.expire_silence("ended", "bob", "late", at(40)).await.unwrap().unwrap();
    assert_eq!(past_end.expired, None, "a silence past its end is not expired again");
    assert_eq!(store.expire_silence("nope", "bob", "x", at(40)).await.unwrap(), None);
    assert_eq!(ids(store.silences(at(60), Some(SilenceState::Active)).await.unwrap()), ["pending"]);
    assert_eq!(ids(store.silences(at(60), Some(SilenceState::Expired)).await.unwrap()), ["active", "ended"]);

    let mut batch = store.begin().await.unwrap();
    let mut in_force = ids(batch.silences_from(at(5)).await.unwrap());
    in_force.sort();
    assert_eq!(in_force, ["ended", "pending"], "not expired by hand, ending after 5");
    drop(batch);

    assert_eq!(store.prune_silences(at(30)).await.unwrap(), 1, "ended at 10");
    assert_eq!(store.prune_silences(at(31)).await.unwrap(), 1, "expired at 30");
    assert_eq!(ids(store.silences(at(60), None).await.unwrap()), ["pending"]);
    store.close().await;
}

async fn told_and_held_rows_follow_the_incident(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let problem = event("p1", "web", EventKind::Problem, &["slack", "pd"]);
    let key = problem.incident_key();
    let mut batch = store.begin().await.unwrap();
    assert!(batch.told(&key).await.unwrap().is_empty());
    batch.record_told(&problem).await.unwrap();
    let warning =
        Event { id: "p2".into(), status: Status::Warning, ..event("p2", "web", EventKind::Problem, &["slack"]) };
    batch.record_told(&warning).await.unwrap();
    batch.hold(&problem).await.unwrap();
    batch.hold(&warning).await.unwrap();
    batch.commit().await.unwrap();
    let told = store.notified(&key).await.unwrap();
    assert_eq!(
        told.into_iter().collect::<Vec<_>>(),
        [("pd".to_owned(), Status::Critical), ("slack".to_owned(), Status::Warning)]
    );
    assert_eq!(store.held().await.unwrap(), [warning], "the newest held event replaces the older");

    let mut batch = store.begin().await.unwrap();
    assert!(!batch.take_held(&key, "p1").await.unwrap(), "replaced");
    assert!(batch.take_held(&key, "p2").await.unwrap());
    assert!(!batch.take_held(&key, "p2").await.unwrap(), "taken once");
    batch.forget_told(&key).await.unwrap();
    batch.commit().await.unwrap();
    assert!(store.notified(&key).await.unwrap().is_empty());
    assert!(store.held().await.unwrap().is_empty());

    let mut batch = store.begin().await.unwrap();
    batch.hold(&problem).await.unwrap();
    batch.drop_held(&key).await.unwrap();
    batch.commit().await.unwrap();
    assert!(store.held().await.unwrap().is_empty());
    store.close().await;
}

/// One query answers for every state: its newest result and the start of
/// its open problem (the first `problem` since the last `resolved`).
async fn states_carry_their_newest_result_and_open_problem(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    let mut web = CheckState::default();
    for (slot, status) in [(0, Status::Critical), (1, Status::Ok), (2, Status::Critical), (3, Status::Warning)] {
        let result = result("web", slot, status);
        for event in web.apply(&result, at(slot), Arrival::Fresh) {
            batch.add_event(&event).await.unwrap();
        }
        batch.add_result(&result, at(slot)).await.unwrap();
    }
    batch.put_state("web", "default", &web, at(3)).await.unwrap();
    let mut api = CheckState::default();
    api.apply(&result("api", 5, Status::Ok), at(5), Arrival::Fresh);
    batch.put_state("api", "default", &api, at(5)).await.unwrap();
    batch.commit().await.unwrap();

    let rows = store.states(StateQuery::default()).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].check.as_str(), rows[0].last_result.as_ref()), ("api", None), "no result stored");
    assert_eq!(rows[1].last_result.as_ref().unwrap().request_id, "web-3");
    assert_eq!(rows[1].problem_since, Some(at(2)), "the problem after the resolve, not the first one");
    let only = StateQuery { check: Some("web"), subscription: Some("default") };
    assert_eq!(store.states(only).await.unwrap(), rows[1..]);
    let elsewhere = StateQuery { check: Some("web"), subscription: Some("edge") };
    assert!(store.states(elsewhere).await.unwrap().is_empty());
    store.close().await;
}

async fn events_are_filtered_and_paged_newest_first(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    for i in 0..7 {
        let (check, kind) = if i % 2 == 0 { ("web", EventKind::Problem) } else { ("dns", EventKind::Resolved) };
        let event = Event { occurred_at: at(i), ..event(&format!("e{i}"), check, kind, &[]) };
        batch.add_event(&event).await.unwrap();
    }
    batch.commit().await.unwrap();
    let ids = |events: &[super::LoggedEvent]| events.iter().map(|e| e.event.id.clone()).collect::<Vec<_>>();

    let first = store.events(&EventQuery { limit: 3, ..EventQuery::default() }).await.unwrap();
    assert_eq!(ids(&first), ["e6", "e5", "e4"]);
    let before = Some(first.last().unwrap().seq);
    let second = store.events(&EventQuery { limit: 3, before, ..EventQuery::default() }).await.unwrap();
    assert_eq!(ids(&second), ["e3", "e2", "e1"]);

    let web = EventQuery { check: Some("web"), since: Some(at(2)), limit: 10, ..EventQuery::default() };
    assert_eq!(ids(&store.events(&web).await.unwrap()), ["e6", "e4", "e2"]);
    let kinds = [EventKind::Resolved];
    let resolved = EventQuery { kinds: &kinds, subscription: Some("default"), limit: 10, ..EventQuery::default() };
    assert_eq!(ids(&store.events(&resolved).await.unwrap()), ["e5", "e3", "e1"]);
    let nowhere = EventQuery { subscription: Some("edge"), limit: 10, ..EventQuery::default() };
    assert!(store.events(&nowhere).await.unwrap().is_empty());
    store.close().await;
}

async fn notifications_of_incidents_and_the_oldest_pending(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.oldest_pending_notification().await.unwrap(), None);
    let mut batch = store.begin().await.unwrap();
    batch
        .add_event(&Event { occurred_at: at(10), ..event("p1", "web", EventKind::Problem, &["slack", "pd"]) })
        .await
        .unwrap();
    batch.add_event(&Event { occurred_at: at(20), ..event("p2", "dns", EventKind::Problem, &["pd"]) }).await.unwrap();
    batch.commit().await.unwrap();
    let due = store.due_outbox(at(30), 10).await.unwrap();
    store.settle(due[0].seq, &Settlement::Sent, at(31)).await.unwrap();
    store.settle(due[1].seq, &Settlement::Retry { error: "503".into(), at: at(60) }, at(31)).await.unwrap();

    let trail = store.notifications(&["picket/default/web".to_owned()]).await.unwrap();
    let summary: Vec<_> =
        trail.iter().map(|n| (n.handler.as_str(), n.state.as_str(), n.attempts, n.last_error.as_deref())).collect();
    assert_eq!(summary, [("slack", "sent", 1, None), ("pd", "pending", 1, Some("503"))]);
    assert_eq!((trail[0].created_at, trail[0].done_at, trail[1].next_attempt_at), (at(10), Some(at(31)), at(60)));
    assert!(store.notifications(&[]).await.unwrap().is_empty());
    assert_eq!(store.oldest_pending_notification().await.unwrap(), Some(at(10)));
    store.close().await;
}

/// Migration 0004 on a store written before it: open incidents get their
/// `notified` rows from the outbox, so their resolves still arrive.
async fn the_upgrade_remembers_who_was_told_of_open_incidents(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    batch.add_event(&event("p1", "web", EventKind::Problem, &["slack", "pd"])).await.unwrap();
    batch.add_event(&event("p2", "dns", EventKind::Problem, &["slack"])).await.unwrap();
    let resolved = Event { status: Status::Ok, ..event("r2", "dns", EventKind::Resolved, &["slack"]) };
    batch.add_event(&resolved).await.unwrap();
    batch.commit().await.unwrap();
    for undo in [
        "DROP TABLE held",
        "DROP TABLE notified",
        "DROP TABLE silences",
        "DELETE FROM _sqlx_migrations WHERE version = 4",
    ] {
        sqlx::query(undo).execute(&store.pool).await.unwrap();
    }
    store.close().await;

    let store = Store::open(&config).await.unwrap();
    let web = store.notified("picket/default/web").await.unwrap();
    assert_eq!(
        web.into_iter().collect::<Vec<_>>(),
        [("pd".to_owned(), Status::Critical), ("slack".to_owned(), Status::Critical)]
    );
    assert!(store.notified("picket/default/dns").await.unwrap().is_empty(), "resolved before the upgrade");
    store.close().await;
}
