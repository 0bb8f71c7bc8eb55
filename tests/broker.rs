//! The distributed roles over the real RabbitMQ on 127.0.0.1:5672, each test
//! under its own prefix. `scripts/services` makes sure the broker is up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    BrokerPrefix, Role, checks_dir, handler_records, path_str, picket, spawn_target, stop_scheduler, wait_accounted,
    wait_until,
};

fn checks(defs: Value) -> tempfile::TempDir {
    checks_dir(&[("checks.json", defs.to_string())])
}

fn http_check(name: &str, addr: std::net::SocketAddr, interval: &str, timeout: &str, subs: &[&str]) -> Value {
    json!({"name": name, "type": "http", "url": format!("http://{addr}/"), "interval": interval, "timeout": timeout, "subscriptions": subs})
}

fn runner(prefix: &str, name: &str, subscriptions: &str, extra: &[(&str, &str)]) -> Role {
    let mut env =
        vec![("PICKET_RUNNER_NAME", name), ("PICKET_SUBSCRIPTIONS", subscriptions), ("PICKET_DRAIN_TIMEOUT", "10s")];
    env.extend_from_slice(extra);
    let role = Role::start(prefix, &["runner"], &env);
    role.wait_ready(Duration::from_secs(15));
    role
}

fn handler(prefix: &str) -> Role {
    let role = Role::start(prefix, &["handler"], &[]);
    role.wait_ready(Duration::from_secs(15));
    role
}

fn scheduler(prefix: &str, dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> Role {
    Role::start(prefix, &["scheduler", "--checks", &path_str(dir.path())], extra)
}

#[test]
fn three_runners_share_a_subscription_and_each_request_runs_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let prefix = BrokerPrefix::new("three", &["pool"]);
    let defs: Vec<Value> =
        (0..6).map(|i| http_check(&format!("c{i}"), target.addr, "1s", "500ms", &["pool"])).collect();
    let dir = checks(json!(defs));
    let handler = handler(&prefix.prefix);
    let runners: Vec<Role> = ["r1", "r2", "r3"].iter().map(|n| runner(&prefix.prefix, n, "pool", &[])).collect();
    let scheduler = scheduler(&prefix.prefix, &dir, &[]);
    std::thread::sleep(Duration::from_secs(6));
    let published = stop_scheduler(scheduler);
    assert!(published >= 24, "published {published}");
    let (results, dead) = wait_accounted(&handler, published as usize, Duration::from_secs(10));
    eprintln!(
        "accounting (three runners): published={published} results={} dead_letters={}",
        results.len(),
        dead.len()
    );
    assert_eq!(results.len() + dead.len(), published as usize, "lost requests: {}", handler.stderr_text());

    let ids: HashSet<&str> = results.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), results.len(), "a request produced two results");
    assert_eq!(handler.metric("picket_duplicates_dropped_total"), 0.0, "a request ran twice");
    let mut by_runner: HashMap<&str, usize> = HashMap::new();
    for result in &results {
        *by_runner.entry(result["runner"].as_str().unwrap()).or_default() += 1;
    }
    for (name, role) in ["r1", "r2", "r3"].iter().zip(&runners) {
        let executed = role.metric("picket_requests_executed_total");
        assert_eq!(executed as usize, by_runner.get(name).copied().unwrap_or(0), "{name}");
        assert!(executed > 0.0, "{name} got no work: {by_runner:?}");
    }
}

#[test]
fn a_check_with_two_subscriptions_runs_once_in_each_pool_per_slot() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let prefix = BrokerPrefix::new("twosubs", &["east", "west"]);
    let dir = checks(json!([http_check("both", target.addr, "1s", "500ms", &["east", "west"])]));
    let handler = handler(&prefix.prefix);
    let _east = runner(&prefix.prefix, "east-1", "east", &[]);
    let _west = runner(&prefix.prefix, "west-1", "west", &[]);
    let scheduler = scheduler(&prefix.prefix, &dir, &[]);
    std::thread::sleep(Duration::from_millis(4500));
    let published = stop_scheduler(scheduler);
    let (results, dead) = wait_accounted(&handler, published as usize, Duration::from_secs(10));
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(results.len(), published as usize);
    let mut slots: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for r in &results {
        let entry = (r["subscription"].as_str().unwrap().to_owned(), r["runner"].as_str().unwrap().to_owned());
        slots.entry(r["scheduled_at"].as_str().unwrap().to_owned()).or_default().push(entry);
    }
    assert!(slots.len() >= 3, "{slots:?}");
    for (slot, mut runs) in slots {
        runs.sort();
        assert_eq!(
            runs,
            vec![("east".to_owned(), "east-1".to_owned()), ("west".to_owned(), "west-1".to_owned())],
            "slot {slot}"
        );
    }
}

