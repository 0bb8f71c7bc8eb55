//! The scheduling loop: a min-heap of each check's next slot; at each slot one
//! request per subscription is published. The catalog arrives through a
//! `watch` channel, so a reload swaps the plan without a restart.
//!
//! Publishes are pipelined: up to [`IN_FLIGHT`] requests await the broker's
//! confirm at once. Awaiting each confirm in turn would cap the scheduler at
//! one request per broker round trip (a persistent, confirmed publish to a
//! quorum queue: a few milliseconds), far below 1,000 checks a second.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use protocol::metrics::{self, Metrics};
use protocol::transport::Transport;
use protocol::{CheckDefinition, CheckRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::slots::{Slot, next_slot};

/// Requests awaiting the transport's confirm at once. Enough to keep a
/// broker busy; bounded so a stalled broker holds back the scheduler (and its
/// memory) instead of piling up publishes.
const IN_FLIGHT: usize = 512;

/// How long publishes already started may take to settle after shutdown.
const DRAIN: Duration = Duration::from_secs(5);

pub struct SchedulerConfig {
    /// This scheduler's identity, written into every request it publishes.
    pub instance: String,
}

/// The checks a scheduler plans, swapped whole on reload.
pub type CheckSet = Arc<[CheckDefinition]>;

pub struct Scheduler<T> {
    transport: T,
    config: SchedulerConfig,
    metrics: Metrics,
    /// Requests the transport confirmed, for the shutdown report.
    published: AtomicU64,
}

/// Each check's next slot, earliest first.
struct Plan {
    checks: CheckSet,
    heap: BinaryHeap<Reverse<(Slot, usize)>>,
}

impl Plan {
    fn new(checks: CheckSet, now: DateTime<Utc>) -> Self {
        let heap = checks
            .iter()
            .enumerate()
            .filter_map(|(i, check)| next_slot(check, now).map(|slot| Reverse((slot, i))))
            .collect();
        Self { checks, heap }
    }

    fn next_at(&self) -> Option<DateTime<Utc>> {
        self.heap.peek().map(|Reverse((slot, _))| slot.at)
    }

    /// Takes the earliest slot if it is due, scheduling that check's next one.
    fn pop_due(&mut self, now: DateTime<Utc>) -> Option<(Slot, usize)> {
        if self.next_at()? > now {
            return None;
        }
        let Reverse((slot, i)) = self.heap.pop()?;
        if let Some(next) = next_slot(&self.checks[i], slot.at) {
            self.heap.push(Reverse((next, i)));
        }
        Some((slot, i))
    }
}

impl<T: Transport> Scheduler<T> {
    pub fn new(transport: T, config: SchedulerConfig, metrics: Metrics) -> Self {
        Self { transport, config, metrics, published: AtomicU64::new(0) }
    }

    /// Requests published so far (confirmed by the transport).
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Publishes requests until `shutdown`, then waits (at most [`DRAIN`]) for
    /// the publishes already started. A request the transport cannot take is
    /// logged and counted, and scheduling goes on with the next slots.
    pub async fn run(&self, mut catalog: watch::Receiver<CheckSet>, shutdown: CancellationToken) {
        let mut plan = Plan::new(catalog.borrow_and_update().clone(), Utc::now());
        let mut reloads_open = true;
        let mut in_flight = FuturesUnordered::new();
        loop {
            let wait = plan.next_at().map(|at| (at - Utc::now()).to_std().unwrap_or_default());
            let room = in_flight.len() < IN_FLIGHT;
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(()) = in_flight.next() => continue,
                changed = catalog.changed(), if reloads_open => {
                    match changed {
                        Ok(()) => plan = Plan::new(catalog.borrow_and_update().clone(), Utc::now()),
                        Err(_) => reloads_open = false,
                    }
                    continue;
                }
                () = sleep_or_forever(wait), if room => {}
            }
            let now = Utc::now();
            while in_flight.len() < IN_FLIGHT
                && let Some((slot, i)) = plan.pop_due(now)
            {
                let check = &plan.checks[i];
                for subscription in check.subscriptions() {
                    if now > slot.deadline {
                        // The scheduler itself was stalled past the slot's start window.
                        tracing::warn!(check = check.name(), subscription, slot = %slot.at, "slot missed by the scheduler");
                        self.metrics.slots_missed.get_or_create(&metrics::labels(check.name(), subscription)).inc();
                        continue;
                    }
                    in_flight.push(self.publish(CheckRequest {
                        id: CheckRequest::id_for(check.name(), subscription, slot.at),
                        check: check.clone(),
                        subscription: subscription.to_owned(),
                        scheduled_at: slot.at,
                        deadline: slot.deadline,
                        scheduler: self.config.instance.clone(),
                    }));
                }
            }
        }
        let drained = tokio::time::timeout(DRAIN, async { while in_flight.next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                unconfirmed = in_flight.len(),
                "publishes not confirmed before shutdown; those slots may not run"
            );
        }
    }

    async fn publish(&self, request: CheckRequest) {
        let subscription = request.subscription.as_str();
        match self.transport.publish_request(&request).await {
            Ok(()) => {
                self.published.fetch_add(1, Ordering::Relaxed);
                self.metrics.requests_published.get_or_create(&metrics::subscription(subscription)).inc();
            }
            Err(e) => {
                tracing::warn!(check = request.check.name(), subscription, slot = %request.scheduled_at, error = %e, "request not published");
                self.metrics.publish_failures.get_or_create(&metrics::subscription(subscription)).inc();
            }
        }
    }
}

