//! Writing the latency history. Each counted run joins its pair's *open
//! step*: the minute of the pair's newest run, kept in the pair's
//! `check_state` row (column `open_step`, migration 0008) and so written by
//! the statement that writes the state anyway. A run of a later minute
//! closes the open step into its minute row, inserted once; a run of a later
//! hour also sums the minute rows of the hour it left into that hour's row.
//! A late run, of a minute before the open one, is merged into its minute
//! row at once, and into its hour row when that hour is summed already.
//!
//! Why: at 10,000 pairs a batch of 512 results touches 1,024 distinct steps,
//! and merging every run into its minute and its hour (a read and an upsert
//! of two rows each) cost 60 % of the sink's throughput
//! (`bench/results/2026-12-04.md`). Now a run costs a few hundred bytes in a
//! row written anyway, a minute one insert per pair, an hour one read of its
//! minutes per pair.
//!
//! Invariant: every counted run is either in its pair's open step or in its
//! minute row; it is also in its hour row exactly when that hour is before
//! the pair's open hour (the hour of its open step). Readers
//! ([`super::history`]) add the open step to what the rows hold and take the
//! open hour from its minutes. All of it moves in the batch's transaction.
//! A handler of an earlier release sharing the store merges its runs into
//! both rows directly and never writes `open_step`; summing an hour replaces
//! its row with its minutes, which hold those runs too, so both count
//! correctly side by side.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use protocol::CheckResult;
use sqlx::{AnyConnection, Row};

use super::history::{
    Conflict, Hour, Pending, STEPS_PER_STATEMENT, Step, StepKey, StepSize, merge_steps, minutes_of_hours, write_steps,
};
use super::{Batch, Store, StoreError, from_millis, millis, to_json};

type Pair = (String, String);

/// A pair idle this long before the minute retention has its open step
/// closed before minutes are pruned: its open hour then starts after the
/// cut whatever the skew between a result's start and its arrival.
const IDLE_MARGIN: TimeDelta = TimeDelta::hours(2);

/// What a batch adds to the history, written with the states and at commit.
#[derive(Default)]
pub(super) struct Rollup {
    /// The open step of each pair the batch read or counted (`None`: it has
    /// none yet), and whether the batch changed it.
    open: HashMap<Pair, (Option<Step>, bool)>,
    /// Open steps closed: minute rows to insert.
    closed: Pending,
    /// Late runs: steps to merge into minute rows and summed hour rows.
    late: Pending,
    /// Hours a pair's open step left: their rows become their minutes' sum.
    left: HashSet<Hour>,
}

impl Rollup {
    /// Notes the stored open step of a pair whose state row was read, unless
    /// the batch holds a newer one already.
    pub(super) fn loaded(&mut self, check: &str, subscription: &str, stored: Option<&str>) -> Result<(), StoreError> {
        if let Entry::Vacant(vacant) = self.open.entry((check.to_owned(), subscription.to_owned())) {
            vacant.insert((stored.map(decode).transpose()?, false));
        }
        Ok(())
    }

    /// The JSON of a pair's open step when the batch changed it, marking it
    /// written: the state upsert carries it.
    pub(super) fn take_changed(&mut self, check: &str, subscription: &str) -> Result<Option<String>, StoreError> {
        match self.open.get_mut(&(check.to_owned(), subscription.to_owned())) {
            Some((Some(step), changed @ true)) => {
                *changed = false;
                Ok(Some(to_json(step)?))
            }
            _ => Ok(None),
        }
    }

    /// Closes a pair's open step `step`, whose successor starts at `next`
    /// (`None`: it has none, the pair is idle).
    fn close(&mut self, pair: &Pair, step: Step, next: Option<DateTime<Utc>>) {
        let hour = StepSize::Hour.start_of(step.start);
        if next.is_none_or(|next| StepSize::Hour.start_of(next) != hour) {
            self.left.insert((pair.0.clone(), pair.1.clone(), hour));
        }
        add(&mut self.closed, pair, StepSize::Minute, &step);
    }

    /// Writes the steps closed, the late runs and the hours left, in that
    /// order: an hour's sum must see every minute written before it.
    async fn write(mut self, tx: &mut AnyConnection) -> Result<(), StoreError> {
        let closed: Vec<(StepKey, Step)> = self.closed.into_iter().collect();
        for chunk in closed.chunks(STEPS_PER_STATEMENT) {
            // A minute row already there (an earlier release's runs) is merged.
            let written = write_steps(tx, chunk, Conflict::Keep).await?;
            for (key, step) in chunk.iter().filter(|(key, _)| !written.contains(key)) {
                self.late.entry(key.clone()).or_insert_with(|| Step::empty(step.start)).merge(step);
            }
        }
        // A late run in an hour summed in this batch is in its sum already.
        let left = &self.left;
        self.late.retain(|(check, subscription, size, start), _| {
            *size == StepSize::Minute || !left.contains(&(check.clone(), subscription.clone(), *start))
        });
        merge_steps(tx, self.late).await?;
        let left: Vec<Hour> = self.left.into_iter().collect();
        for chunk in left.chunks(STEPS_PER_STATEMENT) {
            let sums = minutes_of_hours(&mut *tx, chunk).await?;
            let rows: Vec<(StepKey, Step)> = sums
                .into_iter()
                .map(|((check, subscription, start), sum)| ((check, subscription, StepSize::Hour, start), sum))
                .collect();
            write_steps(tx, &rows, Conflict::Replace).await?;
        }
        Ok(())
    }
}

