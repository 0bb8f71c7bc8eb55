//! The one-shot commands: `validate`, `schema`, `check`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use chrono::Utc;
use protocol::definition::CatalogError;
use protocol::definition::schema::definition_file_schema;
use protocol::message::AlertPolicy;
use protocol::{Catalog, CheckDefinition, CheckRequest, CheckResult};
use runner::Executor;

use crate::Failure;
use crate::definitions::catalog_failure;

pub fn validate(dir: &Path) -> Result<ExitCode, Failure> {
    match Catalog::load_dir(dir) {
        Ok(catalog) if catalog.checks.is_empty() => {
            Err(Failure::Data(anyhow!("no checks found under {}", dir.display())))
        }
        Ok(catalog) => {
            print_out(&format!(
                "{}: {} check(s), {} handler(s), {} maintenance window(s), all valid",
                dir.display(),
                catalog.checks.len(),
                catalog.handlers.len(),
                catalog.windows.len()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(CatalogError::Invalid(errors)) => {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            print_out(&lines.join("\n"));
            Err(Failure::Data(anyhow!("{} problem(s) in {}", errors.len(), dir.display())))
        }
        Err(e) => Err(catalog_failure(e)),
    }
}

pub fn schema() -> Result<ExitCode, Failure> {
    let text = serde_json::to_string_pretty(&definition_file_schema()).map_err(|e| Failure::Runtime(e.into()))?;
    print_out(&text);
    Ok(ExitCode::SUCCESS)
}

/// Writes a line to stdout; a closed pipe (`picket schema | head`) is not an error.
pub fn print_out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Picks the check to run from a file: by name, or the only one.
fn pick(catalog: Catalog, file: &Path, name: Option<&str>) -> Result<CheckDefinition, Failure> {
    let names: Vec<String> = catalog.checks.iter().map(|c| c.name().to_owned()).collect();
    let mut checks = catalog.checks.into_iter();
    match name {
        Some(name) => checks.find(|c| c.name() == name).ok_or_else(|| {
            Failure::Config(anyhow!("{} has no check named {name:?} (it has: {})", file.display(), names.join(", ")))
        }),
        None if names.len() == 1 => Ok(checks.next().expect("one check")),
        None if names.is_empty() => Err(Failure::Data(anyhow!("{} defines no check", file.display()))),
        None => Err(Failure::Config(anyhow!(
            "{} defines {} checks; pick one with --name ({})",
            file.display(),
            names.len(),
            names.join(", ")
        ))),
    }
}

pub async fn check(
    file: &Path,
    name: Option<&str>,
    json: bool,
    deny: runner::DenyList,
    secrets: runner::CheckSecrets,
) -> Result<ExitCode, Failure> {
    let catalog = Catalog::load_files(&[file.to_owned()], false).map_err(catalog_failure)?;
    let check = pick(catalog, file, name)?;
    let executor = Arc::new(Executor::new(deny).map_err(|e| Failure::Runtime(e.into()))?.with_secrets(secrets));
    let started_at = Utc::now();
    let outcome = executor.run(&check).await;
    let duration = (Utc::now() - started_at).to_std().unwrap_or_default();
    let subscription = check.subscriptions().first().map_or_else(String::new, |s| (*s).to_owned());
    let result = CheckResult {
        request_id: CheckRequest::id_for(check.name(), &subscription, started_at),
        check: check.name().to_owned(),
        subscription,
        runner: crate::config::host_name(),
        status: outcome.status,
        output: outcome.output,
        scheduled_at: started_at,
        started_at,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        lateness_ms: 0,
        metrics: outcome.metrics,
        details: outcome.details,
        policy: AlertPolicy::of(&check),
    };
    if json {
        let text = serde_json::to_string_pretty(&result).map_err(|e| Failure::Runtime(e.into()))?;
        print_out(&text);
    } else {
        print_out(&format!("{} {}: {}", result.check, result.status, result.output));
        let metrics: Vec<String> = result.metrics.iter().map(|(k, v)| format!("{k}={v}")).collect();
        print_out(&format!("  metrics: {}", metrics.join(" ")));
        if !result.details.is_null() {
            print_out(&format!("  details: {}", result.details));
        }
    }
    Ok(ExitCode::from(result.status.code()))
}

/// A container HEALTHCHECK without curl: one HTTP GET over loopback, 2 s at most.
pub async fn healthcheck(listen: std::net::SocketAddr, path: &str) -> Result<ExitCode, Failure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
        Ok(Ok(true)) => {
            print_out(&format!("healthy: http://{addr}{path}"));
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(false)) => Err(Failure::Runtime(anyhow!("http://{addr}{path} answered, but not 200"))),
        Ok(Err(e)) => Err(Failure::Runtime(anyhow!("http://{addr}{path}: {e}"))),
        Err(_) => Err(Failure::Runtime(anyhow!("http://{addr}{path}: no answer within 2s"))),
    }
}
