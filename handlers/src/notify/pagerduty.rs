//! PagerDuty Events API v2: one `enqueue` call per event, keyed by the
//! incident so triggers, reminders, replays and the resolve all land on one
//! PagerDuty alert.

use std::collections::BTreeMap;

use chrono::SecondsFormat;
use protocol::Status;
use reqwest::{Client, Url};
use serde::Serialize;

use super::http::{self, Redactor};
use super::retry::{self, RetryPolicy};
use super::text;
use super::{Delivered, NotifyError};
use crate::event::{Event, EventKind};
use crate::group::{Group, summary_check};

/// PagerDuty's limit on `payload.summary`.
const SUMMARY_CHARS: usize = 1024;
/// The output in `custom_details`: generous, but far below the API's 512 KB.
const DETAILS_OUTPUT_CHARS: usize = 8192;

/// One PagerDuty handler (one integration's routing key).
pub(super) struct PagerDuty {
    name: String,
    api_url: Url,
    routing_key: String,
    redactor: Redactor,
    client: Client,
    retry: RetryPolicy,
}

impl PagerDuty {
    pub fn new(name: &str, api_url: Url, routing_key: String, client: Client, retry: RetryPolicy) -> Self {
        let redactor = Redactor::for_key(&routing_key);
        Self { name: name.to_owned(), api_url, routing_key, redactor, client, retry }
    }

    pub async fn deliver(&self, event: &Event) -> Result<Delivered, NotifyError> {
        self.post(&Enqueue::new(&self.routing_key, event), event).await
    }

    /// The trigger of a storm's summary incident (its resolve is an event of
    /// its own, see `group::summary_resolve`).
    pub async fn deliver_storm(&self, group: &Group) -> Result<Delivered, NotifyError> {
        self.post(&Enqueue::storm(&self.routing_key, group), &group.events[0]).await
    }

    async fn post<D: Serialize + Sync>(&self, body: &Enqueue<'_, D>, event: &Event) -> Result<Delivered, NotifyError> {
        retry::deliver(&self.retry, &self.name, event, || {
            http::post_json(&self.client, &self.api_url, body, &self.redactor)
        })
        .await
    }
}

/// The body of `POST /v2/enqueue`. No `Debug`: it carries the routing key.
#[derive(Serialize)]
struct Enqueue<'a, D> {
    routing_key: &'a str,
    event_action: Action,
    dedup_key: String,
    /// Only triggers carry one: PagerDuty reads nothing but the key from a resolve.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a, D>>,
    client: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Action {
    Trigger,
    Resolve,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

#[derive(Serialize)]
struct Payload<'a, D> {
    summary: String,
    source: &'a str,
    severity: Severity,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<&'a str>,
    group: &'a str,
    class: &'static str,
    custom_details: D,
}

#[derive(Serialize)]
struct Details<'a> {
    event: &'static str,
    event_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<&'static str>,
    output: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    runner: &'a str,
    metrics: &'a BTreeMap<String, f64>,
    labels: &'a BTreeMap<String, String>,
}

/// A storm summary's details: how many incidents, and the first `max`.
#[derive(Serialize)]
struct StormDetails {
    event: &'static str,
    count: usize,
    incidents: Vec<String>,
    more: usize,
}

impl<'a> Enqueue<'a, StormDetails> {
    fn storm(routing_key: &'a str, group: &'a Group) -> Self {
        let (listed, more) = group.listed();
        let worst = group.events.iter().map(severity).min_by_key(|s| *s as u8).unwrap_or(Severity::Info);
        let first = &group.events[0];
        let payload = Payload {
            summary: text::truncate(&text::group_headline(group), SUMMARY_CHARS),
            source: "picket",
            severity: worst,
            timestamp: first.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            component: None,
            group: &first.subscription,
            class: "storm",
            custom_details: StormDetails {
                event: "storm",
                count: group.events.len(),
                incidents: listed.iter().map(|e| format!("{}: {}", text::headline(e), e.output)).collect(),
                more,
            },
        };
        // The dedup key of the summary's check-wide pseudo-check, which its
        // resolve event carries too.
        let dedup_key = format!("picket/{}", summary_check(group));
        Self { routing_key, event_action: Action::Trigger, dedup_key, payload: Some(payload), client: "picket" }
    }
}

impl<'a> Enqueue<'a, Details<'a>> {
    fn new(routing_key: &'a str, event: &'a Event) -> Self {
        let event_action = action(event);
        let payload = (event_action == Action::Trigger).then(|| Payload {
            summary: text::truncate(&format!("{}: {}", text::headline(event), event.output), SUMMARY_CHARS),
            source: [&event.runner, &event.subscription].into_iter().find(|s| !s.is_empty()).map_or("picket", |s| s),
            severity: severity(event),
            timestamp: event.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            component: (!event.check.is_empty()).then_some(event.check.as_str()),
            group: &event.subscription,
            class: event.kind.as_str(),
            custom_details: Details {
                event: event.kind.as_str(),
                event_id: &event.id,
                status: event.status.name(),
                previous: event.previous.map(Status::name),
                output: text::truncate(&event.output, DETAILS_OUTPUT_CHARS),
                runner: &event.runner,
                metrics: &event.metrics,
                labels: &event.labels,
            },
        });
        Self { routing_key, event_action, dedup_key: event.incident_key(), payload, client: "picket" }
    }
}

/// Trigger while something needs a human, resolve when it no longer does.
///
/// Flapping: its start triggers (a check that cannot settle needs a look, and
/// the state machine holds back per-flip events meanwhile). Its end resolves
/// only if the check settled on OK; settling on a failure is the problem
/// itself, so it triggers (updating the same alert) rather than closing it.
pub(super) fn action(event: &Event) -> Action {
    match event.kind {
        EventKind::Problem
        | EventKind::Reminder
        | EventKind::FlappingStart
        | EventKind::RunnerLost
        | EventKind::Missed => Action::Trigger,
        EventKind::Resolved | EventKind::RunnerBack | EventKind::CaughtUp => Action::Resolve,
        EventKind::FlappingEnd if event.status == Status::Ok => Action::Resolve,
        EventKind::FlappingEnd => Action::Trigger,
    }
}

/// PagerDuty severity from the status; UNKNOWN (the check could not tell) is
/// `error`. A flapping start is at least `warning` even when the flip that
/// started it landed on OK, so it is not filed as mere information.
pub(super) fn severity(event: &Event) -> Severity {
    match (event.status, event.kind) {
        (Status::Critical, _) => Severity::Critical,
        (Status::Unknown, _) => Severity::Error,
        (Status::Warning, _) | (Status::Ok, EventKind::FlappingStart) => Severity::Warning,
        (Status::Ok, _) => Severity::Info,
    }
}
