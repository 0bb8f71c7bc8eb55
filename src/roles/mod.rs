//! The distributed roles: `picket scheduler`, `picket runner`, `picket handler`.

pub mod handler;
pub mod runner;
pub mod scheduler;

use std::net::SocketAddr;
use std::sync::Arc;

use amqp::{AmqpConfig, AmqpTransport};
use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::serve::Readiness;

/// What every distributed role runs on: the signal that stops it, its broker
/// connection and its health and metrics server.
pub struct Role {
    /// Cancelled by SIGTERM or Ctrl-C: the role stops taking work and drains.
    pub stop: CancellationToken,
    pub transport: AmqpTransport,
    /// Closes the connection only once the role has drained, so in-flight
    /// results and acks still reach the broker.
    stop_transport: CancellationToken,
    stop_serving: CancellationToken,
    server: JoinHandle<()>,
}

impl Role {
    /// Installs the signal handlers, starts the broker connection (returns at
    /// once; it connects in the background) and serves `/healthz`, `/readyz`
    /// (as `ready` judges the transport) and `/metrics` on `listen`.
    pub async fn start(
        config: AmqpConfig,
        listen: SocketAddr,
        mut registry: Registry,
        ready: impl FnOnce(&AmqpTransport) -> Readiness,
        routes: axum::Router,
    ) -> Result<Self, Failure> {
        let stop = CancellationToken::new();
        crate::shutdown::on_signal(stop.clone()).context("cannot install signal handlers")?;
        let stop_transport = CancellationToken::new();
        let metrics = protocol::metrics::register_transport(&mut registry);
        let transport = AmqpTransport::start(AmqpConfig { metrics, ..config }, stop_transport.clone());
        let stop_serving = CancellationToken::new();
        let server = crate::serve::bind(listen, registry, ready(&transport), routes, stop_serving.clone()).await?;
        Ok(Self { stop, transport, stop_transport, stop_serving, server: tokio::spawn(server) })
    }

    /// After the role's work has drained: closes the broker connection, then the server.
    pub async fn finish(self) {
        self.stop_transport.cancel();
        self.stop_serving.cancel();
        let _ = self.server.await;
    }
}

/// Ready while the broker connection is up, naming the node in use.
pub fn connected(transport: &AmqpTransport) -> Readiness {
    let transport = transport.clone();
    Arc::new(move || broker_node(&transport))
}

/// `broker host:port` while connected.
pub fn broker_node(transport: &AmqpTransport) -> Result<String, String> {
    match transport.node() {
        Some(node) => Ok(format!("broker {node}")),
        None => Err("no broker connection".to_owned()),
    }
}
