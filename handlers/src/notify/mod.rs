//! Notifiers: deliver one event to one handler (Slack, PagerDuty, log).
//!
//! [`Notifiers::build`] resolves the secrets of every handler in use when the
//! handler starts, so a missing one stops it before any result is consumed.
//! [`Notifiers::deliver`] retries a few times on its own (`retry`); past that
//! the caller's outbox keeps the event and tries again later.
//!
//! Secrets never leave this module in a log line, an error or `Debug` output:
//! every reason is scrubbed of them (`http::Redactor`), reqwest errors lose
//! their URL, and what holds a secret either has no `Debug` or hides it.

mod http;
mod log;
mod pacer;
mod pagerduty;
mod retry;
mod slack;
mod text;

#[cfg(test)]
pub(crate) mod receiver;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use protocol::Status;
use protocol::definition::HandlerDefinition;
use protocol::definition::handler::{Grouping, HandlerSpec, PAGERDUTY_EVENTS_URL};
use protocol::definition::secret::Secret;
use reqwest::{Client, Url};

use self::log::{LineWriter, Log};
use self::pacer::Pacer;
use self::pagerduty::PagerDuty;
use self::retry::RetryPolicy;
use self::slack::Slack;
use crate::event::Event;
use crate::group::Group;

/// The result of delivering one event to one handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// The receiver accepted it.
    Sent,
    /// The receiver refused it for good (e.g. Slack 400 `invalid_payload`,
    /// PagerDuty 400): logged with the receiver's reason and not retried.
    Dropped(String),
}

/// A delivery that may succeed later (5xx, 429, timeouts after the
/// notifier's own retries): the outbox keeps it and tries again.
#[derive(Debug, thiserror::Error)]
#[error("{handler}: {reason}")]
pub struct NotifyError {
    pub handler: String,
    pub reason: String,
}

/// A handler definition that cannot be used: reported at start, exit 64.
#[derive(Debug, thiserror::Error)]
#[error("handler {handler:?}: {reason}")]
pub struct NotifierConfigError {
    pub handler: String,
    pub reason: String,
}

impl NotifierConfigError {
    fn new(handler: &str, reason: impl Into<String>) -> Self {
        Self { handler: handler.to_owned(), reason: reason.into() }
    }
}

/// Every configured notifier, by handler name.
pub struct Notifiers {
    by_name: HashMap<String, Handler>,
}

struct Handler {
    definition: HandlerDefinition,
    notifier: Notifier,
}

enum Notifier {
    Slack(Slack),
    PagerDuty(PagerDuty),
    Log(Log),
}

impl Notifier {
    fn kind(&self) -> &'static str {
        match self {
            Self::Slack(_) => "slack",
            Self::PagerDuty(_) => "pagerduty",
            Self::Log(_) => "log",
        }
    }
}

/// What a build needs besides the definitions. Always [`Settings::standard`]
/// in the binary; tests shorten the waits and capture the log output.
struct Settings {
    retry: RetryPolicy,
    /// The least time between two messages to one Slack webhook.
    slack_interval: Duration,
    log_output: LineWriter,
    /// Whether a notifier may post over plain http (`PICKET_ALLOW_HTTP_NOTIFY=1`,
    /// for local receivers in tests); otherwise webhook and API URLs must be
    /// https, so a routing key or webhook token never crosses a network in clear.
    allow_http: bool,
}

/// Allows `http://` notifier URLs when set to `1` or `true`.
pub const ALLOW_HTTP_ENV: &str = "PICKET_ALLOW_HTTP_NOTIFY";

impl Settings {
    fn standard() -> Self {
        let allow_http = std::env::var(ALLOW_HTTP_ENV).is_ok_and(|v| matches!(v.trim(), "1" | "true"));
        Self {
            retry: RetryPolicy::STANDARD,
            slack_interval: Duration::from_secs(1),
            log_output: LineWriter::stdout(),
            allow_http,
        }
    }
}

