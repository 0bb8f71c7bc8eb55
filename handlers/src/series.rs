//! Per-check series on `/metrics`: the latest result of each (check,
//! subscription), as the alerting sink committed it.
//!
//! The sink writes a snapshot after each committed batch; a scrape takes the
//! current snapshot (an `Arc` clone under a lock held only for that clone) and
//! renders it with no lock held, so rendering never delays the result path.
//! A write while a scrape still holds the old snapshot copies it once
//! (copy-on-write: the map's keys and pointers to its values); otherwise it
//! updates in place. `bench/` measures both with 10,000 pairs.
//!
//! A pair leaves the series when no result came for it for
//! [`CheckSeries::stale_after`] (a check removed from the scheduler while this
//! handler kept running, or a subscription nobody serves any more), and when
//! [`CheckSeries::reloaded`] says a reload removed its check.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use protocol::metrics::{check_series as names, result_keys};
use protocol::{CheckResult, Status};

use crate::state::CheckState;

/// How long a pair stays without a new result, by default: longer than any
/// sensible interval times three, short enough that a vanished pair goes.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not reserved (`__`) and
/// not one picket sets itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelNameError {
    #[error("metric label {0:?}: a Prometheus label name is [a-zA-Z_][a-zA-Z0-9_]* and does not start with __")]
    Invalid(String),
    #[error("metric label {0:?}: picket sets this label itself")]
    Reserved(String),
}

