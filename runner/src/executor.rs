//! Runs one check under its hard timeout. Built once per runner: the system
//! resolver, trust roots and TLS client configurations are shared by every run.

use std::time::Instant;

use protocol::definition::Schedule;
use protocol::{CheckDefinition, CheckSpec};

use crate::checks;
use crate::deny::DenyList;
use crate::outcome::{CheckOutcome, Progress, ms};
use crate::resolve::SystemResolver;
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
}

impl Executor {
    pub fn new(deny: DenyList) -> Result<Self, ExecutorError> {
        Ok(Self { deny, resolver: SystemResolver::new()?, trust: Trust::new()?, dns: checks::dns::DnsClient::new()? })
    }

    /// Runs `check` once. Never fails: every problem is a status with a reason,
    /// and the run never outlives the check's timeout.
    pub async fn run(&self, check: &CheckDefinition) -> CheckOutcome {
        let timeout = check.timeout();
        let progress = Progress::default();
        let started = Instant::now();
        let work = async {
            match &check.spec {
                CheckSpec::Http(spec) => checks::http::run(self, spec, &progress).await,
                CheckSpec::Dns(spec) => checks::dns::run(self, spec, timeout, &progress).await,
                CheckSpec::Tls(spec) => checks::tls::run(self, spec, &progress).await,
            }
        };
        let mut outcome = match tokio::time::timeout(timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => progress.timed_out(timeout),
        };
        if !outcome.metrics.contains_key("total") {
            outcome.metrics.insert("total".to_owned(), ms(started.elapsed()));
        }
        outcome
    }
}

/// Used by `picket check` to describe when a check would run.
pub fn describe_schedule(check: &CheckDefinition) -> String {
    match check.schedule() {
        Schedule::Every(every) => format!("every {}", protocol::HumanDuration::from(every)),
        Schedule::Cron(cron) => format!("cron {}", serde_json::to_string(cron).unwrap_or_default()),
    }
}
