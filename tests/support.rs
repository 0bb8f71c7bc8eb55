//! Helpers shared by the end-to-end tests: the binary, temp check dirs, and
//! small loopback HTTP targets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn picket() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_picket"));
    cmd.env_remove("PICKET_LISTEN").env("PICKET_LOG", "info").env("RUST_BACKTRACE", "0");
    // The tests' Slack and PagerDuty receivers are loopback http servers.
    cmd.env("PICKET_ALLOW_HTTP_NOTIFY", "1");
    cmd
}

pub fn run(args: &[&str]) -> Output {
    picket().args(args).output().expect("picket runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A temp directory holding the given files.
pub fn checks_dir(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A loopback HTTP server answering 200 after `delay`, counting connections
/// and the most it ever had open at once.
pub struct Target {
    pub addr: std::net::SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub max_concurrent: Arc<AtomicUsize>,
}

pub fn spawn_target(runtime: &tokio::runtime::Runtime, delay: Duration) -> Target {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let max_concurrent = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (c, m) = (connections.clone(), max_concurrent.clone());
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now_open, Ordering::SeqCst);
            let open = open.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                // A client that gives up while we wait closes its end: read sees EOF.
                let answered = tokio::select! {
                    () = tokio::time::sleep(delay) => true,
                    _ = socket.read(&mut buf) => false,
                };
                if answered {
                    let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                    let _ = socket.shutdown().await;
                    // Wait for the client to close, so "open" spans the whole exchange.
                    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Target { addr, connections, max_concurrent }
}

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A running picket process whose output lines are collected as they come.
pub struct Role {
    pub child: std::process::Child,
    /// The handler's state store lives here, one per process.
    _state: tempfile::TempDir,
    pub stdout: Arc<std::sync::Mutex<Vec<String>>>,
    pub stderr: Arc<std::sync::Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Role {
    /// Starts `picket <args>` under `prefix` with the broker URL and a free listen port.
    pub fn start(prefix: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = picket();
        cmd.args(args).env("PICKET_AMQP_URL", AMQP_URL).env("PICKET_PREFIX", prefix);
        Self::spawn(cmd, env)
    }

    /// Starts `picket standalone` over `checks` with a free listen port.
    pub fn standalone(checks: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = picket();
        cmd.args(["standalone", "--checks", &path_str(checks)]);
        Self::spawn(cmd, env)
    }

    fn spawn(mut cmd: Command, env: &[(&str, &str)]) -> Self {
        let state = tempfile::tempdir().unwrap();
        cmd.env("PICKET_STATE_DIR", state.path())
            .env("PICKET_LISTEN", "127.0.0.1:0")
            .env("PICKET_LOG", "info,lapin=warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("picket starts");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self { child, _state: state, stdout, stderr }
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.stderr.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The address its health endpoint bound.
    pub fn listen_addr(&self) -> String {
        assert!(self.wait_log("addr=", Duration::from_secs(10)), "no listen address: {}", self.stderr_text());
        let text = self.stderr_text();
        let rest = text.split("addr=").nth(1).unwrap();
        rest.split_whitespace().next().unwrap().to_owned()
    }

    pub fn get(&self, path: &str) -> String {
        self.request("GET", path, None)
    }

    /// The raw answer to `method path`, with `Authorization: Bearer token` when given.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.listen_addr()).unwrap();
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    /// The status code and JSON body (`Null` when not JSON) of an API `GET`.
    pub fn api(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let text = self.request("GET", path, token);
        let code = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        (code, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    }

    /// Waits for `/readyz` to answer 200.
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.get("/readyz").starts_with("HTTP/1.1 200") {
            assert!(std::time::Instant::now() < deadline, "never ready: {}", self.stderr_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of a counter or gauge on `/metrics`, summed over its label sets.
    pub fn metric(&self, name: &str) -> f64 {
        self.get("/metrics")
            .lines()
            .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique broker prefix for one test; its queues and exchanges are deleted at the end.
pub struct BrokerPrefix {
    pub prefix: String,
    subscriptions: Vec<String>,
    /// The broker it lives on (the machine's, or a node of the test cluster).
    url: String,
}

impl BrokerPrefix {
    pub fn new(test: &str, subscriptions: &[&str]) -> Self {
        Self::on(AMQP_URL, test, subscriptions)
    }

    /// A prefix on the broker at `url`.
    pub fn on(url: &str, test: &str, subscriptions: &[&str]) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        Self {
            prefix: format!("t-{test}-{}-{nanos}", std::process::id()),
            subscriptions: subscriptions.iter().map(|s| (*s).to_owned()).collect(),
            url: url.to_owned(),
        }
    }

    /// A connection for the test's own publishing and inspection.
    pub async fn channel(&self) -> lapin::Channel {
        let connection = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
            .await
            .expect("broker reachable");
        connection.create_channel().await.unwrap()
    }
}

impl Drop for BrokerPrefix {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let subscriptions = self.subscriptions.clone();
        let url = self.url.clone();
        let cleanup = async move {
            let Ok(connection) = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await else {
                return;
            };
            let mut queues: Vec<String> = subscriptions.iter().map(|s| format!("{prefix}.sub.{s}")).collect();
            queues.extend(
                [
                    "results",
                    "results.batch",
                    "keepalives",
                    "dead",
                    "handler.keepalives",
                    "handler.keepalives.quorum",
                    "handler.dead",
                ]
                .iter()
                .map(|q| format!("{prefix}.{q}")),
            );
            for queue in queues {
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel.queue_delete(queue.as_str().into(), Default::default()).await;
                }
            }
            for exchange in ["requests", "results", "keepalives", "dead"] {
                if let Ok(channel) = connection.create_channel().await {
                    let _ = channel
                        .exchange_delete(format!("{prefix}.{exchange}").as_str().into(), Default::default())
                        .await;
                }
            }
            let _ = connection.close(200, "test done".into()).await;
        };
        if let Ok(runtime) = tokio::runtime::Runtime::new() {
            runtime.block_on(cleanup);
        }
    }
}

/// The handler's JSON lines of one kind (`check_result`, `dead_letter`, `keepalive`).
pub fn handler_records(handler: &Role, kind: &str) -> Vec<serde_json::Value> {
    handler
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .map(|v| v[kind.trim_start_matches("check_")].clone())
        .collect()
}

/// Stops the scheduler and returns how many requests it published.
pub fn stop_scheduler(mut scheduler: Role) -> u64 {
    scheduler.signal("-TERM");
    let status = scheduler.wait_exit(Duration::from_secs(10)).expect("scheduler exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", scheduler.stderr_text());
    let text = scheduler.stderr_text();
    let line = text.lines().find(|l| l.contains("scheduler stopped")).expect("stop report");
    line.split("published=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

/// Waits until the handler has seen `n` results and dead letters in all.
pub fn wait_accounted(handler: &Role, n: usize, limit: Duration) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let results = handler_records(handler, "check_result");
        let dead = handler_records(handler, "dead_letter");
        if results.len() + dead.len() >= n || std::time::Instant::now() > deadline {
            return (results, dead);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP proxy to the broker that the test can sever, cutting only the
/// connections of the roles pointed at it.
pub struct BrokerProxy {
    pub port: u16,
    cut: tokio::sync::watch::Sender<u64>,
}

impl BrokerProxy {
    pub fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cuts = cut.clone();
        runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut severed = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect("127.0.0.1:5672").await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = severed.changed() => {}
                    }
                });
            }
        });
        Self { port, cut }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Drops every connection open through the proxy now.
    pub fn sever(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// A loopback HTTP target answering 200 while `healthy` is set, 500 otherwise.
pub fn spawn_switch_target(
    runtime: &tokio::runtime::Runtime,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicBool>) {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let flag = flag.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let reply: &[u8] = if flag.load(Ordering::SeqCst) {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                } else {
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"
                };
                let _ = socket.write_all(reply).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, healthy)
}

/// A stand-in for Slack or PagerDuty: records every JSON body it receives
/// and answers `status`.
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    pub bodies: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    pub fn start(runtime: &tokio::runtime::Runtime, status: u16) -> Self {
        use axum::extract::State;
        let bodies: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let status = axum::http::StatusCode::from_u16(status).unwrap();
        let app =
            axum::Router::new()
                .fallback(
                    move |State(bodies): State<Arc<std::sync::Mutex<Vec<serde_json::Value>>>>,
                          body: axum::body::Bytes| async move {
                        bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
                        status
                    },
                )
                .with_state(bodies.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self { addr, bodies }
    }

    pub fn received(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Polls `condition` until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// A fresh PostgreSQL schema, dropped when the test ends, however it ends.
pub struct Schema(pub String);

impl Schema {
    pub fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        Self(format!("picket_e2e_{test}_{}_{nanos}", std::process::id()))
    }

    /// The environment that puts a role's state store in this schema.
    pub fn env(&self) -> [(&'static str, &str); 2] {
        [("PICKET_STATE_URL", "postgres://postgres@127.0.0.1:5432/test"), ("PICKET_STATE_SCHEMA", self.0.as_str())]
    }

    /// One value from `sql`, where `{schema}` stands for this schema.
    pub fn query(&self, sql: &str) -> String {
        let output = psql(&sql.replace("{schema}", &self.0));
        assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `runner_lost` events logged for `runner`.
    pub fn runner_lost(&self, runner: &str) -> u64 {
        self.query(&format!(
            "select count(*) from {{schema}}.events where kind = 'runner_lost' and runner = '{runner}'"
        ))
        .parse()
        .unwrap()
    }
}

fn psql(sql: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-tA", "-c", sql])
        .output()
        .expect("psql runs")
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = psql(&format!("drop schema if exists {} cascade", self.0));
    }
}
