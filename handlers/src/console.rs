//! Prints one line per result and per dead letter: the standalone view.

use std::io::Write;
use std::sync::Mutex;

use protocol::CheckResult;
use protocol::message::Keepalive;
use protocol::transport::DeadLetter;

use crate::consumer::{Accept, HandlerError};

/// Writes result lines to any writer (stdout in standalone).
pub struct Console<W> {
    out: Mutex<W>,
}

impl<W: Write + Send> Console<W> {
    pub fn new(out: W) -> Self {
        Self { out: Mutex::new(out) }
    }

    fn line(&self, text: &str) -> Result<(), HandlerError> {
        let mut out = self.out.lock().map_err(|_| HandlerError::Sink("console lock poisoned".into()))?;
        writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| HandlerError::Sink(e.to_string()))
    }
}

/// `time  check  subscription  STATUS  latency  output`, aligned for reading.
pub fn result_line(result: &CheckResult) -> String {
    format!(
        "{}  {:<24} {:<12} {:<8} {:>7}  {}",
        result.started_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        result.check,
        result.subscription,
        result.status.name(),
        format!("{}ms", result.duration_ms),
        result.output
    )
}

pub fn dead_letter_line(letter: &DeadLetter) -> String {
    format!(
        "{}  {:<24} {:<12} {:<8} {:>7}  request {} not run ({})",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        letter.check.as_deref().unwrap_or("?"),
        letter.subscription.as_deref().unwrap_or("?"),
        "SKIPPED",
        "-",
        letter.request_id.as_deref().unwrap_or("?"),
        match letter.reason {
            protocol::transport::DeadReason::Expired => "expired before a runner could start it",
            protocol::transport::DeadReason::Overlap => "the previous run was still going",
            protocol::transport::DeadReason::Malformed => "malformed",
            protocol::transport::DeadReason::Unsupported => "its definition uses a field this runner does not know",
            protocol::transport::DeadReason::Unauthenticated => "unsigned or badly signed",
            protocol::transport::DeadReason::NotSubscribed => "sent to a runner that does not serve its subscription",
        }
    )
}

impl<W: Write + Send> Accept<CheckResult> for Console<W> {
    async fn accept(&self, result: &CheckResult) -> Result<(), HandlerError> {
        self.line(&result_line(result))
    }
}

/// Runner liveness is the alerting handler's business; the console shows results only.
impl<W: Write + Send> Accept<Keepalive> for Console<W> {
    async fn accept(&self, _: &Keepalive) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<W: Write + Send> Accept<DeadLetter> for Console<W> {
    async fn accept(&self, letter: &DeadLetter) -> Result<(), HandlerError> {
        self.line(&dead_letter_line(letter))
    }
}
