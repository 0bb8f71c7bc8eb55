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

/// Who may use the operator API (`picket handler`, `picket standalone`).
/// Both lists are secrets: `hide_env_values`, a `Debug` without them, and
/// errors that name the variable and the entry, never a token.
#[derive(Args, Clone, Default)]
pub struct ApiArgs {
    /// `name:token` pairs (comma-separated) allowed to write; unset refuses every write.
    #[arg(long, env = "PICKET_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,
    /// `name:token` pairs allowed to read; when set, reads need a read or write token.
    #[arg(long, env = "PICKET_API_READ_TOKENS", hide_env_values = true)]
    pub api_read_tokens: Option<String>,
}

impl std::fmt::Debug for ApiArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiArgs")
            .field("api_tokens", &self.api_tokens.as_ref().map(|_| "<PICKET_API_TOKENS>"))
            .field("api_read_tokens", &self.api_read_tokens.as_ref().map(|_| "<PICKET_API_READ_TOKENS>"))
            .finish()
    }
}

impl ApiArgs {
    /// The parsed tokens; a malformed list is a configuration error (exit 64).
    /// An empty read list is unset: reads stay open.
    pub fn auth(&self) -> Result<api::ApiAuth, crate::Failure> {
        let parse = |variable: &str, text: &str| {
            text.parse::<api::Tokens>().map_err(|e| crate::Failure::Config(anyhow::anyhow!("{variable}: {e}")))
        };
        let write = parse("PICKET_API_TOKENS", self.api_tokens.as_deref().unwrap_or_default())?;
        let read = parse("PICKET_API_READ_TOKENS", self.api_read_tokens.as_deref().unwrap_or_default())?;
        Ok(api::ApiAuth { write, read: (!read.is_empty()).then_some(read) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "token-0123456789abcdef";

    fn args(write: Option<&str>, read: Option<&str>) -> ApiArgs {
        ApiArgs { api_tokens: write.map(Into::into), api_read_tokens: read.map(Into::into) }
    }

    #[test]
    fn api_tokens_parse_into_auth_and_debug_shows_none() {
        let auth = args(Some(&format!("alice:{TOKEN}")), Some("")).auth().unwrap();
        assert_eq!(auth.write.names().collect::<Vec<_>>(), ["alice"]);
        assert!(auth.read.is_none(), "an empty read list leaves reads open");
        let debug = format!("{:?}", args(Some(&format!("alice:{TOKEN}")), Some(&format!("bob:{TOKEN}"))));
        assert!(!debug.contains(TOKEN), "{debug}");
        assert!(ApiArgs::default().auth().unwrap().write.is_empty());
    }

    #[test]
    fn a_malformed_pair_names_the_variable_not_the_token() {
        for (settings, variable) in [
            (args(Some(TOKEN), None), "PICKET_API_TOKENS"),
            (args(None, Some(&format!("bob:{TOKEN},{TOKEN}"))), "PICKET_API_READ_TOKENS"),
        ] {
            let Err(crate::Failure::Config(error)) = settings.auth() else { panic!("accepted") };
            let message = format!("{error:#}");
            assert!(message.starts_with(variable) && !message.contains(TOKEN), "{message}");
        }
    }
}
