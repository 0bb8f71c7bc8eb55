//! The `dns` check: one query to a nameserver, judged by the response code,
//! the answer set and the latency.
//!
//! Queries go through hickory's low-level UDP and TCP client streams
//! (hickory-net 0.26, re-exported by hickory-resolver) rather than its
//! resolver: the resolver turns SERVFAIL and REFUSED into errors after
//! retrying other servers, follows a truncated answer to TCP without saying
//! so, and retries on its own schedule, while this check must report the
//! response code the server sent, which transport answered, and spend exactly
//! `attempts` tries. Nothing is cached: every run is a real query.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::xfer::FirstAnswer;
use hickory_resolver::net::{DnsHandle, NetError};
use hickory_resolver::proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{self, Name, RData};
use hickory_resolver::system_conf::read_system_conf;
use protocol::HumanDuration;
use protocol::Status;
use protocol::definition::dns::{DnsProtocol, DnsSpec, Rcode, RecordType};
use serde_json::json;
use tokio::net::UdpSocket;

use crate::deny::DenyList;
use crate::executor::{Executor, ExecutorError};
use crate::outcome::{CheckOutcome, Progress, latency_status, ms};

/// What every `dns` run shares, built once per runner: the system's
/// nameservers (read from `/etc/resolv.conf` at start) and the runtime
/// handle that owns the background tasks of TCP exchanges. UDP queries open
/// a fresh socket on a random port each time, so there is nothing else
/// worth keeping per nameserver.
pub(crate) struct DnsClient {
    system_nameservers: Vec<SocketAddr>,
    runtime: TokioRuntimeProvider,
}

impl DnsClient {
    pub(crate) fn new() -> Result<Self, ExecutorError> {
        let (config, _) = read_system_conf().map_err(|e| ExecutorError::Resolver(e.to_string()))?;
        let mut system_nameservers: Vec<SocketAddr> = Vec::new();
        for server in &config.name_servers {
            let port = server.connections.first().map_or(53, |c| c.port);
            let addr = SocketAddr::new(server.ip, port);
            if !system_nameservers.contains(&addr) {
                system_nameservers.push(addr);
            }
        }
        Ok(Self { system_nameservers, runtime: TokioRuntimeProvider::default() })
    }

    /// The servers to ask, tried in turn by successive attempts: the check's
    /// own nameserver, refused when it lies in a denied network (it is chosen
    /// by a definition, the system's are chosen by whoever runs the runner).
    fn nameservers(&self, spec: &DnsSpec, deny: &DenyList) -> Result<Vec<SocketAddr>, CheckOutcome> {
        match spec.nameserver {
            Some(ns) => match deny.denies(ns.0.ip()) {
                Some(net) => Err(CheckOutcome::unknown(format!(
                    "nameserver {ns} is in denied network {net} (PICKET_DENY_CIDRS)"
                ))),
                None => Ok(vec![ns.0]),
            },
            None if self.system_nameservers.is_empty() => {
                Err(CheckOutcome::unknown("no nameserver in the system DNS configuration"))
            }
            None => Ok(self.system_nameservers.clone()),
        }
    }

    /// Up to `attempts` tries, each bounded by its share of `budget`; the
    /// first response of any kind ends the lookup.
    async fn lookup(
        &self,
        nameservers: &[SocketAddr],
        query: &Query,
        protocol: DnsProtocol,
        attempts: u8,
        budget: Duration,
    ) -> Result<Answered, NoAnswer> {
        let limit = budget / u32::from(attempts);
        let mut last_error = None;
        for attempt in 0..attempts {
            let nameserver = nameservers[usize::from(attempt) % nameservers.len()];
            match self.attempt(nameserver, query, protocol, limit).await {
                Ok(reply) => {
                    return Ok(Answered { nameserver, reply, attempts: attempt + 1 });
                }
                Err(AttemptError::Timeout) => {}
                Err(AttemptError::Unparseable(len)) => {
                    let what =
                        if len > 0 { format!("{len} bytes that are not") } else { "something that is not".to_owned() };
                    last_error = Some(Unanswered::Garbage(format!("{nameserver} answered {what} a DNS response")));
                }
                Err(AttemptError::Failed(reason)) => last_error = Some(Unanswered::Failed(reason)),
            }
        }
        let tried = nameservers.iter().take(usize::from(attempts)).copied().collect();
        Err(NoAnswer { nameservers: tried, budget, attempts, last_error })
    }

