//! Check and handler definitions: the JSON files kept in git (DESIGN.md §3).
//!
//! A definition object is flat (`{"name": …, "type": "http", "url": …}`), so it
//! is parsed in two parts: the common fields and the fields of its `type`.
//! Both parts are strict (unknown fields are errors) and every error carries
//! the field path, which [`catalog`] turns into `file:line:column`. Off the
//! wire the same parse runs, and an error that names something this build does
//! not know ([`FieldError::unknown`]) makes the request `unsupported` instead of
//! malformed (see `message::decode`).

pub mod catalog;
pub mod dns;
pub mod handler;
pub mod http;
mod locate;
pub mod matchers;
pub mod quorum;
pub mod schema;
pub mod secret;
pub mod tls;
pub mod window;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::{Map, Value};

pub use self::catalog::{Catalog, CatalogError, DefinitionError};
pub use self::dns::DnsSpec;
pub use self::handler::{HandlerDefinition, HandlerSpec};
pub use self::http::HttpSpec;
pub use self::quorum::Quorum;
pub use self::tls::TlsSpec;
pub use self::window::{MaintenanceWindow, WindowSpan};
use crate::duration::HumanDuration;

/// The longest timeout a check gets by default; longer must be asked for.
const MAX_DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The fields every check has, whatever its type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::open_object)]
pub struct CheckCommon {
    /// Unique across all files: `[a-z0-9_.-]+`.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Period between runs (at least 1s). Exactly one of `interval` and `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    /// Crontab line, 5 fields (minute precision) or 6 with seconds first; UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronExpr>,
    /// Hard limit on one run; below the interval. Default min(interval / 2, 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Runner pools that run this check, one request per pool per slot. Default `["default"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = NAME_PATTERN)))]
    pub subscriptions: Vec<String>,
    /// Names of handlers (see handlers.json) that receive this check's events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<String>,
    /// Consecutive non-OK results before a problem is notified. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrences: Option<u32>,
    /// Re-notify period while a problem lasts. Default 30m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<HumanDuration>,
    /// Percent state change at or below which flapping ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub low_flap_threshold: Option<f64>,
    /// Percent state change at or above which flapping starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub high_flap_threshold: Option<f64>,
    /// Free labels passed through to notifications.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Page only when this many of the subscriptions fail (a count, or
    /// `"50%"` of those that can see): one incident across them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<Quorum>,
    /// Checks this one relies on (an internet canary, a resolver): while one
    /// of them fails in a subscription, this check's problems there are held,
    /// not notified. One hop: their own dependencies are not followed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = NAME_PATTERN)))]
    pub depends_on: Vec<String>,
}

/// Names of checks, handlers and subscriptions (enforced by `validate_name`).
pub const NAME_PATTERN: &str = "^[a-z0-9_.-]{1,128}$";

/// The keys of [`CheckCommon`]; everything else but `type`/`kind` belongs to the spec.
/// A unit test keeps this list equal to the struct's schema.
pub const COMMON_FIELDS: &[&str] = &[
    "name",
    "interval",
    "cron",
    "timeout",
    "subscriptions",
    "handlers",
    "occurrences",
    "refresh",
    "low_flap_threshold",
    "high_flap_threshold",
    "labels",
    "quorum",
    "depends_on",
];

/// What a check probes, by `type`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CheckSpec {
    Http(HttpSpec),
    Dns(DnsSpec),
    Tls(TlsSpec),
}

impl CheckSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Dns(_) => "dns",
            Self::Tls(_) => "tls",
        }
    }
}

/// One validated check. This is also what travels inside a `CheckRequest`,
/// so runners need no files.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckDefinition {
    #[serde(flatten)]
    pub common: CheckCommon,
    #[serde(flatten)]
    pub spec: CheckSpec,
}

/// When a check runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule<'a> {
    Every(Duration),
    Cron(&'a CronExpr),
}

impl CheckDefinition {
    pub fn name(&self) -> &str {
        &self.common.name
    }

