//! `GET /api/v1/checks?status=&subscription=`: one row per (check, subscription),
//! with the ids of the silences gating its notifications now.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use handlers::SilenceState;
use handlers::store::Store;
use protocol::silence::SilenceTarget;
use protocol::{CheckResult, Status};
use serde::Serialize;

use crate::errors::ApiError;

#[derive(Serialize)]
pub(crate) struct CheckRow {
    check: String,
    subscription: String,
    status: Option<&'static str>,
    since: Option<DateTime<Utc>>,
    occurrences: u32,
    flapping: bool,
    last_result: Option<LastResult>,
    /// Active silences matching it (maintenance windows are not listed yet).
    silenced_by: Vec<String>,
}

#[derive(Serialize)]
struct LastResult {
    time: DateTime<Utc>,
    duration_ms: u64,
    output: String,
    runner: String,
    metrics: serde_json::Value,
}

impl From<CheckResult> for LastResult {
    fn from(result: CheckResult) -> Self {
        Self {
            time: result.started_at,
            duration_ms: result.duration_ms,
            output: result.output,
            runner: result.runner,
            metrics: serde_json::to_value(&result.metrics).unwrap_or_default(),
        }
    }
}

fn parse_status(value: &str) -> Result<Status, ApiError> {
    Status::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(value)).ok_or_else(|| {
        ApiError::BadRequest(format!("status: unknown status {value:?} (OK, WARNING, CRITICAL, UNKNOWN)"))
    })
}

pub(crate) async fn list(
    State(store): State<Store>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<CheckRow>>, ApiError> {
    let status = query.get("status").map(|s| parse_status(s)).transpose()?;
    let subscription = query.get("subscription");
    let now = Utc::now();
    let active = store.silences(now, Some(SilenceState::Active)).await?;
    let mut rows = Vec::new();
    for row in store.states().await? {
        let current = row.state.history.back().copied();
        if status.is_some_and(|s| current != Some(s)) || subscription.is_some_and(|s| *s != row.subscription) {
            continue;
        }
        let last = store.recent_results(&row.check, &row.subscription, 1).await?.into_iter().next();
        let labels = last.as_ref().map(|r| r.policy.labels.clone()).unwrap_or_default();
        let target = SilenceTarget { check: Some(&row.check), subscription: &row.subscription, labels: &labels };
        let silenced_by = active.iter().filter(|s| s.silences(target, now)).map(|s| s.id.clone()).collect();
        rows.push(CheckRow {
            status: current.map(Status::name),
            since: row.state.last_change,
            occurrences: row.state.occurrences,
            flapping: row.state.flapping,
            last_result: last.map(LastResult::from),
            silenced_by,
            check: row.check,
            subscription: row.subscription,
        });
    }
    Ok(Json(rows))
}
