//! The operator API (and the status page, once it is served) under load: a
//! store holding many (check, subscription) pairs with their latency
//! history, results arriving at a steady rate through the real sink
//! (`handlers::alerting::Alerting`, fed as `picket handler`'s consumer feeds
//! it: many results in flight, batched into one transaction each), and GETs
//! timed against the real axum router on loopback. Then the sink's
//! sustained results/s with the latency history on and off
//! (`StoreConfig::history`), each on a fresh store filled the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::future::IntoFuture;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use handlers::alerting::{Alerting, AlertingConfig};
use handlers::notify::Notifiers;
use handlers::store::{Store, StoreConfig};
use protocol::metrics::result_keys;
use protocol::{CheckResult, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The paths timed, each in turn: the status page and the API's list.
pub const PATHS: &[&str] = &["/", "/api/v1/checks"];

/// Results in flight at once, as the consumer's prefetch allows.
pub const IN_FLIGHT: usize = 512;

/// Seconds between two results of one pair: 10,000 pairs at 1,000/s.
const INTERVAL_S: i64 = 10;

pub struct PageReport {
    pub pairs: usize,
    /// Rounds of one result per pair stored before timing (history depth).
    pub fill_rounds: u64,
    /// The rate results were fed at while the GETs were timed, per second.
    pub feed_rate: f64,
    /// What the feed achieved meanwhile, results/s.
    pub fed_per_s: f64,
    /// Each path with the wall time of each GET, ms.
    pub gets: Vec<(String, Vec<f64>)>,
    /// Sustained results/s, one per repetition, history on and off.
    pub with_history: Vec<f64>,
    pub without_history: Vec<f64>,
}

pub struct PageArgs {
    pub pairs: usize,
    pub fill_rounds: u64,
    pub feed_rate: f64,
    pub timed: Duration,
    pub sustained: Duration,
    pub reps: usize,
}

/// An HTTPS-like result (five phases and a certificate) of `pair` in
/// `round`, one interval after the previous round; one pair in 50 fails.
fn result(pair: usize, round: u64, t0: DateTime<Utc>, metrics: &BTreeMap<String, f64>) -> CheckResult {
    let at = t0 + TimeDelta::seconds(INTERVAL_S * round as i64);
    let failing = pair.is_multiple_of(50);
    CheckResult {
        request_id: format!("page-{pair}-{round}"),
        check: format!("check-{:05}", pair / 3),
        subscription: ["eu", "us", "ap"][pair % 3].to_owned(),
        runner: "bench".to_owned(),
        status: if failing { Status::Critical } else { Status::Ok },
        output: if failing {
            "HTTP 500 (expected 2xx) (HTTP 500 in 40ms)".to_owned()
        } else {
            "HTTP 200 in 40ms".to_owned()
        },
        scheduled_at: at,
        started_at: at,
        duration_ms: 30 + (pair as u64 + round) % 40,
        lateness_ms: 0,
        metrics: metrics.clone(),
        details: serde_json::Value::Null,
        policy: Default::default(),
    }
}

fn phase_metrics() -> BTreeMap<String, f64> {
    ["dns", "connect", "tls", "ttfb", "transfer"]
        .iter()
        .map(|phase| ((*phase).to_owned(), 6.5))
        .chain([(result_keys::LEAF_NOT_AFTER.to_owned(), 1.9e9), (result_keys::CHAIN_NOT_AFTER.to_owned(), 1.8e9)])
        .collect()
}

/// The sink under test on a store in `dir`.
struct Sink {
    store: Store,
    alerting: Arc<Alerting<Notifiers>>,
    pairs: usize,
    t0: DateTime<Utc>,
    metrics: BTreeMap<String, f64>,
    /// Results fed so far: result `n` is pair `n % pairs` in round `n / pairs`.
    next: Arc<AtomicU64>,
}

impl Sink {
    async fn open(dir: &Path, name: &str, history: bool, pairs: usize, t0: DateTime<Utc>) -> anyhow::Result<Self> {
        let url = format!("sqlite://{}", dir.join(name).display());
        let store = Store::open(&StoreConfig { history, ..StoreConfig::new(url) }).await.context("store")?;
        let notifiers = Notifiers::build(&[], &BTreeSet::new()).context("notifiers")?;
        let alerting = Alerting::start(store.clone(), Arc::new(notifiers), AlertingConfig::default()).await?;
        let next = Arc::new(AtomicU64::new(0));
        Ok(Self { store, alerting: Arc::new(alerting), pairs, t0, metrics: phase_metrics(), next })
    }

    /// Feeds results until `until` results in all, or `deadline`, paced at
    /// `rate` per second when given; returns how many were fed.
    async fn feed(&self, until: u64, deadline: Option<Instant>, rate: Option<f64>) -> anyhow::Result<u64> {
        let started = Instant::now();
        let first = self.next.load(Ordering::SeqCst);
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let (alerting, next, metrics) = (self.alerting.clone(), self.next.clone(), self.metrics.clone());
            let done = done.clone();
            let (pairs, t0) = (self.pairs as u64, self.t0);
            tasks.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= until || deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok::<(), anyhow::Error>(());
                    }
                    if let Some(rate) = rate {
                        let due = started + Duration::from_secs_f64((n - first) as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let result = result((n % pairs) as usize, n / pairs, t0, &metrics);
                    alerting.result_at(&result, Utc::now()).await.map_err(|e| anyhow::anyhow!("result: {e}"))?;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.context("feeder task")??;
        }
        // Numbers are taken in order, and those taken after the deadline
        // were not fed: what was fed is the run from `first`.
        let fed = done.load(Ordering::SeqCst);
        self.next.store(first + fed, Ordering::SeqCst);
        Ok(fed)
    }

    async fn close(self) {
        if let Ok(alerting) = Arc::try_unwrap(self.alerting) {
            alerting.close().await;
        }
        self.store.close().await;
    }
}

/// One GET on a fresh connection, ms; anything but a 200 is an error.
async fn get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<f64> {
    let began = Instant::now();
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let elapsed = began.elapsed().as_secs_f64() * 1000.0;
    if !answer.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
        bail!("GET {path}: {head}");
    }
    Ok(elapsed)
}

