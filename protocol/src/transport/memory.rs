//! The in-process transport of `picket standalone`: unbounded queues, one per
//! subscription, with the same settle semantics as the broker (a rejected
//! request becomes a dead letter).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{DeadLetter, DeadReason, Delivery, Inbox, Settle, SettleFuture, Transport, TransportError};
use crate::message::{CheckRequest, CheckResult, Keepalive};

/// Deliveries buffered between a queue and its consumer.
const INBOX_DEPTH: usize = 1024;

/// An unbounded queue with one consumer, taken on first use.
struct Queue<M> {
    tx: mpsc::UnboundedSender<M>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<M>>>,
}

impl<M> Default for Queue<M> {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self { tx, rx: Mutex::new(Some(rx)) }
    }
}

impl<M> Queue<M> {
    fn take(&self) -> Result<mpsc::UnboundedReceiver<M>, TransportError> {
        self.rx
            .lock()
            .expect("queue lock")
            .take()
            .ok_or_else(|| TransportError::Broker("the in-memory transport allows one consumer per queue".into()))
    }
}

#[derive(Default)]
struct Inner {
    requests: Mutex<HashMap<String, Arc<Queue<CheckRequest>>>>,
    results: Queue<CheckResult>,
    keepalives: Queue<Keepalive>,
    dead: Queue<DeadLetter>,
}

#[derive(Clone, Default)]
pub struct MemoryTransport {
    inner: Arc<Inner>,
}

impl MemoryTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn request_queue(&self, subscription: &str) -> Arc<Queue<CheckRequest>> {
        let mut queues = self.inner.requests.lock().expect("queues lock");
        queues.entry(subscription.to_owned()).or_default().clone()
    }
}

/// Settles like a broker: ack forgets the message, reject dead-letters a
/// request, and requeue (or a delivery dropped unsettled, as when its
/// consumer task dies) puts it back at the end of its queue.
struct MemorySettle<M> {
    /// The message again, to requeue; `None` once settled.
    copy: Option<M>,
    queue: mpsc::UnboundedSender<M>,
    dead_letter: Option<(DeadLetter, mpsc::UnboundedSender<DeadLetter>)>,
}

impl<M: Send + 'static> Settle for MemorySettle<M> {
    fn ack(mut self: Box<Self>) -> SettleFuture {
        self.copy = None;
        Box::pin(async { Ok(()) })
    }

    fn reject(mut self: Box<Self>, reason: DeadReason) -> SettleFuture {
        self.copy = None;
        if let Some((mut letter, tx)) = self.dead_letter.take() {
            letter.reason = reason;
            // The dead-letter queue may have no consumer (no handler): like an
            // unbound broker queue, the letter is then simply not read.
            let _ = tx.send(letter);
        }
        Box::pin(async { Ok(()) })
    }

    fn requeue(self: Box<Self>) -> SettleFuture {
        // Dropping does it.
        Box::pin(async { Ok(()) })
    }
}

impl<M> Drop for MemorySettle<M> {
    fn drop(&mut self) {
        if let Some(message) = self.copy.take() {
            // Fails only when the transport itself is gone.
            let _ = self.queue.send(message);
        }
    }
}

/// Moves messages from a queue into a bounded inbox, wrapping each in a
/// delivery that can put it back on `queue`.
fn forward<M: Clone + Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<M>,
    queue: mpsc::UnboundedSender<M>,
    tx: mpsc::Sender<Delivery<M>>,
    dead_letter: impl Fn(&M) -> Option<(DeadLetter, mpsc::UnboundedSender<DeadLetter>)> + Send + 'static,
) {
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let settle =
                MemorySettle { copy: Some(message.clone()), queue: queue.clone(), dead_letter: dead_letter(&message) };
            if let Err(unsent) = tx.send(Delivery::new(message, Box::new(settle))).await {
                // The consumer is gone: the delivery's settle puts it back on drop.
                drop(unsent);
                break;
            }
        }
    });
}

fn inbox_of<M: Clone + Send + 'static>(queue: &Queue<M>) -> Result<Inbox<M>, TransportError> {
    let (tx, rx) = mpsc::channel(INBOX_DEPTH);
    forward(queue.take()?, queue.tx.clone(), tx, |_| None);
    Ok(Inbox::new(rx))
}

fn send<M>(queue: &Queue<M>, message: M) -> Result<(), TransportError> {
    queue.tx.send(message).map_err(|_| TransportError::Closed)
}

impl Transport for MemoryTransport {
    async fn publish_request(&self, request: &CheckRequest) -> Result<(), TransportError> {
        send(&self.request_queue(&request.subscription), request.clone())
    }

    async fn publish_result(&self, result: &CheckResult) -> Result<(), TransportError> {
        send(&self.inner.results, result.clone())
    }

    async fn publish_keepalive(&self, keepalive: &Keepalive) -> Result<(), TransportError> {
        send(&self.inner.keepalives, keepalive.clone())
    }

    async fn requests(&self, subscriptions: &[String], prefetch: u16) -> Result<Inbox<CheckRequest>, TransportError> {
        let (tx, rx) = mpsc::channel(usize::from(prefetch.max(1)));
        for subscription in subscriptions {
            let dead = self.inner.dead.tx.clone();
            let queue = self.request_queue(subscription);
            forward(queue.take()?, queue.tx.clone(), tx.clone(), move |request| {
                Some((DeadLetter::of(request, DeadReason::Expired), dead.clone()))
            });
        }
        Ok(Inbox::new(rx))
    }

    async fn results(&self) -> Result<Inbox<CheckResult>, TransportError> {
        inbox_of(&self.inner.results)
    }

    async fn keepalives(&self) -> Result<Inbox<Keepalive>, TransportError> {
        inbox_of(&self.inner.keepalives)
    }

    async fn dead_letters(&self) -> Result<Inbox<DeadLetter>, TransportError> {
        inbox_of(&self.inner.dead)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::*;

    fn keepalive(runner: &str) -> Keepalive {
        Keepalive {
            runner: runner.into(),
            subscriptions: vec!["default".into()],
            version: "test".into(),
            started_at: Utc::now(),
            in_flight: 0,
            executed: 0,
            interval: 1,
            stopping: false,
        }
    }

    async fn next<M>(inbox: &mut Inbox<M>) -> Delivery<M> {
        tokio::time::timeout(Duration::from_secs(5), inbox.next()).await.expect("a delivery").expect("open")
    }

    #[tokio::test]
    async fn requeued_and_dropped_deliveries_come_back_acked_ones_do_not() {
        let transport = MemoryTransport::new();
        let mut inbox = transport.keepalives().await.unwrap();
        transport.publish_keepalive(&keepalive("r1")).await.unwrap();
        next(&mut inbox).await.requeue().await.unwrap();
        let again = next(&mut inbox).await;
        assert_eq!(again.message.runner, "r1", "a requeued message is delivered again");
        drop(again);
        let third = next(&mut inbox).await;
        assert_eq!(third.message.runner, "r1", "a message dropped unsettled is delivered again");
        third.ack().await.unwrap();
        transport.publish_keepalive(&keepalive("r2")).await.unwrap();
        assert_eq!(next(&mut inbox).await.message.runner, "r2", "an acked message is gone");
    }
}
