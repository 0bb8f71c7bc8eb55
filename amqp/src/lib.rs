//! The RabbitMQ transport (DESIGN.md §5), the only crate that imports lapin.
//!
//! [`nodes`] is the list of broker nodes to connect to, [`supervisor`]
//! keeps the connection and its publishing channel alive,
//! [`topology`] names and declares exchanges and queues, [`consume`] feeds
//! queues into inboxes and settles deliveries, [`batch`] carries a runner's
//! results in batches and [`parts`] settles a batch's results one by one,
//! [`signing`] signs and verifies bodies, and [`lock`] is the scheduler's
//! leader lock.

#![forbid(unsafe_code)]

mod batch;
mod consume;
mod lock;
mod nodes;
mod parts;
mod signing;
mod supervisor;
mod topology;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use protocol::message::{CheckRequest, CheckResult, Keepalive, Message, ResultsWriter, encode};
use protocol::metrics::TransportMetrics;
use protocol::transport::{DeadLetter, Inbox, Transport, TransportError};
use tokio::sync::watch;

pub use lock::LeaderLock;
pub use nodes::BrokerNodes;
pub use signing::Unauthenticated;
pub use topology::{Names, Placement};

use consume::{Consumer, DEAD_LETTER, decode_dead_letter, decode_keepalive, decode_request, decode_result};
use signing::{SIGNATURE_HEADER, Signer};
use supervisor::Live;
use topology::{Topology, long, table};

/// How long a publisher waits for a connection before reporting failure.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:5672/vhost` or `amqps://…`, or several of
    /// them (a cluster's nodes); never logged.
    pub nodes: BrokerNodes,
    /// Prefix of every exchange and queue name (`PICKET_PREFIX`).
    pub prefix: String,
    /// Replicas and leaders of the quorum queues this role creates.
    pub placement: Placement,
    /// Shown by the broker (`rabbitmqctl list_connections name`).
    pub connection_name: String,
    /// Signs every published message and refuses unsigned or badly signed
    /// ones (`PICKET_SIGNING_KEY`).
    pub signing_key: Option<String>,
    /// Also accepted for verification, never used to sign, so a key can be
    /// rotated without downtime (`PICKET_SIGNING_KEY_PREVIOUS`).
    pub previous_signing_key: Option<String>,
    /// Counts what consumers refuse and what carried results.
    pub metrics: TransportMetrics,
}

/// Names what is set, never the URL (it may hold a password) or a key.
impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("nodes", &self.nodes.len())
            .field("prefix", &self.prefix)
            .field("placement", &self.placement)
            .field("connection_name", &self.connection_name)
            .field("signing_key", &self.signing_key.is_some())
            .field("previous_signing_key", &self.previous_signing_key.is_some())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: AmqpConfig,
    /// `config.nodes` in this process's order.
    nodes: BrokerNodes,
    topology: Topology,
    signer: Option<Signer>,
    live: watch::Receiver<Option<Live>>,
    batches: batch::Batches,
}

/// What the broker made of a confirmed publish.
enum Confirmed {
    Routed,
    /// Returned as unroutable (`mandatory`), with the broker's reply text.
    Returned(String),
}

#[derive(Clone)]
pub struct AmqpTransport {
    inner: Arc<Inner>,
}

fn broker(e: impl std::fmt::Display) -> TransportError {
    TransportError::Broker(e.to_string())
}

impl AmqpTransport {
    /// Starts the connection supervisor; returns at once. Use
    /// [`AmqpTransport::wait_connected`] to wait for the first connection.
    pub fn start(config: AmqpConfig, shutdown: tokio_util::sync::CancellationToken) -> Self {
        let (tx, rx) = watch::channel(None);
        let topology = Topology::new(Names::new(&config.prefix), config.placement);
        let signer = config.signing_key.as_deref().map(|key| Signer::new(key, config.previous_signing_key.as_deref()));
        let nodes = config.nodes.clone().shuffled();
        let inner = Arc::new(Inner { config, nodes, topology, signer, live: rx, batches: batch::Batches::default() });
        tokio::spawn(supervisor::supervise(inner.clone(), tx, shutdown));
        Self { inner }
    }

    pub fn names(&self) -> &Names {
        &self.inner.topology.names
    }

    pub fn is_connected(&self) -> bool {
        self.inner.live.borrow().is_some()
    }

    /// The node in use (`host:port`, never the URL), while connected.
    pub fn node(&self) -> Option<String> {
        self.inner.live.borrow().as_ref().map(|live| live.node.to_string())
    }

