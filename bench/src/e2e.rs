//! End to end over RabbitMQ: `picket scheduler` → broker → N `picket runner`
//! → `picket handler` (SQLite store), at one load step. The handler's JSON
//! lines are read as they come: results (start lateness = started_at −
//! scheduled_at, into an HDR histogram) and dead letters. Lost = published −
//! results − dead letters.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::broker::Broker;
use crate::procs::{Proc, cpu_seconds, find_by_comm, free_port};
use crate::roles::{Install, Role, metric_sum};

pub const INTERVAL_SECS: u64 = 10;
/// The sustained window, set once the scheduler is up: only results whose
/// slot falls inside it count towards the rate and the lateness.
type Window = Arc<Mutex<Option<(DateTime<Utc>, DateTime<Utc>)>>>;
const P99_LIMIT_MS: f64 = 250.0;

#[derive(Clone, Debug, Default)]
pub struct StepReport {
    pub checks: usize,
    pub sustain_secs: u64,
    pub published: u64,
    /// Slots the scheduler itself could not publish in time (`picket_slots_missed_total`).
    pub missed_by_scheduler: u64,
    pub results: u64,
    pub dead: u64,
    /// Messages still in the results, dead-letter or request queue after the
    /// handler stopped (not consumed within the drain time).
    pub left_in_queues: u64,
    pub lost: i64,
    /// Results whose slot fell in the sustained window.
    pub window_results: u64,
    pub expected_in_window: u64,
    pub lateness_p50_ms: f64,
    pub lateness_p99_ms: f64,
    pub lateness_max_ms: f64,
    /// Seconds of the window in which some check started more than 250 ms late.
    pub late_seconds: usize,
    /// CPU of each role over the window, in % of one core.
    pub cpu: Vec<(String, f64)>,
    /// Results the runners published, and the broker messages that carried
    /// them (`picket_result_messages_published_total`; a build without that
    /// counter sends one message per result).
    pub results_published: u64,
    pub result_messages: u64,
    pub passed: bool,
    pub why: Vec<String>,
    /// A second run of a step that broke.
    pub retry: bool,
}

impl StepReport {
    pub fn target_per_s(&self) -> f64 {
        self.checks as f64 / INTERVAL_SECS as f64
    }

    pub fn achieved_per_s(&self) -> f64 {
        self.window_results as f64 / self.sustain_secs.max(1) as f64
    }

    /// What a check costs each role: its CPU over the window divided by the
    /// results of the window, µs.
    pub fn cpu_us_per_check(&self) -> Vec<(String, f64)> {
        let per_s = self.achieved_per_s().max(1e-9);
        self.cpu.iter().map(|(name, percent)| (name.clone(), percent / 100.0 * 1e6 / per_s)).collect()
    }

    /// Broker messages per check: its request, plus its share of the
    /// message that carried its result.
    pub fn messages_per_check(&self) -> Option<f64> {
        (self.results_published > 0).then(|| 1.0 + self.result_messages as f64 / self.results_published as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_at_half_a_core_over_1000_checks_a_second_spends_500_us_each() {
        let step = StepReport {
            sustain_secs: 60,
            window_results: 60_000,
            cpu: vec![("runners".to_owned(), 50.0), ("handler".to_owned(), 10.0)],
            ..StepReport::default()
        };
        let cost = step.cpu_us_per_check();
        assert_eq!(cost.len(), 2);
        assert!((cost[0].1 - 500.0).abs() < 1e-6, "{cost:?}");
        assert!((cost[1].1 - 100.0).abs() < 1e-6, "{cost:?}");
    }

    #[test]
    fn results_carried_ten_to_a_message_cost_a_tenth_of_a_message_each() {
        let step = StepReport { results_published: 1000, result_messages: 100, ..StepReport::default() };
        assert_eq!(step.messages_per_check(), Some(1.1));
        assert_eq!(StepReport::default().messages_per_check(), None);
    }
}

#[derive(Default)]
struct Seen {
    results: u64,
    dead: u64,
    ids: HashSet<String>,
    duplicates: u64,
    window_results: u64,
    lateness_us: Option<Histogram<u64>>,
    /// Worst lateness per second of scheduled time, in µs.
    worst_by_second: std::collections::BTreeMap<i64, u64>,
}

#[derive(Deserialize)]
struct Line {
    kind: String,
    result: Option<ResultLine>,
}

#[derive(Deserialize)]
struct ResultLine {
    request_id: String,
    scheduled_at: DateTime<Utc>,
    started_at: DateTime<Utc>,
}

pub struct Step<'a> {
    pub base: &'a Install,
    pub broker: &'a Broker,
    pub target_url: String,
    pub runners: usize,
    pub warm_secs: u64,
    pub sustain_secs: u64,
    pub nginx_pid: u32,
    /// The handler's PostgreSQL, or `None` for its SQLite file.
    pub postgres_url: Option<String>,
}

impl Step<'_> {
    pub async fn run(&self, checks: usize) -> anyhow::Result<StepReport> {
        let prefix = format!("{}-{checks}", self.base.prefix);
        let dir = self.base.logs.join(format!("e2e-{checks}"));
        let checks_dir = dir.join("checks");
        std::fs::create_dir_all(&checks_dir)?;
        write_checks(&checks_dir, checks, &self.target_url)?;
        let install = Install { prefix: prefix.clone(), logs: dir.clone(), ..self.base.clone() };
        let result = self.run_in(&install, &dir, checks).await;
        self.broker.delete_prefix(&prefix, &["default"]).await?;
        if let Some(url) = &self.postgres_url {
            drop_schema(url, &schema_of(&prefix))?;
        }
        result
    }

