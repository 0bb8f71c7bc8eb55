//! Settling the results of one batch delivery one by one. The handler
//! settles each result as it stores it; the delivery is settled when the
//! last part is: acked when every part was acked or dead-lettered, requeued
//! whole when any part asked for a requeue or was dropped unsettled. The
//! parts stored before such a requeue come back as duplicates, which the
//! handler drops, as it drops any redelivered result.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lapin::options::{BasicAckOptions, BasicNackOptions};
use protocol::message::{Message, decode, encode};
use protocol::transport::{DeadReason, Settle, SettleFuture, TransportError};

use crate::{AmqpTransport, broker};

/// One result of a batch delivery.
pub(crate) struct Part {
    group: Arc<Group>,
    /// Its place in the batch, to dead-letter it alone.
    index: usize,
    settled: bool,
}

struct Group {
    transport: AmqpTransport,
    /// Taken by the last part to settle.
    delivery: Mutex<Option<lapin::message::Delivery>>,
    unsettled: AtomicUsize,
    requeue: AtomicBool,
}

impl Part {
    /// The `count` parts of `delivery`, in the batch's order.
    pub(crate) fn split(
        transport: &AmqpTransport,
        delivery: lapin::message::Delivery,
        count: usize,
    ) -> impl Iterator<Item = Part> {
        let group = Arc::new(Group {
            transport: transport.clone(),
            delivery: Mutex::new(Some(delivery)),
            unsettled: AtomicUsize::new(count),
            requeue: AtomicBool::new(false),
        });
        (0..count).map(move |index| Part { group: group.clone(), index, settled: false })
    }

    /// Settles this part; the last one settles the delivery.
    fn finish(&mut self, requeue: bool) -> SettleFuture {
        self.settled = true;
        let group = self.group.clone();
        Box::pin(async move {
            if requeue {
                group.requeue.store(true, Ordering::Release);
            }
            if group.unsettled.fetch_sub(1, Ordering::AcqRel) != 1 {
                return Ok(());
            }
            let delivery = group.delivery.lock().expect("delivery lock").take().expect("the last part settles once");
            if group.requeue.load(Ordering::Acquire) {
                let nack = BasicNackOptions { requeue: true, ..BasicNackOptions::default() };
                delivery.acker.nack(nack).await.map(|_| ()).map_err(broker)
            } else {
                delivery.acker.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(broker)
            }
        })
    }

    /// This part's result as a `check_result` message of its own.
    fn single(&self) -> Result<Vec<u8>, TransportError> {
        let body = match self.group.delivery.lock().expect("delivery lock").as_ref() {
            Some(delivery) => delivery.data.clone(),
            None => return Err(TransportError::Broker("the batch is already settled".into())),
        };
        match decode(&body) {
            Ok(Message::CheckResults(mut batch)) if self.index < batch.results.len() => {
                Ok(encode(&Message::CheckResult(Box::new(batch.results.swap_remove(self.index)))))
            }
            _ => Err(TransportError::Broker("a batch part no longer decodes".into())),
        }
    }
}

impl Settle for Part {
    fn ack(mut self: Box<Self>) -> SettleFuture {
        self.finish(false)
    }

    fn requeue(mut self: Box<Self>) -> SettleFuture {
        self.finish(true)
    }

    /// Dead-letters this result alone; if that copy fails, the whole batch
    /// is requeued and this result judged again.
    fn reject(mut self: Box<Self>, reason: DeadReason) -> SettleFuture {
        let transport = self.group.transport.clone();
        let single = self.single();
        Box::pin(async move {
            let copied = match single {
                Ok(body) => transport.dead_copy(None, &body, &reason).await,
                Err(e) => Err(e),
            };
            if let Err(e) = &copied {
                tracing::warn!(error = %e, "dead-letter copy of a batched result failed; requeueing its batch");
            }
            self.finish(copied.is_err()).await
        })
    }
}

/// A part dropped unsettled (its task panicked or was cancelled) requeues
/// its batch, like a single delivery dropped unsettled.
impl Drop for Part {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let finish = self.finish(true);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(finish);
        }
    }
}
