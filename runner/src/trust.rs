//! Trust roots and rustls client configurations, loaded and built once per
//! runner and shared by every check run.
//!
//! The crypto provider is always ring, passed explicitly, so nothing depends
//! on a process-wide default provider having been installed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::executor::ExecutorError;

/// The runner's trust roots and the client configurations built from them.
pub(crate) struct Trust {
    provider: Arc<CryptoProvider>,
    /// System roots merged with webpki-roots.
    roots: Arc<RootCertStore>,
    /// Roots plus a `ca_file`'s anchors, per `ca_file` (None: the roots alone).
    anchors: Mutex<HashMap<Option<PathBuf>, Arc<RootCertStore>>>,
    http_configs: Mutex<HashMap<HttpConfigKey, Arc<ClientConfig>>>,
    /// The `tls` check's configuration: accepts any chain so the served chain
    /// can be captured and judged after the handshake.
    probe: Arc<ClientConfig>,
}

/// What distinguishes one HTTPS client configuration from another. When
/// verification is off the `ca_file` is irrelevant and is not part of the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HttpConfigKey {
    Verifying(Option<PathBuf>),
    Accepting,
}

impl Trust {
    /// Loads the system's trust roots merged with webpki-roots, so that a
    /// scratch container without `/etc/ssl` still verifies public sites.
    /// Unparsable system certificates are skipped; no roots at all is an error.
    pub(crate) fn new() -> Result<Self, ExecutorError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        // Errors reading individual native certificates (or the whole native
        // store) are tolerated: webpki-roots is the fallback.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if roots.is_empty() {
            return Err(ExecutorError::Trust("no trust roots found".to_owned()));
        }
        let probe = Arc::new(
            client_config(&provider, None)
                .map_err(|e| ExecutorError::Trust(format!("cannot build the TLS client configuration: {e}")))?,
        );
        Ok(Self { provider, roots: Arc::new(roots), anchors: Mutex::default(), http_configs: Mutex::default(), probe })
    }

    /// The client configuration of HTTPS checks (ALPN http/1.1): verifying
    /// against the system roots plus the anchors in `ca_file`, or accepting
    /// any certificate when `verify` is false. Built once per distinct input
    /// (a `ca_file` is read once; a changed file takes a runner restart).
    pub(crate) fn http_config(&self, ca_file: Option<&Path>, verify: bool) -> Result<Arc<ClientConfig>, String> {
        let key =
            if verify { HttpConfigKey::Verifying(ca_file.map(Path::to_path_buf)) } else { HttpConfigKey::Accepting };
        if let Some(config) = lock(&self.http_configs).get(&key) {
            return Ok(Arc::clone(config));
        }
        let judge = if verify {
            let anchors = self.anchors(ca_file)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::clone(&anchors), Arc::clone(&self.provider))
                .build()
                .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
            Some(Judge { webpki, anchors })
        } else {
            None
        };
        let mut config = client_config(&self.provider, judge).map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        lock(&self.http_configs).insert(key, Arc::clone(&config));
        Ok(config)
    }

    /// The `tls` check's client configuration: no ALPN, no resumption, and a
    /// verifier that accepts any chain (still checking handshake signatures),
    /// so the served chain is captured even when expired or untrusted.
    pub(crate) fn probe_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.probe)
    }

    /// The trust anchors of a check: the roots plus the PEM certificates in
    /// `ca_file`. Cached per file; a file that cannot be read is not cached,
    /// so fixing it takes effect on the next run.
    pub(crate) fn anchors(&self, ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, String> {
        let Some(path) = ca_file else {
            return Ok(Arc::clone(&self.roots));
        };
        let key = Some(path.to_path_buf());
        if let Some(anchors) = lock(&self.anchors).get(&key) {
            return Ok(Arc::clone(anchors));
        }
        let mut anchors = RootCertStore::clone(&self.roots);
        for cert in read_pem_certificates(path)? {
            anchors.add(cert).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
        let anchors = Arc::new(anchors);
        lock(&self.anchors).insert(key, Arc::clone(&anchors));
        Ok(anchors)
    }

    /// The signature algorithms of the crypto provider, for verifying chains.
    pub(crate) fn signature_algorithms(&self) -> WebPkiSupportedAlgorithms {
        self.provider.signature_verification_algorithms
    }
}

/// The expiry of a DER certificate, None when it does not parse.
pub(crate) fn cert_not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
}

