//! `GET /api/v1/runners`: every runner the store knows, and its pools.
//!
//! A runner is known while it sends keepalives (the `runners` table) and
//! while it is lost (`lost_runners`); one that stopped cleanly is forgotten.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use handlers::store::{Store, StoreError};
use serde::Serialize;

use crate::errors::ApiError;

#[derive(Serialize)]
pub struct Runners {
    /// By name.
    runners: Vec<RunnerView>,
    /// By subscription.
    pools: Vec<Pool>,
}

#[derive(Serialize)]
struct RunnerView {
    runner: String,
    subscriptions: Vec<String>,
    interval_secs: u64,
    /// The last keepalive, on the clock of the handler that heard it.
    last_seen: Option<DateTime<Utc>>,
    /// When it was declared lost; `None` while it is heard.
    lost_since: Option<DateTime<Utc>>,
}

/// The runners serving one subscription.
#[derive(Clone, Serialize)]
pub struct Pool {
    pub subscription: String,
    /// Runners known, the lost ones included.
    pub runners: u32,
    pub lost: u32,
}

fn split(subscriptions: &str) -> Vec<String> {
    subscriptions.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

pub async fn load(store: &Store) -> Result<Runners, StoreError> {
    let mut runners: BTreeMap<String, RunnerView> = BTreeMap::new();
    for seen in store.runners().await? {
        runners.insert(
            seen.runner.clone(),
            RunnerView {
                subscriptions: split(&seen.subscriptions),
                interval_secs: seen.interval_secs,
                last_seen: Some(seen.last_seen),
                lost_since: None,
                runner: seen.runner,
            },
        );
    }
    for lost in store.lost_runners().await? {
        let runner = runners.entry(lost.runner.clone()).or_insert_with(|| RunnerView {
            subscriptions: split(&lost.subscriptions),
            interval_secs: lost.interval_secs,
            last_seen: None,
            lost_since: None,
            runner: lost.runner,
        });
        runner.lost_since = Some(lost.since);
    }
    let mut pools: BTreeMap<&str, Pool> = BTreeMap::new();
    for runner in runners.values() {
        for subscription in &runner.subscriptions {
            let pool = pools.entry(subscription).or_insert_with(|| Pool {
                subscription: subscription.clone(),
                runners: 0,
                lost: 0,
            });
            pool.runners += 1;
            pool.lost += u32::from(runner.lost_since.is_some());
        }
    }
    let pools = pools.into_values().collect();
    Ok(Runners { runners: runners.into_values().collect(), pools })
}

impl Runners {
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }
}

pub(crate) async fn list(State(store): State<Store>) -> Result<Json<Runners>, ApiError> {
    Ok(Json(load(&store).await?))
}
