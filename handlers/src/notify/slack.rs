//! Slack incoming webhooks: one coloured attachment per event, paced to one
//! message per second per webhook.

use std::sync::Arc;

use protocol::Status;
use reqwest::{Client, Url};
use serde::Serialize;

use super::http::{self, Redactor};
use super::pacer::Pacer;
use super::retry::{self, Attempt, RetryPolicy};
use super::text::{self, ELLIPSIS};
use super::{Delivered, NotifyError};
use crate::event::Event;
use crate::group::Group;

/// Slack's guidance for a block of text; attachment text stays within it.
const TEXT_CHARS: usize = 3000;
/// Titles and field values are shown on one line or two: keep them short.
const TITLE_CHARS: usize = 150;
const FIELD_CHARS: usize = 300;
/// The plain-text version used in push notifications and screen readers.
const FALLBACK_CHARS: usize = 300;

/// Metrics worth a field of their own when present: (name, title, unit).
const KEY_METRICS: &[(&str, &str, &str)] = &[
    ("total", "Total", "ms"),
    ("ttfb", "TTFB", "ms"),
    ("query", "DNS query", "ms"),
    ("status_code", "HTTP status", ""),
    ("days_left", "Days left", "days"),
    ("chain_days_left", "Chain days left", "days"),
    ("cert_days_left", "Certificate days left", "days"),
];

/// One Slack handler. Handlers sharing a webhook share its [`Pacer`].
pub(super) struct Slack {
    name: String,
    webhook: Url,
    redactor: Redactor,
    client: Client,
    pacer: Arc<Pacer>,
    retry: RetryPolicy,
}

impl Slack {
    pub fn new(name: &str, webhook: Url, client: Client, pacer: Arc<Pacer>, retry: RetryPolicy) -> Self {
        let redactor = Redactor::for_url(&webhook);
        Self { name: name.to_owned(), webhook, redactor, client, pacer, retry }
    }

    pub async fn deliver(&self, event: &Event) -> Result<Delivered, NotifyError> {
        self.post(&Message::new(event), event).await
    }

    /// One message for the whole group; retries are keyed by its first event.
    pub async fn deliver_group(&self, group: &Group) -> Result<Delivered, NotifyError> {
        self.post(&Message::group(group), &group.events[0]).await
    }

    async fn post(&self, message: &Message, event: &Event) -> Result<Delivered, NotifyError> {
        retry::deliver(&self.retry, &self.name, event, || async move {
            let mut turn = self.pacer.turn().await;
            let attempt = http::post_json(&self.client, &self.webhook, message, &self.redactor).await;
            // Capped like the retry itself: a very long Retry-After sends
            // queued events back to the outbox rather than parking them here.
            if let Attempt::Retry { after: Some(wait), .. } = &attempt {
                turn.hold_off((*wait).min(self.retry.max_retry_after));
            }
            attempt
        })
        .await
    }
}

/// An incoming-webhook body: a single legacy attachment, which is what gives
/// the message its coloured bar.
#[derive(Serialize)]
struct Message {
    attachments: [Attachment; 1],
}

#[derive(Serialize)]
struct Attachment {
    color: &'static str,
    fallback: String,
    title: String,
    text: String,
    fields: Vec<Field>,
    footer: &'static str,
    ts: i64,
}

#[derive(Serialize)]
struct Field {
    title: &'static str,
    value: String,
    short: bool,
}

impl Field {
    fn short(title: &'static str, value: impl AsRef<str>) -> Self {
        Self { title, value: escape_within(value.as_ref(), FIELD_CHARS), short: true }
    }
}

impl Message {
    fn new(event: &Event) -> Self {
        let headline = text::headline(event);
        let attachment = Attachment {
            color: colour(event.status),
            fallback: escape_within(&format!("{headline}: {}", event.output), FALLBACK_CHARS),
            title: escape_within(&headline, TITLE_CHARS),
            text: escape_within(&event.output, TEXT_CHARS),
            fields: fields(event),
            footer: "picket",
            ts: event.occurred_at.timestamp(),
        };
        Self { attachments: [attachment] }
    }

    /// A summary title, one line per listed event, then "and N more".
    fn group(group: &Group) -> Self {
        let headline = text::group_headline(group);
        let (listed, more) = group.listed();
        let mut lines: Vec<_> = listed
            .iter()
            .map(|e| escape_within(&format!("{}: {}", text::headline(e), e.output), TITLE_CHARS))
            .collect();
        if more > 0 {
            lines.push(format!("and {more} more"));
        }
        let worst = group.events.iter().map(|e| e.status).max_by_key(|s| severity(*s)).unwrap_or(Status::Ok);
        let last = group.events.iter().map(|e| e.occurred_at).max().unwrap_or_default();
        let attachment = Attachment {
            color: colour(worst),
            fallback: escape_within(&headline, FALLBACK_CHARS),
            title: escape_within(&headline, TITLE_CHARS),
            text: lines.join("\n"),
            fields: vec![
                Field::short("Event", group.kind.as_str()),
                Field::short("Count", group.events.len().to_string()),
            ],
            footer: "picket",
            ts: last.timestamp(),
        };
        Self { attachments: [attachment] }
    }
}

