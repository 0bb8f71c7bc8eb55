//! Broker settings shared by the distributed roles.

use amqp::{AmqpConfig, check_url};
use anyhow::anyhow;
use clap::Args;

use crate::Failure;

#[derive(Args, Clone, Debug)]
pub struct BrokerArgs {
    /// RabbitMQ URL, `amqp://user:pass@host:5672/%2f` (or amqps://).
    #[arg(long, env = "PICKET_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Prefix of every exchange and queue, so installations can share a broker.
    #[arg(long, env = "PICKET_PREFIX", default_value = "picket")]
    pub prefix: String,
    /// HMAC key: the scheduler signs requests, runners refuse unsigned ones.
    #[arg(long, env = "PICKET_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
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
        let signing_key = match self.signing_key.as_deref() {
            None | Some("") => None,
            Some(key) if key.len() < 16 => {
                return Err(Failure::Config(anyhow!("PICKET_SIGNING_KEY must be at least 16 characters")));
            }
            Some(key) => Some(key.to_owned()),
        };
        Ok(AmqpConfig { url, prefix: self.prefix.clone(), connection_name, signing_key })
    }
}
