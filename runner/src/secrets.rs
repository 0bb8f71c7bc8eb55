//! Which secrets a check definition may read on this runner. Definitions live
//! in git, where many people merge; the runner's own credentials
//! (`PICKET_AMQP_URL`, the signing key, any file it can read) must not be one
//! merge away from a target. So a reference resolves only if the operator
//! allowed it: environment variables named in `PICKET_CHECK_SECRETS` (never a
//! `PICKET_*` one), files under `PICKET_CHECK_SECRETS_DIR`.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use protocol::definition::secret::{MAX_SECRET_FILE as MAX_SECRET_FILE_BYTES, Secret};

/// The runner's own settings: never readable by a definition.
const RESERVED_PREFIX: &str = "PICKET_";

#[derive(Debug, thiserror::Error)]
pub enum CheckSecretsError {
    #[error(
        "PICKET_CHECK_SECRETS names {0}: PICKET_* variables are the runner's own settings and never readable by a check"
    )]
    Reserved(String),
    #[error("PICKET_CHECK_SECRETS names {0:?}, which is not an environment variable name")]
    BadName(String),
    #[error("PICKET_CHECK_SECRETS_DIR {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("PICKET_CHECK_SECRETS_DIR {0} is not a directory")]
    NotDir(PathBuf),
}

/// The allow-list. The default allows nothing.
#[derive(Clone, Debug, Default)]
pub struct CheckSecrets {
    env: BTreeSet<String>,
    /// Canonical: every file is canonicalised and must lie under it.
    dir: Option<PathBuf>,
}

fn reserved(name: &str) -> bool {
    name.len() >= RESERVED_PREFIX.len() && name[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX)
}

impl CheckSecrets {
    /// Checks the settings at start-up: a `PICKET_*` name is a mistake that
    /// would leak the runner's own credentials, so it stops the runner (exit
    /// 64) rather than being skipped with a warning nobody reads.
    pub fn new(env: impl IntoIterator<Item = String>, dir: Option<&Path>) -> Result<Self, CheckSecretsError> {
        let mut names = BTreeSet::new();
        for name in env {
            let name = name.trim().to_owned();
            if name.is_empty() {
                continue;
            }
            if reserved(&name) {
                return Err(CheckSecretsError::Reserved(name));
            }
            if name.contains(['=', '\0']) {
                return Err(CheckSecretsError::BadName(name));
            }
            names.insert(name);
        }
        let dir = match dir {
            None => None,
            Some(path) => {
                let canonical = std::fs::canonicalize(path)
                    .map_err(|source| CheckSecretsError::Dir { path: path.to_owned(), source })?;
                if !canonical.is_dir() {
                    return Err(CheckSecretsError::NotDir(path.to_owned()));
                }
                Some(canonical)
            }
        };
        Ok(Self { env: names, dir })
    }

    /// The secret's value, or why it is not given, naming the reference and
    /// never a value. A file is read off the async runtime.
    pub(crate) async fn resolve(&self, secret: &Secret) -> Result<String, String> {
        let reference = reference(secret);
        match secret {
            Secret::Env(name) => {
                if reserved(name) || !self.env.contains(name) {
                    return Err(format!("secret {reference} is not allowed (PICKET_CHECK_SECRETS)"));
                }
                match std::env::var(name) {
                    Ok(value) if value.is_empty() => Err(format!("environment variable {name} is empty")),
                    Ok(value) => Ok(value),
                    Err(_) => Err(format!("environment variable {name} is not set")),
                }
            }
            Secret::File(path) => {
                let Some(dir) = self.dir.clone() else {
                    return Err(format!("secret {reference} is not allowed (PICKET_CHECK_SECRETS_DIR is not set)"));
                };
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_file(&dir, &path))
                    .await
                    .unwrap_or_else(|e| Err(format!("reading the secret file failed: {e}")))
                    .map_err(|why| format!("secret {reference}: {why}"))
            }
        }
    }
}

/// The reference as written in the definition, for messages.
fn reference(secret: &Secret) -> String {
    match secret {
        Secret::Env(name) => serde_json::json!({ "env": name }).to_string(),
        Secret::File(path) => serde_json::json!({ "file": path }).to_string(),
    }
}