    /// Waits until a connection is up, for at most `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> Result<(), TransportError> {
        self.live(limit).await.map(|_| ())
    }

    async fn live(&self, limit: Duration) -> Result<Live, TransportError> {
        let mut rx = self.inner.live.clone();
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(live)) => Ok(live.clone().expect("waited for Some")),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::Broker("not connected to the broker".into())),
        }
    }

    /// Declares the queue of `subscription` (idempotent, once per connection).
    pub async fn declare_subscription(&self, subscription: &str) -> Result<(), TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        self.ensure_subscription(&live, subscription).await
    }

    async fn ensure_subscription(&self, live: &Live, subscription: &str) -> Result<(), TransportError> {
        if live.declared.lock().expect("declared lock").contains(subscription) {
            return Ok(());
        }
        self.inner.topology.declare_subscription(&live.connection, &live.publisher, subscription).await?;
        live.declared.lock().expect("declared lock").insert(subscription.to_owned());
        Ok(())
    }

    /// Properties carrying the body's signature, when there is a key.
    fn signed(&self, body: &[u8]) -> BasicProperties {
        match &self.inner.signer {
            Some(signer) => {
                BasicProperties::default().with_headers(table(&[(SIGNATURE_HEADER, long(&signer.sign(body)))]))
            }
            None => BasicProperties::default(),
        }
    }

    /// Publishes persistently with `mandatory` and waits for the broker's
    /// confirm; unroutable is an error.
    async fn publish(
        &self,
        live: &Live,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), TransportError> {
        match self.publish_confirmed(live, exchange, routing_key, body, properties).await? {
            Confirmed::Routed => Ok(()),
            Confirmed::Returned(why) => {
                Err(TransportError::Broker(format!("unroutable: {exchange}/{routing_key} returned ({why})")))
            }
        }
    }

    /// Publishes persistently with `mandatory` and waits for the broker's confirm.
    async fn publish_confirmed(
        &self,
        live: &Live,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<Confirmed, TransportError> {
        let confirm = live
            .publisher
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                body,
                properties.with_delivery_mode(2).with_content_type("application/json".into()),
            )
            .await
            .map_err(broker)?
            .await
            .map_err(broker)?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(Confirmed::Routed),
            Confirmation::Ack(Some(returned)) => Ok(Confirmed::Returned(returned.reply_text.to_string())),
            Confirmation::Nack(_) => Err(TransportError::Broker(format!("broker refused a message to {exchange}"))),
        }
    }

    /// One result, encoded by [`ResultsWriter::encode_one`], as a
    /// `check_result` message of its own.
    async fn publish_single(&self, encoded: &[u8]) -> Result<(), TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        let names = self.names();
        let body = ResultsWriter::single(encoded);
        self.publish(&live, &names.results(), &names.results(), &body, self.signed(&body)).await?;
        self.inner.config.metrics.result_messages.inc();
        Ok(())
    }

    /// Ready messages and consumers of a subscription's queue.
    pub async fn queue_depth(&self, subscription: &str) -> Result<(u32, u32), TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        self.ensure_subscription(&live, subscription).await?;
        self.passive_declare(&live, &self.names().subscription(subscription)).await
    }

    /// Ready messages and consumers of `queue`, by a passive declare on a
    /// channel of its own: a missing queue closes the channel it is asked on.
    async fn passive_declare(&self, live: &Live, queue: &str) -> Result<(u32, u32), TransportError> {
        let channel = live.connection.create_channel().await.map_err(broker)?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .map_err(broker);
        let _ = channel.close(200, "passive declare".into()).await;
        declared.map(|queue| (queue.message_count(), queue.consumer_count()))
    }
}

impl Transport for AmqpTransport {
    async fn publish_request(&self, request: &CheckRequest) -> Result<(), TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        self.ensure_subscription(&live, &request.subscription).await?;
        let body = encode(&Message::CheckRequest(Box::new(request.clone())));
        // The broker drops (dead-letters) the request once its deadline passes.
        let ttl_ms = (request.deadline - Utc::now()).num_milliseconds().max(1);
        let properties = self.signed(&body).with_expiration(ttl_ms.to_string().as_str().into());
        self.publish(&live, &self.names().requests(), &request.subscription, &body, properties).await
    }

    /// In a batch while a handler reads batches, alone otherwise; either
    /// way it resolves once the broker has confirmed the message carrying it.
    async fn publish_result(&self, result: &CheckResult) -> Result<(), TransportError> {
        let encoded = ResultsWriter::encode_one(result);
        if self.batches_are_read().await {
            self.publish_in_batch(encoded).await
        } else {
            self.publish_single(&encoded).await
        }
    }

    async fn publish_keepalive(&self, keepalive: &Keepalive) -> Result<(), TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        let names = self.names();
        let body = encode(&Message::Keepalive(keepalive.clone()));
        let ttl_ms = keepalive.interval.saturating_mul(2000).max(1000);
        let properties = self.signed(&body).with_expiration(ttl_ms.to_string().as_str().into());
        self.publish(&live, &names.keepalives(), &names.keepalives(), &body, properties).await
    }

    async fn requests(&self, subscriptions: &[String], prefetch: u16) -> Result<Inbox<CheckRequest>, TransportError> {
        let queues = subscriptions.iter().map(|s| self.names().subscription(s)).collect();
        let subscriptions = subscriptions.to_vec();
        Ok(self.consume(Consumer { kind: "request", queues, subscriptions, prefetch, decode: decode_request }))
    }

    async fn results(&self) -> Result<Inbox<CheckResult>, TransportError> {
        let names = self.names();
        let queues = vec![names.results(), names.results_batch()];
        Ok(self.consume(Consumer {
            kind: "result",
            queues,
            subscriptions: Vec::new(),
            prefetch: 256,
            decode: decode_result,
        }))
    }

    async fn keepalives(&self) -> Result<Inbox<Keepalive>, TransportError> {
        Ok(self.consume(Consumer::of("keepalive", self.names().handler_keepalives(), 64, decode_keepalive)))
    }

    async fn dead_letters(&self) -> Result<Inbox<DeadLetter>, TransportError> {
        Ok(self.consume(Consumer::of(DEAD_LETTER, self.names().handler_dead(), 64, decode_dead_letter)))
    }
}
