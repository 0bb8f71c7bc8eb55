//! Configuration shared by several roles, read from flags or the environment
//! (clap `env`) and validated before any socket is opened.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use protocol::HumanDuration;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr; stdout carries results (standalone, check) and events.
pub fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(filter).with_context(|| format!("PICKET_LOG {filter:?} is not a valid log filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// Settings of a runner pool (standalone and `picket runner`).
#[derive(Args, Clone, Debug)]
pub struct RunnerArgs {
    /// Checks run at once (and the broker prefetch).
    #[arg(long, env = "PICKET_CONCURRENCY", default_value_t = 256)]
    pub concurrency: u16,
    /// Networks no check may reach (comma-separated CIDRs; empty denies nothing).
    #[arg(long, env = "PICKET_DENY_CIDRS", default_value = runner::deny::DEFAULT_DENY_CIDRS)]
    pub deny_cidrs: runner::DenyList,
    /// Time in-flight checks get to finish after SIGTERM.
    #[arg(long, env = "PICKET_DRAIN_TIMEOUT", default_value = "25s")]
    pub drain_timeout: HumanDuration,
    /// Name written into results; default: the host name.
    #[arg(long, env = "PICKET_RUNNER_NAME")]
    pub runner_name: Option<String>,
    #[command(flatten)]
    pub secrets: CheckSecretsArgs,
}

/// The secrets check definitions may read (runner, standalone, `picket check`).
#[derive(Args, Clone, Debug)]
pub struct CheckSecretsArgs {
    /// Environment variables a check definition may read (comma-separated; never PICKET_*).
    #[arg(long, env = "PICKET_CHECK_SECRETS", value_delimiter = ',')]
    pub check_secrets: Vec<String>,
    /// The one directory `{"file"}` secrets of checks may come from.
    #[arg(long, env = "PICKET_CHECK_SECRETS_DIR")]
    pub check_secrets_dir: Option<std::path::PathBuf>,
}

impl CheckSecretsArgs {
    /// The allow-list; a `PICKET_*` name or a missing directory is a configuration error (exit 64).
    pub fn policy(&self) -> Result<runner::CheckSecrets, crate::Failure> {
        runner::CheckSecrets::new(self.check_secrets.iter().cloned(), self.check_secrets_dir.as_deref())
            .map_err(|e| crate::Failure::Config(e.into()))
    }
}

impl RunnerArgs {
    /// Checks what clap's types cannot.
    pub fn validate(&self) -> Result<(), crate::Failure> {
        if self.concurrency == 0 {
            return Err(crate::Failure::Config(anyhow::anyhow!(
                "PICKET_CONCURRENCY (--concurrency) must be at least 1"
            )));
        }
        self.secrets.policy().map(drop)
    }

    /// The check executor these settings describe, counting probe panics into `metrics`.
    pub fn executor(&self, metrics: &protocol::metrics::Metrics) -> Result<runner::Executor, crate::Failure> {
        let secrets = self.secrets.policy()?;
        let executor = runner::Executor::new(self.deny_cidrs.clone())
            .context("cannot build the check executor")
            .map_err(crate::Failure::Runtime)?;
        Ok(executor.with_secrets(secrets).counting_panics(metrics.probe_panics.clone()))
    }

    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout.get()
    }

    pub fn runner_name(&self) -> String {
        self.runner_name.clone().unwrap_or_else(host_name)
    }
}

/// The host name (a container's id under Docker and ECS), or `picket`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "picket".to_owned())
}
