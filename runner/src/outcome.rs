//! What one check run found. A failed check is data: a status with its reason.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use protocol::Status;
use protocol::definition::LatencyThresholds;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct CheckOutcome {
    pub status: Status,
    /// One human line.
    pub output: String,
    /// Numbers for graphs and thresholds: phase timings in ms, days left, codes.
    pub metrics: BTreeMap<String, f64>,
    pub details: Value,
}

impl CheckOutcome {
    pub fn new(status: Status, output: impl Into<String>) -> Self {
        Self { status, output: output.into(), metrics: BTreeMap::new(), details: Value::Null }
    }

    pub fn critical(output: impl Into<String>) -> Self {
        Self::new(Status::Critical, output)
    }

    pub fn unknown(output: impl Into<String>) -> Self {
        Self::new(Status::Unknown, output)
    }

    pub fn with_metrics(mut self, mut metrics: BTreeMap<String, f64>) -> Self {
        if self.metrics.is_empty() {
            // Taken as is rather than re-inserted key by key.
            std::mem::swap(&mut self.metrics, &mut metrics);
        } else {
            self.metrics.extend(metrics);
        }
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Milliseconds with microsecond precision, the unit of every timing metric.
pub fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// The status a latency earns against its thresholds, with the reason when not OK.
pub fn latency_status(elapsed: Duration, limits: LatencyThresholds) -> (Status, Option<String>) {
    if let Some(crit) = limits.crit.filter(|c| elapsed > c.get()) {
        return (Status::Critical, Some(format!("{:.0}ms > latency_crit {crit}", ms(elapsed))));
    }
    if let Some(warn) = limits.warn.filter(|w| elapsed > w.get()) {
        return (Status::Warning, Some(format!("{:.0}ms > latency_warn {warn}", ms(elapsed))));
    }
    (Status::Ok, None)
}

/// Where a run was when its time ran out, in words.
fn phase_words(phase: &str) -> String {
    match phase {
        "dns" => "while resolving the name".to_owned(),
        "connect" => "while connecting".to_owned(),
        "tls" => "during the TLS handshake".to_owned(),
        "ttfb" => "waiting for the response".to_owned(),
        "transfer" => "while reading the body".to_owned(),
        "query" => "waiting for the DNS answer".to_owned(),
        other => format!("during {other}"),
    }
}

/// How far a run got, kept outside the run's future so that when the hard
/// timeout drops that future the result can still say where it was stuck.
#[derive(Debug, Default)]
pub struct Progress {
    inner: Mutex<ProgressState>,
}

#[derive(Debug, Default)]
struct ProgressState {
    phase: Option<&'static str>,
    metrics: BTreeMap<String, f64>,
}

impl Progress {
    /// Enters a phase (`dns`, `connect`, `tls`, `ttfb`, `transfer`, `query`).
    pub fn phase(&self, name: &'static str) {
        self.inner.lock().expect("progress lock").phase = Some(name);
    }

    /// Records a timing or fact measured so far.
    pub fn metric(&self, name: &str, value: f64) {
        self.inner.lock().expect("progress lock").metrics.insert(name.to_owned(), value);
    }

    /// The outcome of a run cut by its timeout.
    pub fn timed_out(&self, timeout: Duration) -> CheckOutcome {
        let state = self.inner.lock().expect("progress lock");
        let during = state.phase.map(|p| format!(" {}", phase_words(p))).unwrap_or_default();
        let output = format!("timed out after {}{during}", protocol::HumanDuration::from(timeout));
        let mut outcome = CheckOutcome::critical(output).with_metrics(state.metrics.clone());
        outcome.metrics.insert("total".to_owned(), ms(timeout));
        outcome
    }
}
