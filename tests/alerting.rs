//! Alerts end to end: results become notifications at local Slack and
//! PagerDuty receivers, over RabbitMQ and in standalone mode.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    BrokerPrefix, Receiver, Role, Schema, checks_dir, path_str, picket, spawn_switch_target, wait_until,
};

const ROUTING_KEY: &str = "routing-key-SECRET-0123456789";
const SLACK_TOKEN: &str = "T000/B000/SLACKSECRET42";

fn actions(receiver: &Receiver) -> Vec<String> {
    receiver.received().iter().map(|b| b["event_action"].as_str().unwrap_or("?").to_owned()).collect()
}

#[test]
fn a_standby_handler_on_the_same_postgres_store_resolves_what_the_dead_one_triggered() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (target, healthy) = spawn_switch_target(&rt);
    let pagerduty = Receiver::start(&rt, 202);
    let prefix = BrokerPrefix::new("alerting", &["default"]);
    let schema = Schema::new("alerting");
    let check = json!({"name": "flip", "type": "http", "url": format!("http://{target}/"), "interval": "1s",
                       "timeout": "500ms", "handlers": ["pd"]});
    let pd = json!([{"name": "pd", "type": "pagerduty", "routing_key": {"env": "PD_ROUTING_KEY"},
                     "api_url": format!("http://{}/v2/enqueue", pagerduty.addr)}]);
    let dir = checks_dir(&[("flip.json", check.to_string()), ("handlers.json", pd.to_string())]);
    let dir_path = path_str(dir.path());
    let env = [
        ("PICKET_CHECKS", dir_path.as_str()),
        ("PD_ROUTING_KEY", ROUTING_KEY),
        ("PICKET_STATE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        ("PICKET_STATE_SCHEMA", schema.0.as_str()),
    ];
    let mut active = Role::start(&prefix.prefix, &["handler"], &env);
    active.wait_ready(Duration::from_secs(15));
    let standby = Role::start(&prefix.prefix, &["handler"], &env);
    standby.wait_ready(Duration::from_secs(15));
    let runner = Role::start(&prefix.prefix, &["runner"], &[]);
    runner.wait_ready(Duration::from_secs(15));
    let _scheduler = Role::start(&prefix.prefix, &["scheduler", "--checks", &dir_path], &[]);

    assert!(wait_until(Duration::from_secs(15), || actions(&pagerduty) == ["trigger"]), "{:?}", pagerduty.received());
    active.signal("-KILL");
    active.wait_exit(Duration::from_secs(5)).expect("killed");
    healthy.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(20), || actions(&pagerduty).contains(&"resolve".to_owned())),
        "the standby never resolved: {:?}\n{}",
        pagerduty.received(),
        standby.stderr_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    let received = pagerduty.received();
    assert_eq!(actions(&pagerduty), ["trigger", "resolve"], "{received:?}");
    for body in &received {
        assert_eq!(body["dedup_key"], "picket/default/flip");
        assert_eq!(body["routing_key"], ROUTING_KEY);
    }
    assert_eq!(received[0]["payload"]["severity"], "critical");
    for role in [&active, &standby] {
        let logs = format!("{}\n{}", role.stdout_lines().join("\n"), role.stderr_text());
        assert!(!logs.contains(ROUTING_KEY), "the routing key leaked into a handler's output");
    }
}

