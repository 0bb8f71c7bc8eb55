//! The latency history on both backends: steps merge across batches, the
//! percentiles of a known series, pruning by step size and age.

use protocol::{CheckResult, Status};
use sqlx::Row;

use super::testing::{at, count, on_both_backends, result};
use super::{Durations, StepSize, Store, StoreConfig};

/// `at(40)` starts a minute, `at(-800)` the hour holding it.
const MINUTE: i64 = 40;
const HOUR: i64 = -800;

fn timed(slot: i64, status: Status, duration_ms: u64, dns_ms: f64) -> CheckResult {
    let metrics = [("dns".to_owned(), dns_ms), ("total".to_owned(), duration_ms as f64)].into();
    CheckResult { duration_ms, metrics, ..result("web", slot, status) }
}

/// Counts runs of pairs without a state row: their steps go to the rows at
/// commit, as nothing else could hold them.
async fn commit_runs(store: &Store, results: &[CheckResult]) {
    let mut batch = store.begin().await.unwrap();
    for result in results {
        batch.count_run(result).await.unwrap();
    }
    batch.commit().await.unwrap();
}

/// Counts runs as the sink does: each pair's state read, then written.
async fn commit_with_states(store: &Store, results: &[CheckResult]) {
    let mut batch = store.begin().await.unwrap();
    for result in results {
        let state = batch.state(&result.check, &result.subscription).await.unwrap().unwrap_or_default();
        batch.count_run(result).await.unwrap();
        batch.put_state(&result.check, &result.subscription, &state, at(0)).await.unwrap();
    }
    batch.commit().await.unwrap();
}

/// (runs, max ms) of each step of `size`.
async fn shape(store: &Store, size: StepSize, since: i64) -> Vec<(u64, Option<u64>)> {
    let steps = store.history("web", "default", size, at(since)).await.unwrap();
    steps.iter().map(|step| (step.runs, step.total.max())).collect()
}

#[test]
fn percentiles_are_nearest_rank_of_the_merged_counts() {
    let mut first = Durations::default();
    for ms in [5, 1, 3, 2, 4] {
        first.add(ms);
    }
    let mut second = Durations::default();
    for ms in [10, 9, 8, 7, 6, 100, 12, 13, 11, 14, 15, 16, 17, 18, 19] {
        second.add(ms);
    }
    first.merge(&second);
    // 1..=19 and 100: twenty runs.
    assert_eq!(first.count(), 20);
    assert_eq!(first.quantile(0.5), Some(10));
    assert_eq!(first.quantile(0.95), Some(19));
    assert_eq!(first.max(), Some(100));
    assert_eq!(Durations::default().quantile(0.5), None);
    let mut one = Durations::default();
    one.add(7);
    assert_eq!((one.quantile(0.5), one.quantile(0.95), one.max()), (Some(7), Some(7), Some(7)));
}

on_both_backends!(
    runs_of_two_batches_land_in_one_step,
    steps_are_pruned_by_size_and_age,
    histories_of_several_pairs_are_one_read,
    a_store_with_the_history_off_counts_no_runs,
    the_open_minute_rides_in_the_state_row_until_a_later_minute_closes_it,
    pruning_minutes_first_closes_the_open_steps_of_idle_pairs
);

async fn runs_of_two_batches_land_in_one_step(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    commit_runs(&store, &[timed(MINUTE, Status::Ok, 10, 1.0), timed(MINUTE + 10, Status::Critical, 30, 2.4)]).await;
    commit_runs(&store, &[timed(MINUTE + 20, Status::Warning, 20, 2.6), timed(MINUTE + 59, Status::Unknown, 40, 4.0)])
        .await;
    commit_runs(&store, &[timed(MINUTE + 60, Status::Ok, 50, 5.0)]).await;

    let minutes = store.history("web", "default", StepSize::Minute, at(MINUTE)).await.unwrap();
    let starts: Vec<_> = minutes.iter().map(|step| step.start).collect();
    assert_eq!(starts, [at(MINUTE), at(MINUTE + 60)]);
    let step = &minutes[0];
    assert_eq!((step.runs, step.warning, step.critical, step.unknown, step.ok()), (4, 1, 1, 1, 1));
    assert_eq!((step.total.quantile(0.5), step.total.quantile(0.95), step.total.max()), (Some(20), Some(40), Some(40)));
    let dns = &step.phases["dns"];
    assert_eq!((dns.count(), dns.quantile(0.5), dns.max()), (4, Some(2), Some(4)), "rounded to whole ms");
    assert!(!step.phases.contains_key("tls"), "only phases the results carried");

    let hours = store.history("web", "default", StepSize::Hour, at(HOUR)).await.unwrap();
    assert_eq!(hours.len(), 1);
    assert_eq!((hours[0].start, hours[0].runs, hours[0].total.max()), (at(HOUR), 5, Some(50)));
    assert!(store.history("web", "other", StepSize::Minute, at(0)).await.unwrap().is_empty());
    store.close().await;
}

