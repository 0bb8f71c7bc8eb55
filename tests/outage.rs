//! Nothing is stranded through a database outage: the handler's PostgreSQL
//! is cut (through a test-owned proxy, so other tests keep their database)
//! for longer than the results prefetch window, then restored.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BrokerPrefix, Role, Schema, checks_dir, handler_records, path_str, spawn_target, wait_until};

/// A TCP proxy that refuses and cuts every connection while down.
struct FaultProxy {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl FaultProxy {
    fn start(runtime: &tokio::runtime::Runtime, upstream: &'static str) -> Self {
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = tokio::sync::watch::channel(true);
        let state = up.clone();
        runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut up = state.subscribe();
                if !*up.borrow_and_update() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = up.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// (ready, unacked) messages of the two results queues together (single
/// results and batches), from `rabbitmqctl`.
fn results_depth(prefix: &str) -> Option<(u64, u64)> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "messages_ready", "messages_unacknowledged"])
        .output()
        .ok()?;
    let queues = [format!("{prefix}.results"), format!("{prefix}.results.batch")];
    let depths: Vec<(u64, u64)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            queues.iter().any(|q| q == name).then_some(())?;
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect();
    (depths.len() == queues.len()).then(|| depths.iter().fold((0, 0), |(r, u), (dr, du)| (r + dr, u + du)))
}

fn distinct(records: &[Value], field: &str) -> usize {
    records.iter().filter_map(|r| r[field].as_str()).collect::<HashSet<_>>().len()
}

#[test]
fn a_postgres_outage_longer_than_the_prefetch_window_strands_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let proxy = FaultProxy::start(&rt, "127.0.0.1:5432");
    let prefix = BrokerPrefix::new("outage", &["default"]);
    let schema = Schema::new("outage");
    let checks: Vec<Value> = (0..24)
        .map(|i| {
            json!({"name": format!("c{i}"), "type": "http", "url": format!("http://{}/", target.addr),
                        "interval": "1s", "timeout": "500ms"})
        })
        .collect();
    let dir = checks_dir(&[("checks.json", json!(checks).to_string())]);
    let dir_path = path_str(dir.path());
    let url = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port);
    let env = [
        ("PICKET_CHECKS", dir_path.as_str()),
        ("PICKET_STATE_URL", url.as_str()),
        ("PICKET_STATE_SCHEMA", schema.0.as_str()),
    ];
    let handler = Role::start(&prefix.prefix, &["handler"], &env);
    handler.wait_ready(Duration::from_secs(15));
    let runner = Role::start(&prefix.prefix, &["runner"], &[]);
    runner.wait_ready(Duration::from_secs(15));
    let mut scheduler = Role::start(&prefix.prefix, &["scheduler", "--checks", &dir_path], &[]);
    let applied = || schema.query("select count(*) from {schema}.results").parse::<usize>().unwrap_or(0);
    assert!(wait_until(Duration::from_secs(15), || applied() > 0), "{}", handler.stderr_text());

    // 24 results a second for 25 s: beyond the 256 messages the handler may
    // hold, even with some results sharing a batch.
    proxy.set_up(false);
    assert!(wait_until(Duration::from_secs(15), || handler.get("/readyz").starts_with("HTTP/1.1 503")));
    std::thread::sleep(Duration::from_secs(25));
    let during = results_depth(&prefix.prefix);
    proxy.set_up(true);
    std::thread::sleep(Duration::from_secs(3));
    scheduler.signal("-TERM");
    scheduler.wait_exit(Duration::from_secs(10)).expect("scheduler exits on SIGTERM");
    let text = scheduler.stderr_text();
    let line = text.lines().find(|l| l.contains("scheduler stopped")).expect("stop report");
    let published: usize = line.split("published=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();

    let dead = || distinct(&handler_records(&handler, "dead_letter"), "request_id");
    let accounted = wait_until(Duration::from_secs(60), || applied() + dead() >= published);
    let drained = wait_until(Duration::from_secs(30), || results_depth(&prefix.prefix) == Some((0, 0)));
    let results = applied();
    let distinct_results: usize =
        schema.query("select count(distinct request_id) from {schema}.results").parse().unwrap();
    eprintln!(
        "outage: published={published} results={results} dead_letters={} queue during={during:?} after={:?}",
        dead(),
        results_depth(&prefix.prefix)
    );
    assert!(during.is_some_and(|(ready, unacked)| ready + unacked > 256), "the outage was too short: {during:?}");
    assert!(accounted, "stranded: published {published}, applied {results}\n{}", handler.stderr_text());
    assert!(drained, "the results queues did not drain: {:?}", results_depth(&prefix.prefix));
    assert_eq!(results, distinct_results, "a result applied twice");
    assert_eq!(results + dead(), published);
    handler.wait_ready(Duration::from_secs(10));
}