    /// One try: over UDP, retried over TCP when the answer is truncated, or
    /// over TCP only; the whole of it within `limit`.
    async fn attempt(
        &self,
        nameserver: SocketAddr,
        query: &Query,
        protocol: DnsProtocol,
        limit: Duration,
    ) -> Result<Reply, AttemptError> {
        let exchange = async {
            if protocol == DnsProtocol::Tcp {
                let response = self.tcp(nameserver, query, limit).await?;
                return Ok(Reply { response, transport: Transport::Tcp });
            }
            let response = self.udp(nameserver, query).await?;
            if !response.truncation {
                return Ok(Reply { response, transport: Transport::Udp });
            }
            match self.tcp(nameserver, query, limit).await {
                Ok(response) => Ok(Reply { response, transport: Transport::TcpAfterTruncation }),
                Err(e) => Err(match AttemptError::from(e) {
                    AttemptError::Failed(reason) => {
                        AttemptError::Failed(format!("TCP retry of a truncated UDP answer failed: {reason}"))
                    }
                    timeout => timeout,
                }),
            }
        };
        tokio::time::timeout(limit, exchange).await.unwrap_or(Err(AttemptError::Timeout))
    }

    /// A single datagram, no retransmission: retries are the check's
    /// attempts. Sent from a fresh socket on an OS-chosen port, connected to
    /// the nameserver so only its datagrams arrive. The first datagram
    /// carrying this query's id is the answer; one that is not a DNS
    /// response at all ends the attempt as `Unparseable`, so a server
    /// answering garbage is told from a silent one (hickory's stream drops
    /// such datagrams and waits on).
    async fn udp(&self, nameserver: SocketAddr, query: &Query) -> Result<DnsResponse, AttemptError> {
        let mut request = request(query);
        let mut id = [0u8; 2];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| AttemptError::Failed("no random query id".to_owned()))?;
        request.metadata.id = u16::from_be_bytes(id);
        let bytes = request.to_vec().map_err(|e| AttemptError::Failed(e.to_string()))?;
        let local: SocketAddr =
            if nameserver.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
        let socket = UdpSocket::bind(local).await.map_err(AttemptError::io)?;
        socket.connect(nameserver).await.map_err(AttemptError::io)?;
        socket.send(&bytes).await.map_err(AttemptError::io)?;
        let mut buffer = vec![0u8; usize::from(u16::MAX)];
        loop {
            let len = socket.recv(&mut buffer).await.map_err(AttemptError::io)?;
            let datagram = &buffer[..len];
            if datagram.get(..2) == Some(&id[..]) || len < 12 {
                return DnsResponse::from_buffer(datagram.to_vec()).map_err(|_| AttemptError::Unparseable(len));
            }
            // Another id: a late answer to an earlier query, or garbage.
            if Message::from_vec(datagram).is_err() {
                return Err(AttemptError::Unparseable(len));
            }
        }
    }

    /// A fresh connection per query, so its setup is part of the latency and
    /// no idle connection is kept to thousands of servers.
    async fn tcp(&self, nameserver: SocketAddr, query: &Query, limit: Duration) -> Result<DnsResponse, NetError> {
        let exchange = TcpClientStream::exchange(nameserver, None, limit, None, self.runtime.clone()).await?;
        exchange.send(request(query)).first_answer().await
    }
}

fn request(query: &Query) -> DnsRequest {
    DnsRequest::from_query(query.clone(), DnsRequestOptions::default())
}

/// Which transport carried the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
    /// UDP answered with TC set and the query was repeated over TCP.
    TcpAfterTruncation,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp | Self::TcpAfterTruncation => "tcp",
        }
    }
}

struct Reply {
    response: DnsResponse,
    transport: Transport,
}

struct Answered {
    nameserver: SocketAddr,
    reply: Reply,
    attempts: u8,
}

enum AttemptError {
    Timeout,
    /// The nameserver answered this many bytes that are not a DNS response.
    Unparseable(usize),
    Failed(String),
}

