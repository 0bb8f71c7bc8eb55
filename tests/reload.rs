//! Definitions reloaded while running: `picket standalone` picks up new
//! checks, handlers and maintenance windows without a restart, and refuses
//! an invalid edit while the running set goes on.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BrokerPrefix, Receiver, Role, checks_dir, handler_records, path_str, spawn_target, wait_until};

/// The checks `/api/v1/checks` has rows for.
fn api_checks(role: &Role) -> Vec<String> {
    let text = role.get("/api/v1/checks");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let rows: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    rows.as_array().into_iter().flatten().filter_map(|r| r["check"].as_str().map(str::to_owned)).collect()
}

/// How many result lines standalone printed for `check`.
fn results(role: &Role, check: &str) -> usize {
    role.stdout_lines().iter().filter(|l| l.split_whitespace().nth(1) == Some(check)).count()
}

/// A check of a closed port, CRITICAL at every run, naming `handlers`.
fn failing_check(closed: std::net::SocketAddr, name: &str, handlers: &[&str]) -> String {
    json!({"name": name, "type": "http", "url": format!("http://{closed}/"), "interval": "1s",
           "timeout": "500ms", "handlers": handlers})
    .to_string()
}

/// The Slack handler the tests add; its webhook URL is in `SLACK_WEBHOOK_OPS`.
fn slack_handler() -> String {
    json!([{"name": "ops", "type": "slack", "webhook_url": {"env": "SLACK_WEBHOOK_OPS"}}]).to_string()
}

/// A recording Slack, its webhook URL (which the tests look for in the logs)
/// and a loopback port nothing listens on, for checks that fail.
fn slack_and_a_closed_port(runtime: &tokio::runtime::Runtime) -> (Receiver, String, std::net::SocketAddr) {
    let slack = Receiver::start(runtime, 200);
    let webhook = format!("http://{}/services/T0/B0/RELOAD", slack.addr);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    (slack, webhook, closed)
}

fn standalone(dir: &std::path::Path, env: &[(&str, &str)]) -> Role {
    Role::start("unused", &["standalone", "--checks", &path_str(dir)], env)
}

#[test]
fn standalone_reloads_a_new_check_and_refuses_an_invalid_edit() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&runtime, Duration::ZERO);
    let check = |name: &str| {
        json!({"name": name, "type": "http", "url": format!("http://{}/", target.addr), "interval": "1s",
               "timeout": "500ms"})
        .to_string()
    };
    let dir = checks_dir(&[("first.json", check("first"))]);
    let mut role = standalone(dir.path(), &[]);
    role.wait_ready(Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(10), || api_checks(&role).contains(&"first".to_owned())));

    std::fs::write(dir.path().join("second.json"), check("second")).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || api_checks(&role).contains(&"second".to_owned())),
        "the new check never ran: {}",
        role.stderr_text()
    );
    assert!(role.stderr_text().contains("definitions changed: reloading"), "{}", role.stderr_text());

    // An invalid edit: refused with its position, and both checks go on.
    let broken = check("second").replace("\"1s\"", "\"1 s\"");
    let column = broken.find("\"1 s\"").unwrap() + 1;
    std::fs::write(dir.path().join("second.json"), &broken).unwrap();
    assert!(role.wait_log("reload refused", Duration::from_secs(10)), "{}", role.stderr_text());
    let refusal = role.stderr_text();
    let position = format!("second.json:1:{column}: interval: \"1 s\" is not a duration");
    assert!(refusal.contains(&position), "wanted {position} in {refusal}");
    let (first, second) = (results(&role, "first"), results(&role, "second"));
    assert!(
        wait_until(Duration::from_secs(10), || results(&role, "first") >= first + 2
            && results(&role, "second") >= second + 2),
        "the running checks stopped after a refused reload"
    );

    // A check in a pool the in-process runner does not serve is refused too.
    let elsewhere = json!({"name": "far", "type": "http", "url": "http://127.0.0.1:9/", "interval": "1s",
                           "timeout": "500ms", "subscriptions": ["elsewhere"]});
    std::fs::write(dir.path().join("second.json"), check("second")).unwrap();
    std::fs::write(dir.path().join("far.json"), elsewhere.to_string()).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || role.stderr_text().contains("subscription(s) elsewhere are new")),
        "{}",
        role.stderr_text()
    );
    std::fs::remove_file(dir.path().join("far.json")).unwrap();

    // SIGHUP reloads, and no longer ends the process.
    role.signal("-HUP");
    assert!(role.wait_log("SIGHUP: reloading definitions", Duration::from_secs(5)), "{}", role.stderr_text());
    std::thread::sleep(Duration::from_millis(300));
    assert!(role.child.try_wait().unwrap().is_none(), "SIGHUP ended standalone");

    role.signal("-TERM");
    assert_eq!(role.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
}

