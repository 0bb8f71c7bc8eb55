//! One measured run of one tool against one target. Every tool keeps the same
//! number of checks in flight; each reports successful checks, the prober's
//! CPU seconds and its peak RSS.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::measure::Measured;
use crate::probe::{Kind, ProbeReport};
use crate::procs::{cpu_seconds, reset_peak, status_kib};
use crate::services::{DNS_NAME, PLUGINS, Services};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Picket,
    Blackbox,
    Plugin,
    Wrk,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Picket, Tool::Blackbox, Tool::Plugin, Tool::Wrk];

    pub fn label(self, kind: Kind) -> &'static str {
        match (self, kind) {
            (Self::Picket, _) => "picket runner (in-process executor)",
            (Self::Blackbox, _) => "blackbox_exporter (wrk → /probe)",
            (Self::Plugin, Kind::Dns) => "check_dig fork+exec",
            (Self::Plugin, _) => "check_http fork+exec",
            (Self::Wrk, _) => "wrk, Connection: close (ceiling)",
        }
    }

    /// wrk has no DNS mode.
    pub fn applies(self, kind: Kind) -> bool {
        !(self == Self::Wrk && kind == Kind::Dns)
    }
}

/// One run's figures.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
    pub cpu: f64,
    pub rss_kib: u64,
    pub note: Option<String>,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    pub fn cpu_per_1k(&self) -> f64 {
        self.cpu / (self.ok.max(1) as f64) * 1000.0
    }

    pub fn per_cpu_second(&self) -> f64 {
        self.ok as f64 / self.cpu.max(1e-9)
    }
}

/// What the wrk Lua scripts print in `done()`.
#[derive(Debug, Deserialize)]
struct WrkSummary {
    requests: u64,
    duration_us: u64,
    ok: Option<u64>,
    status: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
}

/// Counts in `done()` only, so wrk keeps its fast path.
const COUNT_LUA: &str = r#"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
end
"#;

/// Also reads every /probe answer: blackbox answers 200 even when the probe failed.
const PROBE_LUA: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0 end
function response(status, headers, body)
  if status == 200 and string.find(body, "\nprobe_success 1", 1, true) then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o = 0
  for _, t in ipairs(threads) do o = o + t:get("ok") end
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"ok":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, o, e.status, e.connect, e.read, e.write, e.timeout))
end
"#;

pub struct Runner<'a> {
    pub services: &'a Services,
    pub bench: PathBuf,
    pub concurrency: usize,
    pub seconds: f64,
}