#[test]
fn standalone_notifies_slack_of_a_problem_and_its_resolution() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (target, healthy) = spawn_switch_target(&rt);
    let slack = Receiver::start(&rt, 200);
    let webhook = format!("http://{}/services/{SLACK_TOKEN}", slack.addr);
    let check = json!({"name": "flip", "type": "http", "url": format!("http://{target}/"), "interval": "1s",
                       "timeout": "500ms", "handlers": ["ops"], "occurrences": 2});
    let handlers = json!([{"name": "ops", "type": "slack", "webhook_url": {"env": "SLACK_WEBHOOK_OPS"}}]);
    let dir = checks_dir(&[("flip.json", check.to_string()), ("handlers.json", handlers.to_string())]);
    let state = tempfile::tempdir().unwrap();
    let child = picket()
        .args(["standalone", "--checks", &path_str(dir.path())])
        .env("PICKET_LISTEN", "127.0.0.1:0")
        .env("PICKET_STATE_DIR", state.path())
        .env("SLACK_WEBHOOK_OPS", &webhook)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let problem = wait_until(Duration::from_secs(15), || slack.received().len() == 1);
    healthy.store(true, Ordering::SeqCst);
    let resolved = wait_until(Duration::from_secs(15), || slack.received().len() == 2);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(problem && resolved, "slack got {:?}\n{stderr}", slack.received());
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let messages = slack.received();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let title = |m: &Value| m["attachments"][0]["title"].as_str().unwrap_or_default().to_owned();
    assert!(title(&messages[0]).starts_with("CRITICAL"), "{messages:?}");
    assert!(title(&messages[1]).contains("OK") || title(&messages[1]).contains("RESOLVED"), "{messages:?}");
    assert!(stdout.contains("EVENT problem"), "{stdout}");
    assert!(stdout.contains("EVENT resolved"), "{stdout}");
    assert!(!stdout.contains(SLACK_TOKEN) && !stderr.contains(SLACK_TOKEN), "the webhook URL leaked");
}

/// The handler is down while `blip` fails and recovers and `down` fails and
/// stays failing; the runner's results wait on RabbitMQ. With 1 s checks a
/// result more than 2 s old is late (`PICKET_LATE_AFTER_PERIODS`, default
/// 2), so the restarted handler drains the backlog without paging for
/// `blip`, and pages once for `down`, from its fresh results.
#[test]
fn a_restarted_handler_does_not_page_for_a_failure_that_ended_in_its_backlog() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (blip_target, blip_healthy) = spawn_switch_target(&rt);
    let (down_target, _down_healthy) = spawn_switch_target(&rt);
    let pagerduty = Receiver::start(&rt, 202);
    let prefix = BrokerPrefix::new("backlog", &["default"]);
    let schema = Schema::new("backlog");
    let check = |name: &str, target| {
        json!({"name": name, "type": "http", "url": format!("http://{target}/"), "interval": "1s",
               "timeout": "500ms", "handlers": ["pd"]})
        .to_string()
    };
    let pd = json!([{"name": "pd", "type": "pagerduty", "routing_key": {"env": "PD_ROUTING_KEY"},
                     "api_url": format!("http://{}/v2/enqueue", pagerduty.addr)}]);
    let dir = checks_dir(&[
        ("blip.json", check("blip", blip_target)),
        ("down.json", check("down", down_target)),
        ("handlers.json", pd.to_string()),
    ]);
    let dir_path = path_str(dir.path());
    let mut env = vec![("PICKET_CHECKS", dir_path.as_str()), ("PD_ROUTING_KEY", ROUTING_KEY)];
    env.extend(schema.env());
    // Started once so the store and the queues exist, then stopped.
    let mut handler = Role::start(&prefix.prefix, &["handler"], &env);
    handler.wait_ready(Duration::from_secs(15));
    handler.signal("-TERM");
    handler.wait_exit(Duration::from_secs(10)).expect("the handler stops");

    let runner = Role::start(&prefix.prefix, &["runner"], &[]);
    runner.wait_ready(Duration::from_secs(15));
    let _scheduler = Role::start(&prefix.prefix, &["scheduler", "--checks", &dir_path], &[]);
    let published = || runner.metric("picket_results_published_total");
    assert!(wait_until(Duration::from_secs(20), || published() >= 6.0), "{}", runner.stderr_text());
    blip_healthy.store(true, Ordering::SeqCst);
    let recovered_at = published();
    assert!(wait_until(Duration::from_secs(20), || published() >= recovered_at + 10.0), "{}", runner.stderr_text());

    let handler = Role::start(&prefix.prefix, &["handler"], &env);
    assert!(
        wait_until(Duration::from_secs(20), || !pagerduty.received().is_empty()),
        "down was never paged: {}",
        handler.stderr_text()
    );
    // Whatever else the backlog raised would be sent by now.
    std::thread::sleep(Duration::from_secs(3));
    let received = pagerduty.received();
    let paged: Vec<_> = received.iter().map(|b| (b["event_action"].as_str(), b["dedup_key"].as_str())).collect();
    assert_eq!(paged, [(Some("trigger"), Some("picket/default/down"))], "{received:?}");
    let blip_failures = schema.query("select count(*) from {schema}.results where check_name = 'blip' and status <> 0");
    assert_ne!(blip_failures, "0", "blip's failures reached the store as state");
    assert!(handler.wait_log("late results applied", Duration::from_secs(1)), "{}", handler.stderr_text());
}

