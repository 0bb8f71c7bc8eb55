//! Result batches (ARCHITECTURE.md, "Result batches"). Results that finish
//! within [`LIMITS`]`.linger` of each other on one runner ride one
//! `check_results` message to `<prefix>.results.batch`, and each result's
//! publisher is answered only when that message is confirmed: a runner still
//! acks a request once its result is durable, never before. RabbitMQ's cost
//! is per message more than per byte, so this divides the results' share of
//! the broker's work by the batch size.
//!
//! A runner sends batches only while the batch queue has a consumer, which
//! only a handler of a build that reads batches is: an older handler never
//! sees one. Otherwise each result goes alone to `<prefix>.results`, as
//! before.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use protocol::message::ResultsWriter;
use protocol::transport::TransportError;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

use crate::{AmqpTransport, Confirmed, Inner, PUBLISH_WAIT};

/// When a batch closes: `linger` after its first result arrived, or at
/// `count` results, or before `bytes` of body would be passed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) linger: Duration,
    pub(crate) count: usize,
    pub(crate) bytes: usize,
}

/// 5 ms is small beside a check's own latency and its slot's tolerance
/// (250 ms of start lateness), and at a few thousand results a second it
/// fills batches of tens. 128 results of about 1 KiB stay far below the
/// broker's frame and message limits.
pub(crate) const LIMITS: Limits = Limits { linger: Duration::from_millis(5), count: 128, bytes: 256 * 1024 };

/// How long an answer to "does a handler read batches?" is trusted: after a
/// handler rollback, runners go back to single results within this.
const GATE_TTL: Duration = Duration::from_secs(2);

/// One result waiting for its batch, and who waits for its confirm.
pub(crate) struct Pending {
    /// The result as [`ResultsWriter::encode_one`] wrote it.
    encoded: Vec<u8>,
    /// When it was handed over: its batch closes `linger` after the first one's.
    at: Instant,
    done: oneshot::Sender<Result<(), TransportError>>,
}

/// The batching state of one transport.
#[derive(Default)]
pub(crate) struct Batches {
    /// Whether a handler reads batches, and when that was asked.
    gate: Mutex<Option<(Instant, bool)>>,
    /// Into the task that forms batches, started with the first one.
    queue: OnceLock<mpsc::Sender<Pending>>,
}

/// Takes the next batch from `rx`: `carry` (a result the last batch had no
/// room for) or the next to arrive, then whatever arrives until `linger`
/// after that first one, within `count` and `bytes`. A result that would
/// pass `bytes` is carried to the next batch; one larger than `bytes` on its
/// own goes alone. `None` once `rx` is closed and drained.
pub(crate) async fn next_batch(
    rx: &mut mpsc::Receiver<Pending>,
    carry: &mut Option<Pending>,
    limits: Limits,
) -> Option<Vec<Pending>> {
    let first = match carry.take() {
        Some(pending) => pending,
        None => rx.recv().await?,
    };
    let closes = first.at + limits.linger;
    let mut bytes = ResultsWriter::default().bytes() + first.encoded.len();
    let mut batch = vec![first];
    while batch.len() < limits.count {
        let Ok(Some(next)) = tokio::time::timeout_at(closes, rx.recv()).await else { break };
        // The comma before it.
        let grown = bytes + 1 + next.encoded.len();
        if grown > limits.bytes {
            *carry = Some(next);
            break;
        }
        bytes = grown;
        batch.push(next);
    }
    Some(batch)
}

/// Forms batches until every handle on the transport is gone, publishing
/// each in its own task so the next one forms meanwhile.
async fn form(inner: Weak<Inner>, mut rx: mpsc::Receiver<Pending>) {
    let mut carry = None;
    while let Some(batch) = next_batch(&mut rx, &mut carry, LIMITS).await {
        let Some(inner) = inner.upgrade() else { return };
        let transport = AmqpTransport { inner };
        tokio::spawn(async move { transport.publish_batch(batch).await });
    }
}