/// Adds `step` to its step of `size` in `pending`.
fn add(pending: &mut Pending, (check, subscription): &Pair, size: StepSize, step: &Step) {
    let start = size.start_of(step.start);
    let key = (check.clone(), subscription.clone(), size, start);
    pending.entry(key).or_insert_with(|| Step::empty(from_millis(start))).merge(step);
}

impl Batch {
    /// Counts an applied result in the history. Only results the state
    /// admitted as new may be counted: the watermark is what makes a
    /// redelivered result a duplicate, and a stale one may be a redelivery
    /// of a result counted before.
    pub async fn count_run(&mut self, result: &CheckResult) -> Result<(), StoreError> {
        let Some(rollup) = &mut self.history else { return Ok(()) };
        let pair = (result.check.clone(), result.subscription.clone());
        if !rollup.open.contains_key(&pair) {
            let stored = read_open_step(&mut self.tx, &result.check, &result.subscription).await?;
            rollup.loaded(&result.check, &result.subscription, stored.as_deref())?;
        }
        let minute = from_millis(StepSize::Minute.start_of(result.started_at));
        let mut run = Step::empty(minute);
        run.add(result);
        let Some((open, changed)) = rollup.open.get_mut(&pair) else { return Ok(()) };
        let closed = match open {
            Some(step) if step.start == minute => {
                step.merge(&run);
                None
            }
            Some(step) if minute < step.start => {
                let open_hour = StepSize::Hour.start_of(step.start);
                add(&mut rollup.late, &pair, StepSize::Minute, &run);
                if StepSize::Hour.start_of(minute) < open_hour {
                    add(&mut rollup.late, &pair, StepSize::Hour, &run);
                }
                return Ok(());
            }
            _ => open.replace(run),
        };
        *changed = true;
        if let Some(closed) = closed {
            rollup.close(&pair, closed, Some(minute));
        }
        Ok(())
    }

    /// Writes what the history gained: open steps no state upsert carried
    /// (a pair whose state this batch did not write), then the rows.
    pub(super) async fn write_history(&mut self) -> Result<(), StoreError> {
        let Some(mut rollup) = self.history.take() else { return Ok(()) };
        let unwritten: Vec<Pair> = rollup
            .open
            .iter()
            .filter(|(_, (step, changed))| *changed && step.is_some())
            .map(|(pair, _)| pair.clone())
            .collect();
        for pair in unwritten {
            let Some(json) = rollup.take_changed(&pair.0, &pair.1)? else { continue };
            let kept = sqlx::query("UPDATE check_state SET open_step = $3 WHERE check_name = $1 AND subscription = $2")
                .bind(&pair.0)
                .bind(&pair.1)
                .bind(json)
                .execute(&mut *self.tx)
                .await?;
            if kept.rows_affected() == 0 {
                // No state row to hold it: the step goes to the rows now.
                if let Some((Some(step), _)) = rollup.open.remove(&pair) {
                    rollup.close(&pair, step, None);
                }
            }
        }
        rollup.write(&mut self.tx).await
    }
}

impl Store {
    /// Closes the open steps of pairs whose state was last written before
    /// `before` plus a margin, so that pruning minutes before `before` takes
    /// none of an hour not yet summed. A pair written meanwhile keeps its
    /// step: the clearing is conditional on the write time read.
    pub(super) async fn close_idle_steps(&self, before: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let idle = sqlx::query(
            "SELECT check_name, subscription, open_step, updated_at FROM check_state \
             WHERE open_step IS NOT NULL AND updated_at < $1",
        )
        .bind(millis(before + IDLE_MARGIN))
        .fetch_all(&mut *tx)
        .await?;
        let mut rollup = Rollup::default();
        for row in &idle {
            let pair: Pair = (row.try_get(0)?, row.try_get(1)?);
            let cleared = sqlx::query(
                "UPDATE check_state SET open_step = NULL \
                 WHERE check_name = $1 AND subscription = $2 AND updated_at = $3",
            )
            .bind(&pair.0)
            .bind(&pair.1)
            .bind(row.try_get::<i64, _>(3)?)
            .execute(&mut *tx)
            .await?;
            if cleared.rows_affected() == 1 {
                rollup.close(&pair, decode(&row.try_get::<String, _>(2)?)?, None);
            }
        }
        if !idle.is_empty() {
            tracing::debug!(pairs = idle.len(), "open latency steps of idle pairs closed");
        }
        rollup.write(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn read_open_step(
    conn: &mut AnyConnection,
    check: &str,
    subscription: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT open_step FROM check_state WHERE check_name = $1 AND subscription = $2")
        .bind(check)
        .bind(subscription)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|row| row.try_get::<Option<String>, _>(0)).transpose()?.flatten())
}

/// The open step stored as JSON.
pub(super) fn decode(json: &str) -> Result<Step, StoreError> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt { what: "open latency step", source })
}