/// A check with `"quorum": 2` over eu and us, each served by its own runner;
/// the eu runner's deny list refuses loopback, so eu always fails. eu alone
/// is 1 of 2 and pages nobody (its own problem is logged); when us fails
/// too, PagerDuty gets one incident `picket/web` naming both, resolved when
/// us recovers.
#[test]
fn a_quorum_check_pages_once_when_enough_subscriptions_fail() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (target, healthy) = spawn_switch_target(&rt);
    healthy.store(true, Ordering::SeqCst);
    let pagerduty = Receiver::start(&rt, 202);
    let prefix = BrokerPrefix::new("quorum", &["eu", "us"]);
    let schema = Schema::new("quorum");
    let check = json!({"name": "web", "type": "http", "url": format!("http://{target}/"), "interval": "1s",
                       "timeout": "500ms", "handlers": ["pd"], "subscriptions": ["eu", "us"], "quorum": 2});
    let pd = json!([{"name": "pd", "type": "pagerduty", "routing_key": {"env": "PD_ROUTING_KEY"},
                     "api_url": format!("http://{}/v2/enqueue", pagerduty.addr)}]);
    let dir = checks_dir(&[("web.json", check.to_string()), ("handlers.json", pd.to_string())]);
    let dir_path = path_str(dir.path());
    let mut env = vec![("PICKET_CHECKS", dir_path.as_str()), ("PD_ROUTING_KEY", ROUTING_KEY)];
    env.extend(schema.env());
    let handler = Role::start(&prefix.prefix, &["handler"], &env);
    handler.wait_ready(Duration::from_secs(15));
    let blind_eu = [("PICKET_SUBSCRIPTIONS", "eu"), ("PICKET_DENY_CIDRS", "127.0.0.0/8")];
    let eu = Role::start(&prefix.prefix, &["runner"], &blind_eu);
    let us = Role::start(&prefix.prefix, &["runner"], &[("PICKET_SUBSCRIPTIONS", "us")]);
    eu.wait_ready(Duration::from_secs(15));
    us.wait_ready(Duration::from_secs(15));
    let _scheduler = Role::start(&prefix.prefix, &["scheduler", "--checks", &dir_path], &[]);

    let count = |sql: &str| schema.query(sql).parse::<u64>().unwrap_or(0);
    let eu_problem = "select count(*) from {schema}.events where kind = 'problem' and subscription = 'eu'";
    let us_ok = "select count(*) from {schema}.results where subscription = 'us' and status = 0";
    assert!(
        wait_until(Duration::from_secs(20), || count(eu_problem) == 1 && count(us_ok) >= 2),
        "eu never failed alone: {}",
        handler.stderr_text()
    );
    assert!(pagerduty.received().is_empty(), "1 of 2 paged: {:?}", pagerduty.received());

    healthy.store(false, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(15), || actions(&pagerduty) == ["trigger"]), "{:?}", pagerduty.received());
    healthy.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(15), || actions(&pagerduty) == ["trigger", "resolve"]),
        "{:?}",
        pagerduty.received()
    );
    let received = pagerduty.received();
    for body in &received {
        assert_eq!(body["dedup_key"], "picket/web", "{received:?}");
    }
    let summary = received[0]["payload"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("CRITICAL: web across its subscriptions: 2 of 2 subscriptions failing (eu, us)"),
        "{summary}"
    );
}

