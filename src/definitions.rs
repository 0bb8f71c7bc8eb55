//! The definitions directory: loading it at start, and reloading it while
//! running, shared by `picket scheduler`, `picket standalone` and `picket
//! handler`: on SIGHUP, and when a definition file under it changes
//! (polled). A set that does not load is refused and logged with every
//! problem at `file:line:column`, and the running set is kept.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use protocol::Catalog;
use protocol::definition::CatalogError;
use tokio_util::sync::CancellationToken;

use crate::Failure;

/// Maps a catalog failure: unreadable files are config problems, bad content is data.
pub fn catalog_failure(e: CatalogError) -> Failure {
    match e {
        e @ CatalogError::Io { .. } => Failure::Config(e.into()),
        e @ CatalogError::Invalid(_) => Failure::Data(e.into()),
    }
}

/// Loads the directory.
pub fn load(dir: &Path) -> Result<Catalog, Failure> {
    Catalog::load_dir(dir).map_err(catalog_failure)
}

/// Loads the directory for a role that schedules: it must hold a check.
pub fn load_checks(dir: &Path) -> Result<Catalog, Failure> {
    let catalog = load(dir)?;
    if catalog.checks.is_empty() {
        return Err(Failure::Data(anyhow!("no checks found under {}", dir.display())));
    }
    Ok(catalog)
}

/// How often the directory is looked at for changes.
const POLL: Duration = Duration::from_secs(2);

/// A cheap summary of the directory: changes when any definition file is
/// added, removed or written.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut entries = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else { continue };
        for entry in read.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                entries.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    entries.sort();
    entries
}

/// Until `stop`: on SIGHUP or a change under `dir`, runs `load` on it and
/// hands what it loaded to `apply`. `load` does every check that can refuse
/// the new set, so that `apply` only swaps it in.
pub async fn watch<T>(
    dir: PathBuf,
    load: impl Fn(&Path) -> Result<T, Failure>,
    mut apply: impl FnMut(T),
    stop: CancellationToken,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGHUP; reloading on file changes only");
            None
        }
    };
    let mut seen = fingerprint(&dir);
    loop {
        let hangup = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            _ = hangup => tracing::info!("SIGHUP: reloading definitions"),
            () = tokio::time::sleep(POLL) => {
                if fingerprint(&dir) == seen {
                    continue;
                }
                tracing::info!(dir = %dir.display(), "definitions changed: reloading");
            }
        }
        seen = fingerprint(&dir);
        match load(&dir) {
            Ok(loaded) => apply(loaded),
            Err(failure) => {
                tracing::error!(
                    error = %format!("{:#}", failure.error()),
                    "reload refused; keeping the running definitions"
                );
            }
        }
    }
}