    pub fn schedule(&self) -> Schedule<'_> {
        match (&self.common.interval, &self.common.cron) {
            (_, Some(cron)) => Schedule::Cron(cron),
            (Some(every), None) => Schedule::Every(every.get()),
            (None, None) => unreachable!("parse_check requires interval or cron"),
        }
    }

    /// The shortest time between two runs: the interval, or the smallest gap
    /// between the next cron firings.
    pub fn period(&self) -> Duration {
        match self.schedule() {
            Schedule::Every(every) => every,
            Schedule::Cron(cron) => cron.min_gap(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.common.timeout.map_or_else(|| (self.period() / 2).min(MAX_DEFAULT_TIMEOUT), HumanDuration::get)
    }

    pub fn subscriptions(&self) -> Vec<&str> {
        if self.common.subscriptions.is_empty() {
            vec![DEFAULT_SUBSCRIPTION]
        } else {
            self.common.subscriptions.iter().map(String::as_str).collect()
        }
    }

    pub fn occurrences(&self) -> u32 {
        self.common.occurrences.unwrap_or(1).max(1)
    }

    pub fn refresh(&self) -> Duration {
        self.common.refresh.map_or(Duration::from_secs(30 * 60), HumanDuration::get)
    }
}

/// The pool a check runs in when it names none, and that a runner joins by default.
pub const DEFAULT_SUBSCRIPTION: &str = "default";

impl<'de> Deserialize<'de> for CheckDefinition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_check(Value::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// Which address family a probe connects over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    #[default]
    Any,
    Ipv4,
    Ipv6,
}

impl IpFamily {
    pub fn admits(self, ip: std::net::IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::Ipv4 => ip.is_ipv4(),
            Self::Ipv6 => ip.is_ipv6(),
        }
    }
}

/// Latency limits of a check; above `crit` is CRITICAL, above `warn` WARNING.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencyThresholds {
    pub warn: Option<HumanDuration>,
    pub crit: Option<HumanDuration>,
}

/// A crontab line kept as written, with its parsed schedule.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    schedule: cron::Schedule,
}

impl CronExpr {
    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&t).next()
    }

    /// The latest firing at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Firings fall on whole seconds, and the iterator walks back from
        // strictly before where it starts.
        let whole = DateTime::from_timestamp(t.timestamp(), 0)?;
        self.schedule.after(&(whole + chrono::Duration::seconds(1))).next_back()
    }

    /// Smallest gap between consecutive firings over the next 64 of them.
    /// Enough to catch the short gaps of lines like `0,5 * * * * *`.
    pub fn min_gap(&self) -> Duration {
        let start = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
        let firings: Vec<_> = self.schedule.after(&start).take(65).collect();
        firings.windows(2).filter_map(|w| (w[1] - w[0]).to_std().ok()).min().unwrap_or(Duration::from_secs(60))
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl FromStr for CronExpr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fields = text.split_whitespace().count();
        let six = match fields {
            5 => format!("0 {text}"),
            6 => text.to_owned(),
            n => return Err(format!("{text:?} has {n} fields; a cron line has 5 (minute first) or 6 (second first)")),
        };
        let schedule = cron::Schedule::from_str(&six).map_err(|e| format!("{text:?} is not a valid cron line: {e}"))?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err(format!("{text:?} never fires"));
        }
        Ok(Self { text: text.to_owned(), schedule })
    }
}

impl Serialize for CronExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        std::borrow::Cow::<'de, str>::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for CronExpr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cron".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": r"^\s*\S+(\s+\S+){4,5}\s*$",
            "description": "crontab line: 5 fields (seconds = 0) or 6 with seconds first; UTC"
        })
    }
}

/// A problem in one definition object, at a JSON path within it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct FieldError {
    /// `expect.status[1]`; empty for the object itself.
    pub path: String,
    pub message: String,
    /// The error names a field, `type` or enum value this build does not
    /// know: what a definition written by a newer build looks like here.
    pub unknown: bool,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into(), unknown: false }
    }

    /// An error about a name this build does not know.
    pub fn unknown(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { unknown: true, ..Self::new(path, message) }
    }
}

