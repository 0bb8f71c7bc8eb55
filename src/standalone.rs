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
use crate::alerts::{AlertingPlan, StateArgs};
use crate::config::RunnerArgs;

/// Everything standalone needs, validated before any socket is opened.
pub struct Plan {
    checks_dir: PathBuf,
    catalog: Catalog,
    alerting: AlertingPlan,
    runner: RunnerArgs,
    listen: SocketAddr,
}

impl Plan {
    pub fn new(checks_dir: &Path, runner: RunnerArgs, state: &StateArgs, listen: SocketAddr) -> Result<Self, Failure> {
        runner.validate()?;
        let catalog = Catalog::load_dir(checks_dir).map_err(|e| match e {
            e @ protocol::definition::CatalogError::Io { .. } => Failure::Config(e.into()),
            e => Failure::Data(e.into()),
        })?;
        if catalog.checks.is_empty() {
            return Err(Failure::Data(anyhow!("no checks found under {}", checks_dir.display())));
        }
        let alerting = AlertingPlan::new(&catalog, state)?;
        Ok(Self { checks_dir: checks_dir.to_owned(), catalog, alerting, runner, listen })
    }
}

pub async fn run(plan: Plan) -> Result<ExitCode, Failure> {
    let (mut registry, metrics) = Metrics::standalone();
    let series = handlers::series::CheckSeries::default();
    registry.register_collector(Box::new(series.clone()));
    let outbox = protocol::metrics::OutboxGauges::register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    let stop_scheduling = CancellationToken::new();
    crate::shutdown::on_signal(stop_scheduling.clone()).context("cannot install signal handlers")?;

    let transport = MemoryTransport::new();
    let executor = Arc::new(plan.runner.executor(&metrics)?);
    let mut subscriptions: Vec<String> =
        plan.catalog.checks.iter().flat_map(|c| c.subscriptions().into_iter().map(str::to_owned)).collect();
    subscriptions.sort();
    subscriptions.dedup();
    let pool = RunnerPool::new(
        transport.clone(),
        executor,
        RunnerConfig {
            name: plan.runner.runner_name(),
            subscriptions,
            concurrency: plan.runner.concurrency,
            drain_timeout: plan.runner.drain_timeout(),
        },
        metrics.clone(),
    );
    let scheduler =
        Scheduler::new(transport.clone(), SchedulerConfig { instance: crate::config::host_name() }, metrics);
    let (_catalog_tx, catalog_rx) = watch::channel(CheckSet::from(plan.catalog.checks.clone()));

    tracing::info!(
        checks = plan.catalog.checks.len(),
        dir = %plan.checks_dir.display(),
        "standalone: scheduling"
    );
    let stop_running = CancellationToken::new();
    let stop_handling = CancellationToken::new();
    let stop_alerting = CancellationToken::new();
    let alerts =
        crate::alerts::start(plan.alerting, Some(crate::alerts::print_events()), series, outbox, stop_alerting.clone())
            .await?;
    let stop_serving = CancellationToken::new();
    let routes = api::router(alerts.store.clone());
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