impl AttemptError {
    fn io(error: std::io::Error) -> Self {
        Self::Failed(super::words::socket_error(&error))
    }
}

impl From<NetError> for AttemptError {
    fn from(error: NetError) -> Self {
        match error {
            NetError::Timeout => Self::Timeout,
            NetError::Io(io) => Self::Failed(super::words::socket_error(&io)),
            NetError::Proto(_) => Self::Unparseable(0),
            other => Self::Failed(other.to_string()),
        }
    }
}

/// Every attempt went unanswered.
struct NoAnswer {
    nameservers: Vec<SocketAddr>,
    budget: Duration,
    attempts: u8,
    last_error: Option<Unanswered>,
}

/// How the last attempt that did not just time out ended.
enum Unanswered {
    /// A datagram came back that is not a DNS response: the sentence saying so.
    Garbage(String),
    /// The exchange failed (refused, reset).
    Failed(String),
}

impl NoAnswer {
    fn outcome(self, elapsed: Duration) -> CheckOutcome {
        let servers: Vec<String> = self.nameservers.iter().map(ToString::to_string).collect();
        let servers = servers.join(", ");
        let attempts = if self.attempts == 1 { "1 attempt".to_owned() } else { format!("{} attempts", self.attempts) };
        let output = match &self.last_error {
            Some(Unanswered::Garbage(reason)) => format!("{reason} ({attempts})"),
            Some(Unanswered::Failed(reason)) => format!("no answer from {servers} ({attempts}): {reason}"),
            None => format!("no answer from {servers} within {} ({attempts})", HumanDuration::from(self.budget)),
        };
        CheckOutcome::critical(output)
            .with_metrics([("query".to_owned(), ms(elapsed))].into())
            .with_details(json!({ "nameservers": servers, "attempts": self.attempts }))
    }
}

/// The share of the check's timeout given to the lookup: all but a tenth (at
/// most 250ms), so that a silent server is reported by this check, naming
/// the nameserver and the attempts, before the executor's hard timeout cuts
/// the run with a bare "timed out".
fn lookup_budget(timeout: Duration) -> Duration {
    timeout - (timeout / 10).min(Duration::from_millis(250))
}

pub async fn run(executor: &Executor, spec: &DnsSpec, timeout: Duration, progress: &Progress) -> CheckOutcome {
    let name = match Name::from_str(&spec.query) {
        Ok(mut name) => {
            name.set_fqdn(true);
            name
        }
        Err(e) => return CheckOutcome::unknown(format!("{:?} is not a DNS name: {e}", spec.query)),
    };
    let nameservers = match executor.dns.nameservers(spec, &executor.deny) {
        Ok(nameservers) => nameservers,
        Err(outcome) => return outcome,
    };
    let query = Query::query(name, hickory_type(spec.record));

    progress.phase("query");
    let started = Instant::now();
    let looked_up =
        executor.dns.lookup(&nameservers, &query, spec.protocol, spec.attempts(), lookup_budget(timeout)).await;
    let elapsed = started.elapsed();
    progress.metric("query", ms(elapsed));
    match looked_up {
        Ok(answered) => judge(spec, answered, elapsed),
        Err(no_answer) => no_answer.outcome(elapsed),
    }
}

