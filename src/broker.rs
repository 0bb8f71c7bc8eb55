//! Broker settings shared by the distributed roles.

use amqp::{AmqpConfig, BrokerNodes, Placement};
use anyhow::anyhow;
use clap::Args;
use protocol::metrics::TransportMetrics;

use crate::Failure;

#[derive(Args, Clone)]
pub struct BrokerArgs {
    /// RabbitMQ URL, `amqp://user:pass@host:5672/%2f` (or amqps://), or a
    /// comma-separated list of a cluster's nodes.
    #[arg(long, env = "PICKET_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Prefix of every exchange and queue, so installations can share a broker.
    #[arg(long, env = "PICKET_PREFIX", default_value = "picket")]
    pub prefix: String,
    /// Replicas of each quorum queue picket creates (the broker takes every
    /// node when it has fewer). Existing queues keep theirs.
    #[arg(long, env = "PICKET_AMQP_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=255))]
    pub amqp_replicas: u16,
    /// HMAC key: every role signs what it publishes and refuses what is
    /// unsigned or badly signed.
    #[arg(long, env = "PICKET_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// The key being rotated out: accepted for verification, never used to sign.
    #[arg(long, env = "PICKET_SIGNING_KEY_PREVIOUS", hide_env_values = true)]
    pub signing_key_previous: Option<String>,
}

/// Says which secrets are set, never their values.
impl std::fmt::Debug for BrokerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerArgs")
            .field("amqp_url", &self.amqp_url.as_ref().map(|_| "<PICKET_AMQP_URL>"))
            .field("prefix", &self.prefix)
            .field("amqp_replicas", &self.amqp_replicas)
            .field("signing_key", &self.signing_key.as_ref().map(|_| "<PICKET_SIGNING_KEY>"))
            .field("signing_key_previous", &self.signing_key_previous.as_ref().map(|_| "<PICKET_SIGNING_KEY_PREVIOUS>"))
            .finish()
    }
}

impl BrokerArgs {
    /// Validates the settings (no socket is opened) into a transport config.
    pub fn config(&self, connection_name: String) -> Result<AmqpConfig, Failure> {
        let url = self
            .amqp_url
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Failure::Config(anyhow!("PICKET_AMQP_URL (--amqp-url) is not set")))?;
        let nodes = BrokerNodes::parse(&url).map_err(|e| Failure::Config(anyhow!("PICKET_AMQP_URL: {e}")))?;
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !prefix_ok {
            return Err(Failure::Config(anyhow!("PICKET_PREFIX {:?} must be letters, digits, - _ .", self.prefix)));
        }
        let signing_key = hmac_key("PICKET_SIGNING_KEY", self.signing_key.as_deref())?;
        let previous_signing_key = hmac_key("PICKET_SIGNING_KEY_PREVIOUS", self.signing_key_previous.as_deref())?;
        if previous_signing_key.is_some() && signing_key.is_none() {
            return Err(Failure::Config(anyhow!("PICKET_SIGNING_KEY_PREVIOUS is set without PICKET_SIGNING_KEY")));
        }
        Ok(AmqpConfig {
            nodes,
            prefix: self.prefix.clone(),
            placement: Placement { replicas: self.amqp_replicas },
            connection_name,
            signing_key,
            previous_signing_key,
            metrics: TransportMetrics::default(),
        })
    }
}

/// An HMAC key from `variable`: unset or empty is none, and a short one is
/// refused (the error names the variable, never the value).
fn hmac_key(variable: &str, value: Option<&str>) -> Result<Option<String>, Failure> {
    match value {
        None | Some("") => Ok(None),
        Some(key) if key.len() < 16 => Err(Failure::Config(anyhow!("{variable} must be at least 16 characters"))),
        Some(key) => Ok(Some(key.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(key: Option<&str>, previous: Option<&str>) -> BrokerArgs {
        BrokerArgs {
            amqp_url: Some("amqp://user:secretpw@127.0.0.1:5672/%2f".into()),
            prefix: "picket".into(),
            amqp_replicas: 3,
            signing_key: key.map(Into::into),
            signing_key_previous: previous.map(Into::into),
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let text = format!("{:?}", args(Some("current-key-0123456789"), Some("previous-key-0123456789")));
        for secret in ["secretpw", "current-key", "previous-key"] {
            assert!(!text.contains(secret), "{text}");
        }
        let config = args(Some("current-key-0123456789"), Some("previous-key-0123456789")).config("t".into()).unwrap();
        let text = format!("{config:?}");
        for secret in ["secretpw", "current-key", "previous-key"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn a_previous_key_needs_a_current_one_and_both_are_long_enough() {
        let error = |a: BrokerArgs| a.config("t".into()).err().map(|e| format!("{e:?}")).unwrap_or_default();
        assert!(error(args(None, Some("previous-key-0123456789"))).contains("without PICKET_SIGNING_KEY"));
        let short = error(args(Some("current-key-0123456789"), Some("short")));
        assert!(
            short.contains("PICKET_SIGNING_KEY_PREVIOUS must be at least 16") && !short.contains("short\""),
            "{short}"
        );
        let config = args(Some("current-key-0123456789"), Some("previous-key-0123456789")).config("t".into()).unwrap();
        assert_eq!(config.previous_signing_key.as_deref(), Some("previous-key-0123456789"));
    }
}
