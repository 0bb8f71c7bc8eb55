//! `picket`: one binary, one role per command (DESIGN.md §1). This file parses
//! the command line, wires the library crates together and maps errors to
//! exit codes: 0 ok, 64 usage/config, 65 bad data (or input the API refused),
//! 1 runtime (or an API that does not answer).

#![forbid(unsafe_code)]

mod alerts;
mod api_client;
mod broker;
mod commands;
mod config;
mod definitions;
mod exposition;
mod operator;
mod render;
mod roles;
mod serve;
mod shutdown;
mod standalone;
mod windows;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{LogFormat, RunnerArgs};

#[derive(Parser)]
#[command(name = "picket", version, about = "Sub-minute HTTP, DNS and TLS checks, with alerting.")]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `picket=debug`.
    /// lapin's own lines about channels the broker closes are off by
    /// default: picket reports each close it acts on in its own words (a
    /// standby finding the leader lock taken, a queue created on first use).
    #[arg(long, env = "PICKET_LOG", default_value = "info,lapin::channel=off", global = true)]
    log: String,
    /// Log line format on stderr.
    #[arg(long, env = "PICKET_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scheduler, runners and handler in one process, no broker needed.
    Standalone {
        /// Directory of definition files.
        #[arg(long, env = "PICKET_CHECKS", default_value = "checks")]
        checks: std::path::PathBuf,
        #[command(flatten)]
        runner: RunnerArgs,
        #[command(flatten)]
        state: alerts::StateArgs,
        /// Address of /healthz, /readyz, /metrics and the API.
        #[arg(long, env = "PICKET_LISTEN", default_value = "0.0.0.0:9750")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        api: config::ApiArgs,
    },
    /// Publish check requests on schedule (RabbitMQ); standbys take over the leader lock.
    Scheduler(roles::scheduler::SchedulerRoleArgs),
    /// Consume check requests for some subscriptions, run them, publish results.
    Runner(roles::runner::RunnerRoleArgs),
    /// Consume results, keepalives and dead letters.
    Handler(roles::handler::HandlerRoleArgs),
    /// Validate every definition under a directory; exit 65 on any problem.
    Validate {
        #[arg(default_value = "checks")]
        dir: std::path::PathBuf,
    },
    /// Run one check once and print its result; exit code = its status (0-3).
    Check {
        /// A definition file.
        file: std::path::PathBuf,
        /// Which check of the file, when it holds several.
        #[arg(long)]
        name: Option<String>,
        /// Print the CheckResult JSON instead of the human form.
        #[arg(long)]
        json: bool,
        /// Networks no check may reach (comma-separated CIDRs).
        #[arg(long, env = "PICKET_DENY_CIDRS", default_value = runner::deny::DEFAULT_DENY_CIDRS)]
        deny_cidrs: runner::DenyList,
        #[command(flatten)]
        secrets: config::CheckSecretsArgs,
    },
    /// Print the JSON Schema of definition files.
    Schema,
    /// Silences through the operator API (PICKET_API_URL; writes need PICKET_API_TOKEN).
    Silence {
        #[command(flatten)]
        api: operator::ApiTarget,
        #[command(subcommand)]
        command: operator::SilenceCommand,
    },
    /// The fleet's state from the operator API: problems first, one line each.
    Status {
        #[command(flatten)]
        api: operator::ApiTarget,
    },
    /// Probe this container's /healthz (or /readyz); exit 0 healthy, 1 not, within 2 s.
    Healthcheck {
        /// The address the role listens on; 0.0.0.0 is probed on 127.0.0.1.
        #[arg(long, env = "PICKET_LISTEN", default_value = "0.0.0.0:9750")]
        listen: std::net::SocketAddr,
        /// Probe /readyz (broker connected) instead of /healthz (process alive).
        #[arg(long)]
        ready: bool,
    },
}

/// An error with the exit code it earns.
#[derive(Debug)]
pub enum Failure {
    /// Bad command line or environment: 64.
    Config(anyhow::Error),
    /// Bad definitions or input data: 65.
    Data(anyhow::Error),
    /// Anything that went wrong while running: 1.
    Runtime(anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 64,
            Self::Data(_) => 65,
            Self::Runtime(_) => 1,
        }
    }

    fn error(&self) -> &anyhow::Error {
        match self {
            Self::Config(e) | Self::Data(e) | Self::Runtime(e) => e,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Err(e) = config::init_logging(&cli.log, cli.log_format) {
        eprintln!("picket: {e}");
        return ExitCode::from(64);
    }
    // One crypto provider for the whole process: rustls panics at the first
    // handshake when more than one is compiled in and none is chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(cli.command) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("picket: {:#}", failure.error());
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Validate { dir } => commands::validate(&dir),
        Command::Schema => commands::schema(),
        Command::Healthcheck { listen, ready } => {
            runtime()?.block_on(commands::healthcheck(listen, if ready { "/readyz" } else { "/healthz" }))
        }
        Command::Check { file, name, json, deny_cidrs, secrets } => {
            let secrets = secrets.policy()?;
            runtime()?.block_on(commands::check(&file, name.as_deref(), json, deny_cidrs, secrets))
        }
        Command::Silence { api, command } => runtime()?.block_on(operator::silence(&api, command)),
        Command::Status { api } => runtime()?.block_on(operator::status(&api)),
        Command::Scheduler(args) => runtime()?.block_on(roles::scheduler::run(args)),
        Command::Runner(args) => runtime()?.block_on(roles::runner::run(args)),
        Command::Handler(args) => runtime()?.block_on(roles::handler::run(args)),
        Command::Standalone { checks, runner, state, listen, api } => {
            let plan = standalone::Plan::new(&checks, runner, &state, listen, &api)?;
            runtime()?.block_on(standalone::run(plan))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| Failure::Runtime(e.into()))
}