async fn steps_are_pruned_by_size_and_age(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    commit_runs(&store, &[timed(MINUTE, Status::Ok, 10, 1.0), timed(MINUTE + 120, Status::Ok, 10, 1.0)]).await;
    assert_eq!(store.prune_history(StepSize::Minute, at(MINUTE + 60)).await.unwrap(), 1);
    let minutes = store.history("web", "default", StepSize::Minute, at(0)).await.unwrap();
    assert_eq!(minutes.iter().map(|step| step.start).collect::<Vec<_>>(), [at(MINUTE + 120)]);
    assert_eq!(store.history("web", "default", StepSize::Hour, at(HOUR)).await.unwrap()[0].runs, 2, "hours kept");
    assert_eq!(store.prune_history(StepSize::Hour, at(HOUR + 3600)).await.unwrap(), 1);
    assert!(store.history("web", "default", StepSize::Hour, at(HOUR)).await.unwrap().is_empty());
    store.close().await;
}

async fn histories_of_several_pairs_are_one_read(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    let on = |check: &str, subscription: &str, ms: u64| CheckResult {
        check: check.into(),
        subscription: subscription.into(),
        request_id: format!("{check}/{subscription}"),
        ..timed(MINUTE, Status::Ok, ms, 1.0)
    };
    let runs = [on("web", "eu", 10), on("web", "us", 20), on("db", "eu", 30), on("db", "us", 40)];
    // web/eu's minute is closed into the rows, db/us's still open.
    commit_with_states(&store, &runs).await;
    commit_with_states(&store, &[CheckResult { started_at: at(MINUTE + 60), ..on("web", "eu", 50) }]).await;
    let pairs =
        [("web".to_owned(), "eu".to_owned()), ("db".to_owned(), "us".to_owned()), ("dns".to_owned(), "eu".to_owned())];
    let found = store.histories(&pairs, StepSize::Minute, at(0)).await.unwrap();
    let mut shape: Vec<_> =
        found.iter().map(|(pair, steps)| (pair.clone(), steps.len(), steps[0].total.max())).collect();
    shape.sort();
    assert_eq!(
        shape,
        [(("db".into(), "us".into()), 1, Some(40)), (("web".into(), "eu".into()), 2, Some(10))],
        "web/us and db/eu are not asked for; dns/eu has no steps"
    );
    assert!(store.histories(&[], StepSize::Minute, at(0)).await.unwrap().is_empty());
}

/// The benchmark's switch: the same runs, no step written.
async fn a_store_with_the_history_off_counts_no_runs(config: StoreConfig) {
    let store = Store::open(&StoreConfig { history: false, ..config }).await.unwrap();
    commit_runs(&store, &[timed(MINUTE, Status::Ok, 10, 1.0)]).await;
    commit_with_states(&store, &[timed(MINUTE + 1, Status::Ok, 10, 1.0)]).await;
    assert!(store.history("web", "default", StepSize::Minute, at(0)).await.unwrap().is_empty());
    assert!(store.history("web", "default", StepSize::Hour, at(HOUR)).await.unwrap().is_empty());
    store.close().await;
}