/// Parses and validates one check object (from a file or off the wire).
pub fn parse_check(value: Value) -> Result<CheckDefinition, FieldError> {
    let object = into_object(value)?;
    let (common, mut rest) = split(object, COMMON_FIELDS);
    if rest.remove("kind").is_some_and(|kind| kind != "check") {
        return Err(FieldError::new("kind", "a check object has kind \"check\" (or no kind)"));
    }
    let type_name = take_type(&mut rest, &["http", "dns", "tls"])?;
    let common: CheckCommon = typed(common, "")?;
    let spec = match type_name.as_str() {
        "http" => CheckSpec::Http(typed(rest, "http check")?),
        "dns" => CheckSpec::Dns(typed(rest, "dns check")?),
        _ => CheckSpec::Tls(typed(rest, "tls check")?),
    };
    let check = CheckDefinition { common, spec };
    validate_common(&check.common)?;
    validate_spec(&check.spec)?;
    let timeout = check.timeout();
    let period = check.period();
    if timeout >= period {
        return Err(FieldError::new(
            "timeout",
            format!(
                "timeout {} must be below the {} {}",
                HumanDuration::from(timeout),
                if check.common.cron.is_some() { "shortest gap between cron firings," } else { "interval" },
                HumanDuration::from(period)
            ),
        ));
    }
    if timeout.is_zero() {
        return Err(FieldError::new("timeout", "timeout must be above 0"));
    }
    Ok(check)
}

pub(crate) fn into_object(value: Value) -> Result<Map<String, Value>, FieldError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(FieldError::new("", format!("expected an object, found {}", json_kind(&other)))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Splits an object's keys into the given common ones and the rest.
pub(crate) fn split(object: Map<String, Value>, common: &[&str]) -> (Map<String, Value>, Map<String, Value>) {
    object.into_iter().partition(|(k, _)| common.contains(&k.as_str()))
}

pub(crate) fn take_type(rest: &mut Map<String, Value>, known: &[&str]) -> Result<String, FieldError> {
    match rest.remove("type") {
        Some(Value::String(t)) if known.contains(&t.as_str()) => Ok(t),
        Some(other) => {
            let message = format!("{other} is not a known type (one of {})", known.join(", "));
            Err(if other.is_string() { FieldError::unknown("type", message) } else { FieldError::new("type", message) })
        }
        None => Err(FieldError::new("", format!("missing field `type` (one of {})", known.join(", ")))),
    }
}

/// Deserializes one part of an object, keeping the path of the failing field.
/// `part` names the type whose fields these are, for unknown-field messages.
pub(crate) fn typed<T: DeserializeOwned>(part: Map<String, Value>, part_name: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(Value::Object(part)).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.inner().to_string();
        match unknown_field(&message) {
            Some(field) => {
                // serde_path_to_error's path already ends at the unknown key.
                let key = if path.is_empty() { field.to_owned() } else { path };
                let owner =
                    if part_name.is_empty() || key != field { String::new() } else { format!(" for this {part_name}") };
                FieldError::unknown(key, format!("unknown field{owner}; {}", expected_part(&message)))
            }
            None if message.starts_with("unknown variant `") => FieldError::unknown(path, message),
            None => FieldError::new(path, message),
        }
    })
}

/// The field name in serde's "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

fn expected_part(message: &str) -> &str {
    message.split_once(", ").map_or("", |(_, rest)| rest)
}

fn validate_common(common: &CheckCommon) -> Result<(), FieldError> {
    validate_name("name", &common.name)?;
    match (&common.interval, &common.cron) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new("cron", "give either `interval` or `cron`, not both"));
        }
        (None, None) => return Err(FieldError::new("", "missing field `interval` (or `cron`)")),
        (Some(every), None) if every.get() < Duration::from_secs(1) => {
            return Err(FieldError::new("interval", format!("interval {every} is below the 1s minimum")));
        }
        _ => {}
    }
    for (i, sub) in common.subscriptions.iter().enumerate() {
        validate_name(&format!("subscriptions[{i}]"), sub)?;
    }
    for (i, dependency) in common.depends_on.iter().enumerate() {
        let path = format!("depends_on[{i}]");
        validate_name(&path, dependency)?;
        if *dependency == common.name {
            return Err(FieldError::new(path, "a check cannot depend on itself"));
        }
    }
    let subscriptions = common.subscriptions.len().max(1);
    if let Some(Quorum::Count(count)) = common.quorum
        && usize::try_from(count).is_ok_and(|count| count > subscriptions)
    {
        return Err(FieldError::new(
            "quorum",
            format!("quorum {count} is more than the check's {subscriptions} subscription(s)"),
        ));
    }
    if let (Some(low), Some(high)) = (common.low_flap_threshold, common.high_flap_threshold)
        && low > high
    {
        return Err(FieldError::new("low_flap_threshold", "must not exceed high_flap_threshold"));
    }
    for (field, value) in
        [("low_flap_threshold", common.low_flap_threshold), ("high_flap_threshold", common.high_flap_threshold)]
    {
        if value.is_some_and(|v| !(0.0..=100.0).contains(&v)) {
            return Err(FieldError::new(field, "a percentage between 0 and 100"));
        }
    }
    Ok(())
}

