//! Nothing is stranded through a database outage: the handler's PostgreSQL
//! is cut (through a test-owned proxy, so other tests keep their database)
//! for longer than the results prefetch window, then restored.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fleet::Schema;
use crate::support::{BrokerPrefix, Role, checks_dir, handler_records, path_str, spawn_target, wait_until};

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

/// (ready, unacked) of a queue, from `rabbitmqctl`.
fn queue_depth(queue: &str) -> Option<(u64, u64)> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "messages_ready", "messages_unacknowledged"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == queue).then_some(())?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
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
    let checks: Vec<Value> = (0..12)
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

    // 12 results a second for 25 s: beyond the 256 the handler may hold.
    proxy.set_up(false);
    assert!(wait_until(Duration::from_secs(15), || handler.get("/readyz").starts_with("HTTP/1.1 503")));
    std::thread::sleep(Duration::from_secs(25));
    let during = queue_depth(&format!("{}.results", prefix.prefix));
    proxy.set_up(true);
    std::thread::sleep(Duration::from_secs(3));
    scheduler.signal("-TERM");
    scheduler.wait_exit(Duration::from_secs(10)).expect("scheduler exits on SIGTERM");
    let text = scheduler.stderr_text();
    let line = text.lines().find(|l| l.contains("scheduler stopped")).expect("stop report");
    let published: usize = line.split("published=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();

    let dead = || distinct(&handler_records(&handler, "dead_letter"), "request_id");
    let accounted = wait_until(Duration::from_secs(60), || applied() + dead() >= published);
    let queue = format!("{}.results", prefix.prefix);
    let drained = wait_until(Duration::from_secs(30), || queue_depth(&queue) == Some((0, 0)));
    let results = applied();
    let distinct_results: usize =
        schema.query("select count(distinct request_id) from {schema}.results").parse().unwrap();
    eprintln!(
        "outage: published={published} results={results} dead_letters={} queue during={during:?} after={:?}",
        dead(),
        queue_depth(&queue)
    );
    assert!(during.is_some_and(|(ready, unacked)| ready + unacked > 256), "the outage was too short: {during:?}");
    assert!(accounted, "stranded: published {published}, applied {results}\n{}", handler.stderr_text());
    assert!(drained, "the results queue did not drain: {:?}", queue_depth(&queue));
    assert_eq!(results, distinct_results, "a result applied twice");
    assert_eq!(results + dead(), published);
    handler.wait_ready(Duration::from_secs(10));
}
