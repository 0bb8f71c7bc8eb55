//! Maintenance windows: recurring silences kept in git beside the checks,
//! `{"kind": "maintenance", "name": …, "match": {…}, "cron": … | "weekdays":
//! […], "at": "02:00", "duration": "1h", "timezone": "Europe/Berlin",
//! "comment": …}`.
//!
//! Start times are local times in `timezone` (UTC when it is left out); the
//! duration is elapsed time. Across a daylight-saving change:
//!
//! - a start time that does not exist that day (skipped when clocks go
//!   forward) is read with the offset in force before the gap, so the window
//!   starts later by the length of the gap (02:30 in Berlin on the last
//!   Sunday of March starts at 03:30 CEST) and still happens;
//! - a start time that happens twice (clocks go back) starts the window once,
//!   at the first of the two.
//!
//! Both rules are RFC 5545's, and apply to `cron` lines as to `weekdays` and
//! `at`: a cron line is evaluated on local clock times, then each firing is
//! placed on the timeline as above.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value};

use super::{CronExpr, FieldError, typed, validate_name};
use crate::duration::HumanDuration;
use crate::silence::SilenceMatch;

/// The longest a window may last. Longer planned work is an ad-hoc silence
/// with an end, or a change to the checks.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// A day of the week as written in `weekdays`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mon => "mon",
            Self::Tue => "tue",
            Self::Wed => "wed",
            Self::Thu => "thu",
            Self::Fri => "fri",
            Self::Sat => "sat",
            Self::Sun => "sun",
        }
    }
}

impl From<Weekday> for chrono::Weekday {
    fn from(day: Weekday) -> Self {
        match day {
            Weekday::Mon => Self::Mon,
            Weekday::Tue => Self::Tue,
            Weekday::Wed => Self::Wed,
            Weekday::Thu => Self::Thu,
            Weekday::Fri => Self::Fri,
            Weekday::Sat => Self::Sat,
            Weekday::Sun => Self::Sun,
        }
    }
}

/// A local clock time, `"HH:MM"` on the 24-hour clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeOfDay(NaiveTime);

const TIME_OF_DAY_PATTERN: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$";

impl TimeOfDay {
    pub fn get(self) -> NaiveTime {
        self.0
    }
}

impl FromStr for TimeOfDay {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let err = || format!("{text:?} is not a time of day (write \"HH:MM\" on the 24-hour clock, e.g. \"02:00\")");
        let (hours, minutes) = text.split_once(':').ok_or_else(err)?;
        let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(hours) || !two_digits(minutes) {
            return Err(err());
        }
        let time = NaiveTime::from_hms_opt(hours.parse().map_err(|_| err())?, minutes.parse().map_err(|_| err())?, 0)
            .ok_or_else(err)?;
        Ok(Self(time))
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Cow::<'de, str>::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for TimeOfDay {
    fn schema_name() -> Cow<'static, str> {
        "TimeOfDay".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": TIME_OF_DAY_PATTERN,
            "description": "local clock time, \"HH:MM\" on the 24-hour clock"
        })
    }
}

/// An IANA time zone, by name (`"Europe/Berlin"`, `"UTC"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeZoneName(Tz);

impl<'de> Deserialize<'de> for TimeZoneName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        text.parse::<Tz>().map(Self).map_err(|_| {
            de::Error::custom(format!("{text:?} is not an IANA time zone name (e.g. \"Europe/Berlin\", \"UTC\")"))
        })
    }
}

impl JsonSchema for TimeZoneName {
    fn schema_name() -> Cow<'static, str> {
        "TimeZone".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        json_schema!({ "type": "string", "enum": names, "description": "IANA time zone name" })
    }
}

/// A window as written in a file; [`parse_window`] checks the rules across
/// its fields and makes a [`MaintenanceWindow`] of it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = super::schema::open_object)]
pub struct WindowFields {
    /// Unique among windows: `[a-z0-9_.-]+`. Silences from it are named `maintenance:<name>`.
    #[schemars(regex(pattern = super::NAME_PATTERN))]
    name: String,
    /// What the window silences: globs over `check`, `subscription`, `labels`.
    #[serde(rename = "match")]
    matcher: SilenceMatch,
    /// When it opens: a crontab line (5 fields, or 6 with seconds first) in `timezone`.
    /// Exactly one of `cron` and `weekdays` with `at`.
    #[serde(default)]
    cron: Option<CronExpr>,
    /// The days it opens on, with `at`.
    #[serde(default)]
    #[schemars(length(min = 1), extend("uniqueItems" = true))]
    weekdays: Vec<Weekday>,
    /// The local time it opens at on each of `weekdays`.
    #[serde(default)]
    at: Option<TimeOfDay>,
    /// How long it stays open (elapsed time), above 0 and at most 7d.
    duration: HumanDuration,
    /// IANA time zone of `cron` and `at`. Default UTC.
    #[serde(default)]
    timezone: Option<TimeZoneName>,
    /// Why: shown wherever the window silences something.
    #[schemars(length(min = 1))]
    comment: String,
    /// Allow a `match` that names neither `check` nor `subscription`.
    #[serde(default)]
    force: bool,
}

