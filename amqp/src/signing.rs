//! HMAC-SHA256 signatures of message bodies, carried in `x-picket-sig`.
//!
//! Every body is signed with the current key. Verification accepts the
//! current key and, during a rotation, the previous one, so roles can be
//! rolled one by one without refusing each other's messages.

use ring::hmac;

/// Header carrying the HMAC-SHA256 of the body, hex.
pub(crate) const SIGNATURE_HEADER: &str = "x-picket-sig";

/// Why a message was not accepted as signed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unauthenticated {
    #[error("unsigned (PICKET_SIGNING_KEY is set)")]
    Unsigned,
    #[error("malformed signature")]
    Malformed,
    #[error("bad signature")]
    Bad,
}

/// The signing keys; `Debug` never shows them.
pub(crate) struct Signer {
    current: hmac::Key,
    /// Accepted for verification only, while a rotation is rolled out.
    previous: Option<hmac::Key>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("previous", &self.previous.is_some()).finish_non_exhaustive()
    }
}

impl Signer {
    pub(crate) fn new(current: &str, previous: Option<&str>) -> Self {
        let key = |k: &str| hmac::Key::new(hmac::HMAC_SHA256, k.as_bytes());
        Self { current: key(current), previous: previous.map(key) }
    }

    pub(crate) fn sign(&self, body: &[u8]) -> String {
        hex(hmac::sign(&self.current, body).as_ref())
    }

    /// Accepts `signature` if the current or the previous key made it over `body`.
    pub(crate) fn verify(&self, body: &[u8], signature: Option<&str>) -> Result<(), Unauthenticated> {
        let bytes = unhex(signature.ok_or(Unauthenticated::Unsigned)?).ok_or(Unauthenticated::Malformed)?;
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|key| hmac::verify(key, body, &bytes).is_ok())
            .then_some(())
            .ok_or(Unauthenticated::Bad)
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

    const OLD: &str = "old-key-0123456789";
    const NEW: &str = "new-key-0123456789";
    const BODY: &[u8] = br#"{"v":1,"kind":"keepalive"}"#;

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn a_signature_of_the_current_key_verifies() {
        let signer = Signer::new(NEW, None);
        assert_eq!(signer.verify(BODY, Some(&signer.sign(BODY))), Ok(()));
    }

    #[test]
    fn a_changed_body_or_another_key_is_refused() {
        let signer = Signer::new(NEW, None);
        let sig = signer.sign(BODY);
        assert_eq!(signer.verify(b"{}", Some(&sig)), Err(Unauthenticated::Bad));
        let other = Signer::new(OLD, None).sign(BODY);
        assert_eq!(signer.verify(BODY, Some(&other)), Err(Unauthenticated::Bad));
    }

    #[test]
    fn unsigned_and_malformed_signatures_are_refused() {
        let signer = Signer::new(NEW, None);
        assert_eq!(signer.verify(BODY, None), Err(Unauthenticated::Unsigned));
        assert_eq!(signer.verify(BODY, Some("not hex")), Err(Unauthenticated::Malformed));
        assert_eq!(signer.verify(BODY, Some("")), Err(Unauthenticated::Bad));
    }

    /// Mid-rotation: a role signing with the new key and holding the old one
    /// as previous reads what old roles still sign; once previous is
    /// dropped, the old key's signatures are refused.
    #[test]
    fn the_previous_key_verifies_but_never_signs() {
        let rotated = Signer::new(NEW, Some(OLD));
        let old_role = Signer::new(OLD, None);
        assert_eq!(rotated.verify(BODY, Some(&old_role.sign(BODY))), Ok(()));
        assert_eq!(rotated.sign(BODY), Signer::new(NEW, None).sign(BODY));
        assert_eq!(old_role.verify(BODY, Some(&rotated.sign(BODY))), Err(Unauthenticated::Bad));
        let after = Signer::new(NEW, None);
        assert_eq!(after.verify(BODY, Some(&old_role.sign(BODY))), Err(Unauthenticated::Bad));
    }

    #[test]
    fn debug_shows_no_key() {
        let text = format!("{:?}", Signer::new(NEW, Some(OLD)));
        assert!(!text.contains(NEW) && !text.contains(OLD), "{text}");
    }
}
