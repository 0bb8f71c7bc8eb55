//! `GET /api/v1/incidents?open=true|false&limit=`: incidents, newest first,
//! each with every handler's notification trail.
//!
//! An incident is what PagerDuty sees: the events of one incident key from
//! the `problem` (`runner_lost`, `missed`) that opened it to the `resolved`
//! (`runner_back`, `caught_up`) that closed it. They are rebuilt from the
//! event log, and the trail of each handler from the outbox rows of those
//! events, so an incident whose first events were pruned starts at the
//! oldest one kept.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use handlers::store::{EventQuery, LoggedEvent, Notification, Store, StoreError};
use handlers::{Event, EventKind};
use serde::Serialize;

use crate::errors::ApiError;
use crate::params::Params;

/// The kinds that open, continue or close an incident. Flapping events share
/// the key but page nobody on their own.
const INCIDENT_KINDS: [EventKind; 7] = [
    EventKind::Problem,
    EventKind::Reminder,
    EventKind::Resolved,
    EventKind::RunnerLost,
    EventKind::RunnerBack,
    EventKind::Missed,
    EventKind::CaughtUp,
];

fn closes(kind: EventKind) -> bool {
    matches!(kind, EventKind::Resolved | EventKind::RunnerBack | EventKind::CaughtUp)
}

#[derive(Serialize)]
pub(crate) struct IncidentView {
    key: String,
    /// `None` for runner and pool incidents.
    check: Option<String>,
    subscription: String,
    /// The runner of runner incidents.
    runner: Option<String>,
    /// The status of the latest problem or reminder.
    status: &'static str,
    open: bool,
    opened_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    /// Oldest first.
    events: Vec<IncidentEvent>,
    /// One trail per handler, by handler name.
    notifications: BTreeMap<String, Vec<Delivery>>,
}

#[derive(Serialize)]
struct IncidentEvent {
    id: String,
    kind: &'static str,
    status: &'static str,
    output: String,
    occurred_at: DateTime<Utc>,
}

/// One event's delivery to one handler.
#[derive(Serialize)]
struct Delivery {
    event_id: String,
    event_kind: &'static str,
    /// `pending`, `sent` or `dropped`.
    state: String,
    attempts: u32,
    last_error: Option<String>,
    /// When the event was decided and queued.
    queued_at: DateTime<Utc>,
    /// Pending only: the next attempt.
    next_attempt_at: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    dropped_at: Option<DateTime<Utc>>,
}

/// An incident being rebuilt from the log.
pub(crate) struct Episode {
    key: String,
    events: Vec<Event>,
    resolved_at: Option<DateTime<Utc>>,
}

