//! The bench's own broker client (lapin): queue depths while a step drains,
//! cleanup of a run's prefix, and the broker's ceiling for picket-sized
//! messages: persistent, publisher-confirmed, manually acked, through a
//! quorum queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::sync::Semaphore;

pub struct Broker {
    url: String,
    connection: Connection,
}

impl Broker {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let connection = connect(url, "picket-bench").await?;
        Ok(Self { url: url.to_owned(), connection })
    }

    /// Ready messages in `queue`, or None when it does not exist.
    pub async fn depth(&self, queue: &str) -> Option<u32> {
        let channel = self.connection.create_channel().await.ok()?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .ok()?;
        let _ = channel.close(200, "depth".into()).await;
        Some(declared.message_count())
    }

    /// Deletes every queue and exchange a picket installation with `prefix` declares.
    pub async fn delete_prefix(&self, prefix: &str, subscriptions: &[&str]) -> anyhow::Result<()> {
        let mut queues: Vec<String> = [
            "results",
            "results.batch",
            "keepalives",
            "dead",
            "handler.keepalives",
            "handler.keepalives.quorum",
            "handler.dead",
            "scheduler.lock",
            "ceiling",
        ]
        .iter()
        .map(|q| format!("{prefix}.{q}"))
        .collect();
        queues.extend(subscriptions.iter().map(|s| format!("{prefix}.sub.{s}")));
        for queue in queues {
            // A failed delete closes the channel: one channel per attempt.
            let channel = self.connection.create_channel().await?;
            let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
            let _ = channel.close(200, "cleanup".into()).await;
        }
        for exchange in ["requests", "results", "keepalives", "dead"] {
            let channel = self.connection.create_channel().await?;
            let name = format!("{prefix}.{exchange}");
            let _ = channel.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default()).await;
            let _ = channel.close(200, "cleanup".into()).await;
        }
        Ok(())
    }

    /// Messages per second through a fresh quorum queue for `seconds`:
    /// persistent publishes with at most `window` unconfirmed at a time, and a
    /// consumer acking each message (prefetch 256) on its own connection.
    /// `bodies` are sent in turn. Returns (consumed per s, confirmed per s).
    pub async fn ceiling(
        &self,
        prefix: &str,
        bodies: &[Vec<u8>],
        window: usize,
        seconds: f64,
    ) -> anyhow::Result<(f64, f64)> {
        let queue = format!("{prefix}.ceiling");
        let publisher = self.connection.create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-queue-type"), AMQPValue::LongString("quorum".into()));
        publisher.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args).await?;
        publisher.queue_purge(queue.as_str().into(), Default::default()).await?;

        let consumer_connection = connect(&self.url, "picket-bench-ceiling-consumer").await?;
        let consumer_channel = consumer_connection.create_channel().await?;
        consumer_channel.basic_qos(256, BasicQosOptions::default()).await?;
        let mut consumer = consumer_channel
            .basic_consume(
                queue.as_str().into(),
                "ceiling".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumed = Arc::new(AtomicU64::new(0));
        let counter = consumed.clone();
        let consuming = tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                if delivery.acker.ack(BasicAckOptions::default()).await.is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });

        let confirmed = Arc::new(AtomicU64::new(0));
        let slots = Arc::new(Semaphore::new(window.max(1)));
        let warmup = Duration::from_secs_f64((seconds * 0.1).min(2.0));
        let started = Instant::now();
        let until = started + warmup + Duration::from_secs_f64(seconds);
        let mut marks = None;
        let mut i = 0usize;
        while Instant::now() < until {
            if marks.is_none() && started.elapsed() >= warmup {
                marks = Some((Instant::now(), consumed.load(Ordering::Relaxed), confirmed.load(Ordering::Relaxed)));
            }
            let permit = slots.clone().acquire_owned().await?;
            let body = &bodies[i % bodies.len()];
            i += 1;
            let confirm = publisher
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?;
            let confirmed = confirmed.clone();
            tokio::spawn(async move {
                if let Ok(lapin::Confirmation::Ack(_)) = confirm.await {
                    confirmed.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
        let (t0, consumed0, confirmed0) = marks.context("ceiling run too short")?;
        let elapsed = t0.elapsed().as_secs_f64();
        let consumed_rate = (consumed.load(Ordering::Relaxed) - consumed0) as f64 / elapsed;
        let confirmed_rate = (confirmed.load(Ordering::Relaxed) - confirmed0) as f64 / elapsed;
        let _ = slots.acquire_many(window.max(1) as u32).await;
        consuming.abort();
        let _ = consumer_connection.close(200, "done".into()).await;
        let _ = publisher.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
        Ok((consumed_rate, confirmed_rate))
    }
}

async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    Connection::connect(url, ConnectionProperties::default().with_connection_name(name.into()))
        .await
        .context("cannot connect to RabbitMQ (is it up on 127.0.0.1:5672? scripts/services starts it)")
}
