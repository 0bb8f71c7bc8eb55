//! Wire compatibility within v1 (ARCHITECTURE.md, "Wire compatibility").
//!
//! `tests/golden/` at the repository root holds one encoded message of each
//! kind as this release writes it. Every later build must decode them, read
//! them again with an unknown field added at each level, and write them back
//! unchanged, so an accidental wire change fails here.
//!
//! To change the wire deliberately (only as that section allows), regenerate
//! them and commit the diff:
//!
//! ```sh
//! PICKET_BLESS=1 cargo test -p picket-protocol --test wire_compat
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use picket_protocol::definition::parse_check;
use picket_protocol::message::{
    AlertPolicy, CheckRequest, CheckResult, CheckResults, DecodeError, Keepalive, Message, Status, decode, encode,
};
use picket_protocol::transport::DeadReason;
use serde_json::{Value, json};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

fn slot() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn request(check: Value) -> Message {
    let check = parse_check(check).unwrap();
    let subscription = check.subscriptions()[0].to_owned();
    Message::CheckRequest(Box::new(CheckRequest {
        id: CheckRequest::id_for(check.name(), &subscription, slot()),
        check,
        subscription,
        scheduled_at: slot(),
        deadline: slot() + Duration::seconds(5),
        scheduler: "scheduler-1".into(),
    }))
}

fn keepalive(stopping: bool) -> Message {
    Message::Keepalive(Keepalive {
        runner: "runner-a".into(),
        subscriptions: vec!["default".into(), "eu-west".into()],
        version: "0.1.0".into(),
        started_at: slot() - Duration::hours(1),
        in_flight: 3,
        executed: 1200,
        interval: 10,
        stopping,
    })
}

/// The golden messages: file stem, and the message this build encodes into it.
fn messages() -> Vec<(&'static str, Message)> {
    let http = json!({
        "name": "api-health", "type": "http", "url": "https://api.example.com/health", "method": "POST",
        "interval": "30s", "timeout": "5s", "subscriptions": ["default", "eu-west"], "handlers": ["slack-ops"],
        "occurrences": 2, "refresh": "1h", "labels": {"team": "payments"},
        "headers": {"Accept": "application/json", "Authorization": {"env": "API_TOKEN"}},
        "body": "{\"probe\":true}", "follow_redirects": 2, "tls_verify": true, "ip_family": "ipv4",
        "body_limit": 65536,
        "expect": {
            "status": [200, "3xx"], "body_contains": "ok", "body_regex": "\"status\":\\s*\"up\"",
            "headers": {"content-type": {"contains": "json"}}, "latency_warn": "500ms", "latency_crit": "2s"
        }
    });
    let dns = json!({
        "name": "dns-a", "type": "dns", "query": "example.com", "record": "A", "nameserver": "192.0.2.53:5353",
        "protocol": "tcp", "attempts": 3, "cron": "*/5 * * * *",
        "expect": {"rcode": "NOERROR", "answers": {"contains": ["192.0.2.1"]}, "latency_warn": "200ms"}
    });
    let tls = json!({
        "name": "tls-expiry", "type": "tls", "host": "example.com", "port": 8443, "sni": "www.example.com",
        "warn_days": 30, "crit_days": 10, "interval": "1h", "low_flap_threshold": 20.0, "high_flap_threshold": 40.0
    });
    let result = Message::CheckResult(Box::new(CheckResult {
        request_id: CheckRequest::id_for("api-health", "default", slot()),
        check: "api-health".into(),
        subscription: "default".into(),
        runner: "runner-a".into(),
        status: Status::Warning,
        output: "200 OK in 612ms (above latency_warn 500ms)".into(),
        scheduled_at: slot(),
        started_at: slot() + Duration::milliseconds(40),
        duration_ms: 612,
        lateness_ms: 40,
        metrics: BTreeMap::from([("latency_ms".to_owned(), 612.0), ("status_code".to_owned(), 200.0)]),
        details: json!({"hops": [{"url": "https://api.example.com/health", "status": 200}]}),
        policy: AlertPolicy {
            handlers: vec!["slack-ops".into()],
            occurrences: 2,
            refresh_secs: 3600,
            low_flap_threshold: Some(20.0),
            high_flap_threshold: Some(40.0),
            labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
            period_ms: Some(30_000),
            quorum: None,
            subscriptions: Vec::new(),
            depends_on: Vec::new(),
        },
    }));
    let Message::CheckResult(first) = &result else { unreachable!() };
    let mut second = first.as_ref().clone();
    second.subscription = "eu-west".into();
    second.request_id = CheckRequest::id_for("api-health", "eu-west", slot());
    second.status = Status::Ok;
    second.output = "200 OK in 48ms".into();
    second.metrics = BTreeMap::from([("latency_ms".to_owned(), 48.0)]);
    let results = Message::CheckResults(CheckResults { results: vec![first.as_ref().clone(), second] });
    vec![
        ("check_request_http", request(http)),
        ("check_request_dns", request(dns)),
        ("check_request_tls", request(tls)),
        ("check_result", result),
        ("check_results", results),
        ("keepalive", keepalive(false)),
        ("keepalive_stopping", keepalive(true)),
    ]
}

