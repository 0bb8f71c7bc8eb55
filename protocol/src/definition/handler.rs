//! Handler definitions: where a check's events are sent (`checks/handlers.json`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::secret::Secret;
use super::{FieldError, into_object, split, take_type, typed, validate_name};
use crate::message::Status;

/// PagerDuty's Events API v2 endpoint; overridable for tests and proxies.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::open_object)]
pub struct HandlerCommon {
    #[schemars(regex(pattern = super::NAME_PATTERN))]
    pub name: String,
    /// Which statuses reach this handler (`ok` covers resolutions). Default: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severities: Vec<Severity>,
}

/// A definition object whose `type` is one of these is a handler (`kind` optional).
pub const HANDLER_TYPES: &[&str] = &["slack", "pagerduty", "log"];

pub const HANDLER_COMMON_FIELDS: &[&str] = &["name", "severities"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Severity {
    pub fn of(status: Status) -> Self {
        match status {
            Status::Ok => Self::Ok,
            Status::Warning => Self::Warning,
            Status::Critical => Self::Critical,
            Status::Unknown => Self::Unknown,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HandlerSpec {
    Slack(SlackSpec),
    Pagerduty(PagerDutySpec),
    Log(LogSpec),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::open_object)]
pub struct SlackSpec {
    /// The incoming-webhook URL, which is a secret: `{"env": NAME}` or `{"file": PATH}`.
    pub webhook_url: Secret,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::open_object)]
pub struct PagerDutySpec {
    /// The Events API v2 integration (routing) key: `{"env": NAME}` or `{"file": PATH}`.
    pub routing_key: Secret,
    /// Events API endpoint; default PagerDuty's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", url)]
    pub api_url: Option<Url>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::open_object)]
pub struct LogSpec {}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HandlerDefinition {
    #[serde(flatten)]
    pub common: HandlerCommon,
    #[serde(flatten)]
    pub spec: HandlerSpec,
}

impl HandlerDefinition {
    pub fn name(&self) -> &str {
        &self.common.name
    }

    pub fn accepts(&self, status: Status) -> bool {
        self.common.severities.is_empty() || self.common.severities.contains(&Severity::of(status))
    }
}

pub fn parse_handler(value: Value) -> Result<HandlerDefinition, FieldError> {
    let (common, mut rest) = split(into_object(value)?, HANDLER_COMMON_FIELDS);
    if rest.remove("kind").is_some_and(|k| k != "handler") {
        return Err(FieldError::new("kind", "a handler object has kind \"handler\""));
    }
    let type_name = take_type(&mut rest, HANDLER_TYPES)?;
    let common: HandlerCommon = typed(common, "")?;
    validate_name("name", &common.name)?;
    let spec = match type_name.as_str() {
        "slack" => HandlerSpec::Slack(typed(rest, "slack handler")?),
        "pagerduty" => {
            let spec: PagerDutySpec = typed(rest, "pagerduty handler")?;
            // https is enforced when the handler starts (where a test
            // receiver may be allowed plain http); other schemes never work.
            if let Some(url) = &spec.api_url
                && !matches!(url.scheme(), "https" | "http")
            {
                return Err(FieldError::new("api_url", format!("{url} is not an https:// URL")));
            }
            HandlerSpec::Pagerduty(spec)
        }
        _ => HandlerSpec::Log(typed(rest, "log handler")?),
    };
    Ok(HandlerDefinition { common, spec })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse_handler;

    #[test]
    fn a_pagerduty_api_url_must_be_http_or_https() {
        let with = |url: &str| {
            parse_handler(json!({"name": "pd", "type": "pagerduty", "routing_key": {"env": "K"}, "api_url": url}))
        };
        assert!(with("https://events.pagerduty.com/v2/enqueue").is_ok());
        let err = with("file:///etc/passwd").unwrap_err();
        assert_eq!(err.path, "api_url");
        assert_eq!(err.message, "file:///etc/passwd is not an https:// URL");
    }
}
