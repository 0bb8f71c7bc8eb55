//! `GET /api/v1/checks?status=&subscription=&label=&silenced=`: one row per
//! (check, subscription), with the silences that apply to it now; and `GET /api/v1/checks/{check}/{subscription}`: one row
//! with its recent results and events.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use handlers::store::{EventQuery, StateQuery, StateRow, Store};
use protocol::CheckResult;
use protocol::metrics::result_keys;
use serde::Serialize;

use crate::errors::ApiError;
use crate::events::EventView;
use crate::params::Params;
use crate::silences::{ActiveSilences, Windows};

/// Events shown with one check; older ones page through `/api/v1/events`.
const DETAIL_EVENTS: u32 = 50;
/// Results shown with one check: as many as the store keeps by default.
const DETAIL_RESULTS: u32 = handlers::store::DEFAULT_KEEP_RESULTS;

#[derive(Serialize)]
pub struct CheckRow {
    pub check: String,
    pub subscription: String,
    pub status: Option<&'static str>,
    /// When the status last changed.
    pub since: Option<DateTime<Utc>>,
    pub occurrences: u32,
    pub flapping: bool,
    /// The check's labels, as its newest result carried them.
    pub labels: BTreeMap<String, String>,
    pub last_result: Option<ResultView>,
    /// The least days a certificate of the newest result has left.
    pub tls_days_left: Option<f64>,
    /// Ids of the silences that apply now (maintenance windows are not listed yet).
    pub silenced_by: Vec<String>,
    pub incident: Option<Incident>,
}

/// The open incident: the problem handlers were told of and not yet told
/// is resolved.
#[derive(Serialize)]
pub struct Incident {
    /// PagerDuty's dedup key; `/api/v1/incidents` lists it under this key.
    pub key: String,
    /// The status last notified.
    pub status: &'static str,
    /// When the first problem of this incident was logged.
    pub since: DateTime<Utc>,
    /// When handlers were last told (the problem, a change or a reminder).
    pub notified_at: DateTime<Utc>,
}

#[derive(Serialize)]
pub struct ResultView {
    pub time: DateTime<Utc>,
    pub status: &'static str,
    pub duration_ms: u64,
    pub output: String,
    pub runner: String,
    pub metrics: BTreeMap<String, f64>,
}

impl From<CheckResult> for ResultView {
    fn from(result: CheckResult) -> Self {
        Self {
            time: result.started_at,
            status: result.status.name(),
            duration_ms: result.duration_ms,
            output: result.output,
            runner: result.runner,
            metrics: result.metrics,
        }
    }
}

impl CheckRow {
    pub fn new(row: StateRow, silences: &ActiveSilences) -> Self {
        let labels = row.last_result.as_ref().map(|r| r.policy.labels.clone()).unwrap_or_default();
        let silenced_by = silences.matching(&row.check, &row.subscription, &labels);
        let tls_days_left = row.last_result.as_ref().and_then(|result| {
            result_keys::DAYS_LEFT.iter().filter_map(|key| result.metrics.get(*key).copied()).reduce(f64::min)
        });
        let incident = row.state.notified.as_ref().map(|notified| Incident {
            key: format!("picket/{}/{}", row.subscription, row.check),
            status: notified.status.name(),
            since: row.problem_since.unwrap_or(notified.at),
            notified_at: notified.at,
        });
        Self {
            status: row.state.history.back().map(|s| s.name()),
            since: row.state.last_change,
            occurrences: row.state.occurrences,
            flapping: row.state.flapping,
            labels,
            last_result: row.last_result.map(ResultView::from),
            tls_days_left,
            silenced_by,
            incident,
            check: row.check,
            subscription: row.subscription,
        }
    }
}

pub(crate) async fn list(
    State(store): State<Store>,
    State(windows): State<Windows>,
    params: Params,
) -> Result<Json<Vec<CheckRow>>, ApiError> {
    let status = params.status()?;
    let labels = params.labels()?;
    let silenced = params.flag("silenced")?;
    let query = StateQuery { check: None, subscription: params.one("subscription")? };
    let silences = ActiveSilences::load(&store, &windows).await?;
    let rows = store.states(query).await?.into_iter().map(|row| CheckRow::new(row, &silences));
    let rows = rows.filter(|row| {
        status.is_none_or(|s| row.status == Some(s.name()))
            && labels.iter().all(|(name, value)| row.labels.get(name) == Some(value))
            && silenced.is_none_or(|silenced| silenced != row.silenced_by.is_empty())
    });
    Ok(Json(rows.collect()))
}

#[derive(Serialize)]
pub(crate) struct CheckDetail {
    #[serde(flatten)]
    row: CheckRow,
    /// Newest first.
    results: Vec<ResultView>,
    /// Newest first; older ones through `/api/v1/events?check=&subscription=`.
    events: Vec<EventView>,
}

