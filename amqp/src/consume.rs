//! Consuming queues into an [`Inbox`], and settling what was delivered.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use protocol::message::{CheckRequest, CheckResult, DecodeError, Keepalive, Message, decode};
use protocol::metrics::RefusedLabels;
use protocol::transport::{DeadLetter, DeadReason, Delivery, Inbox, Settle, SettleFuture, TransportError};
use tokio::sync::mpsc;

use crate::parts::Part;
use crate::signing::SIGNATURE_HEADER;
use crate::supervisor::{BACKOFF_START, Live};
use crate::topology::long;
use crate::{AmqpTransport, PUBLISH_WAIT, broker};

/// Header carrying why a message was refused (expired, overlap, malformed…).
pub(crate) const REASON_HEADER: &str = "x-picket-reason";

/// Why a delivery is refused before it reaches an inbox.
pub(crate) struct Refusal {
    pub(crate) reason: DeadReason,
    /// For the log: never the body, never a key.
    pub(crate) detail: String,
}

impl From<DecodeError> for Refusal {
    fn from(e: DecodeError) -> Self {
        Self { reason: e.dead_reason(), detail: e.to_string() }
    }
}

fn wrong_kind(expected: &str) -> Refusal {
    Refusal { reason: DeadReason::Malformed, detail: format!("not a {expected}") }
}

/// How long declaring the topology and subscribing may take on one connection.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Turns one (verified) delivery into its messages (one, or a batch's), or
/// says why it is refused.
pub(crate) type Decoder<M> = fn(&lapin::message::Delivery) -> Result<Vec<M>, Refusal>;

/// What one inbox reads.
pub(crate) struct Consumer<M> {
    /// The `kind` label of refusals: `request`, `result`, `keepalive`, `dead_letter`.
    pub(crate) kind: &'static str,
    pub(crate) queues: Vec<String>,
    /// Subscription queues among `queues`, declared before consuming.
    pub(crate) subscriptions: Vec<String>,
    pub(crate) prefetch: u16,
    pub(crate) decode: Decoder<M>,
}

impl<M> Consumer<M> {
    /// One queue of the fixed topology.
    pub(crate) fn of(kind: &'static str, queue: String, prefetch: u16, decode: Decoder<M>) -> Self {
        Self { kind, queues: vec![queue], subscriptions: Vec::new(), prefetch, decode }
    }
}

