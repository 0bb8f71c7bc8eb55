//! Logs when maintenance windows open and close, so that an operator sees a
//! window from git take effect (what a window silences is alerting's part).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use protocol::definition::{MaintenanceWindow, WindowSpan};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the windows are looked at; a window opens or closes in the log
/// at most this late.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Until `stop`, logs each opening and closing of the windows `windows` holds
/// (reloads included: a window removed while open closes).
pub async fn log_openings(windows: watch::Receiver<Arc<[MaintenanceWindow]>>, stop: CancellationToken) {
    let mut openings = Openings::default();
    let mut every = tokio::time::interval(LOOK_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let current = windows.borrow().clone();
        for change in openings.update(&current, Utc::now()) {
            match change {
                Change::Opened { window, span } => tracing::info!(
                    window = %window.name,
                    starts_at = %span.starts_at.to_rfc3339(),
                    ends_at = %span.ends_at.to_rfc3339(),
                    comment = %window.comment,
                    "maintenance window open"
                ),
                Change::Closed { name } => tracing::info!(window = %name, "maintenance window closed"),
            }
        }
    }
}

/// The windows open at the last look, by name.
#[derive(Default)]
struct Openings {
    open: BTreeMap<String, WindowSpan>,
}

#[derive(Debug, PartialEq)]
enum Change<'a> {
    Opened { window: &'a MaintenanceWindow, span: WindowSpan },
    Closed { name: String },
}

impl Openings {
    /// What changed since the last look: a new opening of a window (also one
    /// that follows the previous at once) is opened, a window open then and
    /// not now is closed.
    fn update<'a>(&mut self, windows: &'a [MaintenanceWindow], now: DateTime<Utc>) -> Vec<Change<'a>> {
        let mut changes = Vec::new();
        let mut open = BTreeMap::new();
        for window in windows {
            if let Some(span) = window.open_at(now) {
                if self.open.get(&window.name) != Some(&span) {
                    changes.push(Change::Opened { window, span });
                }
                open.insert(window.name.clone(), span);
            }
        }
        for name in self.open.keys() {
            if !open.contains_key(name) {
                changes.push(Change::Closed { name: name.clone() });
            }
        }
        self.open = open;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::definition::window::parse_window;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_window_opens_and_closes_on_a_clock_the_test_controls() {
        let window = parse_window(json!({"kind": "maintenance", "name": "deploy", "match": {"subscription": "eu"},
            "cron": "*/20 * * * * *", "duration": "5s", "comment": "every 20 s, for 5 s"}))
        .unwrap();
        let windows = vec![window];
        let mut openings = Openings::default();
        assert_eq!(openings.update(&windows, at("2026-01-04T10:00:17Z")), vec![]);
        let span = WindowSpan { starts_at: at("2026-01-04T10:00:20Z"), ends_at: at("2026-01-04T10:00:25Z") };
        assert_eq!(
            openings.update(&windows, at("2026-01-04T10:00:20Z")),
            vec![Change::Opened { window: &windows[0], span }]
        );
        assert_eq!(openings.update(&windows, at("2026-01-04T10:00:24.9Z")), vec![], "still the same opening");
        assert_eq!(
            openings.update(&windows, at("2026-01-04T10:00:25Z")),
            vec![Change::Closed { name: "deploy".into() }]
        );
        openings.update(&windows, at("2026-01-04T10:00:41Z"));
        assert_eq!(openings.update(&[], at("2026-01-04T10:00:42Z")), vec![Change::Closed { name: "deploy".into() }]);
    }
}
