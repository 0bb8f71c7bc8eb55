//! picket's series as a real Prometheus sees them: Debian's `prometheus`
//! scrapes a standalone picket running a passing, a failing and an HTTPS
//! check, and answers PromQL over its HTTP API. The shipped scrape configs,
//! alert rules and dashboard are checked against the same Prometheus.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BrokerPrefix, Role, checks_dir, path_str, repo, spawn_target, wait_until};

/// Debian's prometheus package, which the test command installs when missing.
fn tool(name: &str) -> Command {
    let path = format!("/usr/bin/{name}");
    assert!(Path::new(&path).exists(), "{path} is missing: scripts/test installs Debian's prometheus package");
    Command::new(path)
}

fn promtool_ok(args: &[&str], stdin: Option<&str>) {
    let mut child = tool("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_shipped_scrape_configs_and_alert_rules_pass_promtool() {
    promtool_ok(&["check", "rules", &path_str(&repo("images/prometheus/alerts.yml"))], None);
    for config in ["images/prometheus/prometheus.yml", "images/prometheus/prometheus-ecs.yml"] {
        promtool_ok(&["check", "config", &path_str(&repo(config))], None);
    }
}

/// A Prometheus scraping `target` every second, on a free loopback port.
struct Prometheus {
    child: std::process::Child,
    addr: String,
    _data: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes each (job, address) every second.
    fn start(jobs: &[(&str, String)]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("prometheus.yml");
        let scrape: String = jobs
            .iter()
            .map(|(job, target)| format!("  - job_name: {job}\n    static_configs: [{{ targets: [\"{target}\"] }}]\n"))
            .collect();
        std::fs::write(
            &config,
            format!("global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n{scrape}"),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let child = tool("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let prometheus = Self { child, addr, _data: data };
        assert!(
            wait_until(Duration::from_secs(30), || prometheus.get("/-/ready").is_some_and(|(code, _)| code == 200)),
            "prometheus never became ready"
        );
        prometheus
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = std::net::TcpStream::connect(&self.addr).ok()?;
        // HTTP/1.0: a large answer comes whole, not chunked.
        write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, text.split_once("\r\n\r\n")?.1.to_owned()))
    }

    /// The answer of an instant query, as Prometheus's API gives it.
    fn query(&self, promql: &str) -> Value {
        let (_, body) =
            self.get(&format!("/api/v1/query?query={}", percent_encode(promql))).expect("prometheus answers");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{promql}: {e}: {body}"))
    }

    /// The vector an instant query returns, as (labels, value).
    fn vector(&self, promql: &str) -> Vec<(Value, f64)> {
        let answer = self.query(promql);
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|sample| (sample["metric"].clone(), sample["value"][1].as_str().unwrap().parse().unwrap()))
            .collect()
    }

    fn value(&self, promql: &str) -> Option<f64> {
        let vector = self.vector(promql);
        (vector.len() == 1).then(|| vector[0].1)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An HTTPS server on 127.0.0.1 with a certificate from a CA of its own;
/// returns its address, the CA's PEM and the leaf's not-after (Unix seconds).
fn spawn_https_target(runtime: &tokio::runtime::Runtime) -> (std::net::SocketAddr, String, i64) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let not_after = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::days(45);
    leaf_params.not_after = not_after;
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 2048];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, ca.pem(), not_after.unix_timestamp())
}

/// A loopback HTTP server that always answers 500.
fn spawn_failing_target(runtime: &tokio::runtime::Runtime) -> std::net::SocketAddr {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail").await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// Metric names a PromQL expression refers to (picket's only).
fn picket_names(expr: &str) -> Vec<String> {
    let pattern = regex::Regex::new(r"\bpicket_[a-z_]+\b").unwrap();
    pattern.find_iter(expr).map(|m| m.as_str().to_owned()).collect()
}

/// Every `expr` of a Grafana dashboard, panels inside rows included.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        exprs.extend(
            panel["targets"].as_array().into_iter().flatten().filter_map(|t| t["expr"].as_str()).map(str::to_owned),
        );
    }
    exprs
}

