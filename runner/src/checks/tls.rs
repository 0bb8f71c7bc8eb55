//! The `tls` check: completes a handshake whatever certificate is served
//! (handshake signatures are still checked), then judges the served chain:
//! trust, hostname, validity dates, and the days the leaf and the verified
//! chain have left.
//!
//! The shared client configuration accepts any chain, so the chain is
//! captured even when expired or untrusted; webpki then judges
//! `peer_certificates()` explicitly. Nothing is recorded in shared state, so
//! concurrent runs cannot see each other's chains.

mod chain;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use protocol::Status;
use protocol::definition::TlsSpec;
use protocol::metrics::result_keys;
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ProtocolVersion, RootCertStore};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use self::chain::{CertInfo, ServedChain};
use super::words::{self, date, days_text};
use crate::executor::Executor;
use crate::outcome::{CheckOutcome, Progress, ms};

pub async fn run(executor: &Executor, spec: &TlsSpec, progress: &Progress) -> CheckOutcome {
    let mut timings = Timings::new(progress);
    let outcome = match inspect(executor, spec, progress, &mut timings).await {
        Ok(outcome) | Err(outcome) => outcome,
    };
    outcome.with_metrics(timings.metrics)
}

/// Connects, shakes hands and judges the chain. `Err` is an outcome that
/// ended the run early (no address, refused, handshake failure).
async fn inspect(
    executor: &Executor,
    spec: &TlsSpec,
    progress: &Progress,
    timings: &mut Timings<'_>,
) -> Result<CheckOutcome, CheckOutcome> {
    let server_name = ServerName::try_from(spec.server_name().to_owned())
        .map_err(|e| CheckOutcome::unknown(format!("{:?} is not a TLS server name: {e}", spec.server_name())))?;
    let anchors = executor
        .trust
        .anchors(spec.ca_file.as_deref())
        .map_err(|e| CheckOutcome::unknown(format!("TLS configuration: {e}")))?;

    let addrs = executor.resolve_target(&spec.host, spec.port(), spec.ip_family, progress).await?;
    timings.lap("dns");
    progress.phase("connect");
    let (address, tcp) = connect(&addrs).await?;
    timings.lap("connect");
    progress.phase("tls");
    let tls = TlsConnector::from(executor.trust.probe_config())
        .connect(server_name.clone(), tcp)
        .await
        .map_err(|e| CheckOutcome::critical(words::handshake_failure(address, &e)))?;
    timings.lap("tls");
    let connection = tls.get_ref().1;
    let served = connection.peer_certificates().unwrap_or_default().to_vec();
    let protocol = connection.protocol_version().map_or_else(|| "unknown".to_owned(), protocol_name);
    let cipher = connection.negotiated_cipher_suite().map_or_else(
        || "unknown".to_owned(),
        |suite| suite.suite().as_str().map_or_else(|| format!("{:?}", suite.suite()), str::to_owned),
    );
    drop(tls);

    let Some((leaf, intermediates)) = served.split_first() else {
        return Err(CheckOutcome::critical(format!("{address} completed the handshake without a certificate")));
    };
    let now = Utc::now();
    let chain = chain::analyze(leaf, intermediates, &anchors.roots, now)
        .map_err(|e| CheckOutcome::critical(format!("{e} ({address})")))?;
    let algorithms = executor.trust.signature_algorithms();
    let verdict = Verdict::new(leaf, intermediates, &anchors, &server_name, algorithms);
    let findings = Findings {
        server_name: spec.server_name(),
        warn_days: spec.warn_days(),
        crit_days: spec.crit_days(),
        address,
        trust_error: verdict.trust_error(&chain),
        hostname_error: verdict.hostname_error(&chain, spec.server_name()),
        chain,
        protocol,
        cipher,
        now,
    };
    Ok(findings.outcome())
}

/// Tries the addresses in order; the first that accepts wins.
async fn connect(addrs: &[SocketAddr]) -> Result<(SocketAddr, TcpStream), CheckOutcome> {
    let mut last_error = None;
    for &addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok((addr, stream)),
            Err(e) => last_error = Some(format!("cannot connect to {addr}: {}", super::words::socket_error(&e))),
        }
    }
    Err(CheckOutcome::critical(last_error.unwrap_or_else(|| "no address to connect to".to_owned())))
}

