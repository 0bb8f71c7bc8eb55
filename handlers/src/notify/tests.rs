//! Notifiers against local receivers (`receiver`): what is sent, how often,
//! how failures end, and that no secret leaks on the way.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use protocol::definition::handler::parse_handler;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::receiver::{Receiver, Reply};
use super::*;
use crate::event::EventKind;
use crate::group::GroupKey;

const SLACK_PATH: &str = "/services/T0/B0/SECRETTOKEN";
const ROUTING_KEY: &str = "R0UTINGKEY0SECRET0000000000000PD";
const PD_PATH: &str = "/v2/enqueue";
const PD_ACCEPTED: &str = r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#;

/// A check event as the state machine would raise it.
fn event(kind: EventKind, status: Status) -> Event {
    Event {
        id: format!("evt-{kind}"),
        kind,
        check: "api-health".into(),
        subscription: "aws-us-east-1".into(),
        runner: "runner-7".into(),
        status,
        previous: Some(Status::Ok),
        output: "HTTP 503 from https://api.example.com/healthz in 120 ms".into(),
        metrics: BTreeMap::from([("total".into(), 120.4), ("ttfb".into(), 98.0), ("days_left".into(), 41.5)]),
        labels: BTreeMap::from([("team".into(), "platform".into())]),
        occurred_at: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
        handlers: vec!["ops-slack".into()],
        silenced_by: Vec::new(),
    }
}

/// Definitions whose secrets live in files (tests cannot set environment
/// variables without `unsafe`); the files only need to outlive `build`.
struct Definitions {
    dir: TempDir,
    list: Vec<HandlerDefinition>,
}

impl Definitions {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), list: Vec::new() }
    }

    fn secret(&self, name: &str, value: &str) -> Value {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        json!({ "file": path })
    }

    fn add(mut self, definition: Value) -> Self {
        self.list.push(parse_handler(definition).unwrap());
        self
    }

    fn slack(self, name: &str, receiver: &Receiver) -> Self {
        let secret = self.secret(name, &receiver.url(SLACK_PATH));
        self.add(json!({ "name": name, "type": "slack", "webhook_url": secret }))
    }

    fn pagerduty(self, name: &str, receiver: &Receiver) -> Self {
        let secret = self.secret(name, ROUTING_KEY);
        self.add(json!({ "name": name, "type": "pagerduty", "routing_key": secret, "api_url": receiver.url(PD_PATH) }))
    }

    /// Builds with plain http allowed: the receivers are loopback http servers.
    fn build(&self, settings: Settings) -> Result<Notifiers, NotifierConfigError> {
        self.build_exactly(Settings { allow_http: true, ..settings })
    }

    fn build_exactly(&self, settings: Settings) -> Result<Notifiers, NotifierConfigError> {
        let needed = self.list.iter().map(|d| d.name().to_owned()).collect();
        Notifiers::build_with(&self.list, &needed, settings)
    }
}

/// A shared byte buffer: the log notifier's output or the tracing output.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn slack_waits_out_a_429_retry_after_then_delivers_once() {
    let slack = Receiver::start(vec![Reply::new(429, "rate_limited").retry_after(2), Reply::new(200, "ok")]).await;
    let notifiers = Definitions::new().slack("ops-slack", &slack).build(Settings::standard()).unwrap();
    let delivered = notifiers.deliver("ops-slack", &event(EventKind::Problem, Status::Critical)).await.unwrap();
    assert_eq!(delivered, Delivered::Sent);
    let received = slack.received();
    assert_eq!(received.len(), 2, "one refused request, one delivered");
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}, before Retry-After");
    assert_eq!(received[0].body, received[1].body);
}

#[tokio::test]
async fn slack_retries_a_500() {
    let slack = Receiver::start(vec![Reply::new(500, "internal_error"), Reply::new(200, "ok")]).await;
    let notifiers = Definitions::new().slack("ops-slack", &slack).build(Settings::standard()).unwrap();
    let delivered = notifiers.deliver("ops-slack", &event(EventKind::Problem, Status::Critical)).await.unwrap();
    assert_eq!(delivered, Delivered::Sent);
    assert_eq!(slack.received().len(), 2);
}

