//! `picket handler`: consumes results, keepalives and dead letters from the
//! broker; the results queue has a single active consumer, so extra handlers
//! stand by.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use handlers::json_log::JsonLog;
use protocol::metrics::Metrics;
use protocol::transport::amqp::AmqpTransport;
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::broker::BrokerArgs;

#[derive(Args, Clone, Debug)]
pub struct HandlerRoleArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[arg(long, env = "PICKET_LISTEN", default_value = "0.0.0.0:9750")]
    pub listen: SocketAddr,
}

pub async fn run(args: HandlerRoleArgs) -> Result<ExitCode, Failure> {
    let instance = crate::config::host_name();
    let config = args.broker.config(format!("picket-handler-{instance}-{}", std::process::id()))?;
    let (registry, metrics) = Metrics::standalone();
    let stop = CancellationToken::new();
    crate::shutdown::on_signal(stop.clone()).context("cannot install signal handlers")?;
    let stop_transport = CancellationToken::new();
    let transport = AmqpTransport::start(config, stop_transport.clone());
    let stop_serving = CancellationToken::new();
    let server = crate::serve::bind(args.listen, registry, super::connected(&transport), stop_serving.clone()).await?;
    let server = tokio::spawn(server);
    let sink = JsonLog::new(std::io::stdout(), metrics);
    tracing::info!("handler starting");
    handlers::consume(&transport, &sink, stop).await.map_err(|e| Failure::Runtime(e.into()))?;
    stop_transport.cancel();
    stop_serving.cancel();
    let _ = server.await;
    tracing::info!("handler stopped");
    Ok(ExitCode::SUCCESS)
}
