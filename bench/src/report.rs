//! `picket-bench run`: starts the services, runs every section, and writes
//! the table (markdown) to the results directory and stdout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::Utc;
use protocol::definition::parse_check;
use protocol::message::{AlertPolicy, Message, encode};
use protocol::{CheckRequest, CheckResult, Status};
use serde_json::json;

use crate::RunArgs;
use crate::broker::Broker;
use crate::e2e::{INTERVAL_SECS, Step, StepReport};
use crate::exposition::ExpositionReport;
use crate::memory::MemoryReport;
use crate::page::{PageArgs, PageReport, quantile};
use crate::probe::Kind;
use crate::procs::{output_of, raise_nofile};
use crate::roles::{Install, picket_binary};
use crate::services::{Services, require_tools, versions};
use crate::tools::{Runner, Sample, Tool};

#[derive(Default)]
struct Results {
    /// (kind, tool) → samples in run order.
    samples: Vec<(Kind, Tool, Vec<Sample>)>,
    memory: Option<MemoryReport>,
    /// (unconfirmed window, message size, consumed/s, confirmed/s).
    ceiling: Vec<(usize, usize, f64, f64)>,
    steps: Vec<StepReport>,
    exposition: Option<ExpositionReport>,
    page: Option<PageReport>,
    errors: Vec<String>,
}

impl Results {
    fn samples(&self, kind: Kind, tool: Tool) -> &[Sample] {
        self.samples.iter().find(|(k, t, _)| *k == kind && *t == tool).map(|(_, _, s)| s.as_slice()).unwrap_or(&[])
    }

