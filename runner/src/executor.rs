//! Runs one check under its hard timeout. Built once per runner: the system
//! resolver, trust roots and TLS client configurations are shared by every run.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use protocol::definition::Schedule;
use protocol::metrics::ProbeLabels;
use protocol::{CheckDefinition, CheckSpec};

use crate::checks;
use crate::deny::DenyList;
use crate::outcome::{CheckOutcome, Progress, ms};
use crate::resolve::SystemResolver;
use crate::secrets::CheckSecrets;
use crate::trust::Trust;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot read the system DNS configuration: {0}")]
    Resolver(String),
    #[error("cannot load trust roots: {0}")]
    Trust(String),
}

/// Shared state of every check run.
pub struct Executor {
    pub(crate) deny: DenyList,
    pub(crate) resolver: SystemResolver,
    pub(crate) trust: Trust,
    pub(crate) dns: checks::dns::DnsClient,
    /// The secrets definitions may read (none unless configured).
    pub(crate) secrets: CheckSecrets,
    /// Probes that panicked, by type (`picket_probe_panics_total`).
    panics: Family<ProbeLabels, Counter>,
    /// Makes the next probe panic, to test what a panic leaves behind.
    #[cfg(test)]
    pub(crate) panic_next: std::sync::atomic::AtomicBool,
}

impl Executor {
    pub fn new(deny: DenyList) -> Result<Self, ExecutorError> {
        Ok(Self {
            deny,
            resolver: SystemResolver::new()?,
            trust: Trust::new()?,
            dns: checks::dns::DnsClient::new()?,
            secrets: CheckSecrets::default(),
            panics: Family::default(),
            #[cfg(test)]
            panic_next: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Lets definitions read these secrets.
    pub fn with_secrets(mut self, secrets: CheckSecrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// Counts probe panics into the role's registered family.
    pub fn counting_panics(mut self, panics: Family<ProbeLabels, Counter>) -> Self {
        self.panics = panics;
        self
    }

    /// Runs `check` once. Never fails: every problem is a status with a reason,
    /// and the run never outlives the check's timeout.
    pub async fn run(&self, check: &CheckDefinition) -> CheckOutcome {
        let timeout = check.timeout();
        let progress = Progress::default();
        let started = Instant::now();
        let work = async {
            #[cfg(test)]
            if self.panic_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
                panic!("test probe panic");
            }
            match &check.spec {
                CheckSpec::Http(spec) => checks::http::run(self, spec, &progress).await,
                CheckSpec::Dns(spec) => checks::dns::run(self, spec, timeout, &progress).await,
                CheckSpec::Tls(spec) => checks::tls::run(self, spec, &progress).await,
            }
        };
        // Probes parse bytes the target chose (x509-parser, hickory): a panic
        // there is one check's UNKNOWN result, never a lost slot or runner.
        let mut outcome = match tokio::time::timeout(timeout, AssertUnwindSafe(work).catch_unwind()).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(payload)) => self.panicked(check, payload.as_ref()),
            Err(_) => progress.timed_out(timeout),
        };
        if !outcome.metrics.contains_key("total") {
            outcome.metrics.insert("total".to_owned(), ms(started.elapsed()));
        }
        outcome
    }

    fn panicked(&self, check: &CheckDefinition, payload: &(dyn std::any::Any + Send)) -> CheckOutcome {
        let probe = check.spec.type_name();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic without a message");
        self.panics.get_or_create(&ProbeLabels { r#type: probe.to_owned() }).inc();
        tracing::error!(check = check.name(), probe, panic = message, "a probe panicked");
        CheckOutcome::unknown(format!("internal error in the {probe} probe: {message}"))
    }
}

/// Used by `picket check` to describe when a check would run.
pub fn describe_schedule(check: &CheckDefinition) -> String {
    match check.schedule() {
        Schedule::Every(every) => format!("every {}", protocol::HumanDuration::from(every)),
        Schedule::Cron(cron) => format!("cron {}", serde_json::to_string(cron).unwrap_or_default()),
    }
}
