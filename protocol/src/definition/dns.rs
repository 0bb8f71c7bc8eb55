//! The `dns` check: one query against a nameserver, its rcode, answers and latency.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::LatencyThresholds;
use super::matchers::AnswerMatch;
use crate::duration::HumanDuration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::open_object)]
pub struct DnsSpec {
    /// The name to resolve (a reverse name such as `4.3.2.1.in-addr.arpa` for PTR).
    pub query: String,
    pub record: RecordType,
    /// `ip` or `ip:port` (port 53 by default); the runner's resolver when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<Nameserver>,
    #[serde(default)]
    pub protocol: DnsProtocol,
    /// Tries within the check's timeout (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u8>,
    #[serde(default)]
    pub expect: DnsExpect,
}

impl DnsSpec {
    pub fn attempts(&self) -> u8 {
        self.attempts.unwrap_or(2).max(1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
    Soa,
    Srv,
    Caa,
    Ptr,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Mx => "MX",
            Self::Txt => "TXT",
            Self::Ns => "NS",
            Self::Soa => "SOA",
            Self::Srv => "SRV",
            Self::Caa => "CAA",
            Self::Ptr => "PTR",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsProtocol {
    /// UDP, retried over TCP when the answer is truncated.
    #[default]
    Udp,
    Tcp,
}

/// The response codes a check can expect. NXDOMAIN is an outcome, not an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Rcode {
    #[default]
    Noerror,
    Formerr,
    Servfail,
    Nxdomain,
    Notimp,
    Refused,
}

impl Rcode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Noerror => "NOERROR",
            Self::Formerr => "FORMERR",
            Self::Servfail => "SERVFAIL",
            Self::Nxdomain => "NXDOMAIN",
            Self::Notimp => "NOTIMP",
            Self::Refused => "REFUSED",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsExpect {
    #[serde(default)]
    pub rcode: Rcode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<AnswerMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_warn: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_crit: Option<HumanDuration>,
}

impl DnsExpect {
    pub fn latency(&self) -> LatencyThresholds {
        LatencyThresholds { warn: self.latency_warn, crit: self.latency_crit }
    }
}

/// A nameserver address; the port defaults to 53.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nameserver(pub SocketAddr);

impl FromStr for Nameserver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self(addr));
        }
        s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map(|ip| Self(SocketAddr::new(ip, 53)))
            .map_err(|_| format!("{s:?} is not an IP address or ip:port"))
    }
}

impl fmt::Display for Nameserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Nameserver {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Nameserver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Cow::<'de, str>::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Nameserver {
    fn schema_name() -> Cow<'static, str> {
        "Nameserver".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "description": "ip or ip:port ([v6]:port)" })
    }
}
