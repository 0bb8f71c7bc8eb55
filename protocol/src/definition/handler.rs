//! Handler definitions: where a check's events are sent (`checks/handlers.json`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::secret::Secret;
use super::{FieldError, into_object, split, take_type, typed, validate_name};
use crate::duration::HumanDuration;
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
    /// Events arriving within `wait` with the same `by` values go out as one
    /// message. Absent: one message per event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Grouping>,
}

/// How a handler groups its events: a storm of failures is one message, not
/// one per check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grouping {
    /// What the events of one message share (besides their kind: problems and
    /// resolves never share a message).
    pub by: Vec<GroupBy>,
    /// How long the first event of a group waits for others (more than 0, at most 5m).
    pub wait: HumanDuration,
    /// Most events listed one per line; the rest are counted. Default 20.
    #[serde(default = "Grouping::default_max")]
    #[schemars(range(min = 1, max = 100))]
    pub max: u32,
}

impl Grouping {
    /// The longest `wait`: a problem is never held back longer than this.
    pub const MAX_WAIT: Duration = Duration::from_secs(300);
    pub const MAX_LINES: u32 = 100;

    fn default_max() -> u32 {
        20
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.by.is_empty() {
            return Err(FieldError::new("group.by", "name at least one of subscription, check, label:<name>"));
        }
        if let Some(twice) = self.by.iter().enumerate().find(|(i, by)| self.by[..*i].contains(by)) {
            return Err(FieldError::new(format!("group.by[{}]", twice.0), format!("{} is named twice", twice.1)));
        }
        if self.wait.get().is_zero() || self.wait.get() > Self::MAX_WAIT {
            return Err(FieldError::new("group.wait", "must be more than 0 and at most 5m"));
        }
        if !(1..=Self::MAX_LINES).contains(&self.max) {
            return Err(FieldError::new("group.max", format!("must be from 1 to {}", Self::MAX_LINES)));
        }
        Ok(())
    }
}

/// One thing the events of a group share.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GroupBy {
    Subscription,
    Check,
    /// The value of one label (events without it share the empty value).
    Label(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not subscription, check or label:<name>")]
pub struct UnknownGroupBy(String);

impl FromStr for GroupBy {
    type Err = UnknownGroupBy;

    fn from_str(text: &str) -> Result<Self, UnknownGroupBy> {
        match text {
            "subscription" => Ok(Self::Subscription),
            "check" => Ok(Self::Check),
            _ => match text.strip_prefix("label:") {
                Some(name) if !name.is_empty() => Ok(Self::Label(name.to_owned())),
                _ => Err(UnknownGroupBy(text.to_owned())),
            },
        }
    }
}

impl TryFrom<String> for GroupBy {
    type Error = UnknownGroupBy;

    fn try_from(text: String) -> Result<Self, UnknownGroupBy> {
        text.parse()
    }
}

impl From<GroupBy> for String {
    fn from(by: GroupBy) -> Self {
        by.to_string()
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subscription => f.write_str("subscription"),
            Self::Check => f.write_str("check"),
            Self::Label(name) => write!(f, "label:{name}"),
        }
    }
}

impl JsonSchema for GroupBy {
    fn schema_name() -> Cow<'static, str> {
        "GroupBy".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(subscription|check|label:.+)$",
            "description": "subscription, check, or label:<name> (that label's value)."
        })
    }
}

/// A definition object whose `type` is one of these is a handler (`kind` optional).
pub const HANDLER_TYPES: &[&str] = &["slack", "pagerduty", "log"];

