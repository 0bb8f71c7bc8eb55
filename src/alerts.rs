//! Wiring of the alerting handler: the state store, the notifiers and the
//! periodic work (outbox sender, keepalive watch), shared by `picket handler`
//! and `picket standalone`.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use handlers::alerting::{Alerting, AlertingConfig, EventHook, LateAfter, Reloading, SenderPolicy};
use handlers::notify::Notifiers;
use handlers::series::{CheckSeries, DEFAULT_STALE_AFTER, LabelName};
use handlers::store::{HistoryRetention, Store, StoreConfig};
use protocol::definition::MaintenanceWindow;
use protocol::metrics::OutboxGauges;
use protocol::{Catalog, HumanDuration};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Failure;

/// How often lost runners are looked for.
const TICK_EVERY: Duration = Duration::from_secs(1);

/// How often the outbox gauges on `/metrics` are refreshed.
const OUTBOX_GAUGES_EVERY: Duration = Duration::from_secs(5);

#[derive(Args, Clone, Debug)]
pub struct StateArgs {
    /// `sqlite://PATH` or `postgres://user@host/db`; default a SQLite file in PICKET_STATE_DIR.
    #[arg(long, env = "PICKET_STATE_URL", hide_env_values = true)]
    pub state_url: Option<String>,
    /// Directory of the embedded SQLite store.
    #[arg(long, env = "PICKET_STATE_DIR", default_value = ".picket")]
    pub state_dir: PathBuf,
    /// PostgreSQL schema of picket's tables (default `picket`).
    #[arg(long, env = "PICKET_STATE_SCHEMA")]
    pub state_schema: Option<String>,
    /// How long the event log is kept (pruned hourly).
    #[arg(long, env = "PICKET_EVENT_RETENTION", default_value = "90d")]
    pub event_retention: HumanDuration,
    /// How long one-minute latency steps are kept (pruned hourly).
    #[arg(long, env = "PICKET_HISTORY_MINUTES_KEEP", default_value = "48h")]
    pub history_minutes_keep: HumanDuration,
    /// How long hourly latency steps are kept (pruned hourly).
    #[arg(long, env = "PICKET_HISTORY_HOURS_KEEP", default_value = "90d")]
    pub history_hours_keep: HumanDuration,
    /// Check labels copied onto the per-check series (`team,service`).
    #[arg(long, env = "PICKET_METRIC_LABELS")]
    pub metric_labels: Option<String>,
    /// A result reaching the handler more than this many of its check's
    /// periods after its slot is late: it updates the state, and only its
    /// resolve is notified.
    #[arg(long, env = "PICKET_LATE_AFTER_PERIODS", default_value = "2")]
    pub late_after_periods: f64,
}

impl StateArgs {
    fn store_config(&self) -> Result<StoreConfig, Failure> {
        let url = match &self.state_url {
            Some(url) if !url.is_empty() => url.clone(),
            _ => format!("sqlite://{}", self.state_dir.join("state.db").display()),
        };
        let known = ["sqlite://", "postgres://", "postgresql://"].iter().any(|p| url.starts_with(p));
        if !known {
            return Err(Failure::Config(anyhow!("PICKET_STATE_URL must start with sqlite:// or postgres://")));
        }
        let config = StoreConfig::new(url);
        Ok(match &self.state_schema {
            Some(schema) => config.with_schema(schema.clone()),
            None => config,
        })
    }
}

/// What alerting takes from the definitions directory and a reload
/// replaces: the notifiers of the handlers checks name (secrets resolved),
/// and the maintenance windows.
pub struct AlertingDefinitions {
    notifiers: Notifiers,
    windows: Arc<[MaintenanceWindow]>,
    /// The checks defined: one a reload removes leaves `/metrics` then.
    checks: HashSet<String>,
}

impl AlertingDefinitions {
    /// Fails on a handler whose secret cannot be read: a reload with it is
    /// refused like an invalid file.
    pub fn new(catalog: &Catalog) -> Result<Self, Failure> {
        let notifiers =
            Notifiers::build(&catalog.handlers, &named_handlers(catalog)).map_err(|e| Failure::Config(e.into()))?;
        let checks = catalog.checks.iter().map(|check| check.name().to_owned()).collect();
        Ok(Self { notifiers, windows: catalog.windows.clone().into(), checks })
    }
}

/// The handlers some check names.
fn named_handlers(catalog: &Catalog) -> BTreeSet<String> {
    catalog.checks.iter().flat_map(|c| c.common.handlers.iter().cloned()).collect()
}

/// Everything alerting needs, checked before any socket opens: secrets
/// resolved, store URL valid.
pub struct AlertingPlan {
    definitions: AlertingDefinitions,
    series: CheckSeries,
    fleet_handlers: Vec<String>,
    store: StoreConfig,
    keep_events: Duration,
    keep_history: HistoryRetention,
    late_after: LateAfter,
}

impl AlertingPlan {
    /// The per-check series, to register on `/metrics` before alerting starts.
    pub fn series(&self) -> &CheckSeries {
        &self.series
    }

