//! The RabbitMQ transport (DESIGN.md §5), the only module that imports lapin.
//!
//! One supervisor task keeps a connection alive: it connects with capped
//! exponential backoff, declares the topology, publishes the live connection
//! through a `watch` channel, and starts over when the connection drops.
//! Publishers wait briefly for a live connection; consumers re-subscribe on
//! every new one, so roles survive a broker restart without restarting.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, watch};

use super::{DeadLetter, DeadReason, Delivery, Inbox, Settle, SettleFuture, Transport, TransportError};
use crate::message::{CheckRequest, CheckResult, Keepalive, Message, decode, encode};

/// How long a publisher waits for a connection before reporting failure.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// The largest frame asked of the broker unless the URL sets `frame_max`.
/// lapin keeps a send and a receive buffer of 32 frames each per connection,
/// so RabbitMQ's default of 128 KiB would cost 8 MiB of resident memory per
/// connection; picket's messages are a few hundred bytes, and a larger one is
/// simply carried in several frames.
const FRAME_MAX: u32 = 16 * 1024;
/// Header carrying why a runner refused a request (expired, overlap, malformed).
const REASON_HEADER: &str = "x-picket-reason";
/// Header carrying the HMAC-SHA256 of the body, hex.
const SIGNATURE_HEADER: &str = "x-picket-sig";

#[derive(Clone)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:5672/vhost` or `amqps://…`; never logged.
    pub url: String,
    /// Prefix of every exchange and queue name (`PICKET_PREFIX`).
    pub prefix: String,
    /// Shown by the broker (`rabbitmqctl list_connections name`).
    pub connection_name: String,
    /// Signs published requests and refuses unsigned or badly signed ones.
    pub signing_key: Option<String>,
}

/// Checks an AMQP URL without connecting; the error never repeats the URL
/// (it may hold a password).
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|_| ())
        .map_err(|e| format!("not an amqp:// or amqps:// URL ({})", redact(&e, url)))
}

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

/// A connection that is up, with its confirm-mode publishing channel.
#[derive(Clone)]
struct Live {
    connection: Arc<Connection>,
    publisher: Channel,
    /// Increments on every new connection; a lock or consumer belongs to one.
    generation: u64,
    /// Subscription queues declared on this connection.
    declared: Arc<Mutex<HashSet<String>>>,
}

struct Inner {
    config: AmqpConfig,
    names: Names,
    key: Option<ring::hmac::Key>,
    live: watch::Receiver<Option<Live>>,
}

#[derive(Clone)]
pub struct AmqpTransport {
    inner: Arc<Inner>,
}

