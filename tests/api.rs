//! The operator API (`/api/v1`) end to end: through `picket standalone` over
//! SQLite, and through `picket handler` over PostgreSQL.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BrokerPrefix, Receiver, Role, Schema, checks_dir, picket, spawn_target, wait_until};

const WRITE_TOKEN: &str = "write-SECRET-0123456789";
const READ_TOKEN: &str = "read-SECRET-0123456789";

fn names(rows: &Value) -> Vec<String> {
    let mut names: Vec<String> = rows.as_array().unwrap().iter().map(|r| r["check"].as_str().unwrap().into()).collect();
    names.sort();
    names
}

/// A 400 whose message starts with the field's name.
fn assert_bad_request(role: &Role, path: &str, field: &str) {
    let (code, body) = role.api(path, None);
    assert_eq!(code, 400, "{path}: {body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("{field}:")), "{path}: {message}");
}

#[test]
fn standalone_answers_checks_events_incidents_and_status_from_the_store() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = spawn_target(&rt, Duration::ZERO);
    let slack = Receiver::start(&rt, 200);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let check = |name: &str, addr: std::net::SocketAddr, labels: Value| {
        json!({"name": name, "type": "http", "url": format!("http://{addr}/"), "interval": "1s",
               "timeout": "800ms", "labels": labels, "handlers": ["ops"]})
    };
    let checks = json!([
        check("up", up.addr, json!({"team": "web"})),
        check("down-a", closed, json!({"team": "db", "tier": "1"})),
        check("down-b", closed, json!({"team": "db", "tier": "2"})),
        check("down-c", closed, json!({"team": "db", "tier": "2"})),
    ]);
    let handlers = json!([{"name": "ops", "type": "slack", "webhook_url": {"env": "SLACK_WEBHOOK_OPS"}}]);
    let dir = checks_dir(&[("checks.json", checks.to_string()), ("handlers.json", handlers.to_string())]);
    let webhook = format!("http://{}/services/T0/B0/x", slack.addr);
    let mut role = Role::standalone(dir.path(), &[("SLACK_WEBHOOK_OPS", webhook.as_str())]);
    let settled = wait_until(Duration::from_secs(15), || {
        role.api("/api/v1/checks", None).1.as_array().is_some_and(|rows| rows.len() == 4)
            && slack.received().len() == 3
            && role.api("/api/v1/status", None).1["oldest_undelivered"].is_null()
    });
    assert!(settled, "never settled: {:?}\n{}", role.api("/api/v1/checks", None), role.stderr_text());

    // Checks: every row, then each filter.
    let (code, rows) = role.api("/api/v1/checks", None);
    assert_eq!(code, 200);
    let row = |name: &str| rows.as_array().unwrap().iter().find(|r| r["check"] == name).unwrap().clone();
    assert_eq!((row("up")["status"].clone(), row("up")["incident"].clone()), (json!("OK"), Value::Null));
    assert_eq!(row("up")["labels"], json!({"team": "web"}));
    assert_eq!(row("up")["silenced_by"], json!([]));
    assert_eq!(row("up")["tls_days_left"], Value::Null, "plain http has no certificate");
    let down = row("down-a");
    assert_eq!(down["status"], "CRITICAL");
    assert_eq!(down["incident"]["key"], "picket/default/down-a");
    assert_eq!(down["incident"]["status"], "CRITICAL");
    assert!(down["incident"]["since"].is_string() && down["last_result"]["output"].is_string(), "{down}");
    assert_eq!(
        names(&role.api("/api/v1/checks?status=critical&unknown_param=1", None).1),
        ["down-a", "down-b", "down-c"]
    );
    assert_eq!(role.api("/api/v1/checks?subscription=elsewhere", None).1, json!([]));
    assert_eq!(names(&role.api("/api/v1/checks?label=team=web", None).1), ["up"]);
    assert_eq!(names(&role.api("/api/v1/checks?label=team=db&label=tier=2", None).1), ["down-b", "down-c"]);
    assert_eq!(names(&role.api("/api/v1/checks?label=team=db,tier=1", None).1), ["down-a"]);

    // One check: the row, its results and its events.
    let (code, detail) = role.api("/api/v1/checks/down-a/default", None);
    assert_eq!(code, 200, "{detail}");
    assert_eq!(detail["check"], "down-a");
    assert!(!detail["results"].as_array().unwrap().is_empty(), "{detail}");
    assert_eq!(detail["events"][0]["kind"], "problem");
    let (code, missing) = role.api("/api/v1/checks/nope/default", None);
    assert_eq!(code, 404);
    assert!(missing["error"].as_str().unwrap().contains("\"nope\""), "{missing}");

    // Events: three problems over two pages of two.
    let (code, first) = role.api("/api/v1/events?kind=problem&limit=2&since=1h", None);
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["events"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next"].as_str().expect("a next page");
    let (_, second) = role.api(&format!("/api/v1/events?kind=problem&limit=2&since=1h&cursor={cursor}"), None);
    assert_eq!(second["events"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["next"], Value::Null);
    let mut seen: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|page| page["events"].as_array().unwrap().iter().map(|e| e["check"].as_str().unwrap().to_owned()))
        .collect();
    seen.sort();
    assert_eq!(seen, ["down-a", "down-b", "down-c"], "each event once");
    let (_, only_a) = role.api("/api/v1/events?check=down-a&subscription=default", None);
    assert!(only_a["events"].as_array().unwrap().iter().all(|e| e["check"] == "down-a"), "{only_a}");

    // Incidents, each with the Slack handler's trail.
    let (code, open) = role.api("/api/v1/incidents?open=true", None);
    assert_eq!(code, 200, "{open}");
    assert_eq!(open.as_array().unwrap().len(), 3, "{open}");
    let trail = &open[0]["notifications"]["ops"][0];
    assert_eq!((trail["state"].clone(), trail["attempts"].clone()), (json!("sent"), json!(1)), "{open}");
    assert!(trail["sent_at"].is_string(), "{trail}");
    assert_eq!(role.api("/api/v1/incidents?open=false", None).1, json!([]));

    // Status and runners (standalone's pool sends no keepalives).
    let (code, status) = role.api("/api/v1/status", None);
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["checks"]["total"], 4);
    assert_eq!(status["checks"]["by_status"], json!({"OK": 1, "WARNING": 0, "CRITICAL": 3, "UNKNOWN": 0}));
    assert_eq!(status["open_incidents"], 3);
    assert_eq!(status["store"], json!({"ok": true, "backend": "sqlite"}));
    assert_eq!(role.api("/api/v1/runners", None), (200, json!({"runners": [], "pools": []})));

    // Bad input names its field; unknown paths are 404.
    for (path, field) in [
        ("/api/v1/checks?status=bogus", "status"),
        ("/api/v1/checks?label=team", "label"),
        ("/api/v1/events?kind=page", "kind"),
        ("/api/v1/events?limit=0", "limit"),
        ("/api/v1/events?limit=1001", "limit"),
        ("/api/v1/events?since=yesterday", "since"),
        ("/api/v1/events?cursor=42", "cursor"),
        ("/api/v1/incidents?open=maybe", "open"),
    ] {
        assert_bad_request(&role, path, field);
    }
    let (code, body) = role.api("/api/v1/nothing-here", None);
    assert_eq!((code, body["error"].is_string()), (404, true), "{body}");

    role.signal("-TERM");
    assert_eq!(role.wait_exit(Duration::from_secs(6)).and_then(|s| s.code()), Some(0));
}

