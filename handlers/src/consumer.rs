//! The handler's consume loop, transport side: a delivery is acked only once
//! its sink has taken it, so a crash replays rather than loses.

use std::future::Future;
use std::time::Duration;

use protocol::CheckResult;
use protocol::message::Keepalive;
use protocol::transport::{DeadLetter, Delivery, Inbox, Transport, TransportError};
use tokio_util::sync::CancellationToken;

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

/// Where results and dead letters go: the console now, the alerting state
/// machine later. The seam between the transport and what acts on results.
pub trait ResultSink: Accept<CheckResult> + Accept<DeadLetter> + Accept<Keepalive> {}

impl<S: Accept<CheckResult> + Accept<DeadLetter> + Accept<Keepalive>> ResultSink for S {}

/// Consumes results and dead letters until `shutdown`, then settles whatever
/// already arrived before returning.
pub async fn consume<T: Transport, S: ResultSink>(
    transport: &T,
    sink: &S,
    shutdown: CancellationToken,
) -> Result<(), HandlerError> {
    let mut results = transport.results().await?;
    let mut dead = transport.dead_letters().await?;
    let mut keepalives = transport.keepalives().await?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(delivery) = results.next() => settle(sink, delivery).await?,
            Some(delivery) = dead.next() => settle(sink, delivery).await?,
            Some(delivery) = keepalives.next() => settle(sink, delivery).await?,
            else => return Ok(()),
        }
    }
    drain(sink, &mut results).await?;
    drain(sink, &mut dead).await?;
    drain(sink, &mut keepalives).await
}

async fn settle<M, S: Accept<M>>(sink: &S, delivery: Delivery<M>) -> Result<(), HandlerError> {
    sink.accept(&delivery.message).await?;
    delivery.ack().await?;
    Ok(())
}

/// Settles what is already queued, waiting briefly for stragglers in transit.
async fn drain<M, S: Accept<M>>(sink: &S, inbox: &mut Inbox<M>) -> Result<(), HandlerError> {
    while let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_millis(50), inbox.next()).await {
        settle(sink, delivery).await?;
    }
    Ok(())
}
