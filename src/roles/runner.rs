//! `picket runner`: consumes requests for its subscriptions, runs checks,
//! publishes results and keepalives. SIGTERM drains in-flight checks.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use amqp::AmqpTransport;
use chrono::Utc;
use clap::Args;
use protocol::HumanDuration;
use protocol::message::Keepalive;
use protocol::metrics::Metrics;
use protocol::transport::Transport;
use runner::pool::RunnerStats;
use runner::{RunnerConfig, RunnerPool};
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::broker::BrokerArgs;
use crate::config::RunnerArgs;

#[derive(Args, Clone, Debug)]
pub struct RunnerRoleArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub runner: RunnerArgs,
    /// Runner pools to join (comma-separated).
    #[arg(long, env = "PICKET_SUBSCRIPTIONS", default_value = "default", value_delimiter = ',')]
    pub subscriptions: Vec<String>,
    /// Period of keepalives; the handler declares a runner lost after 3 missed.
    #[arg(long, env = "PICKET_KEEPALIVE_INTERVAL", default_value = "10s")]
    pub keepalive_interval: HumanDuration,
    #[arg(long, env = "PICKET_LISTEN", default_value = "0.0.0.0:9750")]
    pub listen: SocketAddr,
}

pub async fn run(args: RunnerRoleArgs) -> Result<ExitCode, Failure> {
    args.runner.validate()?;
    let name = args.runner.runner_name();
    let config = args.broker.config(format!("picket-runner-{name}"))?;
    let subscriptions: Vec<String> =
        args.subscriptions.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    if subscriptions.is_empty() {
        return Err(Failure::Config(anyhow::anyhow!("PICKET_SUBSCRIPTIONS names no subscription")));
    }
    if args.keepalive_interval.get() < Duration::from_secs(1) {
        return Err(Failure::Config(anyhow::anyhow!("PICKET_KEEPALIVE_INTERVAL must be at least 1s")));
    }
    let (registry, metrics) = Metrics::standalone();
    let role = super::Role::start(config, args.listen, registry, super::connected, axum::Router::new()).await?;
    let transport = role.transport.clone();

    let executor = Arc::new(args.runner.executor(&metrics)?);
    let pool = RunnerPool::new(
        transport.clone(),
        executor,
        RunnerConfig {
            name: name.clone(),
            subscriptions: subscriptions.clone(),
            concurrency: args.runner.concurrency,
            drain_timeout: args.runner.drain_timeout(),
        },
        metrics,
    );
    let keepalive = Keepalive {
        runner: name.clone(),
        subscriptions: subscriptions.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: Utc::now(),
        in_flight: 0,
        executed: 0,
        interval: args.keepalive_interval.get().as_secs(),
        stopping: false,
    };
    let keepalives = tokio::spawn(send_keepalives(
        transport.clone(),
        pool.stats(),
        keepalive.clone(),
        args.keepalive_interval.get(),
        role.stop.clone(),
    ));
    tracing::info!(runner = %name, subscriptions = ?subscriptions, concurrency = args.runner.concurrency, "runner starting");
    // The consumer waits for the broker and resubscribes after reconnects on its own.
    pool.run(role.stop.clone()).await.map_err(|e| Failure::Runtime(e.into()))?;
    let _ = keepalives.await;
    let farewell = Keepalive { stopping: true, ..stamped(keepalive, &pool.stats()) };
    if let Err(e) = transport.publish_keepalive(&farewell).await {
        tracing::warn!(error = %e, "last keepalive not published; the handler will report this runner lost");
    }
    role.finish().await;
    tracing::info!(runner = %name, "runner stopped");
    Ok(ExitCode::SUCCESS)
}

async fn send_keepalives(
    transport: AmqpTransport,
    stats: Arc<RunnerStats>,
    mut keepalive: Keepalive,
    every: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        keepalive = stamped(keepalive, &stats);
        if let Err(e) = transport.publish_keepalive(&keepalive).await {
            tracing::warn!(error = %e, "keepalive not published");
        }
    }
}

/// `keepalive` with the pool's counters as they are now.
fn stamped(keepalive: Keepalive, stats: &RunnerStats) -> Keepalive {
    Keepalive {
        in_flight: stats.in_flight.load(Ordering::Relaxed),
        executed: stats.executed.load(Ordering::Relaxed),
        ..keepalive
    }
}
