//! What a silence or a maintenance window matches: globs over a check's name,
//! its subscription and its labels. One type for both, so an ad-hoc silence
//! made through the API and a recurring window kept in git mean the same
//! thing by the same words.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A shell-style glob: `*` matches any run of characters (`/` included),
/// `?` any one character, everything else itself. Matching is on the whole
/// value and case-sensitive, as check names are.
#[derive(Clone)]
pub struct Glob {
    text: String,
    compiled: regex::Regex,
}

impl Glob {
    pub fn new(text: &str) -> Result<Self, GlobError> {
        if text.is_empty() {
            return Err(GlobError::Empty);
        }
        let mut pattern = String::with_capacity(text.len() + 8);
        pattern.push_str("^(?s:");
        for c in text.chars() {
            match c {
                '*' => pattern.push_str(".*"),
                '?' => pattern.push('.'),
                c => pattern.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        pattern.push_str(")$");
        let compiled = regex::RegexBuilder::new(&pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| GlobError::TooComplex(e.to_string()))?;
        Ok(Self { text: text.to_owned(), compiled })
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.compiled.is_match(value)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GlobError {
    #[error("a glob must not be empty (use \"*\" to match everything)")]
    Empty,
    #[error("glob is too complex: {0}")]
    TooComplex(String),
}

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Glob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        Glob::new(&text).map_err(de::Error::custom)
    }
}

impl JsonSchema for Glob {
    fn schema_name() -> Cow<'static, str> {
        "Glob".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "description": "A glob: `*` matches any run of characters, `?` one character."
        })
    }
}

/// What a silence applies to. Every key given must match; a key left out
/// matches anything. Events about the fleet rather than a check
/// (`runner_lost`, `missed`, `caught_up`) have no check, so only a match
/// without `check` and without `labels` can reach them: by subscription.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Glob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Glob>,
    /// Label name → glob over its value; a check without the label does not match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Glob>,
}

/// The thing a silence is judged against: a check's (check, subscription)
/// with its labels, or a fleet event of one subscription (`check` is `None`).
#[derive(Clone, Copy, Debug)]
pub struct SilenceTarget<'a> {
    pub check: Option<&'a str>,
    pub subscription: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

impl SilenceMatch {
    /// Whether this names a check or a subscription: a silence that names
    /// neither matches the whole fleet by labels alone, which the API
    /// accepts only with `"force": true`.
    pub fn is_targeted(&self) -> bool {
        self.check.is_some() || self.subscription.is_some()
    }

    pub fn matches(&self, target: SilenceTarget<'_>) -> bool {
        let check = match (&self.check, target.check) {
            (None, _) => true,
            (Some(glob), Some(check)) => glob.is_match(check),
            (Some(_), None) => false,
        };
        let labels = self.labels.iter().all(|(name, glob)| match target.check {
            None => false,
            Some(_) => target.labels.get(name).is_some_and(|value| glob.is_match(value)),
        });
        check && labels && self.subscription.as_ref().is_none_or(|glob| glob.is_match(target.subscription))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> Glob {
        Glob::new(text).unwrap()
    }

    #[test]
    fn globs_match_whole_values_with_star_and_question_mark() {
        assert!(glob("api-*").is_match("api-payments"));
        assert!(glob("api-*").is_match("api-"));
        assert!(!glob("api-*").is_match("web-api-x"));
        assert!(glob("a?c").is_match("abc"));
        assert!(!glob("a?c").is_match("abbc"));
        assert!(glob("*").is_match("eu/west"));
        // Regex syntax in a glob is literal.
        assert!(glob("a.b+(c)").is_match("a.b+(c)"));
        assert!(!glob("a.b").is_match("axb"));
        assert_eq!(Glob::new("").unwrap_err(), GlobError::Empty);
    }

    #[test]
    fn every_given_key_must_match() {
        let labels: BTreeMap<String, String> = [("team".to_owned(), "payments".to_owned())].into();
        let none = BTreeMap::new();
        let matcher: SilenceMatch =
            serde_json::from_str(r#"{"check": "api-*", "subscription": "aws-*", "labels": {"team": "pay*"}}"#).unwrap();
        let target = |check, subscription, labels| SilenceTarget { check, subscription, labels };
        assert!(matcher.matches(target(Some("api-1"), "aws-us-east-1", &labels)));
        assert!(!matcher.matches(target(Some("api-1"), "onprem", &labels)));
        assert!(!matcher.matches(target(Some("web"), "aws-us-east-1", &labels)));
        assert!(!matcher.matches(target(Some("api-1"), "aws-us-east-1", &none)));
        // A fleet event has no check: only a subscription match reaches it.
        assert!(!matcher.matches(target(None, "aws-us-east-1", &none)));
        let by_subscription: SilenceMatch = serde_json::from_str(r#"{"subscription": "aws-*"}"#).unwrap();
        assert!(by_subscription.matches(target(None, "aws-us-east-1", &none)));
        assert!(by_subscription.is_targeted());
        let by_labels: SilenceMatch = serde_json::from_str(r#"{"labels": {"team": "payments"}}"#).unwrap();
        assert!(!by_labels.is_targeted());
        assert!(!by_labels.matches(target(None, "aws-us-east-1", &none)));
    }

    #[test]
    fn unknown_keys_and_empty_globs_are_refused() {
        let unknown = serde_json::from_str::<SilenceMatch>(r#"{"chek": "api"}"#).unwrap_err();
        assert!(unknown.to_string().contains("unknown field `chek`"), "{unknown}");
        let empty = serde_json::from_str::<SilenceMatch>(r#"{"check": ""}"#).unwrap_err();
        assert!(empty.to_string().contains("must not be empty"), "{empty}");
    }
}
