//! `GET /api/v1/events?check=&subscription=&kind=&since=&limit=&cursor=`:
//! the event log, newest first, in pages.
//!
//! A page ends with `next`, an opaque cursor (the place in the log after the
//! last event shown): pass it back as `cursor` with the same filters for the
//! next page. Events logged meanwhile do not shift the pages; they come
//! before the first.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use handlers::Event;
use handlers::store::{EventQuery, Store};
use serde::Serialize;

use crate::errors::ApiError;
use crate::params::Params;

/// One event as the API shows it: statuses by name, the incident it belongs to.
#[derive(Serialize)]
pub(crate) struct EventView {
    id: String,
    kind: &'static str,
    /// `None` for runner and pool events.
    check: Option<String>,
    subscription: String,
    runner: String,
    status: &'static str,
    previous: Option<&'static str>,
    output: String,
    metrics: BTreeMap<String, f64>,
    labels: BTreeMap<String, String>,
    occurred_at: DateTime<Utc>,
    handlers: Vec<String>,
    /// The silences that held this event's notifications, if any.
    silenced_by: Vec<String>,
    incident_key: String,
}

impl From<Event> for EventView {
    fn from(event: Event) -> Self {
        Self {
            incident_key: event.incident_key(),
            id: event.id,
            kind: event.kind.as_str(),
            check: Some(event.check).filter(|c| !c.is_empty()),
            subscription: event.subscription,
            runner: event.runner,
            status: event.status.name(),
            previous: event.previous.map(|s| s.name()),
            output: event.output,
            metrics: event.metrics,
            labels: event.labels,
            occurred_at: event.occurred_at,
            handlers: event.handlers,
            silenced_by: event.silenced_by,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct EventPage {
    events: Vec<EventView>,
    /// The cursor of the next page; `None` on the last.
    next: Option<String>,
}

/// The cursor is the sequence number of the last event shown, in a form
/// clients should not take apart: it may change with the store.
fn cursor(seq: i64) -> String {
    format!("s{seq:x}")
}

fn parse_cursor(text: &str) -> Result<i64, ApiError> {
    text.strip_prefix('s')
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .filter(|seq| *seq > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("cursor: {text:?} is not a cursor this API gave out")))
}

pub(crate) async fn list(State(store): State<Store>, params: Params) -> Result<Json<EventPage>, ApiError> {
    let kinds = params.kinds()?;
    let limit = params.limit()?;
    let query = EventQuery {
        check: params.one("check")?,
        subscription: params.one("subscription")?,
        kinds: &kinds,
        since: params.since(Utc::now())?,
        before: params.one("cursor")?.map(parse_cursor).transpose()?,
        // One more than a page tells whether another page follows.
        limit: limit + 1,
    };
    let mut events = store.events(&query).await?;
    let next = (events.len() > limit as usize).then(|| {
        events.truncate(limit as usize);
        cursor(events.last().map_or(0, |last| last.seq))
    });
    Ok(Json(EventPage { events: events.into_iter().map(|logged| EventView::from(logged.event)).collect(), next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_others_are_refused() {
        assert_eq!(parse_cursor(&cursor(4711)).unwrap(), 4711);
        for bad in ["", "s", "4711", "sZZ", "s-1", "s0"] {
            let Err(ApiError::BadRequest(message)) = parse_cursor(bad) else { panic!("{bad:?} accepted") };
            assert!(message.starts_with("cursor:"), "{message}");
        }
    }
}
