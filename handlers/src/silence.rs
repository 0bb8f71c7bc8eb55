//! Silences: "do not notify about these checks until then". One model for
//! ad-hoc silences made through the API and for maintenance windows kept in
//! git (those silence with the id `maintenance:<name>`).
//!
//! A silence gates notifications only: results, state and the event log keep
//! the real status, and record which silences applied (see
//! `alerting::gate`). Silences are never edited or deleted while they
//! matter: expiring one records who, when and why; a changed silence is a
//! new one.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use protocol::definition::{MaintenanceWindow, WindowSpan};
use protocol::silence::{SilenceMatch, SilenceTarget};
use serde::{Deserialize, Serialize};

/// One silence as stored and as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    #[serde(rename = "match")]
    pub matcher: SilenceMatch,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Expires early once everything it matches has been OK for two
    /// consecutive results (both after it started).
    pub ends_on_resolve: bool,
    pub comment: String,
    /// The API token's name that made it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Set when it was expired before `ends_at`, by hand or on resolve.
    #[serde(default)]
    pub expired: Option<Expiry>,
}

/// Who ended a silence early, when, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    pub at: DateTime<Utc>,
    pub by: String,
    /// e.g. "expired by hand", or [`RESOLVED`].
    pub reason: String,
}

/// The `by` of a silence picket expired itself (`ends_on_resolve`).
pub const EXPIRED_BY_PICKET: &str = "picket";
/// The `reason` of a silence expired because what it matched recovered.
pub const RESOLVED: &str = "resolved";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts later.
    Pending,
    /// Gating notifications now.
    Active,
    /// Past `ends_at`, or expired early.
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for SilenceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown silence state {0:?}: use active, pending or expired")]
pub struct UnknownSilenceState(pub String);

impl FromStr for SilenceState {
    type Err = UnknownSilenceState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "expired" => Ok(Self::Expired),
            other => Err(UnknownSilenceState(other.to_owned())),
        }
    }
}

impl Silence {
    /// A fresh id: 16 hex characters, short enough to type after `expire`.
    pub fn new_id() -> String {
        format!("{:016x}", fastrand::u64(..))
    }