/// Scheduled slots (Unix seconds) of every result stored, per check.
fn stored_slots(db: &std::path::Path) -> std::collections::BTreeMap<String, Vec<i64>> {
    let output = std::process::Command::new("sqlite3")
        .arg(db)
        .arg("select check_name, json_extract(body, '$.scheduled_at') from results")
        .output()
        .expect("sqlite3 runs");
    let mut slots: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((check, at)) = line.split_once('|') else { continue };
        let Ok(at) = at.parse::<chrono::DateTime<chrono::Utc>>() else { continue };
        slots.entry(check.to_owned()).or_default().push(at.timestamp());
    }
    slots.values_mut().for_each(|s| s.sort_unstable());
    slots
}

/// Standalone's embedded SQLite can be locked by another process (a backup,
/// an operator's `sqlite3`): while it is, commits fail and results go back
/// to the memory transport; once it is released, every slot is stored.
#[test]
fn standalone_loses_nothing_while_another_process_locks_its_database() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = spawn_target(&rt, Duration::ZERO);
    let checks: Vec<Value> = (0..4)
        .map(|i| {
            json!({"name": format!("c{i}"), "type": "http", "url": format!("http://{}/", target.addr),
                        "interval": "1s", "timeout": "500ms"})
        })
        .collect();
    let dir = checks_dir(&[("checks.json", json!(checks).to_string())]);
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("state.db");
    let url = format!("sqlite://{}", db.display());
    let mut standalone = Role::start(
        "unused",
        &["standalone", "--checks", &path_str(dir.path())],
        &[("PICKET_STATE_URL", url.as_str()), ("PICKET_DRAIN_TIMEOUT", "3s")],
    );
    standalone.wait_ready(Duration::from_secs(15));
    assert!(wait_until(Duration::from_secs(15), || stored_slots(&db).len() == 4), "{}", standalone.stderr_text());

    // Holds an exclusive lock until told to let go on stdin.
    let script = "import sqlite3, sys\n\
                  db = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                  db.execute('BEGIN EXCLUSIVE')\n\
                  print('locked', flush=True)\n\
                  sys.stdin.readline()\n\
                  db.execute('COMMIT')\n";
    let mut locker = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut locked = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(locker.stdout.take().unwrap()), &mut locked).unwrap();
    assert_eq!(locked.trim(), "locked");
    assert!(standalone.wait_log("batch not committed", Duration::from_secs(20)), "the lock never bit");
    std::thread::sleep(Duration::from_secs(8));
    drop(locker.stdin.take());
    locker.wait().unwrap();

    // Every slot from the first to the last stored, for each check, spanning the lock.
    let missing = |slots: &std::collections::BTreeMap<String, Vec<i64>>| -> usize {
        slots.values().map(|s| (s[0]..=s[s.len() - 1]).filter(|slot| s.binary_search(slot).is_err()).count()).sum()
    };
    let whole = wait_until(Duration::from_secs(30), || {
        let slots = stored_slots(&db);
        missing(&slots) == 0 && slots.values().all(|s| s[s.len() - 1] - s[0] >= 12)
    });
    let slots = stored_slots(&db);
    let skipped = standalone.stdout_lines().iter().filter(|l| l.contains(" SKIPPED ")).count();
    eprintln!(
        "locked sqlite: {} results stored, {} slots missing, {skipped} skipped",
        slots.values().map(Vec::len).sum::<usize>(),
        missing(&slots)
    );
    assert!(whole, "slots lost: {slots:?}\n{}", standalone.stderr_text());
    standalone.signal("-TERM");
    let status = standalone.wait_exit(Duration::from_secs(15)).expect("standalone exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", standalone.stderr_text());
}
