//! `picket-bench probe`: picket's real runner code (`runner::RunnerPool`
//! with `runner::Executor`, over `protocol`'s in-memory transport) kept at a
//! fixed number of checks in flight, closed loop like wrk: each result
//! triggers the next request for the same check. Prints one JSON line with
//! the checks done and this process's CPU time and peak RSS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use chrono::Utc;
use clap::{Args, ValueEnum};
use nix::sys::resource::UsageWho;
use protocol::definition::parse_check;
use protocol::metrics::Metrics;
use protocol::transport::Transport;
use protocol::transport::memory::MemoryTransport;
use protocol::{CheckDefinition, CheckRequest, Status};
use runner::{DenyList, Executor, RunnerConfig, RunnerPool};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::procs::{status_kib, usage};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Http,
    Https,
    Dns,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Http, Kind::Https, Kind::Dns];

    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::Dns => "DNS",
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct ProbeArgs {
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// URL (http, https) or nameserver ip:port (dns).
    #[arg(long)]
    pub target: String,
    /// Trust anchor for https.
    #[arg(long)]
    pub ca_file: Option<String>,
    /// Name queried (dns).
    #[arg(long, default_value = "bench.test")]
    pub query: String,
    #[arg(long)]
    pub concurrency: usize,
    #[arg(long)]
    pub seconds: f64,
}

/// What `probe` measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProbeReport {
    pub ok: u64,
    pub failed: u64,
    pub dead_letters: u64,
    pub seconds: f64,
    /// CPU seconds of this process during the run.
    pub cpu: f64,
    /// Peak RSS of this process, KiB.
    pub rss_kib: u64,
    pub first_failure: Option<String>,
}

/// The definition of bench check `i` (names differ: the pool refuses to
/// overlap two runs of one check).
pub fn definition(args: &ProbeArgs, i: usize) -> anyhow::Result<CheckDefinition> {
    let name = format!("bench-{i:05}");
    let value: Value = match args.kind {
        Kind::Http => json!({"name": name, "type": "http", "url": args.target, "interval": "60s", "timeout": "5s"}),
        Kind::Https => {
            let mut v = json!({"name": name, "type": "http", "url": args.target, "interval": "60s", "timeout": "5s"});
            if let Some(ca) = &args.ca_file {
                v["ca_file"] = json!(ca);
            }
            v
        }
        Kind::Dns => json!({
            "name": name, "type": "dns", "query": args.query, "record": "A", "nameserver": args.target,
            "interval": "60s", "timeout": "5s", "expect": {"answers": {"equals": ["127.0.0.1"]}}
        }),
    };
    parse_check(value).map_err(|e| anyhow!("bench check: {e}"))
}

fn request(check: &CheckDefinition, seq: u64) -> CheckRequest {
    let now = Utc::now();
    CheckRequest {
        id: format!("{seq:016x}"),
        check: check.clone(),
        subscription: "bench".to_owned(),
        scheduled_at: now,
        deadline: now + chrono::Duration::hours(1),
        scheduler: "bench".to_owned(),
    }
}

pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let checks: HashMap<String, CheckDefinition> = (0..args.concurrency.max(1))
        .map(|i| definition(&args, i).map(|c| (c.name().to_owned(), c)))
        .collect::<anyhow::Result<_>>()?;
    let transport = MemoryTransport::new();
    let mut results = transport.results().await?;
    let mut dead = transport.dead_letters().await?;
    let (_registry, metrics) = Metrics::standalone();
    let executor = Arc::new(Executor::new(DenyList::default()).context("executor")?);
    let config = RunnerConfig {
        name: "bench".to_owned(),
        subscriptions: vec!["bench".to_owned()],
        concurrency: u16::try_from(args.concurrency).context("concurrency")?,
        drain_timeout: Duration::from_secs(10),
    };
    let pool = RunnerPool::new(transport.clone(), executor, config, metrics);
    let stop = CancellationToken::new();
    let pool_stop = stop.clone();
    let pool_task = tokio::spawn(async move { pool.run(pool_stop).await });

    let mut report = ProbeReport::default();
    let mut seq = 0u64;
    let (cpu_before, _) = usage(UsageWho::RUSAGE_SELF);
    let started = Instant::now();
    let until = tokio::time::Instant::from_std(started + Duration::from_secs_f64(args.seconds));
    for check in checks.values() {
        seq += 1;
        transport.publish_request(&request(check, seq)).await?;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            letter = dead.next() => {
                report.dead_letters += 1;
                bail!("a request was dead-lettered: {:?}", letter.map(|l| l.message));
            }
            delivery = results.next() => {
                let Some(delivery) = delivery else { bail!("the result queue closed") };
                let result = &delivery.message;
                if result.status == Status::Ok {
                    report.ok += 1;
                } else {
                    report.failed += 1;
                    report.first_failure.get_or_insert_with(|| format!("{}: {}", result.status, result.output));
                }
                let check = checks.get(&result.check).context("unknown check in a result")?;
                seq += 1;
                transport.publish_request(&request(check, seq)).await?;
                delivery.ack().await?;
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    let (cpu_after, _) = usage(UsageWho::RUSAGE_SELF);
    report.cpu = cpu_after - cpu_before;
    report.rss_kib = status_kib("self", "VmHWM")?;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), pool_task).await;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