/// A minute's runs stay in the pair's state row, seen by readers, until a
/// run of a later minute closes it into its minute row; an hour's row is
/// the sum of its minutes once the pair's runs leave it; a late run goes to
/// its rows at once. Readers see every run once all along.
async fn the_open_minute_rides_in_the_state_row_until_a_later_minute_closes_it(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    commit_with_states(&store, &[timed(MINUTE, Status::Ok, 10, 1.0)]).await;
    commit_with_states(&store, &[timed(MINUTE + 10, Status::Critical, 30, 1.0)]).await;
    assert_eq!(count(&store, "latency_steps").await, 0, "the open minute is in the state row only");
    assert_eq!(shape(&store, StepSize::Minute, MINUTE).await, [(2, Some(30))]);
    assert_eq!(shape(&store, StepSize::Hour, HOUR).await, [(2, Some(30))]);
    assert!(shape(&store, StepSize::Minute, MINUTE + 60).await.is_empty(), "older than asked for");

    commit_with_states(&store, &[timed(MINUTE + 60, Status::Ok, 20, 1.0)]).await;
    assert_eq!(count(&store, "latency_steps").await, 1, "the closed minute; its hour is still open");
    assert_eq!(shape(&store, StepSize::Minute, MINUTE).await, [(2, Some(30)), (1, Some(20))]);
    assert_eq!(shape(&store, StepSize::Hour, HOUR).await, [(3, Some(30))]);

    // Late: the open minute is MINUTE + 60.
    commit_with_states(&store, &[timed(MINUTE + 30, Status::Warning, 40, 1.0)]).await;
    assert_eq!(shape(&store, StepSize::Minute, MINUTE).await, [(3, Some(40)), (1, Some(20))]);
    assert_eq!(shape(&store, StepSize::Hour, HOUR).await, [(4, Some(40))]);
    let minutes = store.history("web", "default", StepSize::Minute, at(MINUTE)).await.unwrap();
    assert_eq!((minutes[0].warning, minutes[0].critical, minutes[1].ok()), (1, 1, 1));

    // Two minutes in one batch: the first closes within the batch.
    commit_with_states(&store, &[timed(MINUTE + 120, Status::Ok, 5, 1.0), timed(MINUTE + 180, Status::Ok, 6, 1.0)])
        .await;
    assert_eq!(shape(&store, StepSize::Minute, MINUTE + 60).await, [(1, Some(20)), (1, Some(5)), (1, Some(6))]);
    assert_eq!(shape(&store, StepSize::Hour, HOUR).await, [(6, Some(40))]);

    // The next hour: the one left is summed into its row.
    let next_hour = HOUR + 3600;
    commit_with_states(&store, &[timed(next_hour + 1, Status::Ok, 7, 1.0)]).await;
    assert_eq!(hour_rows(&store).await, [(6, Some(40))]);
    assert_eq!(shape(&store, StepSize::Hour, HOUR).await, [(6, Some(40)), (1, Some(7))]);
    // Late into the summed hour: its minute and its hour row both gain it.
    commit_with_states(&store, &[timed(MINUTE + 5, Status::Ok, 50, 1.0)]).await;
    assert_eq!(hour_rows(&store).await, [(7, Some(50))]);
    assert_eq!(shape(&store, StepSize::Minute, MINUTE).await[0], (4, Some(50)));
    assert_eq!(shape(&store, StepSize::Hour, HOUR).await, [(7, Some(50)), (1, Some(7))]);
    store.close().await;
}

/// A pair idle since before the minute retention has its open step closed
/// and its hour summed before its minutes go, so its hour keeps every run;
/// a pair written since keeps its open step.
async fn pruning_minutes_first_closes_the_open_steps_of_idle_pairs(config: StoreConfig) {
    let store = Store::open(&config).await.unwrap();
    // States written at(0): the pair is idle for a cut two hours after.
    commit_with_states(&store, &[timed(MINUTE, Status::Ok, 10, 1.0), timed(MINUTE + 60, Status::Ok, 20, 1.0)]).await;
    assert_eq!(store.prune_history(StepSize::Minute, at(-3 * 3600)).await.unwrap(), 0);
    assert_eq!(count(&store, "latency_steps").await, 1, "recently written: the open step stays");
    assert!(hour_rows(&store).await.is_empty());

    assert_eq!(store.prune_history(StepSize::Minute, at(MINUTE + 3 * 3600)).await.unwrap(), 2);
    assert!(shape(&store, StepSize::Minute, 0).await.is_empty());
    assert_eq!(hour_rows(&store).await, [(2, Some(20))]);
    assert_eq!(shape(&store, StepSize::Hour, HOUR).await, [(2, Some(20))]);
    store.close().await;
}

/// (runs, max ms) of the stored hour rows, as an earlier release reads them.
async fn hour_rows(store: &Store) -> Vec<(u64, Option<u64>)> {
    let rows = sqlx::query("SELECT runs, total FROM latency_steps WHERE step_ms = $1 ORDER BY start_ms")
        .bind(StepSize::Hour.millis())
        .fetch_all(&store.pool)
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let total: Durations = serde_json::from_str(&row.get::<String, _>(1)).unwrap();
            (row.get::<i64, _>(0) as u64, total.max())
        })
        .collect()
}