#[test]
fn standalone_answers_the_latency_history_with_uptime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = spawn_target(&rt, Duration::ZERO);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let check = |name: &str, addr: std::net::SocketAddr| json!({"name": name, "type": "http", "url": format!("http://{addr}/"), "interval": "1s", "timeout": "800ms"});
    let checks = json!([check("up", up.addr), check("down", closed)]);
    let dir = checks_dir(&[("checks.json", checks.to_string())]);
    let mut role = Role::standalone(dir.path(), &[]);
    let runs = |role: &Role, check: &str| {
        role.api(&format!("/api/v1/checks/{check}/default/history"), None).1["runs"].as_u64()
    };
    let settled = wait_until(Duration::from_secs(15), || {
        runs(&role, "up").is_some_and(|n| n >= 3) && runs(&role, "down").is_some_and(|n| n >= 3)
    });
    assert!(settled, "no history: {:?}\n{}", role.api("/api/v1/checks/up/default/history", None), role.stderr_text());

    // One step per minute of the window, the current one included.
    let (code, history) = role.api("/api/v1/checks/up/default/history?since=10m&step=1m", None);
    assert_eq!(code, 200, "{history}");
    let steps = history["steps"].as_array().unwrap();
    assert_eq!((steps.len(), history["step_seconds"].clone()), (11, json!(60)), "{history}");
    assert_eq!(history["uptime"], 1.0);
    let runs_in_steps: u64 = steps.iter().map(|s| s["runs"].as_u64().unwrap()).sum();
    assert_eq!(Some(runs_in_steps), history["runs"].as_u64());
    let last = steps.iter().rev().find(|s| s["runs"].as_u64() > Some(0)).unwrap();
    assert!(last["p50_ms"].is_u64() && last["p95_ms"].is_u64() && last["max_ms"].is_u64(), "{last}");
    assert!(last["p50_ms"].as_u64() <= last["max_ms"].as_u64(), "{last}");
    assert!(last["phases"]["connect"]["max_ms"].is_u64(), "http phases: {last}");
    assert_eq!(last["failures"], json!({"warning": 0, "critical": 0, "unknown": 0}));
    assert!(steps.first().unwrap()["p50_ms"].is_null(), "before the first run: {history}");

    let (_, down) = role.api("/api/v1/checks/down/default/history?since=1h&step=1h", None);
    assert_eq!(down["uptime"], 0.0, "{down}");
    let critical: u64 =
        down["steps"].as_array().unwrap().iter().map(|s| s["failures"]["critical"].as_u64().unwrap()).sum();
    assert_eq!(Some(critical), down["runs"].as_u64(), "{down}");

    for (path, field) in [
        ("/api/v1/checks/up/default/history?since=soon", "since"),
        ("/api/v1/checks/up/default/history?step=90s", "step"),
        ("/api/v1/checks/up/default/history?since=30d&step=1m", "step"),
    ] {
        assert_bad_request(&role, path, field);
    }
    let (code, missing) = role.api("/api/v1/checks/up/elsewhere/history", None);
    assert_eq!(code, 404);
    assert!(missing["error"].as_str().unwrap().contains("\"elsewhere\""), "{missing}");

    role.signal("-TERM");
    assert_eq!(role.wait_exit(Duration::from_secs(6)).and_then(|s| s.code()), Some(0));
}