    pub fn state_at(&self, now: DateTime<Utc>) -> SilenceState {
        if self.expired.is_some() || self.ends_at <= now {
            SilenceState::Expired
        } else if self.starts_at > now {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Whether this silence gates notifications about `target` at `now`.
    pub fn silences(&self, target: SilenceTarget<'_>, now: DateTime<Utc>) -> bool {
        self.state_at(now) == SilenceState::Active && self.matcher.matches(target)
    }
}

/// Where the silence id of a maintenance window starts.
const WINDOW_PREFIX: &str = "maintenance:";

/// The silence id of the maintenance window `name`.
pub fn window_silence_id(name: &str) -> String {
    format!("{WINDOW_PREFIX}{name}")
}

/// Whether a silence id is a maintenance window's (made in git, by `git`).
pub fn is_window(id: &str) -> bool {
    id.starts_with(WINDOW_PREFIX)
}

/// The `created_by` of a maintenance window's silence: its definition is
/// kept in git beside the checks.
pub const WINDOW_CREATOR: &str = "git";

impl Silence {
    /// The silence a maintenance window stands for while `span`, one of its
    /// openings, lasts; so the API lists open windows beside silences.
    pub fn of_window(window: &MaintenanceWindow, span: WindowSpan) -> Self {
        Self {
            id: window_silence_id(&window.name),
            matcher: window.matcher.clone(),
            starts_at: span.starts_at,
            ends_at: span.ends_at,
            ends_on_resolve: false,
            comment: window.comment.clone(),
            created_by: WINDOW_CREATOR.to_owned(),
            created_at: span.starts_at,
            expired: None,
        }
    }
}

/// The windows open at `now`, as silences.
pub fn open_windows(windows: &[MaintenanceWindow], now: DateTime<Utc>) -> Vec<Silence> {
    windows.iter().filter_map(|w| Some(Silence::of_window(w, w.open_at(now)?))).collect()
}

/// Everything that may silence: silences (typically those the store says are
/// active or in force) and the maintenance windows. The one judgement the
/// gate, and anything showing `silenced_by`, use.
pub struct Silencers {
    silences: Vec<Silence>,
    windows: Arc<[MaintenanceWindow]>,
}

impl Silencers {
    pub fn new(silences: Vec<Silence>, windows: Arc<[MaintenanceWindow]>) -> Self {
        Self { silences, windows }
    }

    /// The ids of the active silences and open windows (`maintenance:<name>`)
    /// that silence every one of `targets` at `now`, sorted; empty unless
    /// each target is silenced by at least one.
    pub fn silencing<'a>(
        &self,
        targets: impl IntoIterator<Item = SilenceTarget<'a>>,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        let mut ids = BTreeSet::new();
        for target in targets {
            let silences = self.silences.iter().filter(|s| s.silences(target, now)).map(|s| s.id.clone());
            let windows = self
                .windows
                .iter()
                .filter(|w| w.matcher.matches(target) && w.open_at(now).is_some())
                .map(|w| window_silence_id(&w.name));
            let matching: Vec<String> = silences.chain(windows).collect();
            if matching.is_empty() {
                return Vec::new();
            }
            ids.extend(matching);
        }
        ids.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn silence() -> Silence {
        Silence {
            id: Silence::new_id(),
            matcher: serde_json::from_str(r#"{"check": "api-*"}"#).unwrap(),
            starts_at: at(100),
            ends_at: at(200),
            ends_on_resolve: false,
            comment: "deploy".into(),
            created_by: "alice".into(),
            created_at: at(0),
            expired: None,
        }
    }

    #[test]
    fn a_silence_is_pending_then_active_then_expired() {
        let silence = silence();
        assert_eq!(silence.state_at(at(99)), SilenceState::Pending);
        assert_eq!(silence.state_at(at(100)), SilenceState::Active);
        assert_eq!(silence.state_at(at(199)), SilenceState::Active);
        assert_eq!(silence.state_at(at(200)), SilenceState::Expired);
        let expired =
            Silence { expired: Some(Expiry { at: at(150), by: "bob".into(), reason: "done".into() }), ..silence };
        assert_eq!(expired.state_at(at(120)), SilenceState::Expired);
    }

    #[test]
    fn only_an_active_silence_silences_what_it_matches() {
        let silence = silence();
        let labels = Default::default();
        let target = |check| SilenceTarget { check: Some(check), subscription: "default", labels: &labels };
        assert!(silence.silences(target("api-1"), at(150)));
        assert!(!silence.silences(target("web"), at(150)));
        assert!(!silence.silences(target("api-1"), at(50)));
    }

    #[test]
    fn silencers_need_every_target_silenced_and_name_windows() {
        let window = protocol::definition::window::parse_window(serde_json::json!({"kind": "maintenance",
            "name": "edge-night", "match": {"subscription": "edge"}, "cron": "0 23 * * *", "duration": "30m",
            "comment": "edge upgrades"}))
        .unwrap();
        let by_check = silence();
        let by_subscription = Silence {
            id: Silence::new_id(),
            matcher: serde_json::from_str(r#"{"subscription": "default"}"#).unwrap(),
            ..by_check.clone()
        };
        let silencers = Silencers::new(vec![by_check.clone(), by_subscription.clone()], Arc::from([window]));
        let labels = Default::default();
        let fleet = |subscription| SilenceTarget { check: None, subscription, labels: &labels };
        let api = SilenceTarget { check: Some("api-1"), subscription: "default", labels: &labels };
        let mut both = vec![by_check.id, by_subscription.id.clone()];
        both.sort();
        assert_eq!(silencers.silencing([api], at(150)), both);
        // at(0) is 22:13:20 UTC: the window is open from at(2800) to at(4600).
        assert_eq!(silencers.silencing([fleet("default"), fleet("edge")], at(150)), Vec::<String>::new());
        assert_eq!(silencers.silencing([fleet("edge")], at(2800)), ["maintenance:edge-night"]);
        assert_eq!(silencers.silencing([fleet("edge")], at(4600)), Vec::<String>::new());
        let windows = silencers.windows.clone();
        assert_eq!(open_windows(&windows, at(4600)), Vec::<Silence>::new());
        let open = open_windows(&windows, at(3000));
        assert_eq!((open[0].id.as_str(), open[0].created_by.as_str()), ("maintenance:edge-night", "git"));
        assert_eq!(
            (open[0].starts_at, open[0].ends_at, open[0].comment.as_str()),
            (at(2800), at(4600), "edge upgrades")
        );
        assert_eq!(open[0].state_at(at(3000)), SilenceState::Active);
        let at_window = Silence { starts_at: at(2000), ends_at: at(3000), ..by_subscription };
        let silencers = Silencers::new(vec![at_window.clone()], silencers.windows.clone());
        assert_eq!(
            silencers.silencing([fleet("default"), fleet("edge")], at(2900)),
            [at_window.id, "maintenance:edge-night".to_owned()]
        );
        assert!(is_window("maintenance:edge-night") && !is_window("3f00aa"));
    }

    #[test]
    fn ids_are_16_hex_characters_and_states_parse() {
        let id = Silence::new_id();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert_eq!("active".parse(), Ok(SilenceState::Active));
        assert_eq!("expired".parse(), Ok(SilenceState::Expired));
        let error = "gone".parse::<SilenceState>().unwrap_err();
        assert!(error.to_string().contains("\"gone\""), "{error}");
    }

    #[test]
    fn the_json_says_match() {
        let json = serde_json::to_value(silence()).unwrap();
        assert_eq!(json["match"], serde_json::json!({"check": "api-*"}));
        assert_eq!(json["expired"], serde_json::Value::Null);
        let back: Silence = serde_json::from_value(json).unwrap();
        assert_eq!(back.comment, "deploy");
    }
}