/// A cache lock; a panic elsewhere while holding it leaves a usable map.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every certificate in a PEM file; an unreadable file or one without
/// certificates is an error (a typo must not silently mean "roots only").
fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A client configuration with resumption off, so every run sees the
/// certificate the server serves now, verifying chains with `judge`, or
/// accepting any chain without one.
fn client_config(provider: &Arc<CryptoProvider>, judge: Option<Judge>) -> Result<ClientConfig, rustls::Error> {
    let verifier = ChainVerifier { judge, algorithms: provider.signature_verification_algorithms };
    let mut config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The verifier of every client configuration. It always checks the
/// handshake signatures, so the peer must hold the private key of the
/// certificate it served. Without a judge it accepts any chain (the `tls`
/// check judges the chain itself, after the handshake, and `tls_verify:
/// false`); with one, webpki judges it, and a refusal is put in the `tls`
/// check's words (`checks::tls::certificate_problems`), so an HTTPS check
/// and a TLS check of one certificate say the same thing. The words travel
/// as `CertificateError::Other(Explained)`, which `checks::words` unwraps.
#[derive(Debug)]
struct ChainVerifier {
    judge: Option<Judge>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// webpki's verifier and the anchors it verifies against.
#[derive(Debug)]
struct Judge {
    webpki: Arc<WebPkiServerVerifier>,
    anchors: Arc<RootCertStore>,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(judge) = &self.judge else { return Ok(ServerCertVerified::assertion()) };
        judge.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now).map_err(|error| {
            let rustls::Error::InvalidCertificate(_) = &error else { return error };
            let words = crate::checks::tls::certificate_problems(
                end_entity,
                intermediates,
                &judge.anchors,
                server_name,
                self.algorithms,
            );
            match words {
                Some(words) => rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    crate::checks::words::Explained(words),
                )))),
                None => error,
            }
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki::{Authority, Validity, pem_file};

    #[test]
    fn loads_roots_and_caches_configs_per_input() {
        let trust = Trust::new().expect("trust roots");
        assert!(!trust.roots.is_empty());
        let ca = Authority::root("picket test CA");
        let ca_file = ca.ca_file();

        let verifying = trust.http_config(Some(ca_file.path()), true).expect("config");
        assert_eq!(verifying.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(Arc::ptr_eq(&verifying, &trust.http_config(Some(ca_file.path()), true).expect("config")));
        let system = trust.http_config(None, true).expect("config");
        assert!(!Arc::ptr_eq(&verifying, &system));
        let accepting = trust.http_config(None, false).expect("config");
        assert!(Arc::ptr_eq(&accepting, &trust.http_config(Some(ca_file.path()), false).expect("config")));
        assert!(!Arc::ptr_eq(&accepting, &system));

        let anchors = trust.anchors(Some(ca_file.path())).expect("anchors");
        assert_eq!(anchors.len(), trust.roots.len() + 1);
    }

    #[test]
    fn unreadable_or_empty_ca_file_is_an_error() {
        let trust = Trust::new().expect("trust roots");
        let missing = trust.http_config(Some(Path::new("/nonexistent/ca.pem")), true).unwrap_err();
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        let empty = pem_file("no certificate here\n");
        let error = trust.anchors(Some(empty.path())).unwrap_err();
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }

    #[test]
    fn reads_certificate_expiry() {
        let ca = Authority::root("picket test CA");
        let leaf = ca.leaf(&["expiry.test"], Validity::days(-1, 30));
        let not_after = cert_not_after(&leaf.cert).expect("parses");
        let days = (not_after - Utc::now()).num_hours() as f64 / 24.0;
        assert!((29.9..=30.0).contains(&days), "{days}");
        assert_eq!(cert_not_after(b"not a certificate"), None);
    }
}