/// Reads a regular file under `dir` (canonical), at most the size cap. The
/// path is canonicalised first, so neither `..` nor a symlink leads out of
/// `dir`; the open is non-blocking so a FIFO cannot hold the thread, and the
/// opened file itself must be a regular file (not a FIFO or a device).
fn read_file(dir: &Path, path: &Path) -> Result<String, String> {
    let canonical = std::fs::canonicalize(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !canonical.starts_with(dir) {
        return Err("is not allowed (outside PICKET_CHECK_SECRETS_DIR)".to_owned());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&canonical)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let metadata = file.metadata().map_err(|e| format!("cannot read it: {e}"))?;
    if !metadata.is_file() {
        return Err("is not a regular file".to_owned());
    }
    if metadata.len() > MAX_SECRET_FILE_BYTES {
        return Err(format!("is larger than {} KiB", MAX_SECRET_FILE_BYTES / 1024));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| format!("cannot read it: {e}"))?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!("is larger than {} KiB", MAX_SECRET_FILE_BYTES / 1024));
    }
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Secret {
        Secret::Env(name.to_owned())
    }

    #[test]
    fn picket_variables_are_refused_at_start_up() {
        let err = CheckSecrets::new(["API_TOKEN".to_owned(), "PICKET_AMQP_URL".to_owned()], None).unwrap_err();
        assert!(matches!(err, CheckSecretsError::Reserved(ref n) if n == "PICKET_AMQP_URL"), "{err}");
        assert!(CheckSecrets::new(["picket_signing_key".to_owned()], None).is_err());
        let missing = CheckSecrets::new(Vec::new(), Some(Path::new("/surely/not/here"))).unwrap_err();
        assert!(missing.to_string().starts_with("PICKET_CHECK_SECRETS_DIR /surely/not/here: "), "{missing}");
    }

    #[tokio::test]
    async fn only_listed_variables_resolve() {
        let secrets = CheckSecrets::new(["HOME".to_owned(), "SURELY_UNSET_TOKEN".to_owned()], None).unwrap();
        assert_eq!(secrets.resolve(&env("HOME")).await.unwrap(), std::env::var("HOME").unwrap());
        assert_eq!(
            secrets.resolve(&env("PATH")).await.unwrap_err(),
            r#"secret {"env":"PATH"} is not allowed (PICKET_CHECK_SECRETS)"#
        );
        assert_eq!(
            secrets.resolve(&env("PICKET_AMQP_URL")).await.unwrap_err(),
            r#"secret {"env":"PICKET_AMQP_URL"} is not allowed (PICKET_CHECK_SECRETS)"#
        );
        assert_eq!(
            secrets.resolve(&env("SURELY_UNSET_TOKEN")).await.unwrap_err(),
            "environment variable SURELY_UNSET_TOKEN is not set"
        );
        let none = CheckSecrets::default();
        assert!(none.resolve(&env("HOME")).await.unwrap_err().contains("is not allowed"));
    }

    #[tokio::test]
    async fn files_resolve_only_from_the_directory_and_only_regular_and_small() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("secrets");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("token"), "s3cr3t\n").unwrap();
        std::fs::write(root.path().join("outside"), "runner key").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside"), dir.join("link-out")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
        std::fs::write(dir.join("big"), vec![b'x'; 64 * 1024 + 1]).unwrap();
        let fifo = dir.join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let secrets = CheckSecrets::new(Vec::new(), Some(&dir)).unwrap();
        let file = |p: PathBuf| Secret::File(p);

        assert_eq!(secrets.resolve(&file(dir.join("token"))).await.unwrap(), "s3cr3t");
        for escape in [dir.join("../outside"), dir.join("link-out"), dir.join("zero"), PathBuf::from("/etc/hostname")] {
            let err = secrets.resolve(&file(escape.clone())).await.unwrap_err();
            assert!(err.ends_with("is not allowed (outside PICKET_CHECK_SECRETS_DIR)"), "{escape:?}: {err}");
            assert!(!err.contains("runner key"));
        }
        let started = std::time::Instant::now();
        let err = secrets.resolve(&file(fifo)).await.unwrap_err();
        assert!(err.ends_with("is not a regular file"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "a FIFO must not block the read");
        let err = secrets.resolve(&file(dir.join("big"))).await.unwrap_err();
        assert!(err.ends_with("is larger than 64 KiB"), "{err}");
        let unset = CheckSecrets::default().resolve(&file(dir.join("token"))).await.unwrap_err();
        assert!(unset.ends_with("is not allowed (PICKET_CHECK_SECRETS_DIR is not set)"), "{unset}");
    }
}
