//! Exchange and queue names, and their declarations.

use std::collections::HashSet;
use std::sync::Mutex;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ExchangeKind};
use protocol::transport::TransportError;

use crate::broker;

/// Exchange and queue names under one prefix.
#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    pub fn requests(&self) -> String {
        format!("{}.requests", self.prefix)
    }

    pub fn subscription(&self, subscription: &str) -> String {
        format!("{}.sub.{subscription}", self.prefix)
    }

    pub fn results(&self) -> String {
        format!("{}.results", self.prefix)
    }

    /// The queue of result batches (`check_results`), bound to the results
    /// exchange under its own name. It is apart from the results queue so
    /// that a runner can tell whether a handler able to read batches is
    /// there: only such a handler consumes it (ARCHITECTURE.md, "Result
    /// batches").
    pub fn results_batch(&self) -> String {
        format!("{}.results.batch", self.prefix)
    }

    pub fn keepalives(&self) -> String {
        format!("{}.keepalives", self.prefix)
    }

    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The queue handlers read keepalives from: a quorum queue with a
    /// single active consumer, so one handler sees every runner's keepalives
    /// and the queue survives the loss of a cluster node. It has a name of
    /// its own because the arguments of an existing queue cannot change and
    /// old and new handlers run side by side during a deploy: releases
    /// before it read the classic `<prefix>.handler.keepalives`, which a
    /// dead node takes down with it.
    pub fn handler_keepalives(&self) -> String {
        format!("{}.handler.keepalives.quorum", self.prefix)
    }

    /// The queue handlers read dead letters from, single active consumer.
    pub fn handler_dead(&self) -> String {
        format!("{}.handler.dead", self.prefix)
    }

    pub fn lock(&self) -> String {
        format!("{}.scheduler.lock", self.prefix)
    }
}

pub(crate) fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

pub(crate) fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Where the quorum queues' replicas and leaders go, set when a queue is
/// created (RabbitMQ cannot change either on an existing queue).
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// Replicas of each quorum queue (`x-quorum-initial-group-size`); the
    /// broker takes every node when it has fewer.
    pub replicas: u16,
}

impl Default for Placement {
    /// Three replicas: one node can be lost with a majority left, at the
    /// cost of every message written three times.
    fn default() -> Self {
        Self { replicas: 3 }
    }
}

impl Placement {
    /// The arguments of a new quorum queue: its replicas, and its leader on
    /// the node with the fewest leaders, so the cluster's nodes share the work.
    fn quorum(self, more: &[(&str, AMQPValue)]) -> FieldTable {
        let mut args = vec![
            ("x-queue-type", long("quorum")),
            ("x-quorum-initial-group-size", AMQPValue::LongInt(i32::from(self.replicas))),
            ("x-queue-leader-locator", long("balanced")),
        ];
        args.extend(more.iter().cloned());
        table(&args)
    }
}

/// The queues and exchanges of one installation, and how they are placed.
#[derive(Debug)]
pub(crate) struct Topology {
    pub(crate) names: Names,
    pub(crate) placement: Placement,
    /// Queues found with other arguments, used as they are.
    kept: Mutex<HashSet<String>>,
}

impl Topology {
    pub(crate) fn new(names: Names, placement: Placement) -> Self {
        Self { names, placement, kept: Mutex::default() }
    }

    /// Declares everything but the subscription queues (those are declared
    /// when first used, see [`Topology::declare_subscription`]).
    pub(crate) async fn declare(&self, connection: &Connection, channel: &Channel) -> Result<(), TransportError> {
        let names = &self.names;
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        for (exchange, kind) in [
            (names.requests(), ExchangeKind::Direct),
            (names.results(), ExchangeKind::Direct),
            (names.keepalives(), ExchangeKind::Direct),
            (names.dead(), ExchangeKind::Fanout),
        ] {
            channel
                .exchange_declare(exchange.as_str().into(), kind, durable, FieldTable::default())
                .await
                .map_err(broker)?;
        }
        // (queue, the exchange it reads, the routing key). Every queue a
        // handler consumes has a single active consumer: several handlers
        // then judge results, liveness and `missed` with the whole picture,
        // and a standby takes over when the active one's channel dies.
        for (queue, exchange, routing_key) in [
            (names.results(), names.results(), names.results()),
            (names.results_batch(), names.results(), names.results_batch()),
            (names.handler_keepalives(), names.keepalives(), names.keepalives()),
            (names.handler_dead(), names.dead(), String::new()),
        ] {
            let args = self.placement.quorum(&[("x-single-active-consumer", AMQPValue::Boolean(true))]);
            self.declare_queue(connection, &queue, args).await?;
            bind(channel, &queue, &exchange, &routing_key).await?;
        }
        Ok(())
    }

    /// Declares the quorum queue of `subscription`, dead-lettering to `<prefix>.dead`.
    pub(crate) async fn declare_subscription(
        &self,
        connection: &Connection,
        channel: &Channel,
        subscription: &str,
    ) -> Result<(), TransportError> {
        let queue = self.names.subscription(subscription);
        let args = self.placement.quorum(&[("x-dead-letter-exchange", long(&self.names.dead()))]);
        self.declare_queue(connection, &queue, args).await?;
        bind(channel, &queue, &self.names.requests(), subscription).await
    }

    /// Declares `queue` with `args` on a channel of its own. A queue that
    /// exists with other arguments (created by an earlier release, or by a
    /// role with another `PICKET_AMQP_REPLICAS`) is refused with
    /// PRECONDITION_FAILED, which closes that channel only; such a queue is
    /// used as it is, said once, and not declared again by this process.
    async fn declare_queue(
        &self,
        connection: &Connection,
        queue: &str,
        args: FieldTable,
    ) -> Result<(), TransportError> {
        if self.kept.lock().expect("kept lock").contains(queue) {
            return Ok(());
        }
        let channel = connection.create_channel().await.map_err(broker)?;
        match channel.queue_declare(queue.into(), QueueDeclareOptions::durable(), args).await {
            Ok(_) => {
                let _ = channel.close(200, "declared".into()).await;
                Ok(())
            }
            Err(e) if e.to_string().contains("PRECONDITION_FAILED") => {
                tracing::warn!(
                    queue,
                    "the queue exists with other arguments (an earlier release, or another PICKET_AMQP_REPLICAS); \
                     using it as it is, with its own replicas and leader placement"
                );
                self.kept.lock().expect("kept lock").insert(queue.to_owned());
                Ok(())
            }
            Err(e) => Err(broker(e)),
        }
    }
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, routing_key: &str) -> Result<(), TransportError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_the_prefix() {
        let names = Names::new("t1");
        assert_eq!(names.subscription("east"), "t1.sub.east");
        assert_eq!(names.lock(), "t1.scheduler.lock");
    }
}
