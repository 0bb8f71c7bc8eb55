//! Exchange and queue names, and their declarations.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};
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

    pub fn keepalives(&self) -> String {
        format!("{}.keepalives", self.prefix)
    }

    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The queue handlers read keepalives from: single active consumer, so
    /// one handler sees every runner's keepalives (a queue of its own, not
    /// `<prefix>.keepalives`: arguments of an existing queue cannot change,
    /// and old and new handlers must run side by side during a deploy).
    pub fn handler_keepalives(&self) -> String {
        format!("{}.handler.keepalives", self.prefix)
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

/// Declares everything but the subscription queues (those are declared when
/// first used, see [`declare_subscription`]).
pub(crate) async fn declare(channel: &Channel, names: &Names) -> Result<(), TransportError> {
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
    let quorum = long("quorum");
    let single = AMQPValue::Boolean(true);
    // (queue, its arguments, the exchange it reads, the routing key). Every
    // queue a handler consumes has a single active consumer: several
    // handlers then judge results, liveness and `missed` with the whole
    // picture, and a standby takes over when the active one's channel dies.
    for (queue, args, exchange, routing_key) in [
        (
            names.results(),
            table(&[("x-queue-type", quorum.clone()), ("x-single-active-consumer", single.clone())]),
            names.results(),
            names.results(),
        ),
        (
            names.handler_keepalives(),
            table(&[("x-single-active-consumer", single.clone())]),
            names.keepalives(),
            names.keepalives(),
        ),
        (
            names.handler_dead(),
            table(&[("x-queue-type", quorum.clone()), ("x-single-active-consumer", single.clone())]),
            names.dead(),
            String::new(),
        ),
    ] {
        channel.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args).await.map_err(broker)?;
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
    }
    Ok(())
}

/// Declares the quorum queue of `subscription`, dead-lettering to `<prefix>.dead`.
pub(crate) async fn declare_subscription(
    channel: &Channel,
    names: &Names,
    subscription: &str,
) -> Result<(), TransportError> {
    let queue = names.subscription(subscription);
    let args = table(&[("x-queue-type", long("quorum")), ("x-dead-letter-exchange", long(&names.dead()))]);
    channel.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args).await.map_err(broker)?;
    channel
        .queue_bind(
            queue.as_str().into(),
            names.requests().as_str().into(),
            subscription.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
    Ok(())
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