impl AmqpTransport {
    /// Consumes the queues on a channel of each connection, re-subscribing
    /// after a reconnect or a closed channel, and feeds verified, decoded
    /// messages into one inbox. The others are refused (see [`Self::refuse`]).
    pub(crate) fn consume<M: Send + 'static>(&self, consumer: Consumer<M>) -> Inbox<M> {
        let (tx, rx) = mpsc::channel(usize::from(consumer.prefetch.max(1)));
        let transport = self.clone();
        tokio::spawn(async move {
            let mut live_rx = transport.inner.live.clone();
            while !tx.is_closed() {
                let live = match live_rx.wait_for(Option::is_some).await {
                    Ok(live) => live.clone().expect("waited for Some"),
                    Err(_) => return,
                };
                match transport.consume_on(&live, &consumer, &tx).await {
                    Err(e) => {
                        tracing::warn!(error = %e, queues = ?consumer.queues, "consumer interrupted; resubscribing")
                    }
                    // The stream ended: the broker cancelled the consumer (its queue was deleted).
                    Ok(()) if !tx.is_closed() => {
                        tracing::warn!(queues = ?consumer.queues, "consumer cancelled by the broker; resubscribing");
                    }
                    Ok(()) => {}
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
        consumer: &Consumer<M>,
        tx: &mpsc::Sender<Delivery<M>>,
    ) -> Result<(), TransportError> {
        let Consumer { kind, queues, subscriptions, prefetch, decode } = consumer;
        let (kind, prefetch) = (*kind, *prefetch);
        // A node that dies mid-setup can leave a step waiting for an answer
        // that never comes; past the limit the setup is tried again on
        // whatever connection is live by then.
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let channel = live.connection.create_channel().await.map_err(broker)?;
            // Declared on every (re)subscription: a queue someone deleted, which
            // is what cancels a consumer, is back before it is consumed again.
            let topology = &self.inner.topology;
            topology.declare(&live.connection, &channel).await?;
            for subscription in subscriptions {
                topology.declare_subscription(&live.connection, &channel, subscription).await?;
            }
            channel.basic_qos(prefetch.max(1), BasicQosOptions::default()).await.map_err(broker)?;
            let (merged_tx, merged) = mpsc::channel(usize::from(prefetch.max(1)));
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
                        if merged_tx.send(Some(delivery)).await.is_err() {
                            return;
                        }
                    }
                    // The broker cancelled this queue's consumer (the queue was deleted).
                    let _ = merged_tx.send(None).await;
                });
            }
            Ok((channel, merged))
        })
        .await;
        let (channel, mut merged) = match subscribed {
            Ok(subscribed) => subscribed?,
            Err(_) => return Err(broker(format_args!("subscribing took over {SUBSCRIBE_TIMEOUT:?}"))),
        };
        // Until one queue's consumer ends: then every queue is consumed again
        // on a new channel, declared first. Closing this one returns what it
        // holds unacked to the queues; the redelivered copies of what was
        // already handled are duplicates, dropped as such.
        while let Some(Some(delivery)) = merged.recv().await {
            let delivery = delivery.map_err(broker)?;
            match self.verify(&delivery).and_then(|()| decode(&delivery)) {
                Ok(mut messages) if messages.len() == 1 => {
                    let message = messages.pop().expect("one message");
                    let settle = Box::new(AmqpSettle { transport: self.clone(), delivery: Some(delivery) });
                    if tx.send(Delivery::new(message, settle)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(messages) => {
                    let parts = Part::split(self, delivery, messages.len());
                    for (message, settle) in messages.into_iter().zip(parts) {
                        if tx.send(Delivery::new(message, Box::new(settle))).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Err(refusal) => self.refuse(kind, delivery, refusal).await,
            }
        }
        let _ = channel.close(200, "a consumer was cancelled; resubscribing".into()).await;
        Ok(())
    }

    /// With a signing key, a delivery must carry a signature of its body by
    /// the current or the previous key.
    fn verify(&self, delivery: &lapin::message::Delivery) -> Result<(), Refusal> {
        let Some(signer) = &self.inner.signer else { return Ok(()) };
        let signature = header_str(delivery.properties.headers().as_ref(), SIGNATURE_HEADER);
        signer
            .verify(&delivery.data, signature.as_deref())
            .map_err(|e| Refusal { reason: DeadReason::Unauthenticated, detail: e.to_string() })
    }

    /// Logs and counts a refused delivery, then dead-letters it with its
    /// reason; it never reaches the inbox, so it changes no state. A refused
    /// dead letter is dropped instead: a copy would come back to this queue.
    async fn refuse(&self, kind: &'static str, delivery: lapin::message::Delivery, refusal: Refusal) {
        let queue = delivery.routing_key.to_string();
        let reason = refusal.reason.as_str();
        let labels = RefusedLabels { kind: kind.to_owned(), reason: reason.to_owned() };
        self.inner.config.metrics.refused.get_or_create(&labels).inc();
        let settle = Box::new(AmqpSettle { transport: self.clone(), delivery: Some(delivery) });
        if kind == DEAD_LETTER {
            tracing::warn!(kind, %queue, reason, detail = %refusal.detail, "message refused; dropped");
            let _ = settle.ack().await;
        } else {
            tracing::warn!(kind, %queue, reason, detail = %refusal.detail, "message refused; dead-lettered");
            let _ = settle.reject(refusal.reason).await;
        }
    }
}

/// The `kind` label of dead letters, which are never dead-lettered again.
pub(crate) const DEAD_LETTER: &str = "dead_letter";

pub(crate) fn header_str(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
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
            match transport.dead_copy(delivery.properties.headers().clone(), &delivery.data, &reason).await {
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

impl AmqpTransport {
    /// Publishes `body` to the dead-letter exchange with `headers` and the
    /// reason added, re-signed: the original may be the unsigned message
    /// refused here.
    pub(crate) async fn dead_copy(
        &self,
        headers: Option<FieldTable>,
        body: &[u8],
        reason: &DeadReason,
    ) -> Result<(), TransportError> {
        let mut headers = headers.unwrap_or_default();
        headers.insert(REASON_HEADER.into(), long(reason.as_str()));
        if let Some(signer) = &self.inner.signer {
            headers.insert(SIGNATURE_HEADER.into(), long(&signer.sign(body)));
        }
        let live = self.live(PUBLISH_WAIT).await?;
        let properties = BasicProperties::default().with_headers(headers);
        self.publish(&live, &self.names().dead(), "", body, properties).await
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

pub(crate) fn decode_request(d: &lapin::message::Delivery) -> Result<Vec<CheckRequest>, Refusal> {
    match decode(&d.data)? {
        Message::CheckRequest(request) => Ok(vec![*request]),
        _ => Err(wrong_kind("check_request")),
    }
}

pub(crate) fn decode_result(d: &lapin::message::Delivery) -> Result<Vec<CheckResult>, Refusal> {
    match decode(&d.data)? {
        Message::CheckResult(result) => Ok(vec![*result]),
        Message::CheckResults(batch) => Ok(batch.results),
        _ => Err(wrong_kind("check_result")),
    }
}

pub(crate) fn decode_keepalive(d: &lapin::message::Delivery) -> Result<Vec<Keepalive>, Refusal> {
    match decode(&d.data)? {
        Message::Keepalive(keepalive) => Ok(vec![keepalive]),
        _ => Err(wrong_kind("keepalive")),
    }
}

/// A (verified) dead letter never fails to decode: its reason comes from the
/// header, and the request's names are there when its body is a request (a
/// refused result or keepalive is a dead letter too).
pub(crate) fn decode_dead_letter(d: &lapin::message::Delivery) -> Result<Vec<DeadLetter>, Refusal> {
    let headers = d.properties.headers().as_ref();
    let reason = match header_str(headers, REASON_HEADER) {
        // A reason a newer runner added that this build does not know.
        Some(text) => DeadReason::parse(&text).unwrap_or(DeadReason::Malformed),
        // Dead-lettered by the broker: a TTL expiry, or a reject after a failed copy.
        None if death_reason(headers).as_deref() == Some("expired") => DeadReason::Expired,
        None => DeadReason::Malformed,
    };
    Ok(vec![match decode(&d.data) {
        Ok(Message::CheckRequest(request)) => DeadLetter::of(&request, reason),
        // An unsupported (or otherwise undecodable) request still names its check.
        _ => DeadLetter::from_copy(&d.data, reason),
    }])
}

/// The `reason` of the first `x-death` entry the broker added.
fn death_reason(headers: Option<&FieldTable>) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else { return None };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else { return None };
    header_str(Some(first), "reason")
}
