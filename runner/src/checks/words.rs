//! TLS failures in the words a person on call reads: one plain sentence,
//! dates as ISO days with the time relative to now, never a library's
//! `Debug` value. Shared by the `tls` check and the `http` check over HTTPS,
//! so one certificate problem reads the same in both.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use chrono::{DateTime, Utc};
use rustls::{AlertDescription, CertificateError, PeerIncompatible};

/// A certificate verdict already put in words (by the `http` check's
/// verifier), carried through rustls as `CertificateError::Other`.
#[derive(Debug)]
pub(crate) struct Explained(pub(crate) String);

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Explained {}

/// `2026-11-29`.
pub(crate) fn date(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d").to_string()
}

/// `1 day`, `3 days`.
pub(crate) fn days_text(days: i64) -> String {
    if days == 1 { "1 day".to_owned() } else { format!("{days} days") }
}

/// `expired 2026-11-29 (3 days ago)`: whole days, rounded down.
pub(crate) fn expired(not_after: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let ago = (now - not_after).num_seconds().max(0) / 86_400;
    format!("expired {} ({} ago)", date(not_after), days_text(ago))
}

/// `is not valid until 2026-12-14 (in 10 days)`: rounded up, so valid in
/// 9.5 days is "in 10 days".
pub(crate) fn not_yet_valid(not_before: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let until = ((not_before - now).num_seconds() as f64 / 86_400.0).ceil() as i64;
    format!("is not valid until {} (in {})", date(not_before), days_text(until))
}

/// Why a TLS handshake with `peer` failed. A certificate the verifier judged
/// is reported in the `tls` check's words alone; anything else is
/// `TLS handshake with <peer> failed: <why>`.
pub(crate) fn handshake_failure(peer: impl fmt::Display, error: &(dyn StdError + 'static)) -> String {
    match rustls_error(error) {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
            match other.0.downcast_ref::<Explained>() {
                Some(explained) => explained.0.clone(),
                None => format!("TLS handshake with {peer} failed: the certificate is refused: {}", other.0),
            }
        }
        Some(tls) => format!("TLS handshake with {peer} failed: {}", tls_error(tls)),
        None => format!("TLS handshake with {peer} failed: {}", io_words(error)),
    }
}

/// The rustls error somewhere in `error`'s chain. `io::Error` hides the
/// error it wraps from `source()`, so each one is opened.
pub(crate) fn rustls_error<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        next = error.source();
    }
    None
}

/// A socket error during the handshake.
fn io_words(error: &(dyn StdError + 'static)) -> String {
    match error.downcast_ref::<io::Error>().map(io::Error::kind) {
        Some(io::ErrorKind::UnexpectedEof) => "the server closed the connection during the handshake".to_owned(),
        Some(io::ErrorKind::ConnectionReset) => "the server reset the connection during the handshake".to_owned(),
        _ => protocol::error_chain(error),
    }
}

/// A socket error as a clause: `connection refused`, without the OS's
/// error number.
pub(crate) fn socket_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::UnexpectedEof => "the connection closed before the answer was complete".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        _ => error.to_string(),
    }
}

/// A rustls error as a clause.
pub(crate) fn tls_error(error: &rustls::Error) -> String {
    use rustls::Error as E;
    match error {
        E::AlertReceived(alert) => alert_words(*alert),
        E::PeerIncompatible(why) => incompatible_words(why),
        E::InvalidCertificate(error) => certificate_error(error),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. }
        | E::PeerSentOversizedRecord => "the server does not speak TLS (its answer is not a TLS handshake)".to_owned(),
        E::NoCertificatesPresented => "the server sent no certificate".to_owned(),
        E::DecryptError => "the server's messages cannot be decrypted".to_owned(),
        E::PeerMisbehaved(why) => format!("the server broke the TLS protocol ({})", snake(&format!("{why:?}"))),
        E::General(text) => text.clone(),
        other => other.to_string(),
    }
}

/// What the server's alert means for the client that got it.
fn alert_words(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::ProtocolVersion => {
            "the server accepts none of the TLS versions picket offers (TLS 1.2 and 1.3)".to_owned()
        }
        AlertDescription::CertificateRequired => "the server requires a client certificate".to_owned(),
        AlertDescription::HandshakeFailure => {
            "the server refused the handshake: no cipher suite, key exchange or signature scheme in common".to_owned()
        }
        AlertDescription::UnrecognisedName => "the server does not serve the name picket asked for (SNI)".to_owned(),
        AlertDescription::AccessDenied => "the server denied access".to_owned(),
        // RFC 8446 names its alerts in snake case: `internal_error`.
        other => format!("the server ended the handshake with the TLS alert {}", snake(&format!("{other:?}"))),
    }
}

fn incompatible_words(why: &PeerIncompatible) -> String {
    match why {
        PeerIncompatible::ServerDoesNotSupportTls12Or13 => {
            "the server offers only TLS 1.1 or older; picket needs TLS 1.2 or later".to_owned()
        }
        PeerIncompatible::NoCipherSuitesInCommon => "the server offers no cipher suite picket supports".to_owned(),
        PeerIncompatible::NoKxGroupsInCommon => "the server offers no key exchange group picket supports".to_owned(),
        PeerIncompatible::NoSignatureSchemesInCommon => {
            "the server offers no signature scheme picket supports".to_owned()
        }
        other => format!("the server's TLS is incompatible with picket's ({})", snake(&format!("{other:?}"))),
    }
}

/// A certificate error webpki found, as a clause. Dates carry their context
/// when webpki gave it.
pub(crate) fn certificate_error(error: &CertificateError) -> String {
    let now = Utc::now();
    let at = |time: rustls::pki_types::UnixTime| {
        DateTime::from_timestamp(i64::try_from(time.as_secs()).unwrap_or(i64::MAX), 0).unwrap_or(now)
    };
    match error {
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("the certificate {}", expired(at(*not_after), now))
        }
        CertificateError::Expired => "the certificate has expired".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("the certificate {}", not_yet_valid(at(*not_before), now))
        }
        CertificateError::NotValidYet => "the certificate is not valid yet".to_owned(),
        CertificateError::UnknownIssuer => "unknown issuer".to_owned(),
        CertificateError::BadEncoding => "a certificate does not parse".to_owned(),
        CertificateError::BadSignature => "a certificate's signature does not verify".to_owned(),
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "a certificate is signed with an algorithm picket does not support".to_owned()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the certificate is not valid for this name".to_owned()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the certificate is not meant for TLS servers".to_owned()
        }
        CertificateError::Revoked => "the certificate is revoked".to_owned(),
        CertificateError::UnhandledCriticalExtension => {
            "a certificate has a critical extension picket does not know".to_owned()
        }
        CertificateError::Other(other) => other.0.to_string(),
        other => format!("the certificate is invalid ({})", snake(&format!("{other:?}"))),
    }
}

/// `ServerDoesNotSupportTls12Or13` as `server_does_not_support_tls12_or13`,
/// for the few variants with no sentence of their own. Anything after the
/// variant's name (a `Debug` struct body) is dropped.
fn snake(debug: &str) -> String {
    let name = debug.split([' ', '(', '{']).next().unwrap_or_default();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