/// Names of checks, handlers and subscriptions end up in queue names, metric
/// labels and PagerDuty dedup keys, so they are kept to a safe alphabet.
pub(crate) fn validate_name(path: &str, name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(path, format!("{name:?} is not a valid name (1-128 of a-z 0-9 _ . -)")))
    }
}

fn validate_spec(spec: &CheckSpec) -> Result<(), FieldError> {
    match spec {
        CheckSpec::Http(http) => {
            if !matches!(http.url.scheme(), "http" | "https") {
                return Err(FieldError::new("url", format!("{} is not an http:// or https:// URL", http.url)));
            }
            if http.url.host().is_none() {
                return Err(FieldError::new("url", format!("{} has no host", http.url)));
            }
            for name in http.headers.keys().chain(http.expect.headers.keys()) {
                if name.is_empty()
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    return Err(FieldError::new(
                        format!("headers.{name}"),
                        format!("{name:?} is not a valid header name"),
                    ));
                }
            }
            for (name, value) in &http.headers {
                if let secret::TextOrSecret::Text(text) = value
                    && text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
                {
                    return Err(FieldError::new(
                        format!("headers.{name}"),
                        "header values cannot contain CR, LF or NUL",
                    ));
                }
            }
            if http.body_limit() > http::MAX_BODY_LIMIT {
                let cap = http::MAX_BODY_LIMIT;
                let message = format!("{} is above the cap of {cap} bytes ({} MiB)", http.body_limit(), cap >> 20);
                return Err(FieldError::new("body_limit", message));
            }
            validate_latency("expect", http.expect.latency())
        }
        CheckSpec::Dns(dns) => {
            validate_hostname("query", &dns.query)?;
            validate_latency("expect", dns.expect.latency())
        }
        CheckSpec::Tls(tls) => {
            validate_hostname("host", &tls.host)?;
            if let Some(sni) = &tls.sni {
                validate_hostname("sni", sni)?;
            }
            if tls.port == Some(0) {
                return Err(FieldError::new("port", "port 0 cannot be probed"));
            }
            if tls.crit_days() > tls.warn_days() {
                return Err(FieldError::new(
                    "crit_days",
                    format!("crit_days {} exceeds warn_days {}", tls.crit_days(), tls.warn_days()),
                ));
            }
            Ok(())
        }
    }
}

fn validate_latency(path: &str, latency: LatencyThresholds) -> Result<(), FieldError> {
    match (latency.warn, latency.crit) {
        (Some(warn), Some(crit)) if warn > crit => Err(FieldError::new(
            format!("{path}.latency_warn"),
            format!("latency_warn {warn} exceeds latency_crit {crit}"),
        )),
        _ => Ok(()),
    }
}