fn broker(e: impl std::fmt::Display) -> TransportError {
    TransportError::Broker(e.to_string())
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

impl AmqpTransport {
    /// Starts the connection supervisor; returns at once. Use
    /// [`AmqpTransport::wait_connected`] to wait for the first connection.
    pub fn start(config: AmqpConfig, shutdown: tokio_util::sync::CancellationToken) -> Self {
        let (tx, rx) = watch::channel(None);
        let names = Names::new(&config.prefix);
        let key = config.signing_key.as_ref().map(|k| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k.as_bytes()));
        let inner = Arc::new(Inner { config, names, key, live: rx });
        tokio::spawn(supervise(inner.clone(), tx, shutdown));
        Self { inner }
    }

    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    pub fn is_connected(&self) -> bool {
        self.inner.live.borrow().is_some()
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
        let names = &self.inner.names;
        let queue = names.subscription(subscription);
        let args = table(&[("x-queue-type", long("quorum")), ("x-dead-letter-exchange", long(&names.dead()))]);
        live.publisher
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
            .await
            .map_err(broker)?;
        live.publisher
            .queue_bind(
                queue.as_str().into(),
                names.requests().as_str().into(),
                subscription.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        live.declared.lock().expect("declared lock").insert(subscription.to_owned());
        Ok(())
    }

    /// Publishes persistently with `mandatory` and waits for the broker's confirm.
    async fn publish(
        &self,
        live: &Live,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), TransportError> {
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
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(TransportError::Broker(format!(
                "unroutable: {exchange}/{routing_key} returned ({})",
                returned.reply_text
            ))),
            Confirmation::Nack(_) => Err(TransportError::Broker(format!("broker refused a message to {exchange}"))),
            Confirmation::NotRequested => Ok(()),
        }
    }

    /// Declares and holds `<prefix>.scheduler.lock`, an exclusive queue: only
    /// one connection can own it, and the broker deletes it when that
    /// connection dies. `Ok(None)` means another scheduler holds it.
    pub async fn try_lock(&self) -> Result<Option<LeaderLock>, TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        let channel = live.connection.create_channel().await.map_err(broker)?;
        let declared = channel
            .queue_declare(
                self.inner.names.lock().as_str().into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(_) => Ok(Some(LeaderLock { transport: self.clone(), generation: live.generation, channel })),
            // RESOURCE_LOCKED: another connection owns the queue; the channel is closed by the broker.
            Err(e) if e.to_string().contains("RESOURCE_LOCKED") || e.to_string().contains("405") => Ok(None),
            Err(e) => Err(broker(e)),
        }
    }

    /// Ready messages and consumers of a subscription's queue.
    pub async fn queue_depth(&self, subscription: &str) -> Result<(u32, u32), TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        self.ensure_subscription(&live, subscription).await?;
        let channel = live.connection.create_channel().await.map_err(broker)?;
        let queue = channel
            .queue_declare(
                self.inner.names.subscription(subscription).as_str().into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        let _ = channel.close(200, "depth read".into()).await;
        Ok((queue.message_count(), queue.consumer_count()))
    }

    fn sign(&self, body: &[u8]) -> Option<String> {
        let key = self.inner.key.as_ref()?;
        Some(hex(ring::hmac::sign(key, body).as_ref()))
    }

    fn verify(&self, body: &[u8], headers: Option<&FieldTable>) -> Result<(), String> {
        let Some(key) = &self.inner.key else { return Ok(()) };
        let sig = header_str(headers, SIGNATURE_HEADER).ok_or("unsigned request (PICKET_SIGNING_KEY is set)")?;
        let bytes = unhex(&sig).ok_or("malformed signature")?;
        ring::hmac::verify(key, body, &bytes).map_err(|_| "bad signature".to_owned())
    }

    /// Consumes `queues` on a channel of each connection, re-subscribing after
    /// a reconnect, and feeds decoded messages into one inbox. Undecodable
    /// ones are dead-lettered with reason `malformed` and logged.
    fn consume<M: Send + 'static>(
        &self,
        queues: Vec<String>,
        subscriptions: Vec<String>,
        prefetch: u16,
        decode: fn(&AmqpTransport, &lapin::message::Delivery) -> Result<M, String>,
    ) -> Inbox<M> {
        let (tx, rx) = mpsc::channel(usize::from(prefetch.max(1)));
        let transport = self.clone();
        tokio::spawn(async move {
            let mut live_rx = transport.inner.live.clone();
            while !tx.is_closed() {
                let live = match live_rx.wait_for(Option::is_some).await {
                    Ok(live) => live.clone().expect("waited for Some"),
                    Err(_) => return,
                };
                let consumed = async {
                    for subscription in &subscriptions {
                        transport.ensure_subscription(&live, subscription).await?;
                    }
                    transport.consume_on(&live, &queues, prefetch, decode, &tx).await
                };
                if let Err(e) = consumed.await {
                    tracing::warn!(error = %e, queues = ?queues, "consumer interrupted; resubscribing");
                }
                // Don't spin on a connection that is still marked live but broken.
                tokio::time::sleep(BACKOFF_START).await;
            }
        });
        Inbox::new(rx)
    }

    async fn consume_on<M: Send + 'static>(
        &self,
        live: &Live,
        queues: &[String],
        prefetch: u16,
        decode: fn(&AmqpTransport, &lapin::message::Delivery) -> Result<M, String>,
        tx: &mpsc::Sender<Delivery<M>>,
    ) -> Result<(), TransportError> {
        let channel = live.connection.create_channel().await.map_err(broker)?;
        channel.basic_qos(prefetch.max(1), BasicQosOptions::default()).await.map_err(broker)?;
        let (merged_tx, mut merged) = mpsc::channel(usize::from(prefetch.max(1)));
        for queue in queues {
            let mut consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    format!("{}:{queue}", self.inner.config.connection_name).as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(broker)?;
            let merged_tx = merged_tx.clone();
            tokio::spawn(async move {
                while let Some(delivery) = consumer.next().await {
                    if merged_tx.send(delivery).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(merged_tx);
        while let Some(delivery) = merged.recv().await {
            let delivery = delivery.map_err(broker)?;
            match decode(self, &delivery) {
                Ok(message) => {
                    let settle = Box::new(AmqpSettle { transport: self.clone(), delivery: Some(delivery) });
                    if tx.send(Delivery::new(message, settle)).await.is_err() {
                        return Ok(());
                    }
                }
                Err(reason) => {
                    tracing::warn!(queue = %delivery.routing_key, %reason, "malformed message; dead-lettered");
                    let settle = AmqpSettle { transport: self.clone(), delivery: Some(delivery) };
                    let _ = Box::new(settle).reject(DeadReason::Malformed).await;
                }
            }
        }
        Ok(())
    }
}

/// Proof of leadership; lost when the connection that took it goes away.
pub struct LeaderLock {
    transport: AmqpTransport,
    generation: u64,
    /// Holds the lock queue; closing it releases the lock.
    channel: Channel,
}

impl LeaderLock {
    /// Resolves when the lock is gone (its connection dropped or was replaced).
    pub async fn lost(&self) {
        let mut rx = self.transport.inner.live.clone();
        let generation = self.generation;
        let _ = rx.wait_for(|live| live.as_ref().is_none_or(|l| l.generation != generation)).await;
    }

    /// Gives the lock up, waiting for the broker to confirm: a channel left
    /// to close on drop is still closing when the connection closes, which
    /// lapin reports as an error on every clean shutdown.
    pub async fn release(self) {
        let _ = self.channel.close(200, "leadership released".into()).await;
    }
}

fn header_str(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Settles through the delivery's acker. A reject publishes a copy to the
/// dead-letter exchange with the reason, then acks: RabbitMQ's own
/// dead-lettering cannot carry a reason. If that publish fails the message is
/// rejected without requeue, so the broker dead-letters it instead.
struct AmqpSettle {
    transport: AmqpTransport,
    delivery: Option<lapin::message::Delivery>,
}

impl Settle for AmqpSettle {
    fn ack(mut self: Box<Self>) -> SettleFuture {
        let delivery = self.delivery.take().expect("settled once");
        Box::pin(async move { delivery.acker.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(broker) })
    }

    fn requeue(mut self: Box<Self>) -> SettleFuture {
        let delivery = self.delivery.take().expect("settled once");
        let nack = BasicNackOptions { requeue: true, ..BasicNackOptions::default() };
        Box::pin(async move { delivery.acker.nack(nack).await.map(|_| ()).map_err(broker) })
    }

    fn reject(mut self: Box<Self>, reason: DeadReason) -> SettleFuture {
        let delivery = self.delivery.take().expect("settled once");
        let transport = self.transport.clone();
        Box::pin(async move {
            let mut headers = delivery.properties.headers().clone().unwrap_or_default();
            headers.insert(REASON_HEADER.into(), long(reason.as_str()));
            let copied = match transport.live(PUBLISH_WAIT).await {
                Ok(live) => {
                    let names = &transport.inner.names;
                    let properties = BasicProperties::default().with_headers(headers);
                    transport.publish(&live, &names.dead(), "", &delivery.data, properties).await
                }
                Err(e) => Err(e),
            };
            match copied {
                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(broker),
                Err(e) => {
                    tracing::warn!(error = %e, "dead-letter copy failed; rejecting to the broker's dead-letter exchange");
                    let nack = BasicNackOptions { requeue: false, ..BasicNackOptions::default() };
                    delivery.acker.nack(nack).await.map(|_| ()).map_err(broker)
                }
            }
        })
    }
}

/// A delivery dropped unsettled (its task panicked or was cancelled) goes
/// back to the queue at once: the broker would otherwise keep it from every
/// consumer until this channel closes.
impl Drop for AmqpSettle {
    fn drop(&mut self) {
        let Some(delivery) = self.delivery.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let nack = BasicNackOptions { requeue: true, ..BasicNackOptions::default() };
                let _ = delivery.acker.nack(nack).await;
            });
        }
    }
}

async fn supervise(inner: Arc<Inner>, tx: watch::Sender<Option<Live>>, shutdown: tokio_util::sync::CancellationToken) {
    let mut backoff = BACKOFF_START;
    let mut generation = 0;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => break,
            attempt = establish(&inner, generation + 1) => attempt,
        };
        match attempt {
            Ok(live) => {
                generation += 1;
                backoff = BACKOFF_START;
                tracing::info!(connection = %inner.config.connection_name, "connected to the broker");
                let connection = live.connection.clone();
                tx.send_replace(Some(live));
                tokio::select! {
                    () = shutdown.cancelled() => {
                        // Held until the connection is closed: a channel whose
                        // last handle drops meanwhile would ask to close while
                        // the connection closes it, which lapin logs as an error.
                        let live = tx.send_replace(None);
                        let _ = connection.close(200, "shutting down".into()).await;
                        drop(live);
                        break;
                    }
                    () = closed(&connection) => {}
                }
                tx.send_replace(None);
                tracing::warn!(connection = %inner.config.connection_name, "lost the broker connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach the broker");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
    tx.send_replace(None);
}

async fn closed(connection: &Connection) {
    while connection.status().connected() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connects and declares everything but the subscription queues.
async fn establish(inner: &Inner, generation: u64) -> Result<Live, TransportError> {
    let properties = ConnectionProperties::default().with_connection_name(inner.config.connection_name.as_str().into());
    // lapin's error text can include the URI; report only the kind of failure.
    let failed = |e: &dyn std::fmt::Display| {
        TransportError::Broker(format!("connect: {}", redact(&e.to_string(), &inner.config.url)))
    };
    let mut uri = inner.config.url.parse::<lapin::uri::AMQPUri>().map_err(|e| failed(&e))?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    let connection = Connection::connect_uri(uri, properties).await.map_err(|e| failed(&e))?;
    let publisher = connection.create_channel().await.map_err(broker)?;
    publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(broker)?;
    let names = &inner.names;
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    for (exchange, kind) in [
        (names.requests(), ExchangeKind::Direct),
        (names.results(), ExchangeKind::Direct),
        (names.keepalives(), ExchangeKind::Direct),
        (names.dead(), ExchangeKind::Fanout),
    ] {
        publisher
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
        publisher.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args).await.map_err(broker)?;
        publisher
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
    Ok(Live { connection: Arc::new(connection), publisher, generation, declared: Arc::default() })
}

/// Removes the URL (and so its password) from an error text.
fn redact(text: &str, url: &str) -> String {
    text.replace(url, "<PICKET_AMQP_URL>")
}

fn decode_request(t: &AmqpTransport, d: &lapin::message::Delivery) -> Result<CheckRequest, String> {
    t.verify(&d.data, d.properties.headers().as_ref())?;
    match decode(&d.data).map_err(|e| e.to_string())? {
        Message::CheckRequest(request) => Ok(*request),
        _ => Err("not a check_request".into()),
    }
}

fn decode_result(_: &AmqpTransport, d: &lapin::message::Delivery) -> Result<CheckResult, String> {
    match decode(&d.data).map_err(|e| e.to_string())? {
        Message::CheckResult(result) => Ok(*result),
        _ => Err("not a check_result".into()),
    }
}

fn decode_keepalive(_: &AmqpTransport, d: &lapin::message::Delivery) -> Result<Keepalive, String> {
    match decode(&d.data).map_err(|e| e.to_string())? {
        Message::Keepalive(keepalive) => Ok(keepalive),
        _ => Err("not a keepalive".into()),
    }
}

/// A dead letter never fails to decode: what cannot be read is reported as such.
fn decode_dead_letter(_: &AmqpTransport, d: &lapin::message::Delivery) -> Result<DeadLetter, String> {
    let headers = d.properties.headers().as_ref();
    let reason = match header_str(headers, REASON_HEADER) {
        // A reason a newer runner added that this build does not know.
        Some(text) => DeadReason::parse(&text).unwrap_or(DeadReason::Malformed),
        // Dead-lettered by the broker: a TTL expiry, or a reject after a failed copy.
        None if death_reason(headers).as_deref() == Some("expired") => DeadReason::Expired,
        None => DeadReason::Malformed,
    };
    Ok(match decode(&d.data) {
        Ok(Message::CheckRequest(request)) => DeadLetter::of(&request, reason),
        _ => DeadLetter { reason: DeadReason::Malformed, check: None, subscription: None, request_id: None },
    })
}

/// The `reason` of the first `x-death` entry the broker added.
fn death_reason(headers: Option<&FieldTable>) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else { return None };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else { return None };
    header_str(Some(first), "reason")
}

impl Transport for AmqpTransport {
    async fn publish_request(&self, request: &CheckRequest) -> Result<(), TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        self.ensure_subscription(&live, &request.subscription).await?;
        let body = encode(&Message::CheckRequest(Box::new(request.clone())));
        // The broker drops (dead-letters) the request once its deadline passes.
        let ttl_ms = (request.deadline - Utc::now()).num_milliseconds().max(1);
        let mut properties = BasicProperties::default().with_expiration(ttl_ms.to_string().as_str().into());
        if let Some(sig) = self.sign(&body) {
            properties = properties.with_headers(table(&[(SIGNATURE_HEADER, long(&sig))]));
        }
        self.publish(&live, &self.inner.names.requests(), &request.subscription, &body, properties).await
    }

    async fn publish_result(&self, result: &CheckResult) -> Result<(), TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        let names = &self.inner.names;
        let body = encode(&Message::CheckResult(Box::new(result.clone())));
        self.publish(&live, &names.results(), &names.results(), &body, BasicProperties::default()).await
    }

    async fn publish_keepalive(&self, keepalive: &Keepalive) -> Result<(), TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        let names = &self.inner.names;
        let body = encode(&Message::Keepalive(keepalive.clone()));
        let ttl_ms = keepalive.interval.saturating_mul(2000).max(1000);
        let properties = BasicProperties::default().with_expiration(ttl_ms.to_string().as_str().into());
        self.publish(&live, &names.keepalives(), &names.keepalives(), &body, properties).await
    }

    async fn requests(&self, subscriptions: &[String], prefetch: u16) -> Result<Inbox<CheckRequest>, TransportError> {
        let queues = subscriptions.iter().map(|s| self.inner.names.subscription(s)).collect();
        Ok(self.consume(queues, subscriptions.to_vec(), prefetch, decode_request))
    }

    async fn results(&self) -> Result<Inbox<CheckResult>, TransportError> {
        Ok(self.consume(vec![self.inner.names.results()], vec![], 256, decode_result))
    }

    async fn keepalives(&self) -> Result<Inbox<Keepalive>, TransportError> {
        Ok(self.consume(vec![self.inner.names.handler_keepalives()], vec![], 64, decode_keepalive))
    }

    async fn dead_letters(&self) -> Result<Inbox<DeadLetter>, TransportError> {
        Ok(self.consume(vec![self.inner.names.handler_dead()], vec![], 64, decode_dead_letter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn names_share_the_prefix() {
        let names = Names::new("t1");
        assert_eq!(names.subscription("east"), "t1.sub.east");
        assert_eq!(names.lock(), "t1.scheduler.lock");
    }
}
