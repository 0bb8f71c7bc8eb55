//! The measured processes that wrap other programs: `forkexec` runs a plugin
//! N at a time, `exec` runs one program (wrk). Each prints one JSON line with
//! the CPU time of itself and its waited-for children (getrusage; children
//! include grandchildren that were waited for, like check_dig's dig) and the
//! peak RSS of the largest child.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use nix::sys::resource::UsageWho;
use serde::{Deserialize, Serialize};

use crate::procs::usage;

#[derive(Args, Clone, Debug)]
pub struct ForkexecArgs {
    #[arg(long)]
    pub concurrency: usize,
    #[arg(long)]
    pub seconds: f64,
    /// The plugin and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Clone, Debug)]
pub struct ExecArgs {
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// What a wrapper measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Measured {
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
    /// CPU seconds of the wrapper and its children.
    pub cpu: f64,
    /// Peak RSS of the largest single child, KiB.
    pub child_rss_kib: u64,
    pub first_failure: Option<String>,
    /// The program's stdout (exec only).
    pub stdout: String,
}

pub fn forkexec(args: &ForkexecArgs) -> anyhow::Result<()> {
    let (program, rest) = args.command.split_first().expect("required");
    let ok = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let first_failure = Mutex::new(None);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.seconds);
    std::thread::scope(|scope| {
        for _ in 0..args.concurrency.max(1) {
            scope.spawn(|| {
                while Instant::now() < until {
                    // Like a Sensu agent: the plugin's output is captured.
                    match Command::new(program).args(rest).stdin(Stdio::null()).output() {
                        Ok(out) if out.status.success() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(out) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let mut first = first_failure.lock().expect("lock");
                            if first.is_none() {
                                *first = Some(format!(
                                    "{}: {}",
                                    out.status,
                                    String::from_utf8_lossy(&out.stdout).trim().chars().take(200).collect::<String>()
                                ));
                            }
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            first_failure.lock().expect("lock").get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let (own, _) = usage(UsageWho::RUSAGE_SELF);
    let (children, child_rss_kib) = usage(UsageWho::RUSAGE_CHILDREN);
    let measured = Measured {
        ok: ok.into_inner(),
        failed: failed.into_inner(),
        seconds,
        cpu: own + children,
        child_rss_kib,
        first_failure: first_failure.into_inner().expect("lock"),
        stdout: String::new(),
    };
    println!("{}", serde_json::to_string(&measured)?);
    Ok(())
}

pub fn exec(args: &ExecArgs) -> anyhow::Result<()> {
    let (program, rest) = args.command.split_first().expect("required");
    let started = Instant::now();
    let out = Command::new(program).args(rest).stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
    let seconds = started.elapsed().as_secs_f64();
    let (own, _) = usage(UsageWho::RUSAGE_SELF);
    let (children, child_rss_kib) = usage(UsageWho::RUSAGE_CHILDREN);
    if !out.status.success() {
        bail!("{program} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stdout));
    }
    let measured = Measured {
        ok: 0,
        failed: 0,
        seconds,
        cpu: own + children,
        child_rss_kib,
        first_failure: None,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    println!("{}", serde_json::to_string(&measured)?);
    Ok(())
}