/// The outcome of a response: its rcode, then its answers, then its latency.
fn judge(spec: &DnsSpec, answered: Answered, elapsed: Duration) -> CheckOutcome {
    let Answered { nameserver, reply, attempts } = answered;
    let wanted = hickory_type(spec.record);
    let records: Vec<&rr::Record> = reply.response.answers.iter().filter(|r| r.record_type() == wanted).collect();
    let answers: Vec<String> = records.iter().map(|r| render(&r.data)).collect();
    let rcode = reply.response.response_code;
    let rcode_text = rcode_name(rcode);
    let what = format!("{} {}", spec.record.as_str(), spec.query);

    let metrics = [
        ("query".to_owned(), ms(elapsed)),
        ("answers".to_owned(), answers.len() as f64),
        ("rcode".to_owned(), f64::from(u16::from(rcode))),
    ]
    .into();
    let details = json!({
        "nameserver": nameserver.to_string(),
        "protocol": reply.transport.as_str(),
        "tcp_fallback": reply.transport == Transport::TcpAfterTruncation,
        "attempts": attempts,
        "rcode": rcode_text,
        "answers": answers,
        "min_ttl": records.iter().map(|r| r.ttl).min(),
    });

    let expected = spec.expect.rcode;
    let (status, output) = if u16::from(rcode) != rcode_number(expected) {
        let output = format!(
            "{rcode_text} for {} {} from {nameserver} (expected {})",
            spec.query,
            spec.record.as_str(),
            expected.as_str()
        );
        (Status::Critical, output)
    } else if let Some(reason) = spec.expect.answers.as_ref().and_then(|m| m.mismatch(&answers)) {
        (Status::Critical, format!("{what}: {reason}"))
    } else {
        match latency_status(elapsed, spec.expect.latency()) {
            (status, Some(reason)) => (status, format!("{what}: {reason}")),
            (status, None) => (status, ok_line(&what, &rcode_text, &answers, elapsed)),
        }
    };
    CheckOutcome::new(status, output).with_metrics(metrics).with_details(details)
}

/// `A example.test: 10.0.0.1, 10.0.0.2 in 3ms`, or the rcode when nothing was answered.
fn ok_line(what: &str, rcode: &str, answers: &[String], elapsed: Duration) -> String {
    let found = if answers.is_empty() { format!("{rcode}, no answers") } else { answers.join(", ") };
    format!("{what}: {found} in {:.0}ms", ms(elapsed))
}

/// The text of one answer, the form `expect.answers` is written against:
///
/// - A, AAAA: the address (`10.0.0.1`, `2001:db8::1`);
/// - CNAME, NS, PTR: the name without its trailing dot (`www.example.com`);
/// - MX: `preference exchange` (`10 mail.example.com`);
/// - TXT: the character-strings concatenated, unquoted (`v=spf1 -all`);
/// - SRV: `priority weight port target` (`10 5 5060 sip.example.com`);
/// - SOA: `mname rname serial refresh retry expire minimum`
///   (`ns1.example.com hostmaster.example.com 2024010101 7200 3600 1209600 300`);
/// - CAA: the presentation form, `flags tag "value"` (`0 issue "letsencrypt.org"`).
///
/// Names keep the case the server sent and never end with a dot.
fn render(data: &RData) -> String {
    match data {
        RData::A(a) => a.to_string(),
        RData::AAAA(aaaa) => aaaa.to_string(),
        RData::CNAME(name) => bare(&name.0),
        RData::NS(name) => bare(&name.0),
        RData::PTR(name) => bare(&name.0),
        RData::MX(mx) => format!("{} {}", mx.preference, bare(&mx.exchange)),
        RData::TXT(txt) => txt.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect(),
        RData::SRV(srv) => {
            format!("{} {} {} {}", srv.priority, srv.weight, srv.port, bare(&srv.target))
        }
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            bare(&soa.mname),
            bare(&soa.rname),
            soa.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum
        ),
        other => other.to_string(),
    }
}

/// A name in presentation form without the root's trailing dot (the root itself stays `.`).
fn bare(name: &Name) -> String {
    let text = name.to_string();
    match text.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => text,
    }
}

fn hickory_type(record: RecordType) -> rr::RecordType {
    match record {
        RecordType::A => rr::RecordType::A,
        RecordType::Aaaa => rr::RecordType::AAAA,
        RecordType::Cname => rr::RecordType::CNAME,
        RecordType::Mx => rr::RecordType::MX,
        RecordType::Txt => rr::RecordType::TXT,
        RecordType::Ns => rr::RecordType::NS,
        RecordType::Soa => rr::RecordType::SOA,
        RecordType::Srv => rr::RecordType::SRV,
        RecordType::Caa => rr::RecordType::CAA,
        RecordType::Ptr => rr::RecordType::PTR,
    }
}

fn rcode_number(rcode: Rcode) -> u16 {
    match rcode {
        Rcode::Noerror => 0,
        Rcode::Formerr => 1,
        Rcode::Servfail => 2,
        Rcode::Nxdomain => 3,
        Rcode::Notimp => 4,
        Rcode::Refused => 5,
    }
}