/// The golden bytes of each message; written instead when `PICKET_BLESS=1`.
fn golden() -> Vec<(&'static str, Message, Vec<u8>)> {
    let bless = std::env::var_os("PICKET_BLESS").is_some_and(|v| v == "1");
    messages()
        .into_iter()
        .map(|(name, message)| {
            let path = golden_dir().join(format!("{name}.json"));
            if bless {
                // Tests run in parallel and each blesses, so a reader must
                // never see a half-written file: write aside, then rename.
                std::fs::create_dir_all(golden_dir()).unwrap();
                let aside = path.with_extension(format!("json.{:?}", std::thread::current().id()));
                std::fs::write(&aside, encode(&message)).unwrap();
                std::fs::rename(&aside, &path).unwrap();
            }
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (PICKET_BLESS=1 writes it; see this file's header)", path.display())
            });
            (name, message, bytes)
        })
        .collect()
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The message with `"x_future"` added to the object at `path` (dot-separated,
/// numbers index arrays; "" for the envelope).
fn with_unknown_field(bytes: &[u8], path: &str) -> Vec<u8> {
    let mut value = json_of(bytes);
    let mut object = &mut value;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        let next = match key.parse::<usize>() {
            Ok(index) => object.get_mut(index),
            Err(_) => object.get_mut(key),
        };
        object = next.unwrap_or_else(|| panic!("no {path} in the golden message"));
    }
    object
        .as_object_mut()
        .unwrap_or_else(|| panic!("{path} is not an object"))
        .insert("x_future".into(), json!({"added_by": "a newer build", "n": [1, 2]}));
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn golden_messages_decode_to_what_this_build_writes_and_encode_back_to_the_same() {
    for (name, message, bytes) in golden() {
        let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, message, "{name} decodes to something else");
        // Key order is serde_json's business, so JSON values are compared.
        assert_eq!(json_of(&encode(&decoded)), json_of(&bytes), "{name} re-encodes differently");
        assert_eq!(json_of(&encode(&message)), json_of(&bytes), "this build writes {name} differently");
    }
}

#[test]
fn unknown_fields_are_ignored_outside_check_definitions() {
    let levels: &[(&str, &[&str])] = &[
        ("check_request_http", &[""]),
        ("check_request_dns", &[""]),
        ("check_request_tls", &[""]),
        ("check_result", &["", "policy"]),
        ("check_results", &["", "results.0", "results.1.policy"]),
        ("keepalive", &[""]),
        ("keepalive_stopping", &[""]),
    ];
    let golden = golden();
    for (name, paths) in levels {
        let (_, message, bytes) = golden.iter().find(|(n, ..)| n == name).unwrap();
        for path in *paths {
            let decoded = decode(&with_unknown_field(bytes, path))
                .unwrap_or_else(|e| panic!("{name} with an unknown field at {path:?}: {e}"));
            assert_eq!(&decoded, message, "{name}: the unknown field at {path:?} changed what was read");
        }
    }
}

#[test]
fn unknown_fields_inside_check_definitions_are_unsupported_and_named() {
    let levels: &[(&str, &[&str])] = &[
        ("check_request_http", &["check", "check.expect"]),
        ("check_request_dns", &["check", "check.expect"]),
        ("check_request_tls", &["check"]),
    ];
    let golden = golden();
    for (name, paths) in levels {
        let (_, _, bytes) = golden.iter().find(|(n, ..)| n == name).unwrap();
        for path in *paths {
            let err = decode(&with_unknown_field(bytes, path)).unwrap_err();
            let want = format!("{path}.x_future");
            assert!(
                matches!(&err, DecodeError::Unsupported { field, .. } if *field == want),
                "{name}: {err} (wanted unsupported {want})"
            );
            assert_eq!(err.dead_reason(), DeadReason::Unsupported);
        }
    }
}

#[test]
fn a_new_check_type_or_value_is_unsupported_and_a_bad_value_is_malformed() {
    let golden = golden();
    let bytes_of = |name: &str| golden.iter().find(|(n, ..)| *n == name).map(|(.., b)| json_of(b)).unwrap();
    let decode_with = |mut value: Value, key: &str, new: Value| {
        value["check"][key] = new;
        decode(&serde_json::to_vec(&value).unwrap()).unwrap_err()
    };
    for (name, key, new, field) in [
        ("check_request_tls", "type", json!("grpc"), "check.type"),
        ("check_request_dns", "record", json!("HTTPS"), "check.record"),
        ("check_request_http", "method", json!("QUERY"), "check.method"),
    ] {
        let err = decode_with(bytes_of(name), key, new);
        assert!(matches!(&err, DecodeError::Unsupported { field: f, .. } if f == field), "{name}: {err}");
    }
    let err = decode_with(bytes_of("check_request_tls"), "port", json!(0));
    assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
    assert_eq!(err.dead_reason(), DeadReason::Malformed);
}