impl AmqpTransport {
    /// Hands `encoded` to the next batch and waits for that batch's confirm.
    pub(crate) async fn publish_in_batch(&self, encoded: Vec<u8>) -> Result<(), TransportError> {
        let queue = self.inner.batches.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(LIMITS.count * 4);
            tokio::spawn(form(Arc::downgrade(&self.inner), rx));
            tx
        });
        let (done, answer) = oneshot::channel();
        queue.send(Pending { encoded, at: Instant::now(), done }).await.map_err(|_| TransportError::Closed)?;
        answer.await.unwrap_or(Err(TransportError::Closed))
    }

    /// Whether a handler that reads batches consumes the batch queue, asked
    /// of the broker at most every [`GATE_TTL`]. A failed question is a no:
    /// single results are always readable.
    pub(crate) async fn batches_are_read(&self) -> bool {
        let mut gate = self.inner.batches.gate.lock().await;
        if let Some((asked, open)) = *gate
            && asked.elapsed() < GATE_TTL
        {
            return open;
        }
        let asked = match self.live(PUBLISH_WAIT).await {
            Ok(live) => self.passive_declare(&live, &self.names().results_batch()).await,
            Err(e) => Err(e),
        };
        let open = match asked {
            Ok((_, consumers)) => consumers > 0,
            Err(e) => {
                tracing::debug!(error = %e, "could not ask whether a handler reads result batches; sending single results");
                false
            }
        };
        if gate.map(|(_, was)| was) != Some(open) {
            tracing::info!(batches = open, "result batches {}", if open { "on: a handler reads them" } else { "off" });
        }
        *gate = Some((Instant::now(), open));
        open
    }

    /// Publishes one batch and answers each of its results. A batch the
    /// broker could not route (the batch queue is gone) turns batching off
    /// and its results go alone instead.
    async fn publish_batch(&self, batch: Vec<Pending>) {
        let mut writer = ResultsWriter::default();
        for pending in &batch {
            writer.push(&pending.encoded);
        }
        let body = writer.finish();
        let names = self.names();
        let published = match self.live(PUBLISH_WAIT).await {
            Ok(live) => {
                let properties = self.signed(&body);
                self.publish_confirmed(&live, &names.results(), &names.results_batch(), &body, properties).await
            }
            Err(e) => Err(e),
        };
        match published {
            Ok(Confirmed::Routed) => {
                self.inner.config.metrics.result_messages.inc();
                for pending in batch {
                    let _ = pending.done.send(Ok(()));
                }
            }
            Ok(Confirmed::Returned(why)) => {
                tracing::warn!(why, "a result batch was unroutable; sending single results");
                *self.inner.batches.gate.lock().await = Some((Instant::now(), false));
                for pending in batch {
                    let transport = self.clone();
                    tokio::spawn(async move {
                        let _ = pending.done.send(transport.publish_single(&pending.encoded).await);
                    });
                }
            }
            Err(e) => {
                let why = e.to_string();
                for pending in batch {
                    let _ = pending.done.send(Err(TransportError::Broker(why.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(bytes: usize) -> Pending {
        let (done, _) = oneshot::channel();
        Pending { encoded: vec![b'x'; bytes], at: Instant::now(), done }
    }

    async fn sizes(rx: &mut mpsc::Receiver<Pending>, carry: &mut Option<Pending>) -> Vec<usize> {
        next_batch(rx, carry, LIMITS).await.unwrap().iter().map(|p| p.encoded.len()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_closes_at_the_linger_time_after_its_first_result() {
        let (tx, mut rx) = mpsc::channel(16);
        let start = Instant::now();
        // A result of 10 + n bytes arrives n ms after the start.
        tokio::spawn(async move {
            for ms in [0, 2, 4, 6, 12] {
                tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
                tx.send(pending(10 + ms as usize)).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        let mut carry = None;
        let ms = |n| Duration::from_millis(n);
        assert_eq!(sizes(&mut rx, &mut carry).await, [10, 12, 14], "those within 5 ms of the first");
        assert_eq!(start.elapsed(), ms(5), "the first result was held the linger time, no longer");
        assert_eq!(sizes(&mut rx, &mut carry).await, [16]);
        assert_eq!(start.elapsed(), ms(11), "closed 5 ms after its result, before the next arrived");
        assert_eq!(sizes(&mut rx, &mut carry).await, [22]);
        assert_eq!(start.elapsed(), ms(17));
        assert!(next_batch(&mut rx, &mut carry, LIMITS).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_holds_at_most_its_count_and_a_full_one_does_not_wait() {
        let (tx, mut rx) = mpsc::channel(400);
        for _ in 0..300 {
            tx.send(pending(100)).await.unwrap();
        }
        let start = Instant::now();
        let mut carry = None;
        assert_eq!(next_batch(&mut rx, &mut carry, LIMITS).await.unwrap().len(), 128);
        assert_eq!(next_batch(&mut rx, &mut carry, LIMITS).await.unwrap().len(), 128);
        assert_eq!(start.elapsed(), Duration::ZERO, "full batches close at once");
        drop(tx);
        assert_eq!(next_batch(&mut rx, &mut carry, LIMITS).await.unwrap().len(), 44);
        assert!(next_batch(&mut rx, &mut carry, LIMITS).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_stays_within_its_bytes_and_a_larger_result_goes_alone() {
        let (tx, mut rx) = mpsc::channel(16);
        for bytes in [100 * 1024, 100 * 1024, 100 * 1024, 300 * 1024, 10] {
            tx.send(pending(bytes)).await.unwrap();
        }
        drop(tx);
        let mut carry = None;
        assert_eq!(sizes(&mut rx, &mut carry).await, [100 * 1024, 100 * 1024], "a third would pass 256 KiB");
        assert_eq!(sizes(&mut rx, &mut carry).await, [100 * 1024], "the third was carried over");
        assert_eq!(sizes(&mut rx, &mut carry).await, [300 * 1024], "larger than the limit: alone");
        assert_eq!(sizes(&mut rx, &mut carry).await, [10]);
        assert!(next_batch(&mut rx, &mut carry, LIMITS).await.is_none());
    }
}