#[tokio::test]
async fn slack_drops_a_400_with_slacks_reason() {
    let slack = Receiver::start(vec![Reply::new(400, "invalid_payload"), Reply::new(200, "ok")]).await;
    let notifiers = Definitions::new().slack("ops-slack", &slack).build(Settings::standard()).unwrap();
    let delivered = notifiers.deliver("ops-slack", &event(EventKind::Problem, Status::Critical)).await.unwrap();
    let Delivered::Dropped(reason) = delivered else { panic!("not dropped: {delivered:?}") };
    assert!(reason.contains("invalid_payload"), "{reason}");
    assert_eq!(slack.received().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn slack_queues_a_burst_at_one_message_per_second() {
    const BURST: usize = 20;
    let slack = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let notifiers = Arc::new(Definitions::new().slack("ops-slack", &slack).build(Settings::standard()).unwrap());
    let mut deliveries = tokio::task::JoinSet::new();
    for i in 0..BURST {
        let notifiers = notifiers.clone();
        let event = Event { check: format!("check-{i}"), ..event(EventKind::Problem, Status::Critical) };
        deliveries.spawn(async move { notifiers.deliver("ops-slack", &event).await });
    }
    while let Some(delivered) = deliveries.join_next().await {
        assert_eq!(delivered.unwrap().unwrap(), Delivered::Sent);
    }
    let received = slack.received();
    assert_eq!(received.len(), BURST);
    let mut checks: Vec<_> = received
        .iter()
        .map(|r| r.json()["attachments"][0]["fields"][0]["value"].as_str().unwrap().to_owned())
        .collect();
    checks.sort();
    checks.dedup();
    assert_eq!(checks.len(), BURST, "every event arrived once: {checks:?}");
    for pair in received.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(950), "two messages {gap:?} apart");
    }
}

#[tokio::test]
async fn slack_payload_carries_colour_fields_and_output_within_limits() {
    let slack = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let long = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let notifiers =
        Definitions::new().slack("ops-slack", &slack).slack("long-slack", &long).build(Settings::standard()).unwrap();

    let problem = Event { previous: Some(Status::Warning), ..event(EventKind::Problem, Status::Critical) };
    assert_eq!(notifiers.deliver("ops-slack", &problem).await.unwrap(), Delivered::Sent);
    let body = slack.received()[0].json();
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["color"], "#a30200", "{body}");
    assert_eq!(attachment["title"], "CRITICAL (was WARNING): api-health on aws-us-east-1");
    assert_eq!(attachment["text"], problem.output);
    let fields: BTreeMap<_, _> = attachment["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["title"].as_str().unwrap().to_owned(), f["value"].as_str().unwrap().to_owned()))
        .collect();
    let expected = [
        ("Check", "api-health"),
        ("Subscription", "aws-us-east-1"),
        ("Runner", "runner-7"),
        ("Status", "WARNING → CRITICAL"),
        ("Event", "problem"),
        ("Total", "120.4 ms"),
        ("TTFB", "98 ms"),
        ("Days left", "41.5 days"),
        ("Labels", "team=platform"),
    ];
    assert_eq!(fields, expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), "{body}");

    let output = format!("<!channel> {}", "é".repeat(10_000));
    let noisy = Event { output, ..event(EventKind::Reminder, Status::Warning) };
    assert_eq!(notifiers.deliver("long-slack", &noisy).await.unwrap(), Delivered::Sent);
    let body = long.received()[0].json();
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["color"], "#daa038");
    let text = attachment["text"].as_str().unwrap();
    assert!(text.chars().count() <= 3000, "{} characters", text.chars().count());
    assert!(text.starts_with("&lt;!channel&gt; éé") && text.ends_with("é…"), "{text}");
    assert!(attachment["fallback"].as_str().unwrap().chars().count() <= 300);
    assert!(attachment["title"].as_str().unwrap().chars().count() <= 150);
}