/// Phase timings, kept for the outcome and mirrored into `progress` so a
/// run cut by its timeout still reports them.
struct Timings<'p> {
    progress: &'p Progress,
    lap: Instant,
    metrics: BTreeMap<String, f64>,
}

impl<'p> Timings<'p> {
    fn new(progress: &'p Progress) -> Self {
        Self { progress, lap: Instant::now(), metrics: BTreeMap::new() }
    }

    fn lap(&mut self, name: &str) {
        let elapsed = ms(self.lap.elapsed());
        self.lap = Instant::now();
        self.progress.metric(name, elapsed);
        self.metrics.insert(name.to_owned(), elapsed);
    }
}

/// webpki's verdicts on the served chain, made at the current time.
struct Verdict {
    trust: Result<(), rustls::Error>,
    hostname: Result<(), rustls::Error>,
}

impl Verdict {
    fn new(
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        anchors: &RootCertStore,
        server_name: &ServerName<'_>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        match ParsedCertificate::try_from(leaf) {
            Ok(parsed) => Self {
                trust: verify_server_cert_signed_by_trust_anchor(
                    &parsed,
                    anchors,
                    intermediates,
                    UnixTime::now(),
                    algorithms.all,
                ),
                hostname: verify_server_name(&parsed, server_name),
            },
            Err(e) => Self { trust: Err(e.clone()), hostname: Err(e) },
        }
    }

    /// Why the chain is not trusted, None when it is. Dates are judged from
    /// the path (they are reported with more context there), so a chain
    /// webpki rejects only for its dates is trusted when the path reaches a
    /// trust anchor.
    fn trust_error(&self, chain: &ServedChain) -> Option<String> {
        match self.trust.as_ref().err()? {
            rustls::Error::InvalidCertificate(error) if is_date_error(error) => {
                (!chain.anchored).then(|| unknown_issuer(chain))
            }
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => Some(unknown_issuer(chain)),
            other => Some(words::tls_error(other)),
        }
    }

    /// Why the leaf does not match `server_name`, None when it does.
    fn hostname_error(&self, chain: &ServedChain, server_name: &str) -> Option<String> {
        match self.hostname.as_ref().err()? {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => {
                let sans = &chain.leaf().sans;
                Some(if sans.is_empty() {
                    format!("the certificate has no subjectAltName, none matches {server_name}")
                } else {
                    format!("{server_name} is not among the certificate's names ({})", sans.join(", "))
                })
            }
            other => Some(words::tls_error(other)),
        }
    }
}

fn is_date_error(error: &CertificateError) -> bool {
    matches!(
        error,
        CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. }
    )
}

fn unknown_issuer(chain: &ServedChain) -> String {
    if chain.leaf_self_signed {
        return "self-signed certificate".to_owned();
    }
    match chain.path.as_slice() {
        [_, .., last] => format!("unknown issuer {} of {}", last.issuer, last.label()),
        _ => "unknown issuer".to_owned(),
    }
}

fn protocol_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Everything the status depends on.
struct Findings<'s> {
    server_name: &'s str,
    warn_days: u32,
    crit_days: u32,
    address: SocketAddr,
    chain: ServedChain,
    trust_error: Option<String>,
    hostname_error: Option<String>,
    protocol: String,
    cipher: String,
    now: DateTime<Utc>,
}

