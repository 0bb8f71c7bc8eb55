//! The `http` check: one request over a fresh connection, timed phase by phase
//! (dns, connect, tls, ttfb, transfer), redirects followed hop by hop so each
//! hop's target passes the deny list before it is connected to.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, COOKIE, HOST, LOCATION, PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use protocol::Status;
use protocol::definition::HttpSpec;
use protocol::definition::http::HttpMethod;
use protocol::definition::secret::TextOrSecret;
use protocol::metrics::result_keys;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

use crate::executor::Executor;
use crate::outcome::{CheckOutcome, Progress, latency_status, ms};
use crate::trust::cert_not_after;

const USER_AGENT_VALUE: &str = concat!("picket/", env!("CARGO_PKG_VERSION"));

/// What one hop (one request on one connection) returned.
struct HopResponse {
    status: u16,
    version: Version,
    headers: HeaderMap,
    /// The body up to the read limit (kept only when a body expectation needs it).
    body: Vec<u8>,
    /// Body bytes read, up to the limit.
    bytes: u64,
    truncated: bool,
    timings: BTreeMap<String, f64>,
    cert_expiry: Option<CertExpiry>,
}

/// When the served certificates expire: the leaf, and the earliest of the
/// whole served chain (an intermediate may expire first).
#[derive(Clone, Copy)]
struct CertExpiry {
    leaf: chrono::DateTime<chrono::Utc>,
    chain: chrono::DateTime<chrono::Utc>,
}

