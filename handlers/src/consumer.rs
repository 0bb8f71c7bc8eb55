//! The handler's consume loop, transport side: a delivery is acked only once
//! its sink has taken it, so a crash replays rather than loses. Deliveries
//! are settled concurrently (up to [`IN_FLIGHT`]) so that a batching sink can
//! commit many results in one transaction.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use protocol::CheckResult;
use protocol::message::Keepalive;
use protocol::transport::{DeadLetter, Delivery, Inbox, RequeueBackoff, Transport, TransportError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Deliveries being settled at once.
const IN_FLIGHT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("sink: {0}")]
    Sink(String),
}

/// A sink takes one kind of message; the delivery is acked once it has.
pub trait Accept<M>: Send + Sync {
    fn accept(&self, message: &M) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Where results, dead letters and keepalives go: the seam between the
/// transport and what acts on them (console, JSON log, alerting).
pub trait ResultSink: Accept<CheckResult> + Accept<DeadLetter> + Accept<Keepalive> + 'static {}

impl<S: Accept<CheckResult> + Accept<DeadLetter> + Accept<Keepalive> + 'static> ResultSink for S {}

impl<M: Sync, T: Accept<M>> Accept<M> for Arc<T> {
    fn accept(&self, message: &M) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self.as_ref().accept(message)
    }
}

/// Two sinks in turn: the second sees a message only once the first took it.
pub struct Both<A, B>(pub A, pub B);

impl<M: Sync, A: Accept<M>, B: Accept<M>> Accept<M> for Both<A, B> {
    async fn accept(&self, message: &M) -> Result<(), HandlerError> {
        self.0.accept(message).await?;
        self.1.accept(message).await
    }
}

/// Whether the sink took its last message; false while it fails (a database
/// down), which the role reports on `/readyz`.
#[derive(Clone, Debug)]
pub struct SinkHealth(Arc<AtomicBool>);

impl Default for SinkHealth {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl SinkHealth {
    pub fn is_healthy(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Consumes results, dead letters and keepalives until `shutdown`, then
/// settles whatever already arrived before returning. A message the sink
/// fails to take (the store is down) is requeued after a backoff with
/// jitter, so the broker delivers it again, here or to a standby, once the
/// sink recovers: held unacked instead, it would stay stranded until the
/// channel closed and, with prefetch exhausted, stop the consumer.
pub async fn consume<T: Transport, S: ResultSink>(
    transport: &T,
    sink: Arc<S>,
    health: SinkHealth,
    shutdown: CancellationToken,
) -> Result<(), HandlerError> {
    let mut results = transport.results().await?;
    let mut dead = transport.dead_letters().await?;
    let mut keepalives = transport.keepalives().await?;
    let settler = Settler {
        sink,
        health,
        tasks: TaskTracker::new(),
        slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        backoff: Arc::default(),
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(delivery) = results.next() => settler.spawn(delivery).await,
            Some(delivery) = dead.next() => settler.spawn(delivery).await,
            Some(delivery) = keepalives.next() => settler.spawn(delivery).await,
            else => break,
        }
    }
    settler.drain(&mut results).await;
    settler.drain(&mut dead).await;
    settler.drain(&mut keepalives).await;
    settler.tasks.close();
    settler.tasks.wait().await;
    Ok(())
}

struct Settler<S> {
    sink: Arc<S>,
    health: SinkHealth,
    tasks: TaskTracker,
    slots: Arc<Semaphore>,
    backoff: Arc<RequeueBackoff>,
}

impl<S: ResultSink> Settler<S> {
    async fn spawn<M: Send + Sync + 'static>(&self, delivery: Delivery<M>)
    where
        S: Accept<M>,
    {
        let permit = self.slots.clone().acquire_owned().await.expect("semaphore never closed");
        let sink = self.sink.clone();
        let health = self.health.clone();
        let backoff = self.backoff.clone();
        self.tasks.spawn(async move {
            match sink.accept(&delivery.message).await {
                Ok(()) => {
                    health.0.store(true, Ordering::Relaxed);
                    backoff.succeeded();
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(error = %e, "ack failed; the message may be delivered again");
                    }
                }
                Err(e) => {
                    health.0.store(false, Ordering::Relaxed);
                    let delay = backoff.failed();
                    tracing::error!(error = %e, retry_in = ?delay, "message not taken; requeueing it");
                    tokio::time::sleep(delay).await;
                    if let Err(e) = delivery.requeue().await {
                        tracing::warn!(error = %e, "requeue failed; the broker redelivers when the channel closes");
                    }
                }
            }
            drop(permit);
        });
    }

    /// Settles what is already queued, waiting briefly for stragglers in transit.
    async fn drain<M: Send + Sync + 'static>(&self, inbox: &mut Inbox<M>)
    where
        S: Accept<M>,
    {
        while let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_millis(50), inbox.next()).await {
            self.spawn(delivery).await;
        }
    }
}
