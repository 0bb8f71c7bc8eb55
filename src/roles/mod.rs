//! The distributed roles: `picket scheduler`, `picket runner`, `picket handler`.

pub mod handler;
pub mod runner;
pub mod scheduler;

use std::sync::Arc;

use protocol::transport::amqp::AmqpTransport;

use crate::serve::Readiness;

/// Ready while the broker connection is up.
pub fn connected(transport: &AmqpTransport) -> Readiness {
    let transport = transport.clone();
    Arc::new(move || transport.is_connected())
}
