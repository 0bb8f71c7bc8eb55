//! Query parameters: each parser's error names its field, and unknown
//! parameters are ignored (an older handler answers a newer client).

use std::collections::BTreeMap;

use axum::extract::FromRequestParts;
use axum::extract::Query;
use axum::http::Uri;
use axum::http::request::Parts;
use chrono::{DateTime, TimeDelta, Utc};
use handlers::EventKind;
use protocol::{HumanDuration, Status};

use crate::errors::ApiError;

/// Pages of events and incidents hold this many unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// The query string as pairs, in order, so a parameter may repeat.
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Self::of(&parts.uri)
    }
}

impl Params {
    pub fn of(uri: &Uri) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::BadRequest(format!("query string: {}", e.body_text())))?;
        Ok(Self(pairs))
    }

    /// The value of `name`; given twice is an error (which one would win?).
    pub fn one<'a>(&'a self, name: &str) -> Result<Option<&'a str>, ApiError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::BadRequest(format!("{name}: given more than once")));
        }
        Ok(first)
    }

    pub fn all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0.iter().filter(move |(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// `status=ok|warning|critical|unknown`, any case.
    pub fn status(&self) -> Result<Option<Status>, ApiError> {
        self.one("status")?
            .map(|value| {
                Status::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(value)).ok_or_else(|| {
                    ApiError::BadRequest(format!("status: unknown status {value:?} (OK, WARNING, CRITICAL, UNKNOWN)"))
                })
            })
            .transpose()
    }

    /// `label=name=value`, repeated or comma-separated: every pair must match.
    pub fn labels(&self) -> Result<BTreeMap<String, String>, ApiError> {
        let mut labels = BTreeMap::new();
        for pair in self.all("label").flat_map(|value| value.split(',')) {
            match pair.split_once('=') {
                Some((name, value)) if !name.is_empty() => {
                    labels.insert(name.to_owned(), value.to_owned());
                }
                _ => return Err(ApiError::BadRequest(format!("label: {pair:?} is not name=value"))),
            }
        }
        Ok(labels)
    }

    /// `kind=problem,resolved`, repeated or comma-separated.
    pub fn kinds(&self) -> Result<Vec<EventKind>, ApiError> {
        self.all("kind")
            .flat_map(|value| value.split(','))
            .map(|kind| kind.parse().map_err(|e| ApiError::BadRequest(format!("kind: {e}"))))
            .collect()
    }

    /// `since=` an RFC 3339 time, or a duration back from `now` (`24h`).
    pub fn since(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(value) = self.one("since")? else { return Ok(None) };
        if let Ok(time) = DateTime::parse_from_rfc3339(value) {
            return Ok(Some(time.with_timezone(&Utc)));
        }
        let ago = value
            .parse::<HumanDuration>()
            .ok()
            .and_then(|d| TimeDelta::from_std(d.get()).ok())
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("since: {value:?} is neither an RFC 3339 time nor a duration like 24h"))
            })?;
        Ok(Some(ago))
    }

    /// `limit=1..1000`, default [`DEFAULT_LIMIT`].
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.one("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(value) => {
                value.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::BadRequest(format!("limit: {value:?} is not a number from 1 to {MAX_LIMIT}"))
                })
            }
        }
    }

    /// `name=true|false`.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.one(name)?
            .map(|value| match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::BadRequest(format!("{name}: {value:?} is neither true nor false"))),
            })
            .transpose()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The parameters of the query string `query`.
    pub(crate) fn params(query: &str) -> Params {
        Params::of(&format!("/?{query}").parse().unwrap()).unwrap()
    }

    /// The field a 400's message names.
    pub(crate) fn field_of(error: ApiError) -> String {
        let ApiError::BadRequest(message) = error else { panic!("{error:?}") };
        message.split(':').next().unwrap().to_owned()
    }

    #[test]
    fn since_takes_a_time_or_a_duration_back_from_now() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z").unwrap().with_timezone(&Utc);
        let since = |query: &str| params(query).since(now);
        assert_eq!(since("since=24h").unwrap(), Some(now - TimeDelta::hours(24)));
        let offset = since("since=2026-12-03T13:30:00%2B02:00").unwrap().unwrap();
        assert_eq!(offset, now - TimeDelta::minutes(30));
        assert_eq!(since("").unwrap(), None);
        assert_eq!(field_of(since("since=yesterday").unwrap_err()), "since");
        assert_eq!(field_of(since("since=1h&since=2h").unwrap_err()), "since", "given twice");
    }

    #[test]
    fn labels_repeat_or_comma_separate_and_limits_are_bounded() {
        let labels = params("label=team=db,tier=1&label=env=a=b").labels().unwrap();
        let pairs: Vec<_> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("env", "a=b"), ("team", "db"), ("tier", "1")]);
        assert_eq!(field_of(params("label==x").labels().unwrap_err()), "label");
        assert_eq!(params("").limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(params("limit=1000").limit().unwrap(), MAX_LIMIT);
        for bad in ["limit=0", "limit=1001", "limit=-1", "limit=ten"] {
            assert_eq!(field_of(params(bad).limit().unwrap_err()), "limit", "{bad}");
        }
        assert_eq!(params("kind=problem,resolved&kind=missed").kinds().unwrap().len(), 3);
        assert_eq!(field_of(params("kind=problem,page").kinds().unwrap_err()), "kind");
        assert_eq!(params("open=false").flag("open").unwrap(), Some(false));
        assert_eq!(field_of(params("open=1").flag("open").unwrap_err()), "open");
    }
}
