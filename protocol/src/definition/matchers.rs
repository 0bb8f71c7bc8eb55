//! Small value types shared by the check specs: regexes, status patterns, text matchers.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A regular expression compiled when the definition is parsed, so a bad
/// pattern is a definition error with a location, not a runtime surprise.
#[derive(Clone, Debug)]
pub struct Pattern(regex::Regex);

impl Pattern {
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        regex::RegexBuilder::new(&text)
            .size_limit(1 << 20)
            .build()
            .map(Pattern)
            .map_err(|e| de::Error::custom(format!("{text:?} is not a valid regex: {e}")))
    }
}

impl JsonSchema for Pattern {
    fn schema_name() -> Cow<'static, str> {
        "Regex".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "regex" })
    }
}

/// One entry of `expect.status`: an exact code (`200`) or a class (`"2xx"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusPattern {
    Code(u16),
    /// The hundreds digit: `2` for `"2xx"`.
    Class(u16),
}

impl StatusPattern {
    pub fn matches(self, code: u16) -> bool {
        match self {
            Self::Code(c) => c == code,
            Self::Class(h) => code / 100 == h,
        }
    }
}

impl fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(c) => write!(f, "{c}"),
            Self::Class(h) => write!(f, "{h}xx"),
        }
    }
}

impl Serialize for StatusPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Code(c) => s.serialize_u16(*c),
            Self::Class(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for StatusPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = StatusPattern;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code (200) or class (\"2xx\")")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusPattern, E> {
                match u16::try_from(v) {
                    Ok(code @ 100..=599) => Ok(StatusPattern::Code(code)),
                    _ => Err(E::custom(format!("{v} is not a status code (100-599)"))),
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusPattern, E> {
                Err(E::custom(format!("{v} is not a status code (100-599)")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusPattern, E> {
                match v.as_bytes() {
                    [h @ b'1'..=b'5', b'x', b'x'] => Ok(StatusPattern::Class(u16::from(h - b'0'))),
                    _ => Err(E::custom(format!("{v:?} is not a status code or class"))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl JsonSchema for StatusPattern {
    fn schema_name() -> Cow<'static, str> {
        "StatusPattern".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "pattern": "^[1-5]xx$" }
            ]
        })
    }
}

/// How one text value (an HTTP header) must look.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TextMatch {
    Equals(String),
    Contains(String),
    Regex(Pattern),
}

impl TextMatch {
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Self::Equals(v) => text == v,
            Self::Contains(v) => text.contains(v.as_str()),
            Self::Regex(p) => p.is_match(text),
        }
    }
}

impl fmt::Display for TextMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Equals(v) => write!(f, "equals {v:?}"),
            Self::Contains(v) => write!(f, "contains {v:?}"),
            Self::Regex(p) => write!(f, "matches /{}/", p.as_str()),
        }
    }
}

/// How a whole answer set (DNS) must look.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AnswerMatch {
    /// The answer set is exactly these values, in any order.
    Equals(Vec<String>),
    /// Each of these values is in the answer set.
    Contains(Vec<String>),
    /// There is at least one answer and every answer matches.
    Regex(Pattern),
}

impl AnswerMatch {
    /// `None` when the answers satisfy the match, else the reason they don't.
    pub fn mismatch(&self, answers: &[String]) -> Option<String> {
        match self {
            Self::Equals(want) => {
                let mut got: Vec<&str> = answers.iter().map(String::as_str).collect();
                let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
                got.sort_unstable();
                got.dedup();
                want.sort_unstable();
                want.dedup();
                (got != want).then(|| format!("answers {got:?} != expected {want:?}"))
            }
            Self::Contains(want) => {
                let missing: Vec<&String> = want.iter().filter(|w| !answers.contains(w)).collect();
                (!missing.is_empty()).then(|| format!("answers lack {missing:?}"))
            }
            Self::Regex(p) if answers.is_empty() => Some(format!("no answers to match /{}/", p.as_str())),
            Self::Regex(p) => {
                answers.iter().find(|a| !p.is_match(a)).map(|a| format!("answer {a:?} does not match /{}/", p.as_str()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patterns_parse_codes_and_classes() {
        let p: Vec<StatusPattern> = serde_json::from_str(r#"[200, "3xx"]"#).unwrap();
        assert_eq!(p, vec![StatusPattern::Code(200), StatusPattern::Class(3)]);
        assert!(p[1].matches(301) && !p[1].matches(200));
        let err = serde_json::from_str::<StatusPattern>(r#""2xz""#).unwrap_err();
        assert!(err.to_string().contains(r#""2xz" is not a status code or class"#), "{err}");
        assert!(serde_json::from_str::<StatusPattern>("99").is_err());
        assert!(serde_json::from_str::<StatusPattern>("600").is_err());
    }

    #[test]
    fn answer_matches_cover_the_whole_set() {
        let answers = vec!["10.0.0.1".to_owned(), "10.0.0.2".to_owned()];
        let eq = AnswerMatch::Equals(vec!["10.0.0.2".into(), "10.0.0.1".into()]);
        assert_eq!(eq.mismatch(&answers), None);
        let eq = AnswerMatch::Equals(vec!["10.0.0.1".into()]);
        assert!(eq.mismatch(&answers).is_some());
        let contains = AnswerMatch::Contains(vec!["10.0.0.1".into()]);
        assert_eq!(contains.mismatch(&answers), None);
        let re: AnswerMatch = serde_json::from_str(r#"{"regex": "^10\\.0\\.0\\.1$"}"#).unwrap();
        assert!(re.mismatch(&answers).unwrap().contains("10.0.0.2"));
        assert!(re.mismatch(&[]).is_some());
    }
}
