//! Every metric picket exports, defined in this one place (names, help, labels).
//! Roles register the families they use into one registry served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub check: String,
    pub subscription: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub check: String,
    pub subscription: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `request`, `result`, `keepalive` or `dead_letter`.
    pub kind: String,
    /// A `DeadReason`: `unauthenticated`, `malformed`, `unsupported`.
    pub reason: String,
}

/// Messages a consumer refused before they reached its inbox.
pub type MessagesRefused = Family<RefusedLabels, Counter>;

/// What the broker transport counts itself.
#[derive(Clone, Debug, Default)]
pub struct TransportMetrics {
    /// `picket_messages_refused_total`.
    pub refused: MessagesRefused,
    /// `picket_result_messages_published_total`: broker messages that carried
    /// results (a batch is one), beside `picket_results_published_total`.
    pub result_messages: Counter,
}

/// Registers the transport's series (the transport counts into them).
pub fn register_transport(registry: &mut Registry) -> TransportMetrics {
    let metrics = TransportMetrics::default();
    let picket = registry.sub_registry_with_prefix("picket");
    picket.register(
        "messages_refused",
        "Messages refused on receipt (unsigned, badly signed, undecodable), by kind and reason",
        metrics.refused.clone(),
    );
    picket.register(
        "result_messages_published",
        "Broker messages a runner published carrying results (a batch of results is one message)",
        metrics.result_messages.clone(),
    );
    metrics
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabels {
    pub subscription: String,
}

/// Check durations and lateness, in seconds: 1 ms to ~65 s.
fn seconds_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17)
}

fn histogram_family() -> Family<CheckLabels, Histogram> {
    Family::new_with_constructor(|| Histogram::new(seconds_buckets()))
}

/// All families, cheap to clone (each is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    pub requests_published: Family<SubscriptionLabels, Counter>,
    pub publish_failures: Family<SubscriptionLabels, Counter>,
    pub results_received: Family<SubscriptionLabels, Counter>,
    pub dead_letters_received: Family<ReasonLabels, Counter>,
    pub queue_depth: Family<SubscriptionLabels, Gauge>,
    pub queue_consumers: Family<SubscriptionLabels, Gauge>,
    pub backlog_per_runner: Family<SubscriptionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub requests_executed: Family<SubscriptionLabels, Counter>,
    pub results_published: Family<SubscriptionLabels, Counter>,
    pub results: Family<ResultLabels, Counter>,
    pub check_duration: Family<CheckLabels, Histogram>,
    pub check_lateness: Family<CheckLabels, Histogram>,
    pub dead_lettered: Family<ReasonLabels, Counter>,
    pub slots_skipped: Family<CheckLabels, Counter>,
    pub slots_missed: Family<CheckLabels, Counter>,
    pub duplicates_dropped: Counter,
    pub checks_in_flight: Gauge,
    pub probe_panics: Family<ProbeLabels, Counter>,
}

impl Metrics {
    /// Creates the families and registers them under `picket_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests_published: Family::default(),
            publish_failures: Family::default(),
            results_received: Family::default(),
            dead_letters_received: Family::default(),
            queue_depth: Family::default(),
            queue_consumers: Family::default(),
            backlog_per_runner: Family::default(),
            requests_executed: Family::default(),
            results_published: Family::default(),
            results: Family::default(),
            check_duration: histogram_family(),
            check_lateness: histogram_family(),
            dead_lettered: Family::default(),
            slots_skipped: Family::default(),
            slots_missed: Family::default(),
            duplicates_dropped: Counter::default(),
            checks_in_flight: Gauge::default(),
            probe_panics: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("picket");
        r.register("requests_published", "Check requests published by the scheduler", m.requests_published.clone());
        r.register("publish_failures", "Check requests the scheduler could not publish", m.publish_failures.clone());
        r.register(
            "results_received",
            "Check results the handler received (duplicates excluded)",
            m.results_received.clone(),
        );
        r.register(
            "dead_letters_received",
            "Dead-lettered requests the handler received, by reason",
            m.dead_letters_received.clone(),
        );
        r.register("queue_depth", "Ready requests in a subscription's queue", m.queue_depth.clone());
        r.register("queue_consumers", "Runners consuming a subscription's queue", m.queue_consumers.clone());
        r.register(
            "backlog_per_runner",
            "Queue depth divided by consumers: the autoscaling signal",
            m.backlog_per_runner.clone(),
        );
        r.register("requests_executed", "Check requests a runner executed", m.requests_executed.clone());
        r.register("results_published", "Check results a runner published", m.results_published.clone());
        r.register("results", "Check results received, by status", m.results.clone());
        r.register("check_duration_seconds", "Time one check run took", m.check_duration.clone());
        r.register("check_lateness_seconds", "Start time minus scheduled slot time", m.check_lateness.clone());
        r.register("dead_lettered", "Requests dead-lettered instead of run, by reason", m.dead_lettered.clone());
        r.register(
            "slots_skipped",
            "Slots not run because the previous run of the check was still going",
            m.slots_skipped.clone(),
        );
        r.register(
            "slots_missed",
            "Slots the scheduler could not publish before their deadline",
            m.slots_missed.clone(),
        );
        r.register(
            "duplicates_dropped",
            "Results dropped as duplicates of an already seen request",
            m.duplicates_dropped.clone(),
        );
        r.register("checks_in_flight", "Checks running now", m.checks_in_flight.clone());
        r.register(
            "probe_panics",
            "Probe runs that panicked (reported UNKNOWN), by check type",
            m.probe_panics.clone(),
        );
        m
    }

    pub fn standalone() -> (Registry, Self) {
        let mut registry = Registry::default();
        let metrics = Self::register(&mut registry);
        (registry, metrics)
    }
}