impl Findings<'_> {
    fn outcome(&self) -> CheckOutcome {
        let (status, output) = self.judge();
        let (leaf, earliest) = (self.chain.leaf(), self.chain.earliest().1);
        let metrics = BTreeMap::from([
            (result_keys::LEAF_DAYS_LEFT.to_owned(), leaf.days_left),
            (result_keys::CHAIN_DAYS_LEFT.to_owned(), earliest.days_left),
            (result_keys::LEAF_NOT_AFTER.to_owned(), leaf.not_after.timestamp() as f64),
            (result_keys::CHAIN_NOT_AFTER.to_owned(), earliest.not_after.timestamp() as f64),
        ]);
        CheckOutcome::new(status, output).with_metrics(metrics).with_details(self.details())
    }

    /// CRITICAL for an untrusted, mismatched, expired or not-yet-valid
    /// certificate; else by the days the chain has left; an expired served
    /// certificate outside the chain is at least a WARNING.
    fn judge(&self) -> (Status, String) {
        let leaf = self.chain.leaf();
        let issuer = format!("issuer {}", leaf.issuer);
        let unused = self.unused_expired().map(|cert| {
            format!("served certificate {} expired {} and is not part of the chain", cert.label(), date(cert.not_after))
        });
        let problems = self.problems();
        if !problems.is_empty() {
            let parts: Vec<String> = problems.into_iter().chain(unused).chain([issuer]).collect();
            return (Status::Critical, parts.join("; "));
        }

        // The certificate that crossed a threshold leads the output, with the
        // threshold next to its days left.
        let (earliest_index, earliest) = self.chain.earliest();
        let threshold = self.expiry_threshold(earliest.days_left);
        let below = threshold.as_ref().map(|(_, below)| below.as_str()).unwrap_or_default();
        let mut status = threshold.as_ref().map_or(Status::Ok, |(status, _)| *status);
        let mut parts: Vec<String> = unused.collect();
        if !parts.is_empty() {
            status = status.max(Status::Warning);
        }
        let leaf_below = if earliest_index == 0 { below } else { "" };
        let mut summary =
            format!("leaf expires {} ({}{leaf_below})", date(leaf.not_after), days_text(whole_days(leaf.days_left)));
        if earliest_index > 0 {
            let (day, days, name) =
                (date(earliest.not_after), days_text(whole_days(earliest.days_left)), earliest.label());
            if threshold.is_some() {
                parts.insert(0, format!("intermediate {name} expires {day} ({days}{below})"));
            } else {
                summary.push_str(&format!(", chain {day} ({days}, {name})"));
            }
        }
        summary.push_str(&format!(", {}, {issuer}", self.protocol));
        parts.push(summary);
        (status, parts.join("; "))
    }

    /// The reasons for CRITICAL that are not about days left.
    fn problems(&self) -> Vec<String> {
        problems(self.server_name, &self.chain, self.trust_error.as_deref(), self.hostname_error.as_deref(), self.now)
    }

    /// The status earned by the chain's least days left, with the threshold
    /// it fell below (as " < warn_days 21"), None when above both.
    fn expiry_threshold(&self, days_left: f64) -> Option<(Status, String)> {
        if days_left < f64::from(self.crit_days) {
            Some((Status::Critical, format!(" < crit_days {}", self.crit_days)))
        } else if days_left < f64::from(self.warn_days) {
            Some((Status::Warning, format!(" < warn_days {}", self.warn_days)))
        } else {
            None
        }
    }

    /// Served certificates outside the path that have expired.
    fn unused_expired(&self) -> impl Iterator<Item = &CertInfo> {
        self.chain.unused.iter().filter(|cert| cert.expired(self.now))
    }

    fn details(&self) -> Value {
        let brief = |cert: &CertInfo| {
            json!({
                "subject": cert.subject,
                "issuer": cert.issuer,
                "not_before": cert.not_before,
                "not_after": cert.not_after,
            })
        };
        json!({
            "address": self.address.to_string(),
            "server_name": self.server_name,
            "protocol": self.protocol,
            "cipher": self.cipher,
            "trusted": self.trust_error.is_none(),
            "trust_error": self.trust_error,
            "hostname_match": self.hostname_error.is_none(),
            "hostname_error": self.hostname_error,
            "leaf": self.chain.leaf(),
            "chain": self.chain.path.iter().map(brief).collect::<Vec<_>>(),
            "chain_anchored": self.chain.anchored,
            "unused": self.chain.unused.iter().map(brief).collect::<Vec<_>>(),
            "unused_expired": self.unused_expired().map(brief).collect::<Vec<_>>(),
        })
    }
}

