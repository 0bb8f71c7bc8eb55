//! What a served certificate chain says, independently of the clock and of
//! webpki's verdict: each certificate's facts, and the path from the leaf to
//! a trust anchor through the served certificates.
//!
//! webpki says whether the chain is trusted now, but not which certificates it
//! used, and nothing at all once one of them has expired. Building the path
//! here (issuer name match and a verifying signature, like webpki) tells the
//! chain's real earliest expiry, and which served certificates are extra
//! baggage (an expired cross-sign, say) that must not be mistaken for it.

use std::borrow::Cow;
use std::cell::Cell;
use std::cmp::Reverse;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use rustls::pki_types::{CertificateDer, TrustAnchor};
use serde::Serialize;
use x509_parser::asn1_rs::{Sequence, ToDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// Served chains longer than this are not followed further.
const MAX_PATH_LEN: usize = 8;

/// Signature verifications one analysis may spend, so that a server serving
/// many look-alike certificates cannot make path building explode.
const SIGNATURE_BUDGET: u32 = 100;

/// The facts of one certificate, owned, for the output and the details.
#[derive(Clone, Debug, Serialize)]
pub(super) struct CertInfo {
    pub(super) subject: String,
    pub(super) issuer: String,
    pub(super) serial: String,
    pub(super) sans: Vec<String>,
    pub(super) not_before: DateTime<Utc>,
    pub(super) not_after: DateTime<Utc>,
    /// Days until `not_after`, fractional, negative once expired.
    pub(super) days_left: f64,
    /// SHA-256 of the DER certificate, as colon-separated hex.
    pub(super) sha256: String,
}

impl CertInfo {
    fn new(cert: &X509Certificate<'_>, der: &[u8], now: DateTime<Utc>) -> Self {
        let not_after = datetime(cert.validity().not_after.timestamp());
        Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            sans: subject_alt_names(cert),
            not_before: datetime(cert.validity().not_before.timestamp()),
            not_after,
            days_left: (not_after - now).num_seconds() as f64 / 86_400.0,
            sha256: fingerprint(der),
        }
    }

    pub(super) fn expired(&self, now: DateTime<Utc>) -> bool {
        self.not_after <= now
    }

    pub(super) fn not_yet_valid(&self, now: DateTime<Utc>) -> bool {
        self.not_before > now
    }

    /// How the certificate is named in messages: its subject, or its first
    /// SAN when the subject is empty (as in many modern leaves).
    pub(super) fn label(&self) -> String {
        if !self.subject.is_empty() {
            return self.subject.clone();
        }
        self.sans.first().cloned().unwrap_or_else(|| "(no subject)".to_owned())
    }
}

/// The served chain, analysed.
#[derive(Debug)]
pub(super) struct ServedChain {
    /// The path from the leaf (first) toward a trust anchor; anchors are not
    /// included (a root store keeps no validity dates). When no anchor is
    /// reachable, the longest issuer path found among the served certificates.
    pub(super) path: Vec<CertInfo>,
    /// Whether the path's last certificate is signed by a trust anchor.
    pub(super) anchored: bool,
    /// Served certificates that are not on the path.
    pub(super) unused: Vec<CertInfo>,
    /// The leaf is signed by its own key and names itself as its issuer.
    pub(super) leaf_self_signed: bool,
}

impl ServedChain {
    /// The path always starts with the leaf, so it is never empty.
    pub(super) fn leaf(&self) -> &CertInfo {
        &self.path[0]
    }

    /// The path certificate that expires first and its index on the path
    /// (0, the leaf, on a tie).
    pub(super) fn earliest(&self) -> (usize, &CertInfo) {
        self.path.iter().enumerate().min_by_key(|(_, cert)| cert.not_after).unwrap_or((0, self.leaf()))
    }
}

/// Analyses the served `leaf` and `others` against `anchors` at `now`.
/// Served certificates that do not parse cannot be on any path and are left
/// out; a leaf that does not parse is an error.
pub(super) fn analyze(
    leaf_der: &CertificateDer<'_>,
    others: &[CertificateDer<'_>],
    anchors: &[TrustAnchor<'_>],
    now: DateTime<Utc>,
) -> Result<ServedChain, String> {
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| format!("the served certificate does not parse: {e}"))?;
    let mut certs = vec![(leaf_der, leaf)];
    certs.extend(others.iter().filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| (der, cert))));
    let parsed: Vec<&X509Certificate<'_>> = certs.iter().map(|(_, cert)| cert).collect();

    let finder = PathFinder { certs: &parsed, anchors, now: now.timestamp(), budget: Cell::new(SIGNATURE_BUDGET) };
    let mut indices = vec![0];
    let anchored = finder.find_anchored(&mut indices);
    if !anchored {
        indices = finder.best_effort();
    }
    let leaf_self_signed = finder.self_signed(0);

    let info = |i: usize| CertInfo::new(&certs[i].1, certs[i].0, now);
    Ok(ServedChain {
        path: indices.iter().map(|&i| info(i)).collect(),
        anchored,
        unused: (0..certs.len()).filter(|i| !indices.contains(i)).map(info).collect(),
        leaf_self_signed,
    })
}