#[tokio::test]
async fn pagerduty_trigger_and_resolve_share_the_incident_key() {
    let pd = Receiver::start(vec![Reply::new(202, PD_ACCEPTED)]).await;
    let notifiers = Definitions::new().pagerduty("pager", &pd).build(Settings::standard()).unwrap();
    let problem = event(EventKind::Problem, Status::Critical);
    let resolved = Event { previous: Some(Status::Critical), ..event(EventKind::Resolved, Status::Ok) };
    assert_eq!(notifiers.deliver("pager", &problem).await.unwrap(), Delivered::Sent);
    assert_eq!(notifiers.deliver("pager", &resolved).await.unwrap(), Delivered::Sent);

    let received = pd.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.path == PD_PATH));
    let (trigger, resolve) = (received[0].json(), received[1].json());
    for body in [&trigger, &resolve] {
        assert_eq!(body["routing_key"], ROUTING_KEY);
        assert_eq!(body["dedup_key"], "picket/aws-us-east-1/api-health");
    }
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    let payload = &trigger["payload"];
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["source"], "runner-7");
    assert_eq!(payload["component"], "api-health");
    assert_eq!(payload["group"], "aws-us-east-1");
    assert_eq!(payload["summary"], format!("CRITICAL (was OK): api-health on aws-us-east-1: {}", problem.output));
    let details = &payload["custom_details"];
    assert_eq!(details["event"], "problem");
    assert_eq!(details["output"], problem.output);
    assert_eq!(details["metrics"]["total"], 120.4);
    assert_eq!(details["labels"]["team"], "platform");
    assert!(resolve.get("payload").is_none(), "{resolve}");
}