async fn sleep_or_forever(wait: Option<std::time::Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::definition::parse_check;
    use protocol::message::{CheckResult, Keepalive};
    use protocol::transport::memory::MemoryTransport;
    use protocol::transport::{DeadLetter, Inbox, TransportError};
    use serde_json::json;
    use std::collections::HashSet;

    #[tokio::test]
    async fn publishes_one_request_per_subscription_on_each_slot() {
        let check = parse_check(json!({
            "name": "two-pools", "type": "tls", "host": "example.com",
            "interval": "1s", "timeout": "500ms", "subscriptions": ["east", "west"]
        }))
        .unwrap();
        let transport = MemoryTransport::new();
        let mut east = transport.requests(&["east".to_owned()], 16).await.unwrap();
        let mut west = transport.requests(&["west".to_owned()], 16).await.unwrap();
        let (_, metrics) = Metrics::standalone();
        let scheduler = Scheduler::new(transport, SchedulerConfig { instance: "s1".into() }, metrics);
        let (_tx, rx) = watch::channel(CheckSet::from(vec![check]));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { scheduler.run(rx, stop).await });
        let mut slots = Vec::new();
        for _ in 0..2 {
            let e = tokio::time::timeout(Duration::from_secs(3), east.next()).await.unwrap().unwrap();
            let w = tokio::time::timeout(Duration::from_secs(3), west.next()).await.unwrap().unwrap();
            assert_eq!(e.message.scheduled_at, w.message.scheduled_at);
            assert_ne!(e.message.id, w.message.id);
            assert_eq!(e.message.subscription, "east");
            assert_eq!(e.message.deadline - e.message.scheduled_at, chrono::Duration::milliseconds(1000));
            slots.push(e.message.scheduled_at);
            // Settled, or the memory transport delivers them again.
            e.ack().await.unwrap();
            w.ack().await.unwrap();
        }
        assert_eq!(slots[1] - slots[0], chrono::Duration::seconds(1));
        shutdown.cancel();
        task.await.unwrap();
    }

    /// Holds every request publish until `barrier` fills: a scheduler that
    /// waited for each confirm before the next publish would never fill it.
    #[derive(Clone)]
    struct GatedTransport {
        inner: MemoryTransport,
        barrier: Arc<tokio::sync::Barrier>,
    }

    impl Transport for GatedTransport {
        async fn publish_request(&self, request: &CheckRequest) -> Result<(), TransportError> {
            self.barrier.wait().await;
            self.inner.publish_request(request).await
        }
        async fn publish_result(&self, result: &CheckResult) -> Result<(), TransportError> {
            self.inner.publish_result(result).await
        }
        async fn publish_keepalive(&self, keepalive: &Keepalive) -> Result<(), TransportError> {
            self.inner.publish_keepalive(keepalive).await
        }
        async fn requests(
            &self,
            subscriptions: &[String],
            prefetch: u16,
        ) -> Result<Inbox<CheckRequest>, TransportError> {
            self.inner.requests(subscriptions, prefetch).await
        }
        async fn results(&self) -> Result<Inbox<CheckResult>, TransportError> {
            self.inner.results().await
        }
        async fn keepalives(&self) -> Result<Inbox<Keepalive>, TransportError> {
            self.inner.keepalives().await
        }
        async fn dead_letters(&self) -> Result<Inbox<DeadLetter>, TransportError> {
            self.inner.dead_letters().await
        }
    }

    #[tokio::test]
    async fn publishes_without_waiting_for_each_confirm() {
        const CHECKS: usize = 8;
        let checks: Vec<CheckDefinition> = (0..CHECKS)
            .map(|i| {
                parse_check(json!({
                    "name": format!("c{i}"), "type": "tls", "host": "example.com", "interval": "1s", "timeout": "500ms"
                }))
                .unwrap()
            })
            .collect();
        let inner = MemoryTransport::new();
        let mut inbox = inner.requests(&["default".to_owned()], 64).await.unwrap();
        let transport = GatedTransport { inner, barrier: Arc::new(tokio::sync::Barrier::new(CHECKS)) };
        let (_, metrics) = Metrics::standalone();
        let scheduler = Arc::new(Scheduler::new(transport, SchedulerConfig { instance: "s1".into() }, metrics));
        let (_tx, rx) = watch::channel(CheckSet::from(checks));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (scheduler, stop) = (scheduler.clone(), shutdown.clone());
            async move { scheduler.run(rx, stop).await }
        });
        // Every check's first slot falls within one second; all eight
        // publishes must be pending at once for any of them to complete.
        let mut names = HashSet::new();
        while names.len() < CHECKS {
            let delivery = tokio::time::timeout(Duration::from_secs(5), inbox.next())
                .await
                .expect("publishes were serialised: the gate never filled")
                .unwrap();
            names.insert(delivery.message.check.name().to_owned());
        }
        shutdown.cancel();
        task.await.unwrap();
        assert!(scheduler.published() >= CHECKS as u64);
    }
}