#[test]
fn a_runner_killed_mid_check_loses_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::from_secs(2));
    let prefix = BrokerPrefix::new("sigkill", &["default"]);
    let dir = checks(json!([http_check("slow", target.addr, "20s", "5s", &["default"])]));
    let handler = handler(&prefix.prefix);
    let mut first = runner(&prefix.prefix, "doomed", "default", &[]);
    let scheduler = scheduler(&prefix.prefix, &dir, &[]);
    assert!(wait_until(Duration::from_secs(25), || target.connections.load(Ordering::SeqCst) >= 1), "never ran");
    first.signal("-KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    let published = stop_scheduler(scheduler);
    assert_eq!(published, 1);
    let _second = runner(&prefix.prefix, "rescuer", "default", &[]);
    let (results, dead) = wait_accounted(&handler, 1, Duration::from_secs(15));
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(results.len(), 1, "{}", handler.stderr_text());
    assert_eq!(results[0]["runner"], "rescuer");
    assert_eq!(results[0]["status"], 0, "{}", results[0]["output"]);
}

#[test]
fn sigterm_drains_in_flight_checks_and_exits_0() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::from_secs(2));
    let prefix = BrokerPrefix::new("sigterm", &["default"]);
    let dir = checks(json!([http_check("slow", target.addr, "20s", "5s", &["default"])]));
    let handler = handler(&prefix.prefix);
    let mut busy = runner(&prefix.prefix, "busy", "default", &[]);
    let scheduler = scheduler(&prefix.prefix, &dir, &[]);
    assert!(wait_until(Duration::from_secs(25), || target.connections.load(Ordering::SeqCst) >= 1), "never ran");
    busy.signal("-TERM");
    let status = busy.wait_exit(Duration::from_secs(10)).expect("runner exits within the drain timeout");
    assert_eq!(status.code(), Some(0), "{}", busy.stderr_text());
    let published = stop_scheduler(scheduler);
    let (results, _) = wait_accounted(&handler, published as usize, Duration::from_secs(10));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["runner"], "busy");
    assert_eq!(results[0]["status"], 0, "{}", results[0]["output"]);
    // Its last keepalive tells the handler the departure was planned.
    let farewell =
        || handler_records(&handler, "keepalive").iter().any(|k| k["runner"] == "busy" && k["stopping"] == true);
    assert!(wait_until(Duration::from_secs(10), farewell), "no stopping keepalive from the runner");
}

#[test]
fn a_scheduler_stopped_mid_burst_exits_cleanly_without_errors() {
    let prefix = BrokerPrefix::new("burst", &["default"]);
    // Nothing runs these (no runner): only the scheduler's publishing matters.
    let defs: Vec<Value> = (0..3000)
        .map(|i| json!({"name": format!("c{i}"), "type": "tls", "host": "127.0.0.1", "port": 9, "interval": "1s"}))
        .collect();
    let dir = checks(Value::Array(defs));
    let mut scheduler = scheduler(&prefix.prefix, &dir, &[]);
    scheduler.wait_ready(Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(3));
    scheduler.signal("-TERM");
    let status = scheduler.wait_exit(Duration::from_secs(10)).expect("scheduler exits on SIGTERM");
    let log = scheduler.stderr_text();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("scheduler stopped"), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "a clean stop logged errors: {errors:#?}");
}

#[test]
fn requests_nobody_took_in_time_are_dead_lettered_never_run_late() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let prefix = BrokerPrefix::new("stale", &["default"]);
    let dir = checks(json!([http_check("lonely", target.addr, "2s", "1s", &["default"])]));
    let handler = handler(&prefix.prefix);
    let scheduler = scheduler(&prefix.prefix, &dir, &[]);
    std::thread::sleep(Duration::from_secs(7));
    let published = stop_scheduler(scheduler);
    assert!(published >= 3, "published {published}");
    let _late = runner(&prefix.prefix, "late", "default", &[]);
    let (results, dead) = wait_accounted(&handler, published as usize, Duration::from_secs(10));
    eprintln!("accounting (stale): published={published} results={} dead_letters={}", results.len(), dead.len());
    assert_eq!(results.len() + dead.len(), published as usize);
    // Only the newest slot may still have been inside its start window (1s) when the runner came.
    assert!(results.len() <= 1, "stale requests ran: {results:?}");
    for result in &results {
        assert!(result["lateness_ms"].as_i64().unwrap() < 1000, "ran after its deadline: {result}");
    }
    assert!(dead.len() >= 2, "{dead:?}");
    assert!(dead.iter().all(|d| d["reason"] == "expired" && d["check"] == "lonely"), "{dead:?}");
    assert_eq!(target.connections.load(Ordering::SeqCst), results.len());
}

