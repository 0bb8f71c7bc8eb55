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
    // A batch from a later slot, with fields a newer runner added.
    let mut batch = golden("check_results");
    batch["compression"] = json!("none");
    for result in batch["results"].as_array_mut().unwrap() {
        let later = format!("{}-later", result["request_id"].as_str().unwrap());
        result["request_id"] = json!(later);
        result["scheduled_at"] = json!("2023-11-14T22:13:30Z");
        result["trace_id"] = json!("00f067aa0ba902b7");
    }
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
            (format!("{p}.results"), format!("{p}.results.batch"), &batch, FieldTable::default()),
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
        wait_until(Duration::from_secs(10), || seen("check_result") == 3
            && seen("keepalive") == 1
            && seen("dead_letter") == 2),
        "results {}, keepalives {}, dead letters {:?}\n{}",
        seen("check_result"),
        seen("keepalive"),
        handler_records(&handler, "dead_letter"),
        handler.stderr_text()
    );
    let applied = handler_records(&handler, "check_result");
    let single = applied.iter().find(|r| r["scheduled_at"] != batch["results"][0]["scheduled_at"]).unwrap();
    let written = golden("check_result");
    for field in ["request_id", "check", "status", "output", "policy"] {
        assert_eq!(single[field], written[field], "{field}");
    }
    for written in batch["results"].as_array().unwrap() {
        let read = applied
            .iter()
            .find(|r| r["request_id"] == written["request_id"] && r["scheduled_at"] == written["scheduled_at"]);
        let read = read.unwrap_or_else(|| panic!("{} of the batch not applied: {applied:?}", written["subscription"]));
        assert_eq!((&read["status"], &read["output"]), (&written["status"], &written["output"]));
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

/// A request for `url` in the slot starting now, as the scheduler writes it.
fn request_now(name: &str, url: &str) -> Value {
    let now = chrono::Utc::now();
    let mut request = golden("check_request_http");
    request["id"] = json!(format!("{name}-{}", now.timestamp_micros()));
    request["check"] = json!({"name": name, "type": "http", "url": url, "interval": "10s"});
    request["scheduled_at"] = json!(now);
    request["deadline"] = json!(now + chrono::Duration::seconds(30));
    request
}

/// A runner sends batches only while something consumes the batch queue,
/// which only a handler that reads them does; otherwise, as before the
/// batch queue existed, one `check_result` per result to the results queue.
/// The test stands in for both handlers: it reads the queues itself.
#[test]
fn a_runner_batches_results_only_while_a_handler_reads_batches() {
    use futures_lite::StreamExt;
    use lapin::options::{BasicCancelOptions, BasicConsumeOptions, QueueDeclareOptions};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = crate::support::spawn_target(&rt, Duration::ZERO);
    let url = format!("http://{}/", target.addr);
    let prefix = BrokerPrefix::new("batch-gate", &["default"]);
    let p = prefix.prefix.clone();
    let runner = Role::start(&p, &["runner"], &[("PICKET_RUNNER_NAME", "newer")]);
    runner.wait_ready(Duration::from_secs(15));
    let channel = rt.block_on(prefix.channel());
    let publish = |n: usize| {
        let body = serde_json::to_vec(&request_now(&format!("gate-{n}"), &url)).unwrap();
        rt.block_on(async {
            channel
                .basic_publish(
                    format!("{p}.requests").as_str().into(),
                    "default".into(),
                    BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        });
    };
    // Quorum queues with a single active consumer refuse basic.get, so the
    // test reads both queues as a handler does, by consuming them.
    let consume = |queue: &str, tag: &str| {
        rt.block_on(channel.basic_consume(
            format!("{p}.{queue}").as_str().into(),
            tag.into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        ))
        .unwrap()
    };
    let next = |consumer: &mut lapin::Consumer, wait: Duration| -> Option<Value> {
        match rt.block_on(async { tokio::time::timeout(wait, consumer.next()).await }) {
            Ok(Some(Ok(delivery))) => Some(serde_json::from_slice(&delivery.data).unwrap()),
            _ => None,
        }
    };
    // The n of the `gate-{n}` check a single result is for.
    let number = |single: &Value| -> usize {
        single["check"].as_str().and_then(|c| c.strip_prefix("gate-")).and_then(|n| n.parse().ok()).unwrap()
    };

    // An older handler: nothing reads the batch queue.
    let mut singles = consume("results", "older-handler");
    publish(0);
    let single =
        next(&mut singles, Duration::from_secs(15)).unwrap_or_else(|| panic!("no result: {}", runner.stderr_text()));
    assert_eq!(single["kind"], "check_result");
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let batch_queue = format!("{p}.results.batch");
    let waiting =
        rt.block_on(channel.queue_declare(batch_queue.as_str().into(), passive, FieldTable::default())).unwrap();
    assert_eq!(waiting.message_count(), 0, "a batch sent to a handler that cannot read it");

    // A handler that reads batches comes up.
    let mut batches = consume("results.batch", "newer-handler");
    let mut n = 1;
    let batched = wait_until(Duration::from_secs(20), || {
        publish(n);
        n += 1;
        next(&mut batches, Duration::from_millis(300)).is_some_and(|batch| batch["kind"] == "check_results")
    });
    assert!(batched, "no batch while a handler read them: {}", runner.stderr_text());

    // It goes away (a rollback): single results again, for requests sent after.
    rt.block_on(channel.basic_cancel("newer-handler".into(), BasicCancelOptions::default())).unwrap();
    let cancelled_at = n;
    let singles_again = wait_until(Duration::from_secs(20), || {
        publish(n);
        n += 1;
        std::iter::from_fn(|| next(&mut singles, Duration::from_millis(200)))
            .any(|single| single["kind"] == "check_result" && number(&single) >= cancelled_at)
    });
    assert!(singles_again, "still batching after the batch reader left: {}", runner.stderr_text());
}
