//! `picket validate`, `schema` and `check` as a user runs them.

use crate::support::{checks_dir, path_str, repo, run, spawn_target, stderr, stdout};

#[test]
fn validate_accepts_the_shipped_checks_and_examples() {
    for dir in ["checks", "examples"] {
        let out = run(&["validate", &path_str(&repo(dir))]);
        assert_eq!(out.status.code(), Some(0), "{dir}: {}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("all valid"));
    }
    let examples = stdout(&run(&["validate", &path_str(&repo("examples"))]));
    assert!(examples.contains(" 2 maintenance window(s), all valid"), "{examples}");
}

#[test]
fn validate_lists_every_problem_and_exits_65() {
    let dir = checks_dir(&[
        ("a.json", r#"{"name": "a", "type": "http", "url": "http://x/", "interval": "10s", "timeout": "20s"}"#.into()),
        (
            "b.json",
            r#"{"name": "b", "type": "dns", "query": "x", "record": "A", "interval": "10s", "handlers": ["nope"]}"#
                .into(),
        ),
    ]);
    let out = run(&["validate", &path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(65));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with("a.json:1:81: timeout: timeout 20s must be below the interval 10s"), "{text}");
    assert!(lines[1].ends_with("b.json:1:91: handlers[0]: no handler is named \"nope\" (defined: none)"), "{text}");
    assert!(stderr(&out).contains("2 problem(s)"));
}

#[test]
fn validate_of_a_missing_directory_is_a_usage_error() {
    let out = run(&["validate", "/nonexistent/picket-checks"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("/nonexistent/picket-checks"));
}

#[test]
fn schema_prints_a_json_schema() {
    let out = run(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(schema["$defs"]["HttpSpec"]["properties"]["url"].is_object());
    let window = &schema["$defs"]["MaintenanceWindow"]["properties"];
    for field in ["name", "match", "cron", "weekdays", "at", "duration", "timezone", "comment", "force"] {
        assert!(window[field].is_object(), "maintenance windows lack {field}: {window}");
    }
}

#[test]
fn check_exits_with_the_status_and_prints_json() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&runtime, std::time::Duration::ZERO);
    let ok = format!(r#"{{"name": "up", "type": "http", "url": "http://{}/", "interval": "10s"}}"#, target.addr);
    let down = r#"{"name": "down", "type": "http", "url": "http://127.0.0.1:9/", "interval": "10s"}"#;
    let dir = checks_dir(&[("both.json", format!("[{ok}, {down}]"))]);
    let file = path_str(&dir.path().join("both.json"));

    let out = run(&["check", &file, "--name", "up"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("up OK: HTTP 200 in "), "{}", stdout(&out));

    let out = run(&["check", &file, "--name", "down", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], 2);
    assert_eq!(result["check"], "down");
    assert!(
        result["output"].as_str().unwrap().starts_with("cannot connect to 127.0.0.1:9: connection refused"),
        "{result}"
    );

    let out = run(&["check", &file]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("pick one with --name (up, down)"), "{}", stderr(&out));
    assert_eq!(target.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn bad_configuration_exits_64_naming_the_setting() {
    let dir =
        checks_dir(&[("a.json", r#"{"name": "a", "type": "http", "url": "http://x/", "interval": "10s"}"#.into())]);
    let out = crate::support::picket()
        .args(["standalone", "--checks", &path_str(dir.path())])
        .env("PICKET_DENY_CIDRS", "10.0.0.0/33")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("PICKET_DENY_CIDRS") || stderr(&out).contains("--deny-cidrs"), "{}", stderr(&out));
    assert!(stderr(&out).contains("10.0.0.0/33"), "{}", stderr(&out));

    let state = tempfile::tempdir().unwrap();
    let out = crate::support::picket()
        .args(["standalone", "--checks", &path_str(dir.path())])
        .env("PICKET_STATE_DIR", state.path())
        .env("PICKET_EVENT_RETENTION", "10m")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("PICKET_EVENT_RETENTION must be at least 1h"), "{}", stderr(&out));

    let out = crate::support::picket()
        .args(["standalone", "--checks", &path_str(dir.path())])
        .env("PICKET_STATE_DIR", state.path())
        .env("PICKET_HISTORY_MINUTES_KEEP", "59m")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("PICKET_HISTORY_MINUTES_KEEP must be at least 1h"), "{}", stderr(&out));
}

#[test]
fn healthcheck_fails_when_nothing_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = run(&["healthcheck", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/healthz"), "{}", stderr(&out));
}

/// A loopback HTTP server on port 0 that answers every GET with a 302 to
/// `sys.argv[1]` and prints its port.
const REDIRECTOR: &str = r#"
import http.server, sys
class Redirect(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", sys.argv[1])
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
print(server.server_port, flush=True)
server.serve_forever()
"#;

/// Runs `picket check` and its redirecting target in a network namespace of
/// their own holding only loopback (`unshare -n`, root), so that even if the
/// deny list failed no packet could leave the machine: a connection to the
/// metadata address would fail as unreachable (CRITICAL), not be refused (UNKNOWN).
#[test]
fn a_redirect_to_an_ipv6_metadata_address_is_unknown_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let check =
        r#"{"name": "imds", "type": "http", "url": "http://127.0.0.1:PORT/", "interval": "10s", "timeout": "5s"}"#;
    std::fs::write(dir.path().join("check.tmpl"), check).unwrap();
    let script = r#"
        ip link set lo up || exit 90
        python3 -c "$REDIRECTOR" "$LOCATION" > "$DIR/port" &
        server=$!
        until [ -s "$DIR/port" ]; do kill -0 "$server" || exit 91; sleep 0.05; done
        sed "s/PORT/$(cat "$DIR/port")/" "$DIR/check.tmpl" > "$DIR/check.json"
        "$PICKET" check "$DIR/check.json" --json
        status=$?
        kill "$server"
        exit "$status"
    "#;
    let out = std::process::Command::new("unshare")
        .args(["-n", "--", "sh", "-c", script])
        .env("REDIRECTOR", REDIRECTOR)
        .env("LOCATION", "http://[fd00:ec2::254]/latest/meta-data/iam/security-credentials/")
        .env("DIR", dir.path())
        .env("PICKET", env!("CARGO_BIN_EXE_picket"))
        .env("PICKET_LOG", "warn")
        .env_remove("PICKET_DENY_CIDRS")
        .output()
        .expect("unshare (util-linux) runs");
    assert_eq!(out.status.code(), Some(3), "{}{}", stdout(&out), stderr(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result["output"],
        "after 1 redirect, http://[fd00:ec2::254]/latest/meta-data/iam/security-credentials/: \
         fd00:ec2::254 is in denied network fd00:ec2::254/128 (PICKET_DENY_CIDRS)",
        "{result}"
    );
    assert!(result["metrics"].get("connect").is_none(), "no connection was attempted: {result}");
}

/// Issue 11's exfiltration, tried as a user would: the runner's broker URL is
/// in its environment, a definition asks for it in a header.
#[test]
fn a_definition_cannot_read_the_runners_own_secrets() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&runtime, std::time::Duration::ZERO);
    let leak = format!(
        r#"{{"name": "leak", "type": "http", "url": "http://{}/", "interval": "10s", "headers": {{"X-Leak": {{"env": "PICKET_AMQP_URL"}}}}}}"#,
        target.addr
    );
    let dir = checks_dir(&[("leak.json", leak)]);
    let file = path_str(&dir.path().join("leak.json"));
    let out = crate::support::picket()
        .args(["check", &file, "--json"])
        .env("PICKET_AMQP_URL", "amqp://picket:hunter2@broker.internal:5672/%2f")
        .env("PICKET_CHECK_SECRETS", "API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result["output"],
        r#"header X-Leak: secret {"env":"PICKET_AMQP_URL"} is not allowed (PICKET_CHECK_SECRETS)"#
    );
    assert!(!stdout(&out).contains("hunter2") && !stderr(&out).contains("hunter2"));
    assert_eq!(target.connections.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the target");

    for role in [&["check", file.as_str()][..], &["runner"][..]] {
        let out = crate::support::picket()
            .args(role)
            .env("PICKET_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
            .env("PICKET_CHECK_SECRETS", "API_TOKEN,PICKET_AMQP_URL")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{role:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("PICKET_CHECK_SECRETS names PICKET_AMQP_URL"), "{}", stderr(&out));
    }
}
