//! Latency history (migration 0006): per (check, subscription) and step,
//! the runs, failures by status and the durations of the total and of each
//! HTTP phase. Steps are one minute and one hour. A batch adds its results
//! in its own transaction ([`super::rollup`] says how), so a crash loses or
//! double-counts nothing.
//!
//! Durations are kept as exact counts per whole millisecond ([`Durations`])
//! rather than as percentiles: percentiles of two batches cannot be merged,
//! counts can, and p50 / p95 / max are derived on read from the merged counts.

use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use protocol::{CheckResult, Status};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::{Store, StoreError, from_millis, millis, rollup, to_json};

/// The HTTP phases whose timings (result metrics, in ms) the history keeps.
pub const PHASES: [&str; 5] = ["dns", "connect", "tls", "ttfb", "transfer"];

/// The sizes of stored steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepSize {
    Minute,
    Hour,
}

impl StepSize {
    pub const ALL: [Self; 2] = [Self::Minute, Self::Hour];

    pub fn millis(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
        }
    }

    /// The size whose length is `ms`.
    fn of_millis(ms: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|size| size.millis() == ms)
    }

    /// The start of the step holding `time`.
    pub(super) fn start_of(self, time: DateTime<Utc>) -> i64 {
        millis(time).div_euclid(self.millis()) * self.millis()
    }
}

/// How long steps of each size are kept (the handler prunes them where it
/// prunes events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryRetention {
    pub minutes: Duration,
    pub hours: Duration,
}

impl Default for HistoryRetention {
    /// Minutes for two days, hours for 90 days.
    fn default() -> Self {
        Self { minutes: Duration::from_secs(48 * 3600), hours: Duration::from_secs(90 * 24 * 3600) }
    }
}

impl HistoryRetention {
    pub fn of(&self, size: StepSize) -> Duration {
        match size {
            StepSize::Minute => self.minutes,
            StepSize::Hour => self.hours,
        }
    }
}

/// Exact durations: how many runs took each whole millisecond. Merging adds
/// counts, so any number of steps merge into the exact distribution, and the
/// size is bounded by the distinct durations seen, not by the runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Durations(BTreeMap<u64, u64>);

impl Durations {
    pub fn add(&mut self, ms: u64) {
        *self.0.entry(ms).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Self) {
        for (ms, count) in &other.0 {
            *self.0.entry(*ms).or_default() += count;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// The nearest-rank quantile `q` (0 < q ≤ 1): the least duration at or
    /// below which at least `q` of the runs fall. `None` with no runs.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // Rank from 1 to count; the cast is exact for any realistic count.
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        self.0.iter().find_map(|(ms, n)| {
            seen += n;
            (seen >= rank).then_some(*ms)
        })
    }

    pub fn max(&self) -> Option<u64> {
        self.0.keys().next_back().copied()
    }
}

/// One step of one (check, subscription). Serialized only as a pair's open
/// step ([`super::rollup`]); stored rows keep each part in its own column.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    #[serde(rename = "start_ms", with = "chrono::serde::ts_milliseconds")]
    pub start: DateTime<Utc>,
    pub runs: u64,
    #[serde(default)]
    pub warning: u64,
    #[serde(default)]
    pub critical: u64,
    #[serde(default)]
    pub unknown: u64,
    #[serde(default)]
    pub total: Durations,
    /// Per phase of [`PHASES`] the result carried.
    #[serde(default)]
    pub phases: BTreeMap<String, Durations>,
}

impl Step {
    pub fn empty(start: DateTime<Utc>) -> Self {
        Self { start, ..Self::default() }
    }

    pub fn add(&mut self, result: &CheckResult) {
        self.runs += 1;
        match result.status {
            Status::Ok => {}
            Status::Warning => self.warning += 1,
            Status::Critical => self.critical += 1,
            Status::Unknown => self.unknown += 1,
        }
        self.total.add(result.duration_ms);
        for phase in PHASES {
            if let Some(ms) = result.metrics.get(phase).filter(|ms| ms.is_finite() && **ms >= 0.0) {
                // Whole milliseconds: the precision the total has.
                self.phases.entry(phase.to_owned()).or_default().add(ms.round() as u64);
            }
        }
    }

