//! Durations as people write them in definitions: `"500ms"`, `"10s"`, `"2m"`, `"1h30m"`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as a sequence of `<integer><unit>` parts, units `ms`, `s`, `m`, `h`, `d`.
///
/// Kept as its own type (not `std::time::Duration`) so that definitions round-trip
/// to the same text and the JSON Schema can describe the accepted form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(std::time::Duration);

/// The pattern the schema publishes; `FromStr` accepts exactly this.
const PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

impl HumanDuration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl From<std::time::Duration> for HumanDuration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a duration (write e.g. \"500ms\", \"10s\", \"2m\", \"1h30m\")")]
pub struct DurationError(String);

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(text.to_owned());
        if text.is_empty() {
            return Err(err());
        }
        let mut total_ms: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let (unit_ms, unit_len) = if rest.starts_with("ms") {
                (1, 2)
            } else {
                match rest.as_bytes().first() {
                    Some(b's') => (1_000, 1),
                    Some(b'm') => (60_000, 1),
                    Some(b'h') => (3_600_000, 1),
                    Some(b'd') => (86_400_000, 1),
                    _ => return Err(err()),
                }
            };
            rest = &rest[unit_len..];
            total_ms = value.checked_mul(unit_ms).and_then(|ms| total_ms.checked_add(ms)).ok_or_else(err)?;
        }
        Ok(Self::from_millis(total_ms))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        match ms {
            0 => f.write_str("0s"),
            ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1_000 == 0 => write!(f, "{}s", ms / 1_000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "description": "A duration: integer + unit parts, units ms, s, m, h, d (\"500ms\", \"10s\", \"1h30m\")."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_people_write() {
        assert_eq!("500ms".parse(), Ok(HumanDuration::from_millis(500)));
        assert_eq!("10s".parse(), Ok(HumanDuration::from_secs(10)));
        assert_eq!("2m".parse(), Ok(HumanDuration::from_secs(120)));
        assert_eq!("1h30m".parse(), Ok(HumanDuration::from_secs(5400)));
        assert_eq!("1d".parse(), Ok(HumanDuration::from_secs(86_400)));
    }

    #[test]
    fn rejects_what_the_schema_pattern_rejects() {
        let pattern = regex::Regex::new(PATTERN).unwrap();
        for bad in ["", "10", "s", "10 s", "1.5s", "-1s", "10sec", "10S", "99999999999999999999s"] {
            let parsed = bad.parse::<HumanDuration>();
            assert!(parsed.is_err(), "{bad:?} parsed as {parsed:?}");
            if bad != "99999999999999999999s" {
                assert!(!pattern.is_match(bad), "schema pattern accepts {bad:?}");
            }
        }
        for good in ["0s", "10s", "250ms", "1h30m15s"] {
            assert!(pattern.is_match(good));
            assert!(good.parse::<HumanDuration>().is_ok());
        }
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(HumanDuration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(HumanDuration::from_secs(120).to_string(), "2m");
    }
}