impl LabelName {
    pub fn parse(name: &str) -> Result<Self, LabelNameError> {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with("__");
        if !valid {
            return Err(LabelNameError::Invalid(name.to_owned()));
        }
        if ["check", "subscription", "phase", "which"].contains(&name) {
            return Err(LabelNameError::Reserved(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    /// Parses a comma-separated list (`PICKET_METRIC_LABELS=team,service`).
    pub fn parse_list(list: &str) -> Result<Vec<Self>, LabelNameError> {
        list.split(',').map(str::trim).filter(|name| !name.is_empty()).map(Self::parse).collect()
    }
}

/// What the series show of one pair.
#[derive(Clone, Debug)]
struct Latest {
    status: Status,
    duration_seconds: f64,
    phases: Vec<(&'static str, f64)>,
    started_at: DateTime<Utc>,
    occurrences: u32,
    flapping: bool,
    leaf_not_after: Option<f64>,
    chain_not_after: Option<f64>,
    /// The copied check labels, in [`CheckSeries`]'s label order.
    labels: Vec<String>,
    /// All the check's labels, which silences match on.
    check_labels: BTreeMap<String, String>,
    /// When this handler committed it (its own clock, for staleness).
    committed_at: DateTime<Utc>,
}

/// Values behind an `Arc`, so the copy a write makes while a scrape holds the
/// snapshot copies pointers, not results.
type Pairs = BTreeMap<(String, String), Arc<Latest>>;

/// How often a write sweeps out stale pairs; a scrape skips them meanwhile.
const SWEEP_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

#[derive(Debug, Default)]
struct Snapshot {
    pairs: Arc<Pairs>,
    /// The pairs a silence or an open window gates, as last judged.
    silenced: Arc<HashSet<(String, String)>>,
    /// Checks a reload removed: a result still in flight for one does not
    /// bring its series back.
    removed: HashSet<String>,
    swept_at: Option<DateTime<Utc>>,
}

/// The snapshot and its collector; clones share it.
#[derive(Clone, Debug)]
pub struct CheckSeries {
    snapshot: Arc<Mutex<Snapshot>>,
    label_names: Arc<[LabelName]>,
    stale_after: chrono::TimeDelta,
}

impl Default for CheckSeries {
    fn default() -> Self {
        Self::new(Vec::new(), DEFAULT_STALE_AFTER)
    }
}

impl CheckSeries {
    /// `label_names`: check labels copied onto every series (missing ones are
    /// empty, which Prometheus treats as absent).
    pub fn new(label_names: Vec<LabelName>, stale_after: Duration) -> Self {
        Self {
            snapshot: Arc::default(),
            label_names: label_names.into(),
            stale_after: chrono::TimeDelta::from_std(stale_after).unwrap_or(chrono::TimeDelta::MAX),
        }
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after.to_std().unwrap_or(Duration::MAX)
    }

    /// Records the latest results of a committed batch with their states.
    pub fn record<'a>(
        &self,
        committed: impl IntoIterator<Item = (&'a CheckResult, &'a CheckState)>,
        now: DateTime<Utc>,
    ) {
        let latest: Vec<_> = committed.into_iter().map(|(result, state)| self.latest(result, state, now)).collect();
        if latest.is_empty() {
            return;
        }
        let mut snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        let sweep = snapshot.swept_at.is_none_or(|at| now - at >= SWEEP_EVERY);
        if sweep {
            snapshot.swept_at = Some(now);
        }
        let Snapshot { pairs, removed, .. } = &mut *snapshot;
        let pairs = Arc::make_mut(pairs);
        for (key, value) in latest.into_iter().filter(|((check, _), _)| !removed.contains(check)) {
            pairs.insert(key, Arc::new(value));
        }
        if sweep {
            let stale_after = self.stale_after;
            pairs.retain(|_, latest| now - latest.committed_at <= stale_after);
        }
    }

    /// After a reload: drops the pairs of the checks it removed, and keeps
    /// results of those still in flight out, until a reload defines them again.
    pub fn reloaded(&self, removed: &HashSet<String>, defined: &HashSet<String>) {
        let mut snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        snapshot.removed.extend(removed.iter().cloned());
        snapshot.removed.retain(|check| !defined.contains(check));
        if snapshot.pairs.keys().any(|(check, _)| removed.contains(check)) {
            Arc::make_mut(&mut snapshot.pairs).retain(|(check, _), _| !removed.contains(check));
        }
    }

    /// Judges every pair shown with `silenced(check, subscription, labels)`
    /// for `picket_check_silenced`.
    pub fn mark_silenced(&self, silenced: impl Fn(&str, &str, &BTreeMap<String, String>) -> bool) {
        let pairs = self.snapshot();
        let judged: HashSet<(String, String)> = pairs
            .iter()
            .filter(|((check, subscription), latest)| silenced(check, subscription, &latest.check_labels))
            .map(|(key, _)| key.clone())
            .collect();
        let mut snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        if *snapshot.silenced != judged {
            snapshot.silenced = Arc::new(judged);
        }
    }

    /// Pairs shown now.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Arc<Pairs> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner).pairs.clone()
    }

    fn latest(&self, result: &CheckResult, state: &CheckState, now: DateTime<Utc>) -> ((String, String), Latest) {
        let phases = result_keys::PHASES
            .iter()
            .filter_map(|phase| result.metrics.get(*phase).map(|ms| (*phase, ms / 1000.0)))
            .collect();
        let labels = self
            .label_names
            .iter()
            .map(|name| result.policy.labels.get(&name.0).cloned().unwrap_or_default())
            .collect();
        let latest = Latest {
            status: result.status,
            duration_seconds: result.duration_ms as f64 / 1000.0,
            phases,
            started_at: result.started_at,
            occurrences: state.occurrences,
            flapping: state.flapping,
            leaf_not_after: result.metrics.get(result_keys::LEAF_NOT_AFTER).copied(),
            chain_not_after: result.metrics.get(result_keys::CHAIN_NOT_AFTER).copied(),
            labels,
            check_labels: result.policy.labels.clone(),
            committed_at: now,
        };
        ((result.check.clone(), result.subscription.clone()), latest)
    }

    /// Renders the snapshot as of `now`, skipping stale pairs.
    fn render(&self, encoder: &mut DescriptorEncoder, now: DateTime<Utc>) -> Result<(), std::fmt::Error> {
        let (snapshot, silenced) = {
            let locked = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
            (locked.pairs.clone(), locked.silenced.clone())
        };
        let pairs: Vec<_> =
            snapshot.iter().filter(|(_, latest)| now - latest.committed_at <= self.stale_after).collect();
        let base = |(check, subscription): &(String, String), latest: &Latest| {
            let mut labels = vec![("check", check.clone()), ("subscription", subscription.clone())];
            labels.extend(self.label_names.iter().map(|name| name.0.as_str()).zip(latest.labels.iter().cloned()));
            labels
        };
        let gauge = |encoder: &mut DescriptorEncoder,
                     (name, help): (&str, &str),
                     value: &dyn Fn(&(String, String), &Latest) -> f64|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (key, latest) in &pairs {
                let labels = base(key, latest);
                ConstGauge::new(value(key, latest)).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        };
        gauge(encoder, names::STATUS, &|_, latest| f64::from(latest.status.code()))?;
        gauge(encoder, names::UP, &|_, latest| if latest.status == Status::Ok { 1.0 } else { 0.0 })?;
        gauge(encoder, names::LAST_DURATION, &|_, latest| latest.duration_seconds)?;
        gauge(encoder, names::LAST_RUN, &|_, latest| latest.started_at.timestamp_millis() as f64 / 1000.0)?;
        gauge(encoder, names::OCCURRENCES, &|_, latest| f64::from(latest.occurrences))?;
        gauge(encoder, names::FLAPPING, &|_, latest| if latest.flapping { 1.0 } else { 0.0 })?;
        gauge(encoder, names::SILENCED, &|key, _| if silenced.contains(key) { 1.0 } else { 0.0 })?;

        let (name, help) = names::PHASE;
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (key, latest) in &pairs {
            for (phase, seconds) in &latest.phases {
                let mut labels = base(key, latest);
                labels.push(("phase", (*phase).to_owned()));
                ConstGauge::new(*seconds).encode(family.encode_family(&labels)?)?;
            }
        }
        let (name, help) = names::TLS_NOT_AFTER;
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (key, latest) in &pairs {
            for (which, value) in [("leaf", latest.leaf_not_after), ("chain", latest.chain_not_after)] {
                if let Some(value) = value {
                    let mut labels = base(key, latest);
                    labels.push(("which", which.to_owned()));
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

impl Collector for CheckSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.render(&mut encoder, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(check: &str, status: Status) -> CheckResult {
        CheckResult {
            request_id: format!("req-{check}"),
            check: check.into(),
            subscription: "default".into(),
            runner: "r1".into(),
            status,
            output: String::new(),
            scheduled_at: Utc::now(),
            started_at: Utc::now(),
            duration_ms: 250,
            lateness_ms: 0,
            metrics: [("ttfb".to_owned(), 12.0), (result_keys::LEAF_NOT_AFTER.to_owned(), 1.9e9)].into(),
            details: serde_json::Value::Null,
            policy: Default::default(),
        }
    }

    fn render(series: &CheckSeries) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(series.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn renders_latest_results_and_drops_removed_checks() {
        let series = CheckSeries::default();
        let state = CheckState::default();
        let (ok, bad) = (result("web", Status::Ok), result("api", Status::Critical));
        series.record([(&ok, &state), (&bad, &state)], Utc::now());
        let text = render(&series);
        assert!(text.contains("picket_check_status{check=\"web\",subscription=\"default\"} 0"), "{text}");
        assert!(text.contains("picket_check_status{check=\"api\",subscription=\"default\"} 2"), "{text}");
        assert!(
            text.contains("picket_check_phase_seconds{check=\"web\",subscription=\"default\",phase=\"ttfb\"} 0.012")
        );
        assert!(text.contains("which=\"leaf\"} 1900000000"), "{text}");
        assert!(text.contains("picket_check_silenced{check=\"api\",subscription=\"default\"} 0"), "{text}");
        series.mark_silenced(|check, _, _| check == "api");
        assert!(render(&series).contains("picket_check_silenced{check=\"api\",subscription=\"default\"} 1"));
        series.reloaded(&HashSet::from(["api".to_owned()]), &HashSet::from(["web".to_owned()]));
        assert!(!render(&series).contains("check=\"api\""));
        assert_eq!(series.len(), 1);
        // A result of the removed check still in flight stays out, until it is defined again.
        series.record([(&bad, &state)], Utc::now());
        assert_eq!(series.len(), 1);
        series.reloaded(&HashSet::new(), &HashSet::from(["web".to_owned(), "api".to_owned()]));
        series.record([(&bad, &state)], Utc::now());
        assert_eq!(series.len(), 2);
    }

    /// The README's count: 7 series per (check, subscription), one more per
    /// phase the check reports, two more (leaf, chain) when it sees a certificate.
    #[test]
    fn a_thousand_checks_in_three_subscriptions_make_the_documented_series_count() {
        let series = CheckSeries::default();
        let state = CheckState::default();
        let ms = |names: &[&str]| names.iter().map(|n| ((*n).to_owned(), 1.0)).collect::<BTreeMap<_, _>>();
        let mut results = Vec::new();
        for subscription in ["eu", "us", "ap"] {
            for n in 0..1000 {
                let mut result = result(&format!("check-{n}"), Status::Ok);
                result.subscription = subscription.into();
                result.metrics = match n % 5 {
                    // 400 HTTPS checks: 5 phases and the certificate.
                    0 | 1 => {
                        let mut m = ms(&["dns", "connect", "tls", "ttfb", "transfer", "total", "status_code"]);
                        m.insert(result_keys::LEAF_NOT_AFTER.to_owned(), 1.9e9);
                        m.insert(result_keys::CHAIN_NOT_AFTER.to_owned(), 1.8e9);
                        m
                    }
                    // 400 plain HTTP checks: 4 phases.
                    2 | 3 => ms(&["dns", "connect", "ttfb", "transfer", "total", "status_code"]),
                    // 200 DNS checks: 1 phase.
                    _ => ms(&["query", "answers"]),
                };
                results.push(result);
            }
        }
        series.record(results.iter().map(|result| (result, &state)), Utc::now());
        let samples = render(&series).lines().filter(|line| !line.starts_with('#')).count();
        let per_subscription = 400 * (7 + 5 + 2) + 400 * (7 + 4) + 200 * (7 + 1);
        assert_eq!(samples, 3 * per_subscription);
        assert_eq!(samples, 34_800);
    }

    #[test]
    fn label_names_are_validated() {
        assert!(LabelName::parse_list("team, service").is_ok());
        assert!(LabelName::parse("9x").is_err());
        assert!(LabelName::parse("__name").is_err());
        assert_eq!(LabelName::parse("check"), Err(LabelNameError::Reserved("check".into())));
    }
}