#[test]
fn poison_messages_are_dead_lettered_and_the_runner_keeps_consuming() {
    use lapin::options::BasicPublishOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let prefix = BrokerPrefix::new("poison", &["default"]);
    let key = ("PICKET_SIGNING_KEY", "a-test-signing-key-0123456789");
    let handler = handler(&prefix.prefix);
    let _runner = runner(&prefix.prefix, "sturdy", "default", &[key]);
    let forged = {
        let check = protocol::definition::parse_check(http_check("forged", target.addr, "10s", "1s", &[])).unwrap();
        let now = chrono::Utc::now();
        protocol::message::encode(&protocol::message::Message::CheckRequest(Box::new(protocol::CheckRequest {
            id: "forged".into(),
            check,
            subscription: "default".into(),
            scheduled_at: now,
            deadline: now + chrono::Duration::seconds(30),
            scheduler: "mallory".into(),
        })))
    };
    rt.block_on(async {
        // Ready means connected; the runner declares its queue as it
        // subscribes, and until then a request is unroutable and lost.
        let queue = format!("{}.sub.default", prefix.prefix);
        let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let declared =
                prefix.channel().await.queue_declare(queue.as_str().into(), passive, Default::default()).await;
            if declared.is_ok_and(|q| q.consumer_count() > 0) {
                break;
            }
            assert!(Instant::now() < deadline, "the runner never subscribed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let channel = prefix.channel().await;
        let mut bad_sig = FieldTable::default();
        bad_sig.insert("x-picket-sig".into(), AMQPValue::LongString("00ff".into()));
        // Signed with the key: what cannot be decoded is malformed, not unauthenticated.
        let signed = |body: &[u8]| {
            let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.1.as_bytes());
            let sig: String = ring::hmac::sign(&hmac, body).as_ref().iter().map(|b| format!("{b:02x}")).collect();
            let mut headers = FieldTable::default();
            headers.insert("x-picket-sig".into(), AMQPValue::LongString(sig.into()));
            headers
        };
        let v2 = br#"{"v": 2, "kind": "check_request"}"#.to_vec();
        for (body, headers) in [
            (b"not json".to_vec(), signed(b"not json")),
            (v2.clone(), signed(&v2)),
            (forged.clone(), FieldTable::default()),
            (forged, bad_sig),
        ] {
            channel
                .basic_publish(
                    format!("{}.requests", prefix.prefix).as_str().into(),
                    "default".into(),
                    BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default().with_headers(headers),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    let (_, dead) = wait_accounted(&handler, 4, Duration::from_secs(10));
    assert_eq!(dead.len(), 4, "{dead:?}");
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.iter().filter(|r| **r == "malformed").count(), 2, "{dead:?}");
    assert_eq!(reasons.iter().filter(|r| **r == "unauthenticated").count(), 2, "{dead:?}");
    assert!(_runner.stderr_text().contains("unsigned (PICKET_SIGNING_KEY is set)"), "{}", _runner.stderr_text());
    assert!(_runner.stderr_text().contains("bad signature"), "{}", _runner.stderr_text());

    let dir = checks(json!([http_check("honest", target.addr, "1s", "500ms", &["default"])]));
    let scheduler = scheduler(&prefix.prefix, &dir, &[key]);
    assert!(
        wait_until(Duration::from_secs(10), || !handler_records(&handler, "check_result").is_empty()),
        "the runner stopped consuming after the poison"
    );
    stop_scheduler(scheduler);
    assert_eq!(target.connections.load(Ordering::SeqCst), handler_records(&handler, "check_result").len());
}

/// With a signing key, a result or keepalive published by someone without
/// it (unsigned, or signed with another key) is dead-lettered as
/// `unauthenticated`, counted, and never reaches the handler's sink: no
/// CRITICAL for a check that is up, no runner that does not exist.
#[test]
fn forged_results_and_keepalives_are_refused_and_change_no_state() {
    use lapin::options::BasicPublishOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let prefix = BrokerPrefix::new("forged", &["default"]);
    let key = ("PICKET_SIGNING_KEY", "a-test-signing-key-0123456789");
    let handler = Role::start(&prefix.prefix, &["handler"], &[key]);
    handler.wait_ready(Duration::from_secs(15));
    let _runner = runner(&prefix.prefix, "honest", "default", &[key, ("PICKET_KEEPALIVE_INTERVAL", "1s")]);
    let dir = checks(json!([http_check("real", target.addr, "1s", "500ms", &["default"])]));
    let scheduler = scheduler(&prefix.prefix, &dir, &[key]);
    assert!(
        wait_until(Duration::from_secs(15), || {
            !handler_records(&handler, "check_result").is_empty() && !handler_records(&handler, "keepalive").is_empty()
        }),
        "signed results and keepalives are accepted: {}",
        handler.stderr_text()
    );

    let now = chrono::Utc::now().to_rfc3339();
    let result = json!({"v": 1, "kind": "check_result", "request_id": "forged-result", "check": "real",
        "subscription": "default", "runner": "mallory", "status": 2, "output": "forged outage",
        "scheduled_at": now, "started_at": now, "duration_ms": 1, "lateness_ms": 0,
        "policy": {"occurrences": 1, "refresh_secs": 60}});
    let keepalive = json!({"v": 1, "kind": "keepalive", "runner": "mallory", "subscriptions": ["default"],
        "version": "0", "started_at": now, "in_flight": 0, "executed": 0, "interval": 1});
    rt.block_on(async {
        let channel = prefix.channel().await;
        let mut wrong_key = FieldTable::default();
        // A well-formed HMAC-SHA256 (64 hex digits) of another key.
        wrong_key.insert("x-picket-sig".into(), AMQPValue::LongString("ab".repeat(32).into()));
        for (exchange, body) in [("results", &result), ("keepalives", &keepalive)] {
            let exchange = format!("{}.{exchange}", prefix.prefix);
            for headers in [FieldTable::default(), wrong_key.clone()] {
                channel
                    .basic_publish(
                        exchange.as_str().into(),
                        exchange.as_str().into(),
                        BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                        body.to_string().as_bytes(),
                        lapin::BasicProperties::default().with_headers(headers),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        }
        // A forged dead letter straight to the dead-letter exchange: an
        // `expired` one would raise `missed`.
        let mut expired = FieldTable::default();
        expired.insert("x-picket-reason".into(), AMQPValue::LongString("expired".into()));
        channel
            .basic_publish(
                format!("{}.dead", prefix.prefix).as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                br#"{"v": 1, "kind": "check_request"}"#,
                lapin::BasicProperties::default().with_headers(expired),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let refused = |kind: &str| {
        handler
            .get("/metrics")
            .lines()
            .filter(|l| {
                l.starts_with("picket_messages_refused_total{")
                    && l.contains(&format!("kind=\"{kind}\""))
                    && l.contains("reason=\"unauthenticated\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            refused("result") == 2.0 && refused("keepalive") == 2.0 && refused("dead_letter") == 1.0
        }),
        "refusals counted: {}",
        handler.get("/metrics")
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            handler_records(&handler, "dead_letter").iter().filter(|d| d["reason"] == "unauthenticated").count() == 4
        }),
        "the forged messages are dead-lettered as unauthenticated: {:?}",
        handler_records(&handler, "dead_letter")
    );
    // Later honest results are still taken, so the forged ones had their chance.
    let seen = handler_records(&handler, "check_result").len();
    assert!(wait_until(Duration::from_secs(10), || handler_records(&handler, "check_result").len() > seen + 1));
    stop_scheduler(scheduler);
    let results = handler_records(&handler, "check_result");
    assert!(results.iter().all(|r| r["runner"] == "honest" && r["status"] == 0), "{results:?}");
    let dead = handler_records(&handler, "dead_letter");
    assert!(dead.iter().all(|d| d["reason"] == "unauthenticated"), "{dead:?}");
    let keepalives = handler_records(&handler, "keepalive");
    assert!(keepalives.iter().all(|k| k["runner"] == "honest"), "{keepalives:?}");
    assert!(handler.stderr_text().contains("message refused"), "{}", handler.stderr_text());
    assert!(!handler.stderr_text().contains(key.1), "the key is never logged");
}

/// The broker closes a runner's publishing channel when it publishes to an
/// exchange that is gone (here deleted by the test): the runner notices,
/// reopens the channel, declares the topology again (the exchange and its
/// binding come back) and results flow on; meanwhile its `/readyz` is 503
/// and the requests it could not answer are requeued, not lost. Then the
/// handler's consumer is cancelled the same way, and resubscribes.
#[test]
fn a_publishing_channel_closed_by_the_broker_is_reopened_and_results_flow_again() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let prefix = BrokerPrefix::new("chanclose", &["default"]);
    let handler = handler(&prefix.prefix);
    let runner = runner(&prefix.prefix, "resilient", "default", &[]);
    let dir = checks(json!([http_check("steady", target.addr, "1s", "500ms", &["default"])]));
    let scheduler = scheduler(&prefix.prefix, &dir, &[]);
    assert!(
        wait_until(Duration::from_secs(15), || handler_records(&handler, "check_result").len() >= 2),
        "results flow before the fault: {}",
        runner.stderr_text()
    );

    // Watch the runner's /readyz from another thread while the fault lasts.
    let addr = runner.listen_addr();
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut answers = Vec::new();
            while watching.load(Ordering::SeqCst) {
                let mut stream = std::net::TcpStream::connect(&addr).unwrap();
                write!(stream, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
                let mut text = String::new();
                stream.read_to_string(&mut text).unwrap();
                answers.push(text.split_whitespace().nth(1).unwrap_or("?").to_owned());
                std::thread::sleep(Duration::from_millis(5));
            }
            answers
        })
    };
    rt.block_on(async {
        let channel = prefix.channel().await;
        channel
            .exchange_delete(format!("{}.results", prefix.prefix).as_str().into(), Default::default())
            .await
            .unwrap();
    });
    assert!(
        runner.wait_log("the broker closed the publishing channel", Duration::from_secs(15)),
        "the closed channel is noticed: {}",
        runner.stderr_text()
    );
    let at_recovery = handler_records(&handler, "check_result").len();
    assert!(
        wait_until(Duration::from_secs(20), || handler_records(&handler, "check_result").len() >= at_recovery + 3),
        "results flow again after the channel is reopened: {}",
        runner.stderr_text()
    );
    runner.wait_ready(Duration::from_secs(5));
    watching.store(false, Ordering::SeqCst);
    let answers = watcher.join().unwrap();
    assert_eq!(answers.last().map(String::as_str), Some("200"), "{answers:?}");
    // The 503 lasts from the channel's close being seen to the topology being
    // declared again, a few milliseconds here, so the watcher may or may not
    // poll inside it; what must hold is that it is never stuck.
    // The exchange is back: a passive declare succeeds.
    rt.block_on(async {
        let channel = prefix.channel().await;
        let passive = lapin::options::ExchangeDeclareOptions { passive: true, ..Default::default() };
        channel
            .exchange_declare(
                format!("{}.results", prefix.prefix).as_str().into(),
                lapin::ExchangeKind::Direct,
                passive,
                Default::default(),
            )
            .await
            .expect("the results exchange was declared again");
    });

    // Deleting the results queues (single results and batches) cancels the
    // handler's consumer: it resubscribes, declaring them again, and results
    // flow on (those published meanwhile were unroutable, so the runner
    // requeued them).
    rt.block_on(async {
        let channel = prefix.channel().await;
        for queue in ["results", "results.batch"] {
            let queue = format!("{}.{queue}", prefix.prefix);
            channel.queue_delete(queue.as_str().into(), Default::default()).await.unwrap();
        }
    });
    assert!(
        handler.wait_log("resubscribing", Duration::from_secs(10)),
        "the cancelled consumer is noticed: {}",
        handler.stderr_text()
    );
    let at_resubscribe = handler_records(&handler, "check_result").len();
    assert!(
        wait_until(Duration::from_secs(20), || handler_records(&handler, "check_result").len() >= at_resubscribe + 3),
        "results reach the handler again after its queue is declared again: {}",
        handler.stderr_text()
    );
    let published = stop_scheduler(scheduler);
    let (results, dead) = wait_accounted(&handler, published as usize, Duration::from_secs(20));
    assert_eq!(results.len() + dead.len(), published as usize, "nothing lost: {dead:?}");
}

#[test]
fn a_standby_scheduler_takes_over_within_10s_without_double_results() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let prefix = BrokerPrefix::new("leader", &["default"]);
    let dir = checks(json!([http_check("tick", target.addr, "1s", "500ms", &["default"])]));
    let handler = handler(&prefix.prefix);
    let _runner = runner(&prefix.prefix, "r", "default", &[]);
    let mut leader = scheduler(&prefix.prefix, &dir, &[]);
    assert!(leader.wait_log("leader: publishing", Duration::from_secs(15)), "{}", leader.stderr_text());
    let standby = scheduler(&prefix.prefix, &dir, &[]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!standby.stderr_text().contains("leader: publishing"), "two leaders");
    leader.signal("-KILL");
    leader.wait_exit(Duration::from_secs(5)).expect("killed");
    let killed_at = Instant::now();
    assert!(standby.wait_log("leader: publishing", Duration::from_secs(10)), "no takeover: {}", standby.stderr_text());
    let takeover = killed_at.elapsed();
    assert!(takeover < Duration::from_secs(10), "takeover took {takeover:?}");
    std::thread::sleep(Duration::from_secs(3));
    stop_scheduler(standby);
    std::thread::sleep(Duration::from_secs(2));
    let results = handler_records(&handler, "check_result");
    let slots: HashSet<&str> = results.iter().map(|r| r["scheduled_at"].as_str().unwrap()).collect();
    assert_eq!(slots.len(), results.len(), "a slot produced two results");
    assert!(results.len() >= 5, "{results:?}");
}

#[test]
fn bad_broker_configuration_exits_64_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "PICKET_AMQP_URL"),
        (&[("PICKET_AMQP_URL", "http://guest:secretpw@127.0.0.1/")], "PICKET_AMQP_URL"),
        (&[("PICKET_AMQP_URL", "amqp://guest:secretpw@127.0.0.1:5681/%2f,http://guest:secretpw@h/")], "entry 2 of 2"),
        (&[("PICKET_AMQP_URL", crate::support::AMQP_URL), ("PICKET_CONCURRENCY", "0")], "PICKET_CONCURRENCY"),
        (&[("PICKET_AMQP_URL", crate::support::AMQP_URL), ("PICKET_PREFIX", "bad prefix!")], "PICKET_PREFIX"),
    ];
    for (env, variable) in cases {
        let mut cmd = picket();
        cmd.arg("runner").env_remove("PICKET_AMQP_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{variable}: {stderr}");
        assert!(stderr.contains(variable), "{variable}: {stderr}");
        assert!(!stderr.contains("secretpw"), "the URL's password leaked: {stderr}");
    }
}

