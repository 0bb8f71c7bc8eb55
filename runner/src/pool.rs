//! The runner's consume loop: take requests from the transport at most
//! `concurrency` at a time, refuse stale or overlapping ones (dead letters,
//! never late runs), run the rest, publish each result and only then ack.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use protocol::message::{AlertPolicy, CheckRequest, CheckResult};
use protocol::metrics::{self, Metrics, ReasonLabels, ResultLabels};
use protocol::transport::{DeadReason, Delivery, RequeueBackoff, Transport, TransportError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::executor::Executor;

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Written into every result (hostname or ECS task id by default).
    pub name: String,
    pub subscriptions: Vec<String>,
    /// Checks run at once; also the broker prefetch.
    pub concurrency: u16,
    /// How long in-flight checks may take to finish after shutdown is asked.
    pub drain_timeout: Duration,
}

/// Counters a keepalive reports.
#[derive(Debug, Default)]
pub struct RunnerStats {
    pub in_flight: AtomicU64,
    pub executed: AtomicU64,
}

pub struct RunnerPool<T> {
    transport: T,
    executor: Arc<Executor>,
    config: RunnerConfig,
    metrics: Metrics,
    stats: Arc<RunnerStats>,
    /// (check, subscription) pairs running now: a second request for the same
    /// pair would overlap the first and is dead-lettered instead.
    running: Arc<Mutex<HashSet<(String, String)>>>,
    /// Paces requeues while results cannot be published.
    requeue: Arc<RequeueBackoff>,
}