/// The mnemonic of a response code (hickory's `Display` is a description).
pub(crate) fn rcode_name(rcode: ResponseCode) -> String {
    let name = match u16::from(rcode) {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        n => return format!("RCODE{n}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hickory_resolver::proto::op::{Message, OpCode};
    use hickory_resolver::proto::rr::Record;
    use hickory_resolver::proto::rr::rdata::{A, AAAA, CAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream, UdpSocket};

    use super::*;

    /// How long `slow.test` waits before answering.
    const SLOW: Duration = Duration::from_millis(50);

    /// A nameserver on 127.0.0.1 (UDP and TCP on one port) answering from a
    /// fixed table, counting the queries each transport carried.
    struct TestServer {
        addr: SocketAddr,
        udp_queries: Arc<AtomicUsize>,
        tcp_queries: Arc<AtomicUsize>,
    }

    impl TestServer {
        async fn start() -> Self {
            let (tcp, udp) = loop {
                let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
                if let Ok(udp) = UdpSocket::bind(tcp.local_addr().unwrap()).await {
                    break (tcp, Arc::new(udp));
                }
            };
            let server =
                Self { addr: tcp.local_addr().unwrap(), udp_queries: Arc::default(), tcp_queries: Arc::default() };
            let udp_queries = server.udp_queries.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                loop {
                    let (len, peer) = udp.recv_from(&mut buf).await.unwrap();
                    udp_queries.fetch_add(1, Ordering::SeqCst);
                    let request = Message::from_vec(&buf[..len]).unwrap();
                    let socket = udp.clone();
                    tokio::spawn(async move {
                        if let Some(response) = respond(&request, false).await {
                            socket.send_to(&response.to_vec().unwrap(), peer).await.unwrap();
                        }
                    });
                }
            });
            let tcp_queries = server.tcp_queries.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = tcp.accept().await.unwrap();
                    tokio::spawn(serve_tcp(stream, tcp_queries.clone()));
                }
            });
            server
        }

        fn spec(&self, fields: Value) -> DnsSpec {
            let mut fields = fields;
            fields["nameserver"] = Value::String(self.addr.to_string());
            serde_json::from_value(fields).unwrap()
        }
    }

    async fn serve_tcp(mut stream: TcpStream, queries: Arc<AtomicUsize>) {
        loop {
            let Ok(len) = stream.read_u16().await else {
                return;
            };
            let mut buf = vec![0; usize::from(len)];
            stream.read_exact(&mut buf).await.unwrap();
            queries.fetch_add(1, Ordering::SeqCst);
            let request = Message::from_vec(&buf).unwrap();
            if let Some(response) = respond(&request, true).await {
                let bytes = response.to_vec().unwrap();
                stream.write_u16(u16::try_from(bytes.len()).unwrap()).await.unwrap();
                stream.write_all(&bytes).await.unwrap();
            }
        }
    }

    /// The zone: the response to `request`, or `None` to stay silent.
    async fn respond(request: &Message, over_tcp: bool) -> Option<Message> {
        let query = request.queries.first()?.clone();
        let mut response = Message::response(request.id, OpCode::Query);
        response.add_query(query.clone());
        let record = |ttl, data| Record::from_rdata(query.name().clone(), ttl, data);
        let name = |text: &str| Name::from_ascii(text).unwrap();
        match (query.name().to_string().as_str(), query.query_type()) {
            ("two.test.", rr::RecordType::A) => {
                response.add_answer(record(300, RData::A(A(Ipv4Addr::new(10, 0, 0, 1)))));
                response.add_answer(record(60, RData::A(A(Ipv4Addr::new(10, 0, 0, 2)))));
            }
            ("v6.test.", rr::RecordType::AAAA) => {
                response.add_answer(record(300, RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)))));
            }
            ("mail.test.", rr::RecordType::MX) => {
                response.add_answer(record(300, RData::MX(MX::new(20, name("mx2.mail.test.")))));
                response.add_answer(record(300, RData::MX(MX::new(10, name("mx1.mail.test.")))));
            }
            ("txt.test.", rr::RecordType::TXT) => {
                let txt = TXT::from_bytes(vec![b"v=spf1 ".as_slice(), b"-all".as_slice()]);
                response.add_answer(record(300, RData::TXT(txt)));
            }
            ("alias.test.", rr::RecordType::A) => {
                response.add_answer(record(300, RData::CNAME(CNAME(name("two.test.")))));
                let target = Record::from_rdata(name("two.test."), 30, RData::A(A(Ipv4Addr::new(10, 0, 0, 1))));
                response.add_answer(target);
            }
            ("big.test.", rr::RecordType::A) if !over_tcp => {
                response.metadata.truncation = true;
            }
            ("big.test.", rr::RecordType::A) => {
                response.add_answer(record(300, RData::A(A(Ipv4Addr::new(10, 0, 0, 9)))));
            }
            ("slow.test.", rr::RecordType::A) => {
                tokio::time::sleep(SLOW).await;
                response.add_answer(record(300, RData::A(A(Ipv4Addr::new(10, 0, 0, 5)))));
            }
            ("nx.test.", _) => response.metadata.response_code = ResponseCode::NXDomain,
            ("fail.test.", _) => response.metadata.response_code = ResponseCode::ServFail,
            ("silent.test.", _) => return None,
            _ => {}
        }
        Some(response)
    }

    fn executor(deny: &str) -> Executor {
        Executor::new(deny.parse().unwrap()).unwrap()
    }

    async fn check(spec: &DnsSpec, timeout: Duration) -> CheckOutcome {
        run(&executor(""), spec, timeout, &Progress::default()).await
    }

    const TIMEOUT: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_records_and_answer_expectations() {
        let server = TestServer::start().await;
        let ok = check(&server.spec(json!({"query": "two.test", "record": "A"})), TIMEOUT).await;
        assert_eq!(ok.status, Status::Ok, "{}", ok.output);
        assert!(ok.output.starts_with("A two.test: 10.0.0.1, 10.0.0.2 in "), "{}", ok.output);
        assert!(ok.output.ends_with("ms"), "{}", ok.output);
        assert_eq!(ok.metrics["answers"], 2.0);
        assert_eq!(ok.metrics["rcode"], 0.0);
        assert!(ok.metrics["query"] > 0.0);
        assert_eq!(ok.details["nameserver"], server.addr.to_string());
        assert_eq!(ok.details["protocol"], "udp");
        assert_eq!(ok.details["tcp_fallback"], false);
        assert_eq!(ok.details["rcode"], "NOERROR");
        assert_eq!(ok.details["min_ttl"], 60);
        assert_eq!(ok.details["answers"], json!(["10.0.0.1", "10.0.0.2"]));

        for expect in [
            json!({"answers": {"equals": ["10.0.0.2", "10.0.0.1"]}}),
            json!({"answers": {"contains": ["10.0.0.2"]}}),
            json!({"answers": {"regex": "^10\\.0\\.0\\.[12]$"}}),
        ] {
            let spec = server.spec(json!({"query": "two.test", "record": "A", "expect": expect}));
            let outcome = check(&spec, TIMEOUT).await;
            assert_eq!(outcome.status, Status::Ok, "{expect}: {}", outcome.output);
        }

        let spec = server.spec(json!({
            "query": "two.test", "record": "A", "expect": {"answers": {"equals": ["10.0.0.1"]}}
        }));
        let bad = check(&spec, TIMEOUT).await;
        assert_eq!(bad.status, Status::Critical);
        assert_eq!(bad.output, r#"A two.test: answers ["10.0.0.1", "10.0.0.2"] != expected ["10.0.0.1"]"#);
        let spec = server.spec(json!({
            "query": "two.test", "record": "A", "expect": {"answers": {"regex": "^10\\.0\\.0\\.1$"}}
        }));
        let bad = check(&spec, TIMEOUT).await;
        assert_eq!(bad.status, Status::Critical);
        assert!(bad.output.contains(r#"answer "10.0.0.2" does not match"#), "{}", bad.output);
    }

    #[tokio::test]
    async fn aaaa_mx_txt_and_cname_chains_render_as_documented() {
        let server = TestServer::start().await;
        for (query, record, answers) in [
            ("v6.test", "AAAA", json!(["2001:db8::1"])),
            ("mail.test", "MX", json!(["20 mx2.mail.test", "10 mx1.mail.test"])),
            ("txt.test", "TXT", json!(["v=spf1 -all"])),
            ("alias.test", "A", json!(["10.0.0.1"])),
        ] {
            let spec = server.spec(json!({
                "query": query, "record": record, "expect": {"answers": {"equals": answers.clone()}}
            }));
            let outcome = check(&spec, TIMEOUT).await;
            assert_eq!(outcome.status, Status::Ok, "{query} {record}: {}", outcome.output);
            assert_eq!(outcome.details["answers"], answers, "{query} {record}");
        }
    }

    #[tokio::test]
    async fn nxdomain_is_an_outcome_judged_against_the_expected_rcode() {
        let server = TestServer::start().await;
        let spec = server.spec(json!({"query": "nx.test", "record": "A", "expect": {"rcode": "NXDOMAIN"}}));
        let expected = check(&spec, TIMEOUT).await;
        assert_eq!(expected.status, Status::Ok, "{}", expected.output);
        assert!(expected.output.starts_with("A nx.test: NXDOMAIN, no answers in "), "{}", expected.output);
        assert_eq!(expected.metrics["rcode"], 3.0);
        assert_eq!(expected.metrics["answers"], 0.0);
        assert_eq!(expected.details["min_ttl"], Value::Null);

        let unexpected = check(&server.spec(json!({"query": "nx.test", "record": "A"})), TIMEOUT).await;
        assert_eq!(unexpected.status, Status::Critical);
        assert_eq!(unexpected.output, format!("NXDOMAIN for nx.test A from {} (expected NOERROR)", server.addr));
        assert_eq!(unexpected.details["rcode"], "NXDOMAIN");
    }

    #[tokio::test]
    async fn servfail_is_reported_with_its_rcode() {
        let server = TestServer::start().await;
        let outcome = check(&server.spec(json!({"query": "fail.test", "record": "A"})), TIMEOUT).await;
        assert_eq!(outcome.status, Status::Critical);
        assert_eq!(outcome.output, format!("SERVFAIL for fail.test A from {} (expected NOERROR)", server.addr));
        assert_eq!(outcome.metrics["rcode"], 2.0);
        assert_eq!(server.udp_queries.load(Ordering::SeqCst), 1, "a response is not retried");

        let spec = server.spec(json!({"query": "fail.test", "record": "A", "expect": {"rcode": "SERVFAIL"}}));
        assert_eq!(check(&spec, TIMEOUT).await.status, Status::Ok);
    }

    #[tokio::test]
    async fn truncated_udp_answer_is_retried_over_tcp() {
        let server = TestServer::start().await;
        let outcome = check(&server.spec(json!({"query": "big.test", "record": "A"})), TIMEOUT).await;
        assert_eq!(outcome.status, Status::Ok, "{}", outcome.output);
        assert_eq!(outcome.details["answers"], json!(["10.0.0.9"]));
        assert_eq!(outcome.details["protocol"], "tcp");
        assert_eq!(outcome.details["tcp_fallback"], true);
        assert_eq!(server.udp_queries.load(Ordering::SeqCst), 1);
        assert_eq!(server.tcp_queries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn tcp_only_never_sends_udp() {
        let server = TestServer::start().await;
        let spec = server.spec(json!({"query": "two.test", "record": "A", "protocol": "tcp"}));
        let outcome = check(&spec, TIMEOUT).await;
        assert_eq!(outcome.status, Status::Ok, "{}", outcome.output);
        assert_eq!(outcome.details["protocol"], "tcp");
        assert_eq!(outcome.details["tcp_fallback"], false);
        assert_eq!(server.udp_queries.load(Ordering::SeqCst), 0);
        assert_eq!(server.tcp_queries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn silent_server_is_critical_before_the_timeout() {
        let server = TestServer::start().await;
        let timeout = Duration::from_millis(600);
        let spec = server.spec(json!({"query": "silent.test", "record": "A", "attempts": 2}));
        let started = Instant::now();
        let outcome = check(&spec, timeout).await;
        let elapsed = started.elapsed();
        assert_eq!(outcome.status, Status::Critical);
        assert_eq!(outcome.output, format!("no answer from {} within 540ms (2 attempts)", server.addr));
        // The exact output above shows the check's own budget ended the run;
        // the slack only absorbs scheduling delays on a loaded machine.
        assert!(elapsed < timeout + Duration::from_secs(1), "took {elapsed:?}");
        assert!(elapsed >= Duration::from_millis(500), "took {elapsed:?}");
        assert_eq!(server.udp_queries.load(Ordering::SeqCst), 2);
        assert_eq!(outcome.details["attempts"], 2);
    }

    #[tokio::test]
    async fn refused_tcp_connection_is_critical_with_the_reason() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let spec: DnsSpec = serde_json::from_value(json!({
            "query": "two.test", "record": "A", "protocol": "tcp", "nameserver": format!("127.0.0.1:{port}")
        }))
        .unwrap();
        let outcome = check(&spec, TIMEOUT).await;
        assert_eq!(outcome.status, Status::Critical);
        assert!(
            outcome.output.starts_with(&format!("no answer from 127.0.0.1:{port} (2 attempts): ")),
            "{}",
            outcome.output
        );
    }

    #[tokio::test]
    async fn latency_thresholds_apply_to_the_whole_lookup() {
        let server = TestServer::start().await;
        let spec = server.spec(json!({"query": "slow.test", "record": "A", "expect": {"latency_warn": "10ms"}}));
        let warn = check(&spec, TIMEOUT).await;
        assert_eq!(warn.status, Status::Warning, "{}", warn.output);
        assert!(warn.output.starts_with("A slow.test: "), "{}", warn.output);
        assert!(warn.output.ends_with("> latency_warn 10ms"), "{}", warn.output);
        assert!(warn.metrics["query"] >= SLOW.as_millis() as f64);

        let spec = server.spec(json!({
            "query": "slow.test", "record": "A", "expect": {"latency_warn": "10ms", "latency_crit": "20ms"}
        }));
        assert_eq!(check(&spec, TIMEOUT).await.status, Status::Critical);
    }

    #[tokio::test]
    async fn denied_nameserver_and_bad_names_are_unknown() {
        let spec: DnsSpec =
            serde_json::from_value(json!({"query": "two.test", "record": "A", "nameserver": "169.254.169.254"}))
                .unwrap();
        let outcome = run(&executor("169.254.0.0/16"), &spec, TIMEOUT, &Progress::default()).await;
        assert_eq!(outcome.status, Status::Unknown);
        assert_eq!(
            outcome.output,
            "nameserver 169.254.169.254:53 is in denied network 169.254.0.0/16 (PICKET_DENY_CIDRS)"
        );

        let spec: DnsSpec =
            serde_json::from_value(json!({"query": "a..b", "record": "A", "nameserver": "127.0.0.1"})).unwrap();
        let outcome = check(&spec, TIMEOUT).await;
        assert_eq!(outcome.status, Status::Unknown);
        assert!(outcome.output.starts_with(r#""a..b" is not a DNS name"#), "{}", outcome.output);
    }

    #[test]
    fn renders_every_record_type_without_trailing_dots() {
        let name = |text: &str| Name::from_ascii(text).unwrap();
        let cases = [
            (RData::CNAME(CNAME(name("www.example.test."))), "www.example.test"),
            (RData::NS(NS(name("ns1.example.test."))), "ns1.example.test"),
            (RData::PTR(PTR(name("host.example.test."))), "host.example.test"),
            (RData::SRV(SRV::new(10, 5, 5060, name("sip.example.test."))), "10 5 5060 sip.example.test"),
            (
                RData::SOA(SOA::new(
                    name("ns1.example.test."),
                    name("hostmaster.example.test."),
                    2024010101,
                    7200,
                    3600,
                    1209600,
                    300,
                )),
                "ns1.example.test hostmaster.example.test 2024010101 7200 3600 1209600 300",
            ),
            (RData::CAA(CAA::new_issue(false, Some(name("letsencrypt.org")), vec![])), r#"0 issue "letsencrypt.org""#),
        ];
        for (data, text) in cases {
            assert_eq!(render(&data), text);
        }
        assert_eq!(bare(&Name::root()), ".");
    }
}