/// The handler's undelivered notifications, refreshed from the outbox every
/// few seconds: a Slack or PagerDuty that refuses or cannot be reached shows
/// here long before anyone misses a page.
#[derive(Clone, Default)]
pub struct OutboxGauges {
    pub pending: Gauge,
    pub oldest_pending_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl OutboxGauges {
    /// Registers `picket_notifications_pending` and
    /// `picket_notifications_oldest_pending_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let gauges = Self::default();
        let r = registry.sub_registry_with_prefix("picket");
        r.register("notifications_pending", "Notifications in the outbox not yet delivered", gauges.pending.clone());
        r.register(
            "notifications_oldest_pending_seconds",
            "How long the oldest undelivered notification has waited (0 when none)",
            gauges.oldest_pending_seconds.clone(),
        );
        gauges
    }
}

pub fn labels(check: &str, subscription: &str) -> CheckLabels {
    CheckLabels { check: check.to_owned(), subscription: subscription.to_owned() }
}

pub fn subscription(subscription: &str) -> SubscriptionLabels {
    SubscriptionLabels { subscription: subscription.to_owned() }
}

/// Keys of [`crate::CheckResult::metrics`] the handler turns into per-check series.
pub mod result_keys {
    /// Phase timings in milliseconds: `dns`, `connect`, `tls` (the TLS
    /// handshake), `ttfb`, `transfer` (HTTP) and `query` (DNS).
    pub const PHASES: [&str; 6] = ["dns", "connect", "tls", "ttfb", "transfer", "query"];
    /// The leaf certificate's not-after, Unix seconds (TLS checks, HTTPS URLs).
    pub const LEAF_NOT_AFTER: &str = "leaf_not_after";
    /// The earliest not-after in the served chain, Unix seconds.
    pub const CHAIN_NOT_AFTER: &str = "chain_not_after";
    /// Days the leaf certificate has left (TLS checks).
    pub const LEAF_DAYS_LEFT: &str = "days_left";
    /// Days the first certificate of the served chain to expire has left (TLS checks).
    pub const CHAIN_DAYS_LEFT: &str = "chain_days_left";
    /// Days the leaf certificate of an HTTPS URL has left (HTTP checks).
    pub const CERT_DAYS_LEFT: &str = "cert_days_left";
    /// Every days-left key: the API's `tls_days_left` is the least of them.
    pub const DAYS_LEFT: [&str; 3] = [LEAF_DAYS_LEFT, CHAIN_DAYS_LEFT, CERT_DAYS_LEFT];
}

/// Names and help of the handler's per-check series, rendered from the latest
/// result of each (check, subscription) by the handler's collector.
pub mod check_series {
    pub const STATUS: (&str, &str) =
        ("picket_check_status", "Status of the latest result: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN");
    pub const UP: (&str, &str) = ("picket_check_up", "1 when the latest result is OK, else 0");
    /// `picket_check_duration_seconds` is the runners' histogram already; the
    /// last run's duration is its own gauge.
    pub const LAST_DURATION: (&str, &str) =
        ("picket_check_last_duration_seconds", "Time the latest run of the check took");
    pub const PHASE: (&str, &str) = (
        "picket_check_phase_seconds",
        "Time the latest run spent in each phase (dns, connect, tls, ttfb, transfer, query)",
    );
    pub const LAST_RUN: (&str, &str) =
        ("picket_check_last_run_timestamp_seconds", "When the latest run started, Unix seconds");
    pub const OCCURRENCES: (&str, &str) =
        ("picket_check_occurrences", "Consecutive non-OK results, the latest included");
    pub const FLAPPING: (&str, &str) = ("picket_check_flapping", "1 while the check is flapping");
    pub const SILENCED: (&str, &str) =
        ("picket_check_silenced", "1 while a silence or an open maintenance window gates its notifications");
    pub const TLS_NOT_AFTER: (&str, &str) = (
        "picket_tls_not_after_timestamp_seconds",
        "Certificate expiry, Unix seconds: which=leaf, or which=chain for the chain's earliest",
    );
}