    /// Adds `other`'s runs; the start stays this step's.
    pub fn merge(&mut self, other: &Self) {
        self.runs += other.runs;
        self.warning += other.warning;
        self.critical += other.critical;
        self.unknown += other.unknown;
        self.total.merge(&other.total);
        for (phase, durations) in &other.phases {
            self.phases.entry(phase.clone()).or_default().merge(durations);
        }
    }

    /// Runs that were OK.
    pub fn ok(&self) -> u64 {
        self.runs.saturating_sub(self.warning + self.critical + self.unknown)
    }
}

/// (check, subscription, step size, step start in ms)
pub(super) type StepKey = (String, String, StepSize, i64);

/// Steps read or written by one statement: 10 parameters each stays far
/// below SQLite's and PostgreSQL's limits on parameters.
pub(super) const STEPS_PER_STATEMENT: usize = 256;

/// Steps to merge into the stored rows.
pub(super) type Pending = HashMap<StepKey, Step>;

/// Merges `pending` into the stored steps: one read of the stored rows and
/// one upsert per chunk of steps, not two statements a step.
pub(super) async fn merge_steps(tx: &mut AnyConnection, pending: Pending) -> Result<(), StoreError> {
    let pending: Vec<(StepKey, Step)> = pending.into_iter().collect();
    for chunk in pending.chunks(STEPS_PER_STATEMENT) {
        let mut steps: HashMap<StepKey, Step> = chunk.iter().cloned().collect();
        let keys = (0..chunk.len())
            .map(|i| {
                let n = i * 4;
                format!(
                    "(check_name = ${} AND subscription = ${} AND step_ms = ${} AND start_ms = ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!(
            "SELECT runs, warning, critical, unknown, total, phases, check_name, subscription, step_ms, start_ms \
             FROM latency_steps WHERE {keys}"
        );
        let read =
            chunk.iter().fold(sqlx::query(AssertSqlSafe(sql)), |query, ((check, subscription, size, start), _)| {
                query.bind(check.clone()).bind(subscription.clone()).bind(size.millis()).bind(*start)
            });
        for row in read.fetch_all(&mut *tx).await? {
            let start: i64 = row.try_get(9)?;
            let Some(size) = StepSize::of_millis(row.try_get(8)?) else { continue };
            let key = (row.try_get(6)?, row.try_get(7)?, size, start);
            if let Some(step) = steps.get_mut(&key) {
                step.merge(&step_of(&row, start)?);
            }
        }
        let merged: Vec<(StepKey, Step)> = chunk.iter().map(|(key, _)| (key.clone(), steps[key].clone())).collect();
        write_steps(tx, &merged, Conflict::Replace).await?;
    }
    Ok(())
}

/// What writing a step does to a stored row of the same key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Conflict {
    /// The step written is the whole of it.
    Replace,
    /// The stored row stays; the keys of the steps written are returned.
    Keep,
}

/// Writes `steps` (at most [`STEPS_PER_STATEMENT`] of them); with
/// [`Conflict::Keep`] returns the keys written, which leaves out those
/// stored already.
pub(super) async fn write_steps(
    tx: &mut AnyConnection,
    steps: &[(StepKey, Step)],
    conflict: Conflict,
) -> Result<HashSet<StepKey>, StoreError> {
    let values = (0..steps.len())
        .map(|i| {
            let params: Vec<String> = (1..=10).map(|k| format!("${}", i * 10 + k)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let on_conflict = match conflict {
        Conflict::Replace => {
            "DO UPDATE SET runs = excluded.runs, warning = excluded.warning, critical = excluded.critical, \
             unknown = excluded.unknown, total = excluded.total, phases = excluded.phases"
        }
        Conflict::Keep => "DO NOTHING RETURNING check_name, subscription, step_ms, start_ms",
    };
    let sql = format!(
        "INSERT INTO latency_steps \
         (check_name, subscription, step_ms, start_ms, runs, warning, critical, unknown, total, phases) \
         VALUES {values} ON CONFLICT (check_name, subscription, step_ms, start_ms) {on_conflict}"
    );
    let mut write = sqlx::query(AssertSqlSafe(sql));
    for ((check, subscription, size, start), step) in steps {
        write = write
            .bind(check.clone())
            .bind(subscription.clone())
            .bind(size.millis())
            .bind(*start)
            .bind(count(step.runs))
            .bind(count(step.warning))
            .bind(count(step.critical))
            .bind(count(step.unknown))
            .bind(to_json(&step.total)?)
            .bind(to_json(&step.phases)?);
    }
    let mut written = HashSet::new();
    for row in write.fetch_all(&mut *tx).await? {
        let start: i64 = row.try_get(3)?;
        if let Some(size) = StepSize::of_millis(row.try_get(2)?) {
            written.insert((row.try_get(0)?, row.try_get(1)?, size, start));
        }
    }
    Ok(written)
}

/// The sum of the stored minute rows of each (check, subscription, hour
/// start) in `hours`; hours without rows are absent.
pub(super) async fn minutes_of_hours<'c, E>(exec: E, hours: &[Hour]) -> Result<HashMap<Hour, Step>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let mut sums: HashMap<Hour, Step> = HashMap::new();
    if hours.is_empty() {
        return Ok(sums);
    }
    let terms = (0..hours.len())
        .map(|i| {
            let n = i * 4;
            format!(
                "(check_name = ${} AND subscription = ${} AND start_ms >= ${} AND start_ms < ${})",
                n + 2,
                n + 3,
                n + 4,
                n + 5
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let sql = format!(
        "SELECT runs, warning, critical, unknown, total, phases, start_ms, check_name, subscription \
         FROM latency_steps WHERE step_ms = $1 AND ({terms})"
    );
    let hour = StepSize::Hour.millis();
    let query = hours.iter().fold(sqlx::query(AssertSqlSafe(sql)).bind(StepSize::Minute.millis()), |query, key| {
        let (check, subscription, start) = key;
        query.bind(check.clone()).bind(subscription.clone()).bind(*start).bind(*start + hour)
    });
    for row in query.fetch_all(exec).await? {
        let start: i64 = row.try_get(6)?;
        let key = (row.try_get(7)?, row.try_get(8)?, StepSize::Hour.start_of(from_millis(start)));
        sums.entry(key).or_insert_with_key(|key| Step::empty(from_millis(key.2))).merge(&step_of(&row, start)?);
    }
    Ok(sums)
}

/// (check, subscription, hour start in ms)
pub(super) type Hour = (String, String, i64);

impl Store {
    /// The steps of `size` of a (check, subscription) starting at or after
    /// `since`, oldest first.
    pub async fn history(
        &self,
        check: &str,
        subscription: &str,
        size: StepSize,
        since: DateTime<Utc>,
    ) -> Result<Vec<Step>, StoreError> {
        let pair = (check.to_owned(), subscription.to_owned());
        Ok(self.histories(std::slice::from_ref(&pair), size, since).await?.remove(&pair).unwrap_or_default())
    }

    /// The steps of `size` since `since` of each pair in `pairs` (the
    /// status page's sparklines), in three reads however many pairs; pairs
    /// without steps are absent. Each pair's open step is added to what its
    /// rows hold, and its open hour is the sum of that hour's minutes
    /// ([`super::rollup`]).
    pub async fn histories(
        &self,
        pairs: &[(String, String)],
        size: StepSize,
        since: DateTime<Utc>,
    ) -> Result<HashMap<(String, String), Vec<Step>>, StoreError> {
        let mut found: HashMap<(String, String), Vec<Step>> = HashMap::new();
        if pairs.is_empty() {
            return Ok(found);
        }
        let wanted: HashSet<&(String, String)> = pairs.iter().collect();
        // Checks and subscriptions each by IN, so the primary key serves the
        // read; the few rows of other pairs that match are sorted out here
        // (row values are not bound alike by every backend). Placeholders
        // appear in their order, for SQLite.
        let names: Vec<&str> =
            pairs.iter().map(|(check, _)| check.as_str()).chain(pairs.iter().map(|(_, s)| s.as_str())).collect();
        let list = |from: usize| (from..from + pairs.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT runs, warning, critical, unknown, total, phases, start_ms, check_name, subscription \
             FROM latency_steps WHERE step_ms = $1 AND start_ms >= $2 AND check_name IN ({}) AND subscription IN ({}) \
             ORDER BY start_ms",
            list(3),
            list(3 + pairs.len())
        );
        let query = sqlx::query(AssertSqlSafe(sql)).bind(size.millis()).bind(millis(since));
        let rows = names.iter().fold(query, |query, name| query.bind(*name)).fetch_all(&self.pool).await?;
        for row in &rows {
            let pair: (String, String) = (row.try_get(7)?, row.try_get(8)?);
            if wanted.contains(&pair) {
                let step = step_of(row, row.try_get(6)?)?;
                found.entry(pair).or_default().push(step);
            }
        }

        let sql = format!(
            "SELECT check_name, subscription, open_step FROM check_state \
             WHERE open_step IS NOT NULL AND check_name IN ({}) AND subscription IN ({})",
            list(1),
            list(1 + pairs.len())
        );
        let query = names.iter().fold(sqlx::query(AssertSqlSafe(sql)), |query, name| query.bind(*name));
        let mut open = HashMap::new();
        for row in query.fetch_all(&self.pool).await? {
            let pair: (String, String) = (row.try_get(0)?, row.try_get(1)?);
            if wanted.contains(&pair) {
                open.insert(pair, rollup::decode(&row.try_get::<String, _>(2)?)?);
            }
        }
        if size == StepSize::Hour {
            // An hour row of the open hour, if any, was written by an
            // earlier release; its minutes are the whole of it.
            let hours: Vec<Hour> = open
                .iter()
                .map(|((check, subscription), step)| {
                    (check.clone(), subscription.clone(), StepSize::Hour.start_of(step.start))
                })
                .collect();
            let sums = minutes_of_hours(&self.pool, &hours).await?;
            for key in hours {
                let steps = found.entry((key.0.clone(), key.1.clone())).or_default();
                steps.retain(|step| millis(step.start) != key.2);
                if let Some(sum) = sums.get(&key) {
                    add_open(steps, sum, size, since);
                }
            }
        }
        for (pair, step) in open {
            add_open(found.entry(pair).or_default(), &step, size, since);
        }
        found.retain(|_, steps| !steps.is_empty());
        Ok(found)
    }

    /// Deletes steps of `size` that started before `before`; returns how many.
    /// Minutes go only once the open steps of pairs idle since before
    /// them are closed, so no minute of an hour not yet summed is lost.
    pub async fn prune_history(&self, size: StepSize, before: DateTime<Utc>) -> Result<u64, StoreError> {
        if size == StepSize::Minute {
            self.close_idle_steps(before).await?;
        }
        let pruned = sqlx::query("DELETE FROM latency_steps WHERE step_ms = $1 AND start_ms < $2")
            .bind(size.millis())
            .bind(millis(before))
            .execute(&self.pool)
            .await?;
        Ok(pruned.rows_affected())
    }
}

/// Adds a pair's open step, which no stored row holds, to its steps of
/// `size` since `since` (oldest first).
fn add_open(steps: &mut Vec<Step>, open: &Step, size: StepSize, since: DateTime<Utc>) {
    let start = from_millis(size.start_of(open.start));
    if start < since {
        return;
    }
    match steps.binary_search_by_key(&start, |step| step.start) {
        Ok(i) => steps[i].merge(open),
        Err(i) => {
            let mut step = Step::empty(start);
            step.merge(open);
            steps.insert(i, step);
        }
    }
}

/// The step in `row`, whose first columns are runs, warning, critical,
/// unknown, total, phases.
fn step_of(row: &sqlx::any::AnyRow, start: i64) -> Result<Step, StoreError> {
    let number = |i: usize| -> Result<u64, StoreError> { Ok(u64::try_from(row.try_get::<i64, _>(i)?).unwrap_or(0)) };
    let json = |i: usize| -> Result<String, StoreError> { Ok(row.try_get::<String, _>(i)?) };
    let corrupt = |source| StoreError::Corrupt { what: "latency step", source };
    Ok(Step {
        start: from_millis(start),
        runs: number(0)?,
        warning: number(1)?,
        critical: number(2)?,
        unknown: number(3)?,
        total: serde_json::from_str(&json(4)?).map_err(corrupt)?,
        phases: serde_json::from_str(&json(5)?).map_err(corrupt)?,
    })
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