impl Notifiers {
    /// Builds the notifiers for the handlers in `needed` (the ones some check
    /// names), resolving their secrets now: a missing secret is an error
    /// naming the handler and the variable or file. Handlers no check names
    /// are left alone, so their secrets need not exist.
    pub fn build(definitions: &[HandlerDefinition], needed: &BTreeSet<String>) -> Result<Self, NotifierConfigError> {
        Self::build_with(definitions, needed, Settings::standard())
    }

    fn build_with(
        definitions: &[HandlerDefinition],
        needed: &BTreeSet<String>,
        settings: Settings,
    ) -> Result<Self, NotifierConfigError> {
        let mut builder = Builder { settings, client: None, pacers: HashMap::new() };
        let mut by_name = HashMap::new();
        for name in needed {
            let definition = definitions
                .iter()
                .find(|d| d.name() == name)
                .ok_or_else(|| NotifierConfigError::new(name, "no handler of that name is defined"))?;
            let notifier = builder.notifier(definition)?;
            by_name.insert(name.clone(), Handler { definition: definition.clone(), notifier });
        }
        Ok(Self { by_name })
    }

    /// Whether `handler` takes events of this status (its `severities`).
    /// An unknown handler takes nothing.
    pub fn accepts(&self, handler: &str, status: Status) -> bool {
        self.by_name.get(handler).is_some_and(|h| h.definition.accepts(status))
    }

    /// How `handler` groups its events, if it does.
    pub fn grouping(&self, handler: &str) -> Option<Grouping> {
        self.by_name.get(handler).and_then(|h| h.definition.grouping().cloned())
    }

    /// A PagerDuty handler's storm threshold, if it has one.
    pub fn storm(&self, handler: &str) -> Option<u32> {
        self.by_name.get(handler).and_then(|h| h.definition.storm())
    }

    /// Delivers `group` to `handler` as one message (PagerDuty: the
    /// trigger of its storm summary).
    pub async fn deliver_group(&self, handler: &str, group: &Group) -> Result<Delivered, NotifyError> {
        let Some(configured) = self.by_name.get(handler) else {
            tracing::warn!(handler, events = group.events.len(), "no such handler is configured; group dropped");
            return Ok(Delivered::Dropped(format!("no handler named {handler:?} is configured")));
        };
        match &configured.notifier {
            Notifier::Slack(slack) => slack.deliver_group(group).await,
            Notifier::Log(log) => log.deliver_group(group),
            Notifier::PagerDuty(pagerduty) => pagerduty.deliver_storm(group).await,
        }
    }

    /// Delivers `event` to `handler`, with that notifier's rate limit and retries.
    ///
    /// An unknown handler (removed from the definitions since the event was
    /// decided) can never take the event, so it is dropped, not retried.
    pub async fn deliver(&self, handler: &str, event: &Event) -> Result<Delivered, NotifyError> {
        let Some(configured) = self.by_name.get(handler) else {
            tracing::warn!(handler, event = %event.kind, "no such handler is configured; notification dropped");
            return Ok(Delivered::Dropped(format!("no handler named {handler:?} is configured")));
        };
        match &configured.notifier {
            Notifier::Slack(slack) => slack.deliver(event).await,
            Notifier::PagerDuty(pagerduty) => pagerduty.deliver(event).await,
            Notifier::Log(log) => log.deliver(event),
        }
    }
}

#[cfg(test)]
impl Notifiers {
    /// Every handler of `definitions`, for tests against local receivers
    /// (`receiver`): plain http allowed, retries and Slack pacing in
    /// milliseconds.
    pub(crate) fn for_tests(definitions: &[HandlerDefinition]) -> Self {
        let needed = definitions.iter().map(|d| d.name().to_owned()).collect();
        Self::build_with(definitions, &needed, Settings::quick()).unwrap()
    }
}

#[cfg(test)]
impl Settings {
    /// Retries and pacing in milliseconds, for tests about outcomes rather
    /// than timing; plain http for the local receivers.
    fn quick() -> Self {
        Self {
            retry: RetryPolicy {
                attempts: 3,
                first_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(20),
                max_retry_after: Duration::from_secs(1),
            },
            slack_interval: Duration::from_millis(10),
            log_output: LineWriter::stdout(),
            allow_http: true,
        }
    }
}

