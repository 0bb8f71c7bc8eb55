//! Wire messages (DESIGN.md §4): one JSON envelope `{"v": 1, "kind": …}`.
//!
//! Readers ignore fields they do not know, so a newer writer can add optional
//! ones within v1 (ARCHITECTURE.md, "Wire compatibility"). The check
//! definition inside a request is the exception: a field this build does not
//! know makes the request [`DecodeError::Unsupported`], because running the
//! check without it would be a weaker check than the one written.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::Value;

use crate::definition::{CheckDefinition, Quorum};

/// The envelope version this build writes and reads.
pub const WIRE_VERSION: u64 = 1;

/// Sensu's statuses: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Ok, Status::Warning, Status::Critical, Status::Unknown];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// How bad a status is, for combining findings and ordering problems:
    /// OK < WARNING < UNKNOWN < CRITICAL.
    pub fn severity(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Unknown => 2,
            Self::Critical => 3,
        }
    }

    /// The worse of two statuses.
    pub fn worst(self, other: Status) -> Status {
        if other.severity() > self.severity() { other } else { self }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            0 => Ok(Self::Ok),
            1 => Ok(Self::Warning),
            2 => Ok(Self::Critical),
            3 => Ok(Self::Unknown),
            n => Err(de::Error::custom(format!("{n} is not a status (0-3)"))),
        }
    }
}

/// "Run this check for this subscription in this slot." The id is derived from
/// (check, subscription, slot), so every scheduler produces the same id for
/// the same slot and the handler can drop duplicates.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckRequest {
    pub id: String,
    pub check: CheckDefinition,
    pub subscription: String,
    pub scheduled_at: DateTime<Utc>,
    /// The latest useful start; a request not started by then is dead-lettered, never run.
    pub deadline: DateTime<Utc>,
    pub scheduler: String,
}

