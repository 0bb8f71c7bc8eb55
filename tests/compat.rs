//! Wire compatibility across a rolling deploy, over the real RabbitMQ: a
//! handler of this build reads what a newer runner writes. The messages are
//! the golden files (`tests/golden/`, see protocol/tests/wire_compat.rs) with
//! fields added that this build does not know.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};

use crate::support::{BrokerPrefix, Role, handler_records, repo, wait_until};

fn golden(name: &str) -> Value {
    let path = repo(&format!("tests/golden/{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn a_handler_reads_a_newer_runners_results_keepalives_and_dead_letters() {
    let prefix = BrokerPrefix::new("compat", &["default"]);
    let handler = Role::start(&prefix.prefix, &["handler"], &[]);
    handler.wait_ready(Duration::from_secs(15));

    let mut result = golden("check_result");
    result["trace_id"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
    result["policy"]["escalate_after"] = json!("15m");
    let mut keepalive = golden("keepalive");
    keepalive["load"] = json!({"cpu": 0.4});
    let request = golden("check_request_http");
    let p = &prefix.prefix;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = prefix.channel().await;
        let reason = |text: &str| {
            let mut headers = FieldTable::default();
            headers.insert("x-picket-reason".into(), AMQPValue::LongString(text.into()));
            headers
        };
        for (exchange, routing_key, body, headers) in [
            (format!("{p}.results"), format!("{p}.results"), &result, FieldTable::default()),
            (format!("{p}.keepalives"), format!("{p}.keepalives"), &keepalive, FieldTable::default()),
            // A reason a newer runner added, and one this build knows.
            (format!("{p}.dead"), String::new(), &request, reason("quarantined")),
            (format!("{p}.dead"), String::new(), &request, reason("overlap")),
        ] {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &serde_json::to_vec(body).unwrap(),
                    lapin::BasicProperties::default().with_headers(headers),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });

    let seen = |kind: &str| handler_records(&handler, kind).len();
    assert!(
        wait_until(Duration::from_secs(10), || seen("check_result") == 1
            && seen("keepalive") == 1
            && seen("dead_letter") == 2),
        "results {}, keepalives {}, dead letters {:?}\n{}",
        seen("check_result"),
        seen("keepalive"),
        handler_records(&handler, "dead_letter"),
        handler.stderr_text()
    );
    let applied = &handler_records(&handler, "check_result")[0];
    let written = golden("check_result");
    for field in ["request_id", "check", "status", "output", "policy"] {
        assert_eq!(applied[field], written[field], "{field}");
    }
    assert_eq!(handler_records(&handler, "keepalive")[0]["runner"], "runner-a");
    let dead = handler_records(&handler, "dead_letter");
    let reasons: Vec<&Value> = dead.iter().map(|d| &d["reason"]).collect();
    assert!(reasons.contains(&&json!("malformed")) && reasons.contains(&&json!("overlap")), "{dead:?}");
    assert!(dead.iter().all(|d| d["check"] == "api-health" && d["request_id"] == request["id"]), "{dead:?}");
    assert!(!handler.stderr_text().contains("malformed message"), "{}", handler.stderr_text());
}

#[test]
fn a_request_whose_check_this_runner_does_not_fully_know_is_dead_lettered_unsupported() {
    use std::sync::atomic::Ordering;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = crate::support::spawn_target(&rt, Duration::ZERO);
    let prefix = BrokerPrefix::new("unsupported", &["default"]);
    let handler = Role::start(&prefix.prefix, &["handler"], &[]);
    handler.wait_ready(Duration::from_secs(15));
    let runner = Role::start(&prefix.prefix, &["runner"], &[("PICKET_RUNNER_NAME", "older")]);
    runner.wait_ready(Duration::from_secs(15));
    let now = chrono::Utc::now();
    let mut request = golden("check_request_http");
    request["check"] = json!({
        "name": "newer", "type": "http", "url": format!("http://{}/", target.addr), "interval": "10s",
        "expect": {"status": [200], "body_json": {"path": "$.ok", "equals": true}}
    });
    request["scheduled_at"] = json!(now);
    request["deadline"] = json!(now + chrono::Duration::seconds(30));
    rt.block_on(async {
        prefix
            .channel()
            .await
            .basic_publish(
                format!("{}.requests", prefix.prefix).as_str().into(),
                "default".into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(&request).unwrap(),
                lapin::BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    });
    assert!(
        wait_until(Duration::from_secs(10), || !handler_records(&handler, "dead_letter").is_empty()),
        "{}",
        runner.stderr_text()
    );
    let dead = handler_records(&handler, "dead_letter");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "unsupported", "{dead:?}");
    assert_eq!(dead[0]["check"], "newer", "{dead:?}");
    assert!(runner.stderr_text().contains("check.expect.body_json"), "{}", runner.stderr_text());
    assert!(handler_records(&handler, "check_result").is_empty());
    assert_eq!(target.connections.load(Ordering::SeqCst), 0, "the weaker check ran");
}

/// Queues an earlier release created, without the placement arguments this
/// one creates queues with, are used as they are: declaring them with other
/// arguments would be refused, so the roles say so once and carry on.
#[test]
fn queues_created_by_an_earlier_release_are_used_as_they_are() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = crate::support::spawn_target(&rt, Duration::ZERO);
    let prefix = BrokerPrefix::new("compat-queues", &["default"]);
    let p = &prefix.prefix;
    rt.block_on(async {
        let channel = prefix.channel().await;
        let quorum = |more: &[(&str, AMQPValue)]| {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
            for (k, v) in more {
                args.insert((*k).into(), v.clone());
            }
            args
        };
        let single = ("x-single-active-consumer", AMQPValue::Boolean(true));
        let dead = ("x-dead-letter-exchange", AMQPValue::LongString(format!("{p}.dead").into()));
        for (queue, args) in [
            (format!("{p}.results"), quorum(std::slice::from_ref(&single))),
            (format!("{p}.handler.dead"), quorum(&[single])),
            (format!("{p}.sub.default"), quorum(&[dead])),
        ] {
            let durable = lapin::options::QueueDeclareOptions { durable: true, ..Default::default() };
            channel.queue_declare(queue.as_str().into(), durable, args).await.unwrap();
        }
    });
    let checks = crate::support::checks_dir(&[(
        "checks.json",
        json!([{"name": "old-queues", "type": "http", "url": format!("http://{}/", target.addr), "interval": "1s"}])
            .to_string(),
    )]);
    let dir = crate::support::path_str(checks.path());
    let handler = Role::start(p, &["handler", "--checks", &dir], &[]);
    let runner = Role::start(p, &["runner"], &[("PICKET_SUBSCRIPTIONS", "default")]);
    let scheduler = Role::start(p, &["scheduler", "--checks", &dir], &[]);
    assert!(
        wait_until(Duration::from_secs(20), || handler_records(&handler, "check_result").len() >= 3),
        "no results through the old queues: {}\n{}",
        handler.stderr_text(),
        scheduler.stderr_text()
    );
    for role in [&handler, &runner, &scheduler] {
        assert!(role.stderr_text().contains("exists with other arguments"), "{}", role.stderr_text());
    }
}