/// Searches issuer paths among the served certificates (indices into
/// `certs`, the leaf at 0).
struct PathFinder<'c, 'a> {
    certs: &'c [&'c X509Certificate<'c>],
    anchors: &'a [TrustAnchor<'a>],
    /// Seconds since the epoch.
    now: i64,
    budget: Cell<u32>,
}

impl PathFinder<'_, '_> {
    /// Extends `path` depth-first until its last certificate is signed by a
    /// trust anchor; true when found (then `path` is that path). Currently
    /// valid issuers are tried first, then the longest-lived.
    fn find_anchored(&self, path: &mut Vec<usize>) -> bool {
        let Some(&current) = path.last() else {
            return false;
        };
        if self.signed_by_anchor(current) {
            return true;
        }
        if path.len() >= MAX_PATH_LEN {
            return false;
        }
        for issuer in self.issuers(current, path) {
            path.push(issuer);
            if self.find_anchored(path) {
                return true;
            }
            path.pop();
        }
        false
    }

    /// Without an anchor: follow the preferred served issuer as far as it goes.
    fn best_effort(&self) -> Vec<usize> {
        let mut path = vec![0];
        while path.len() < MAX_PATH_LEN {
            let Some(&current) = path.last() else { break };
            match self.issuers(current, &path).first() {
                Some(&next) => path.push(next),
                None => break,
            }
        }
        path
    }

    /// Served certificates (not in `exclude`) named as `child`'s issuer
    /// whose key verifies `child`'s signature, best first.
    fn issuers(&self, child: usize, exclude: &[usize]) -> Vec<usize> {
        let cert = self.certs[child];
        let mut found: Vec<usize> = (0..self.certs.len())
            .filter(|i| !exclude.contains(i))
            .filter(|&i| self.certs[i].subject().as_raw() == cert.issuer().as_raw())
            .filter(|&i| self.verifies(cert, self.certs[i].public_key()))
            .collect();
        found.sort_by_key(|&i| {
            let validity = self.certs[i].validity();
            let valid_now = validity.not_before.timestamp() <= self.now && self.now < validity.not_after.timestamp();
            (!valid_now, Reverse(validity.not_after.timestamp()))
        });
        found
    }

    /// Whether a trust anchor named as the certificate's issuer signed it.
    fn signed_by_anchor(&self, child: usize) -> bool {
        let cert = self.certs[child];
        let Ok((_, issuer)) = <Sequence as FromDer>::from_der(cert.issuer().as_raw()) else {
            return false;
        };
        self.anchors.iter().filter(|anchor| anchor.subject.as_ref() == issuer.content.as_ref()).any(|anchor| {
            // The anchor keeps the SubjectPublicKeyInfo's contents: wrap them
            // back into the SEQUENCE x509-parser expects.
            let Ok(spki_der) = Sequence::new(Cow::Borrowed(anchor.subject_public_key_info.as_ref())).to_der_vec()
            else {
                return false;
            };
            SubjectPublicKeyInfo::from_der(&spki_der).is_ok_and(|(_, spki)| self.verifies(cert, &spki))
        })
    }

    fn self_signed(&self, index: usize) -> bool {
        let cert = self.certs[index];
        cert.subject().as_raw() == cert.issuer().as_raw() && self.verifies(cert, cert.public_key())
    }

    /// Verifies `cert`'s signature with `key`, within the budget.
    fn verifies(&self, cert: &X509Certificate<'_>, key: &SubjectPublicKeyInfo<'_>) -> bool {
        let left = self.budget.get();
        if left == 0 {
            return false;
        }
        self.budget.set(left - 1);
        cert.verify_signature(Some(key)).is_ok()
    }
}

/// DNS names and IP addresses of the subjectAltName extension.
fn subject_alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(extension)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => ip_address(bytes).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// X.509 dates (years 0 to 9999) always fit chrono's range.
fn datetime(timestamp: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(timestamp, 0).unwrap_or(DateTime::UNIX_EPOCH)
}