pub const HANDLER_COMMON_FIELDS: &[&str] = &["name", "severities", "group"];

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
    /// With `group`: when more than this many problems of one group open
    /// within its `wait`, one summary incident instead of one each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub storm: Option<u32>,
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

    /// How this handler groups its events, if it does (PagerDuty's only
    /// with a `storm`, which parsing ensures).
    pub fn grouping(&self) -> Option<&Grouping> {
        self.common.group.as_ref()
    }

    /// A PagerDuty handler's storm threshold.
    pub fn storm(&self) -> Option<u32> {
        match &self.spec {
            HandlerSpec::Pagerduty(spec) => spec.storm,
            HandlerSpec::Slack(_) | HandlerSpec::Log(_) => None,
        }
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
    if let Some(group) = &common.group {
        group.validate()?;
    }
    let spec = match type_name.as_str() {
        "slack" => HandlerSpec::Slack(typed(rest, "slack handler")?),
        "pagerduty" => {
            let spec: PagerDutySpec = typed(rest, "pagerduty handler")?;
            match (spec.storm, &common.group) {
                (Some(0), _) => return Err(FieldError::new("storm", "must be at least 1")),
                (Some(_), None) => return Err(FieldError::new("storm", "needs a group (its by and wait)")),
                (None, Some(_)) => {
                    return Err(FieldError::new(
                        "group",
                        "PagerDuty keeps one incident per dedup key: a group needs a storm",
                    ));
                }
                _ => {}
            }
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

    use super::{GroupBy, parse_handler};

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

    #[test]
    fn a_group_is_parsed_and_validated_naming_the_field() {
        let with = |group: serde_json::Value| {
            parse_handler(json!({"name": "s", "type": "slack", "webhook_url": {"env": "W"}, "group": group}))
        };
        let parsed = with(json!({"by": ["subscription", "label:team"], "wait": "10s"})).unwrap();
        let group = parsed.grouping().unwrap();
        assert_eq!(group.by, [GroupBy::Subscription, GroupBy::Label("team".into())]);
        assert_eq!((group.wait.get(), group.max), (std::time::Duration::from_secs(10), 20));
        let refused = |group, path: &str, message: &str| {
            let err = with(group).unwrap_err();
            assert_eq!((err.path.as_str(), err.message.as_str()), (path, message));
        };
        refused(json!({"by": [], "wait": "1s"}), "group.by", "name at least one of subscription, check, label:<name>");
        refused(json!({"by": ["check", "check"], "wait": "1s"}), "group.by[1]", "check is named twice");
        refused(json!({"by": ["check"], "wait": "0s"}), "group.wait", "must be more than 0 and at most 5m");
        refused(json!({"by": ["check"], "wait": "6m"}), "group.wait", "must be more than 0 and at most 5m");
        refused(json!({"by": ["check"], "wait": "1s", "max": 0}), "group.max", "must be from 1 to 100");
        let err = with(json!({"by": ["region"], "wait": "1s"})).unwrap_err();
        assert!(err.path.starts_with("group.by") && err.message.contains("label:<name>"), "{err:?}");
        assert_eq!(with(json!({"by": ["check"], "wait": "1s", "after": 1})).unwrap_err().path, "group.after");
    }

    #[test]
    fn a_pagerduty_group_comes_with_a_storm_and_a_storm_with_a_group() {
        let group = json!({"by": ["subscription"], "wait": "10s"});
        let pd = |extra: serde_json::Value| {
            let mut definition = json!({"name": "pd", "type": "pagerduty", "routing_key": {"env": "K"}});
            definition.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            parse_handler(definition)
        };
        let storm = pd(json!({"group": group, "storm": 25})).unwrap();
        assert_eq!((storm.storm(), storm.grouping().map(|g| g.max)), (Some(25), Some(20)));
        let refused = |extra, path: &str, message: &str| {
            let err = pd(extra).unwrap_err();
            assert_eq!((err.path.as_str(), err.message.as_str()), (path, message));
        };
        refused(json!({"group": group}), "group", "PagerDuty keeps one incident per dedup key: a group needs a storm");
        refused(json!({"storm": 25}), "storm", "needs a group (its by and wait)");
        refused(json!({"group": group, "storm": 0}), "storm", "must be at least 1");
    }
}
