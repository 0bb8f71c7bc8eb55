//! Grouped notifications: a handler with a `group` sends the events that
//! arrive within its `wait` and share their kind and `by` values as one
//! message (`Group`). The sender forms groups from the outbox's pending rows,
//! so a group is whatever the outbox holds, across restarts.

use protocol::definition::handler::{GroupBy, Grouping};

use chrono::{DateTime, Utc};

use crate::event::{ACROSS, Event, EventKind};

/// What the events of one group share: their kind and the value of each `by`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    kind: EventKind,
    shared: Vec<(GroupBy, String)>,
}

impl GroupKey {
    pub fn of(grouping: &Grouping, event: &Event) -> Self {
        let value = |by: &GroupBy| match by {
            GroupBy::Subscription => event.subscription.clone(),
            GroupBy::Check => event.check.clone(),
            GroupBy::Label(name) => event.labels.get(name).cloned().unwrap_or_default(),
        };
        Self { kind: event.kind, shared: grouping.by.iter().map(|by| (by.clone(), value(by))).collect() }
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }
}

/// Several events for one handler, sent as one message.
#[derive(Clone, Debug)]
pub struct Group {
    pub kind: EventKind,
    /// What every event shares, as `(name, value)`: `("subscription", "eu")`,
    /// `("team", "payments")` for `label:team`.
    pub shared: Vec<(String, String)>,
    /// Oldest first.
    pub events: Vec<Event>,
    /// Most events a message lists one per line.
    pub max: usize,
}

impl Group {
    pub fn new(key: GroupKey, events: Vec<Event>, grouping: &Grouping) -> Self {
        let shared = key
            .shared
            .into_iter()
            .map(|(by, value)| match by {
                GroupBy::Label(name) => (name, value),
                by => (by.to_string(), value),
            })
            .collect();
        let max = usize::try_from(grouping.max).unwrap_or(usize::MAX);
        Self { kind: key.kind, shared, events, max }
    }

    /// The events listed one per line, and how many more there are.
    pub fn listed(&self) -> (&[Event], usize) {
        let shown = self.events.len().min(self.max);
        (&self.events[..shown], self.events.len() - shown)
    }
}

/// A PagerDuty storm summary is a check-wide incident (subscription `*`) of
/// the pseudo-check `storm/<first event's id>`: no check name holds a `/`,
/// so its dedup key `picket/storm/<id>` is nobody else's, and its resolve is
/// an ordinary event of that incident.
pub fn summary_check(group: &Group) -> String {
    format!("storm/{}", group.events[0].id)
}

/// The resolve of the summary `check` (from [`summary_check`]) for `handler`,
/// decided when the last incident it covered resolved at `at`.
pub fn summary_resolve(check: &str, handler: &str, at: DateTime<Utc>) -> Event {
    Event {
        id: format!("{check}/resolved"),
        kind: EventKind::Resolved,
        check: check.to_owned(),
        subscription: ACROSS.to_owned(),
        runner: String::new(),
        status: protocol::Status::Ok,
        previous: None,
        output: "every incident of the storm resolved".to_owned(),
        metrics: Default::default(),
        labels: Default::default(),
        occurred_at: at,
        handlers: vec![handler.to_owned()],
        silenced_by: Vec::new(),
    }
}