    async fn run_in(&self, install: &Install, dir: &Path, checks: usize) -> anyhow::Result<StepReport> {
        let checks_env = ("PICKET_CHECKS", dir.join("checks").display().to_string());
        let seen = Arc::new(Mutex::new(Seen {
            lateness_us: Some(Histogram::new_with_bounds(1, 600_000_000, 3)?),
            ..Seen::default()
        }));

        // The handler's stdout comes here, line by line.
        let handler_port = free_port()?;
        let mut env = vec![checks_env.clone(), ("PICKET_STATE_DIR", dir.join("state").display().to_string())];
        if let Some(url) = &self.postgres_url {
            env.push(("PICKET_STATE_URL", url.clone()));
            env.push(("PICKET_STATE_SCHEMA", schema_of(&install.prefix)));
        }
        let mut command = install.command("handler", handler_port, &env);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(dir.join("handler.log"))?);
        let mut handler =
            Role { proc: Proc::spawn_raw("handler", command)?.with_grace(Duration::from_secs(30)), port: handler_port };
        let stdout = handler.proc.child_mut().stdout.take().context("handler stdout")?;
        let window: Window = Arc::default();
        let reader = tokio::spawn(read_handler(stdout, seen.clone(), window.clone()));
        handler.ready(Duration::from_secs(30)).await?;

        let mut runners = Vec::new();
        for i in 0..self.runners {
            let Role { proc, port } =
                install.start("runner", &format!("runner-{i}"), &[("PICKET_RUNNER_NAME", format!("r{i}"))])?;
            // Runners drain in-flight checks for up to PICKET_DRAIN_TIMEOUT (25 s).
            let mut runner = Role { proc: proc.with_grace(Duration::from_secs(30)), port };
            runner.ready(Duration::from_secs(30)).await?;
            runners.push(runner);
        }
        // A scheduler behind on its slots finishes the batch in hand before it
        // stops; give it time, so that its own count of published requests is
        // logged rather than lost to a SIGKILL.
        let Role { proc, port } = install.start(
            "scheduler",
            "scheduler",
            &[checks_env, ("PICKET_LOG", "warn,picket::roles::scheduler=info".to_owned())],
        )?;
        let mut scheduler = Role { proc: proc.with_grace(Duration::from_secs(60)), port };
        scheduler.ready(Duration::from_secs(30)).await?;
        let started = Utc::now();
        let window_start = started + chrono::Duration::seconds(self.warm_secs as i64);
        let window_end = window_start + chrono::Duration::seconds(self.sustain_secs as i64);
        *window.lock().expect("lock") = Some((window_start, window_end));