impl CertExpiry {
    fn of(served: &[rustls::pki_types::CertificateDer<'_>]) -> Option<Self> {
        let leaf = cert_not_after(served.first()?)?;
        let chain = served.iter().filter_map(|cert| cert_not_after(cert)).min().unwrap_or(leaf);
        Some(Self { leaf, chain })
    }
}

/// A redirect that was followed, for the result's details.
struct Hop {
    url: Url,
    status: u16,
    ms: f64,
}

/// A request header, resolved once per run.
struct SendHeader {
    name: HeaderName,
    value: HeaderValue,
    /// Sent only to the origin of the check's URL: a secret reference, or a
    /// header curl also withholds from another origin.
    origin_only: bool,
}

/// What the next hop sends: redirects may turn the method into GET and drop
/// the body, as curl does.
struct NextRequest {
    method: HttpMethod,
    body: Option<String>,
}

pub async fn run(executor: &Executor, spec: &HttpSpec, progress: &Progress) -> CheckOutcome {
    let started = Instant::now();
    let headers = match resolve_headers(executor, spec).await {
        Ok(headers) => headers,
        Err(outcome) => return outcome,
    };
    let origin = spec.url.origin();
    let mut url = spec.url.clone();
    let mut next_request = NextRequest { method: spec.method, body: spec.body.clone() };
    let mut hops: Vec<Hop> = Vec::new();
    loop {
        let hop_started = Instant::now();
        let same_origin = url.origin() == origin;
        let request = match build_request(&next_request, &headers, same_origin, &url) {
            Ok(request) => request,
            Err(outcome) => return with_hops(outcome, &hops, &url),
        };
        let response = match fetch(executor, spec, &url, request, progress).await {
            Ok(response) => response,
            Err(outcome) => return with_hops(outcome, &hops, &url),
        };
        let location = response.headers.get(LOCATION).and_then(|l| l.to_str().ok());
        let next = match location {
            Some(location) if is_redirect(response.status) && spec.max_redirects() > 0 => url.join(location).ok(),
            _ => None,
        };
        let Some(next) = next else {
            return evaluate(spec, response, &hops, &url, started);
        };
        hops.push(Hop { url: url.clone(), status: response.status, ms: ms(hop_started.elapsed()) });
        if !matches!(next.scheme(), "http" | "https") {
            let outcome =
                CheckOutcome::critical(format!("redirect to {next} not followed: only http and https redirects are"));
            return with_hops(outcome, &hops, &next);
        }
        if hops.iter().any(|hop| hop.url == next) {
            let chain: Vec<&str> = hops.iter().map(|h| h.url.as_str()).chain([next.as_str()]).collect();
            let outcome = CheckOutcome::critical(format!("redirect loop: {}", chain.join(" -> ")));
            return with_hops(outcome, &hops, &next);
        }
        if hops.len() > usize::from(spec.max_redirects()) {
            let outcome =
                CheckOutcome::critical(format!("more redirects than follow_redirects {} allows", spec.max_redirects()));
            return with_hops(outcome, &hops, &next);
        }
        next_request = redirected(next_request, response.status);
        url = next;
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The method and body after a redirect with `status`, by curl's default
/// rules: 303 turns anything but HEAD into a GET without body; 301 and 302
/// turn a POST into a GET without body; 307 and 308 keep both.
fn redirected(hop: NextRequest, status: u16) -> NextRequest {
    let to_get = match status {
        303 => hop.method != HttpMethod::Head,
        301 | 302 => hop.method == HttpMethod::Post,
        _ => false,
    };
    if to_get { NextRequest { method: HttpMethod::Get, body: None } } else { hop }
}

/// Resolves the definition's headers, secrets through the runner's
/// allow-list; a refused or missing secret is UNKNOWN naming the header and
/// the reference, never a value.
async fn resolve_headers(executor: &Executor, spec: &HttpSpec) -> Result<Vec<SendHeader>, CheckOutcome> {
    let mut headers = Vec::with_capacity(spec.headers.len());
    for (name, value) in &spec.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| CheckOutcome::unknown(format!("header {name}: {e}")))?;
        let (text, secret) = match value {
            TextOrSecret::Text(text) => (text.clone(), false),
            TextOrSecret::Secret(secret) => (
                executor
                    .secrets
                    .resolve(secret)
                    .await
                    .map_err(|e| CheckOutcome::unknown(format!("header {name}: {e}")))?,
                true,
            ),
        };
        let value = HeaderValue::from_str(&text)
            .map_err(|_| CheckOutcome::unknown(format!("header {name}: the value is not a valid header value")))?;
        let origin_only = secret || [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION].contains(&header);
        headers.push(SendHeader { name: header, value, origin_only });
    }
    Ok(headers)
}

/// One request on a fresh connection to `url`.
async fn fetch(
    executor: &Executor,
    spec: &HttpSpec,
    url: &Url,
    request: Request<Full<Bytes>>,
    progress: &Progress,
) -> Result<HopResponse, CheckOutcome> {
    let mut timings = BTreeMap::new();
    let mut lap = Instant::now();
    let mut record = |name: &str, timings: &mut BTreeMap<String, f64>| {
        let elapsed = ms(lap.elapsed());
        lap = Instant::now();
        progress.metric(name, elapsed);
        timings.insert(name.to_owned(), elapsed);
    };
    let host = url.host_str().ok_or_else(|| CheckOutcome::unknown(format!("{url} has no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs = executor.resolve_target(host, port, spec.ip_family, progress).await?;
    record("dns", &mut timings);

    progress.phase("connect");
    let tcp = connect(&addrs).await?;
    record("connect", &mut timings);

    if url.scheme() == "https" {
        progress.phase("tls");
        let config = executor
            .trust
            .http_config(spec.ca_file.as_deref(), spec.tls_verify())
            .map_err(|e| CheckOutcome::unknown(format!("TLS configuration: {e}")))?;
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
            .map_err(|e| CheckOutcome::unknown(format!("{host} is not a TLS server name: {e}")))?;
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| CheckOutcome::critical(super::words::handshake_failure(format_args!("{host}:{port}"), &e)))?;
        let expiry = tls.get_ref().1.peer_certificates().and_then(CertExpiry::of);
        record("tls", &mut timings);
        exchange(tls, request, spec, progress, timings, lap, expiry).await
    } else {
        exchange(tcp, request, spec, progress, timings, lap, None).await
    }
}

async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, CheckOutcome> {
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Requests are small and sent once: don't let Nagle delay them.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_error = Some(format!("cannot connect to {addr}: {}", super::words::socket_error(&e))),
        }
    }
    Err(CheckOutcome::critical(last_error.unwrap_or_else(|| "no address to connect to".to_owned())))
}

fn build_request(
    hop: &NextRequest,
    headers: &[SendHeader],
    same_origin: bool,
    url: &Url,
) -> Result<Request<Full<Bytes>>, CheckOutcome> {
    let host_header = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let mut builder = Request::builder()
        .method(hop.method.as_str())
        .uri(path)
        .header(HOST, host_header)
        .header(USER_AGENT, USER_AGENT_VALUE)
        // Every run opens a fresh connection to measure connect and TLS time;
        // tell the server not to keep it.
        .header(CONNECTION, "close");
    for header in headers.iter().filter(|h| same_origin || !h.origin_only) {
        builder = builder.header(&header.name, &header.value);
    }
    let body = Bytes::from(hop.body.clone().unwrap_or_default());
    builder.body(Full::new(body)).map_err(|e| CheckOutcome::unknown(format!("cannot build the request: {e}")))
}

/// Sends the request and reads the response within the body limit. The
/// connection is driven inside this future, so a timeout that drops it also
/// closes the socket.
async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
    spec: &HttpSpec,
    progress: &Progress,
    mut timings: BTreeMap<String, f64>,
    lap: Instant,
    cert_expiry: Option<CertExpiry>,
) -> Result<HopResponse, CheckOutcome>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CheckOutcome::critical(format!("HTTP handshake: {e}")))?;
    let drive = async move {
        // When the connection ends first, the request side sees the error.
        let _ = connection.await;
        std::future::pending::<()>().await;
    };
    let work = async {
        progress.phase("ttfb");
        let mut lap = lap;
        let response = sender.send_request(request).await.map_err(|e| CheckOutcome::critical(request_failure(&e)))?;
        let ttfb = ms(lap.elapsed());
        progress.metric("ttfb", ttfb);
        timings.insert("ttfb".to_owned(), ttfb);
        lap = Instant::now();
        progress.phase("transfer");
        let (parts, body) = response.into_parts();
        let keep_body = spec.expect.body_contains.is_some() || spec.expect.body_regex.is_some();
        let (body, bytes, truncated) = read_body(body, spec.body_limit(), keep_body).await?;
        let transfer = ms(lap.elapsed());
        progress.metric("transfer", transfer);
        timings.insert("transfer".to_owned(), transfer);
        Ok(HopResponse {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body,
            bytes,
            truncated,
            timings,
            cert_expiry,
        })
    };
    tokio::select! {
        result = work => result,
        () = drive => unreachable!("the driver never completes"),
    }
}

