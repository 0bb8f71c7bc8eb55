//! `picket-bench`: measures picket's real runner code side by side with
//! blackbox_exporter, the Nagios plugins and wrk on loopback, then the
//! distributed roles over RabbitMQ. `bench/run` builds it and calls `run`;
//! the other subcommands are the measured processes it starts, one per run,
//! so that each reports its own CPU time and peak RSS.

#![forbid(unsafe_code)]

mod broker;
mod e2e;
mod exposition;
mod measure;
mod memory;
mod page;
mod probe;
mod procs;
mod report;
mod roles;
mod services;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "picket-bench", about = "picket's benchmark harness (see bench/README.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the loopback services, measure everything, print and write the table.
    Run(RunArgs),
    /// Drive picket's executor (RunnerPool over the in-memory transport) at a fixed concurrency.
    Probe(probe::ProbeArgs),
    /// Run a command N at a time by fork+exec for a while (the Sensu Classic way).
    Forkexec(measure::ForkexecArgs),
    /// Run a command once and report the CPU time and peak RSS of it and its children.
    Exec(measure::ExecArgs),
    /// Delete the queues and exchanges of a PICKET_PREFIX (after an interrupted run).
    Cleanup {
        prefix: String,
        #[arg(long, env = "PICKET_BENCH_AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        amqp_url: String,
    },
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// A few seconds per tool, one repetition, one small end-to-end step: for CI.
    #[arg(long)]
    pub smoke: bool,
    /// Where the results table goes (default: bench/results, or a temp dir with --smoke).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Checks in flight at once, for every tool.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Repetitions of each tool run (default 3; 1 with --smoke).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Seconds per tool run (default 10; 1 with --smoke).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Checks per 10 s interval of the end-to-end steps, before the ladder
    /// continues in steps of 10,000 until a step breaks.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,20000,30000")]
    pub e2e_steps: Vec<usize>,
    /// The ladder stops here even if nothing broke.
    #[arg(long, default_value_t = 100_000)]
    pub e2e_max: usize,
    /// Seconds each end-to-end step is sustained (default 60; 6 with --smoke).
    #[arg(long)]
    pub e2e_seconds: Option<u64>,
    /// The handler's store in the end-to-end test: `sqlite` (a file) or
    /// `postgres` (a schema of its own on the machine's PostgreSQL, dropped after).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    pub e2e_store: String,
    /// PostgreSQL for `--e2e-store postgres`.
    #[arg(long, env = "PICKET_BENCH_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
    /// `picket runner` processes in the end-to-end test.
    #[arg(long, default_value_t = 2)]
    pub runners: usize,
    /// The broker (guest/guest on loopback by default).
    #[arg(long, env = "PICKET_BENCH_AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// Sections to run (default all): tools, memory, ceiling, e2e, exposition, page.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Keep the work dir (configs, logs, per-second lateness) even when the run succeeds.
    #[arg(long)]
    pub keep: bool,
    /// The picket binary (default: next to this one).
    #[arg(long)]
    pub picket: Option<PathBuf>,
}

impl RunArgs {
    pub fn reps(&self) -> usize {
        self.reps.unwrap_or(if self.smoke { 1 } else { 3 }).max(1)
    }

    pub fn seconds(&self) -> f64 {
        self.seconds.unwrap_or(if self.smoke { 1.0 } else { 10.0 })
    }

    pub fn e2e_seconds(&self) -> u64 {
        self.e2e_seconds.unwrap_or(if self.smoke { 6 } else { 60 })
    }

    pub fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => runtime().block_on(report::run(args)),
        Command::Probe(args) => runtime().block_on(probe::run(args)),
        Command::Forkexec(args) => measure::forkexec(&args),
        Command::Exec(args) => measure::exec(&args),
        Command::Cleanup { prefix, amqp_url } => runtime()
            .block_on(async { broker::Broker::connect(&amqp_url).await?.delete_prefix(&prefix, &["default"]).await }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}
