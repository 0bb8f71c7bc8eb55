//! `picket runner` as a process: cold start (spawn → `/readyz` 200), idle
//! RSS, and RSS with 1,000 checks in flight against a loopback server that
//! holds every request until told to answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amqp::{AmqpConfig, AmqpTransport, BrokerNodes};
use anyhow::{Context, bail};
use chrono::Utc;
use protocol::definition::parse_check;
use protocol::transport::Transport;
use protocol::{CheckDefinition, CheckRequest};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::procs::{Proc, free_port, status_kib};
use crate::roles::{Install, wait_ready};

#[derive(Clone, Debug, Default)]
pub struct MemoryReport {
    /// Spawn to `/readyz` 200, one per repetition, ms.
    pub cold_start_ms: Vec<f64>,
    /// RSS after the runner has been ready and idle, KiB, per repetition.
    pub idle_rss_kib: Vec<u64>,
    pub in_flight: u64,
    pub in_flight_rss_kib: u64,
    pub in_flight_hwm_kib: u64,
}

/// Answers nothing until `release` is notified, then 200 to everyone.
struct SlowServer {
    port: u16,
    holding: Arc<AtomicU64>,
    release: Arc<Notify>,
    stop: CancellationToken,
}

impl SlowServer {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let holding = Arc::new(AtomicU64::new(0));
        let release = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (h, r, s) = (holding.clone(), release.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = tokio::select! {
                    () = s.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                };
                let (holding, release, stop) = (h.clone(), r.clone(), s.clone());
                tokio::spawn(async move {
                    let released = release.notified();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    holding.fetch_add(1, Ordering::SeqCst);
                    tokio::select! {
                        () = released => {}
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                    holding.fetch_sub(1, Ordering::SeqCst);
                    let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").await;
                });
            }
        });
        Ok(Self { port, holding, release, stop })
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn run(
    install: &Install,
    reps: usize,
    idle_wait: Duration,
    in_flight: usize,
) -> anyhow::Result<MemoryReport> {
    let mut report = MemoryReport::default();
    let broker = Broker::connect(&install.amqp_url).await?;
    for rep in 0..reps {
        let port = free_port()?;
        let command = install.command("runner", port, &[("PICKET_RUNNER_NAME", format!("cold-{rep}"))]);
        let started = Instant::now();
        let mut proc = Proc::spawn(&format!("runner-cold-{rep}"), command, &install.logs)?;
        let ready = wait_ready(&mut proc, port, started, Duration::from_secs(30)).await?;
        report.cold_start_ms.push(ready.as_secs_f64() * 1000.0);
        tokio::time::sleep(idle_wait).await;
        report.idle_rss_kib.push(status_kib(&proc.pid().to_string(), "VmRSS")?);
        drop(proc);
    }

    let slow = SlowServer::start().await?;
    let port = free_port()?;
    let command = install.command(
        "runner",
        port,
        &[
            ("PICKET_RUNNER_NAME", "in-flight".to_owned()),
            ("PICKET_CONCURRENCY", in_flight.to_string()),
            ("PICKET_DRAIN_TIMEOUT", "1s".to_owned()),
        ],
    );
    let mut proc = Proc::spawn("runner-in-flight", command, &install.logs)?;
    wait_ready(&mut proc, port, Instant::now(), Duration::from_secs(30)).await?;
    let published = publish_slow(install, slow.port, in_flight).await?;
    let until = Instant::now() + Duration::from_secs(60);
    while slow.holding.load(Ordering::SeqCst) < published as u64 {
        proc.alive()?;
        if Instant::now() > until {
            bail!("only {} of {published} checks reached the slow server", slow.holding.load(Ordering::SeqCst));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let allocations settle while all of them are held.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = proc.pid().to_string();
    report.in_flight = slow.holding.load(Ordering::SeqCst);
    report.in_flight_rss_kib = status_kib(&pid, "VmRSS")?;
    report.in_flight_hwm_kib = status_kib(&pid, "VmHWM")?;
    slow.release.notify_waiters();
    drop(proc);
    drop(slow);
    broker.delete_prefix(&install.prefix, &["default"]).await?;
    Ok(report)
}

/// Publishes `count` requests for distinct checks of the slow server through
/// picket's own AMQP transport.
async fn publish_slow(install: &Install, port: u16, count: usize) -> anyhow::Result<usize> {
    let stop = CancellationToken::new();
    let transport = AmqpTransport::start(
        AmqpConfig {
            nodes: BrokerNodes::parse(&install.amqp_url).map_err(anyhow::Error::msg)?,
            prefix: install.prefix.clone(),
            placement: Default::default(),
            connection_name: "picket-bench-publisher".to_owned(),
            signing_key: None,
            previous_signing_key: None,
            metrics: Default::default(),
        },
        stop.clone(),
    );
    transport.wait_connected(Duration::from_secs(10)).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let check = slow_check(port, i)?;
        let transport = transport.clone();
        tasks.spawn(async move {
            let now = Utc::now();
            let request = CheckRequest {
                id: format!("slow-{i}"),
                check,
                subscription: "default".to_owned(),
                scheduled_at: now,
                deadline: now + chrono::Duration::seconds(50),
                scheduler: "picket-bench".to_owned(),
            };
            transport.publish_request(&request).await
        });
    }
    while let Some(published) = tasks.join_next().await {
        published?.context("publishing a request")?;
    }
    stop.cancel();
    Ok(count)
}

fn slow_check(port: u16, i: usize) -> anyhow::Result<CheckDefinition> {
    parse_check(json!({
        "name": format!("slow-{i:04}"), "type": "http", "url": format!("http://127.0.0.1:{port}/"),
        "interval": "60s", "timeout": "30s"
    }))
    .map_err(|e| anyhow::anyhow!("{e}"))
}
