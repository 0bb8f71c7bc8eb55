//! The scheduling loop: a min-heap of each check's next slot; at each slot one
//! request per subscription is published. The catalog arrives through a
//! `watch` channel, so a reload swaps the plan without a restart.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use protocol::metrics::{self, Metrics};
use protocol::transport::Transport;
use protocol::{CheckDefinition, CheckRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::slots::{Slot, next_slot};

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

    /// Publishes requests until `shutdown`. A request the transport cannot take
    /// is logged and counted, and scheduling goes on with the next slots.
    pub async fn run(&self, mut catalog: watch::Receiver<CheckSet>, shutdown: CancellationToken) {
        let mut plan = Plan::new(catalog.borrow_and_update().clone(), Utc::now());
        let mut reloads_open = true;
        loop {
            let wait = plan.next_at().map(|at| (at - Utc::now()).to_std().unwrap_or_default());
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = catalog.changed(), if reloads_open => {
                    match changed {
                        Ok(()) => plan = Plan::new(catalog.borrow_and_update().clone(), Utc::now()),
                        Err(_) => reloads_open = false,
                    }
                    continue;
                }
                () = sleep_or_forever(wait) => {}
            }
            let now = Utc::now();
            while let Some((slot, i)) = plan.pop_due(now) {
                let check = plan.checks[i].clone();
                self.publish_slot(&check, slot, now).await;
            }
        }
    }

    async fn publish_slot(&self, check: &CheckDefinition, slot: Slot, now: DateTime<Utc>) {
        for subscription in check.subscriptions() {
            if now > slot.deadline {
                // The scheduler itself was stalled past the slot's start window.
                tracing::warn!(check = check.name(), subscription, slot = %slot.at, "slot missed by the scheduler");
                self.metrics.slots_missed.get_or_create(&metrics::labels(check.name(), subscription)).inc();
                continue;
            }
            let request = CheckRequest {
                id: CheckRequest::id_for(check.name(), subscription, slot.at),
                check: check.clone(),
                subscription: subscription.to_owned(),
                scheduled_at: slot.at,
                deadline: slot.deadline,
                scheduler: self.config.instance.clone(),
            };
            match self.transport.publish_request(&request).await {
                Ok(()) => {
                    self.published.fetch_add(1, Ordering::Relaxed);
                    self.metrics.requests_published.get_or_create(&metrics::subscription(subscription)).inc();
                }
                Err(e) => {
                    tracing::warn!(check = check.name(), subscription, slot = %slot.at, error = %e, "request not published");
                    self.metrics.publish_failures.get_or_create(&metrics::subscription(subscription)).inc();
                }
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
    use protocol::transport::memory::MemoryTransport;
    use serde_json::json;
    use std::time::Duration;

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
        }
        assert_eq!(slots[1] - slots[0], chrono::Duration::seconds(1));
        shutdown.cancel();
        task.await.unwrap();
    }
}
