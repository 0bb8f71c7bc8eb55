//! `picket standalone` over a directory of checks against loopback targets.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::support::{checks_dir, path_str, picket, spawn_target};

/// Reads a child's stream line by line on a thread.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The address the health endpoint bound, from the log line announcing it.
fn listen_addr(stderr: &mpsc::Receiver<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(line) = stderr.recv_timeout(Duration::from_millis(100))
            && let Some(rest) = line.split("addr=").nth(1)
        {
            return rest.split_whitespace().next().unwrap().to_owned();
        }
    }
    panic!("picket never announced its listen address");
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

fn terminate(child: &Child) {
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// (started_at, status, output) of each result line for `check`.
fn results_for<'a>(lines: &'a [String], check: &str) -> Vec<(DateTime<Utc>, &'a str, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let time = parts.next()?.parse::<DateTime<Utc>>().ok()?;
            (parts.next()? == check).then_some(())?;
            let _subscription = parts.next()?;
            let status = parts.next()?;
            let _latency = parts.next()?;
            let output = parts.collect::<Vec<_>>().join(" ");
            Some((time, status, output))
        })
        .collect()
}

/// Standalone's stdout: one line per result, one per event, and JSON only
/// from the log handler that asked for it (one line per event it is sent).
fn assert_stdout_shape(lines: &[String], results: usize) {
    let events: Vec<&String> = lines.iter().filter(|l| l.split_whitespace().nth(1) == Some("EVENT")).collect();
    let json: Vec<serde_json::Value> = lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(results + events.len() + json.len(), lines.len(), "a line that is none of these: {lines:#?}");
    let problems: Vec<&&String> = events.iter().filter(|l| l.contains(" EVENT problem ")).collect();
    assert_eq!(problems.len(), 1, "{lines:#?}");
    assert_eq!(
        problems[0].split_whitespace().skip(2).take(4).collect::<Vec<_>>(),
        ["problem", "slow", "default", "CRITICAL"],
        "{}",
        problems[0]
    );
    assert!(problems[0].ends_with(" CRITICAL timed out after 1500ms waiting for the response"), "{}", problems[0]);
    assert_eq!(json.len(), 1, "only the log handler's event is JSON: {lines:#?}");
    assert_eq!(
        (&json[0]["handler"], &json[0]["kind"], &json[0]["check"]),
        (&"json-events".into(), &"problem".into(), &"slow".into())
    );
}

#[test]
fn runs_checks_on_their_slots_and_stops_cleanly_on_sigterm() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fast = spawn_target(&runtime, Duration::ZERO);
    let slow = spawn_target(&runtime, Duration::from_secs(5));
    // Only `slow` is sent to a log handler: the one way to ask for JSON.
    let dir = checks_dir(&[
        (
            "checks.json",
            format!(
                r#"[
              {{"name": "fast", "type": "http", "url": "http://{}/", "interval": "1s", "timeout": "800ms"}},
              {{"name": "slow", "type": "http", "url": "http://{}/", "interval": "2s", "timeout": "1500ms",
                "handlers": ["json-events"]}}
            ]"#,
                fast.addr, slow.addr
            ),
        ),
        ("handlers.json", r#"[{"name": "json-events", "type": "log"}]"#.to_owned()),
    ]);
    let state = tempfile::tempdir().unwrap();
    let mut child = picket()
        .args(["standalone", "--checks", &path_str(dir.path())])
        .env("PICKET_STATE_DIR", state.path())
        .env("PICKET_LISTEN", "127.0.0.1:0")
        .env("PICKET_DRAIN_TIMEOUT", "3s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let addr = listen_addr(&stderr);
    let ready_by = Instant::now() + Duration::from_secs(5);
    while !http_get(&addr, "/readyz").starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < ready_by, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut lines = Vec::new();
    let until = Instant::now() + Duration::from_millis(4500);
    while Instant::now() < until {
        if let Ok(line) = stdout.recv_timeout(Duration::from_millis(50)) {
            lines.push(line);
        }
    }
    let metrics = http_get(&addr, "/metrics");
    for extra in [&[][..], &["--ready"][..]] {
        let probe = picket().args(["healthcheck", "--listen", &addr]).args(extra).output().unwrap();
        assert_eq!(probe.status.code(), Some(0), "{}", String::from_utf8_lossy(&probe.stderr));
    }
    terminate(&child);
    let status = wait_with_timeout(&mut child, Duration::from_secs(6)).expect("picket exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    lines.extend(stdout.try_iter());

    let fast_results = results_for(&lines, "fast");
    assert!(fast_results.len() >= 3, "{lines:#?}");
    let phase_ms = scheduler::slots::phase("fast", Duration::from_secs(1)).as_millis() as i64;
    for (started, status, output) in &fast_results {
        assert_eq!(*status, "OK", "{output}");
        let late_ms = (started.timestamp_subsec_millis() as i64 - phase_ms).rem_euclid(1000);
        assert!(late_ms < 250, "started {late_ms}ms after its slot: {started}");
    }
    for pair in fast_results.windows(2) {
        let gap = (pair[1].0 - pair[0].0).num_milliseconds();
        assert!((750..=1250).contains(&gap), "gap {gap}ms between runs");
    }

    let slow_results = results_for(&lines, "slow");
    assert!(!slow_results.is_empty(), "{lines:#?}");
    for (_, status, output) in &slow_results {
        assert_eq!(*status, "CRITICAL");
        assert_eq!(output, "timed out after 1500ms waiting for the response");
    }
    assert_eq!(slow.max_concurrent.load(std::sync::atomic::Ordering::SeqCst), 1, "the slow check overlapped itself");

    assert_stdout_shape(&lines, fast_results.len() + slow_results.len());

    assert!(metrics.contains("picket_results_total{"), "{metrics}");
    assert!(metrics.contains("check=\"fast\""), "{metrics}");
    assert!(metrics.contains("picket_check_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("picket_check_lateness_seconds_bucket"), "{metrics}");
}
