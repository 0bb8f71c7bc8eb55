//! How roles exchange messages. One trait, two implementations: [`memory`]
//! (standalone, tests) and, for the distributed roles, RabbitMQ (the
//! `picket-amqp` crate).
//!
//! Consumers read an [`Inbox`] of [`Delivery`]s and settle each one: `ack`
//! when its work is done (for a request: its result is published), `reject`
//! to dead-letter it, `requeue` when it cannot be handled now (a database
//! down, a result not confirmed), after a [`RequeueBackoff`] delay. A
//! delivery is never just held: a broker keeps an unsettled delivery from
//! every other consumer until its channel closes.

mod backoff;
pub mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use backoff::RequeueBackoff;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::message::{CheckRequest, CheckResult, Keepalive};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("transport closed")]
    Closed,
    #[error("broker: {0}")]
    Broker(String),
}

/// Why a request ended as a dead letter instead of a result.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// Its deadline passed before a runner could start it.
    Expired,
    /// The same check was still running for the same subscription on this runner.
    Overlap,
    /// It could not be decoded.
    Malformed,
    /// Its check definition uses a field this runner does not know: run, it
    /// would be a weaker check than the one written.
    Unsupported,
    /// Unsigned or badly signed while a signing key is set.
    Unauthenticated,
    /// A request for a subscription this runner does not serve.
    NotSubscribed,
}

impl DeadReason {
    pub const ALL: [DeadReason; 6] =
        [Self::Expired, Self::Overlap, Self::Malformed, Self::Unsupported, Self::Unauthenticated, Self::NotSubscribed];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Overlap => "overlap",
            Self::Malformed => "malformed",
            Self::Unsupported => "unsupported",
            Self::Unauthenticated => "unauthenticated",
            Self::NotSubscribed => "not_subscribed",
        }
    }

    /// The reason named `text` (as in the dead-letter header), if known.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request that was not executed, as the handler sees it. Its copy on the
/// wire is the request's own body plus a reason header, so it has no wire
/// form of its own; readers of this struct ignore fields they do not know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: DeadReason,
    /// Present when the request could be decoded.
    pub check: Option<String>,
    pub subscription: Option<String>,
    pub request_id: Option<String>,
}

impl DeadLetter {
    pub fn of(request: &CheckRequest, reason: DeadReason) -> Self {
        Self {
            reason,
            check: Some(request.check.name().to_owned()),
            subscription: Some(request.subscription.clone()),
            request_id: Some(request.id.clone()),
        }
    }

    /// The dead letter for a copy of a request's body dead-lettered for
    /// `reason` (from its header). The body is read leniently, so a request
    /// this build cannot decode (a newer scheduler's check, refused as
    /// `unsupported`) keeps its reason and still names what it was for.
    pub fn from_copy(body: &[u8], reason: DeadReason) -> Self {
        let names = crate::message::request_names(body);
        Self { reason, check: names.check, subscription: names.subscription, request_id: names.id }
    }
}

pub type SettleFuture = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send>>;

/// How a transport settles one delivery.
pub trait Settle: Send {
    fn ack(self: Box<Self>) -> SettleFuture;
    fn reject(self: Box<Self>, reason: DeadReason) -> SettleFuture;
    /// Returns the message to its queue, to be delivered again (here or to
    /// another consumer).
    fn requeue(self: Box<Self>) -> SettleFuture;
}

/// One received message and the means to settle it.
pub struct Delivery<M> {
    pub message: M,
    settle: Box<dyn Settle>,
}

impl<M> Delivery<M> {
    pub fn new(message: M, settle: Box<dyn Settle>) -> Self {
        Self { message, settle }
    }

    pub async fn ack(self) -> Result<(), TransportError> {
        self.settle.ack().await
    }

    /// Dead-letters the message (never requeued).
    pub async fn reject(self, reason: DeadReason) -> Result<(), TransportError> {
        self.settle.reject(reason).await
    }

    /// Puts the message back on its queue for another attempt. Wait a
    /// [`RequeueBackoff`] delay first, or a failing consumer spins on it.
    pub async fn requeue(self) -> Result<(), TransportError> {
        self.settle.requeue().await
    }
}

/// A stream of deliveries; `None` once the transport has shut down.
pub struct Inbox<M> {
    rx: mpsc::Receiver<Delivery<M>>,
}

impl<M> Inbox<M> {
    pub fn new(rx: mpsc::Receiver<Delivery<M>>) -> Self {
        Self { rx }
    }

    pub async fn next(&mut self) -> Option<Delivery<M>> {
        self.rx.recv().await
    }

    /// A delivery that is already waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<Delivery<M>> {
        self.rx.try_recv().ok()
    }
}

/// What every role needs from the message bus.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Publishes a request to its subscription's pool; resolves once the bus has it.
    fn publish_request(&self, request: &CheckRequest) -> impl Future<Output = Result<(), TransportError>> + Send;
    fn publish_result(&self, result: &CheckResult) -> impl Future<Output = Result<(), TransportError>> + Send;
    fn publish_keepalive(&self, keepalive: &Keepalive) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Requests for these subscriptions; at most `prefetch` unsettled at a time.
    fn requests(
        &self,
        subscriptions: &[String],
        prefetch: u16,
    ) -> impl Future<Output = Result<Inbox<CheckRequest>, TransportError>> + Send;
    fn results(&self) -> impl Future<Output = Result<Inbox<CheckResult>, TransportError>> + Send;
    fn keepalives(&self) -> impl Future<Output = Result<Inbox<Keepalive>, TransportError>> + Send;
    fn dead_letters(&self) -> impl Future<Output = Result<Inbox<DeadLetter>, TransportError>> + Send;
}
