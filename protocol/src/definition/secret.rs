//! Secret references: definitions name where a secret lives, never the secret.

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

/// Where to read a secret from when the component that needs it starts.
///
/// A plain string is refused at parse time: a webhook URL or routing key in a
/// definition file would end up in git.
#[derive(Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Secret {
    /// The name of an environment variable.
    Env(String),
    /// A path to a file holding the secret (trailing newline ignored).
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("environment variable {0} is empty")]
    EmptyEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("secret file {0} is larger than {MAX_SECRET_FILE} bytes")]
    TooLarge(PathBuf),
}

/// The most a secret file may hold: a webhook URL or a routing key is far
/// smaller, and a path to a large file (a log, a device) must not be read
/// whole into memory.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

impl Secret {
    /// Reads the secret with the reader's full rights: for the handler's own
    /// configuration only. Check definitions go through the runner's allow-list.
    pub fn resolve(&self) -> Result<String, SecretError> {
        match self {
            Self::Env(name) => match std::env::var(name) {
                Ok(v) if v.is_empty() => Err(SecretError::EmptyEnv(name.clone())),
                Ok(v) => Ok(v),
                Err(_) => Err(SecretError::MissingEnv(name.clone())),
            },
            Self::File(path) => read_capped(path),
        }
    }
}

fn read_capped(path: &std::path::Path) -> Result<String, SecretError> {
    use std::io::Read;
    let failed = |source| SecretError::File { path: path.to_owned(), source };
    let mut text = String::new();
    std::fs::File::open(path).map_err(failed)?.take(MAX_SECRET_FILE + 1).read_to_string(&mut text).map_err(failed)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretError::TooLarge(path.to_owned()));
    }
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// Shows where the secret comes from, which is safe to log.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase", deny_unknown_fields)]
        enum Reference {
            Env(String),
            File(PathBuf),
        }
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(_) => Err(de::Error::custom(
                "secrets are never written in definition files: use {\"env\": \"NAME\"} or {\"file\": \"/path\"}",
            )),
            other => match Reference::deserialize(other).map_err(de::Error::custom)? {
                Reference::Env(name) if name.is_empty() => {
                    Err(de::Error::custom("the environment variable name is empty"))
                }
                Reference::Env(name) => Ok(Self::Env(name)),
                Reference::File(path) => Ok(Self::File(path)),
            },
        }
    }
}

/// A value that may be written inline or, when sensitive (an `Authorization`
/// header), read from a [`Secret`] on the runner, through its allow-list
/// (`runner::CheckSecrets`), never with [`Secret::resolve`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TextOrSecret {
    Text(String),
    Secret(Secret),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_are_refused_with_advice() {
        let err = serde_json::from_str::<Secret>(r#""https://hooks.slack.com/x""#).unwrap_err();
        assert!(err.to_string().contains("never written in definition files"), "{err}");
        assert!(!err.to_string().contains("hooks.slack.com"));
    }

    #[test]
    fn references_resolve_and_debug_shows_only_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        let secret: Secret = serde_json::from_value(serde_json::json!({ "file": path })).unwrap();
        assert_eq!(secret.resolve().unwrap(), "s3cr3t");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        let large = dir.path().join("large");
        std::fs::write(&large, vec![b'x'; 64 * 1024 + 1]).unwrap();
        let err = Secret::File(large).resolve().unwrap_err();
        assert!(matches!(err, SecretError::TooLarge(_)), "{err}");
        let missing = Secret::Env("PICKET_TEST_SURELY_UNSET".into());
        assert!(matches!(missing.resolve(), Err(SecretError::MissingEnv(_))));
    }
}
