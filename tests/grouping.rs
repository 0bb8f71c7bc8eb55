//! Grouped notifications through the real binary: a storm of failures is
//! one Slack message and one PagerDuty summary incident, and its end one
//! more of each.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BrokerPrefix, Receiver, Role, checks_dir, path_str, picket, spawn_switch_target, wait_until};

const CHECKS: usize = 12;

/// Twelve failing checks routed to a grouped Slack handler and a PagerDuty
/// one with `storm`, and their handler definitions, as files.
fn storm_definitions(target: std::net::SocketAddr, pagerduty: &Receiver) -> tempfile::TempDir {
    let mut files: Vec<_> = (0..CHECKS)
        .map(|n| {
            let check = json!({"name": format!("c-{n:02}"), "type": "http", "url": format!("http://{target}/"),
                               "interval": "1s", "timeout": "500ms", "handlers": ["ops", "pd"]});
            (format!("c-{n:02}.json"), check.to_string())
        })
        .collect();
    let group = json!({"by": ["subscription"], "wait": "3s", "max": 5});
    let handlers = json!([
        {"name": "ops", "type": "slack", "webhook_url": {"env": "SLACK_WEBHOOK_OPS"}, "group": group},
        {"name": "pd", "type": "pagerduty", "routing_key": {"env": "PD_ROUTING_KEY"}, "group": group, "storm": 5,
         "api_url": format!("http://{}/v2/enqueue", pagerduty.addr)},
    ]);
    files.push(("handlers.json".to_owned(), handlers.to_string()));
    let files: Vec<_> = files.iter().map(|(name, text)| (name.as_str(), text.clone())).collect();
    checks_dir(&files)
}

/// Fails every check, waits for the grouped problem, heals the target and
/// waits for the grouped resolve; true when both arrived.
fn storm_and_recovery(healthy: &std::sync::atomic::AtomicBool, slack: &Receiver, pagerduty: &Receiver) -> bool {
    let problem =
        wait_until(Duration::from_secs(30), || !slack.received().is_empty() && !pagerduty.received().is_empty());
    healthy.store(true, Ordering::SeqCst);
    let resolved =
        wait_until(Duration::from_secs(30), || slack.received().len() >= 2 && pagerduty.received().len() >= 2);
    // Long enough for a stray second message of the same storm to show.
    std::thread::sleep(Duration::from_millis(1500));
    problem && resolved
}

/// One Slack message for the storm and one for its end, each listing five
/// checks and counting the rest; one PagerDuty summary incident and its resolve.
fn assert_one_message_each_way(slack: &Receiver, pagerduty: &Receiver) {
    let messages: Vec<Value> = slack.received().iter().map(|m| m["attachments"][0].clone()).collect();
    assert_eq!(messages.len(), 2, "one message per storm: {messages:#?}");
    for (message, headline) in messages.iter().zip(["CRITICAL", "RESOLVED"]) {
        assert_eq!(message["title"], format!("{CHECKS} checks {headline} on subscription default"), "{message:#}");
        let lines: Vec<_> = message["text"].as_str().unwrap().lines().collect();
        assert_eq!(lines.len(), 6, "five checks listed, then the rest counted: {lines:?}");
        assert!(lines[..5].iter().all(|l| l.starts_with(&format!("{headline}: c-"))), "{lines:?}");
        assert_eq!(lines[5], format!("and {} more", CHECKS - 5));
    }

    let pd = pagerduty.received();
    assert_eq!(pd.len(), 2, "one summary incident, then its resolve: {pd:#?}");
    assert_eq!(pd[0]["event_action"], "trigger");
    assert_eq!(pd[0]["payload"]["summary"], format!("{CHECKS} checks CRITICAL on subscription default"));
    assert_eq!(pd[0]["payload"]["custom_details"]["more"], CHECKS - 5);
    assert_eq!(pd[1]["event_action"], "resolve");
    let key = pd[0]["dedup_key"].as_str().unwrap();
    assert!(key.starts_with("picket/storm/"), "{key}");
    assert_eq!(pd[1]["dedup_key"], key);
}

#[test]
fn standalone_groups_a_storm_into_one_slack_message_and_one_summary_incident() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (target, healthy) = spawn_switch_target(&rt);
    let slack = Receiver::start(&rt, 200);
    let pagerduty = Receiver::start(&rt, 202);
    let dir = storm_definitions(target, &pagerduty);
    let state = tempfile::tempdir().unwrap();
    let child = picket()
        .args(["standalone", "--checks", &path_str(dir.path())])
        .env("PICKET_LISTEN", "127.0.0.1:0")
        .env("PICKET_STATE_DIR", state.path())
        .env("SLACK_WEBHOOK_OPS", format!("http://{}/services/T0/B0/GROUPED", slack.addr))
        .env("PD_ROUTING_KEY", "routing-key-GROUPED")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let arrived = storm_and_recovery(&healthy, &slack, &pagerduty);
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(arrived, "slack got {:?}\npagerduty got {:?}\n{stderr}", slack.received(), pagerduty.received());
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_one_message_each_way(&slack, &pagerduty);
}

/// The same storm through the distributed roles over RabbitMQ: the handler
/// groups what it takes from the results queue.
#[test]
fn the_distributed_handler_groups_a_storm_into_one_slack_message_and_one_summary_incident() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (target, healthy) = spawn_switch_target(&rt);
    let slack = Receiver::start(&rt, 200);
    let pagerduty = Receiver::start(&rt, 202);
    let dir = storm_definitions(target, &pagerduty);
    let checks = path_str(dir.path());
    let prefix = BrokerPrefix::new("grouping", &["default"]);
    let slack_url = format!("http://{}/services/T0/B0/GROUPED", slack.addr);
    let handler = Role::start(
        &prefix.prefix,
        &["handler", "--checks", &checks],
        &[("SLACK_WEBHOOK_OPS", slack_url.as_str()), ("PD_ROUTING_KEY", "routing-key-GROUPED")],
    );
    handler.wait_ready(Duration::from_secs(15));
    let runner = Role::start(&prefix.prefix, &["runner"], &[("PICKET_SUBSCRIPTIONS", "default")]);
    runner.wait_ready(Duration::from_secs(15));
    let _scheduler = Role::start(&prefix.prefix, &["scheduler", "--checks", &checks], &[]);
    let arrived = storm_and_recovery(&healthy, &slack, &pagerduty);
    assert!(
        arrived,
        "slack got {:?}\npagerduty got {:?}\n{}",
        slack.received(),
        pagerduty.received(),
        handler.stderr_text()
    );
    assert_one_message_each_way(&slack, &pagerduty);
}