impl CheckRequest {
    /// Hex SHA-256 (first 16 bytes) of check, subscription and slot time.
    pub fn id_for(check: &str, subscription: &str, slot: DateTime<Utc>) -> String {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{check}\n{subscription}\n{}", slot.timestamp_millis()).as_bytes(),
        );
        digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A request's fields around its check, which [`decode`] parses on its own.
#[derive(Deserialize)]
struct RequestEnvelope {
    id: String,
    subscription: String,
    scheduled_at: DateTime<Utc>,
    deadline: DateTime<Utc>,
    scheduler: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub request_id: String,
    pub check: String,
    pub subscription: String,
    pub runner: String,
    pub status: Status,
    /// One human line: what was found, or why it failed.
    pub output: String,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Start minus scheduled slot: how late the pool picked the request up.
    pub lateness_ms: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Type-specific facts (certificate data, DNS answers, HTTP hops).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
    /// How the handler should alert on this check, carried with each result
    /// so the handler needs no check definitions.
    #[serde(default)]
    pub policy: AlertPolicy,
}

/// The alerting settings of a check (DESIGN.md §3), as the handler needs them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<String>,
    /// Consecutive non-OK results before a problem is notified (at least 1).
    pub occurrences: u32,
    /// Seconds between reminders while a problem lasts.
    pub refresh_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_flap_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_flap_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The check's period (its interval, or the shortest cron gap) in
    /// milliseconds: how the handler tells a result from a backlog (late,
    /// so not news) from a fresh one. Absent from older runners' results,
    /// which are then all taken as fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_ms: Option<u64>,
    /// The check's `quorum`: its problems are one incident across
    /// `subscriptions`, raised when enough of them fail. An older handler
    /// ignores it and pages per subscription, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<Quorum>,
    /// Every subscription of a check with a quorum (the vote's electorate);
    /// empty without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<String>,
    /// The check's `depends_on`: while one of them fails in the result's
    /// subscription, this check's problems there are held. An older handler
    /// ignores it and notifies them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

impl AlertPolicy {
    pub fn of(check: &CheckDefinition) -> Self {
        Self {
            handlers: check.common.handlers.clone(),
            occurrences: check.occurrences(),
            refresh_secs: check.refresh().as_secs(),
            low_flap_threshold: check.common.low_flap_threshold,
            high_flap_threshold: check.common.high_flap_threshold,
            labels: check.common.labels.clone(),
            period_ms: Some(u64::try_from(check.period().as_millis()).unwrap_or(u64::MAX)),
            quorum: check.common.quorum,
            subscriptions: match check.common.quorum {
                Some(_) => check.subscriptions().into_iter().map(str::to_owned).collect(),
                None => Vec::new(),
            },
            depends_on: check.common.depends_on.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Keepalive {
    pub runner: String,
    pub subscriptions: Vec<String>,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub in_flight: u64,
    pub executed: u64,
    /// Seconds between keepalives; the handler declares the runner lost after 3 missed.
    pub interval: u64,
    /// The runner's last keepalive, sent once it has drained on SIGTERM (a
    /// deploy, an autoscaling scale-in): the handler forgets it instead of
    /// paging `runner_lost` for a departure that was planned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
}

/// Every message on the wire. Read by [`decode`] only.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// Boxed, like results: both are far larger than a keepalive.
    CheckRequest(Box<CheckRequest>),
    CheckResult(Box<CheckResult>),
    /// Results that finished within a few milliseconds of each other on one
    /// runner, carried in one message (see [`ResultsWriter`]). Only handlers
    /// read them, from a queue of their own (ARCHITECTURE.md, "Result batches").
    CheckResults(CheckResults),
    Keepalive(Keepalive),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResults {
    pub results: Vec<CheckResult>,
}

/// Builds a `check_results` body from results encoded one at a time, so a
/// runner serializes each result once, as it finishes, and a batch is a
/// concatenation: the same bytes, up to key order, as [`encode`] of the
/// [`Message::CheckResults`] holding them.
#[derive(Debug)]
pub struct ResultsWriter {
    body: Vec<u8>,
    count: usize,
}

const RESULTS_HEAD: &[u8] = br#"{"v":1,"kind":"check_results","results":["#;
const RESULTS_TAIL: &[u8] = b"]}";
/// A result always has fields, so the comma before them is always right.
const SINGLE_HEAD: &[u8] = br#"{"v":1,"kind":"check_result","#;

impl Default for ResultsWriter {
    fn default() -> Self {
        Self { body: RESULTS_HEAD.to_vec(), count: 0 }
    }
}

impl ResultsWriter {
    /// One result as a batch carries it (no envelope).
    pub fn encode_one(result: &CheckResult) -> Vec<u8> {
        serde_json::to_vec(result).expect("results always serialize")
    }

    /// The `check_result` message of one result encoded by
    /// [`ResultsWriter::encode_one`], for when it travels alone.
    pub fn single(encoded: &[u8]) -> Vec<u8> {
        let fields = encoded.strip_prefix(b"{").expect("a result encodes as an object");
        let mut body = Vec::with_capacity(SINGLE_HEAD.len() + fields.len());
        body.extend_from_slice(SINGLE_HEAD);
        body.extend_from_slice(fields);
        body
    }

    /// Adds a result encoded by [`ResultsWriter::encode_one`].
    pub fn push(&mut self, encoded: &[u8]) {
        if self.count > 0 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(encoded);
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The body's size once finished, in bytes.
    pub fn bytes(&self) -> usize {
        self.body.len() + RESULTS_TAIL.len()
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.body.extend_from_slice(RESULTS_TAIL);
        self.body
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    Json(serde_json::Error),
    #[error("unsupported envelope version {0:?} (this build reads v{WIRE_VERSION})")]
    Version(Value),
    #[error("invalid {kind}: {source}")]
    Invalid { kind: String, source: serde_json::Error },
    #[error("expected a {expected} message, got {got:?}")]
    WrongKind { expected: &'static str, got: String },
    /// The request's check uses a field, type or value this build does not
    /// know (a newer scheduler's); `field` is its path in the request.
    #[error("unsupported check_request: {field}: {message}")]
    Unsupported { field: String, message: String },
}

impl DecodeError {
    /// How a message that failed to decode is dead-lettered.
    pub fn dead_reason(&self) -> crate::transport::DeadReason {
        match self {
            Self::Unsupported { .. } => crate::transport::DeadReason::Unsupported,
            _ => crate::transport::DeadReason::Malformed,
        }
    }
}

/// Writes a message inside the versioned envelope.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut value = serde_json::to_value(message).expect("messages always serialize");
    if let Value::Object(map) = &mut value {
        map.insert("v".to_owned(), Value::from(WIRE_VERSION));
    }
    serde_json::to_vec(&value).expect("values always serialize")
}

/// Reads an envelope: version first, then the kind's fields.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let Value::Object(mut map) = serde_json::from_slice(bytes).map_err(DecodeError::Json)? else {
        return Err(DecodeError::Version(Value::Null));
    };
    let version = map.remove("v").unwrap_or(Value::Null);
    if version.as_u64() != Some(WIRE_VERSION) {
        return Err(DecodeError::Version(version));
    }
    let kind = match map.remove("kind") {
        Some(Value::String(kind)) => kind,
        Some(other) => return Err(invalid("message", format!("`kind` {other} is not a string"))),
        None => return Err(invalid("message", "missing field `kind`")),
    };
    let invalid_kind = |source| DecodeError::Invalid { kind: kind.clone(), source };
    match kind.as_str() {
        "check_request" => decode_request(map).map(|request| Message::CheckRequest(Box::new(request))),
        "check_result" => {
            serde_json::from_value(Value::Object(map)).map(|r| Message::CheckResult(Box::new(r))).map_err(invalid_kind)
        }
        "check_results" => match serde_json::from_value::<CheckResults>(Value::Object(map)) {
            Ok(batch) if batch.results.is_empty() => Err(invalid("check_results", "`results` is empty")),
            Ok(batch) => Ok(Message::CheckResults(batch)),
            Err(source) => Err(invalid_kind(source)),
        },
        "keepalive" => serde_json::from_value(Value::Object(map)).map(Message::Keepalive).map_err(invalid_kind),
        _ => Err(invalid(
            &kind,
            "not a message kind this build knows (check_request, check_result, check_results, keepalive)",
        )),
    }
}

/// What a request's body names, read without parsing its check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestNames {
    pub id: Option<String>,
    pub subscription: Option<String>,
    pub check: Option<String>,
}

/// The names in a v1 `check_request` body, as far as they can be read; all
/// `None` for anything else.
pub fn request_names(bytes: &[u8]) -> RequestNames {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else { return RequestNames::default() };
    if map.get("v").and_then(Value::as_u64) != Some(WIRE_VERSION)
        || map.get("kind").and_then(Value::as_str) != Some("check_request")
    {
        return RequestNames::default();
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    RequestNames {
        id: text(map.get("id")),
        subscription: text(map.get("subscription")),
        check: text(map.get("check").and_then(|c| c.get("name"))),
    }
}

fn invalid(kind: &str, message: impl fmt::Display) -> DecodeError {
    DecodeError::Invalid { kind: kind.to_owned(), source: de::Error::custom(message) }
}

/// The envelope is read leniently, the check strictly: a name the check
/// parser does not know is [`DecodeError::Unsupported`], anything else wrong
/// with it is invalid.
fn decode_request(mut map: serde_json::Map<String, Value>) -> Result<CheckRequest, DecodeError> {
    let check = map.remove("check").ok_or_else(|| invalid("check_request", "missing field `check`"))?;
    let envelope: RequestEnvelope = serde_json::from_value(Value::Object(map))
        .map_err(|source| DecodeError::Invalid { kind: "check_request".into(), source })?;
    let check = crate::definition::parse_check(check).map_err(|err| {
        let field = if err.path.is_empty() { "check".to_owned() } else { format!("check.{}", err.path) };
        if err.unknown {
            DecodeError::Unsupported { field, message: err.message }
        } else {
            invalid("check_request", format!("{field}: {}", err.message))
        }
    })?;
    let RequestEnvelope { id, subscription, scheduled_at, deadline, scheduler } = envelope;
    Ok(CheckRequest { id, check, subscription, scheduled_at, deadline, scheduler })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::parse_check;
    use serde_json::json;

    fn request() -> CheckRequest {
        let check =
            parse_check(json!({"name": "web", "type": "http", "url": "http://127.0.0.1:1/", "interval": "10s"}))
                .unwrap();
        let slot = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        CheckRequest {
            id: CheckRequest::id_for("web", "default", slot),
            check,
            subscription: "default".into(),
            scheduled_at: slot,
            deadline: slot + chrono::Duration::seconds(5),
            scheduler: "s1".into(),
        }
    }

    #[test]
    fn requests_round_trip_in_the_envelope() {
        let msg = Message::CheckRequest(Box::new(request()));
        let bytes = encode(&msg);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""v":1"#) && text.contains(r#""kind":"check_request""#), "{text}");
        assert_eq!(decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn ids_are_stable_per_slot() {
        let slot = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(CheckRequest::id_for("a", "s", slot), CheckRequest::id_for("a", "s", slot));
        assert_ne!(CheckRequest::id_for("a", "s", slot), CheckRequest::id_for("a", "t", slot));
        assert_eq!(CheckRequest::id_for("a", "s", slot).len(), 32);
    }

    #[test]
    fn bad_envelopes_say_why() {
        assert!(matches!(decode(b"not json"), Err(DecodeError::Json(_))));
        assert!(matches!(decode(br#"{"v": 2, "kind": "keepalive"}"#), Err(DecodeError::Version(_))));
        let err = decode(br#"{"v": 1, "kind": "check_request", "id": "x"}"#).unwrap_err();
        assert!(err.to_string().starts_with("invalid check_request"), "{err}");
        let err = decode(br#"{"v": 1, "kind": "telemetry"}"#).unwrap_err();
        assert!(err.to_string().starts_with("invalid telemetry"), "{err}");
        assert!(matches!(decode(br#"{"v": 1}"#), Err(DecodeError::Invalid { .. })));
        assert!(matches!(decode(b"[1]"), Err(DecodeError::Version(Value::Null))));
    }

    #[test]
    fn an_unknown_check_field_is_unsupported_and_names_it() {
        let mut value: Value = serde_json::from_slice(&encode(&Message::CheckRequest(Box::new(request())))).unwrap();
        value["check"]["expect"] = json!({"status": [200], "body_json": {"path": "$.ok"}});
        let err = decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(&err, DecodeError::Unsupported { field, .. } if field == "check.expect.body_json"), "{err}");
        assert_eq!(err.dead_reason(), crate::transport::DeadReason::Unsupported);
        value["check"] = json!({"name": "web", "type": "http", "url": "http://x/", "interval": "10s", "timeout": "1m"});
        let err = decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(err.to_string().contains("check.timeout"), "{err}");
        assert_eq!(err.dead_reason(), crate::transport::DeadReason::Malformed);
    }

    #[test]
    fn a_dead_letter_copy_names_its_request_even_when_it_cannot_be_decoded() {
        let mut value: Value = serde_json::from_slice(&encode(&Message::CheckRequest(Box::new(request())))).unwrap();
        value["check"]["type"] = json!("grpc");
        let body = serde_json::to_vec(&value).unwrap();
        assert!(matches!(decode(&body), Err(DecodeError::Unsupported { field, .. }) if field == "check.type"));
        let letter = crate::transport::DeadLetter::from_copy(&body, crate::transport::DeadReason::Unsupported);
        assert_eq!(letter.reason, crate::transport::DeadReason::Unsupported);
        assert_eq!(letter.check.as_deref(), Some("web"));
        assert_eq!(letter.subscription.as_deref(), Some("default"));
        assert_eq!(letter.request_id, Some(request().id));
        for junk in
            [&b"not json"[..], br#"{"v": 2, "kind": "check_request", "id": "x"}"#, br#"{"v": 1, "kind": "keepalive"}"#]
        {
            assert_eq!(request_names(junk), RequestNames::default());
        }
    }

    fn result(check: &str) -> CheckResult {
        let slot = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        CheckResult {
            request_id: CheckRequest::id_for(check, "default", slot),
            check: check.into(),
            subscription: "default".into(),
            runner: "r1".into(),
            status: Status::Critical,
            output: "connection refused".into(),
            scheduled_at: slot,
            started_at: slot,
            duration_ms: 3,
            lateness_ms: 1,
            metrics: BTreeMap::from([("latency_ms".to_owned(), 3.0)]),
            details: Value::Null,
            policy: AlertPolicy::default(),
        }
    }

    #[test]
    fn a_batch_written_a_result_at_a_time_is_the_batch_message() {
        let results = vec![result("a"), result("b"), result("c")];
        let mut writer = ResultsWriter::default();
        for r in &results {
            writer.push(&ResultsWriter::encode_one(r));
        }
        assert_eq!(writer.len(), 3);
        let bytes = writer.bytes();
        let body = writer.finish();
        assert_eq!(body.len(), bytes);
        let message = Message::CheckResults(CheckResults { results });
        assert_eq!(decode(&body).unwrap(), message);
        let as_json = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
        assert_eq!(as_json(&body), as_json(&encode(&message)));
        let alone = ResultsWriter::single(&ResultsWriter::encode_one(&result("a")));
        assert_eq!(decode(&alone).unwrap(), Message::CheckResult(Box::new(result("a"))));
        let err = decode(br#"{"v": 1, "kind": "check_results", "results": []}"#).unwrap_err();
        assert!(err.to_string().contains("`results` is empty"), "{err}");
    }

    #[test]
    fn worst_orders_unknown_below_critical() {
        assert_eq!(Status::Ok.worst(Status::Warning), Status::Warning);
        assert_eq!(Status::Unknown.worst(Status::Critical), Status::Critical);
        assert_eq!(Status::Critical.worst(Status::Unknown), Status::Critical);
    }
}
