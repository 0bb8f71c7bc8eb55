//! The probed services, started on 127.0.0.1 with configuration written into
//! the run's temp dir: nginx (plain HTTP and HTTPS with a certificate issued
//! here by a throwaway CA), dnsmasq answering `bench.test`, and
//! blackbox_exporter with one module per check type.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::procs::{Proc, free_port, free_udp_port, output_of};

pub const DNS_NAME: &str = "bench.test";
pub const BLACKBOX: &str = "prometheus-blackbox-exporter";
pub const PLUGINS: &str = "/usr/lib/nagios/plugins";

pub struct Services {
    pub dir: PathBuf,
    pub http_port: u16,
    pub https_port: u16,
    pub dns_port: u16,
    pub blackbox_port: u16,
    pub ca_file: PathBuf,
    pub blackbox: Proc,
    nginx: Proc,
    _dnsmasq: Proc,
}

/// The small static body nginx serves.
const BODY: &str = "picket bench ok\n";

impl Services {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let ca_file = write_pki(dir)?;
        let http_port = free_port()?;
        let https_port = free_port()?;
        let dns_port = free_udp_port()?;
        let blackbox_port = free_port()?;

        let www = dir.join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("index.html"), BODY)?;
        std::fs::create_dir_all(dir.join("nginx-tmp"))?;
        std::fs::write(dir.join("nginx.conf"), nginx_conf(dir, http_port, https_port))?;
        let mut nginx = Command::new("nginx");
        nginx.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf")).arg("-e").arg(dir.join("nginx-error.log"));
        let mut nginx = Proc::spawn("nginx", nginx, dir)?;

        let mut dnsmasq = Command::new("dnsmasq");
        dnsmasq.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--cache-size=0",
        ]);
        dnsmasq
            .arg(format!("--port={dns_port}"))
            .arg(format!("--address=/{DNS_NAME}/127.0.0.1"))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
        let mut dnsmasq = Proc::spawn("dnsmasq", dnsmasq, dir)?;

        std::fs::write(dir.join("blackbox.yml"), blackbox_conf(&ca_file))?;
        let mut blackbox = Command::new(BLACKBOX);
        blackbox
            .arg(format!("--config.file={}", dir.join("blackbox.yml").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{blackbox_port}"))
            .arg("--log.level=warn");
        let mut blackbox = Proc::spawn("blackbox_exporter", blackbox, dir)?;

        let started = Instant::now();
        wait_tcp(&mut nginx, http_port, started)?;
        wait_tcp(&mut nginx, https_port, started)?;
        wait_tcp(&mut blackbox, blackbox_port, started)?;
        wait_dns(&mut dnsmasq, dns_port, started)?;
        Ok(Self {
            dir: dir.to_owned(),
            http_port,
            https_port,
            dns_port,
            blackbox_port,
            ca_file,
            blackbox,
            nginx,
            _dnsmasq: dnsmasq,
        })
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.http_port)
    }

    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.https_port)
    }

    pub fn nginx_pid(&self) -> u32 {
        self.nginx.pid()
    }

    pub fn nameserver(&self) -> String {
        format!("127.0.0.1:{}", self.dns_port)
    }
}

fn wait_tcp(proc: &mut Proc, port: u16, started: Instant) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        proc.alive()?;
        if started.elapsed() > Duration::from_secs(20) {
            bail!("{} is not listening on {addr}", proc.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Sends an A query for bench.test until the server answers.
fn wait_dns(proc: &mut Proc, port: u16, started: Instant) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in DNS_NAME.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut buf = [0u8; 512];
    loop {
        socket.send_to(&query, ("127.0.0.1", port))?;
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && n > 12
            && buf[..2] == [0x12, 0x34]
        {
            return Ok(());
        }
        proc.alive()?;
        if started.elapsed() > Duration::from_secs(20) {
            bail!("dnsmasq does not answer on 127.0.0.1:{port}");
        }
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 and localhost;
/// returns the CA's PEM path (the trust anchor every HTTPS prober is given).
fn write_pki(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, "picket bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem())?;
    std::fs::write(dir.join("server.pem"), leaf_cert.pem())?;
    std::fs::write(dir.join("server.key"), leaf_key.serialize_pem())?;
    Ok(ca_file)
}

fn nginx_conf(dir: &Path, http: u16, https: u16) -> String {
    let d = dir.display();
    format!(
        r#"# Written by picket-bench; loopback only.
daemon off;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    default_type text/plain;
    # A fresh connection per check, and a full TLS handshake per connection.
    keepalive_timeout 0;
    ssl_session_cache off;
    ssl_session_tickets off;
    server {{
        listen 127.0.0.1:{http};
        listen 127.0.0.1:{https} ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        location / {{ root {d}/www; index index.html; }}
    }}
}}
"#
    )
}

fn blackbox_conf(ca_file: &Path) -> String {
    format!(
        r#"# Written by picket-bench.
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  https_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      tls_config:
        ca_file: {ca}
  dns_a:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      transport_protocol: udp
      query_name: {DNS_NAME}
      query_type: A
      valid_rcodes: [NOERROR]
      validate_answer_rrs:
        fail_if_not_matches_regexp: ["127\\.0\\.0\\.1$"]
"#,
        ca = ca_file.display()
    )
}

/// Versions of the tools, for the report.
pub fn versions() -> Vec<(&'static str, String)> {
    let first_line = |s: String| s.lines().next().unwrap_or_default().to_owned();
    vec![
        ("nginx", first_line(output_of("nginx", &["-v"]))),
        ("dnsmasq", first_line(output_of("dnsmasq", &["--version"]))),
        ("blackbox_exporter", first_line(output_of(BLACKBOX, &["--version"]))),
        ("monitoring-plugins", first_line(output_of(&format!("{PLUGINS}/check_http"), &["-V"]))),
        ("wrk", first_line(output_of("wrk", &["-v"]))),
        ("RabbitMQ", first_line(output_of("rabbitmqctl", &["version"]))),
    ]
}

/// Fails early, with the package to install, when a tool is missing.
pub fn require_tools() -> anyhow::Result<()> {
    let needed = [
        ("nginx", "nginx-light"),
        ("dnsmasq", "dnsmasq-base"),
        (BLACKBOX, "prometheus-blackbox-exporter"),
        ("wrk", "wrk"),
        ("dig", "bind9-dnsutils"),
    ];
    for (tool, package) in needed {
        if output_of("sh", &["-c", &format!("command -v {tool}")]).is_empty() {
            bail!("{tool} is not installed (Debian package {package}); bench/run installs it");
        }
    }
    for plugin in ["check_http", "check_dig"] {
        let path = Path::new(PLUGINS).join(plugin);
        std::fs::metadata(&path).with_context(|| format!("{} missing (monitoring-plugins)", path.display()))?;
    }
    Ok(())
}
