//! The transport-side handler's output until alerting is configured: each
//! result and dead letter as one JSON line on stdout, duplicates dropped.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::sync::Mutex;

use protocol::CheckResult;
use protocol::message::Keepalive;
use protocol::metrics::{self, Metrics, ReasonLabels};
use protocol::transport::DeadLetter;
use serde_json::json;

use crate::consumer::{Accept, HandlerError};

/// Request ids remembered for duplicate detection: a few minutes of results
/// at thousands per second.
const REMEMBERED_IDS: usize = 1 << 20;

/// The ids of recently seen results, oldest evicted first.
#[derive(Default)]
struct SeenIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenIds {
    /// Records `id`; false when it was already seen.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == REMEMBERED_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

pub struct JsonLog<W> {
    out: Mutex<W>,
    seen: Mutex<SeenIds>,
    metrics: Metrics,
}

impl<W: Write + Send> JsonLog<W> {
    pub fn new(out: W, metrics: Metrics) -> Self {
        // Every reason at 0 from the start, so `rate()` sees the first dead
        // letter and a dashboard finds the series before anything went wrong.
        for reason in protocol::transport::DeadReason::ALL {
            let _ = metrics.dead_letters_received.get_or_create(&ReasonLabels { reason: reason.as_str().to_owned() });
        }
        Self { out: Mutex::new(out), seen: Mutex::default(), metrics }
    }

    fn line(&self, value: &serde_json::Value) -> Result<(), HandlerError> {
        let mut out = self.out.lock().map_err(|_| HandlerError::Sink("output lock poisoned".into()))?;
        writeln!(out, "{value}").and_then(|()| out.flush()).map_err(|e| HandlerError::Sink(e.to_string()))
    }
}

impl<W: Write + Send> Accept<CheckResult> for JsonLog<W> {
    async fn accept(&self, result: &CheckResult) -> Result<(), HandlerError> {
        let fresh =
            self.seen.lock().map_err(|_| HandlerError::Sink("seen lock poisoned".into()))?.insert(&result.request_id);
        if !fresh {
            self.metrics.duplicates_dropped.inc();
            tracing::info!(request_id = %result.request_id, check = %result.check, "duplicate result dropped");
            return Ok(());
        }
        self.metrics.results_received.get_or_create(&metrics::subscription(&result.subscription)).inc();
        self.line(&json!({ "kind": "check_result", "result": result }))
    }
}

impl<W: Write + Send> Accept<DeadLetter> for JsonLog<W> {
    async fn accept(&self, letter: &DeadLetter) -> Result<(), HandlerError> {
        self.metrics
            .dead_letters_received
            .get_or_create(&ReasonLabels { reason: letter.reason.as_str().to_owned() })
            .inc();
        self.line(&json!({ "kind": "dead_letter", "dead_letter": letter }))
    }
}

impl<W: Write + Send> Accept<Keepalive> for JsonLog<W> {
    async fn accept(&self, keepalive: &Keepalive) -> Result<(), HandlerError> {
        self.line(&json!({ "kind": "keepalive", "keepalive": keepalive }))
    }
}