/// A DNS name or an IP literal.
fn validate_hostname(path: &str, host: &str) -> Result<(), FieldError> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
        });
    if labels_ok { Ok(()) } else { Err(FieldError::new(path, format!("{host:?} is not a valid host name"))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<CheckDefinition, FieldError> {
        parse_check(v)
    }

    #[test]
    fn a_minimal_http_check_gets_defaults() {
        let c = check(json!({"name": "web", "type": "http", "url": "http://127.0.0.1/", "interval": "10s"})).unwrap();
        assert_eq!(c.timeout(), Duration::from_secs(5));
        assert_eq!(c.subscriptions(), vec!["default"]);
        assert_eq!(c.occurrences(), 1);
        let long = check(json!({"name": "web", "type": "http", "url": "http://x/", "interval": "1m"})).unwrap();
        assert_eq!(long.timeout(), Duration::from_secs(10));
    }

    #[test]
    fn round_trips_through_the_wire_form() {
        let c = check(json!({
            "name": "dns-a", "type": "dns", "query": "example.com", "record": "A",
            "nameserver": "127.0.0.1:5353", "cron": "*/5 * * * *",
            "expect": {"answers": {"contains": ["10.0.0.1"]}}
        }))
        .unwrap();
        let wire = serde_json::to_value(&c).unwrap();
        let back: CheckDefinition = serde_json::from_value(wire).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn cron_accepts_five_and_six_fields() {
        let five: CronExpr = "*/5 * * * *".parse().unwrap();
        assert_eq!(five.min_gap(), Duration::from_secs(300));
        let six: CronExpr = "*/10 * * * * *".parse().unwrap();
        assert_eq!(six.min_gap(), Duration::from_secs(10));
        assert!("* * * *".parse::<CronExpr>().unwrap_err().contains("4 fields"));
        assert!("61 * * * *".parse::<CronExpr>().is_err());
    }

    #[test]
    fn cron_finds_the_latest_firing_at_or_before_a_time() {
        let cron: CronExpr = "*/5 * * * *".parse().unwrap();
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        assert_eq!(cron.latest_at_or_before(at("2026-01-04T10:05:00Z")), Some(at("2026-01-04T10:05:00Z")));
        assert_eq!(cron.latest_at_or_before(at("2026-01-04T10:09:59.9Z")), Some(at("2026-01-04T10:05:00Z")));
        assert_eq!(cron.latest_at_or_before(at("2026-01-04T10:04:59Z")), Some(at("2026-01-04T10:00:00Z")));
    }

    #[test]
    fn timeout_must_be_below_the_interval() {
        let err = check(json!({"name": "w", "type": "http", "url": "http://x/", "interval": "10s", "timeout": "10s"}))
            .unwrap_err();
        assert_eq!(err.path, "timeout");
        let err = check(json!({"name": "w", "type": "tls", "host": "x", "cron": "*/2 * * * * *", "timeout": "5s"}))
            .unwrap_err();
        assert!(err.message.contains("cron"), "{err}");
    }

    #[test]
    fn unknown_fields_name_the_field_and_the_type() {
        let err = check(json!({"name": "w", "type": "http", "urll": "http://x/", "interval": "10s"})).unwrap_err();
        assert_eq!(err.path, "urll");
        assert!(err.message.starts_with("unknown field for this http check"), "{err}");
        let err = check(
            json!({"name": "w", "type": "http", "url": "http://x/", "interval": "10s", "expect": {"stauts": []}}),
        )
        .unwrap_err();
        assert_eq!(err.path, "expect.stauts");
    }

    #[test]
    fn only_names_this_build_does_not_know_are_marked_unknown() {
        let base = json!({"name": "d", "type": "dns", "query": "example.com", "record": "A", "interval": "10s"});
        let with = |key: &str, value: Value| {
            let mut v = base.clone();
            v[key] = value;
            check(v).unwrap_err()
        };
        for (err, path) in [
            (with("tcp_fallback", json!(true)), "tcp_fallback"),
            (with("expect", json!({"ttl_min": 60})), "expect.ttl_min"),
            (with("expect", json!({"answers": {"prefix": ["10."]}})), "expect.answers"),
            (with("record", json!("HTTPS")), "record"),
            (with("type", json!("grpc")), "type"),
        ] {
            assert!(err.unknown, "{err}");
            assert_eq!(err.path, path, "{err}");
        }
        for err in [
            with("record", json!(1)),
            with("type", json!(7)),
            with("query", json!("not a host!")),
            with("attempts", json!(-1)),
        ] {
            assert!(!err.unknown, "{err}");
        }
    }

    #[test]
    fn common_fields_list_matches_the_struct() {
        let schema = schemars::schema_for!(CheckCommon);
        let mut props: Vec<&str> =
            schema.get("properties").unwrap().as_object().unwrap().keys().map(String::as_str).collect();
        let mut listed = COMMON_FIELDS.to_vec();
        props.sort_unstable();
        listed.sort_unstable();
        assert_eq!(props, listed);
    }
}