/// Why a request got no response. A TLS server may refuse only after the
/// handshake (TLS 1.3 checks a client certificate after the client has
/// finished), so its alert surfaces here and is put in words like any other.
fn request_failure(error: &hyper::Error) -> String {
    if let Some(tls) = super::words::rustls_error(error) {
        return format!("the TLS connection failed: {}", super::words::tls_error(tls));
    }
    if error.is_incomplete_message() {
        return "the server closed the connection before it sent a response".to_owned();
    }
    format!("HTTP request failed: {}", protocol::error_chain(error))
}

/// Reads at most `limit` bytes of body; the rest is never downloaded.
async fn read_body(mut body: Incoming, limit: u64, keep: bool) -> Result<(Vec<u8>, u64, bool), CheckOutcome> {
    let mut kept = Vec::new();
    let mut read: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| CheckOutcome::critical(format!("reading the body: {}", protocol::error_chain(&e))))?;
        let Ok(data) = frame.into_data() else { continue };
        let room = usize::try_from(limit - read).unwrap_or(usize::MAX);
        let take = data.len().min(room);
        read += take as u64;
        if keep {
            kept.extend_from_slice(&data[..take]);
        }
        if take < data.len() || read >= limit {
            let more = take < data.len() || body.frame().await.is_some();
            return Ok((kept, read, more));
        }
    }
    Ok((kept, read, false))
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Judges the final response against the expectations; every failed
/// expectation is reported, the worst status wins.
fn evaluate(spec: &HttpSpec, response: HopResponse, hops: &[Hop], url: &Url, started: Instant) -> CheckOutcome {
    let total = started.elapsed();
    let expect = &spec.expect;
    let mut findings: Vec<(Status, String)> = Vec::new();
    if !expect.status_ok(response.status) {
        let wanted: Vec<String> = if expect.status.is_empty() {
            vec!["2xx".to_owned()]
        } else {
            expect.status.iter().map(ToString::to_string).collect()
        };
        findings.push((Status::Critical, format!("HTTP {} (expected {})", response.status, wanted.join(", "))));
    }
    let body = String::from_utf8_lossy(&response.body);
    let truncated_note =
        if response.truncated { format!(" (in the first {} bytes read)", response.bytes) } else { String::new() };
    if let Some(needle) = &expect.body_contains
        && !body.contains(needle.as_str())
    {
        findings.push((Status::Critical, format!("body does not contain {needle:?}{truncated_note}")));
    }
    if let Some(pattern) = &expect.body_regex
        && !pattern.is_match(&body)
    {
        findings.push((Status::Critical, format!("body does not match /{}/{truncated_note}", pattern.as_str())));
    }
    for (name, matcher) in &expect.headers {
        match response.headers.get(name.as_str()).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()) {
            None => findings.push((Status::Critical, format!("header {name} missing"))),
            Some(value) if !matcher.matches(&value) => {
                findings.push((Status::Critical, format!("header {name}: {value:?} does not {matcher}")));
            }
            Some(_) => {}
        }
    }
    if let (status, Some(reason)) = latency_status(total, expect.latency()) {
        findings.push((status, reason));
    }

    let mut metrics = response.timings;
    metrics.insert("total".to_owned(), ms(total));
    metrics.insert("status_code".to_owned(), f64::from(response.status));
    metrics.insert("bytes".to_owned(), response.bytes as f64);
    metrics.insert("redirects".to_owned(), hops.len() as f64);
    if let Some(expiry) = response.cert_expiry {
        let days = (expiry.leaf - chrono::Utc::now()).num_seconds() as f64 / 86_400.0;
        metrics.insert(result_keys::CERT_DAYS_LEFT.to_owned(), (days * 10.0).round() / 10.0);
        metrics.insert(result_keys::LEAF_NOT_AFTER.to_owned(), expiry.leaf.timestamp() as f64);
        metrics.insert(result_keys::CHAIN_NOT_AFTER.to_owned(), expiry.chain.timestamp() as f64);
    }
    let status = findings.iter().fold(Status::Ok, |worst, (s, _)| worst.worst(*s));
    let summary = format!(
        "HTTP {} in {:.0}ms{}",
        response.status,
        ms(total),
        if response.truncated {
            format!(", body cut at the {} byte read limit", response.bytes)
        } else {
            String::new()
        }
    );
    let output = if findings.is_empty() {
        summary
    } else {
        let reasons: Vec<&str> = findings.iter().map(|(_, r)| r.as_str()).collect();
        format!("{} ({summary})", reasons.join("; "))
    };
    let details = json!({
        "url": url.as_str(),
        "status": response.status,
        "http_version": version_name(response.version),
        "body_truncated": response.truncated,
        "redirects": hops_json(hops),
    });
    CheckOutcome::new(status, output).with_metrics(metrics).with_details(details)
}

