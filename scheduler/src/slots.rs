//! Slot maths. Slots are absolute, `phase + k × interval` since the epoch,
//! where `phase` is a stable hash of the check name: every scheduler computes
//! the same slots, load spreads across the interval, and a slow run never
//! shifts later ones.

use std::time::Duration;

use chrono::{DateTime, Utc};
use protocol::CheckDefinition;
use protocol::definition::Schedule;

/// One planned run of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub at: DateTime<Utc>,
    /// The latest useful start: a request not started by then is stale.
    pub deadline: DateTime<Utc>,
}

/// A request must stay startable at least this long, whatever the timeout.
const MIN_START_WINDOW: Duration = Duration::from_secs(1);

/// The check's offset within its interval, from a hash of its name.
pub fn phase(name: &str, interval: Duration) -> Duration {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(u64::from_be_bytes(first) % interval_ms)
}

/// The first slot of `check` strictly after `after`.
pub fn next_slot(check: &CheckDefinition, after: DateTime<Utc>) -> Option<Slot> {
    let (at, next) = match check.schedule() {
        Schedule::Every(interval) => {
            let interval_ms = i64::try_from(interval.as_millis()).ok()?.max(1);
            let phase_ms = i64::try_from(phase(check.name(), interval).as_millis()).ok()?;
            let since = after.timestamp_millis() - phase_ms;
            let k = since.div_euclid(interval_ms) + 1;
            let at = DateTime::from_timestamp_millis(phase_ms + k * interval_ms)?;
            (at, at + chrono::Duration::milliseconds(interval_ms))
        }
        Schedule::Cron(cron) => {
            let at = cron.next_after(after)?;
            (at, cron.next_after(at)?)
        }
    };
    let window = (next - at).to_std().ok()?.saturating_sub(check.timeout()).max(MIN_START_WINDOW);
    Some(Slot { at, deadline: at + chrono::Duration::from_std(window).ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::definition::parse_check;
    use serde_json::json;

    fn check(fields: serde_json::Value) -> CheckDefinition {
        let mut base = json!({"name": "api", "type": "tls", "host": "example.com"});
        base.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        parse_check(base).unwrap()
    }

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn interval_slots_are_absolute_and_splayed() {
        let c = check(json!({"interval": "10s"}));
        let phase_ms = phase("api", Duration::from_secs(10)).as_millis() as i64;
        let start = t(1_700_000_000_000);
        let first = next_slot(&c, start).unwrap();
        assert!(first.at > start && first.at <= start + chrono::Duration::seconds(10));
        assert_eq!(first.at.timestamp_millis().rem_euclid(10_000), phase_ms);
        let second = next_slot(&c, first.at).unwrap();
        assert_eq!(second.at - first.at, chrono::Duration::seconds(10));
        // Asking from just before a slot gives that slot: no drift from late wake-ups.
        assert_eq!(next_slot(&c, first.at - chrono::Duration::milliseconds(1)).unwrap(), first);
    }

    #[test]
    fn names_spread_across_the_interval() {
        let interval = Duration::from_secs(10);
        let phases: std::collections::HashSet<u128> =
            (0..100).map(|i| phase(&format!("check-{i}"), interval).as_millis() / 1000).collect();
        assert!(phases.len() >= 8, "phases bunch up: {phases:?}");
    }

    #[test]
    fn the_deadline_leaves_room_for_the_timeout() {
        let c = check(json!({"interval": "10s", "timeout": "3s"}));
        let slot = next_slot(&c, t(0)).unwrap();
        assert_eq!(slot.deadline - slot.at, chrono::Duration::seconds(7));
        let tight = check(json!({"interval": "2s", "timeout": "1900ms"}));
        let slot = next_slot(&tight, t(0)).unwrap();
        assert_eq!(slot.deadline - slot.at, chrono::Duration::seconds(1), "at least 1s to start");
    }

    #[test]
    fn cron_slots_fire_on_cron_times() {
        let c = check(json!({"cron": "*/15 * * * * *", "timeout": "5s"}));
        let slot = next_slot(&c, t(1_700_000_001_000)).unwrap();
        assert_eq!(slot.at.timestamp() % 15, 0);
        assert_eq!(slot.deadline - slot.at, chrono::Duration::seconds(10));
        let five = check(json!({"cron": "0 * * * *"}));
        let slot = next_slot(&five, t(1_700_000_001_000)).unwrap();
        assert_eq!(slot.at.timestamp() % 3600, 0);
    }
}