/// When a window opens.
#[derive(Clone, Debug, PartialEq)]
pub enum Recurrence {
    Cron(Box<CronExpr>),
    Weekly { days: Vec<Weekday>, at: NaiveTime },
}

/// One validated maintenance window.
#[derive(Clone, Debug, PartialEq)]
pub struct MaintenanceWindow {
    pub name: String,
    pub matcher: SilenceMatch,
    pub comment: String,
    pub recurrence: Recurrence,
    pub duration: HumanDuration,
    pub timezone: Tz,
}

/// One opening of a window: `starts_at <= t < ends_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpan {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl MaintenanceWindow {
    /// The opening that contains `now`, if any. Openings may overlap (a cron
    /// line firing more often than the duration); then this is the latest
    /// to have started, which also ends last.
    pub fn open_at(&self, now: DateTime<Utc>) -> Option<WindowSpan> {
        let duration = chrono::Duration::from_std(self.duration.get()).ok()?;
        let local_now = now.with_timezone(&self.timezone).naive_local();
        // In the second pass of a repeated hour, a start later on the clock
        // than now may already be past (its first pass): look that far ahead.
        let mut before = local_now + repeat_margin(self.timezone, now);
        loop {
            let local_start = self.latest_start(before)?;
            let starts_at = place(self.timezone, local_start);
            if starts_at <= now {
                let ends_at = starts_at + duration;
                return (now < ends_at).then_some(WindowSpan { starts_at, ends_at });
            }
            // Terminates: a local start at or before `local_now` is placed
            // at or before `now`, as placing is monotonic.
            before = local_start - chrono::Duration::seconds(1);
        }
    }

    /// The latest local start time at or before the local time `at`.
    fn latest_start(&self, at: NaiveDateTime) -> Option<NaiveDateTime> {
        match &self.recurrence {
            Recurrence::Cron(cron) => cron.latest_at_or_before(at.and_utc()).map(|t| t.naive_utc()),
            Recurrence::Weekly { days, at: time } => (0..=7).find_map(|back| {
                let date = at.date() - chrono::Days::new(back);
                let start = date.and_time(*time);
                let named = days.iter().any(|d| chrono::Weekday::from(*d) == date.weekday());
                (named && start <= at).then_some(start)
            }),
        }
    }
}

/// The instant of a local clock time: the first of a repeated time, and a
/// skipped time read with the offset before the gap.
fn place(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            let before_gap = tz.offset_from_utc_datetime(&(local - chrono::Days::new(1))).fix();
            (local - before_gap).and_utc()
        }
    }
}

/// How far the clocks went back in the day before `now` (zero if they did not).
fn repeat_margin(tz: Tz, now: DateTime<Utc>) -> chrono::Duration {
    let offset = |t: DateTime<Utc>| i64::from(tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc());
    chrono::Duration::seconds((offset(now - chrono::Duration::days(1)) - offset(now)).max(0))
}

/// Parses and validates one window object (its `kind` is `maintenance`).
pub fn parse_window(value: Value) -> Result<MaintenanceWindow, FieldError> {
    let mut object: Map<String, Value> = super::into_object(value)?;
    if object.remove("kind").is_some_and(|k| k != "maintenance") {
        return Err(FieldError::new("kind", "a maintenance window has kind \"maintenance\""));
    }
    let fields: WindowFields = typed(object, "maintenance window")?;
    validate_name("name", &fields.name)?;
    if !fields.matcher.is_targeted() && !fields.force {
        return Err(FieldError::new(
            "match",
            "names neither `check` nor `subscription`, so it would silence the whole fleet \
             (by labels, if any); name one, or add \"force\": true",
        ));
    }
    let recurrence = match (fields.cron, fields.weekdays.is_empty(), fields.at) {
        (Some(_), false, _) | (Some(_), _, Some(_)) => {
            return Err(FieldError::new("cron", "give either `cron` or `weekdays` with `at`, not both"));
        }
        (Some(cron), true, None) => Recurrence::Cron(Box::new(cron)),
        (None, false, Some(at)) => Recurrence::Weekly { days: weekdays(fields.weekdays)?, at: at.get() },
        (None, false, None) => {
            return Err(FieldError::new("weekdays", "`weekdays` needs `at`, the local time it opens (\"HH:MM\")"));
        }
        (None, true, Some(_)) => return Err(FieldError::new("at", "`at` needs `weekdays`, the days it opens on")),
        (None, true, None) => return Err(FieldError::new("", "missing field `cron` (or `weekdays` and `at`)")),
    };
    if fields.duration.get().is_zero() {
        return Err(FieldError::new("duration", "duration must be above 0"));
    }
    if fields.duration.get() > MAX_WINDOW {
        let message = format!("duration {} is longer than a week, the most a window may last", fields.duration);
        return Err(FieldError::new("duration", message));
    }
    if fields.comment.trim().is_empty() {
        return Err(FieldError::new("comment", "say why the window exists (comment is empty)"));
    }
    Ok(MaintenanceWindow {
        name: fields.name,
        matcher: fields.matcher,
        comment: fields.comment,
        recurrence,
        duration: fields.duration,
        timezone: fields.timezone.map_or(Tz::UTC, |tz| tz.0),
    })
}