#[test]
fn read_tokens_gate_the_api_and_no_token_reaches_the_logs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = spawn_target(&rt, Duration::ZERO);
    let check = json!({"name": "up", "type": "http", "url": format!("http://{}/", up.addr), "interval": "1s"});
    let dir = checks_dir(&[("checks.json", check.to_string())]);
    let write = format!("alice:{WRITE_TOKEN}");
    let read = format!("dash:{READ_TOKEN}");
    let env =
        [("PICKET_API_TOKENS", write.as_str()), ("PICKET_API_READ_TOKENS", read.as_str()), ("PICKET_LOG", "debug")];
    let mut role = Role::standalone(dir.path(), &env);
    role.wait_ready(Duration::from_secs(10));

    let (code, body) = role.api("/api/v1/status", None);
    assert_eq!(code, 401, "no token: {body}");
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    assert_eq!(role.api("/api/v1/status", Some("wrong-SECRET-0123456789")).0, 401, "a wrong token");
    assert_eq!(role.api("/api/v1/nothing-here", None).0, 401, "unknown paths are gated too");
    assert_eq!(role.api("/api/v1/status", Some(READ_TOKEN)).0, 200, "a read token");
    assert_eq!(role.api("/api/v1/checks", Some(WRITE_TOKEN)).0, 200, "write tokens read too");
    assert!(role.request("GET", "/metrics", None).starts_with("HTTP/1.1 200"), "/metrics stays open");

    role.signal("-TERM");
    assert_eq!(role.wait_exit(Duration::from_secs(6)).and_then(|s| s.code()), Some(0));
    std::thread::sleep(Duration::from_millis(200));
    let logs = format!("{}\n{}", role.stdout_lines().join("\n"), role.stderr_text());
    assert!(logs.contains("DEBUG"), "debug logging was on");
    assert!(!logs.contains("SECRET"), "a token reached the logs:\n{logs}");
}

