//! `GET /api/v1/checks/{check}/{subscription}/history?since=24h&step=5m`:
//! the latency history in steps of `step`, merged from the stored ones
//! (one-minute steps for steps under an hour, hourly steps otherwise), with
//! the uptime over the window.
//!
//! Steps are aligned to multiples of `step` since the Unix epoch, so the
//! first one holds `since` and every stored step falls in exactly one.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, TimeDelta, Utc};
use handlers::store::{Durations, Step, StepSize, Store, StoreError};
use protocol::HumanDuration;
use serde::Serialize;

use crate::checks::state_row;
use crate::errors::ApiError;
use crate::params::Params;

/// The most steps one answer holds (a week of five-minute steps is 2016).
const MAX_STEPS: i64 = 2016;

/// The window when `since` is not given.
const DEFAULT_WINDOW: TimeDelta = TimeDelta::hours(24);

/// `step` when not given: five minutes up to two days back, hours beyond.
fn default_step(window: TimeDelta) -> TimeDelta {
    if window <= TimeDelta::hours(48) { TimeDelta::minutes(5) } else { TimeDelta::hours(1) }
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct History {
    check: String,
    subscription: String,
    /// The start of the first step (at or before the `since` asked for).
    since: DateTime<Utc>,
    step_seconds: i64,
    runs: u64,
    /// OK runs over runs in the window; `null` without runs.
    uptime: Option<f64>,
    /// Oldest first, one per step of the window, runs or not.
    steps: Vec<StepView>,
}

#[derive(Debug, Serialize, PartialEq)]
struct StepView {
    start: DateTime<Utc>,
    runs: u64,
    failures: Failures,
    #[serde(flatten)]
    total: Percentiles,
    /// Per HTTP phase the results timed (`dns`, `connect`, `tls`, `ttfb`, `transfer`).
    phases: BTreeMap<String, Percentiles>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Failures {
    warning: u64,
    critical: u64,
    unknown: u64,
}

/// `null` each in a step without runs.
#[derive(Debug, Serialize, PartialEq)]
struct Percentiles {
    p50_ms: Option<u64>,
    p95_ms: Option<u64>,
    max_ms: Option<u64>,
}

impl From<&Durations> for Percentiles {
    fn from(durations: &Durations) -> Self {
        Self { p50_ms: durations.quantile(0.5), p95_ms: durations.quantile(0.95), max_ms: durations.max() }
    }
}

impl From<&Step> for StepView {
    fn from(step: &Step) -> Self {
        Self {
            start: step.start,
            runs: step.runs,
            failures: Failures { warning: step.warning, critical: step.critical, unknown: step.unknown },
            total: Percentiles::from(&step.total),
            phases: step.phases.iter().map(|(phase, durations)| (phase.clone(), durations.into())).collect(),
        }
    }
}

/// The steps asked for: where the window starts, how long a step is, and
/// which stored steps it merges. The status page plots the same windows.
#[derive(Debug, PartialEq)]
pub struct Window {
    first: DateTime<Utc>,
    step: TimeDelta,
    count: i64,
    stored: StepSize,
}

impl Window {
    fn of(params: &Params, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let since = params.since(now)?.unwrap_or(now - DEFAULT_WINDOW);
        let step = match params.one("step")? {
            None => default_step(now - since),
            Some(value) => value
                .parse::<HumanDuration>()
                .ok()
                .and_then(|step| TimeDelta::from_std(step.get()).ok())
                .ok_or_else(|| ApiError::BadRequest(format!("step: {value:?} is not a duration like 5m or 1h")))?,
        };
        Self::new(since, step, now)
    }

    /// The window from `since` to `now` in steps of `step`; errors name
    /// `since` or `step`.
    pub fn new(since: DateTime<Utc>, step: TimeDelta, now: DateTime<Utc>) -> Result<Self, ApiError> {
        if since >= now {
            return Err(ApiError::BadRequest(format!("since: {} is not in the past", since.to_rfc3339())));
        }
        let stored = if step < TimeDelta::hours(1) { StepSize::Minute } else { StepSize::Hour };
        let unit = stored.millis();
        let step_ms = step.num_milliseconds();
        if step_ms < unit || step_ms % unit != 0 {
            let whole = if stored == StepSize::Minute { "minutes" } else { "hours" };
            return Err(ApiError::BadRequest(format!(
                "step: {} is not a whole number of {whole} (at least 1m; 1h or more in whole hours)",
                HumanDuration::from(step.to_std().unwrap_or_default())
            )));
        }
        let first = since.timestamp_millis().div_euclid(step_ms) * step_ms;
        let count = (now.timestamp_millis() - first).div_euclid(step_ms) + 1;
        if count > MAX_STEPS {
            return Err(ApiError::BadRequest(format!(
                "step: {count} steps over the window, the most is {MAX_STEPS} (take a longer step)"
            )));
        }
        Ok(Self { first: DateTime::from_timestamp_millis(first).unwrap_or_default(), step, count, stored })
    }

    /// The start of the first step.
    pub fn first(&self) -> DateTime<Utc> {
        self.first
    }

    pub fn step(&self) -> TimeDelta {
        self.step
    }

    /// Where the window ends: the end of its last step.
    pub fn end(&self) -> DateTime<Utc> {
        self.first + self.step * i32::try_from(self.count).unwrap_or(i32::MAX)
    }

    /// One step per step of the window, oldest first, read with one query.
    pub async fn steps(&self, store: &Store, check: &str, subscription: &str) -> Result<Vec<Step>, StoreError> {
        Ok(self.merge(&store.history(check, subscription, self.stored, self.first).await?))
    }

    /// [`Window::steps`] of several pairs, read with one query.
    pub async fn steps_of(
        &self,
        store: &Store,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), Vec<Step>>, StoreError> {
        let mut stored = store.histories(pairs, self.stored, self.first).await?;
        Ok(pairs.iter().map(|pair| (pair.clone(), self.merge(&stored.remove(pair).unwrap_or_default()))).collect())
    }

    /// Merges `stored` (oldest first, none before `first`) into one step per
    /// step of the window.
    fn merge(&self, stored: &[Step]) -> Vec<Step> {
        let step_ms = self.step.num_milliseconds();
        let mut steps: Vec<Step> = (0..self.count).map(|i| Step::empty(self.first + self.step * i as i32)).collect();
        for step in stored {
            let index = (step.start - self.first).num_milliseconds().div_euclid(step_ms);
            if let Some(into) = usize::try_from(index).ok().and_then(|i| steps.get_mut(i)) {
                into.merge(step);
            }
        }
        steps
    }
}

pub(crate) async fn show(
    State(store): State<Store>,
    Path((check, subscription)): Path<(String, String)>,
    params: Params,
) -> Result<Json<History>, ApiError> {
    let window = Window::of(&params, Utc::now())?;
    state_row(&store, &check, &subscription).await?;
    let steps = window.steps(&store, &check, &subscription).await?;
    Ok(Json(History::new(check, subscription, &window, &steps)))
}

/// OK runs over runs in `steps`; `None` without runs.
pub fn uptime(steps: &[Step]) -> Option<f64> {
    let runs: u64 = steps.iter().map(|step| step.runs).sum();
    let ok: u64 = steps.iter().map(Step::ok).sum();
    (runs > 0).then(|| ok as f64 / runs as f64)
}

impl History {
    fn new(check: String, subscription: String, window: &Window, steps: &[Step]) -> Self {
        Self {
            check,
            subscription,
            since: window.first,
            step_seconds: window.step.num_seconds(),
            runs: steps.iter().map(|step| step.runs).sum(),
            uptime: uptime(steps),
            steps: steps.iter().map(StepView::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::tests::{field_of, params};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T12:03:30Z").unwrap().with_timezone(&Utc)
    }

    fn time(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_window_is_aligned_to_the_step_and_reads_minutes_below_an_hour() {
        let window = Window::of(&params("since=1h&step=5m"), now()).unwrap();
        assert_eq!(window.first, time("2026-12-03T11:00:00Z"));
        assert_eq!((window.count, window.stored), (13, StepSize::Minute), "11:00 to 12:00 and the current step");
        let window = Window::of(&params("since=7d&step=2h"), now()).unwrap();
        assert_eq!((window.first, window.stored), (time("2026-11-26T12:00:00Z"), StepSize::Hour));
        assert_eq!(window.count, 85);
        let default = Window::of(&params(""), now()).unwrap();
        assert_eq!((default.step, default.count), (TimeDelta::minutes(5), 289));
    }

    #[test]
    fn bad_windows_name_their_field() {
        for (query, field) in [
            ("since=yesterday", "since"),
            ("since=2030-01-01T00:00:00Z", "since"),
            ("step=fast", "step"),
            ("step=30s", "step"),
            ("step=90s", "step"),
            ("step=90m", "step"),
            ("since=30d&step=1m", "step"),
            ("step=5m&step=1h", "step"),
        ] {
            assert_eq!(field_of(Window::of(&params(query), now()).unwrap_err()), field, "{query}");
        }
    }

    #[test]
    fn stored_steps_merge_into_the_window_with_empty_steps_between() {
        let window = Window::of(&params("since=15m&step=5m"), now()).unwrap();
        let minute = |at: &str, ms: &[u64], critical: u64| {
            let mut step = Step::empty(time(at));
            for ms in ms {
                step.total.add(*ms);
            }
            Step { runs: ms.len() as u64, critical, ..step }
        };
        let stored = [
            minute("2026-12-03T11:45:00Z", &[10, 20], 0),
            minute("2026-12-03T11:49:00Z", &[30, 40, 50], 1),
            minute("2026-12-03T12:01:00Z", &[5], 0),
        ];
        let steps = window.merge(&stored);
        let history = History::new("web".into(), "edge".into(), &window, &steps);
        let shape: Vec<_> = history.steps.iter().map(|s| (s.start, s.runs, s.total.p95_ms)).collect();
        assert_eq!(
            shape,
            [
                (time("2026-12-03T11:45:00Z"), 5, Some(50)),
                (time("2026-12-03T11:50:00Z"), 0, None),
                (time("2026-12-03T11:55:00Z"), 0, None),
                (time("2026-12-03T12:00:00Z"), 1, Some(5)),
            ]
        );
        assert_eq!(history.steps[0].total.p50_ms, Some(30));
        assert_eq!(history.steps[0].failures.critical, 1);
        assert_eq!((history.runs, history.uptime), (6, Some(5.0 / 6.0)));
    }
}
