//! The body of `POST /api/v1/silences` and `POST /api/v1/silences/preview`,
//! and the rules a silence must keep before the store sees it. The CLI builds
//! the same type, so the two cannot drift apart.
//!
//! Parsing is strict where reads are lenient: a misspelt key in a silence
//! would silently widen or narrow what it matches, so every unknown key is a
//! 400 naming it.

use chrono::{DateTime, TimeDelta, Utc};
use protocol::HumanDuration;
use protocol::silence::SilenceMatch;
use serde::{Deserialize, Serialize};

use crate::errors::ApiError;

/// How far ahead a silence may end: longer planned work belongs in a
/// maintenance window in git, where it is reviewed.
pub const MAX_AHEAD: TimeDelta = TimeDelta::days(30);

/// A silence as asked for. `comment` and `match` are required; exactly one of
/// `duration` and `ends_at`; `starts_at` defaults to now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    #[serde(rename = "match")]
    pub matcher: SilenceMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_on_resolve: bool,
    #[serde(default)]
    pub comment: String,
    /// Allows a match that names neither a check nor a subscription.
    #[serde(default)]
    pub force: bool,
}

/// A request that kept every rule, with its times settled.
#[derive(Clone, Debug, PartialEq)]
pub struct SilenceSpec {
    pub matcher: SilenceMatch,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub ends_on_resolve: bool,
    pub comment: String,
}

