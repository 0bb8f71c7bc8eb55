//! Broker settings shared by the distributed roles.

use amqp::{AmqpConfig, check_url};
use anyhow::anyhow;
use clap::Args;
use protocol::metrics::MessagesRefused;

use crate::Failure;

#[derive(Args, Clone, Debug)]
pub struct BrokerArgs {
    /// RabbitMQ URL, `amqp://user:pass@host:5672/%2f` (or amqps://).
    #[arg(long, env = "PICKET_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Prefix of every exchange and queue, so installations can share a broker.
    #[arg(long, env = "PICKET_PREFIX", default_value = "picket")]
    pub prefix: String,
    /// HMAC key: every role signs what it publishes and refuses what is
    /// unsigned or badly signed.
    #[arg(long, env = "PICKET_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// The key being rotated out: accepted for verification, never used to sign.
    #[arg(long, env = "PICKET_SIGNING_KEY_PREVIOUS", hide_env_values = true)]
    pub signing_key_previous: Option<String>,
}

impl BrokerArgs {
    /// Validates the settings (no socket is opened) into a transport config.
    pub fn config(&self, connection_name: String) -> Result<AmqpConfig, Failure> {
        let url = self
            .amqp_url
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Failure::Config(anyhow!("PICKET_AMQP_URL (--amqp-url) is not set")))?;
        check_url(&url).map_err(|e| Failure::Config(anyhow!("PICKET_AMQP_URL: {e}")))?;
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
            url,
            prefix: self.prefix.clone(),
            connection_name,
            signing_key,
            previous_signing_key,
            refused: MessagesRefused::default(),
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
