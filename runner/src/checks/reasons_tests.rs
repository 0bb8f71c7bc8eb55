//! The reason of every failure kind, produced for real (loopback servers,
//! rcgen certificates, real DNS datagrams) and held as exact text in one
//! table, to be read as a whole: each is one plain sentence, names what was
//! expected and what was found, dates as ISO days with the days relative to
//! now, and no `Debug` output. Certificates are made relative to now, so
//! their days are known; a latency (`in 3ms`) is the one part that varies
//! and is written `in Nms`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use protocol::Status;
use protocol::definition::parse_check;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::words::date;
use crate::test_pki::{Authority, Leaf, Validity, serve_tls_with, server_config};
use crate::{DenyList, Executor};

/// The day `days` from now, as reasons write it.
fn day(days: i64) -> String {
    date(Utc::now() + chrono::Duration::days(days))
}

/// Replaces each `<digits>ms` after " in " with `Nms`.
fn steady(output: &str) -> String {
    let mut out = String::new();
    let mut rest = output;
    while let Some(at) = rest.find(" in ") {
        let (head, tail) = rest.split_at(at + 4);
        out.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with("ms") {
            out.push('N');
            rest = &tail[digits..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

async fn run(deny: &str, check: Value) -> (Status, String) {
    let mut base = json!({"name": "t", "interval": "10s", "timeout": "2s"});
    base.as_object_mut().unwrap().extend(check.as_object().unwrap().clone());
    let executor = Executor::new(deny.parse::<DenyList>().unwrap()).unwrap();
    let outcome = executor.run(&parse_check(base).unwrap()).await;
    (outcome.status, steady(&outcome.output))
}

/// A plain-TCP server that reads a request head, writes `reply` and closes.
async fn http_server(reply: impl Fn(&str) -> String + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let Some(head) = crate::test_pki::read_head(&mut socket).await else { return };
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let text = reply(&path);
                if text == "stall" {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                let _ = socket.write_all(text.as_bytes()).await;
            });
        }
    });
    addr
}

fn response(status: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

/// A server that answers anything, a ClientHello too, with an HTTP error.
async fn not_tls_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(response("400 Bad Request", "not tls").as_bytes()).await;
        }
    });
    addr
}

/// An HTTPS (or bare TLS) server answering every request with 200 "ok".
async fn https_server(config: Arc<ServerConfig>) -> SocketAddr {
    serve_tls_with(config, |mut stream| async move {
        let mut buf = [0u8; 2048];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(response("200 OK", "ok").as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await
}

async fn serve_leaf(leaf: &Leaf, extra: Vec<CertificateDer<'static>>) -> SocketAddr {
    let mut chain = vec![leaf.cert.clone()];
    chain.extend(extra);
    https_server(server_config(chain, leaf.key.clone_key())).await
}

/// A server that insists on a client certificate issued by `ca`, speaking
/// only `versions`.
async fn client_auth_server(
    ca: &Authority,
    leaf: &Leaf,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
        .unwrap();
    https_server(Arc::new(config)).await
}

/// A server that answers any ClientHello with a TLS 1.0 ServerHello, as a
/// server that offers nothing newer does.
async fn tls10_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x01];
                hello.extend([7u8; 32]);
                hello.extend([0x00, 0x00, 0x2f, 0x00]);
                let _ = socket.write_all(&hello).await;
                let _ = socket.read(&mut buf).await;
            });
        }
    });
    addr
}

/// The leaf with its signature algorithm rewritten from ecdsa-with-SHA256
/// to ecdsa-with-SHA512, which picket's verifier does not support for a
/// P-256 key.
fn with_unsupported_signature(leaf: &Leaf) -> CertificateDer<'static> {
    const SHA256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    let mut der = leaf.cert.to_vec();
    let mut replaced = 0;
    let mut at = 0;
    while let Some(found) = der[at..].windows(SHA256.len()).position(|w| w == SHA256) {
        der[at + found + SHA256.len() - 1] = 0x04;
        at += found + SHA256.len();
        replaced += 1;
    }
    assert_eq!(replaced, 2, "the algorithm appears in the TBS and around the signature");
    CertificateDer::from(der)
}

/// A nameserver on UDP 127.0.0.1 answering each query with `answer`.
async fn dns_server(answer: fn(&Message) -> Vec<u8>) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
            if let Ok(query) = Message::from_vec(&buf[..len]) {
                let _ = socket.send_to(&answer(&query), peer).await;
            }
        }
    });
    addr
}

fn rcode(code: ResponseCode) -> fn(&Message) -> Vec<u8> {
    match code {
        ResponseCode::NXDomain => |q| reply(q, ResponseCode::NXDomain),
        _ => |q| reply(q, ResponseCode::ServFail),
    }
}