#[tokio::test]
async fn pagerduty_retries_a_429_and_drops_a_400() {
    let limited =
        Receiver::start(vec![Reply::new(429, r#"{"status":"throttled"}"#), Reply::new(202, PD_ACCEPTED)]).await;
    let invalid = r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'summary' is incorrect"]}"#;
    let refusing = Receiver::start(vec![Reply::new(400, invalid)]).await;
    let notifiers = Definitions::new()
        .pagerduty("limited", &limited)
        .pagerduty("refusing", &refusing)
        .build(Settings::standard())
        .unwrap();
    let problem = event(EventKind::Problem, Status::Warning);

    assert_eq!(notifiers.deliver("limited", &problem).await.unwrap(), Delivered::Sent);
    assert_eq!(limited.received().len(), 2);

    let delivered = notifiers.deliver("refusing", &problem).await.unwrap();
    let Delivered::Dropped(reason) = delivered else { panic!("not dropped: {delivered:?}") };
    assert!(reason.contains("HTTP 400") && reason.contains("Event object is invalid"), "{reason}");
    assert_eq!(refusing.received().len(), 1);
}

#[test]
fn pagerduty_actions_and_severities() {
    use super::pagerduty::{Action, Severity, action, severity};
    let cases = [
        (EventKind::Problem, Status::Critical, Action::Trigger, Severity::Critical),
        (EventKind::Reminder, Status::Unknown, Action::Trigger, Severity::Error),
        (EventKind::Missed, Status::Warning, Action::Trigger, Severity::Warning),
        (EventKind::CaughtUp, Status::Ok, Action::Resolve, Severity::Info),
        (EventKind::RunnerLost, Status::Critical, Action::Trigger, Severity::Critical),
        (EventKind::RunnerBack, Status::Ok, Action::Resolve, Severity::Info),
        (EventKind::Resolved, Status::Ok, Action::Resolve, Severity::Info),
        (EventKind::FlappingStart, Status::Ok, Action::Trigger, Severity::Warning),
        (EventKind::FlappingStart, Status::Critical, Action::Trigger, Severity::Critical),
        (EventKind::FlappingEnd, Status::Ok, Action::Resolve, Severity::Info),
        (EventKind::FlappingEnd, Status::Critical, Action::Trigger, Severity::Critical),
    ];
    for (kind, status, expected_action, expected_severity) in cases {
        let e = event(kind, status);
        assert_eq!((action(&e), severity(&e)), (expected_action, expected_severity), "{kind} {status:?}");
    }
}

#[tokio::test]
async fn log_writes_one_json_line_per_event() {
    let out = Buffer::default();
    let settings = Settings { log_output: LineWriter::new(out.clone()), ..Settings::standard() };
    let notifiers = Definitions::new().add(json!({ "name": "stdout", "type": "log" })).build(settings).unwrap();
    let problem = event(EventKind::Problem, Status::Critical);
    assert_eq!(notifiers.deliver("stdout", &problem).await.unwrap(), Delivered::Sent);

    let text = out.text();
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    assert!(text.ends_with('\n'));
    let line: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(line["handler"], "stdout");
    assert_eq!(line["kind"], "problem");
    assert_eq!(serde_json::from_value::<Event>(line).unwrap(), problem);
}

#[test]
fn a_missing_secret_names_the_handler_and_the_variable() {
    let definitions = Definitions::new().add(json!({
        "name": "ops-slack", "type": "slack", "webhook_url": { "env": "PICKET_TEST_NOTIFY_SURELY_UNSET" }
    }));
    let err = definitions.build(Settings::standard()).unwrap_err();
    assert_eq!(err.handler, "ops-slack");
    let text = err.to_string();
    assert!(text.contains("ops-slack") && text.contains("PICKET_TEST_NOTIFY_SURELY_UNSET"), "{text}");

    let missing_file = Definitions::new();
    let path = missing_file.dir.path().join("absent");
    let missing_file =
        missing_file.add(json!({ "name": "pager", "type": "pagerduty", "routing_key": { "file": path } }));
    let text = missing_file.build(Settings::standard()).unwrap_err().to_string();
    assert!(text.contains("pager") && text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn only_needed_handlers_are_built_and_unknown_ones_are_refused() {
    let definitions = Definitions::new()
        .add(json!({ "name": "unused", "type": "slack", "webhook_url": { "env": "PICKET_TEST_NOTIFY_SURELY_UNSET" } }))
        .add(json!({ "name": "stdout", "type": "log" }));
    let needed = BTreeSet::from(["stdout".to_owned()]);
    let notifiers = Notifiers::build_with(&definitions.list, &needed, Settings::standard()).unwrap();
    assert_eq!(format!("{notifiers:?}"), r#"{"stdout": "log"}"#);

    let needed = BTreeSet::from(["nowhere".to_owned()]);
    let err = Notifiers::build_with(&definitions.list, &needed, Settings::standard()).unwrap_err();
    assert_eq!(err.handler, "nowhere");
}

#[test]
fn a_webhook_that_is_no_url_is_refused_without_quoting_it() {
    let definitions = Definitions::new();
    let secret = definitions.secret("hook", "SECRETTOKEN-not-a-url");
    let definitions = definitions.add(json!({ "name": "ops-slack", "type": "slack", "webhook_url": secret }));
    let text = definitions.build(Settings::standard()).unwrap_err().to_string();
    assert!(text.contains("ops-slack") && text.contains("not a URL"), "{text}");
    assert!(!text.contains("SECRETTOKEN"), "{text}");
}

#[tokio::test]
async fn severities_filter_what_a_handler_accepts() {
    let notifiers = Definitions::new()
        .add(json!({ "name": "pager", "type": "log", "severities": ["critical", "ok"] }))
        .add(json!({ "name": "everything", "type": "log" }))
        .build(Settings::standard())
        .unwrap();
    let accepted: Vec<_> = Status::ALL.into_iter().filter(|s| notifiers.accepts("pager", *s)).collect();
    assert_eq!(accepted, [Status::Ok, Status::Critical]);
    assert!(Status::ALL.into_iter().all(|s| notifiers.accepts("everything", s)));
    assert!(!notifiers.accepts("nowhere", Status::Critical));
    let delivered = notifiers.deliver("nowhere", &event(EventKind::Problem, Status::Critical)).await.unwrap();
    assert!(matches!(delivered, Delivered::Dropped(_)), "{delivered:?}");
}

/// Every way a delivery can fail, with all logs captured down to TRACE
/// (reqwest's `log` records included): neither the webhook token nor the
/// routing key may appear in a log line, an error or a `Debug` output.
#[tokio::test]
async fn secrets_never_reach_logs_or_errors() {
    let logs = Buffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let slack_400 = Receiver::start(vec![Reply::new(400, "invalid_payload")]).await;
    let slack_500 = Receiver::start(vec![Reply::new(500, "internal_error")]).await;
    let pd_400 = Receiver::start(vec![Reply::new(400, r#"{"status":"invalid event"}"#)]).await;
    let pd_500 = Receiver::start(vec![Reply::new(500, "")]).await;
    let closed = Receiver::start(vec![Reply::new(200, "ok")]).await;
    let definitions = Definitions::new()
        .slack("slack-400", &slack_400)
        .slack("slack-500", &slack_500)
        .pagerduty("pd-400", &pd_400)
        .pagerduty("pd-500", &pd_500);
    let refused = definitions.secret("refused", &closed.url(SLACK_PATH));
    drop(closed);
    let definitions = definitions.add(json!({ "name": "slack-refused", "type": "slack", "webhook_url": refused }));
    let notifiers = definitions.build(Settings::quick()).unwrap();

    let problem = event(EventKind::Problem, Status::Critical);
    let mut outcomes = vec![format!("{notifiers:?}")];
    for handler in ["slack-400", "slack-500", "pd-400", "pd-500", "slack-refused"] {
        let outcome = notifiers.deliver(handler, &problem).await;
        if let Err(e) = &outcome {
            outcomes.push(e.to_string());
        }
        outcomes.push(format!("{outcome:?}"));
    }
    let outcomes = outcomes.join("\n");
    let logs = logs.text();

    for handler in ["slack-400", "slack-500", "pd-400", "pd-500", "slack-refused"] {
        assert!(logs.contains(&format!("handler=\"{handler}\"")), "no log names {handler}:\n{logs}");
    }
    assert!(outcomes.contains("invalid_payload") && outcomes.contains("HTTP 500"), "{outcomes}");
    assert!(outcomes.contains("gave up after 3 tries"), "{outcomes}");
    for text in [&logs, &outcomes] {
        for secret in ["SECRETTOKEN", "/services/T0/B0", ROUTING_KEY] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }
}

#[test]
fn notifier_urls_must_be_https_unless_http_is_allowed() {
    let strict = || Settings { allow_http: false, ..Settings::standard() };
    let defs = Definitions::new();
    let hook = defs.secret("hook", "http://hooks.example/services/T0/B0/token");
    let slack = defs.add(json!({"name": "ops", "type": "slack", "webhook_url": hook}));
    let err = slack.build_exactly(strict()).unwrap_err().to_string();
    assert!(err.contains("is not https (plain http only with PICKET_ALLOW_HTTP_NOTIFY=1)"), "{err}");
    assert!(!err.contains("token"), "the webhook URL is a secret: {err}");
    assert!(slack.build_exactly(Settings { allow_http: true, ..strict() }).is_ok());
    let ftp = slack.secret("ftp", "ftp://hooks.example/services/T0/B0/token");
    let slack = Definitions { dir: slack.dir, list: Vec::new() }
        .add(json!({"name": "ops", "type": "slack", "webhook_url": ftp}));
    let err = slack.build_exactly(Settings { allow_http: true, ..strict() }).unwrap_err().to_string();
    assert!(err.contains("is not an https URL") && !err.contains("token"), "{err}");

    let defs = Definitions::new();
    let key = defs.secret("key", ROUTING_KEY);
    let pd = |url: &str| json!({"name": "pd", "type": "pagerduty", "routing_key": key, "api_url": url});
    let plain = Definitions { dir: defs.dir, list: Vec::new() }.add(pd("http://events.example/v2/enqueue"));
    let err = plain.build_exactly(strict()).unwrap_err().to_string();
    assert!(err.contains("api_url http://events.example/v2/enqueue is not https"), "{err}");
    let https = Definitions { dir: plain.dir, list: Vec::new() }.add(pd("https://events.example/v2/enqueue"));
    assert!(https.build_exactly(strict()).is_ok());
}

#[tokio::test]
async fn log_writes_one_entry_per_group_listing_every_event() {
    let out = Buffer::default();
    let settings = Settings { log_output: LineWriter::new(out.clone()), ..Settings::standard() };
    let notifiers = Definitions::new()
        .add(json!({ "name": "stdout", "type": "log", "group": {"by": ["label:team"], "wait": "5s", "max": 1} }))
        .build(settings)
        .unwrap();
    let grouping = notifiers.grouping("stdout").unwrap();
    let events: Vec<_> = ["a", "b", "c"]
        .map(|check| Event {
            id: format!("evt-{check}"),
            check: check.into(),
            ..event(EventKind::Problem, Status::Critical)
        })
        .into();
    let group = Group::new(GroupKey::of(&grouping, &events[0]), events.clone(), &grouping);
    assert_eq!(notifiers.deliver_group("stdout", &group).await.unwrap(), Delivered::Sent);

    let text = out.text();
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    let line: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(line["handler"], "stdout");
    assert_eq!(line["kind"], "problem");
    assert_eq!(line["group"], json!({"team": "platform"}));
    assert_eq!(line["count"], 3);
    assert_eq!(serde_json::from_value::<Vec<Event>>(line["events"].clone()).unwrap(), events, "the log lists all");
}