impl Episode {
    pub(crate) fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// Every incident in the log, oldest first.
pub(crate) async fn episodes(store: &Store) -> Result<Vec<Episode>, StoreError> {
    let query = EventQuery { kinds: &INCIDENT_KINDS, limit: u32::MAX, ..EventQuery::default() };
    let mut logged: Vec<LoggedEvent> = store.events(&query).await?;
    logged.reverse();
    let mut episodes: Vec<Episode> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for LoggedEvent { event, .. } in logged {
        let key = event.incident_key();
        let index = *open.entry(key.clone()).or_insert_with(|| {
            episodes.push(Episode { key, events: Vec::new(), resolved_at: None });
            episodes.len() - 1
        });
        let episode = &mut episodes[index];
        if closes(event.kind) {
            episode.resolved_at = Some(event.occurred_at);
            open.remove(&episode.key);
        }
        episode.events.push(event);
    }
    Ok(episodes)
}

pub(crate) async fn list(State(store): State<Store>, params: Params) -> Result<Json<Vec<IncidentView>>, ApiError> {
    let open = params.flag("open")?;
    let limit = params.limit()? as usize;
    let mut chosen: Vec<Episode> = episodes(&store).await?;
    chosen.retain(|episode| open.is_none_or(|open| episode.is_open() == open));
    chosen.reverse();
    chosen.truncate(limit);
    let mut keys: Vec<String> = chosen.iter().map(|e| e.key.clone()).collect();
    keys.sort();
    keys.dedup();
    let mut trails: HashMap<String, Vec<Notification>> = HashMap::new();
    for notification in store.notifications(&keys).await? {
        trails.entry(notification.event_id.clone()).or_default().push(notification);
    }
    Ok(Json(chosen.into_iter().map(|episode| view(episode, &mut trails)).collect()))
}

fn view(episode: Episode, trails: &mut HashMap<String, Vec<Notification>>) -> IncidentView {
    let first = &episode.events[0];
    let latest_problem = episode.events.iter().rev().find(|e| !closes(e.kind)).unwrap_or(first);
    let runner_incident = matches!(first.kind, EventKind::RunnerLost | EventKind::RunnerBack);
    let mut notifications: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
    for event in &episode.events {
        for row in trails.remove(&event.id).unwrap_or_default() {
            let pending = row.state == "pending";
            let done = |state: &str| row.done_at.filter(|_| row.state == state);
            let delivery = Delivery {
                event_id: row.event_id.clone(),
                event_kind: event.kind.as_str(),
                attempts: row.attempts,
                last_error: row.last_error.clone(),
                queued_at: row.created_at,
                next_attempt_at: pending.then_some(row.next_attempt_at),
                sent_at: done("sent"),
                dropped_at: done("dropped"),
                state: row.state,
            };
            notifications.entry(row.handler).or_default().push(delivery);
        }
    }
    IncidentView {
        check: Some(first.check.clone()).filter(|c| !c.is_empty()),
        subscription: first.subscription.clone(),
        runner: runner_incident.then(|| first.runner.clone()),
        status: latest_problem.status.name(),
        open: episode.is_open(),
        opened_at: first.occurred_at,
        resolved_at: episode.resolved_at,
        events: episode
            .events
            .iter()
            .map(|e| IncidentEvent {
                id: e.id.clone(),
                kind: e.kind.as_str(),
                status: e.status.name(),
                output: e.output.clone(),
                occurred_at: e.occurred_at,
            })
            .collect(),
        notifications,
        key: episode.key,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeDelta;
    use handlers::store::StoreConfig;
    use protocol::Status;

    use super::*;
    use crate::params::tests::params;

    /// A store in a temporary SQLite file, with `events` logged in order.
    pub(crate) async fn store_with(dir: &tempfile::TempDir, events: &[(EventKind, &str, &str)]) -> Store {
        let url = format!("sqlite://{}/state.db", dir.path().display());
        let store = Store::open(&StoreConfig::new(url)).await.unwrap();
        let mut batch = store.begin().await.unwrap();
        for (i, (kind, check, runner)) in events.iter().enumerate() {
            let seconds = i64::try_from(i).unwrap();
            let event = Event {
                id: format!("e{i}"),
                kind: *kind,
                check: (*check).into(),
                subscription: "default".into(),
                runner: (*runner).into(),
                status: if closes(*kind) { Status::Ok } else { Status::Critical },
                previous: None,
                output: String::new(),
                metrics: BTreeMap::new(),
                labels: BTreeMap::new(),
                occurred_at: DateTime::UNIX_EPOCH + TimeDelta::seconds(seconds),
                handlers: vec!["ops".into()],
                silenced_by: Vec::new(),
            };
            batch.add_event(&event).await.unwrap();
        }
        batch.commit().await.unwrap();
        store
    }

    #[tokio::test]
    async fn incidents_run_from_what_opens_them_to_what_closes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(
            &dir,
            &[
                (EventKind::Problem, "web", "r1"),
                (EventKind::FlappingStart, "web", "r1"),
                (EventKind::Reminder, "web", "r1"),
                (EventKind::RunnerLost, "", "r2"),
                (EventKind::Resolved, "web", "r1"),
                (EventKind::Problem, "web", "r1"),
                (EventKind::RunnerBack, "", "r2"),
                (EventKind::Missed, "", ""),
            ],
        )
        .await;
        let summary: Vec<(String, Vec<&str>, bool)> = episodes(&store)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.key.clone(), e.events.iter().map(|e| e.kind.as_str()).collect(), e.is_open()))
            .collect();
        let episode = |key: &str, kinds: &[&'static str], open| (key.to_owned(), kinds.to_vec(), open);
        assert_eq!(
            summary,
            [
                episode("picket/default/web", &["problem", "reminder", "resolved"], false),
                episode("picket/default/runner/r2", &["runner_lost", "runner_back"], false),
                episode("picket/default/web", &["problem"], true),
                episode("picket/default/missed", &["missed"], true),
            ]
        );

        let Json(open) = list(State(store.clone()), params("open=true")).await.unwrap();
        let open = serde_json::to_value(open).unwrap();
        assert_eq!(open[0]["key"], "picket/default/missed", "newest first");
        assert_eq!(open[1]["notifications"]["ops"][0]["event_id"], "e5");
        assert_eq!(open[1]["notifications"]["ops"][0]["state"], "pending");
        assert_eq!(open.as_array().unwrap().len(), 2);
        let Json(closed) = list(State(store.clone()), params("open=false&limit=1")).await.unwrap();
        let closed = serde_json::to_value(closed).unwrap();
        assert_eq!(closed[0]["runner"], "r2");
        assert_eq!(closed[0]["check"], serde_json::Value::Null);
        assert_eq!(closed.as_array().unwrap().len(), 1, "limit");
        store.close().await;
    }
}