#[test]
fn standalone_reloads_handlers_and_maintenance_windows() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (slack, webhook, closed) = slack_and_a_closed_port(&runtime);
    let down = |name: &str, handlers: &[&str]| failing_check(closed, name, handlers);
    let dir = checks_dir(&[("down.json", down("down", &[]))]);
    let mut role = standalone(dir.path(), &[("SLACK_WEBHOOK_OPS", &webhook)]);
    role.wait_ready(Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(10), || results(&role, "down") >= 1));

    // A handler and a check naming it, added together: its problem reaches Slack.
    std::fs::write(dir.path().join("handlers.json"), slack_handler()).unwrap();
    std::fs::write(dir.path().join("paged.json"), down("paged", &["ops"])).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || !slack.received().is_empty()),
        "the new handler got nothing: {}",
        role.stderr_text()
    );
    let message = &slack.received()[0];
    let title = message["attachments"][0]["title"].as_str().unwrap_or_default();
    assert!(title.starts_with("CRITICAL") && title.contains("paged"), "{message}");

    // A window that is open as soon as it is loaded, then removed.
    let window = json!({"kind": "maintenance", "name": "deploy", "match": {"check": "down"},
                        "cron": "* * * * * *", "duration": "1h", "comment": "deploying"});
    std::fs::write(dir.path().join("windows.json"), window.to_string()).unwrap();
    assert!(role.wait_log("maintenance window open window=deploy", Duration::from_secs(10)), "{}", role.stderr_text());
    assert!(role.stderr_text().contains("alerting definitions reloaded windows=1"), "{}", role.stderr_text());
    std::fs::remove_file(dir.path().join("windows.json")).unwrap();
    assert!(
        role.wait_log("maintenance window closed window=deploy", Duration::from_secs(10)),
        "{}",
        role.stderr_text()
    );

    role.signal("-TERM");
    assert_eq!(role.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    assert!(!role.stderr_text().contains("RELOAD") && !role.stdout_lines().join("\n").contains("RELOAD"));
}

#[test]
fn the_handler_role_reloads_its_handlers_and_refuses_an_invalid_edit() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (slack, webhook, closed) = slack_and_a_closed_port(&runtime);
    let down = |name: &str, handlers: &[&str]| failing_check(closed, name, handlers);
    let prefix = BrokerPrefix::new("reload", &["default"]);
    // The scheduler and the handler read their own checkouts, so the test
    // can hand the handler its new handler before any result needs it.
    let scheduled = checks_dir(&[("down.json", down("down", &[]))]);
    let handled = checks_dir(&[("down.json", down("down", &[]))]);
    let handled_path = path_str(handled.path());
    let handler = Role::start(
        &prefix.prefix,
        &["handler"],
        &[("PICKET_CHECKS", handled_path.as_str()), ("SLACK_WEBHOOK_OPS", webhook.as_str())],
    );
    handler.wait_ready(Duration::from_secs(15));
    let runner = Role::start(&prefix.prefix, &["runner"], &[]);
    runner.wait_ready(Duration::from_secs(15));
    let _scheduler = Role::start(&prefix.prefix, &["scheduler", "--checks", &path_str(scheduled.path())], &[]);
    assert!(
        wait_until(Duration::from_secs(15), || !handler_records(&handler, "check_result").is_empty()),
        "{}",
        handler.stderr_text()
    );

    std::fs::write(handled.path().join("handlers.json"), slack_handler()).unwrap();
    std::fs::write(handled.path().join("paged.json"), down("paged", &["ops"])).unwrap();
    assert!(handler.wait_log("alerting definitions reloaded", Duration::from_secs(10)), "{}", handler.stderr_text());
    std::fs::write(scheduled.path().join("handlers.json"), slack_handler()).unwrap();
    std::fs::write(scheduled.path().join("paged.json"), down("paged", &["ops"])).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || !slack.received().is_empty()),
        "the reloaded handler sent nothing: {}",
        handler.stderr_text()
    );
    let title = slack.received()[0]["attachments"][0]["title"].as_str().unwrap_or_default().to_owned();
    assert!(title.starts_with("CRITICAL") && title.contains("paged"), "{title}");

    // A secret written inline: refused at its position, and the handler goes on.
    let inline = r#"[{"name": "ops", "type": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/INLINE"}]"#;
    std::fs::write(handled.path().join("handlers.json"), inline).unwrap();
    assert!(handler.wait_log("reload refused", Duration::from_secs(10)), "{}", handler.stderr_text());
    let refusal = handler.stderr_text();
    assert!(refusal.contains("handlers.json:1:50: webhook_url: secrets are never written"), "{refusal}");
    assert!(!refusal.contains("INLINE"), "the refused secret was logged");
    let results = handler_records(&handler, "check_result").len();
    assert!(wait_until(Duration::from_secs(10), || handler_records(&handler, "check_result").len() >= results + 2));
    handler.wait_ready(Duration::from_secs(5));
}

