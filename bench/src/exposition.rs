//! The handler's `/metrics` with many (check, subscription) pairs: how long
//! one scrape takes to render, and whether rendering holds up the result
//! path (the batcher records each committed batch into the same series).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use handlers::series::CheckSeries;
use handlers::state::CheckState;
use protocol::metrics::result_keys;
use protocol::{CheckResult, Status};

pub struct ExpositionReport {
    pub pairs: usize,
    /// Wall time of each full render, ms.
    pub render_ms: Vec<f64>,
    pub bytes: usize,
    /// The slowest `record` of a 512-result batch, µs, alone and while
    /// another thread renders without pause.
    pub record_alone_max_us: f64,
    pub record_while_rendering_max_us: f64,
}

/// `pairs` HTTPS-like results (5 phases and a certificate each): the
/// heaviest kind of pair, in 3 subscriptions.
fn results(pairs: usize) -> Vec<CheckResult> {
    let metrics: std::collections::BTreeMap<String, f64> = ["dns", "connect", "tls", "ttfb", "transfer"]
        .iter()
        .map(|phase| ((*phase).to_owned(), 1.5))
        .chain([(result_keys::LEAF_NOT_AFTER.to_owned(), 1.9e9), (result_keys::CHAIN_NOT_AFTER.to_owned(), 1.8e9)])
        .collect();
    (0..pairs)
        .map(|n| CheckResult {
            request_id: format!("bench-{n}"),
            check: format!("check-{:05}", n / 3),
            subscription: ["eu", "us", "ap"][n % 3].to_owned(),
            runner: "bench".to_owned(),
            status: if n % 17 == 0 { Status::Critical } else { Status::Ok },
            output: String::new(),
            scheduled_at: Utc::now(),
            started_at: Utc::now(),
            duration_ms: 42,
            lateness_ms: 0,
            metrics: metrics.clone(),
            details: serde_json::Value::Null,
            policy: Default::default(),
        })
        .collect()
}

fn render(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("render");
    text
}

/// The slowest of `rounds` records of one 512-result batch, µs.
fn slowest_record(series: &CheckSeries, results: &[CheckResult], rounds: usize) -> f64 {
    let state = CheckState::default();
    let mut slowest = Duration::ZERO;
    for round in 0..rounds {
        let start = (round * 512) % results.len().saturating_sub(512).max(1);
        let batch = &results[start..(start + 512).min(results.len())];
        let began = Instant::now();
        series.record(batch.iter().map(|result| (result, &state)), Utc::now());
        slowest = slowest.max(began.elapsed());
    }
    slowest.as_secs_f64() * 1e6
}

pub fn run(pairs: usize, reps: usize) -> ExpositionReport {
    let series = CheckSeries::default();
    let results = results(pairs);
    let state = CheckState::default();
    series.record(results.iter().map(|result| (result, &state)), Utc::now());
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(series.clone()));
    let registry = Arc::new(registry);

    let mut render_ms = Vec::with_capacity(reps);
    let mut bytes = 0;
    for _ in 0..reps {
        let began = Instant::now();
        bytes = render(&registry).len();
        render_ms.push(began.elapsed().as_secs_f64() * 1000.0);
    }

    let rounds = 200;
    let record_alone_max_us = slowest_record(&series, &results, rounds);
    let rendering = Arc::new(AtomicBool::new(true));
    let scraper = {
        let (registry, rendering) = (registry.clone(), rendering.clone());
        std::thread::spawn(move || {
            while rendering.load(Ordering::Relaxed) {
                std::hint::black_box(render(&registry));
            }
        })
    };
    let record_while_rendering_max_us = slowest_record(&series, &results, rounds);
    rendering.store(false, Ordering::Relaxed);
    scraper.join().expect("scraper thread");
    ExpositionReport { pairs, render_ms, bytes, record_alone_max_us, record_while_rendering_max_us }
}