#[test]
fn a_real_prometheus_scrapes_each_checks_status_phases_and_certificate_expiry() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let healthy = spawn_target(&runtime, Duration::ZERO);
    let failing = spawn_failing_target(&runtime);
    let (secure, ca_pem, not_after) = spawn_https_target(&runtime);
    let ca = checks_dir(&[("ca.pem", ca_pem)]);
    let check = |name: &str, url: String, extra: Value| {
        let mut check = json!({"name": name, "type": "http", "url": url, "interval": "1s", "timeout": "500ms"});
        check.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        check
    };
    let checks = json!([
        check("passing", format!("http://{}/", healthy.addr), json!({})),
        check("failing", format!("http://{failing}/"), json!({})),
        check("secure", format!("https://{secure}/"), json!({"ca_file": path_str(&ca.path().join("ca.pem"))})),
    ]);
    let dir = checks_dir(&[("checks.json", checks.to_string())]);
    let checks = path_str(dir.path());
    let standalone = Role::start("prometheus", &["standalone", "--checks", &checks], &[]);
    // The same checks through the distributed roles, for the fleet's series.
    let prefix = BrokerPrefix::new("prometheus", &["default"]);
    let scheduler = Role::start(&prefix.prefix, &["scheduler", "--checks", &checks], &[]);
    let runner = Role::start(&prefix.prefix, &["runner"], &[]);
    let handler = Role::start(&prefix.prefix, &["handler", "--checks", &checks], &[]);
    let roles = [("standalone", &standalone), ("scheduler", &scheduler), ("runner", &runner), ("handler", &handler)];
    for (_, role) in &roles {
        role.wait_ready(Duration::from_secs(30));
    }
    let prometheus = Prometheus::start(&roles.map(|(job, role)| (job, role.listen_addr())));

    let status =
        |check: &str| prometheus.value(&format!("picket_check_status{{job=\"standalone\",check=\"{check}\"}}"));
    assert!(
        wait_until(Duration::from_secs(60), || status("passing") == Some(0.0)
            && status("failing") == Some(2.0)
            && status("secure") == Some(0.0)),
        "passing {:?}, failing {:?}, secure {:?}\n{}",
        status("passing"),
        status("failing"),
        status("secure"),
        standalone.stderr_text()
    );
    assert_eq!(prometheus.value("picket_check_up{job=\"standalone\",check=\"failing\"}"), Some(0.0));
    let phases: Vec<String> = prometheus
        .vector("picket_check_phase_seconds{job=\"standalone\",check=\"secure\"}")
        .into_iter()
        .map(|(labels, _)| labels["phase"].as_str().unwrap().to_owned())
        .collect();
    for phase in ["connect", "tls", "ttfb", "transfer"] {
        assert!(phases.iter().any(|p| p == phase), "no {phase} phase for the HTTPS check: {phases:?}");
    }
    for which in ["leaf", "chain"] {
        let expiry = prometheus.value(&format!(
            "picket_tls_not_after_timestamp_seconds{{job=\"standalone\",check=\"secure\",which=\"{which}\"}}"
        ));
        assert_eq!(expiry, Some(not_after as f64), "{which}: the test certificate's not-after");
    }
    assert!(prometheus.vector("picket_tls_not_after_timestamp_seconds{check=\"passing\"}").is_empty(), "plain HTTP");

    // Every role's /metrics in the text format promtool and older scrapers read.
    let mut exported = std::collections::BTreeSet::new();
    for (job, role) in &roles {
        let text = role.get("/metrics");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{job}: {head}");
        promtool_ok(&["check", "metrics"], Some(body));
        exported.extend(
            body.lines()
                .filter_map(|line| line.strip_prefix("# TYPE ").or(Some(line).filter(|l| !l.starts_with('#'))))
                .filter_map(|line| line.split(['{', ' ']).next())
                .map(str::to_owned),
        );
    }
    // The fleet's series reach Prometheus once the handler has results.
    assert!(
        wait_until(Duration::from_secs(30), || prometheus
            .value("picket_check_status{job=\"handler\",check=\"failing\"}")
            == Some(2.0)
            && !prometheus.vector("picket_queue_depth{job=\"scheduler\"}").is_empty()),
        "the distributed roles' series never arrived"
    );

    // The dashboard: every expression parses and names only series picket exports.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("images/grafana/picket.json")).unwrap()).unwrap();
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 15, "{exprs:?}");
    for expr in &exprs {
        let concrete = expr.replace("$subscription", ".*").replace("$check", ".*").replace("$__rate_interval", "1m");
        let answer = prometheus.query(&concrete);
        assert_eq!(answer["status"], "success", "dashboard expression {expr}: {answer}");
        for name in picket_names(expr) {
            let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
            assert!(
                exported.contains(&name) || exported.contains(family),
                "the dashboard uses {name}, which picket does not export: {exported:?}"
            );
        }
    }
    // And so do the alert rules.
    let rules = std::fs::read_to_string(repo("images/prometheus/alerts.yml")).unwrap();
    for line in rules.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        for name in picket_names(line) {
            assert!(exported.contains(&name), "alerts.yml uses {name}, which picket does not export");
        }
    }
}