fn reply(query: &Message, code: ResponseCode) -> Vec<u8> {
    let mut response = Message::response(query.id, OpCode::Query);
    response.add_query(query.queries[0].clone());
    response.metadata.response_code = code;
    response.to_vec().unwrap()
}

#[tokio::test]
async fn every_failure_reads_as_one_plain_sentence() {
    let ca = Authority::root("picket test CA");
    let ca_file = ca.ca_file();
    let ca_path = ca_file.path().to_str().unwrap().to_owned();
    let https = |addr: SocketAddr| format!("https://127.0.0.1:{}/", addr.port());
    let tls = |addr: SocketAddr, sni: &str| json!({"type": "tls", "host": "127.0.0.1", "port": addr.port(), "sni": sni, "ca_file": ca_path});

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let web = http_server(|path| match path {
        "/error" => response("500 Internal Server Error", "oops"),
        "/loop-a" => "HTTP/1.1 302 Found\r\nLocation: /loop-b\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "/loop-b" => "HTTP/1.1 302 Found\r\nLocation: /loop-a\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "/big" => response("200 OK", &"x".repeat(4096)),
        "/hop-1" => "HTTP/1.1 302 Found\r\nLocation: /hop-2\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "/hop-2" => "HTTP/1.1 302 Found\r\nLocation: /hop-3\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "/slow" => "stall".to_owned(),
        _ => response("200 OK", "all good"),
    })
    .await;
    let expired = ca.leaf(&["127.0.0.1"], Validity::days(-100, -3));
    let expired = serve_leaf(&expired, vec![]).await;
    let future = ca.leaf(&["127.0.0.1"], Validity::days(10, 100));
    let future = serve_leaf(&future, vec![]).await;
    let other_name = ca.leaf(&["web.test"], Validity::days(-1, 90));
    let other_name = serve_leaf(&other_name, vec![]).await;
    let self_signed = Leaf::self_signed(&["127.0.0.1"], Validity::days(-1, 90));
    let self_signed = serve_leaf(&self_signed, vec![]).await;
    let odd = ca.leaf(&["127.0.0.1", "odd.test"], Validity::days(-1, 90));
    let odd = https_server(server_config(vec![with_unsupported_signature(&odd)], odd.key.clone_key())).await;
    let good = ca.leaf(&["127.0.0.1", "mtls.test"], Validity::days(-1, 90));
    let mtls13 = client_auth_server(&ca, &good, &[&rustls::version::TLS13]).await;
    let mtls12 = client_auth_server(&ca, &good, &[&rustls::version::TLS12]).await;
    let old = tls10_server().await;
    let plain = not_tls_server().await;
    let nx = dns_server(rcode(ResponseCode::NXDomain)).await;
    let servfail = dns_server(rcode(ResponseCode::ServFail)).await;
    let garbage = dns_server(|_| b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()).await;
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let dns = |server: SocketAddr| json!({"type": "dns", "query": "www.test", "record": "A", "nameserver": server.to_string(), "attempts": 1});

    let http = |path: &str| format!("http://{web}{path}");
    let table: Vec<(&str, &str, Value, Status, String)> = vec![
        ("http refused", "", json!({"type": "http", "url": format!("http://{closed}/")}), Status::Critical,
            format!("cannot connect to {closed}: connection refused")),
        ("http timeout", "", json!({"type": "http", "url": http("/slow"), "timeout": "300ms"}), Status::Critical,
            "timed out after 300ms waiting for the response".to_owned()),
        ("http status", "", json!({"type": "http", "url": http("/error")}), Status::Critical,
            "HTTP 500 (expected 2xx) (HTTP 500 in Nms)".to_owned()),
        ("http body regex", "", json!({"type": "http", "url": http("/"), "expect": {"body_regex": "^ok$"}}),
            Status::Critical, "body does not match /^ok$/ (HTTP 200 in Nms)".to_owned()),
        ("http body too large", "", json!({"type": "http", "url": http("/big"), "body_limit": 1024, "expect": {"body_contains": "y"}}),
            Status::Critical,
            "body does not contain \"y\" (in the first 1024 bytes read) (HTTP 200 in Nms, body cut at the 1024 byte read limit)".to_owned()),
        ("http redirect loop", "", json!({"type": "http", "url": http("/loop-a")}), Status::Critical,
            format!("after 2 redirects, {}: redirect loop: {} -> {} -> {}", http("/loop-a"), http("/loop-a"), http("/loop-b"), http("/loop-a"))),
        ("http too many redirects", "", json!({"type": "http", "url": http("/hop-1"), "follow_redirects": 1}), Status::Critical,
            format!("after 2 redirects, {}: more redirects than follow_redirects 1 allows", http("/hop-3"))),
        ("http denied", "127.0.0.0/8", json!({"type": "http", "url": http("/")}), Status::Unknown,
            "127.0.0.1 is in denied network 127.0.0.0/8 (PICKET_DENY_CIDRS)".to_owned()),
        ("http secret refused", "", json!({"type": "http", "url": http("/"), "headers": {"X-Token": {"env": "PICKET_AMQP_URL"}}}),
            Status::Unknown, r#"header X-Token: secret {"env":"PICKET_AMQP_URL"} is not allowed (PICKET_CHECK_SECRETS)"#.to_owned()),
        ("https expired", "", json!({"type": "http", "url": https(expired), "ca_file": ca_path}), Status::Critical,
            format!("certificate for 127.0.0.1 expired {} (3 days ago); issuer CN=picket test CA", day(-3))),
        ("https not yet valid", "", json!({"type": "http", "url": https(future), "ca_file": ca_path}), Status::Critical,
            format!("certificate for 127.0.0.1 is not valid until {} (in 10 days); issuer CN=picket test CA", day(10))),
        ("https name mismatch", "", json!({"type": "http", "url": https(other_name), "ca_file": ca_path}), Status::Critical,
            "hostname mismatch: 127.0.0.1 is not among the certificate's names (web.test); issuer CN=picket test CA".to_owned()),
        ("https self-signed", "", json!({"type": "http", "url": https(self_signed)}), Status::Critical,
            "certificate for 127.0.0.1 is not trusted: self-signed certificate; issuer CN=127.0.0.1".to_owned()),
        ("https unsupported signature", "", json!({"type": "http", "url": https(odd), "ca_file": ca_path}), Status::Critical,
            "certificate for 127.0.0.1 is not trusted: a certificate is signed with an algorithm picket does not support; issuer CN=picket test CA".to_owned()),
        ("https client certificate", "", json!({"type": "http", "url": https(mtls13), "ca_file": ca_path}), Status::Critical,
            "the TLS connection failed: the server requires a client certificate".to_owned()),
        ("https TLS 1.0", "", json!({"type": "http", "url": https(old)}), Status::Critical,
            format!("TLS handshake with 127.0.0.1:{} failed: the server offers only TLS 1.1 or older; picket needs TLS 1.2 or later", old.port())),
        ("tls expired", "", tls(expired, "127.0.0.1"), Status::Critical,
            format!("certificate for 127.0.0.1 expired {} (3 days ago); issuer CN=picket test CA", day(-3))),
        ("tls unsupported signature", "", tls(odd, "odd.test"), Status::Critical,
            "certificate for odd.test is not trusted: a certificate is signed with an algorithm picket does not support; issuer CN=picket test CA".to_owned()),
        ("tls client certificate (TLS 1.2)", "", tls(mtls12, "mtls.test"), Status::Critical,
            format!("TLS handshake with {mtls12} failed: the server requires a client certificate")),
        ("tls TLS 1.0", "", tls(old, "old.test"), Status::Critical,
            format!("TLS handshake with {old} failed: the server offers only TLS 1.1 or older; picket needs TLS 1.2 or later")),
        ("tls not TLS", "", tls(plain, "web.test"), Status::Critical,
            format!("TLS handshake with {plain} failed: the server does not speak TLS (its answer is not a TLS handshake)")),
        ("tls refused", "", tls(closed, "closed.test"), Status::Critical,
            format!("cannot connect to {closed}: connection refused")),
        ("dns nxdomain", "", dns(nx), Status::Critical,
            format!("NXDOMAIN for www.test A from {nx} (expected NOERROR)")),
        ("dns servfail", "", dns(servfail), Status::Critical,
            format!("SERVFAIL for www.test A from {servfail} (expected NOERROR)")),
        ("dns garbage", "", dns(garbage), Status::Critical,
            format!("{garbage} answered 28 bytes that are not a DNS response (1 attempt)")),
        ("dns refused over tcp", "", json!({"type": "dns", "query": "www.test", "record": "A", "nameserver": closed.to_string(), "attempts": 1, "protocol": "tcp"}),
            Status::Critical, format!("no answer from {closed} (1 attempt): connection refused")),
        ("dns silent", "", json!({"type": "dns", "query": "www.test", "record": "A", "nameserver": silent_addr.to_string(), "attempts": 1, "timeout": "500ms"}),
            Status::Critical, format!("no answer from {silent_addr} within 450ms (1 attempt)")),
    ];
    let mut wrong = Vec::new();
    for (kind, deny, check, status, expected) in table {
        let found = run(deny, check).await;
        if found != (status, expected.clone()) {
            wrong.push(format!("{kind}:\n  expected {status:?} {expected}\n     found {:?} {}", found.0, found.1));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
