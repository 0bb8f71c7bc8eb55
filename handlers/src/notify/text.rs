//! Text shared by the renderers: one headline per event, and cutting to a
//! receiver's length limits without splitting a character.

use crate::event::{ACROSS, Event, EventKind};
use crate::group::Group;

/// The mark left where text was cut.
pub(super) const ELLIPSIS: char = '…';

/// `text` cut to at most `max` characters (Unicode scalar values, never inside
/// a UTF-8 sequence), ending with "…" when something was cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) if max == 0 => String::new(),
        Some(_) => {
            let keep = text.char_indices().nth(max - 1).map_or(text.len(), |(at, _)| at);
            let mut cut = text[..keep].to_owned();
            cut.push(ELLIPSIS);
            cut
        }
    }
}

/// What happened and to what, in one short line: the Slack title, and the
/// start of the PagerDuty summary.
pub(super) fn headline(event: &Event) -> String {
    let status = event.status.name();
    let subject = subject(event);
    match event.kind {
        EventKind::Problem => match event.previous {
            Some(previous) if previous != event.status => {
                format!("{status} (was {}): {subject}", previous.name())
            }
            _ => format!("{status}: {subject}"),
        },
        EventKind::Resolved => format!("RESOLVED: {subject}"),
        EventKind::Reminder => format!("STILL {status}: {subject}"),
        EventKind::FlappingStart => format!("FLAPPING: {subject}"),
        EventKind::FlappingEnd => format!("STOPPED FLAPPING, now {status}: {subject}"),
        EventKind::RunnerLost => format!("RUNNER LOST: {subject}"),
        EventKind::RunnerBack => format!("RUNNER BACK: {subject}"),
        EventKind::Missed => format!("MISSED RUNS: {subject}"),
        EventKind::CaughtUp => format!("CAUGHT UP: {subject}"),
    }
}

/// One line for a whole group: `12 checks CRITICAL on subscription eu`.
pub(super) fn group_headline(group: &Group) -> String {
    let count = group.events.len();
    let noun = if group.events.iter().all(|e| !e.check.is_empty()) { "checks" } else { "events" };
    let mut statuses: Vec<_> = group.events.iter().map(|e| e.status.name()).collect();
    statuses.dedup();
    let status = match statuses.as_slice() {
        [one] => *one,
        _ => "failing",
    };
    let what = match group.kind {
        EventKind::Problem => format!("{count} {noun} {status}"),
        EventKind::Resolved => format!("{count} {noun} RESOLVED"),
        EventKind::Reminder => format!("{count} {noun} STILL {status}"),
        kind => format!("{count} {kind} events"),
    };
    let shared: Vec<_> = group.shared.iter().map(|(name, value)| format!("{name} {value}")).collect();
    format!("{what} on {}", shared.join(", "))
}

fn subject(event: &Event) -> String {
    match (event.check.is_empty(), event.runner.is_empty()) {
        (false, _) if event.subscription == ACROSS => format!("{} across its subscriptions", event.check),
        (false, _) => format!("{} on {}", event.check, event.subscription),
        (true, false) => format!("runner {} in {}", event.runner, event.subscription),
        (true, true) => format!("subscription {}", event.subscription),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_counts_characters_and_never_splits_one() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ééééé", 4), "ééé…");
        assert_eq!(truncate("🦀🦀🦀", 2), "🦀…");
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(truncate("", 0), "");
    }
}