pub async fn run(dir: &Path, args: &PageArgs) -> anyhow::Result<PageReport> {
    let pairs = args.pairs;
    let t0 = Utc::now() - TimeDelta::seconds(INTERVAL_S * args.fill_rounds as i64);
    let sink = Sink::open(dir, "page.db", true, pairs, t0).await?;
    let filling = Instant::now();
    sink.feed(pairs as u64 * args.fill_rounds, None, None).await?;
    eprintln!(
        "  stored {} results of {pairs} pairs in {:.1} s",
        pairs as u64 * args.fill_rounds,
        filling.elapsed().as_secs_f64()
    );

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let windows = tokio::sync::watch::channel(Arc::from([])).1;
    // As `picket handler` serves them: the page and the API side by side.
    let router = api::router(sink.store.clone(), api::ApiAuth::default(), windows.clone()).merge(web::router(
        sink.store.clone(),
        api::ApiAuth::default(),
        windows,
    ));
    let stop = CancellationToken::new();
    let server = tokio::spawn(
        axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned()).into_future(),
    );

    let deadline = Instant::now() + args.timed;
    let feeding = {
        let began = Instant::now();
        let fed = sink.feed(u64::MAX, Some(deadline), Some(args.feed_rate));
        async move { fed.await.map(|fed| fed as f64 / began.elapsed().as_secs_f64()) }
    };
    let timing = async {
        let mut gets: Vec<(String, Vec<f64>)> = PATHS.iter().map(|p| ((*p).to_owned(), Vec::new())).collect();
        while Instant::now() < deadline {
            for (path, times) in &mut gets {
                times.push(get(addr, path).await?);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok(gets)
    };
    let (fed_per_s, gets) = tokio::try_join!(feeding, timing)?;
    stop.cancel();
    let _ = server.await;
    sink.close().await;

    let mut with_history = Vec::new();
    let mut without_history = Vec::new();
    for rep in 0..args.reps {
        // Alternated, and the order swaps each repetition.
        let order = if rep % 2 == 0 { [true, false] } else { [false, true] };
        for history in order {
            let name = format!("sustained-{rep}-{history}.db");
            let sink = Sink::open(dir, &name, history, pairs, t0).await?;
            sink.feed(pairs as u64, None, None).await?;
            let began = Instant::now();
            let fed = sink.feed(u64::MAX, Some(began + args.sustained), None).await?;
            let rate = fed as f64 / began.elapsed().as_secs_f64();
            eprintln!("  rep {} history {:<3} {rate:>8.0} results/s", rep + 1, if history { "on" } else { "off" });
            if history { &mut with_history } else { &mut without_history }.push(rate);
            sink.close().await;
        }
    }
    Ok(PageReport {
        pairs,
        fill_rounds: args.fill_rounds,
        feed_rate: args.feed_rate,
        fed_per_s,
        gets,
        with_history,
        without_history,
    })
}

/// The nearest-rank `q` quantile of `values`, NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl PageReport {
    /// What the latency history costs the sink's throughput, percent of
    /// the median without it.
    pub fn history_cost_percent(&self) -> f64 {
        let median = |v: &[f64]| quantile(v, 0.5);
        let (on, off) = (median(&self.with_history), median(&self.without_history));
        (off - on) / off * 100.0
    }
}
