//! The `tls` check: the certificate a TLS endpoint serves and how long it has left.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::IpFamily;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::open_object)]
pub struct TlsSpec {
    pub host: String,
    /// Default 443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Server name sent and verified; defaults to `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Days left below which the result is WARNING (default 21).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_days: Option<u32>,
    /// Days left below which the result is CRITICAL (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit_days: Option<u32>,
    #[serde(default)]
    pub ip_family: IpFamily,
    /// PEM file of extra trust anchors on the runner (internal PKI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl TlsSpec {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(443)
    }

    pub fn server_name(&self) -> &str {
        self.sni.as_deref().unwrap_or(&self.host)
    }

    pub fn warn_days(&self) -> u32 {
        self.warn_days.unwrap_or(21)
    }

    pub fn crit_days(&self) -> u32 {
        self.crit_days.unwrap_or(7)
    }
}