/// Refuses a day listed twice: a typo for another day, most likely.
fn weekdays(days: Vec<Weekday>) -> Result<Vec<Weekday>, FieldError> {
    for (i, day) in days.iter().enumerate() {
        if days[..i].contains(day) {
            return Err(FieldError::new(format!("weekdays[{i}]"), format!("{:?} is listed twice", day.as_str())));
        }
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn window(fields: Value) -> MaintenanceWindow {
        parse_window(with(fields)).unwrap()
    }

    fn with(fields: Value) -> Value {
        let mut base = json!({"kind": "maintenance", "name": "db", "match": {"check": "db-*"}, "duration": "1h",
                              "comment": "weekly vacuum"});
        base.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        base
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn span(start: &str, end: &str) -> Option<WindowSpan> {
        Some(WindowSpan { starts_at: utc(start), ends_at: utc(end) })
    }

    #[test]
    fn a_weekly_window_is_open_from_its_start_for_its_duration() {
        let w = window(json!({"weekdays": ["sun"], "at": "02:00", "timezone": "Europe/Berlin"}));
        // 2026-01-04 is a Sunday; Berlin is UTC+1 in winter.
        let open = span("2026-01-04T01:00:00Z", "2026-01-04T02:00:00Z");
        assert_eq!(w.open_at(utc("2026-01-04T00:59:59Z")), None);
        assert_eq!(w.open_at(utc("2026-01-04T01:00:00Z")), open);
        assert_eq!(w.open_at(utc("2026-01-04T01:59:59Z")), open);
        assert_eq!(w.open_at(utc("2026-01-04T02:00:00Z")), None, "the end is exclusive");
        assert_eq!(w.open_at(utc("2026-01-05T01:30:00Z")), None, "Monday");
    }

    #[test]
    fn a_cron_window_in_a_time_zone_opens_on_local_time() {
        let w = window(json!({"cron": "0 2 * * SUN", "timezone": "America/New_York", "duration": "30m"}));
        // New York is UTC-5 in January.
        let open = span("2026-01-04T07:00:00Z", "2026-01-04T07:30:00Z");
        assert_eq!(w.open_at(utc("2026-01-04T07:10:00Z")), open);
        assert_eq!(w.open_at(utc("2026-01-04T02:10:00Z")), None, "02:10 UTC is not 02:10 in New York");
        let utc_default = window(json!({"cron": "0 2 * * SUN", "duration": "30m"}));
        assert_eq!(
            utc_default.open_at(utc("2026-01-04T02:10:00Z")),
            span("2026-01-04T02:00:00Z", "2026-01-04T02:30:00Z")
        );
    }

    #[test]
    fn a_window_spanning_midnight_is_open_on_both_days() {
        let w = window(json!({"weekdays": ["fri"], "at": "23:00", "duration": "3h"}));
        // 2026-01-09 is a Friday.
        let open = span("2026-01-09T23:00:00Z", "2026-01-10T02:00:00Z");
        assert_eq!(w.open_at(utc("2026-01-09T23:30:00Z")), open);
        assert_eq!(w.open_at(utc("2026-01-10T01:59:00Z")), open, "still open on Saturday");
        assert_eq!(w.open_at(utc("2026-01-10T02:00:00Z")), None);
        assert_eq!(w.open_at(utc("2026-01-10T23:30:00Z")), None, "Saturday 23:00 is not a start");
    }

    #[test]
    fn a_window_lasting_days_is_found_from_its_start() {
        let w = window(json!({"weekdays": ["mon"], "at": "00:00", "duration": "7d"}));
        // 2026-01-05 is a Monday: open the whole week, and the next opening follows at once.
        assert_eq!(w.open_at(utc("2026-01-11T23:59:59Z")), span("2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"));
        assert_eq!(w.open_at(utc("2026-01-12T00:00:00Z")), span("2026-01-12T00:00:00Z", "2026-01-19T00:00:00Z"));
    }

    #[test]
    fn overlapping_openings_give_the_latest() {
        let w = window(json!({"cron": "*/10 * * * *", "duration": "25m"}));
        assert_eq!(w.open_at(utc("2026-01-04T10:21:00Z")), span("2026-01-04T10:20:00Z", "2026-01-04T10:45:00Z"));
        let seconds = window(json!({"cron": "*/20 * * * * *", "duration": "5s"}));
        assert_eq!(
            seconds.open_at(utc("2026-01-04T10:00:44.5Z")),
            span("2026-01-04T10:00:40Z", "2026-01-04T10:00:45Z")
        );
        assert_eq!(seconds.open_at(utc("2026-01-04T10:00:45Z")), None);
    }

    #[test]
    fn a_start_skipped_by_dst_opens_after_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let w = window(json!({"weekdays": ["sun"], "at": "02:30", "timezone": "Europe/Berlin"}));
        let open = span("2026-03-29T01:30:00Z", "2026-03-29T02:30:00Z");
        assert_eq!(w.open_at(utc("2026-03-29T01:29:59Z")), None);
        assert_eq!(w.open_at(utc("2026-03-29T01:30:00Z")), open, "03:30 CEST, one gap after 02:30");
        assert_eq!(w.open_at(utc("2026-03-29T02:29:59Z")), open, "an hour of elapsed time");
        let cron = window(json!({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}));
        assert_eq!(cron.open_at(utc("2026-03-29T01:45:00Z")), open, "a cron firing is not skipped either");
        // The week before and after, 02:30 exists: CET (UTC+1), then CEST (UTC+2).
        assert_eq!(w.open_at(utc("2026-03-22T01:45:00Z")), span("2026-03-22T01:30:00Z", "2026-03-22T02:30:00Z"));
        assert_eq!(w.open_at(utc("2026-04-05T00:45:00Z")), span("2026-04-05T00:30:00Z", "2026-04-05T01:30:00Z"));
    }

    #[test]
    fn a_start_repeated_by_dst_opens_once_at_the_first() {
        // Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:00-03:00 happens twice,
        // first as 00:00-01:00 UTC, then as 01:00-02:00 UTC.
        let w = window(json!({"weekdays": ["sun"], "at": "02:45", "duration": "30m", "timezone": "Europe/Berlin"}));
        let first = span("2026-10-25T00:45:00Z", "2026-10-25T01:15:00Z");
        assert_eq!(w.open_at(utc("2026-10-25T00:50:00Z")), first);
        // 01:10 UTC is 02:10 CET on the clock, before 02:45, yet the first 02:45 is still open.
        assert_eq!(w.open_at(utc("2026-10-25T01:10:00Z")), first);
        assert_eq!(w.open_at(utc("2026-10-25T01:50:00Z")), None, "02:45 CET does not open it again");
        let cron = window(json!({"cron": "45 2 * * *", "duration": "30m", "timezone": "Europe/Berlin"}));
        assert_eq!(cron.open_at(utc("2026-10-25T01:10:00Z")), first);
        assert_eq!(cron.open_at(utc("2026-10-25T01:50:00Z")), None);
    }

    #[test]
    fn a_window_over_a_dst_change_lasts_its_elapsed_duration() {
        // Saturday 23:00 CET + 6h = Sunday 05:00 UTC = 07:00 CEST on the clock.
        let w = window(json!({"weekdays": ["sat"], "at": "23:00", "duration": "6h", "timezone": "Europe/Berlin"}));
        let open = span("2026-03-28T22:00:00Z", "2026-03-29T04:00:00Z");
        assert_eq!(w.open_at(utc("2026-03-29T03:59:00Z")), open);
        assert_eq!(w.open_at(utc("2026-03-29T04:00:00Z")), None);
    }

    #[test]
    fn the_parsed_window_keeps_its_fields() {
        let w = window(json!({"weekdays": ["sat", "sun"], "at": "02:00", "timezone": "Europe/Berlin"}));
        assert_eq!(w.name, "db");
        assert_eq!(w.comment, "weekly vacuum");
        assert_eq!(w.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(
            w.recurrence,
            Recurrence::Weekly {
                days: vec![Weekday::Sat, Weekday::Sun],
                at: NaiveTime::from_hms_opt(2, 0, 0).unwrap()
            }
        );
        assert!(w.matcher.is_targeted());
    }
}