#[test]
fn a_malformed_token_list_is_a_config_error_naming_the_variable_not_the_token() {
    let dir = checks_dir(&[(
        "checks.json",
        json!({"name": "x", "type": "http", "url": "http://127.0.0.1:9/", "interval": "1m"}).to_string(),
    )]);
    let state = tempfile::tempdir().unwrap();
    for (variable, value) in [
        ("PICKET_API_TOKENS", format!("alice{WRITE_TOKEN}")),
        ("PICKET_API_READ_TOKENS", "dash:SECRET-short".to_owned()),
    ] {
        let output = picket()
            .args(["standalone", "--checks", &crate::support::path_str(dir.path())])
            .env("PICKET_STATE_DIR", state.path())
            .env("PICKET_LISTEN", "127.0.0.1:0")
            .env(variable, &value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(variable) && !stderr.contains("SECRET"), "{stderr}");
    }
}

#[test]
fn the_handler_role_answers_status_and_runners_from_postgres() {
    let prefix = BrokerPrefix::new("api", &["default"]);
    let schema = Schema::new("api");
    let dir = checks_dir(&[(
        "checks.json",
        json!({"name": "x", "type": "http", "url": "http://127.0.0.1:9/", "interval": "1m"}).to_string(),
    )]);
    let dir_path = crate::support::path_str(dir.path());
    let env = [
        ("PICKET_CHECKS", dir_path.as_str()),
        ("PICKET_STATE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        ("PICKET_STATE_SCHEMA", schema.0.as_str()),
    ];
    let handler = Role::start(&prefix.prefix, &["handler"], &env);
    handler.wait_ready(Duration::from_secs(15));
    let runner =
        Role::start(&prefix.prefix, &["runner"], &[("PICKET_RUNNER_NAME", "r1"), ("PICKET_KEEPALIVE_INTERVAL", "1s")]);
    runner.wait_ready(Duration::from_secs(15));
    let heard = wait_until(Duration::from_secs(15), || {
        handler.api("/api/v1/runners", None).1["runners"].as_array().is_some_and(|r| !r.is_empty())
    });
    assert!(heard, "{:?}\n{}", handler.api("/api/v1/runners", None), handler.stderr_text());

    let (code, runners) = handler.api("/api/v1/runners", None);
    assert_eq!(code, 200);
    let r1 = &runners["runners"][0];
    assert_eq!((r1["runner"].clone(), r1["subscriptions"].clone()), (json!("r1"), json!(["default"])), "{runners}");
    assert!(r1["last_seen"].is_string() && r1["lost_since"].is_null(), "{runners}");
    let (code, status) = handler.api("/api/v1/status", None);
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["store"], json!({"ok": true, "backend": "postgres"}));
    assert_eq!(status["pools"], json!([{"subscription": "default", "runners": 1, "lost": 0}]));
    assert_eq!(status["checks"]["total"], 0);
    assert_eq!(status["open_incidents"], 0);
}
