//! `picket silence …` and `picket status` as an operator runs them, against
//! a running `picket standalone` with write tokens.

use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    BrokerPrefix, Receiver, Role, Schema, checks_dir, path_str, picket, spawn_switch_target, stderr, stdout, wait_until,
};

const TOKEN: &str = "tok-alice-SECRET-5b2f9c";
const READ_TOKEN: &str = "tok-reader-SECRET-77aa01";

/// `picket <args>` against the API at `url`, with `token` as PICKET_API_TOKEN.
fn cli(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = picket();
    cmd.args(args).env("PICKET_API_URL", url).env_remove("PICKET_API_TOKEN");
    if let Some(token) = token {
        cmd.env("PICKET_API_TOKEN", token);
    }
    let out = cmd.output().expect("picket runs");
    for secret in [TOKEN, READ_TOKEN] {
        assert!(!stdout(&out).contains(secret) && !stderr(&out).contains(secret), "{args:?} printed a token");
    }
    out
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// A standalone serving `checks` with alice's write token.
fn standalone(checks: &[(&str, String)], extra_env: &[(&str, &str)]) -> (Role, tempfile::TempDir, String) {
    let dir = checks_dir(checks);
    let role = with_tokens(extra_env, |env| Role::standalone(dir.path(), env));
    let url = format!("http://{}", role.listen_addr());
    (role, dir, url)
}

/// Starts a role with alice's write token beside `extra_env`.
fn with_tokens(extra_env: &[(&str, &str)], start: impl FnOnce(&[(&str, &str)]) -> Role) -> Role {
    let tokens = format!("alice:{TOKEN}");
    let mut env = vec![("PICKET_API_TOKENS", tokens.as_str())];
    env.extend_from_slice(extra_env);
    start(&env)
}

/// Starts picket over the definition files, with extra environment.
type Deploy = fn(&[(&str, String)], &[(&str, &str)]) -> Deployment;

/// Where the headline runs: the role whose API the operator talks to, and
/// everything that must live as long as it does.
struct Deployment {
    api: Role,
    url: String,
    others: Vec<Role>,
    _dir: tempfile::TempDir,
    _prefix: Option<BrokerPrefix>,
}

impl Deployment {
    fn standalone(files: &[(&str, String)], env: &[(&str, &str)]) -> Self {
        let (api, _dir, url) = standalone(files, env);
        Self { api, url, others: Vec::new(), _dir, _prefix: None }
    }

    /// Scheduler, runner and handler over the broker under a prefix of the
    /// test's own; the handler serves the API with alice's write token.
    fn distributed(files: &[(&str, String)], env: &[(&str, &str)]) -> Self {
        let prefix = BrokerPrefix::new("silences", &["default"]);
        let dir = checks_dir(files);
        let dir_path = path_str(dir.path());
        let mut handler_env = vec![("PICKET_CHECKS", dir_path.as_str())];
        handler_env.extend_from_slice(env);
        let api = with_tokens(&handler_env, |env| Role::start(&prefix.prefix, &["handler"], env));
        api.wait_ready(Duration::from_secs(15));
        let runner = Role::start(&prefix.prefix, &["runner"], &[]);
        runner.wait_ready(Duration::from_secs(15));
        let scheduler = Role::start(&prefix.prefix, &["scheduler", "--checks", &dir_path], &[]);
        let url = format!("http://{}", api.listen_addr());
        Self { api, url, others: vec![runner, scheduler], _dir: dir, _prefix: Some(prefix) }
    }

    fn roles(&self) -> impl Iterator<Item = &Role> {
        std::iter::once(&self.api).chain(&self.others)
    }

    fn logs(&self) -> String {
        self.roles().map(Role::stderr_text).collect::<Vec<_>>().join("\n----\n")
    }
}

/// The API's row for `check`, if it has one yet.
fn check_row(role: &Role, check: &str) -> Option<Value> {
    role.api("/api/v1/checks", None).1.as_array()?.iter().find(|r| r["check"] == check).cloned()
}

fn assert_no_token_in_logs(role: &Role) {
    let logs = format!("{}\n{}", role.stdout_lines().join("\n"), role.stderr_text());
    assert!(!logs.contains(TOKEN) && !logs.contains(READ_TOKEN), "a token leaked into the standalone's output");
}

#[test]
fn add_list_preview_expire_and_status_through_the_cli() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let checks = json!([
        {"name": "api-payments", "type": "http", "url": format!("http://{closed}/"), "interval": "1s",
         "timeout": "500ms", "labels": {"team": "payments"}},
        {"name": "web", "type": "http", "url": format!("http://{closed}/"), "interval": "1s", "timeout": "500ms",
         "subscriptions": ["edge"]}
    ]);
    let (role, _dir, url) = standalone(&[("checks.json", checks.to_string())], &[]);
    assert!(
        wait_until(Duration::from_secs(15), || check_row(&role, "api-payments").is_some()
            && check_row(&role, "web").is_some()),
        "no rows: {}",
        role.stderr_text()
    );

    let add = ["silence", "add", "--check", "api-*", "--label", "team=pay*", "--for", "2h", "--comment", "deploy 4.2"];
    let out = cli(&url, Some(TOKEN), &add);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert!(!id.is_empty() && !id.contains(char::is_whitespace), "{id:?}");

    let out = cli(&url, None, &["silence", "list"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let listed = stdout(&out);
    let line = listed.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} not listed: {listed}"));
    for part in ["active", "check=api-* label:team=pay*", "alice", "deploy 4.2"] {
        assert!(line.contains(part), "{part:?} missing: {listed}");
    }

    let preview = ["silence", "preview", "--check", "api-*", "--for", "1h", "--comment", "what would this hit"];
    let out = cli(&url, None, &preview);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.lines().next().unwrap().starts_with("CRITICAL  api-payments  default"), "{text}");
    assert!(text.ends_with("1 (check, subscription) pair(s) would be silenced\n"), "{text}");
    let by_subscription = ["silence", "preview", "--subscription", "edge", "--for", "1h", "--comment", "x"];
    assert!(stdout(&cli(&url, None, &by_subscription)).contains("web  edge"));

    let later = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let pending = ["silence", "add", "--subscription", "edge", "--from", &later, "--for", "1h", "--comment", "later"];
    let out = cli(&url, Some(TOKEN), &pending);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let pending_id = stdout(&out).trim().to_owned();
    let listed = stdout(&cli(&url, None, &["silence", "list", "--pending"]));
    assert!(listed.contains(&pending_id) && !listed.contains(&id), "{listed}");

    let out = cli(&url, None, &["status"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines.iter().any(|l| l.starts_with("CRITICAL  api-payments") && l.contains(&format!("silenced by {id}"))));
    assert!(lines.iter().any(|l| l.starts_with("CRITICAL  web           edge")), "{text}");
    assert_eq!(lines[2], "2 check(s): 2 CRITICAL; 1 silenced", "{text}");
    let (status, error) = role.api("/api/v1/silences?state=bogus", None);
    assert_eq!(status, 400, "{error}");
    assert!(error["error"].as_str().unwrap().starts_with("state: unknown silence state"), "{error}");

    let out = cli(&url, Some(TOKEN), &["silence", "expire", &id]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&format!("{id}: expired ")), "{}", stdout(&out));
    assert!(stdout(&out).contains(" by alice"), "{}", stdout(&out));
    let again = cli(&url, Some(TOKEN), &["silence", "expire", &id]);
    assert_eq!(code(&again), Some(0), "{}", stderr(&again));
    assert_eq!(stdout(&again), stdout(&out), "expiring twice changes nothing");
    let listed = stdout(&cli(&url, None, &["silence", "list", "--expired"]));
    assert!(listed.lines().any(|l| l.starts_with(&id) && l.contains("by alice")), "{listed}");
    assert!(!stdout(&cli(&url, None, &["silence", "list"])).contains(&id));
    let all = stdout(&cli(&url, None, &["silence", "list", "--all"]));
    assert!(all.contains(&id) && all.contains(&pending_id), "{all}");

    assert_no_token_in_logs(&role);
}

