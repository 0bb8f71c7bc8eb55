//! Starting the real `picket` roles against the local broker, and talking to
//! their `/readyz` and `/metrics`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::procs::{Proc, free_port};

/// What every role of one installation shares.
#[derive(Clone, Debug)]
pub struct Install {
    pub picket: PathBuf,
    pub amqp_url: String,
    pub prefix: String,
    pub logs: PathBuf,
}

/// A started role and the port of its `/readyz` and `/metrics`.
pub struct Role {
    pub proc: Proc,
    pub port: u16,
}

impl Install {
    /// `picket <role>` with this installation's broker settings and `env`.
    pub fn command(&self, role: &str, port: u16, env: &[(&str, String)]) -> Command {
        let mut command = Command::new(&self.picket);
        command.arg(role);
        for (key, _) in std::env::vars() {
            if key.starts_with("PICKET_") {
                command.env_remove(key);
            }
        }
        command
            .env("PICKET_AMQP_URL", &self.amqp_url)
            .env("PICKET_PREFIX", &self.prefix)
            .env("PICKET_LISTEN", format!("127.0.0.1:{port}"))
            .env("PICKET_LOG", "warn")
            .env("PICKET_LOG_FORMAT", "json");
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }

    /// Starts a role with its output in `<logs>/<name>.log`.
    pub fn start(&self, role: &str, name: &str, env: &[(&str, String)]) -> anyhow::Result<Role> {
        let port = free_port()?;
        let proc = Proc::spawn(name, self.command(role, port, env), &self.logs)?;
        Ok(Role { proc, port })
    }
}

impl Role {
    /// Waits for `/readyz` to answer 200.
    pub async fn ready(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        wait_ready(&mut self.proc, self.port, started, limit).await
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = http_get(self.port, "/metrics").await?;
        if status != 200 {
            bail!("{} /metrics answered {status}", self.proc.name);
        }
        Ok(body)
    }
}

/// Polls `/readyz` every 2 ms; the time from `started` to the first 200.
pub async fn wait_ready(proc: &mut Proc, port: u16, started: Instant, limit: Duration) -> anyhow::Result<Duration> {
    loop {
        if let Ok((200, _)) = http_get(port, "/readyz").await {
            return Ok(started.elapsed());
        }
        proc.alive()?;
        if started.elapsed() > limit {
            bail!("{} not ready within {limit:?}", proc.name);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A GET on 127.0.0.1, HTTP/1.1 with `Connection: close`: status and body.
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// The sum of every series of `name` in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The picket binary: `--picket`, or next to this executable.
pub fn picket_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()?.with_file_name("picket"),
    };
    std::fs::metadata(&path).with_context(|| format!("no picket binary at {}", path.display()))?;
    Ok(path)
}