impl<T: Transport> RunnerPool<T> {
    pub fn new(transport: T, executor: Arc<Executor>, config: RunnerConfig, metrics: Metrics) -> Self {
        Self {
            transport,
            executor,
            config,
            metrics,
            stats: Arc::default(),
            running: Arc::default(),
            requeue: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<RunnerStats> {
        self.stats.clone()
    }

    /// Consumes until `shutdown`, then drains in-flight checks for at most the
    /// drain timeout. Unfinished deliveries are left unsettled, so a broker
    /// hands them to another runner.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), TransportError> {
        let mut inbox = self.transport.requests(&self.config.subscriptions, self.config.concurrency).await?;
        let slots = Arc::new(Semaphore::new(usize::from(self.config.concurrency.max(1))));
        let tasks = TaskTracker::new();
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
            };
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                delivery = inbox.next() => match delivery {
                    Some(delivery) => delivery,
                    None => break,
                },
            };
            if let Some(reason) = self.refusal(&delivery.message) {
                self.dead_letter(delivery, reason).await;
                continue;
            }
            tasks.spawn(self.execute(delivery, permit));
        }
        tasks.close();
        if tokio::time::timeout(self.config.drain_timeout, tasks.wait()).await.is_err() {
            tracing::warn!(
                in_flight = self.stats.in_flight.load(Ordering::Relaxed),
                "drain timeout reached; unfinished requests are left to the broker"
            );
        }
        Ok(())
    }

    /// Why a request must not run now, if it must not. Marks it running otherwise.
    fn refusal(&self, request: &CheckRequest) -> Option<DeadReason> {
        // The broker's bindings decide what reaches this runner, but the
        // subscription written in the request is what the check would run as:
        // a request for a pool this runner does not serve (a mis-bound queue,
        // a forged routing key) must not borrow this runner's network position.
        if !self.config.subscriptions.contains(&request.subscription) {
            return Some(DeadReason::NotSubscribed);
        }
        if Utc::now() > request.deadline {
            return Some(DeadReason::Expired);
        }
        let key = (request.check.name().to_owned(), request.subscription.clone());
        let mut running = self.running.lock().expect("running lock");
        if !running.insert(key) {
            self.metrics
                .slots_skipped
                .get_or_create(&metrics::labels(request.check.name(), &request.subscription))
                .inc();
            return Some(DeadReason::Overlap);
        }
        None
    }

    async fn dead_letter(&self, delivery: Delivery<CheckRequest>, reason: DeadReason) {
        let request = &delivery.message;
        tracing::warn!(
            check = request.check.name(),
            subscription = %request.subscription,
            request_id = %request.id,
            scheduled_at = %request.scheduled_at,
            reason = reason.as_str(),
            "request not run; dead-lettered"
        );
        self.metrics.dead_lettered.get_or_create(&ReasonLabels { reason: reason.as_str().to_owned() }).inc();
        if let Err(e) = delivery.reject(reason).await {
            tracing::warn!(error = %e, "could not dead-letter a request; the broker will redeliver it");
        }
    }

    /// Runs one request and publishes its result, then frees its slot; the
    /// returned future owns everything it needs so it can run as its own task.
    /// It is boxed where it is built: the run's state is several KiB, and
    /// spawning it unboxed copied it again at every layer of the spawn path
    /// (a quarter of the instructions of an HTTP check, by callgrind).
    fn execute(
        &self,
        delivery: Delivery<CheckRequest>,
        permit: OwnedSemaphorePermit,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let transport = self.transport.clone();
        let executor = self.executor.clone();
        let metrics = self.metrics.clone();
        let stats = self.stats.clone();
        let running = self.running.clone();
        let runner = self.config.name.clone();
        let requeue = self.requeue.clone();
        Box::pin(async move {
            let request = &delivery.message;
            let labels = metrics::labels(request.check.name(), &request.subscription);
            stats.in_flight.fetch_add(1, Ordering::Relaxed);
            metrics.checks_in_flight.inc();
            let started_at = Utc::now();
            let lateness = started_at - request.scheduled_at;
            let outcome = executor.run(&request.check).await;
            let duration = (Utc::now() - started_at).to_std().unwrap_or_default();
            metrics.checks_in_flight.dec();
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            stats.executed.fetch_add(1, Ordering::Relaxed);
            running
                .lock()
                .expect("running lock")
                .remove(&(request.check.name().to_owned(), request.subscription.clone()));
            metrics.requests_executed.get_or_create(&metrics::subscription(&request.subscription)).inc();
            metrics.check_duration.get_or_create(&labels).observe(duration.as_secs_f64());
            metrics.check_lateness.get_or_create(&labels).observe(lateness.to_std().unwrap_or_default().as_secs_f64());
            let result = CheckResult {
                request_id: request.id.clone(),
                check: request.check.name().to_owned(),
                subscription: request.subscription.clone(),
                runner,
                status: outcome.status,
                output: outcome.output,
                scheduled_at: request.scheduled_at,
                started_at,
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                lateness_ms: lateness.num_milliseconds(),
                metrics: outcome.metrics,
                details: outcome.details,
                policy: AlertPolicy::of(&request.check),
            };
            metrics
                .results
                .get_or_create(&ResultLabels {
                    check: result.check.clone(),
                    subscription: result.subscription.clone(),
                    status: result.status.name().to_owned(),
                })
                .inc();
            match transport.publish_result(&result).await {
                Ok(()) => {
                    metrics.results_published.get_or_create(&metrics::subscription(&result.subscription)).inc();
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(error = %e, request_id = %result.request_id, "ack failed; the request may run again");
                    }
                }
                Err(e) => {
                    // Requeued, the request runs again (here or on another
                    // runner) if its deadline allows, else it is dead-lettered
                    // as expired: either way it is settled, never held.
                    let delay = requeue.failed();
                    tracing::warn!(error = %e, request_id = %result.request_id, retry_in = ?delay, "could not publish a result; requeueing the request");
                    drop(permit);
                    tokio::time::sleep(delay).await;
                    if let Err(e) = delivery.requeue().await {
                        tracing::warn!(error = %e, request_id = %result.request_id, "requeue failed; the broker redelivers the request when the channel closes");
                    }
                    return;
                }
            }
            requeue.succeeded();
            drop(permit);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::definition::parse_check;
    use protocol::transport::memory::MemoryTransport;
    use serde_json::json;
    use tokio::io::AsyncWriteExt;

    /// An HTTP server answering 200 after `delay`.
    async fn slow_server(delay: Duration) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
                });
            }
        });
        addr
    }

    fn request(addr: std::net::SocketAddr, scheduled_ago: chrono::Duration, window: chrono::Duration) -> CheckRequest {
        let check = parse_check(json!({
            "name": "slow", "type": "http", "url": format!("http://{addr}/"), "interval": "10s", "timeout": "5s"
        }))
        .unwrap();
        let scheduled_at = Utc::now() - scheduled_ago;
        CheckRequest {
            id: CheckRequest::id_for("slow", "default", scheduled_at),
            check,
            subscription: "default".into(),
            scheduled_at,
            deadline: scheduled_at + window,
            scheduler: "test".into(),
        }
    }

    /// A runner pool on a memory transport, running in a task, with the
    /// result and dead-letter queues subscribed before it starts.
    struct Harness {
        transport: MemoryTransport,
        metrics: Metrics,
        results: protocol::transport::Inbox<CheckResult>,
        dead: protocol::transport::Inbox<protocol::transport::DeadLetter>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), TransportError>>,
    }

    impl Harness {
        async fn start() -> Self {
            let transport = MemoryTransport::new();
            Self::start_with(transport.clone(), transport).await
        }

        /// A pool consuming through `consume` (which may deliver more than
        /// the pool asked for), observed through the memory transport.
        async fn start_with<C: Transport>(consume: C, transport: MemoryTransport) -> Self {
            let (_, metrics) = Metrics::standalone();
            let executor =
                Executor::new(crate::DenyList::default()).unwrap().counting_panics(metrics.probe_panics.clone());
            Self::start_full(consume, transport, Arc::new(executor), metrics).await
        }

        async fn start_full<C: Transport>(
            consume: C,
            transport: MemoryTransport,
            executor: Arc<Executor>,
            metrics: Metrics,
        ) -> Self {
            let results = transport.results().await.unwrap();
            let dead = transport.dead_letters().await.unwrap();
            let config = RunnerConfig {
                name: "r1".into(),
                subscriptions: vec!["default".into()],
                concurrency: 4,
                drain_timeout: Duration::from_secs(5),
            };
            let runner = RunnerPool::new(consume, executor, config, metrics.clone());
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            let task = tokio::spawn(async move { runner.run(stop).await });
            Self { transport, metrics, results, dead, shutdown, task }
        }

        /// Stops the pool, waits for its drain, and hands back the results.
        async fn stop(self) -> protocol::transport::Inbox<CheckResult> {
            self.shutdown.cancel();
            self.task.await.unwrap().unwrap();
            self.results
        }
    }

    #[tokio::test]
    async fn stale_requests_are_dead_lettered_not_run() {
        let mut h = Harness::start().await;
        let addr = slow_server(Duration::ZERO).await;
        let stale = request(addr, chrono::Duration::seconds(9), chrono::Duration::seconds(5));
        let fresh = request(addr, chrono::Duration::zero(), chrono::Duration::seconds(5));
        h.transport.publish_request(&stale).await.unwrap();
        h.transport.publish_request(&fresh).await.unwrap();
        let letter = tokio::time::timeout(Duration::from_secs(5), h.dead.next()).await.unwrap().unwrap();
        assert_eq!(letter.message.reason, DeadReason::Expired);
        assert_eq!(letter.message.request_id.as_deref(), Some(stale.id.as_str()));
        let result = tokio::time::timeout(Duration::from_secs(5), h.results.next()).await.unwrap().unwrap();
        assert_eq!(result.message.request_id, fresh.id, "only the fresh request ran");
        assert_eq!(result.message.runner, "r1");
        assert!(result.message.lateness_ms >= 0);
        let _ = h.stop().await;
    }

    #[tokio::test]
    async fn a_check_still_running_is_not_started_twice() {
        let mut h = Harness::start().await;
        let addr = slow_server(Duration::from_millis(800)).await;
        let first = request(addr, chrono::Duration::zero(), chrono::Duration::seconds(5));
        let mut second = request(addr, chrono::Duration::zero(), chrono::Duration::seconds(5));
        second.id = "second".into();
        h.transport.publish_request(&first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.transport.publish_request(&second).await.unwrap();
        let letter = tokio::time::timeout(Duration::from_secs(5), h.dead.next()).await.unwrap().unwrap();
        assert_eq!(letter.message.reason, DeadReason::Overlap);
        assert_eq!(letter.message.request_id.as_deref(), Some("second"));
        assert_eq!(h.metrics.slots_skipped.get_or_create(&metrics::labels("slow", "default")).get(), 1);
        let result = tokio::time::timeout(Duration::from_secs(5), h.results.next()).await.unwrap().unwrap();
        assert_eq!(result.message.request_id, first.id);
        let _ = h.stop().await;
    }

    /// A transport whose request inbox also carries the `other` pool, as a
    /// mis-bound queue or a forged routing key would.
    #[derive(Clone)]
    struct Misrouted(MemoryTransport);

    impl Transport for Misrouted {
        async fn publish_request(&self, request: &CheckRequest) -> Result<(), TransportError> {
            self.0.publish_request(request).await
        }
        async fn publish_result(&self, result: &CheckResult) -> Result<(), TransportError> {
            self.0.publish_result(result).await
        }
        async fn publish_keepalive(&self, keepalive: &protocol::message::Keepalive) -> Result<(), TransportError> {
            self.0.publish_keepalive(keepalive).await
        }
        async fn requests(
            &self,
            subscriptions: &[String],
            prefetch: u16,
        ) -> Result<protocol::transport::Inbox<CheckRequest>, TransportError> {
            let mut all = subscriptions.to_vec();
            all.push("other".into());
            self.0.requests(&all, prefetch).await
        }
        async fn results(&self) -> Result<protocol::transport::Inbox<CheckResult>, TransportError> {
            self.0.results().await
        }
        async fn keepalives(&self) -> Result<protocol::transport::Inbox<protocol::message::Keepalive>, TransportError> {
            self.0.keepalives().await
        }
        async fn dead_letters(
            &self,
        ) -> Result<protocol::transport::Inbox<protocol::transport::DeadLetter>, TransportError> {
            self.0.dead_letters().await
        }
    }

    #[tokio::test]
    async fn a_request_for_a_foreign_subscription_is_dead_lettered() {
        let memory = MemoryTransport::new();
        let mut h = Harness::start_with(Misrouted(memory.clone()), memory).await;
        let addr = slow_server(Duration::ZERO).await;
        let mut foreign = request(addr, chrono::Duration::zero(), chrono::Duration::seconds(5));
        foreign.subscription = "other".into();
        foreign.id = "foreign".into();
        let own = request(addr, chrono::Duration::zero(), chrono::Duration::seconds(5));
        h.transport.publish_request(&foreign).await.unwrap();
        h.transport.publish_request(&own).await.unwrap();
        let letter = tokio::time::timeout(Duration::from_secs(5), h.dead.next()).await.unwrap().unwrap();
        assert_eq!(letter.message.reason, DeadReason::NotSubscribed);
        assert_eq!(letter.message.request_id.as_deref(), Some("foreign"));
        let reason = ReasonLabels { reason: "not_subscribed".into() };
        assert_eq!(h.metrics.dead_lettered.get_or_create(&reason).get(), 1);
        let result = tokio::time::timeout(Duration::from_secs(5), h.results.next()).await.unwrap().unwrap();
        assert_eq!(result.message.request_id, own.id, "only the request of a served pool ran");
        let _ = h.stop().await;
    }

    #[tokio::test]
    async fn a_panicking_probe_is_unknown_counted_and_frees_its_slot() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let executor = Executor::new(crate::DenyList::default()).unwrap().counting_panics(metrics.probe_panics.clone());
        executor.panic_next.store(true, Ordering::SeqCst);
        let executor = Arc::new(executor);
        let transport = MemoryTransport::new();
        let mut h = Harness::start_full(transport.clone(), transport, executor, metrics).await;
        let addr = slow_server(Duration::ZERO).await;
        let first = request(addr, chrono::Duration::zero(), chrono::Duration::seconds(5));
        h.transport.publish_request(&first).await.unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), h.results.next()).await.unwrap().unwrap();
        assert_eq!(result.message.request_id, first.id);
        assert_eq!(result.message.status, protocol::Status::Unknown);
        assert_eq!(result.message.output, "internal error in the http probe: test probe panic");
        let mut exported = String::new();
        prometheus_client::encoding::text::encode(&mut exported, &registry).unwrap();
        assert!(exported.contains("picket_probe_panics_total{type=\"http\"} 1"), "{exported}");

        let mut second = request(addr, chrono::Duration::zero(), chrono::Duration::seconds(5));
        second.id = "second".into();
        h.transport.publish_request(&second).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), h.results.next()).await.unwrap().unwrap();
        assert_eq!(next.message.request_id, "second", "the slot was freed: the next request ran, not `overlap`");
        assert_eq!(next.message.status, protocol::Status::Ok, "{}", next.message.output);
        let _ = h.stop().await;
    }

    #[tokio::test]
    async fn shutdown_lets_in_flight_checks_finish() {
        let h = Harness::start().await;
        let addr = slow_server(Duration::from_millis(500)).await;
        let busy = request(addr, chrono::Duration::zero(), chrono::Duration::seconds(5));
        h.transport.publish_request(&busy).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut results = h.stop().await;
        let result = results.next().await.unwrap();
        assert_eq!(result.message.request_id, busy.id);
        assert_eq!(result.message.status, protocol::Status::Ok, "{}", result.message.output);
    }
}
