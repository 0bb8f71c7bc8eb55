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

/// Nothing to do on ack; a reject dead-letters the request.
struct MemorySettle {
    dead_letter: Option<(DeadLetter, mpsc::UnboundedSender<DeadLetter>)>,
}

impl Settle for MemorySettle {
    fn ack(self: Box<Self>) -> SettleFuture {
        Box::pin(async { Ok(()) })
    }

    fn reject(self: Box<Self>, reason: DeadReason) -> SettleFuture {
        if let Some((mut letter, tx)) = self.dead_letter {
            letter.reason = reason;
            // The dead-letter queue may have no consumer (no handler): like an
            // unbound broker queue, the letter is then simply not read.
            let _ = tx.send(letter);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Moves messages from a queue into a bounded inbox, wrapping each in a delivery.
fn forward<M: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<M>,
    tx: mpsc::Sender<Delivery<M>>,
    settle: impl Fn(&M) -> MemorySettle + Send + 'static,
) {
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let settle = Box::new(settle(&message));
            if tx.send(Delivery::new(message, settle)).await.is_err() {
                break;
            }
        }
    });
}

fn inbox_of<M: Send + 'static>(queue: &Queue<M>) -> Result<Inbox<M>, TransportError> {
    let (tx, rx) = mpsc::channel(INBOX_DEPTH);
    forward(queue.take()?, tx, |_| MemorySettle { dead_letter: None });
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
            forward(self.request_queue(subscription).take()?, tx.clone(), move |request| MemorySettle {
                dead_letter: Some((DeadLetter::of(request, DeadReason::Expired), dead.clone())),
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
