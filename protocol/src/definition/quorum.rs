//! `quorum`: how many of a check's subscriptions must see it fail before it
//! pages, as a count (`2`) or a share of the subscriptions that can see
//! (`"50%"`).

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A quorum as written. Also carried in results' alert policy, so a handler
/// needs no definitions to count the vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// At least this many subscriptions (at least 1).
    Count(u32),
    /// At least this percentage (1 … 100) of the subscriptions that can see.
    Percent(u32),
}

impl Quorum {
    /// The failing subscriptions needed when `live` of them can see: a count
    /// above `live` asks for all of them (a location that cannot see is not
    /// a vote, nor a veto); a percentage is rounded up. `None` when none can
    /// see: nothing to count.
    pub fn required(self, live: usize) -> Option<usize> {
        if live == 0 {
            return None;
        }
        Some(match self {
            Self::Count(count) => usize::try_from(count).unwrap_or(usize::MAX).min(live),
            Self::Percent(percent) => (live * usize::try_from(percent).unwrap_or(100)).div_ceil(100).max(1),
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let percent = text
            .strip_suffix('%')
            .and_then(|digits| digits.parse::<u32>().ok())
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| format!("{text:?} is not a quorum: a count (2) or a percentage from \"1%\" to \"100%\""))?;
        Ok(Self::Percent(percent))
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(count) => write!(f, "{count}"),
            Self::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

impl Serialize for Quorum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(count) => s.serialize_u32(*count),
            Self::Percent(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written<'a> {
            Count(u64),
            Text(Cow<'a, str>),
        }
        match Written::deserialize(d)
            .map_err(|_| de::Error::custom("a quorum is a count (2) or a percentage (\"50%\")"))?
        {
            Written::Count(count) => u32::try_from(count)
                .ok()
                .filter(|c| *c >= 1)
                .map(Self::Count)
                .ok_or_else(|| de::Error::custom(format!("{count} is not a quorum: a count is at least 1"))),
            Written::Text(text) => Self::parse(&text).map_err(de::Error::custom),
        }
    }
}

impl JsonSchema for Quorum {
    fn schema_name() -> Cow<'static, str> {
        "Quorum".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": "^(100|[1-9][0-9]?)%$"}
            ],
            "description": "Failing subscriptions needed to page: a count (2) or a percentage of the subscriptions that can see (\"50%\")."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentages_round_trip() {
        for (json, quorum) in [("2", Quorum::Count(2)), ("\"50%\"", Quorum::Percent(50))] {
            assert_eq!(serde_json::from_str::<Quorum>(json).unwrap(), quorum);
            assert_eq!(serde_json::to_string(&quorum).unwrap(), json);
        }
        for bad in ["0", "\"0%\"", "\"101%\"", "\"half\"", "1.5", "-1"] {
            assert!(serde_json::from_str::<Quorum>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_vote_counts_only_the_subscriptions_that_can_see() {
        assert_eq!(Quorum::Count(2).required(3), Some(2));
        assert_eq!(Quorum::Count(3).required(2), Some(2), "a lost location is no veto");
        assert_eq!(Quorum::Percent(50).required(3), Some(2));
        assert_eq!(Quorum::Percent(50).required(2), Some(1));
        assert_eq!(Quorum::Percent(1).required(5), Some(1));
        assert_eq!(Quorum::Count(1).required(0), None);
    }
}