        let mut pids: Vec<(String, Vec<u32>)> = vec![
            ("scheduler".to_owned(), vec![scheduler.proc.pid()]),
            ("runners".to_owned(), runners.iter().map(|r| r.proc.pid()).collect()),
            ("handler".to_owned(), vec![handler.proc.pid()]),
            ("nginx".to_owned(), with_children(self.nginx_pid)),
        ];
        if let Some(beam) = find_by_comm("beam.smp") {
            pids.push(("RabbitMQ".to_owned(), vec![beam]));
        }
        if self.postgres_url.is_some()
            && let Some(postmaster) = find_by_comm("postgres")
        {
            // The server and its backends, the handler's among them.
            pids.push(("PostgreSQL".to_owned(), with_children(postmaster)));
        }
        pids.push(("bench (reading results)".to_owned(), vec![std::process::id()]));
        sleep_until(window_start).await;
        let cpu_before = cpu_of(&pids);
        let wall = Instant::now();
        let mut last_published = 0.0;
        let mut missed = 0.0;
        while Utc::now() < window_end {
            scheduler.proc.alive()?;
            for runner in &mut runners {
                runner.proc.alive()?;
            }
            handler.proc.alive()?;
            if let Ok(text) = scheduler.metrics().await {
                last_published = metric_sum(&text, "picket_requests_published_total");
                missed = metric_sum(&text, "picket_slots_missed_total");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let cpu_after = cpu_of(&pids);
        let wall = wall.elapsed().as_secs_f64();

        if let Ok(text) = scheduler.metrics().await {
            missed = metric_sum(&text, "picket_slots_missed_total");
        }
        scheduler.proc.stop();
        let logged = published_from_log(&dir.join("scheduler.log"));
        let published = logged.unwrap_or(last_published as u64);
        // Everything published either ends as a result or a dead letter; give it time.
        let drain_until = Instant::now() + Duration::from_secs(180);
        let mut last = (0, Instant::now());
        loop {
            let settled = {
                let seen = seen.lock().expect("lock");
                seen.results + seen.dead
            };
            if settled >= published {
                break;
            }
            if settled != last.0 {
                last = (settled, Instant::now());
            }
            let depth = self.broker.depth(&format!("{}.sub.default", install.prefix)).await.unwrap_or(0);
            // Done when nothing has arrived for a while: with requests still
            // queued that takes 30 s (their TTL runs out within 5 s anyway).
            let quiet = last.1.elapsed();
            if Instant::now() > drain_until
                || (depth == 0 && quiet > Duration::from_secs(8))
                || quiet > Duration::from_secs(30)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (mut results_published, mut result_messages) = (0.0, 0.0);
        for runner in &runners {
            if let Ok(text) = runner.metrics().await {
                let results = metric_sum(&text, "picket_results_published_total");
                results_published += results;
                result_messages += if text.contains("picket_result_messages_published_total") {
                    metric_sum(&text, "picket_result_messages_published_total")
                } else {
                    results
                };
            }
        }
        for runner in &mut runners {
            runner.proc.stop();
        }
        // Results published by stopping runners reach the handler before it stops.
        tokio::time::sleep(Duration::from_millis(500)).await;
        handler.proc.stop();
        // Whatever the handler had not consumed is still in the queues: not
        // lost, but not a result either.
        let mut left = 0u64;
        for queue in ["results", "results.batch", "handler.dead", "sub.default"] {
            left += u64::from(self.broker.depth(&format!("{}.{queue}", install.prefix)).await.unwrap_or(0));
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;

        let seen = seen.lock().expect("lock");
        let timeline: String =
            seen.worst_by_second.iter().map(|(second, us)| format!("{second},{:.1}\n", *us as f64 / 1000.0)).collect();
        let _ = std::fs::write(dir.join("worst-lateness-by-second.csv"), format!("second,worst_ms\n{timeline}"));
        let histogram = seen.lateness_us.as_ref().expect("histogram");
        let ms = |us: u64| us as f64 / 1000.0;
        let mut report = StepReport {
            checks,
            sustain_secs: self.sustain_secs,
            published,
            missed_by_scheduler: missed as u64,
            results: seen.results,
            dead: seen.dead,
            left_in_queues: left,
            lost: published as i64 - seen.results as i64 - seen.dead as i64 - left as i64,
            window_results: seen.window_results,
            expected_in_window: checks as u64 * self.sustain_secs / INTERVAL_SECS,
            lateness_p50_ms: ms(histogram.value_at_quantile(0.50)),
            lateness_p99_ms: ms(histogram.value_at_quantile(0.99)),
            lateness_max_ms: ms(histogram.max()),
            late_seconds: seen.worst_by_second.values().filter(|&&us| ms(us) > P99_LIMIT_MS).count(),
            cpu: pids
                .iter()
                .zip(cpu_before.iter().zip(&cpu_after))
                .map(|((name, _), (a, b))| (name.clone(), (b - a) / wall * 100.0))
                .collect(),
            results_published: results_published as u64,
            result_messages: result_messages as u64,
            passed: false,
            why: Vec::new(),
            retry: false,
        };
        if logged.is_none() {
            report.why.push("the scheduler did not log its published count: lost is approximate".to_owned());
        }
        if seen.duplicates > 0 {
            report.why.push(format!("{} duplicate results", seen.duplicates));
        }
        if report.left_in_queues != 0 {
            report.why.push(format!("{} messages not consumed by the end", report.left_in_queues));
        }
        if report.lost != 0 {
            report.why.push(format!("lost {}", report.lost));
        }
        if report.missed_by_scheduler != 0 {
            report.why.push(format!("{} slots missed by the scheduler", report.missed_by_scheduler));
        }
        if report.dead != 0 {
            report.why.push(format!("{} dead letters", report.dead));
        }
        if report.lateness_p99_ms > P99_LIMIT_MS {
            report.why.push(format!(
                "lateness p99 {:.0} ms > {P99_LIMIT_MS} ms (some start > {P99_LIMIT_MS} ms late in {} of {} s)",
                report.lateness_p99_ms, report.late_seconds, report.sustain_secs
            ));
        }
        if (report.window_results as f64) < report.expected_in_window as f64 * 0.99 {
            report.why.push(format!(
                "{} of {} expected results in the window",
                report.window_results, report.expected_in_window
            ));
        }
        report.passed = report.why.is_empty();
        Ok(report)
    }
}

/// The handler's PostgreSQL schema for a step (letters, digits and `_` only).
fn schema_of(prefix: &str) -> String {
    prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("psql")
        .args([url, "-q", "-c", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
        .stdout(Stdio::null())
        .status()
        .context("psql (to drop the step's schema)")?;
    anyhow::ensure!(status.success(), "psql could not drop schema {schema}");
    Ok(())
}

async fn read_handler(stdout: std::process::ChildStdout, seen: Arc<Mutex<Seen>>, window: Window) {
    let Ok(stdout) = tokio::process::ChildStdout::from_std(stdout) else { return };
    let mut lines = tokio::io::BufReader::with_capacity(1 << 16, stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(parsed) = serde_json::from_str::<Line>(&line) else { continue };
        let mut seen = seen.lock().expect("lock");
        match (parsed.kind.as_str(), parsed.result) {
            ("check_result", Some(result)) => {
                if !seen.ids.insert(result.request_id) {
                    seen.duplicates += 1;
                    continue;
                }
                seen.results += 1;
                let in_window = window
                    .lock()
                    .expect("lock")
                    .is_some_and(|(from, to)| result.scheduled_at >= from && result.scheduled_at < to);
                if in_window {
                    seen.window_results += 1;
                    let late = (result.started_at - result.scheduled_at).num_microseconds().unwrap_or(0).max(1);
                    let late = u64::try_from(late).unwrap_or(1);
                    if let Some(h) = seen.lateness_us.as_mut() {
                        let _ = h.record(late);
                    }
                    let worst = seen.worst_by_second.entry(result.scheduled_at.timestamp()).or_default();
                    *worst = (*worst).max(late);
                }
            }
            ("dead_letter", _) => seen.dead += 1,
            _ => {}
        }
    }
}

/// The scheduler's own count of confirmed requests, from its shutdown log line.
fn published_from_log(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["message"] == "scheduler stopped" || v["fields"]["message"] == "scheduler stopped")
        .find_map(|v| v["published"].as_u64().or_else(|| v["fields"]["published"].as_u64()))
}

fn write_checks(dir: &Path, count: usize, url: &str) -> anyhow::Result<()> {
    let checks: Vec<serde_json::Value> = (0..count)
        .map(|i| json!({"name": format!("e2e-{i:06}"), "type": "http", "url": url, "interval": "10s", "timeout": "5s"}))
        .collect();
    std::fs::write(dir.join("bench.json"), serde_json::to_vec(&checks)?)?;
    Ok(())
}

/// A process and its direct children (nginx's master and workers).
fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
            let parent =
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if parent == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids
}

fn cpu_of(groups: &[(String, Vec<u32>)]) -> Vec<f64> {
    groups.iter().map(|(_, pids)| pids.iter().filter_map(|&pid| cpu_seconds(pid).ok()).sum()).collect()
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}