impl SilenceRequest {
    /// Parses a JSON body; an error names the field (`match.chek`, `duration`).
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        // An object first: serde would take an array as the fields in order.
        let object = match serde_json::from_slice(body) {
            Ok(object @ serde_json::Value::Object(_)) => object,
            Ok(_) => return Err(ApiError::BadRequest("body: must be a JSON object".to_owned())),
            Err(e) => return Err(ApiError::BadRequest(format!("body: not JSON: {e}"))),
        };
        serde_path_to_error::deserialize(object).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            match message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
                Some(missing) => ApiError::BadRequest(format!("{missing}: required")),
                None => ApiError::BadRequest(format!("{path}: {message}")),
            }
        })
    }

    /// Checks the rules at `now`.
    pub fn validate(self, now: DateTime<Utc>) -> Result<SilenceSpec, ApiError> {
        let bad = |field: &str, message: String| Err(ApiError::BadRequest(format!("{field}: {message}")));
        if !self.force && !self.matcher.is_targeted() {
            return bad(
                "match",
                "name a check or a subscription; to match the whole fleet by labels alone, add \"force\": true"
                    .to_owned(),
            );
        }
        if self.comment.trim().is_empty() {
            return bad("comment", "required: say why, so the next person knows who to ask".to_owned());
        }
        let starts_at = self.starts_at.unwrap_or(now);
        let (field, ends_at) = match (self.duration, self.ends_at) {
            (Some(_), Some(_)) => return bad("duration", "give either duration or ends_at, not both".to_owned()),
            (None, None) => return bad("duration", "required (or ends_at)".to_owned()),
            (Some(duration), None) => {
                let Some(ends_at) =
                    TimeDelta::from_std(duration.get()).ok().and_then(|d| starts_at.checked_add_signed(d))
                else {
                    return bad("duration", format!("{duration} is too long"));
                };
                ("duration", ends_at)
            }
            (None, Some(ends_at)) => ("ends_at", ends_at),
        };
        if ends_at <= starts_at {
            return bad(field, format!("the silence must end after it starts ({})", rfc3339(starts_at)));
        }
        if ends_at <= now {
            return bad(field, format!("the silence would end in the past ({})", rfc3339(ends_at)));
        }
        if ends_at > now + MAX_AHEAD {
            return bad(
                field,
                format!(
                    "the silence would end at {}, more than 30 days ahead; recurring work belongs in a maintenance window",
                    rfc3339(ends_at)
                ),
            );
        }
        Ok(SilenceSpec {
            matcher: self.matcher,
            starts_at,
            ends_at,
            ends_on_resolve: self.ends_on_resolve,
            comment: self.comment,
        })
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-03T10:00:00Z".parse().unwrap()
    }

    /// The 400 message for `body`, whether parsing or validation refused it.
    fn refusal(body: &str) -> String {
        match SilenceRequest::parse(body.as_bytes()).and_then(|r| r.validate(now())) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("{body} was not refused: {other:?}"),
        }
    }

    /// Asserts that `body` is refused with a message starting `prefix` (the field).
    fn refused_with(body: &str, prefix: &str) {
        let message = refusal(body);
        assert!(message.starts_with(prefix), "{message}");
    }

    #[test]
    fn a_good_request_settles_its_times() {
        let body = r#"{"match": {"check": "api-*", "subscription": "aws-us-east-1", "labels": {"team": "payments"}},
                       "duration": "2h", "comment": "deploy"}"#;
        let spec = SilenceRequest::parse(body.as_bytes()).unwrap().validate(now()).unwrap();
        assert_eq!(spec.starts_at, now());
        assert_eq!(spec.ends_at, now() + TimeDelta::hours(2));
        assert!(!spec.ends_on_resolve);
        assert_eq!(spec.matcher.check.unwrap().as_str(), "api-*");

        let body = r#"{"match": {"subscription": "eu"}, "starts_at": "2026-12-04T00:00:00Z",
                       "ends_at": "2026-12-04T01:00:00Z", "ends_on_resolve": true, "comment": "db upgrade"}"#;
        let spec = SilenceRequest::parse(body.as_bytes()).unwrap().validate(now()).unwrap();
        assert_eq!(spec.starts_at, "2026-12-04T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(spec.ends_at, "2026-12-04T01:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(spec.ends_on_resolve);
    }

    #[test]
    fn what_the_cli_serializes_parses_back() {
        let request = SilenceRequest {
            matcher: serde_json::from_str(r#"{"check": "api-*"}"#).unwrap(),
            duration: Some("90m".parse().unwrap()),
            comment: "deploy".into(),
            ..SilenceRequest::default()
        };
        let text = serde_json::to_vec(&request).unwrap();
        assert_eq!(SilenceRequest::parse(&text).unwrap(), request);
    }

    #[test]
    fn an_unknown_key_is_named() {
        refused_with(
            r#"{"match": {"check": "a"}, "duration": "1h", "comment": "x", "comentt": "y"}"#,
            "comentt: unknown field `comentt`",
        );
    }

    #[test]
    fn an_unknown_match_key_is_named_with_its_path() {
        refused_with(
            r#"{"match": {"chek": "a"}, "duration": "1h", "comment": "x"}"#,
            "match.chek: unknown field `chek`",
        );
    }

    #[test]
    fn an_empty_glob_is_named() {
        refused_with(
            r#"{"match": {"check": ""}, "duration": "1h", "comment": "x"}"#,
            "match.check: a glob must not be empty",
        );
    }

    #[test]
    fn a_bad_duration_is_named() {
        refused_with(
            r#"{"match": {"check": "a"}, "duration": "2 hours", "comment": "x"}"#,
            "duration: \"2 hours\" is not a duration",
        );
    }

    #[test]
    fn a_bad_time_is_named() {
        refused_with(r#"{"match": {"check": "a"}, "ends_at": "tomorrow", "comment": "x"}"#, "ends_at: ");
    }

    #[test]
    fn a_missing_match_is_named() {
        assert_eq!(refusal(r#"{"duration": "1h", "comment": "x"}"#), "match: required");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        assert_eq!(refusal("[1]"), "body: must be a JSON object");
        assert!(refusal("{").starts_with("body: not JSON: "), "{}", refusal("{"));
    }

    #[test]
    fn duration_and_ends_at_together_are_refused() {
        let message = refusal(
            r#"{"match": {"check": "a"}, "duration": "1h", "ends_at": "2026-12-03T12:00:00Z", "comment": "x"}"#,
        );
        assert_eq!(message, "duration: give either duration or ends_at, not both");
    }

    #[test]
    fn neither_duration_nor_ends_at_is_refused() {
        assert_eq!(refusal(r#"{"match": {"check": "a"}, "comment": "x"}"#), "duration: required (or ends_at)");
    }

    #[test]
    fn ends_at_before_starts_at_is_refused() {
        refused_with(
            r#"{"match": {"check": "a"}, "starts_at": "2026-12-03T12:00:00Z", "ends_at": "2026-12-03T11:00:00Z",
                "comment": "x"}"#,
            "ends_at: the silence must end after it starts",
        );
    }

    #[test]
    fn a_zero_duration_is_refused() {
        refused_with(
            r#"{"match": {"check": "a"}, "duration": "0s", "comment": "x"}"#,
            "duration: the silence must end after it starts",
        );
    }

    #[test]
    fn an_end_in_the_past_is_refused() {
        refused_with(
            r#"{"match": {"check": "a"}, "starts_at": "2026-12-01T00:00:00Z", "duration": "1h", "comment": "x"}"#,
            "duration: the silence would end in the past",
        );
    }

    #[test]
    fn more_than_30_days_ahead_is_refused() {
        refused_with(
            r#"{"match": {"check": "a"}, "ends_at": "2027-01-03T10:00:01Z", "comment": "x"}"#,
            "ends_at: the silence would end at 2027-01-03T10:00:01Z, more than 30 days",
        );
        refused_with(
            r#"{"match": {"check": "a"}, "duration": "31d", "comment": "x"}"#,
            "duration: the silence would end at ",
        );
        let exactly = r#"{"match": {"check": "a"}, "duration": "30d", "comment": "x"}"#;
        assert!(SilenceRequest::parse(exactly.as_bytes()).unwrap().validate(now()).is_ok());
    }

    #[test]
    fn a_missing_or_blank_comment_is_refused() {
        for body in [
            r#"{"match": {"check": "a"}, "duration": "1h"}"#,
            r#"{"match": {"check": "a"}, "duration": "1h", "comment": "  "}"#,
        ] {
            refused_with(body, "comment: required");
        }
    }

    #[test]
    fn a_match_without_check_or_subscription_needs_force() {
        let body = r#"{"match": {"labels": {"team": "payments"}}, "duration": "1h", "comment": "x"}"#;
        assert!(refusal(body).starts_with("match: name a check or a subscription"), "{}", refusal(body));
        let forced = r#"{"match": {"labels": {"team": "payments"}}, "duration": "1h", "comment": "x", "force": true}"#;
        assert!(SilenceRequest::parse(forced.as_bytes()).unwrap().validate(now()).is_ok());
    }
}