/// Which colour a group of mixed statuses takes: the worst.
fn severity(status: Status) -> u8 {
    match status {
        Status::Ok => 0,
        Status::Unknown => 1,
        Status::Warning => 2,
        Status::Critical => 3,
    }
}

/// Green, amber, red, grey: Slack's own "good" / "warning" / "danger" hues.
fn colour(status: Status) -> &'static str {
    match status {
        Status::Ok => "#2eb886",
        Status::Warning => "#daa038",
        Status::Critical => "#a30200",
        Status::Unknown => "#808080",
    }
}

fn fields(event: &Event) -> Vec<Field> {
    let mut fields = Vec::new();
    if !event.check.is_empty() {
        fields.push(Field::short("Check", &event.check));
    }
    fields.push(Field::short("Subscription", &event.subscription));
    if !event.runner.is_empty() {
        fields.push(Field::short("Runner", &event.runner));
    }
    let status = match event.previous {
        Some(previous) if previous != event.status => format!("{} → {}", previous.name(), event.status.name()),
        _ => event.status.name().to_owned(),
    };
    fields.push(Field::short("Status", status));
    fields.push(Field::short("Event", event.kind.as_str()));
    for (name, title, unit) in KEY_METRICS {
        if let Some(value) = event.metrics.get(*name) {
            fields.push(Field::short(title, format!("{} {unit}", number(*value)).trim_end()));
        }
    }
    if !event.labels.is_empty() {
        let labels: Vec<_> = event.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        fields.push(Field { short: false, ..Field::short("Labels", labels.join(", ")) });
    }
    fields
}

/// Whole numbers without decimals, others with one.
fn number(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.1}") }
}

/// `text` escaped as Slack requires (`&`, `<`, `>`: otherwise output from a
/// probed target could form links or `<!channel>` mentions) and kept within
/// `max` characters. Cuts fall between characters and never inside an entity.
fn escape_within(text: &str, max: usize) -> String {
    let pieces = || {
        text.chars().map(|c| match c {
            '&' => Piece::Entity("&amp;"),
            '<' => Piece::Entity("&lt;"),
            '>' => Piece::Entity("&gt;"),
            c => Piece::Char(c),
        })
    };
    let total: usize = pieces().map(|p| p.chars()).sum();
    let budget = if total <= max { max } else { max.saturating_sub(1) };
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)));
    let mut used = 0;
    for piece in pieces() {
        if used + piece.chars() > budget {
            break;
        }
        used += piece.chars();
        match piece {
            Piece::Entity(entity) => out.push_str(entity),
            Piece::Char(c) => out.push(c),
        }
    }
    if total > max && max > 0 {
        out.push(ELLIPSIS);
    }
    out
}

enum Piece {
    Char(char),
    Entity(&'static str),
}

impl Piece {
    fn chars(&self) -> usize {
        match self {
            Self::Char(_) => 1,
            Self::Entity(entity) => entity.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_follow_the_status() {
        let colours: Vec<_> = Status::ALL.into_iter().map(colour).collect();
        assert_eq!(colours, ["#2eb886", "#daa038", "#a30200", "#808080"]);
    }

    #[test]
    fn escaping_keeps_within_the_limit_and_never_cuts_an_entity() {
        assert_eq!(escape_within("a<b>&c", 100), "a&lt;b&gt;&amp;c");
        assert_eq!(escape_within("<!channel>", 100), "&lt;!channel&gt;");
        // "ab&lt;" would be 6 characters: the cut falls before the entity.
        assert_eq!(escape_within("ab<cdef", 6), "ab…");
        assert_eq!(escape_within("ééééé", 3), "éé…");
        assert_eq!(escape_within("abc", 3), "abc");
        let long = "ü<".repeat(5000);
        let cut = escape_within(&long, TEXT_CHARS);
        assert!(cut.chars().count() <= TEXT_CHARS);
        assert!(cut.ends_with(ELLIPSIS));
        let whole = escape_within(&long, usize::MAX);
        assert!(whole.starts_with(cut.trim_end_matches(ELLIPSIS)), "cut inside an entity");
    }

    #[test]
    fn numbers_are_whole_or_one_decimal() {
        assert_eq!(number(200.0), "200");
        assert_eq!(number(12.345), "12.3");
    }
}