/// `api` depends on `canary`, over RabbitMQ on PostgreSQL. The canary fails
/// (paged), then api fails: held, logged with `depends_on:canary`, not
/// paged. The canary recovers while api still fails: its resolve, then api's
/// problem, told then; api's resolve follows.
#[test]
fn a_dependent_problem_is_held_while_its_canary_fails() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (canary_target, canary_healthy) = spawn_switch_target(&rt);
    let (api_target, api_healthy) = spawn_switch_target(&rt);
    canary_healthy.store(true, Ordering::SeqCst);
    api_healthy.store(true, Ordering::SeqCst);
    let pagerduty = Receiver::start(&rt, 202);
    let prefix = BrokerPrefix::new("depends", &["default"]);
    let schema = Schema::new("depends");
    let check = |name: &str, target, extra: Value| {
        let mut check = json!({"name": name, "type": "http", "url": format!("http://{target}/"), "interval": "1s",
                               "timeout": "500ms", "handlers": ["pd"]});
        check.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check.to_string()
    };
    let pd = json!([{"name": "pd", "type": "pagerduty", "routing_key": {"env": "PD_ROUTING_KEY"},
                     "api_url": format!("http://{}/v2/enqueue", pagerduty.addr)}]);
    let dir = checks_dir(&[
        ("canary.json", check("canary", canary_target, json!({}))),
        ("api.json", check("api", api_target, json!({"depends_on": ["canary"]}))),
        ("handlers.json", pd.to_string()),
    ]);
    let dir_path = path_str(dir.path());
    let mut env = vec![("PICKET_CHECKS", dir_path.as_str()), ("PD_ROUTING_KEY", ROUTING_KEY)];
    env.extend(schema.env());
    let handler = Role::start(&prefix.prefix, &["handler"], &env);
    handler.wait_ready(Duration::from_secs(15));
    let runner = Role::start(&prefix.prefix, &["runner"], &[]);
    runner.wait_ready(Duration::from_secs(15));
    let _scheduler = Role::start(&prefix.prefix, &["scheduler", "--checks", &dir_path], &[]);
    let paged = || -> Vec<(String, String)> {
        pagerduty
            .received()
            .iter()
            .map(|b| {
                (
                    b["dedup_key"].as_str().unwrap_or("?").to_owned(),
                    b["event_action"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect()
    };
    let pair = |key: &str, action: &str| (format!("picket/default/{key}"), action.to_owned());

    canary_healthy.store(false, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(15), || paged() == [pair("canary", "trigger")]), "{:?}", paged());
    api_healthy.store(false, Ordering::SeqCst);
    let held = "select count(*) from {schema}.events where check_name = 'api' and kind = 'problem' \
                and body like '%depends_on:canary%'";
    assert!(
        wait_until(Duration::from_secs(15), || schema.query(held) == "1"),
        "api's problem was never held: {}",
        handler.stderr_text()
    );
    assert_eq!(paged(), [pair("canary", "trigger")], "api was paged while the canary failed");

    canary_healthy.store(true, Ordering::SeqCst);
    let told = [pair("canary", "trigger"), pair("canary", "resolve"), pair("api", "trigger")];
    assert!(wait_until(Duration::from_secs(15), || paged() == told), "{:?}", paged());
    api_healthy.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(15), || paged().len() == 4), "{:?}", paged());
    assert_eq!(paged()[3], pair("api", "resolve"));
    let summary = pagerduty.received()[2]["payload"]["summary"].as_str().unwrap_or_default().to_owned();
    assert!(summary.contains("canary recovered; still CRITICAL"), "{summary}");
}