/// Whole days, rounded down: a certificate with 6.9 days left has 6 full days.
fn whole_days(days: f64) -> i64 {
    days.floor() as i64
}

/// The reasons for CRITICAL that are not about days left: dates on the
/// path, trust, the name.
fn problems(
    name: &str,
    chain: &ServedChain,
    trust_error: Option<&str>,
    hostname_error: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, cert) in chain.path.iter().enumerate() {
        let what =
            if index == 0 { format!("certificate for {name}") } else { format!("chain certificate {}", cert.label()) };
        if cert.expired(now) {
            problems.push(format!("{what} {}", words::expired(cert.not_after, now)));
        } else if cert.not_yet_valid(now) {
            problems.push(format!("{what} {}", words::not_yet_valid(cert.not_before, now)));
        }
    }
    if let Some(error) = trust_error {
        problems.push(format!("certificate for {name} is not trusted: {error}"));
    }
    if let Some(error) = hostname_error {
        problems.push(format!("hostname mismatch: {error}"));
    }
    problems
}

/// Why a served chain that webpki refused is refused, in the `tls` check's
/// words (`certificate for web.test expired 2026-11-29 (3 days ago); issuer
/// CN=…`), for the `http` check's verifier. None when this analysis finds
/// nothing wrong, so webpki's own reason is kept.
pub(crate) fn certificate_problems(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &RootCertStore,
    server_name: &ServerName<'_>,
    algorithms: WebPkiSupportedAlgorithms,
) -> Option<String> {
    let now = Utc::now();
    let chain = chain::analyze(leaf, intermediates, &anchors.roots, now).ok()?;
    let verdict = Verdict::new(leaf, intermediates, anchors, server_name, algorithms);
    let name = server_name.to_str();
    let found = problems(
        &name,
        &chain,
        verdict.trust_error(&chain).as_deref(),
        verdict.hostname_error(&chain, &name).as_deref(),
        now,
    );
    (!found.is_empty()).then(|| format!("{}; issuer {}", found.join("; "), chain.leaf().issuer))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use protocol::definition::IpFamily;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::deny::DenyList;
    use crate::test_pki::{Authority, Leaf, Validity, pem_file, serve_tls, server_config};

    fn spec(addr: SocketAddr, sni: &str, ca_file: Option<&Path>) -> TlsSpec {
        TlsSpec {
            host: "127.0.0.1".to_owned(),
            port: Some(addr.port()),
            sni: Some(sni.to_owned()),
            warn_days: None,
            crit_days: None,
            ip_family: IpFamily::default(),
            ca_file: ca_file.map(Path::to_path_buf),
        }
    }

    async fn check(spec: &TlsSpec) -> CheckOutcome {
        let executor = Executor::new(DenyList::default()).expect("executor");
        run(&executor, spec, &Progress::default()).await
    }

    async fn serve(chain: Vec<CertificateDer<'static>>, leaf: Leaf) -> SocketAddr {
        serve_tls(server_config(chain, leaf.key)).await
    }

    fn metric(outcome: &CheckOutcome, name: &str) -> f64 {
        *outcome.metrics.get(name).unwrap_or_else(|| panic!("metric {name} in {outcome:?}"))
    }

    #[tokio::test]
    async fn valid_chain_is_ok_with_days_left() {
        let ca = Authority::root("picket test CA");
        let leaf = ca.leaf(&["valid.test"], Validity::days(-1, 90));
        let addr = serve(vec![leaf.cert.clone()], leaf).await;
        let ca_file = ca.ca_file();

        let outcome = check(&spec(addr, "valid.test", Some(ca_file.path()))).await;

        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        let days = metric(&outcome, "days_left");
        assert!((89.9..=90.0).contains(&days), "{days}");
        assert_eq!(metric(&outcome, "chain_days_left"), days);
        for phase in ["dns", "connect", "tls"] {
            assert!(metric(&outcome, phase) >= 0.0);
        }
        assert!(outcome.output.starts_with("leaf expires "), "{}", outcome.output);
        assert!(outcome.output.contains("(89 days), TLSv1.3, issuer CN=picket test CA"), "{}", outcome.output);
        assert_eq!(outcome.details["trusted"], true);
        assert_eq!(outcome.details["hostname_match"], true);
        assert_eq!(outcome.details["leaf"]["sans"], json!(["valid.test"]));
        assert_eq!(outcome.details["leaf"]["sha256"].as_str().map(str::len), Some(32 * 3 - 1));
        assert_eq!(outcome.details["protocol"], "TLSv1.3");
    }

    #[tokio::test]
    async fn leaf_expiring_soon_is_critical_or_warning_by_thresholds() {
        let ca = Authority::root("picket test CA");
        let leaf = ca.leaf(&["soon.test"], Validity::days(-80, 5));
        let addr = serve(vec![leaf.cert.clone()], leaf).await;
        let ca_file = ca.ca_file();
        let mut spec = spec(addr, "soon.test", Some(ca_file.path()));

        spec.crit_days = Some(7);
        let critical = check(&spec).await;
        assert_eq!(critical.status, Status::Critical, "{critical:?}");
        let expiry = date(Utc::now() + chrono::Duration::days(5));
        assert_eq!(
            critical.output,
            format!("leaf expires {expiry} (4 days < crit_days 7), TLSv1.3, issuer CN=picket test CA")
        );

        spec.crit_days = Some(3);
        spec.warn_days = Some(21);
        let warning = check(&spec).await;
        assert_eq!(warning.status, Status::Warning, "{warning:?}");
        assert!(warning.output.contains(" (4 days < warn_days 21), TLSv1.3"), "{}", warning.output);
        let days = metric(&warning, "days_left");
        assert!((4.9..5.0).contains(&days), "{days}");
    }

    #[tokio::test]
    async fn expired_leaf_is_critical_with_reason_and_date() {
        let ca = Authority::root("picket test CA");
        let leaf = ca.leaf(&["expired.test"], Validity::days(-100, -5));
        let expiry = date(Utc::now() - chrono::Duration::days(5));
        let addr = serve(vec![leaf.cert.clone()], leaf).await;
        let ca_file = ca.ca_file();

        let outcome = check(&spec(addr, "expired.test", Some(ca_file.path()))).await;

        assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
        assert_eq!(
            outcome.output,
            format!("certificate for expired.test expired {expiry} (5 days ago); issuer CN=picket test CA")
        );
        assert!(metric(&outcome, "days_left") < -4.9);
        assert_eq!(outcome.details["trusted"], true, "an expired chain still leads to a trusted root");
    }

    #[tokio::test]
    async fn not_yet_valid_leaf_and_expired_intermediate_are_critical() {
        let ca = Authority::root("picket test CA");
        let ca_file = ca.ca_file();
        let leaf = ca.leaf(&["future.test"], Validity::days(10, 100));
        let valid_from = date(Utc::now() + chrono::Duration::days(10));
        let addr = serve(vec![leaf.cert.clone()], leaf).await;
        let outcome = check(&spec(addr, "future.test", Some(ca_file.path()))).await;
        assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
        assert_eq!(
            outcome.output,
            format!(
                "certificate for future.test is not valid until {valid_from} (in 10 days); issuer CN=picket test CA"
            )
        );

        let intermediate = ca.intermediate("picket old intermediate", Validity::days(-100, -1));
        let leaf = intermediate.leaf(&["stale.test"], Validity::days(-10, 90));
        let expiry = date(Utc::now() - chrono::Duration::days(1));
        let addr = serve(vec![leaf.cert.clone(), intermediate.cert.clone()], leaf).await;
        let outcome = check(&spec(addr, "stale.test", Some(ca_file.path()))).await;
        assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
        assert_eq!(
            outcome.output,
            format!(
                "chain certificate CN=picket old intermediate expired {expiry} (1 day ago); \
                 issuer CN=picket old intermediate"
            )
        );
        assert!(metric(&outcome, "chain_days_left") < 0.0);
        assert!(metric(&outcome, "days_left") > 89.0);
    }

    #[tokio::test]
    async fn wrong_host_name_is_critical() {
        let ca = Authority::root("picket test CA");
        let leaf = ca.leaf(&["right.test"], Validity::days(-1, 90));
        let addr = serve(vec![leaf.cert.clone()], leaf).await;
        let ca_file = ca.ca_file();

        let outcome = check(&spec(addr, "wrong.test", Some(ca_file.path()))).await;

        assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
        assert!(
            outcome
                .output
                .starts_with("hostname mismatch: wrong.test is not among the certificate's names (right.test)"),
            "{}",
            outcome.output
        );
        assert_eq!(outcome.details["hostname_match"], false);
        assert_eq!(outcome.details["trusted"], true);
    }

    #[tokio::test]
    async fn self_signed_is_critical_and_chain_still_reported() {
        let leaf = Leaf::self_signed(&["self.test"], Validity::days(-1, 90));
        let addr = serve(vec![leaf.cert.clone()], leaf).await;

        let outcome = check(&spec(addr, "self.test", None)).await;

        assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
        assert_eq!(
            outcome.output,
            "certificate for self.test is not trusted: self-signed certificate; issuer CN=self.test"
        );
        assert_eq!(outcome.details["trusted"], false);
        assert_eq!(outcome.details["chain"][0]["subject"], "CN=self.test");
        assert_eq!(outcome.details["chain_anchored"], false);
        assert!(metric(&outcome, "days_left") > 89.0);
    }

    #[tokio::test]
    async fn self_signed_certificate_pinned_in_ca_file_is_ok() {
        let leaf = Leaf::self_signed(&["pinned.test"], Validity::days(-1, 90));
        let pinned = pem_file(&leaf.pem);
        let addr = serve(vec![leaf.cert.clone()], leaf).await;

        let outcome = check(&spec(addr, "pinned.test", Some(pinned.path()))).await;

        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        assert_eq!(outcome.details["chain_anchored"], true);
    }

    #[tokio::test]
    async fn ip_address_target_matches_an_ip_san() {
        let ca = Authority::root("picket test CA");
        let leaf = ca.leaf(&["127.0.0.1"], Validity::days(-1, 90));
        let addr = serve(vec![leaf.cert.clone()], leaf).await;
        let ca_file = ca.ca_file();
        let mut spec = spec(addr, "unused", Some(ca_file.path()));
        spec.sni = None;

        let outcome = check(&spec).await;

        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        assert_eq!(outcome.details["leaf"]["sans"], json!(["127.0.0.1"]));
    }

    #[tokio::test]
    async fn unknown_ca_is_critical() {
        let ca = Authority::root("picket unknown CA");
        let leaf = ca.leaf(&["unknown.test"], Validity::days(-1, 90));
        let addr = serve(vec![leaf.cert.clone()], leaf).await;
        let outcome = check(&spec(addr, "unknown.test", None)).await;
        assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
        assert_eq!(
            outcome.output,
            "certificate for unknown.test is not trusted: unknown issuer; issuer CN=picket unknown CA"
        );

        let intermediate = ca.intermediate("picket unknown intermediate", Validity::days(-1, 90));
        let leaf = intermediate.leaf(&["unknown.test"], Validity::days(-1, 90));
        let addr = serve(vec![leaf.cert.clone(), intermediate.cert.clone()], leaf).await;
        let outcome = check(&spec(addr, "unknown.test", None)).await;
        assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
        assert!(
            outcome.output.starts_with(
                "certificate for unknown.test is not trusted: \
                 unknown issuer CN=picket unknown CA of CN=picket unknown intermediate;"
            ),
            "{}",
            outcome.output
        );
        assert_eq!(outcome.details["chain"].as_array().map(Vec::len), Some(2));
    }

    #[tokio::test]
    async fn intermediate_expiring_first_sets_chain_days_left() {
        let ca = Authority::root("picket test CA");
        let intermediate = ca.intermediate("picket test intermediate", Validity::days(-10, 30));
        let leaf = intermediate.leaf(&["chain.test"], Validity::days(-1, 90));
        let addr = serve(vec![leaf.cert.clone(), intermediate.cert.clone()], leaf).await;
        let ca_file = ca.ca_file();
        let mut spec = spec(addr, "chain.test", Some(ca_file.path()));

        let outcome = check(&spec).await;

        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        let (leaf_days, chain_days) = (metric(&outcome, "days_left"), metric(&outcome, "chain_days_left"));
        assert!((89.9..=90.0).contains(&leaf_days), "{leaf_days}");
        assert!((29.9..=30.0).contains(&chain_days), "{chain_days}");
        // The same, as timestamps for the handler's picket_tls_not_after series.
        let now = chrono::Utc::now().timestamp() as f64;
        let leaf_at = metric(&outcome, result_keys::LEAF_NOT_AFTER);
        let chain_at = metric(&outcome, result_keys::CHAIN_NOT_AFTER);
        assert!((leaf_at - now - 90.0 * 86_400.0).abs() < 120.0, "{leaf_at} vs now {now}");
        assert!((chain_at - now - 30.0 * 86_400.0).abs() < 120.0, "{chain_at} vs now {now}");
        assert!(
            outcome.output.contains("(89 days), chain ")
                && outcome.output.contains("(29 days, CN=picket test intermediate), TLSv1.3"),
            "{}",
            outcome.output
        );
        assert_eq!(outcome.details["chain"][1]["subject"], "CN=picket test intermediate");

        spec.warn_days = Some(45);
        let warning = check(&spec).await;
        assert_eq!(warning.status, Status::Warning, "{warning:?}");
        assert!(
            warning.output.starts_with("intermediate CN=picket test intermediate expires ")
                && warning.output.contains(" (29 days < warn_days 45); leaf expires "),
            "{}",
            warning.output
        );
    }

    #[tokio::test]
    async fn served_but_unused_expired_certificate_is_reported_not_mistaken_for_the_chain() {
        let ca = Authority::root("picket test CA");
        let old_root = Authority::root("picket old root");
        let cross_signed = ca.cross_signed_by(&old_root, Validity::days(-400, -10));
        let intermediate = ca.intermediate("picket test intermediate", Validity::days(-10, 60));
        let leaf = intermediate.leaf(&["cross.test"], Validity::days(-1, 90));
        let chain = vec![leaf.cert.clone(), intermediate.cert.clone(), cross_signed];
        let addr = serve(chain, leaf).await;
        let ca_file = ca.ca_file();

        let outcome = check(&spec(addr, "cross.test", Some(ca_file.path()))).await;

        assert_eq!(outcome.status, Status::Warning, "{outcome:?}");
        let expiry = date(Utc::now() - chrono::Duration::days(10));
        assert!(
            outcome.output.starts_with(&format!(
                "served certificate CN=picket test CA expired {expiry} and is not part of the chain; leaf expires"
            )),
            "{}",
            outcome.output
        );
        let chain_days = metric(&outcome, "chain_days_left");
        assert!((59.9..=60.0).contains(&chain_days), "{chain_days}");
        assert_eq!(outcome.details["trusted"], true);
        assert_eq!(outcome.details["chain"].as_array().map(Vec::len), Some(2));
        assert_eq!(outcome.details["unused_expired"][0]["subject"], "CN=picket test CA");
        assert_eq!(outcome.details["unused_expired"][0]["issuer"], "CN=picket old root");
    }

    #[tokio::test]
    async fn garbage_instead_of_tls_is_critical() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot tls at all\r\n").await;
            }
        });

        let outcome = check(&spec(addr, "garbage.test", None)).await;

        assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
        assert!(outcome.output.starts_with(&format!("TLS handshake with {addr} failed: ")), "{}", outcome.output);
        assert!(outcome.metrics.contains_key("connect"));
        assert!(!outcome.metrics.contains_key("days_left"));
    }

    #[tokio::test]
    async fn refused_connection_is_critical() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);

        let outcome = check(&spec(addr, "closed.test", None)).await;

        assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
        assert!(
            outcome.output.starts_with(&format!("cannot connect to {addr}: connection refused")),
            "{}",
            outcome.output
        );
    }
}