/// Whether `event` ends its incident at PagerDuty (a resolve, a caught-up,
/// a flapping end on OK): what makes an incident leave a storm summary.
pub fn resolves_incident(event: &Event) -> bool {
    pagerduty::action(event) == pagerduty::Action::Resolve
}

/// Handler names and types only: never a secret.
impl fmt::Debug for Notifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.by_name.iter().map(|(name, h)| (name, h.notifier.kind())).collect();
        names.sort_unstable();
        f.debug_map().entries(names).finish()
    }
}

/// What notifiers share while they are built: one HTTP client for all of
/// them, one pacer per Slack webhook (two handlers posting to the same
/// webhook share Slack's rate limit).
struct Builder {
    settings: Settings,
    client: Option<Client>,
    pacers: HashMap<Url, Arc<Pacer>>,
}

impl Builder {
    fn notifier(&mut self, definition: &HandlerDefinition) -> Result<Notifier, NotifierConfigError> {
        let name = definition.name();
        Ok(match &definition.spec {
            HandlerSpec::Slack(spec) => {
                let webhook = webhook_url(name, &spec.webhook_url, self.settings.allow_http)?;
                let pacer = self.pacer(&webhook);
                Notifier::Slack(Slack::new(name, webhook, self.client(name)?, pacer, self.settings.retry))
            }
            HandlerSpec::Pagerduty(spec) => {
                let routing_key = resolve(name, "routing_key", &spec.routing_key)?;
                let api_url = match &spec.api_url {
                    Some(url) => url.clone(),
                    None => Url::parse(PAGERDUTY_EVENTS_URL)
                        .map_err(|e| NotifierConfigError::new(name, format!("PagerDuty's default URL: {e}")))?,
                };
                if let Some(why) = insecure(&api_url, self.settings.allow_http) {
                    return Err(NotifierConfigError::new(name, format!("api_url {api_url} {why}")));
                }
                Notifier::PagerDuty(PagerDuty::new(name, api_url, routing_key, self.client(name)?, self.settings.retry))
            }
            HandlerSpec::Log(_) => Notifier::Log(Log::new(name, self.settings.log_output.clone())),
        })
    }

    fn client(&mut self, handler: &str) -> Result<Client, NotifierConfigError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = http::client().map_err(|e| NotifierConfigError::new(handler, format!("HTTP client: {e}")))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    fn pacer(&mut self, webhook: &Url) -> Arc<Pacer> {
        let interval = self.settings.slack_interval;
        self.pacers.entry(webhook.clone()).or_insert_with(|| Arc::new(Pacer::new(interval))).clone()
    }
}

/// Reads a secret; errors name the field and where it was looked for, never
/// what was found.
fn resolve(handler: &str, field: &str, secret: &Secret) -> Result<String, NotifierConfigError> {
    match secret.resolve() {
        Ok(value) if value.trim().is_empty() => {
            Err(NotifierConfigError::new(handler, format!("{field}: {secret:?} is empty")))
        }
        Ok(value) => Ok(value.trim().to_owned()),
        Err(e) => Err(NotifierConfigError::new(handler, format!("{field}: {e}"))),
    }
}

fn webhook_url(handler: &str, secret: &Secret, allow_http: bool) -> Result<Url, NotifierConfigError> {
    let url = Url::parse(&resolve(handler, "webhook_url", secret)?)
        .map_err(|e| NotifierConfigError::new(handler, format!("webhook_url from {secret:?} is not a URL: {e}")))?;
    match insecure(&url, allow_http) {
        // The URL is the secret: the message names only where it came from.
        Some(why) => Err(NotifierConfigError::new(handler, format!("webhook_url from {secret:?} {why}"))),
        None => Ok(url),
    }
}

/// Why `url` may not carry a notification, if it may not.
fn insecure(url: &Url, allow_http: bool) -> Option<String> {
    match url.scheme() {
        "https" => None,
        "http" if allow_http => None,
        "http" => Some(format!("is not https (plain http only with {ALLOW_HTTP_ENV}=1)")),
        _ => Some("is not an https URL".to_owned()),
    }
}
