//! HMAC-SHA256 signatures of message bodies, carried in `x-picket-sig`.

use lapin::types::FieldTable;

use crate::consume::header_str;

/// Header carrying the HMAC-SHA256 of the body, hex.
pub(crate) const SIGNATURE_HEADER: &str = "x-picket-sig";

/// The signing key; its `Debug` output never shows it.
pub(crate) struct Signer {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<PICKET_SIGNING_KEY>)")
    }
}

impl Signer {
    pub(crate) fn new(key: &str) -> Self {
        Self { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes()) }
    }

    pub(crate) fn sign(&self, body: &[u8]) -> String {
        hex(ring::hmac::sign(&self.key, body).as_ref())
    }

    pub(crate) fn verify(&self, body: &[u8], headers: Option<&FieldTable>) -> Result<(), String> {
        let sig = header_str(headers, SIGNATURE_HEADER).ok_or("unsigned request (PICKET_SIGNING_KEY is set)")?;
        let bytes = unhex(&sig).ok_or("malformed signature")?;
        ring::hmac::verify(&self.key, body, &bytes).map_err(|_| "bad signature".to_owned())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
