//! Telnyx webhook signatures: Ed25519 over `"{telnyx-timestamp}|{raw body}"`, the signature
//! base64 in `telnyx-signature-ed25519`, checked with the account's public key (base64 of the
//! 32 raw key bytes, from the portal) and a timestamp within ±300 s of now, so a captured
//! webhook cannot be replayed later. Source: team-telnyx/telnyx-python
//! `src/telnyx/lib/webhook_verification.py` (`verify_signature`: headers, message, tolerance).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

/// How far a webhook's timestamp may be from our clock (the SDK's tolerance).
pub const TOLERANCE_SECS: i64 = 300;

pub const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "telnyx-timestamp";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("TELNYX_PUBLIC_KEY is not base64 of a 32-byte Ed25519 public key")]
    BadKey,
    #[error("missing telnyx-signature-ed25519 or telnyx-timestamp")]
    Missing,
    #[error("telnyx-timestamp is not a Unix time")]
    BadTimestamp,
    #[error("telnyx-timestamp is {0} s away from now")]
    Stale(i64),
    #[error("the signature is not base64 of 64 bytes")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// The account's public key, parsed once at startup.
#[derive(Debug, Clone)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_base64(b64: &str) -> Result<PublicKey, SignatureError> {
        let bytes = BASE64
            .decode(b64.trim())
            .map_err(|_| SignatureError::BadKey)?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| SignatureError::BadKey)?;
        VerifyingKey::from_bytes(&raw)
            .map(PublicKey)
            .map_err(|_| SignatureError::BadKey)
    }

    /// Checks one webhook: `now_unix` is passed in so the check stays pure and testable.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), SignatureError> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(SignatureError::Missing);
        };
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        let skew = now_unix.saturating_sub(ts);
        if skew.abs() > TOLERANCE_SECS {
            return Err(SignatureError::Stale(skew));
        }
        let sig = BASE64
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| SignatureError::Malformed)?;
        let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.push(b'|');
        message.extend_from_slice(body);
        self.0
            .verify(&message, &Signature::from_bytes(&sig))
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// What Telnyx would send for `body` at `timestamp`, signed with `key`: for tests and the
/// load generator's fake Telnyx.
pub fn sign(key: &ed25519_dalek::SigningKey, timestamp: &str, body: &[u8]) -> String {
    use ed25519_dalek::Signer;
    let mut message = timestamp.as_bytes().to_vec();
    message.push(b'|');
    message.extend_from_slice(body);
    BASE64.encode(key.sign(&message).to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn keys() -> (SigningKey, PublicKey) {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let pk = PublicKey::from_base64(&BASE64.encode(sk.verifying_key().to_bytes())).unwrap();
        (sk, pk)
    }

    #[test]
    fn a_signed_body_verifies_and_any_change_does_not() {
        let (sk, pk) = keys();
        let body = br#"{"data":{"event_type":"call.initiated"}}"#;
        let sig = sign(&sk, "1700000000", body);
        assert_eq!(
            pk.verify(Some("1700000000"), Some(&sig), body, 1_700_000_010),
            Ok(())
        );
        let tampered = br#"{"data":{"event_type":"call.hangup"}}"#;
        assert_eq!(
            pk.verify(Some("1700000000"), Some(&sig), tampered, 1_700_000_010),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is part of the signed message: moving it breaks the signature.
        assert_eq!(
            pk.verify(Some("1700000001"), Some(&sig), body, 1_700_000_010),
            Err(SignatureError::Mismatch)
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let forged = sign(&other, "1700000000", body);
        assert_eq!(
            pk.verify(Some("1700000000"), Some(&forged), body, 1_700_000_010),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_missing_and_malformed_are_refused() {
        let (sk, pk) = keys();
        let body = b"{}";
        let sig = sign(&sk, "1700000000", body);
        assert_eq!(
            pk.verify(Some("1700000000"), Some(&sig), body, 1_700_000_301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            pk.verify(Some("1700000000"), Some(&sig), body, 1_699_999_600),
            Err(SignatureError::Stale(-400))
        );
        assert_eq!(
            pk.verify(None, Some(&sig), body, 1_700_000_000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            pk.verify(Some("soon"), Some(&sig), body, 1_700_000_000),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            pk.verify(Some("1700000000"), Some("c2hvcnQ="), body, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            PublicKey::from_base64("c2hvcnQ=").unwrap_err(),
            SignatureError::BadKey
        );
    }
}
