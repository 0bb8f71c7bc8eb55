//! `picket standalone`: scheduler, runner pool and handler in one process over
//! the in-memory transport. Shutdown runs in order: stop scheduling, let the
//! runner drain its in-flight checks, then let the handler settle the last
//! results.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, anyhow};
use handlers::{Both, Console, SinkHealth};
use protocol::Catalog;
use protocol::metrics::Metrics;
use protocol::transport::memory::MemoryTransport;
use runner::{RunnerConfig, RunnerPool};
use scheduler::publisher::CheckSet;
use scheduler::{Scheduler, SchedulerConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::alerts::{AlertingDefinitions, AlertingPlan, StateArgs};
use crate::config::{ApiArgs, RunnerArgs};

/// Everything standalone needs, validated before any socket is opened.
pub struct Plan {
    checks_dir: PathBuf,
    catalog: Catalog,
    alerting: AlertingPlan,
    runner: RunnerArgs,
    listen: SocketAddr,
    api: api::ApiAuth,
}

impl Plan {
    pub fn new(
        checks_dir: &Path,
        runner: RunnerArgs,
        state: &StateArgs,
        listen: SocketAddr,
        api: &ApiArgs,
    ) -> Result<Self, Failure> {
        runner.validate()?;
        let api = api.auth()?;
        let catalog = crate::definitions::load_checks(checks_dir)?;
        let alerting = AlertingPlan::new(&catalog, state)?;
        Ok(Self { checks_dir: checks_dir.to_owned(), catalog, alerting, runner, listen, api })
    }
}

pub async fn run(plan: Plan) -> Result<ExitCode, Failure> {
    let (mut registry, metrics) = Metrics::standalone();
    registry.register_collector(Box::new(plan.alerting.series().clone()));
    let outbox = protocol::metrics::OutboxGauges::register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    let stop_scheduling = CancellationToken::new();
    crate::shutdown::on_signal(stop_scheduling.clone()).context("cannot install signal handlers")?;

    let transport = MemoryTransport::new();
    let executor = Arc::new(plan.runner.executor(&metrics)?);
    let subscriptions = subscriptions(&plan.catalog);
    let pool = RunnerPool::new(
        transport.clone(),
        executor,
        RunnerConfig {
            name: plan.runner.runner_name(),
            subscriptions: subscriptions.clone(),
            concurrency: plan.runner.concurrency,
            drain_timeout: plan.runner.drain_timeout(),
        },
        metrics.clone(),
    );
    let scheduler =
        Scheduler::new(transport.clone(), SchedulerConfig { instance: crate::config::host_name() }, metrics);
    let (catalog_tx, catalog_rx) = watch::channel(CheckSet::from(plan.catalog.checks.clone()));

    tracing::info!(
        checks = plan.catalog.checks.len(),
        dir = %plan.checks_dir.display(),
        "standalone: scheduling"
    );
    let stop_running = CancellationToken::new();
    let stop_handling = CancellationToken::new();
    let stop_alerting = CancellationToken::new();
    let alerts =
        crate::alerts::start(plan.alerting, Some(crate::alerts::print_events()), outbox, stop_alerting.clone()).await?;
    tokio::spawn(reload(
        plan.checks_dir.clone(),
        subscriptions,
        catalog_tx,
        alerts.live.clone(),
        stop_scheduling.clone(),
    ));
    let stop_serving = CancellationToken::new();
    let routes = api::router(alerts.store.clone(), plan.api.clone(), alerts.live.windows()).merge(web::router(
        alerts.store.clone(),
        plan.api,
        alerts.live.windows(),
    ));
    let server =
        crate::serve::bind(plan.listen, registry, crate::serve::flag(ready.clone()), routes, stop_serving.clone())
            .await?;
    let server = tokio::spawn(server);
    let sink = Arc::new(Both(Console::new(std::io::stdout()), alerts.alerting.clone()));
    let handler = {
        let transport = transport.clone();
        let stop = stop_handling.clone();
        async move { handlers::consume(&transport, sink, SinkHealth::default(), stop).await }
    };
    let handler = tokio::spawn(handler);
    let runner = {
        let stop = stop_running.clone();
        tokio::spawn(async move { pool.run(stop).await })
    };
    ready.store(true, std::sync::atomic::Ordering::Relaxed);

    scheduler.run(catalog_rx, stop_scheduling).await;
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    stop_running.cancel();
    runner.await.context("runner task panicked")?.map_err(|e| Failure::Runtime(e.into()))?;
    stop_handling.cancel();
    handler.await.context("handler task panicked")?.map_err(|e| Failure::Runtime(e.into()))?;
    stop_alerting.cancel();
    alerts.finish().await;
    stop_serving.cancel();
    let _ = server.await;
    tracing::info!("standalone: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The runner pools the checks use. The in-process runner serves those it
/// started with.
fn subscriptions(catalog: &Catalog) -> Vec<String> {
    let mut subscriptions: Vec<String> =
        catalog.checks.iter().flat_map(|c| c.subscriptions().into_iter().map(str::to_owned)).collect();
    subscriptions.sort();
    subscriptions.dedup();
    subscriptions
}

/// Reloads checks, notifiers and windows together, or none of them. A set
/// with a subscription the runner does not serve is refused: its checks
/// would never run.
async fn reload(
    dir: PathBuf,
    served: Vec<String>,
    checks: watch::Sender<CheckSet>,
    live: Arc<crate::alerts::Live>,
    stop: CancellationToken,
) {
    let load = move |dir: &Path| {
        let catalog = crate::definitions::load_checks(dir)?;
        let new: Vec<String> = subscriptions(&catalog).into_iter().filter(|s| !served.contains(s)).collect();
        if !new.is_empty() {
            return Err(Failure::Data(anyhow!(
                "subscription(s) {} are new; picket standalone runs the subscriptions it started with ({}): restart it",
                new.join(", "),
                served.join(", ")
            )));
        }
        Ok((AlertingDefinitions::new(&catalog)?, catalog))
    };
    let apply = move |(definitions, catalog): (AlertingDefinitions, Catalog)| {
        tracing::info!(checks = catalog.checks.len(), "reloaded");
        checks.send_replace(CheckSet::from(catalog.checks));
        live.apply(definitions);
    };
    crate::definitions::watch(dir, load, apply, stop).await;
}
