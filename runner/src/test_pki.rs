//! Test certificates (rcgen), TLS servers on 127.0.0.1 and a request-head
//! reader, shared by the tests of the `tls` and `http` checks.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::NamedTempFile;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A validity window in days relative to now: `Validity::days(-1, 90)` is
/// valid from yesterday until 90 days from now.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validity {
    pub(crate) from_days: i64,
    pub(crate) to_days: i64,
}

impl Validity {
    pub(crate) fn days(from_days: i64, to_days: i64) -> Self {
        Self { from_days, to_days }
    }

    fn apply(self, params: &mut CertificateParams) {
        let now = OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(self.from_days);
        params.not_after = now + time::Duration::days(self.to_days);
    }
}

/// A certificate authority (root or intermediate) that issues certificates.
pub(crate) struct Authority {
    pub(crate) cert: CertificateDer<'static>,
    pub(crate) pem: String,
    params: CertificateParams,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate with its private key.
pub(crate) struct Leaf {
    pub(crate) cert: CertificateDer<'static>,
    pub(crate) pem: String,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Authority {
    /// A self-signed root CA named `CN=<common_name>`, valid ten years.
    pub(crate) fn root(common_name: &str) -> Self {
        let params = ca_params(common_name, Validity::days(-30, 3650));
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self { cert: cert.der().clone(), pem: cert.pem(), issuer: Issuer::new(params.clone(), key), params }
    }

    /// An intermediate CA issued by this authority.
    pub(crate) fn intermediate(&self, common_name: &str, validity: Validity) -> Self {
        let params = ca_params(common_name, validity);
        let key = KeyPair::generate().expect("intermediate key");
        let cert = params.signed_by(&key, &self.issuer).expect("intermediate");
        Self { cert: cert.der().clone(), pem: cert.pem(), issuer: Issuer::new(params.clone(), key), params }
    }

    /// This authority's name and key certified again by `other`, as in a
    /// cross-signed root, with its own validity.
    pub(crate) fn cross_signed_by(&self, other: &Authority, validity: Validity) -> CertificateDer<'static> {
        let mut params = self.params.clone();
        validity.apply(&mut params);
        params.signed_by(self.issuer.key(), &other.issuer).expect("cross-signed").der().clone()
    }

    /// A server certificate for `names` (DNS names or IP addresses); the
    /// first name is also its common name.
    pub(crate) fn leaf(&self, names: &[&str], validity: Validity) -> Leaf {
        let (params, key) = leaf_params(names, validity);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Leaf { cert: cert.der().clone(), pem: cert.pem(), key: private_key(&key) }
    }

    /// A PEM file holding this authority's certificate, for `ca_file`.
    pub(crate) fn ca_file(&self) -> NamedTempFile {
        pem_file(&self.pem)
    }
}

impl Leaf {
    /// A self-signed server certificate, issued by no authority.
    pub(crate) fn self_signed(names: &[&str], validity: Validity) -> Self {
        let (params, key) = leaf_params(names, validity);
        let cert = params.self_signed(&key).expect("self-signed leaf");
        Self { cert: cert.der().clone(), pem: cert.pem(), key: private_key(&key) }
    }
}

fn ca_params(common_name: &str, validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity.apply(&mut params);
    params
}

fn leaf_params(names: &[&str], validity: Validity) -> (CertificateParams, KeyPair) {
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf names");
    params.distinguished_name.remove(DnType::CommonName);
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity.apply(&mut params);
    (params, KeyPair::generate().expect("leaf key"))
}

fn private_key(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// A temporary file holding `pem`, for `ca_file`.
pub(crate) fn pem_file(pem: &str) -> NamedTempFile {
    let mut file = NamedTempFile::new().expect("temp file");
    file.write_all(pem.as_bytes()).expect("write PEM");
    file
}

/// A rustls server configuration (ring) serving `chain` with `key`.
pub(crate) fn server_config(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    Arc::new(config)
}

/// Reads an HTTP request's head (up to the blank line, and whatever came
/// with it), None when the client left first.
pub(crate) async fn read_head(socket: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A TLS server on 127.0.0.1 that completes handshakes and holds each
/// connection open briefly, so the client sees a clean handshake.
pub(crate) async fn serve_tls(config: Arc<ServerConfig>) -> SocketAddr {
    serve_tls_with(config, |stream| async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(stream);
    })
    .await
}

/// A TLS server on 127.0.0.1 that hands each handshaken connection to
/// `handle` (on its own task). Failed handshakes are dropped.
pub(crate) async fn serve_tls_with<H, F>(config: Arc<ServerConfig>, handle: H) -> SocketAddr
where
    H: Fn(TlsStream<TcpStream>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let acceptor = TlsAcceptor::from(config);
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let handle = Arc::clone(&handle);
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    handle(stream).await;
                }
            });
        }
    });
    addr
}