#[test]
fn exit_codes_say_whose_fault_it_was() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let checks = json!({"name": "api", "type": "http", "url": format!("http://{closed}/"), "interval": "1m"});
    let readers = format!("reader:{READ_TOKEN}");
    let (role, _dir, url) =
        standalone(&[("checks.json", checks.to_string())], &[("PICKET_API_READ_TOKENS", readers.as_str())]);
    let add = |token: Option<&str>, flags: &[&str]| {
        let mut args = vec!["silence", "add"];
        args.extend_from_slice(flags);
        cli(&url, token, &args)
    };

    // 64: the command line is wrong; nothing is sent.
    for flags in [
        &["--check", "api", "--comment", "x"][..],
        &["--check", "api", "--for", "1h", "--until", "2026-12-31T00:00:00Z", "--comment", "x"],
        &["--check", "api", "--for", "soon", "--comment", "x"],
        &["--check", "api", "--label", "team", "--for", "1h", "--comment", "x"],
        &["--check", "", "--for", "1h", "--comment", "x"],
        &["--check", "api", "--for", "1h"],
    ] {
        assert_eq!(code(&add(Some(TOKEN), flags)), Some(64), "{flags:?}");
    }
    let out = cli("not a url", None, &["status"]);
    assert_eq!(code(&out), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("PICKET_API_URL"), "{}", stderr(&out));

    // 65: the API refused it, and its message is printed.
    let out = add(Some(TOKEN), &["--label", "team=payments", "--for", "1h", "--comment", "x"]);
    assert_eq!(code(&out), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("400") && stderr(&out).contains("match: name a check or a subscription"));
    let out = add(Some(TOKEN), &["--check", "api", "--for", "31d", "--comment", "x"]);
    assert_eq!(code(&out), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("duration: "), "{}", stderr(&out));
    let out = add(Some(TOKEN), &["--check", "api", "--for", "1h", "--comment", " "]);
    assert!(code(&out) == Some(65) && stderr(&out).contains("comment: required"), "{}", stderr(&out));
    for (token, status) in [(None, "401"), (Some("wrong-token"), "401"), (Some(READ_TOKEN), "403")] {
        let out = add(token, &["--check", "api", "--for", "1h", "--comment", "x"]);
        assert_eq!(code(&out), Some(65), "{token:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(status), "{token:?}: {}", stderr(&out));
    }
    let out = cli(&url, Some(TOKEN), &["silence", "expire", "0123456789abcdef"]);
    assert_eq!(code(&out), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    let out = cli(&url, None, &["status"]);
    assert!(code(&out) == Some(65) && stderr(&out).contains("401"), "{}", stderr(&out));
    let out = cli(&url, Some(READ_TOKEN), &["silence", "list", "--all"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "no silences\n", "nothing refused was created");

    // 1: the API fails (a server answering 500 to everything), or nothing answers.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (failing, _) = spawn_switch_target(&rt);
    let out = cli(&format!("http://{failing}"), Some(TOKEN), &["status"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("500 Internal Server Error: fail"), "{}", stderr(&out));
    let nobody = format!("http://{closed}");
    for args in [&["status"][..], &["silence", "list"], &["silence", "expire", "0123456789abcdef"]] {
        let out = cli(&nobody, Some(TOKEN), args);
        assert_eq!(code(&out), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
    }
    assert_no_token_in_logs(&role);
}

#[test]
fn a_cli_silence_holds_the_problem_until_it_is_expired_then_it_arrives_once_on_sqlite() {
    silence_then_expire(&[], Deployment::standalone);
}

#[test]
fn a_cli_silence_holds_the_problem_until_it_is_expired_then_it_arrives_once_on_postgres() {
    let schema = Schema::new("silences");
    silence_then_expire(&schema.env(), Deployment::standalone);
}

#[test]
fn a_cli_silence_holds_the_problem_through_the_distributed_roles_until_it_is_expired_on_postgres() {
    let schema = Schema::new("silences_fleet");
    silence_then_expire(&schema.env(), Deployment::distributed);
}

/// The headline: silenced from the CLI during a deploy, the failing
/// check sends nothing but shows CRITICAL and silenced in the API; expired,
/// the problem is told once, and the recovery after it once. `store_env`
/// picks the state store, `deploy` how picket runs.
fn silence_then_expire(store_env: &[(&str, &str)], deploy: Deploy) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (target, healthy) = spawn_switch_target(&rt);
    healthy.store(true, Ordering::SeqCst);
    let slack = Receiver::start(&rt, 200);
    let webhook = format!("http://{}/services/T000/B000/XYZ", slack.addr);
    let check = json!({"name": "api-payments", "type": "http", "url": format!("http://{target}/"), "interval": "1s",
                       "timeout": "500ms", "handlers": ["ops"]});
    let handlers = json!([{"name": "ops", "type": "slack", "webhook_url": {"env": "SLACK_WEBHOOK_OPS"}}]);
    let mut env = vec![("SLACK_WEBHOOK_OPS", webhook.as_str())];
    env.extend_from_slice(store_env);
    let deployment = deploy(&[("check.json", check.to_string()), ("handlers.json", handlers.to_string())], &env);
    let (role, url) = (&deployment.api, deployment.url.as_str());
    let row = || check_row(role, "api-payments").unwrap_or(Value::Null);
    assert!(wait_until(Duration::from_secs(20), || row()["status"] == "OK"), "never OK: {}", deployment.logs());

    let add = ["silence", "add", "--check", "api-*", "--for", "1h", "--comment", "deploy 4.2"];
    let out = cli(url, Some(TOKEN), &add);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    healthy.store(false, Ordering::SeqCst);

    let silenced = |row: &Value| {
        row["silenced_by"].as_array().is_some_and(|ids| ids.iter().any(|s| s == &json!(id) || s["id"] == json!(id)))
    };
    assert!(
        wait_until(Duration::from_secs(15), || {
            let row = row();
            row["status"] == "CRITICAL" && row["occurrences"].as_u64() >= Some(3) && silenced(&row)
        }),
        "not CRITICAL and silenced by {id}: {}",
        row()
    );
    assert_eq!(slack.received(), Vec::<Value>::new(), "a silenced problem was sent");
    let (_, page) = role.api("/api/v1/events?check=api-payments&kind=problem", None);
    let held = &page["events"][0];
    assert_eq!((held["status"].clone(), held["silenced_by"].clone()), (json!("CRITICAL"), json!([id])), "{page}");
    let status = stdout(&cli(url, None, &["status"]));
    assert!(
        status.starts_with("CRITICAL  api-payments  default") && status.contains(&format!("silenced by {id}")),
        "{status}"
    );

    let out = cli(url, Some(TOKEN), &["silence", "expire", &id]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(wait_until(Duration::from_secs(15), || !slack.received().is_empty()), "never told: {}", deployment.logs());
    let told_at = row()["occurrences"].as_u64().unwrap_or_default();
    assert!(wait_until(Duration::from_secs(15), || row()["occurrences"].as_u64() >= Some(told_at + 3)), "{}", row());
    let messages = slack.received();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let title = messages[0]["attachments"][0]["title"].as_str().unwrap_or_default();
    assert!(title.starts_with("CRITICAL"), "{messages:?}");
    assert!(!silenced(&row()), "{}", row());

    healthy.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(15), || slack.received().len() >= 2),
        "never resolved: {}",
        deployment.logs()
    );
    assert!(wait_until(Duration::from_secs(15), || row()["status"] == "OK"), "{}", row());
    for _ in 0..3 {
        let seen = row()["last_result"]["time"].clone();
        assert!(wait_until(Duration::from_secs(15), || row()["last_result"]["time"] != seen), "{}", row());
    }
    let messages = slack.received();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let title = messages[1]["attachments"][0]["title"].as_str().unwrap_or_default();
    assert!(title.contains("OK") || title.contains("RESOLVED"), "{messages:?}");
    deployment.roles().for_each(assert_no_token_in_logs);
}

#[test]
fn an_open_maintenance_window_shows_as_a_silence_and_cannot_be_expired_through_the_api() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let check = json!({"name": "db", "type": "http", "url": format!("http://{closed}/"), "interval": "1s",
                       "timeout": "500ms"});
    let window = json!({"kind": "maintenance", "name": "upgrade", "match": {"check": "db"},
                        "cron": "* * * * * *", "duration": "1h", "comment": "db upgrade"});
    let (role, _dir, url) =
        standalone(&[("checks.json", check.to_string()), ("windows.json", window.to_string())], &[]);
    let row = || check_row(&role, "db").unwrap_or(Value::Null);
    assert!(wait_until(Duration::from_secs(15), || row()["status"] == "CRITICAL"), "{}", role.stderr_text());
    assert_eq!(row()["silenced_by"], json!(["maintenance:upgrade"]), "{}", row());
    let (_, silenced) = role.api("/api/v1/checks?silenced=true", None);
    assert_eq!(silenced.as_array().map(Vec::len), Some(1), "{silenced}");

    let (_, active) = role.api("/api/v1/silences?state=active", None);
    let listed = &active[0];
    assert_eq!(active.as_array().map(Vec::len), Some(1), "{active}");
    let fields = ["id", "created_by", "comment", "state", "match"].map(|f| listed[f].clone());
    assert_eq!(
        fields,
        [json!("maintenance:upgrade"), json!("git"), json!("db upgrade"), json!("active"), json!({"check": "db"})],
        "{active}"
    );
    let (starts, ends) =
        (listed["starts_at"].as_str().unwrap_or_default(), listed["ends_at"].as_str().unwrap_or_default());
    let span =
        chrono::DateTime::parse_from_rfc3339(ends).unwrap() - chrono::DateTime::parse_from_rfc3339(starts).unwrap();
    assert_eq!(span, chrono::TimeDelta::hours(1), "{active}");
    let (_, expired) = role.api("/api/v1/silences?state=expired", None);
    assert_eq!(expired, json!([]), "an open window is not expired");
    assert_eq!(role.api("/api/v1/status", None).1["active_silences"], 1);
    let listed = stdout(&cli(&url, None, &["silence", "list"]));
    assert!(listed.lines().any(|l| l.starts_with("maintenance:upgrade") && l.contains("git")), "{listed}");

    let out = cli(&url, Some(TOKEN), &["silence", "expire", "maintenance:upgrade"]);
    assert_eq!(code(&out), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("409") && stderr(&out).contains("lives in git"), "{}", stderr(&out));
    assert_eq!(row()["silenced_by"], json!(["maintenance:upgrade"]), "still open: {}", row());
}