#[test]
fn a_window_loaded_by_reload_holds_a_problem_until_it_is_removed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (slack, webhook, closed) = slack_and_a_closed_port(&runtime);
    let window = json!({"kind": "maintenance", "name": "deploy", "match": {"check": "paged"},
                        "cron": "* * * * * *", "duration": "1h", "comment": "deploying"});
    let dir = checks_dir(&[("down.json", failing_check(closed, "down", &[]))]);
    let mut role = standalone(dir.path(), &[("SLACK_WEBHOOK_OPS", &webhook)]);
    role.wait_ready(Duration::from_secs(10));
    std::fs::write(dir.path().join("windows.json"), window.to_string()).unwrap();
    std::fs::write(dir.path().join("handlers.json"), slack_handler()).unwrap();
    std::fs::write(dir.path().join("paged.json"), failing_check(closed, "paged", &["ops"])).unwrap();
    assert!(wait_until(Duration::from_secs(10), || results(&role, "paged") >= 3), "{}", role.stderr_text());
    assert!(slack.received().is_empty(), "{:?}", slack.received());
    std::fs::remove_file(dir.path().join("windows.json")).unwrap();
    assert!(wait_until(Duration::from_secs(15), || !slack.received().is_empty()), "{}", role.stderr_text());
    let text = slack.received()[0]["attachments"][0]["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.starts_with("silence maintenance:deploy by git ended; still CRITICAL"), "{text}");
    role.signal("-TERM");
    assert_eq!(role.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_check_removed_by_reload_leaves_metrics_and_asked_for_labels_are_copied() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&runtime, Duration::ZERO);
    let check = |name: &str| {
        json!({"name": name, "type": "http", "url": format!("http://{}/", target.addr), "interval": "1s",
               "timeout": "500ms", "labels": {"team": "payments", "tier": "1"}})
        .to_string()
    };
    let dir = checks_dir(&[("kept.json", check("kept")), ("removed.json", check("removed"))]);
    let role = Role::standalone(dir.path(), &[("PICKET_METRIC_LABELS", "team")]);
    role.wait_ready(Duration::from_secs(10));
    let series =
        |check: &str| format!("picket_check_status{{check=\"{check}\",subscription=\"default\",team=\"payments\"}}");
    assert!(
        wait_until(Duration::from_secs(15), || {
            let metrics = role.get("/metrics");
            metrics.contains(&series("kept")) && metrics.contains(&series("removed"))
        }),
        "{}",
        role.get("/metrics")
    );
    assert!(!role.get("/metrics").contains("tier="), "only the labels asked for are copied");

    std::fs::remove_file(dir.path().join("removed.json")).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || !role.get("/metrics").contains(&series("removed"))),
        "the removed check's series stayed: {}",
        role.stderr_text()
    );
    let metrics = role.get("/metrics");
    assert!(metrics.contains(&series("kept")), "{metrics}");
    // The handler's series; the runner's cumulative counters and histograms keep their check label.
    let runner = ["picket_check_duration_seconds", "picket_check_lateness_seconds"];
    let per_check = metrics.lines().filter(|l| {
        (l.starts_with("picket_check_") || l.starts_with("picket_tls_")) && !runner.iter().any(|r| l.starts_with(r))
    });
    assert!(per_check.clone().all(|l| !l.contains("check=\"removed\"")), "{metrics}");
}

#[test]
fn metric_labels_that_are_not_label_names_are_refused_at_start() {
    let dir = checks_dir(&[("c.json", failing_check("127.0.0.1:9".parse().unwrap(), "c", &[]))]);
    let output = crate::support::picket()
        .args(["standalone", "--checks", &path_str(dir.path())])
        .env("PICKET_METRIC_LABELS", "team,9lives")
        .env("PICKET_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PICKET_METRIC_LABELS") && stderr.contains("9lives"), "{stderr}");
}