    fn push(&mut self, kind: Kind, tool: Tool, sample: Sample) {
        match self.samples.iter_mut().find(|(k, t, _)| *k == kind && *t == tool) {
            Some((_, _, samples)) => samples.push(sample),
            None => self.samples.push((kind, tool, vec![sample])),
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    raise_nofile();
    require_tools()?;
    let picket = picket_binary(args.picket.as_deref())?;
    let bench = std::env::current_exe()?;
    let tmp = std::env::temp_dir().join(format!("picket-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    // nginx workers run as nobody and read the static body from here.
    set_mode(&tmp, 0o755)?;
    let started = Instant::now();
    let load_before = load_average();
    eprintln!("picket-bench: work dir {} (kept when something fails)", tmp.display());

    let outcome = tokio::select! {
        outcome = measure(&args, &picket, &bench, &tmp) => outcome,
        () = interrupted() => Err(anyhow::anyhow!("interrupted")),
    };
    let mut results = match outcome {
        Ok(results) => results,
        Err(e) => {
            eprintln!("picket-bench: failed; logs are in {}", tmp.display());
            return Err(e);
        }
    };
    let elapsed = started.elapsed();
    let text = render(&args, &results, &picket, load_before, elapsed);
    println!("{text}");
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None if args.smoke => tmp.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("results"),
    };
    std::fs::create_dir_all(&out)?;
    let path =
        if args.smoke { out.join("smoke.md") } else { unused_name(&out, &Utc::now().format("%Y-%m-%d").to_string()) };
    std::fs::write(&path, &text)?;
    eprintln!("picket-bench: wrote {} in {:.0} s", path.display(), elapsed.as_secs_f64());
    if args.smoke {
        smoke_verdict(&mut results);
    }
    if !results.errors.is_empty() {
        bail!("the harness is broken: {}", results.errors.join("; "));
    }
    if !args.keep && (!args.smoke || args.out.is_some()) {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// `<dir>/<stem>.md`, or `<stem>-2.md`, `-3`, … when a run of the same day
/// is already there: a second run never overwrites the first.
fn unused_name(dir: &Path, stem: &str) -> PathBuf {
    let mut path = dir.join(format!("{stem}.md"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}.md"));
        n += 1;
    }
    path
}

/// In smoke mode only the harness is judged, not the targets: every section
/// ran, and the end-to-end step lost nothing.
fn smoke_verdict(results: &mut Results) {
    for step in &results.steps {
        if step.lost != 0 || step.results == 0 {
            results.errors.push(format!("end to end: {} results, lost {}", step.results, step.lost));
        }
    }
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn measure(args: &RunArgs, picket: &Path, bench: &Path, tmp: &Path) -> anyhow::Result<Results> {
    let mut results = Results::default();
    let services = Services::start(tmp)?;
    Runner::write_scripts(tmp)?;
    eprintln!(
        "picket-bench: nginx http :{} https :{}, dnsmasq :{}, blackbox_exporter :{}",
        services.http_port, services.https_port, services.dns_port, services.blackbox_port
    );
    let prefix = format!("picket-bench-{}", std::process::id());
    let base = Install { picket: picket.to_owned(), amqp_url: args.amqp_url.clone(), prefix, logs: tmp.to_owned() };

    if args.wants("tools") {
        let runner = Runner {
            services: &services,
            bench: bench.to_owned(),
            concurrency: args.concurrency,
            seconds: args.seconds(),
        };
        for rep in 0..args.reps() {
            for kind in Kind::ALL {
                // Interleaved, and the order rotates so no tool always runs first.
                let tools: Vec<Tool> = Tool::ALL.iter().cycle().skip(rep).take(4).copied().collect();
                for tool in tools.into_iter().filter(|t| t.applies(kind)) {
                    let sample = runner.run(tool, kind)?;
                    eprintln!(
                        "  rep {} {:<5} {:<38} {:>9.0} checks/s {:>7.3} CPU s/1k {:>6.1} MiB{}",
                        rep + 1,
                        kind.name(),
                        tool.label(kind),
                        sample.rate(),
                        sample.cpu_per_1k(),
                        sample.rss_kib as f64 / 1024.0,
                        if sample.failed > 0 { format!("  ({} failed)", sample.failed) } else { String::new() }
                    );
                    results.push(kind, tool, sample);
                }
            }
        }
    }

    if args.wants("exposition") {
        let pairs = 10_000;
        eprintln!("picket-bench: handler /metrics with {pairs} (check, subscription) pairs");
        results.exposition = Some(crate::exposition::run(pairs, if args.smoke { 3 } else { 20 }));
    }

    if args.wants("page") {
        let page = if args.smoke {
            PageArgs {
                pairs: 500,
                fill_rounds: 2,
                feed_rate: 1_000.0,
                timed: Duration::from_secs(2),
                sustained: Duration::from_secs(1),
                reps: 1,
            }
        } else {
            PageArgs {
                pairs: 10_000,
                fill_rounds: 6,
                feed_rate: 1_000.0,
                timed: Duration::from_secs(30),
                sustained: Duration::from_secs(20),
                reps: 2,
            }
        };
        eprintln!(
            "picket-bench: API under load, {} pairs, {:.0} results/s through the sink",
            page.pairs, page.feed_rate
        );
        results.page = Some(crate::page::run(tmp, &page).await?);
    }

    let broker = Broker::connect(&args.amqp_url).await?;
    if args.wants("memory") {
        eprintln!("picket-bench: runner cold start, idle RSS, 1,000 in flight");
        let install = Install { prefix: format!("{}-mem", base.prefix), ..base.clone() };
        let idle = if args.smoke { Duration::from_millis(300) } else { Duration::from_secs(2) };
        let report = crate::memory::run(&install, args.reps(), idle, 1000).await?;
        results.memory = Some(report);
    }

    if args.wants("ceiling") {
        let bodies = message_bodies(&services.http_url())?;
        let size = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
        let seconds = if args.smoke { 1.0 } else { 10.0 };
        for window in [256, 1] {
            eprintln!("picket-bench: broker ceiling, {window} unconfirmed at a time");
            let (consumed, confirmed) =
                broker.ceiling(&format!("{}-ceiling", base.prefix), &bodies, window, seconds).await?;
            results.ceiling.push((window, size, consumed, confirmed));
        }
    }

    if args.wants("e2e") {
        let step = Step {
            base: &base,
            broker: &broker,
            target_url: services.http_url(),
            runners: args.runners,
            warm_secs: if args.smoke { 2 } else { 5 },
            sustain_secs: args.e2e_seconds(),
            nginx_pid: services.nginx_pid(),
            postgres_url: (args.e2e_store == "postgres").then(|| args.postgres_url.clone()),
        };
        let mut ladder: Vec<usize> = if args.smoke { vec![1000] } else { args.e2e_steps.clone() };
        let mut i = 0;
        let mut retried = false;
        while i < ladder.len() {
            let checks = ladder[i];
            eprintln!("picket-bench: end to end, {checks} checks per {INTERVAL_SECS} s for {} s", step.sustain_secs);
            let mut report = step.run(checks).await?;
            report.retry = retried;
            eprintln!(
                "  {:.0}/s achieved of {:.0}/s, lateness p50 {:.1} p99 {:.1} max {:.1} ms, dead {}, lost {}{}",
                report.achieved_per_s(),
                report.target_per_s(),
                report.lateness_p50_ms,
                report.lateness_p99_ms,
                report.lateness_max_ms,
                report.dead,
                report.lost,
                if report.passed { String::new() } else { format!(" — broke: {}", report.why.join(", ")) }
            );
            let passed = report.passed;
            results.steps.push(report);
            if args.smoke {
                break;
            }
            if !passed {
                // The machine is shared: a step that breaks is run once more
                // (both rows are reported) before the ladder stops.
                if retried {
                    break;
                }
                retried = true;
                continue;
            }
            retried = false;
            if i + 1 == ladder.len() && checks + 10_000 <= args.e2e_max {
                ladder.push(checks + 10_000);
            }
            i += 1;
        }
    }
    drop(broker);
    Ok(results)
}

/// A request and a result as the e2e checks produce them, encoded for the wire.
fn message_bodies(url: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let check =
        parse_check(json!({"name": "e2e-000001", "type": "http", "url": url, "interval": "10s", "timeout": "5s"}))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = Utc::now();
    let request = CheckRequest {
        id: CheckRequest::id_for(check.name(), "default", now),
        check: check.clone(),
        subscription: "default".to_owned(),
        scheduled_at: now,
        deadline: now + chrono::Duration::seconds(5),
        scheduler: "picket-bench-host".to_owned(),
    };
    let metrics = [
        ("dns", 0.0),
        ("connect", 0.112),
        ("ttfb", 0.301),
        ("transfer", 0.02),
        ("total", 0.47),
        ("status_code", 200.0),
        ("bytes", 16.0),
        ("redirects", 0.0),
    ];
    let result = CheckResult {
        request_id: request.id.clone(),
        check: check.name().to_owned(),
        subscription: "default".to_owned(),
        runner: "r0".to_owned(),
        status: Status::Ok,
        output: "HTTP 200 in 0ms".to_owned(),
        scheduled_at: now,
        started_at: now,
        duration_ms: 0,
        lateness_ms: 1,
        metrics: metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        details: json!({"url": url, "status": 200, "http_version": "HTTP/1.1", "body_truncated": false, "redirects": []}),
        policy: AlertPolicy::of(&check),
    };
    Ok(vec![encode(&Message::CheckRequest(Box::new(request))), encode(&Message::CheckResult(Box::new(result)))])
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(values: impl IntoIterator<Item = f64>) -> Stats {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Stats { median: f64::NAN, min: f64::NAN, max: f64::NAN };
    }
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Stats { median, min: v[0], max: v[n - 1] }
}

fn fmt_stats(s: &Stats, decimals: usize) -> String {
    if s.min == s.max {
        format!("{:.*}", decimals, s.median)
    } else {
        format!("{:.*} ({:.*}–{:.*})", decimals, s.median, decimals, s.min, decimals, s.max)
    }
}

fn machine() -> Vec<(&'static str, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    vec![
        ("nproc", output_of("nproc", &[])),
        ("CPU", model),
        ("memory", mem),
        ("kernel", output_of("uname", &["-sr"])),
        ("OS", output_of("sh", &["-c", ". /etc/os-release && echo $PRETTY_NAME"])),
    ]
}

fn render(args: &RunArgs, r: &Results, picket: &Path, load_before: String, elapsed: Duration) -> String {
    let mut out = String::new();
    let mode = if args.smoke { " (smoke run: debug build, too short to quote)" } else { "" };
    let _ = writeln!(out, "# picket benchmark, {}{mode}\n", Utc::now().format("%Y-%m-%d %H:%M UTC"));
    let _ = writeln!(
        out,
        "Produced by `bench/run{}` in {:.0} s.\n",
        if args.smoke { " --smoke" } else { "" },
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in machine() {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    let _ = writeln!(out, "| load average before / after | {load_before} / {} |", load_average());
    let git = output_of("git", &["-C", env!("CARGO_MANIFEST_DIR"), "describe", "--always", "--dirty"]);
    let _ = writeln!(
        out,
        "| picket | {} ({git}, release build) |",
        output_of(&picket.display().to_string(), &["--version"])
    );
    for (k, v) in versions() {
        let _ = writeln!(out, "| {k} | {v} |");
    }

    if !r.samples.is_empty() {
        let _ = writeln!(
            out,
            "\n## Probers side by side\n\nEach tool keeps {} checks in flight; {} run(s) of {} s each, interleaved tool by tool. \
             Figures are median (min–max). CPU is the prober's user + system time: picket's process \
             (getrusage around the run), blackbox_exporter's process (/proc/<pid>/stat, wrk not counted), the \
             plugins with their children (getrusage RUSAGE_CHILDREN), wrk's process. Peak RSS is VmHWM \
             (for the plugins: the largest single plugin process; {} run at once).\n",
            args.concurrency,
            args.reps(),
            args.seconds(),
            args.concurrency
        );
        for kind in Kind::ALL {
            let what = match kind {
                Kind::Http => "HTTP GET, fresh connection per check",
                Kind::Https => {
                    "HTTPS GET, fresh TLS handshake per check (certificate verified against the bench CA by picket and blackbox_exporter; check_http and wrk do not verify)"
                }
                Kind::Dns => "DNS A query over UDP to dnsmasq, answer checked",
            };
            let _ = writeln!(out, "### {}: {what}\n", kind.name());
            let _ = writeln!(
                out,
                "| prober | checks/s | CPU s per 1,000 checks | checks per CPU-second | peak RSS MiB | failed |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for tool in Tool::ALL.into_iter().filter(|t| t.applies(kind)) {
                let samples = r.samples(kind, tool);
                if samples.is_empty() {
                    continue;
                }
                let failed: u64 = samples.iter().map(|s| s.failed).sum();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {}{} |",
                    tool.label(kind),
                    fmt_stats(&stats(samples.iter().map(Sample::rate)), 0),
                    fmt_stats(&stats(samples.iter().map(Sample::cpu_per_1k)), 3),
                    fmt_stats(&stats(samples.iter().map(Sample::per_cpu_second)), 0),
                    fmt_stats(&stats(samples.iter().map(|s| s.rss_kib as f64 / 1024.0)), 1),
                    failed,
                    samples.iter().find_map(|s| s.note.as_deref()).map(|n| format!(" ({n})")).unwrap_or_default()
                );
            }
            let _ = writeln!(out);
        }
    }

    if let Some(m) = &r.memory {
        let _ = writeln!(out, "## picket runner process\n");
        let _ = writeln!(out, "| measure | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| cold start: spawn → `/readyz` 200 (broker connected), ms | {} |",
            fmt_stats(&stats(m.cold_start_ms.iter().copied()), 1)
        );
        let _ = writeln!(
            out,
            "| idle RSS, MiB | {} |",
            fmt_stats(&stats(m.idle_rss_kib.iter().map(|k| *k as f64 / 1024.0)), 1)
        );
        let _ = writeln!(
            out,
            "| RSS with {} checks in flight against a server that holds every request, MiB | {:.1} (peak {:.1}) |\n",
            m.in_flight,
            m.in_flight_rss_kib as f64 / 1024.0,
            m.in_flight_hwm_kib as f64 / 1024.0
        );
    }

    if !r.ceiling.is_empty() {
        let _ = writeln!(out, "## RabbitMQ's own ceiling (same run)\n");
        let _ = writeln!(
            out,
            "Persistent messages, publisher confirms, manual acks, one quorum queue; a lapin publisher and a \
             consumer (prefetch 256) on separate connections. The bodies alternate an encoded CheckRequest and \
             CheckResult of the end-to-end checks. Each check is two such messages.\n"
        );
        let _ = writeln!(
            out,
            "| unconfirmed publishes at a time | mean message bytes | consumed + acked msg/s | confirmed msg/s | checks/s it could carry |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for (window, size, consumed, confirmed) in &r.ceiling {
            let _ = writeln!(out, "| {window} | {size} | {consumed:.0} | {confirmed:.0} | {:.0} |", consumed / 2.0);
        }
        let _ = writeln!(out);
    }

    if !r.steps.is_empty() {
        let _ = writeln!(out, "## End to end over RabbitMQ\n");
        let _ = writeln!(
            out,
            "`picket scheduler` → RabbitMQ → {} × `picket runner` → `picket handler` ({} store), all on this \
             machine with nginx as the target; HTTP checks every {INTERVAL_SECS} s, each step sustained {} s after a \
             warm-up. Lateness = started_at − scheduled_at of each result in the window (HDR histogram). Lost = \
             published − results − dead letters − messages left in the queues when the handler stopped. CPU \
             is % of one core over the window.\n",
            args.runners,
            if args.e2e_store == "postgres" { "PostgreSQL" } else { "SQLite" },
            args.e2e_seconds()
        );
        let _ = writeln!(
            out,
            "| checks / 10 s | target/s | achieved results/s | lateness p50 / p99 / max ms | published | missed by scheduler | results | dead letters | left in queues | lost | CPU % | verdict |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for s in &r.steps {
            let cpu: Vec<String> = s.cpu.iter().map(|(name, pct)| format!("{name} {pct:.0}")).collect();
            let _ = writeln!(
                out,
                "| {}{} | {:.0} | {:.0} | {:.1} / {:.1} / {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.checks,
                if s.retry { " (again)" } else { "" },
                s.target_per_s(),
                s.achieved_per_s(),
                s.lateness_p50_ms,
                s.lateness_p99_ms,
                s.lateness_max_ms,
                s.published,
                s.missed_by_scheduler,
                s.results,
                s.dead,
                s.left_in_queues,
                s.lost,
                cpu.join(", "),
                if s.passed { "sustained".to_owned() } else { format!("broke: {}", s.why.join(", ")) }
            );
        }
        cost_model(&mut out, r);
        let best = r.steps.iter().filter(|s| s.passed).map(|s| s.checks).max();
        let ceiling = r.ceiling.first().map(|c| c.2 / 2.0);
        let _ = writeln!(
            out,
            "\nHighest sustained: {} checks per 10 s{}.\n",
            best.map_or("none".to_owned(), |b| format!("{b} ({:.0} checks/s)", b as f64 / 10.0)),
            ceiling
                .map(|c| format!("; the broker alone carries about {c:.0} checks/s (2 messages each)"))
                .unwrap_or_default()
        );
    }

    if let Some(x) = &r.exposition {
        let _ = writeln!(out, "## Handler /metrics exposition\n");
        let _ = writeln!(out, "| measure | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| render {} pairs (HTTPS-like: 14 series each), ms | {} |",
            x.pairs,
            fmt_stats(&stats(x.render_ms.iter().copied()), 1)
        );
        let _ = writeln!(out, "| exposition size, MiB | {:.1} |", x.bytes as f64 / 1024.0 / 1024.0);
        let _ = writeln!(
            out,
            "| slowest record of a 512-result batch, alone / while scraped without pause, µs | {:.0} / {:.0} |\n",
            x.record_alone_max_us, x.record_while_rendering_max_us
        );
    }

    if let Some(p) = &r.page {
        let _ = writeln!(out, "## Status page and operator API under load\n");
        let _ = writeln!(
            out,
            "{} (check, subscription) pairs with {} rounds of history in SQLite; results fed through the \
             `Alerting` sink at {:.0}/s (achieved {:.0}/s) while each path is fetched in turn on a fresh \
             connection from the real routers on loopback (the page's and the API's, as `picket handler` \
             serves them), 50 ms apart.\n",
            p.pairs, p.fill_rounds, p.feed_rate, p.fed_per_s
        );
        let _ = writeln!(out, "| path | GETs | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
        for (path, times) in &p.gets {
            let _ = writeln!(
                out,
                "| `{path}` | {} | {:.1} | {:.1} | {:.1} |",
                times.len(),
                quantile(times, 0.5),
                quantile(times, 0.99),
                quantile(times, 1.0)
            );
        }
        let fmt = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "\nSustained results/s through the sink, unpaced, {IN_FLIGHT} in flight: latency history on {} / off {} \
             (each repetition on a fresh store filled with one round); the history costs {:.1} %.\n",
            fmt(&p.with_history),
            fmt(&p.without_history),
            p.history_cost_percent(),
            IN_FLIGHT = crate::page::IN_FLIGHT
        );
    }

    let targets = targets(r);
    if args.smoke {
        out.push_str("## Targets\n\nNot judged: a smoke run is a debug build measured for a second.\n");
    } else if !targets.is_empty() {
        let _ = writeln!(out, "## Targets\n\n| target | measured | |\n|---|---|---|");
        for (what, measured, met) in targets {
            let _ = writeln!(out, "| {what} | {measured} | {} |", if met { "met" } else { "**missed**" });
        }
    }
    out
}

/// Where each microsecond of a check goes: the CPU of each role per check,
/// beside what the in-process executor spent on the same HTTP check in the
/// probers section of the same run.
fn cost_model(out: &mut String, r: &Results) {
    let executor = r.samples(Kind::Http, Tool::Picket);
    let executor_us = (!executor.is_empty()).then(|| stats(executor.iter().map(Sample::cpu_per_1k)).median * 1000.0);
    let Some(first) = r.steps.first() else { return };
    let roles: Vec<String> = first.cpu.iter().map(|(name, _)| name.clone()).collect();
    let _ = writeln!(
        out,
        "\n### Cost per check\n\nµs of CPU per result of the window, by role (CPU over the window ÷ its results). \
         The in-process executor's figure is the HTTP check of the probers section of this run (fresh connection \
         to nginx, as here){}.\n",
        if executor_us.is_none() { "; that section did not run" } else { "" }
    );
    let _ = writeln!(
        out,
        "| checks / 10 s | {} | in-process executor | runners ÷ executor | broker messages per check |",
        roles.join(" | ")
    );
    let _ = writeln!(out, "|---|{}---|---|---|", "---|".repeat(roles.len()));
    for s in &r.steps {
        let cost = s.cpu_us_per_check();
        let cells: Vec<String> = roles
            .iter()
            .map(|role| {
                cost.iter().find(|(name, _)| name == role).map_or("–".to_owned(), |(_, us)| format!("{us:.0}"))
            })
            .collect();
        let runners = cost.iter().find(|(name, _)| name == "runners").map(|(_, us)| *us);
        let ratio = runners
            .zip(executor_us)
            .map_or("–".to_owned(), |(runners, executor)| format!("{:.2}×", runners / executor.max(1e-9)));
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {ratio} | {} |",
            s.checks,
            if s.retry { " (again)" } else { "" },
            cells.join(" | "),
            executor_us.map_or("–".to_owned(), |us| format!("{us:.0}")),
            s.messages_per_check().map_or("–".to_owned(), |m| format!("{m:.2}"))
        );
    }
}

/// Each target of issue 7 with the figure behind it, from medians.
fn targets(r: &Results) -> Vec<(String, String, bool)> {
    let mut t = Vec::new();
    let median = |kind, tool, f: fn(&Sample) -> f64| {
        let samples = r.samples(kind, tool);
        (!samples.is_empty()).then(|| stats(samples.iter().map(f)).median)
    };
    let ratio_target =
        |t: &mut Vec<(String, String, bool)>, kind: Kind, other: Tool, f: fn(&Sample) -> f64, what: &str, min: f64| {
            if let (Some(p), Some(o)) = (median(kind, Tool::Picket, f), median(kind, other, f)) {
                let ratio = p / o;
                t.push((
                    format!("{} {what} ≥ {min}×", kind.name()),
                    format!("{ratio:.2}× ({p:.0} vs {o:.0})"),
                    ratio >= min,
                ));
            }
        };
    ratio_target(
        &mut t,
        Kind::Http,
        Tool::Blackbox,
        Sample::per_cpu_second,
        "checks per CPU-second vs blackbox_exporter",
        5.0,
    );
    ratio_target(&mut t, Kind::Http, Tool::Wrk, Sample::rate, "checks/s vs wrk's new connections/s", 0.5);
    ratio_target(
        &mut t,
        Kind::Https,
        Tool::Blackbox,
        Sample::per_cpu_second,
        "checks per CPU-second vs blackbox_exporter",
        2.0,
    );
    ratio_target(&mut t, Kind::Https, Tool::Wrk, Sample::rate, "checks/s vs wrk's handshakes/s", 0.7);
    ratio_target(
        &mut t,
        Kind::Dns,
        Tool::Blackbox,
        Sample::per_cpu_second,
        "checks per CPU-second vs blackbox_exporter",
        5.0,
    );
    for kind in Kind::ALL {
        ratio_target(
            &mut t,
            kind,
            Tool::Plugin,
            Sample::per_cpu_second,
            "checks per CPU-second vs fork+exec plugins",
            50.0,
        );
    }
    if let Some(m) = &r.memory {
        let idle = stats(m.idle_rss_kib.iter().map(|k| *k as f64 / 1024.0)).median;
        t.push(("runner idle RSS ≤ 20 MiB".to_owned(), format!("{idle:.1} MiB"), idle <= 20.0));
        let busy = m.in_flight_rss_kib.max(m.in_flight_hwm_kib) as f64 / 1024.0;
        t.push((
            format!("runner RSS with {} in flight ≤ 100 MiB", m.in_flight),
            format!("{busy:.1} MiB (peak)"),
            busy <= 100.0,
        ));
        let cold = stats(m.cold_start_ms.iter().copied()).median;
        t.push(("runner cold start to ready ≤ 200 ms".to_owned(), format!("{cold:.0} ms"), cold <= 200.0));
    }
    let step_of = |checks| r.steps.iter().filter(|s| s.checks == checks).max_by_key(|s| s.passed);
    if let Some(step) = step_of(10_000) {
        t.push((
            "end to end 10,000 checks / 10 s for 60 s, p99 ≤ 250 ms, nothing lost".to_owned(),
            format!(
                "{:.0}/s, p99 {:.1} ms, lost {}, dead {}",
                step.achieved_per_s(),
                step.lateness_p99_ms,
                step.lost,
                step.dead
            ),
            step.passed && step.sustain_secs >= 60,
        ));
    }
    let broke_at = r.steps.iter().rev().find(|s| !s.passed).map(|s| s.checks);
    for (checks, what) in
        [(10_000, "end to end 10,000 checks / 10 s"), (30_000, "aim: end to end 30,000 checks / 10 s")]
    {
        if step_of(checks).is_none()
            && let Some(broke) = broke_at.filter(|&b| b < checks)
        {
            t.push((what.to_owned(), format!("not reached: the ladder broke at {broke} checks / 10 s"), false));
        }
    }
    if let Some(step) = step_of(30_000) {
        t.push((
            "aim: end to end 30,000 checks / 10 s".to_owned(),
            format!("{:.0}/s, p99 {:.1} ms, lost {}", step.achieved_per_s(), step.lateness_p99_ms, step.lost),
            step.passed,
        ));
    }
    if let Some(p) = &r.page {
        for (path, times) in &p.gets {
            let p99 = quantile(times, 0.99);
            t.push((
                format!("`GET {path}` with {} pairs at {:.0} results/s: p99 < 200 ms (issue 13)", p.pairs, p.feed_rate),
                format!("p50 {:.1} ms, p99 {p99:.1} ms", quantile(times, 0.5)),
                p99 < 200.0,
            ));
        }
        let cost = p.history_cost_percent();
        t.push((
            "latency history costs ≤ 5 % of the sink's results/s (issue 13)".to_owned(),
            format!("{cost:.1} %"),
            cost <= 5.0,
        ));
    }
    if let Some(x) = &r.exposition {
        let median = stats(x.render_ms.iter().copied()).median;
        t.push((
            format!("handler /metrics with {} pairs renders in < 100 ms (issue 14)", x.pairs),
            format!("{median:.1} ms median, {:.1} MiB", x.bytes as f64 / 1024.0 / 1024.0),
            median < 100.0,
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_of_the_day_gets_its_own_file() {
        let dir = std::env::temp_dir().join(format!("picket-bench-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = unused_name(&dir, "2026-11-26");
        assert_eq!(first, dir.join("2026-11-26.md"));
        std::fs::write(&first, "first").unwrap();
        let second = unused_name(&dir, "2026-11-26");
        assert_eq!(second, dir.join("2026-11-26-2.md"));
        std::fs::write(&second, "second").unwrap();
        assert_eq!(unused_name(&dir, "2026-11-26"), dir.join("2026-11-26-3.md"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