impl Runner<'_> {
    pub fn write_scripts(dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("count.lua"), COUNT_LUA)?;
        std::fs::write(dir.join("probe.lua"), PROBE_LUA)?;
        Ok(())
    }

    pub fn run(&self, tool: Tool, kind: Kind) -> anyhow::Result<Sample> {
        let sample = match tool {
            Tool::Picket => self.picket(kind),
            Tool::Blackbox => self.blackbox(kind),
            Tool::Plugin => self.plugin(kind),
            Tool::Wrk => self.wrk(kind),
        }
        .with_context(|| format!("{} {}", kind.name(), tool.label(kind)))?;
        if sample.ok == 0 {
            bail!(
                "{} {}: no successful check ({} failed; {})",
                kind.name(),
                tool.label(kind),
                sample.failed,
                sample.note.as_deref().unwrap_or("no detail")
            );
        }
        Ok(sample)
    }

    fn target(&self, kind: Kind) -> String {
        match kind {
            Kind::Http => self.services.http_url(),
            Kind::Https => self.services.https_url(),
            Kind::Dns => self.services.nameserver(),
        }
    }

    fn whole_seconds(&self) -> String {
        format!("{}s", self.seconds.ceil().max(1.0) as u64)
    }

    fn picket(&self, kind: Kind) -> anyhow::Result<Sample> {
        let mut command = Command::new(&self.bench);
        command
            .arg("probe")
            .arg(format!("--kind={}", format!("{kind:?}").to_lowercase()))
            .arg(format!("--target={}", self.target(kind)))
            .arg(format!("--concurrency={}", self.concurrency))
            .arg(format!("--seconds={}", self.seconds));
        if kind == Kind::Https {
            command.arg(format!("--ca-file={}", self.services.ca_file.display()));
        }
        let report: ProbeReport = json_output(command)?;
        Ok(Sample {
            ok: report.ok,
            failed: report.failed + report.dead_letters,
            seconds: report.seconds,
            cpu: report.cpu,
            rss_kib: report.rss_kib,
            note: report.first_failure,
        })
    }

    fn blackbox(&self, kind: Kind) -> anyhow::Result<Sample> {
        let (module, target) = match kind {
            Kind::Http => ("http_2xx", self.services.http_url()),
            Kind::Https => ("https_2xx", self.services.https_url()),
            Kind::Dns => ("dns_a", self.services.nameserver()),
        };
        let url = format!(
            "http://127.0.0.1:{}/probe?module={module}&target={}",
            self.services.blackbox_port,
            target.replace(':', "%3A").replace('/', "%2F")
        );
        let pid = self.services.blackbox.pid();
        reset_peak(pid);
        let before = cpu_seconds(pid)?;
        let measured = self.exec_wrk(&["-t1", "--timeout", "10s", "-s", "probe.lua", &url])?;
        let cpu = cpu_seconds(pid)? - before;
        let summary = wrk_summary(&measured.stdout)?;
        let ok = summary.ok.unwrap_or(0);
        Ok(Sample {
            ok,
            failed: summary.requests - ok,
            seconds: summary.duration_us as f64 / 1e6,
            cpu,
            rss_kib: status_kib(&pid.to_string(), "VmHWM")?,
            note: socket_errors(&summary),
        })
    }

    fn plugin(&self, kind: Kind) -> anyhow::Result<Sample> {
        let port = match kind {
            Kind::Http => self.services.http_port,
            Kind::Https => self.services.https_port,
            Kind::Dns => self.services.dns_port,
        }
        .to_string();
        let mut plugin: Vec<String> = match kind {
            Kind::Http => vec!["check_http", "-I", "127.0.0.1", "-p", &port, "-u", "/"],
            Kind::Https => vec!["check_http", "-I", "127.0.0.1", "-p", &port, "-S", "-u", "/"],
            Kind::Dns => {
                vec!["check_dig", "-H", "127.0.0.1", "-p", &port, "-l", DNS_NAME, "-T", "A", "-a", "127.0.0.1"]
            }
        }
        .into_iter()
        .map(str::to_owned)
        .collect();
        plugin[0] = format!("{PLUGINS}/{}", plugin[0]);
        let mut command = Command::new(&self.bench);
        command
            .arg("forkexec")
            .arg(format!("--concurrency={}", self.concurrency))
            .arg(format!("--seconds={}", self.seconds))
            .arg("--")
            .args(&plugin);
        let measured: Measured = json_output(command)?;
        Ok(Sample {
            ok: measured.ok,
            failed: measured.failed,
            seconds: measured.seconds,
            cpu: measured.cpu,
            rss_kib: measured.child_rss_kib,
            note: measured.first_failure,
        })
    }

    fn wrk(&self, kind: Kind) -> anyhow::Result<Sample> {
        let url = self.target(kind);
        let measured = self.exec_wrk(&["-t2", "-H", "Connection: close", "-s", "count.lua", &url])?;
        let summary = wrk_summary(&measured.stdout)?;
        let ok = summary.requests - summary.status;
        Ok(Sample {
            ok,
            failed: summary.status,
            seconds: summary.duration_us as f64 / 1e6,
            cpu: measured.cpu,
            rss_kib: measured.child_rss_kib,
            note: socket_errors(&summary),
        })
    }

    /// wrk at the run's concurrency and duration, measured by `exec`.
    fn exec_wrk(&self, args: &[&str]) -> anyhow::Result<Measured> {
        let mut command = Command::new(&self.bench);
        command
            .current_dir(&self.services.dir)
            .args(["exec", "--", "wrk"])
            .arg(format!("-c{}", self.concurrency))
            .arg(format!("-d{}", self.whole_seconds()))
            .args(args);
        json_output(command)
    }
}

fn socket_errors(summary: &WrkSummary) -> Option<String> {
    let total = summary.connect + summary.read + summary.write + summary.timeout;
    (total > 0).then(|| {
        format!(
            "socket errors: connect {}, read {}, write {}, timeout {}",
            summary.connect, summary.read, summary.write, summary.timeout
        )
    })
}

fn wrk_summary(stdout: &str) -> anyhow::Result<WrkSummary> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .with_context(|| format!("no summary in wrk's output: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

/// Runs a measured subprocess and parses the JSON line it prints last.
pub fn json_output<T: serde::de::DeserializeOwned>(mut command: Command) -> anyhow::Result<T> {
    let out = command.stderr(std::process::Stdio::inherit()).output().context("cannot start picket-bench")?;
    if !out.status.success() {
        bail!("{:?} failed ({})", command.get_args().collect::<Vec<_>>(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("no output")?;
    serde_json::from_str(line).with_context(|| format!("cannot parse {line}"))
}
