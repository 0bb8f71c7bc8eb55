//! `picket scheduler`: loads the checks, holds the leader lock, publishes
//! requests on schedule, reloads on SIGHUP or file changes, and reports queue
//! depth (the autoscaling signal).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use amqp::AmqpTransport;
use clap::Args;
use protocol::Catalog;
use protocol::metrics::{self, Metrics};
use scheduler::publisher::CheckSet;
use scheduler::{Scheduler, SchedulerConfig};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::broker::BrokerArgs;

/// How often a standby tries to take the leader lock.
const STANDBY_RETRY: Duration = Duration::from_secs(2);
const DEPTH_EVERY: Duration = Duration::from_secs(10);

#[derive(Args, Clone, Debug)]
pub struct SchedulerRoleArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory of definition files; reloaded on SIGHUP and when a file changes.
    #[arg(long, env = "PICKET_CHECKS", default_value = "checks")]
    pub checks: PathBuf,
    #[arg(long, env = "PICKET_LISTEN", default_value = "0.0.0.0:9750")]
    pub listen: SocketAddr,
    /// Also print queue depth as CloudWatch Embedded Metric Format lines on stdout.
    #[arg(long, env = "PICKET_EMF", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new())]
    pub emf: bool,
}

pub async fn run(args: SchedulerRoleArgs) -> Result<ExitCode, Failure> {
    let instance = crate::config::host_name();
    let config = args.broker.config(format!("picket-scheduler-{instance}-{}", std::process::id()))?;
    let catalog = crate::definitions::load_checks(&args.checks)?;
    let (registry, metrics) = Metrics::standalone();
    let role = super::Role::start(config, args.listen, registry, super::connected, axum::Router::new()).await?;
    let (stop, transport) = (role.stop.clone(), role.transport.clone());

    let (catalog_tx, catalog_rx) = watch::channel(CheckSet::from(catalog.checks));
    let apply = move |catalog: Catalog| {
        tracing::info!(checks = catalog.checks.len(), "reloaded");
        catalog_tx.send_replace(CheckSet::from(catalog.checks));
    };
    tokio::spawn(crate::definitions::watch(args.checks.clone(), crate::definitions::load_checks, apply, stop.clone()));
    let scheduler = Scheduler::new(transport.clone(), SchedulerConfig { instance: instance.clone() }, metrics.clone());
    loop {
        let attempt = tokio::select! {
            // Stop first: a lock attempt dropped halfway leaves a channel
            // opening while the connection closes, which lapin logs as an error.
            biased;
            () = stop.cancelled() => break,
            attempt = transport.try_lock() => attempt,
        };
        match attempt {
            Ok(Some(lock)) => {
                tracing::info!(scheduler = %instance, "leader: publishing requests");
                let lead = stop.child_token();
                let depth = tokio::spawn(report_depth(
                    transport.clone(),
                    catalog_rx.clone(),
                    metrics.clone(),
                    args.emf,
                    lead.clone(),
                ));
                tokio::select! {
                    () = scheduler.run(catalog_rx.clone(), lead.clone()) => {}
                    () = lock.lost() => tracing::warn!("leadership lost with the broker connection"),
                }
                lead.cancel();
                let _ = depth.await;
                lock.release().await;
            }
            Ok(None) => {
                tracing::debug!("standby: another scheduler holds the lock");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(STANDBY_RETRY) => {}
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot try the leader lock yet");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(STANDBY_RETRY) => {}
                }
            }
        }
    }
    role.finish().await;
    tracing::info!(published = scheduler.published(), "scheduler stopped");
    Ok(ExitCode::SUCCESS)
}

/// Reads each subscription queue every 10 s: depth, consumers, backlog per runner.
async fn report_depth(
    transport: AmqpTransport,
    catalog: watch::Receiver<CheckSet>,
    metrics: Metrics,
    emf: bool,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(DEPTH_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let mut subscriptions: Vec<String> =
            catalog.borrow().iter().flat_map(|c| c.subscriptions().into_iter().map(str::to_owned)).collect();
        subscriptions.sort();
        subscriptions.dedup();
        for subscription in subscriptions {
            let (depth, consumers) = match transport.queue_depth(&subscription).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(%subscription, error = %e, "cannot read queue depth");
                    continue;
                }
            };
            let backlog = f64::from(depth) / f64::from(consumers.max(1));
            let labels = metrics::subscription(&subscription);
            metrics.queue_depth.get_or_create(&labels).set(i64::from(depth));
            metrics.queue_consumers.get_or_create(&labels).set(i64::from(consumers));
            metrics.backlog_per_runner.get_or_create(&labels).set(backlog);
            if emf {
                println!("{}", emf_line(&subscription, depth, consumers, backlog));
            }
        }
    }
}

/// A CloudWatch Embedded Metric Format record; the awslogs driver turns it
/// into the `picket/BacklogPerRunner` metric the runner service scales on.
fn emf_line(subscription: &str, depth: u32, consumers: u32, backlog: f64) -> serde_json::Value {
    json!({
        "_aws": {
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "picket",
                "Dimensions": [["Subscription"]],
                "Metrics": [
                    { "Name": "QueueDepth", "Unit": "Count" },
                    { "Name": "Consumers", "Unit": "Count" },
                    { "Name": "BacklogPerRunner", "Unit": "Count" }
                ]
            }]
        },
        "Subscription": subscription,
        "QueueDepth": depth,
        "Consumers": consumers,
        "BacklogPerRunner": backlog
    })
}