/// The row of a (check, subscription); 404 when it never ran.
pub async fn state_row(store: &Store, check: &str, subscription: &str) -> Result<StateRow, ApiError> {
    let query = StateQuery { check: Some(check), subscription: Some(subscription) };
    store
        .states(query)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Missing(format!("no check {check:?} has run on subscription {subscription:?}")))
}

pub(crate) async fn detail(
    State(store): State<Store>,
    State(windows): State<Windows>,
    Path((check, subscription)): Path<(String, String)>,
) -> Result<Json<CheckDetail>, ApiError> {
    let row = state_row(&store, &check, &subscription).await?;
    let silences = ActiveSilences::load(&store, &windows).await?;
    let results = store.recent_results(&check, &subscription, DETAIL_RESULTS).await?;
    let events = EventQuery {
        check: Some(&check),
        subscription: Some(&subscription),
        limit: DETAIL_EVENTS,
        ..EventQuery::default()
    };
    let events = store.events(&events).await?;
    Ok(Json(CheckDetail {
        row: CheckRow::new(row, &silences),
        results: results.into_iter().map(ResultView::from).collect(),
        events: events.into_iter().map(|logged| EventView::from(logged.event)).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use std::sync::Arc;

    use handlers::state::{CheckState, Notified};
    use protocol::Status;
    use protocol::definition::window::parse_window;
    use protocol::message::AlertPolicy;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::seconds(secs)
    }

    fn row(metrics: &[(&str, f64)], problem_since: Option<DateTime<Utc>>) -> StateRow {
        let result = CheckResult {
            request_id: "r".into(),
            check: "web".into(),
            subscription: "edge".into(),
            runner: "host-1".into(),
            status: Status::Critical,
            output: "expires soon".into(),
            scheduled_at: at(10),
            started_at: at(10),
            duration_ms: 3,
            lateness_ms: 0,
            metrics: metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            details: serde_json::Value::Null,
            policy: AlertPolicy { labels: [("team".into(), "web".into())].into(), ..AlertPolicy::default() },
        };
        let state = CheckState {
            history: [Status::Critical].into(),
            notified: Some(Notified { status: Status::Critical, at: at(10) }),
            ..CheckState::default()
        };
        StateRow {
            check: "web".into(),
            subscription: "edge".into(),
            state,
            updated_at: at(10),
            last_result: Some(result),
            problem_since,
        }
    }

    #[test]
    fn a_row_shows_the_least_days_left_its_labels_and_its_incident() {
        let web = handlers::Silence {
            id: "s1".into(),
            matcher: serde_json::from_str(r#"{"check": "w*", "labels": {"team": "web"}}"#).unwrap(),
            starts_at: at(0),
            ends_at: at(100),
            ends_on_resolve: false,
            comment: "deploy".into(),
            created_by: "alice".into(),
            created_at: at(0),
            expired: None,
        };
        let silences = ActiveSilences::new(vec![web], Arc::from([]), at(10));
        let value = |row: StateRow| serde_json::to_value(CheckRow::new(row, &silences)).unwrap();
        let tls = value(row(&[("days_left", 40.0), ("chain_days_left", 12.5), ("total", 3.0)], Some(at(5))));
        assert_eq!(tls["tls_days_left"], 12.5);
        assert_eq!(tls["labels"], serde_json::json!({"team": "web"}));
        assert_eq!(tls["silenced_by"], serde_json::json!(["s1"]), "matched by name and label");
        assert_eq!(
            tls["incident"],
            serde_json::json!({"key": "picket/edge/web", "status": "CRITICAL",
                               "since": "1970-01-01T00:00:05Z", "notified_at": "1970-01-01T00:00:10Z"})
        );
        let https = value(row(&[("cert_days_left", 3.5)], None));
        assert_eq!(https["tls_days_left"], 3.5);
        assert_eq!(https["incident"]["since"], "1970-01-01T00:00:10Z", "the log pruned: when it was notified");
        assert_eq!(value(row(&[("total", 3.0)], None))["tls_days_left"], serde_json::Value::Null);
    }

    #[test]
    fn an_open_maintenance_window_shows_in_silenced_by_and_counts_as_active() {
        let nightly = parse_window(serde_json::json!({"kind": "maintenance", "name": "nightly",
            "match": {"check": "web"}, "cron": "0 0 * * *", "duration": "1h", "comment": "db upgrades"}))
        .unwrap();
        let windows: Arc<[_]> = Arc::from([nightly]);
        let silenced_by = |silences: &ActiveSilences| {
            serde_json::to_value(CheckRow::new(row(&[], None), silences)).unwrap()["silenced_by"].clone()
        };
        let open = ActiveSilences::new(Vec::new(), windows.clone(), at(10));
        assert_eq!(silenced_by(&open), serde_json::json!(["maintenance:nightly"]));
        assert_eq!(open.len(), 1);
        let closed = ActiveSilences::new(Vec::new(), windows, at(3600));
        assert_eq!(silenced_by(&closed), serde_json::json!([]));
        assert_eq!(closed.len(), 0);
    }
}