#[test]
fn cutting_the_broker_connections_loses_no_request() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let proxy = crate::support::BrokerProxy::start(&rt);
    let url = proxy.url();
    let via_proxy = [("PICKET_AMQP_URL", url.as_str())];
    let prefix = BrokerPrefix::new("cut", &["default"]);
    let defs: Vec<Value> =
        (0..3).map(|i| http_check(&format!("c{i}"), target.addr, "1s", "500ms", &["default"])).collect();
    let dir = checks(json!(defs));
    let handler = Role::start(&prefix.prefix, &["handler"], &via_proxy);
    handler.wait_ready(Duration::from_secs(15));
    let runner = runner(&prefix.prefix, "r", "default", &via_proxy);
    let scheduler = scheduler(&prefix.prefix, &dir, &via_proxy);
    std::thread::sleep(Duration::from_secs(3));
    proxy.sever();
    // Every role notices, reconnects and becomes ready again. The not-ready
    // window lasts one reconnect (about 200 ms), too short to poll for
    // reliably, so the notice is read from the log.
    assert!(
        wait_until(Duration::from_secs(5), || runner.stderr_text().contains("lost the broker connection")),
        "never noticed"
    );
    runner.wait_ready(Duration::from_secs(15));
    handler.wait_ready(Duration::from_secs(15));
    scheduler.wait_ready(Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(3));
    proxy.sever();
    std::thread::sleep(Duration::from_secs(4));
    let published = stop_scheduler(scheduler);
    let (results, dead) = wait_accounted(&handler, published as usize, Duration::from_secs(20));
    let after_cut = results.len() + dead.len();
    eprintln!("accounting (cut): published={published} results={} dead_letters={}", results.len(), dead.len());
    // A request whose confirm was lost with the connection may still have
    // landed, so the handler can see more than the scheduler counted, never fewer.
    assert!(after_cut >= published as usize, "published {published}, accounted {after_cut}: lost requests");
    let ids: HashSet<&str> = results.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), results.len());
    assert!(results.len() >= 18, "too few results across the cuts: {}", results.len());
}