    pub fn new(catalog: &Catalog, state: &StateArgs) -> Result<Self, Failure> {
        let definitions = AlertingDefinitions::new(catalog)?;
        let keep_events = state.event_retention.get();
        if keep_events < Duration::from_secs(3600) {
            return Err(Failure::Config(anyhow!("PICKET_EVENT_RETENTION must be at least 1h")));
        }
        let keep_history =
            HistoryRetention { minutes: state.history_minutes_keep.get(), hours: state.history_hours_keep.get() };
        for (setting, keep) in
            [("PICKET_HISTORY_MINUTES_KEEP", keep_history.minutes), ("PICKET_HISTORY_HOURS_KEEP", keep_history.hours)]
        {
            if keep < Duration::from_secs(3600) {
                return Err(Failure::Config(anyhow!("{setting} must be at least 1h")));
            }
        }
        let late_after = LateAfter::periods(state.late_after_periods)
            .map_err(|e| Failure::Config(anyhow!("PICKET_LATE_AFTER_PERIODS: {e}")))?;
        let labels = LabelName::parse_list(state.metric_labels.as_deref().unwrap_or_default())
            .map_err(|e| Failure::Config(anyhow!("PICKET_METRIC_LABELS: {e}")))?;
        Ok(Self {
            definitions,
            series: CheckSeries::new(labels, DEFAULT_STALE_AFTER),
            fleet_handlers: named_handlers(catalog).into_iter().collect(),
            store: state.store_config()?,
            keep_events,
            keep_history,
            late_after,
        })
    }
}

/// The running alerting sink and its background tasks.
pub struct Running {
    pub alerting: Arc<Alerting<Reloading<Notifiers>>>,
    /// The same store, for the operator API's reads.
    pub store: Store,
    /// Where reloaded definitions go.
    pub live: Arc<Live>,
    tasks: Vec<JoinHandle<()>>,
}

/// The definitions in force, which a reload replaces.
pub struct Live {
    notifiers: watch::Sender<Arc<Notifiers>>,
    windows: watch::Sender<Arc<[MaintenanceWindow]>>,
    checks: std::sync::Mutex<HashSet<String>>,
    series: CheckSeries,
}

impl Live {
    /// Swaps in reloaded definitions: deliveries from now on use the new
    /// notifiers, and the windows' receivers see the new windows.
    pub fn apply(&self, definitions: AlertingDefinitions) {
        tracing::info!(windows = definitions.windows.len(), "alerting definitions reloaded");
        self.notifiers.send_replace(Arc::new(definitions.notifiers));
        self.windows.send_replace(definitions.windows);
        let mut checks = self.checks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let removed: HashSet<String> = checks.difference(&definitions.checks).cloned().collect();
        if !removed.is_empty() {
            tracing::info!(checks = removed.len(), "checks removed: their series leave /metrics");
        }
        self.series.reloaded(&removed, &definitions.checks);
        *checks = definitions.checks;
    }

    /// The windows in force, following reloads: what the operator API shows.
    pub fn windows(&self) -> watch::Receiver<Arc<[MaintenanceWindow]>> {
        self.windows.subscribe()
    }
}

pub async fn start(
    plan: AlertingPlan,
    on_event: Option<EventHook>,
    outbox: OutboxGauges,
    stop: CancellationToken,
) -> Result<Running, Failure> {
    let store = Store::open(&plan.store).await.map_err(|e| Failure::Runtime(anyhow!("state store: {e}")))?;
    let (notifiers, notifiers_rx) = watch::channel(Arc::new(plan.definitions.notifiers));
    let (windows, windows_rx) = watch::channel(plan.definitions.windows);
    let mut tasks = vec![tokio::spawn(crate::windows::log_openings(windows_rx.clone(), stop.clone()))];
    let config = AlertingConfig {
        fleet_handlers: plan.fleet_handlers,
        on_event,
        series: plan.series.clone(),
        windows: windows_rx,
        late_after: plan.late_after,
        ..AlertingConfig::default()
    };
    let alerting = Alerting::start(store.clone(), Arc::new(Reloading::new(notifiers_rx)), config)
        .await
        .map_err(|e| Failure::Runtime(anyhow!("state store: {e}")))?;
    let alerting = Arc::new(alerting);
    let sender = alerting.outbox_sender(SenderPolicy {
        keep_events: plan.keep_events,
        keep_history: plan.keep_history,
        ..SenderPolicy::default()
    });
    tasks.push(tokio::spawn(sender.run(stop.clone())));
    let ticking = alerting.clone();
    tasks.push(tokio::spawn(watch_outbox(store.clone(), outbox, stop.clone())));
    tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = ticking.tick(chrono::Utc::now()).await {
                tracing::warn!(error = %e, "keepalive watch failed");
            }
        }
    }));
    let checks = std::sync::Mutex::new(plan.definitions.checks);
    let live = Live { notifiers, windows, checks, series: plan.series };
    Ok(Running { alerting, store, live: Arc::new(live), tasks })
}

/// Keeps the outbox gauges current until `stop`.
async fn watch_outbox(store: Store, gauges: OutboxGauges, stop: CancellationToken) {
    let mut every = tokio::time::interval(OUTBOX_GAUGES_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        match tokio::try_join!(store.outbox_pending(), store.oldest_pending_notification()) {
            Ok((pending, oldest)) => {
                gauges.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
                let waited =
                    oldest.map_or(0.0, |at| (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0);
                gauges.oldest_pending_seconds.set(waited);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the outbox backlog"),
        }
    }
}

impl Running {
    /// Waits for the background tasks (stopped by the token given to `start`).
    pub async fn finish(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Standalone's event printer: one line per committed event.
pub fn print_events() -> EventHook {
    Arc::new(|event| {
        println!(
            "{}  EVENT {:<15} {:<24} {:<12} {:<8} {}{}",
            event.occurred_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            event.kind.as_str(),
            event.check,
            event.subscription,
            event.status.name(),
            event.output,
            match event.silenced_by.as_slice() {
                [] => String::new(),
                ids => format!("  (silenced by {})", ids.join(", ")),
            }
        );
    })
}