fn hops_json(hops: &[Hop]) -> Value {
    hops.iter().map(|h| json!({ "url": h.url.as_str(), "status": h.status, "ms": h.ms })).collect()
}

/// Adds the redirect trail to a failure that happened on a later hop.
fn with_hops(mut outcome: CheckOutcome, hops: &[Hop], url: &Url) -> CheckOutcome {
    if !hops.is_empty() {
        let redirects = if hops.len() == 1 { "1 redirect".to_owned() } else { format!("{} redirects", hops.len()) };
        outcome.output = format!("after {redirects}, {url}: {}", outcome.output);
        outcome.metrics.insert("redirects".to_owned(), hops.len() as f64);
    }
    outcome.details = json!({ "url": url.as_str(), "redirects": hops_json(hops) });
    outcome
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use protocol::definition::parse_check;
    use protocol::metrics::result_keys;
    use protocol::{CheckDefinition, Status};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use crate::{CheckOutcome, DenyList, Executor};

    /// What the test server does with one request.
    enum Script {
        /// Writes these bytes and closes.
        Reply(String),
        /// Waits, then replies.
        Delay(Duration, String),
        /// Writes these bytes and never writes again.
        Stall(String),
        /// Writes response headers, then body bytes until the client leaves.
        Endless,
    }

    struct Server {
        addr: std::net::SocketAddr,
        connections: Arc<AtomicUsize>,
        /// What each request sent, head and any body read with it, in order.
        requests: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Server {
        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    fn ok(body: &str) -> String {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    }

    fn redirect(to: &str) -> String {
        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
    }

    /// A plain-TCP HTTP/1.1 server on `ip:0` scripted per request path.
    async fn serve_on(ip: &str, script: impl Fn(&str) -> Script + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Some(head) = crate::test_pki::read_head(&mut socket).await else { return };
                    seen.lock().unwrap().push(head.clone());
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    match script(&path) {
                        Script::Reply(text) => {
                            let _ = socket.write_all(text.as_bytes()).await;
                        }
                        Script::Delay(wait, text) => {
                            tokio::time::sleep(wait).await;
                            let _ = socket.write_all(text.as_bytes()).await;
                        }
                        Script::Stall(text) => {
                            let _ = socket.write_all(text.as_bytes()).await;
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        Script::Endless => {
                            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n").await;
                            let chunk = vec![b'x'; 16 * 1024];
                            while socket.write_all(&chunk).await.is_ok() {}
                        }
                    }
                });
            }
        });
        Server { addr, connections, requests }
    }

    async fn serve(script: impl Fn(&str) -> Script + Send + Sync + 'static) -> Server {
        serve_on("127.0.0.1", script).await
    }

    fn check(fields: serde_json::Value) -> CheckDefinition {
        let mut base = json!({"name": "t", "type": "http", "interval": "10s", "timeout": "2s"});
        base.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        parse_check(base).unwrap()
    }

    async fn run_with(deny: DenyList, fields: serde_json::Value) -> CheckOutcome {
        Executor::new(deny).unwrap().run(&check(fields)).await
    }

    async fn run(fields: serde_json::Value) -> CheckOutcome {
        run_with(DenyList::default(), fields).await
    }

    #[tokio::test]
    async fn ok_with_phase_timings() {
        let server = serve(|_| Script::Reply(ok("all ok"))).await;
        let url = format!("http://{}/health", server.addr);
        let outcome = run(
            json!({"url": url, "expect": {"body_contains": "ok", "headers": {"content-type": {"contains": "text"}}}}),
        )
        .await;
        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        assert!(outcome.output.starts_with("HTTP 200 in "), "{}", outcome.output);
        for phase in ["dns", "connect", "ttfb", "transfer", "total"] {
            assert!(outcome.metrics.contains_key(phase), "missing {phase}: {:?}", outcome.metrics);
        }
        assert_eq!(outcome.metrics["status_code"], 200.0);
        assert_eq!(outcome.metrics["bytes"], 6.0);
        assert_eq!(outcome.details["http_version"], "HTTP/1.1");
    }

    #[tokio::test]
    async fn server_error_and_failed_expectations_are_critical() {
        let server = serve(|_| Script::Reply("HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\nfail".into())).await;
        let outcome = run(json!({"url": format!("http://{}/", server.addr), "expect": {"body_regex": "^ok$"}})).await;
        assert_eq!(outcome.status, Status::Critical);
        assert!(
            outcome.output.starts_with("HTTP 500 (expected 2xx); body does not match /^ok$/"),
            "{}",
            outcome.output
        );
        let expected = run(json!({"url": format!("http://{}/", server.addr), "expect": {"status": [500]}})).await;
        assert_eq!(expected.status, Status::Ok, "{expected:?}");
        let header = run(json!({"url": format!("http://{}/", server.addr), "expect": {"status": ["5xx"], "headers": {"x-id": {"equals": "1"}}}})).await;
        assert_eq!(header.output.split(" (").next(), Some("header x-id missing"));
    }

    #[tokio::test]
    async fn a_slow_server_is_cut_at_the_timeout() {
        let server = serve(|_| Script::Delay(Duration::from_secs(5), ok("late"))).await;
        let started = std::time::Instant::now();
        let outcome = run(json!({"url": format!("http://{}/", server.addr), "timeout": "500ms"})).await;
        assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
        assert_eq!(outcome.status, Status::Critical);
        assert_eq!(outcome.output, "timed out after 500ms waiting for the response");
        assert!(outcome.metrics.contains_key("connect"));
    }

    #[tokio::test]
    async fn headers_that_never_finish_time_out() {
        let server = serve(|_| Script::Stall("HTTP/1.1 200 OK\r\nX-Partial: 1\r\n".into())).await;
        let outcome = run(json!({"url": format!("http://{}/", server.addr), "timeout": "300ms"})).await;
        assert_eq!(outcome.status, Status::Critical);
        assert_eq!(outcome.output, "timed out after 300ms waiting for the response");
    }

    #[tokio::test]
    async fn redirect_chains_are_followed_and_recorded() {
        let server = serve(|path| match path {
            "/a" => Script::Reply(redirect("/b")),
            "/b" => Script::Reply(redirect("/c")),
            _ => Script::Reply(ok("here")),
        })
        .await;
        let outcome = run(json!({"url": format!("http://{}/a", server.addr)})).await;
        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        assert_eq!(outcome.metrics["redirects"], 2.0);
        let hops = outcome.details["redirects"].as_array().unwrap();
        assert_eq!(hops.len(), 2);
        assert_eq!(hops[0]["status"], 302);
        assert!(outcome.details["url"].as_str().unwrap().ends_with("/c"));
        assert_eq!(server.connections.load(Ordering::SeqCst), 3, "a fresh connection per hop");

        let limited = run(json!({"url": format!("http://{}/a", server.addr), "follow_redirects": 1})).await;
        assert_eq!(limited.status, Status::Critical);
        assert!(limited.output.contains("more redirects than follow_redirects 1 allows"), "{}", limited.output);
        let unfollowed = run(json!({"url": format!("http://{}/a", server.addr), "follow_redirects": 0})).await;
        assert_eq!(unfollowed.output.split(" (").next(), Some("HTTP 302"));
    }

    #[tokio::test]
    async fn redirect_loops_are_reported() {
        let server = serve(|path| match path {
            "/a" => Script::Reply(redirect("/b")),
            _ => Script::Reply(redirect("/a")),
        })
        .await;
        let outcome = run(json!({"url": format!("http://{}/a", server.addr)})).await;
        assert_eq!(outcome.status, Status::Critical);
        assert!(outcome.output.starts_with("after 2 redirects"), "{}", outcome.output);
        assert!(outcome.output.contains("redirect loop: "), "{}", outcome.output);
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_read_limit() {
        let server = serve(|_| Script::Endless).await;
        let outcome = run(json!({"url": format!("http://{}/", server.addr), "body_limit": 65536, "expect": {"body_contains": "needle"}})).await;
        assert_eq!(outcome.status, Status::Critical);
        assert_eq!(outcome.metrics["bytes"], 65536.0);
        assert!(
            outcome.output.contains("body does not contain \"needle\" (in the first 65536 bytes read)"),
            "{}",
            outcome.output
        );
        assert!(outcome.output.contains("body cut at the 65536 byte read limit"), "{}", outcome.output);
        assert_eq!(outcome.details["body_truncated"], true);
    }

    #[tokio::test]
    async fn connection_refused_is_critical() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let outcome = run(json!({"url": format!("http://{addr}/")})).await;
        assert_eq!(outcome.status, Status::Critical);
        assert!(
            outcome.output.starts_with(&format!("cannot connect to {addr}: connection refused")),
            "{}",
            outcome.output
        );
    }

    #[tokio::test]
    async fn a_redirect_into_a_denied_network_is_never_connected() {
        let forbidden = serve_on("127.0.0.2", |_| Script::Reply(ok("secret"))).await;
        let target = format!("http://{}/latest/meta-data/", forbidden.addr);
        let server = serve(move |_| Script::Reply(redirect(&target))).await;
        let deny: DenyList = "127.0.0.2/32".parse().unwrap();
        let outcome = run_with(deny, json!({"url": format!("http://{}/", server.addr)})).await;
        assert_eq!(outcome.status, Status::Unknown, "{outcome:?}");
        assert!(outcome.output.contains("127.0.0.2/32"), "{}", outcome.output);
        assert_eq!(forbidden.connections.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_name_resolving_into_a_denied_network_is_never_connected() {
        let server = serve(|_| Script::Reply(ok("secret"))).await;
        let deny: DenyList = "127.0.0.0/8,::1/128".parse().unwrap();
        let outcome = run_with(deny, json!({"url": format!("http://localhost:{}/", server.addr.port())})).await;
        assert_eq!(outcome.status, Status::Unknown, "{outcome:?}");
        assert!(outcome.output.contains("denied network"), "{}", outcome.output);
        assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    }

    /// An HTTPS server for `names` answering every request with 200 "secure".
    async fn serve_https(
        leaf: &crate::test_pki::Leaf,
        chain_extra: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> std::net::SocketAddr {
        let mut chain = vec![leaf.cert.clone()];
        chain.extend(chain_extra);
        let config = crate::test_pki::server_config(chain, leaf.key.clone_key());
        crate::test_pki::serve_tls_with(config, |mut stream| async move {
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(ok("secure").as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await
    }

    #[tokio::test]
    async fn https_is_verified_against_the_ca_file_and_timed() {
        use crate::test_pki::{Authority, Validity};
        let ca = Authority::root("picket test CA");
        let leaf = ca.leaf(&["web.test"], Validity::days(-1, 30));
        let addr = serve_https(&leaf, vec![]).await;
        let ca_file = ca.ca_file();
        let by_ip = format!("https://127.0.0.1:{}/", addr.port());
        let outcome = run(json!({"url": by_ip, "ca_file": ca_file.path()})).await;
        assert_eq!(outcome.status, Status::Critical, "the certificate is for web.test, not 127.0.0.1: {outcome:?}");
        assert!(outcome.output.starts_with("hostname mismatch: 127.0.0.1 is not among"), "{}", outcome.output);

        let ip_leaf = ca.leaf(&["127.0.0.1"], Validity::days(-1, 30));
        let ip_addr = serve_https(&ip_leaf, vec![]).await;
        let outcome = run(json!({"url": format!("https://127.0.0.1:{}/", ip_addr.port()), "ca_file": ca_file.path(), "expect": {"body_contains": "secure"}})).await;
        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        assert!(outcome.metrics.contains_key("tls"), "{:?}", outcome.metrics);
        let days = outcome.metrics["cert_days_left"];
        assert!((29.0..=30.0).contains(&days), "cert_days_left {days}");
        let in_30_days = (chrono::Utc::now() + chrono::TimeDelta::days(30)).timestamp() as f64;
        let leaf_at = outcome.metrics[result_keys::LEAF_NOT_AFTER];
        assert!((leaf_at - in_30_days).abs() < 120.0, "leaf not_after {leaf_at}");
        assert_eq!(outcome.metrics[result_keys::CHAIN_NOT_AFTER], leaf_at, "no intermediate: the chain is the leaf");
    }

    #[tokio::test]
    async fn https_reports_the_earliest_expiry_of_the_served_chain() {
        use crate::test_pki::{Authority, Validity};
        let ca = Authority::root("picket test CA");
        let intermediate = ca.intermediate("picket test intermediate", Validity::days(-10, 12));
        let leaf = intermediate.leaf(&["127.0.0.1"], Validity::days(-1, 60));
        let addr = serve_https(&leaf, vec![intermediate.cert.clone()]).await;
        let ca_file = ca.ca_file();
        let outcome =
            run(json!({"url": format!("https://127.0.0.1:{}/", addr.port()), "ca_file": ca_file.path()})).await;
        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        let now = chrono::Utc::now().timestamp() as f64;
        let (leaf_at, chain_at) =
            (outcome.metrics[result_keys::LEAF_NOT_AFTER], outcome.metrics[result_keys::CHAIN_NOT_AFTER]);
        assert!((leaf_at - now - 60.0 * 86_400.0).abs() < 120.0, "leaf not_after {leaf_at}");
        assert!((chain_at - now - 12.0 * 86_400.0).abs() < 120.0, "chain not_after {chain_at}");
    }

    #[tokio::test]
    async fn an_untrusted_certificate_fails_unless_verification_is_off() {
        use crate::test_pki::{Leaf, Validity};
        let leaf = Leaf::self_signed(&["127.0.0.1"], Validity::days(-1, 30));
        let addr = serve_https(&leaf, vec![]).await;
        let url = format!("https://127.0.0.1:{}/", addr.port());
        let verified = run(json!({"url": url})).await;
        assert_eq!(verified.status, Status::Critical);
        assert!(verified.output.contains("is not trusted: self-signed certificate"), "{}", verified.output);
        let unverified = run(json!({"url": url, "tls_verify": false})).await;
        assert_eq!(unverified.status, Status::Ok, "{unverified:?}");
    }

    /// The header names of one recorded request, lowercased, and its request line.
    fn header_names(request: &str) -> (String, Vec<String>) {
        let mut lines = request.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let names = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
            .collect();
        (line, names)
    }

    #[tokio::test]
    async fn a_secret_not_allowed_is_unknown_and_never_sent() {
        let server = serve(|_| Script::Reply(ok("x"))).await;
        let outcome =
            run(json!({"url": format!("http://{}/", server.addr), "headers": {"X-Leak": {"env": "PICKET_AMQP_URL"}}}))
                .await;
        assert_eq!(outcome.status, Status::Unknown);
        assert_eq!(
            outcome.output,
            r#"header X-Leak: secret {"env":"PICKET_AMQP_URL"} is not allowed (PICKET_CHECK_SECRETS)"#
        );
        let other = run(
            json!({"url": format!("http://{}/", server.addr), "headers": {"Authorization": {"file": "/etc/hostname"}}}),
        )
        .await;
        assert_eq!(other.status, Status::Unknown);
        assert!(other.output.contains("is not allowed (PICKET_CHECK_SECRETS_DIR is not set)"), "{}", other.output);
        assert_eq!(server.connections.load(Ordering::SeqCst), 0, "the receiver saw no request at all");
    }

    #[tokio::test]
    async fn secret_and_credential_headers_stay_with_the_origin() {
        let home = std::env::var("HOME").expect("HOME is set");
        let foreign = serve(|_| Script::Reply(ok("landed"))).await;
        let landing = format!("http://{}/landing", foreign.addr);
        let origin = serve(move |path| match path {
            "/start" => Script::Reply(redirect("/again")),
            _ => Script::Reply(redirect(&landing)),
        })
        .await;
        let secrets = crate::CheckSecrets::new(["HOME".to_owned()], None).unwrap();
        let executor = Executor::new(DenyList::default()).unwrap().with_secrets(secrets);
        let definition = check(json!({
            "url": format!("http://{}/start", origin.addr),
            "headers": {
                "Authorization": {"env": "HOME"},
                "X-Status-Key": {"env": "HOME"},
                "Cookie": "session=1",
                "Proxy-Authorization": "Basic eDp5",
                "X-Plain": "visible",
            },
        }));
        let outcome = executor.run(&definition).await;
        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        assert_eq!(outcome.metrics["redirects"], 2.0);

        let sent = origin.requests();
        assert_eq!(sent.len(), 2, "both hops on the origin");
        for request in &sent {
            let (_, names) = header_names(request);
            for name in ["authorization", "x-status-key", "cookie", "proxy-authorization", "x-plain"] {
                assert!(names.contains(&name.to_owned()), "{name} reaches the origin: {request}");
            }
            assert!(request.contains(&format!("authorization: {home}\r\n")), "{request}");
        }
        let landed = foreign.requests();
        assert_eq!(landed.len(), 1);
        let (_, names) = header_names(&landed[0]);
        assert!(names.contains(&"x-plain".to_owned()), "{}", landed[0]);
        for name in ["authorization", "x-status-key", "cookie", "proxy-authorization"] {
            assert!(!names.contains(&name.to_owned()), "{name} must not leave the origin: {}", landed[0]);
        }
        assert!(!landed[0].contains(&home), "no secret value reaches another origin: {}", landed[0]);
    }

    #[tokio::test]
    async fn redirects_change_the_method_as_curl_does() {
        let server = serve(|path| match path {
            "/303" => Script::Reply(redirect("/done").replace("302 Found", "303 See Other")),
            "/302" => Script::Reply(redirect("/done")),
            "/307" => Script::Reply(redirect("/done").replace("302 Found", "307 Temporary Redirect")),
            _ => Script::Reply(ok("done")),
        })
        .await;
        let cases = [
            ("POST", "/303", "GET /done"),
            ("PUT", "/303", "GET /done"),
            ("HEAD", "/303", "HEAD /done"),
            ("POST", "/302", "GET /done"),
            ("PUT", "/302", "PUT /done"),
            ("POST", "/307", "POST /done"),
        ];
        for (method, path, expected) in cases {
            let before = server.requests().len();
            let mut fields = json!({"url": format!("http://{}{path}", server.addr), "method": method});
            if method != "HEAD" {
                fields["body"] = json!("payload");
            }
            let outcome = run(fields).await;
            assert_eq!(outcome.status, Status::Ok, "{method} {path}: {outcome:?}");
            let sent = server.requests();
            let (line, names) = header_names(&sent[before + 1]);
            assert!(line.starts_with(expected), "{method} {path}: {line}");
            let keeps_body = expected.starts_with(method) && method != "HEAD";
            assert_eq!(
                names.contains(&"content-length".to_owned()),
                keeps_body,
                "{method} {path}: {}",
                sent[before + 1]
            );
        }
    }

    #[tokio::test]
    async fn redirects_go_only_to_http_and_https() {
        let server = serve(|_| Script::Reply(redirect("ftp://files.example/x"))).await;
        let outcome = run(json!({"url": format!("http://{}/", server.addr)})).await;
        assert_eq!(outcome.status, Status::Critical);
        assert!(
            outcome
                .output
                .ends_with("redirect to ftp://files.example/x not followed: only http and https redirects are"),
            "{}",
            outcome.output
        );
    }
}
