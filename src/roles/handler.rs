//! `picket handler`: consumes results, keepalives and dead letters from the
//! broker; the results queue has a single active consumer, so extra handlers
//! stand by.

use std::net::SocketAddr;
use std::process::ExitCode;

use amqp::AmqpTransport;
use clap::Args;
use handlers::json_log::JsonLog;
use handlers::{Both, SinkHealth};
use protocol::metrics::Metrics;
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::alerts::{AlertingDefinitions, AlertingPlan, StateArgs};
use crate::broker::BrokerArgs;
use crate::serve::Readiness;

#[derive(Args, Clone, Debug)]
pub struct HandlerRoleArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Definitions directory: handler definitions, and which handlers checks use.
    #[arg(long, env = "PICKET_CHECKS", default_value = "checks")]
    pub checks: std::path::PathBuf,
    #[arg(long, env = "PICKET_LISTEN", default_value = "0.0.0.0:9750")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub api: crate::config::ApiArgs,
}

pub async fn run(args: HandlerRoleArgs) -> Result<ExitCode, Failure> {
    let auth = args.api.auth()?;
    let instance = crate::config::host_name();
    let config = args.broker.config(format!("picket-handler-{instance}-{}", std::process::id()))?;
    let catalog = crate::definitions::load(&args.checks)?;
    let plan = AlertingPlan::new(&catalog, &args.state)?;
    let (mut registry, metrics) = Metrics::standalone();
    registry.register_collector(Box::new(plan.series().clone()));
    let outbox = protocol::metrics::OutboxGauges::register(&mut registry);
    let stop_alerting = CancellationToken::new();
    let alerts = crate::alerts::start(plan, None, outbox, stop_alerting.clone()).await?;
    let health = SinkHealth::default();
    let ready = |transport: &AmqpTransport| -> Readiness {
        let (transport, health) = (transport.clone(), health.clone());
        std::sync::Arc::new(move || {
            let node = super::broker_node(&transport)?;
            if health.is_healthy() { Ok(node) } else { Err(format!("{node}, the state store is failing")) }
        })
    };
    let routes = api::router(alerts.store.clone(), auth.clone(), alerts.live.windows()).merge(web::router(
        alerts.store.clone(),
        auth,
        alerts.live.windows(),
    ));
    let role = super::Role::start(config, args.listen, registry, ready, routes).await?;
    let live = alerts.live.clone();
    let load = |dir: &std::path::Path| AlertingDefinitions::new(&crate::definitions::load(dir)?);
    tokio::spawn(crate::definitions::watch(args.checks.clone(), load, move |d| live.apply(d), role.stop.clone()));
    let sink = std::sync::Arc::new(Both(JsonLog::new(std::io::stdout(), metrics), alerts.alerting.clone()));
    tracing::info!("handler starting");
    handlers::consume(&role.transport, sink, health, role.stop.clone())
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    stop_alerting.cancel();
    alerts.finish().await;
    role.finish().await;
    tracing::info!("handler stopped");
    Ok(ExitCode::SUCCESS)
}
