//! The `http` check: latency, status and content of one URL.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use super::matchers::{Pattern, StatusPattern, TextMatch};
use super::secret::TextOrSecret;
use super::{IpFamily, LatencyThresholds};
use crate::duration::HumanDuration;

/// 1 MiB: enough for any health page, small enough that a thousand checks in
/// flight against an endless body stay within the runner's memory budget.
pub const DEFAULT_BODY_LIMIT: u64 = 1 << 20;
pub const DEFAULT_MAX_REDIRECTS: u8 = 5;
/// 16 MiB: the most a definition may ask to read, so one merged definition
/// cannot make every runner of its pools hold an unbounded body.
pub const MAX_BODY_LIMIT: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::open_object)]
pub struct HttpSpec {
    /// `http://` or `https://` URL.
    #[schemars(with = "String", url, regex(pattern = "^[hH][tT][tT][pP][sS]?://"))]
    pub url: Url,
    #[serde(default, skip_serializing_if = "is_default")]
    pub method: HttpMethod,
    /// Request headers; a value may be `{"env": NAME}` to keep tokens out of git.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, TextOrSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Redirect hops to follow; 0 reports the 3xx itself. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<u8>,
    /// `false` accepts any certificate (the timings are still measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub ip_family: IpFamily,
    /// PEM file of extra trust anchors on the runner (internal PKI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Bytes of body read at most (default 1 MiB, at most 16 MiB); the rest is not downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub expect: HttpExpect,
}

impl HttpSpec {
    pub fn max_redirects(&self) -> u8 {
        self.follow_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS)
    }

    pub fn tls_verify(&self) -> bool {
        self.tls_verify.unwrap_or(true)
    }

    pub fn body_limit(&self) -> u64 {
        self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT)
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpExpect {
    /// Accepted statuses: codes (`200`) or classes (`"2xx"`). Default `["2xx"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<StatusPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<Pattern>,
    /// Response headers (case-insensitive names) and how their value must look.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, TextMatch>,
    /// Total time above which the result is WARNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_warn: Option<HumanDuration>,
    /// Total time above which the result is CRITICAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_crit: Option<HumanDuration>,
}

impl HttpExpect {
    pub fn latency(&self) -> LatencyThresholds {
        LatencyThresholds { warn: self.latency_warn, crit: self.latency_crit }
    }

    pub fn status_ok(&self, code: u16) -> bool {
        if self.status.is_empty() { (200..300).contains(&code) } else { self.status.iter().any(|p| p.matches(code)) }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::definition::parse_check;

    #[test]
    fn body_limit_is_capped_at_load() {
        let with = |limit: u64| {
            parse_check(
                json!({"name": "w", "type": "http", "url": "http://x/", "interval": "10s", "body_limit": limit}),
            )
        };
        assert!(with(super::MAX_BODY_LIMIT).is_ok());
        let err = with(super::MAX_BODY_LIMIT + 1).unwrap_err();
        assert_eq!(err.path, "body_limit");
        assert_eq!(err.message, "16777217 is above the cap of 16777216 bytes (16 MiB)");
    }
}
