//! What a pinned prober signs to ask for evidence (`[access] evidence = "pinned"`).
//!
//! The signature covers the request (its canonical CBOR with `auth` left out) and a value both
//! ends derive from the connection's TLS secrets ([`EXPORTER_LABEL`], RFC 8446 §7.5): a
//! signed request lifted from one connection does not verify on any other, even to the same
//! responder with the same session key. The key itself is checked by the caller against its
//! list of pinned probers; this module only builds the bytes, so it stays free of I/O.

use sha2::{Digest, Sha256};

use crate::messages::EvidenceRequest;

/// TLS exporter label both ends use (`quinn::Connection::export_keying_material`).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-locus-evidence-auth";
/// Bytes of exporter output signed over.
pub const EXPORTER_LEN: usize = 32;
/// Domain separation: these bytes are never a valid message of another locus signature.
const DOMAIN: &[u8] = b"locus/1 evidence request\0";
/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Domain of a keys request's signature: never an evidence request's.
const KEYS_DOMAIN: &[u8] = b"locus/1 keys request\0";

/// The bytes a prober signs for a keys request on the connection whose exporter value is
/// given: `KEYS_DOMAIN || exporter` (the request carries nothing else).
pub fn signed_keys_message(exporter: &[u8; EXPORTER_LEN]) -> Vec<u8> {
    let mut m = Vec::with_capacity(KEYS_DOMAIN.len() + EXPORTER_LEN);
    m.extend_from_slice(KEYS_DOMAIN);
    m.extend_from_slice(exporter);
    m
}

/// Domain of a hello's signature: never a keys or evidence request's.
const HELLO_DOMAIN: &[u8] = b"locus/1 hello\0";

/// The bytes a prober signs for a hello on the connection whose exporter value is given:
/// `HELLO_DOMAIN || exporter`. Bound to the connection like a request, so it proves nothing
/// on any other connection.
pub fn signed_hello_message(exporter: &[u8; EXPORTER_LEN]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HELLO_DOMAIN.len() + EXPORTER_LEN);
    m.extend_from_slice(HELLO_DOMAIN);
    m.extend_from_slice(exporter);
    m
}

/// The bytes a prober signs for `request` on the connection whose exporter value is given:
/// `DOMAIN || exporter || SHA-256(canonical CBOR of request without auth)`.
pub fn signed_message(exporter: &[u8; EXPORTER_LEN], request: &EvidenceRequest) -> Vec<u8> {
    let unsigned = EvidenceRequest {
        auth: None,
        ..request.clone()
    };
    let digest = Sha256::digest(crate::cbor::encode(&unsigned));
    let mut m = Vec::with_capacity(DOMAIN.len() + EXPORTER_LEN + 32);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(exporter);
    m.extend_from_slice(&digest);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Include, RequestAuth};

    fn request() -> EvidenceRequest {
        EvidenceRequest {
            nonce: vec![1; 32],
            include: Include::default(),
            issuer: None,
            sealed: None,
            auth: None,
        }
    }

    #[test]
    fn the_message_ignores_auth_and_binds_connection_and_request() {
        let a = signed_message(&[1; 32], &request());
        let mut signed = request();
        signed.auth = Some(RequestAuth {
            public_key: vec![2; 32],
            signature: vec![3; 64],
        });
        assert_eq!(signed_message(&[1; 32], &signed), a);
        assert_ne!(
            signed_message(&[2; 32], &request()),
            a,
            "another connection"
        );
        let mut other = request();
        other.nonce = vec![9; 32];
        assert_ne!(signed_message(&[1; 32], &other), a, "another request");
    }

    /// A hello, a keys request and an evidence request never sign the same bytes.
    #[test]
    fn hello_keys_and_evidence_domains_differ() {
        let e = [4; 32];
        let hello = signed_hello_message(&e);
        assert_ne!(hello, signed_keys_message(&e));
        assert!(!signed_message(&e, &request()).starts_with(&hello[..hello.len() - 32]));
        assert_ne!(hello, signed_hello_message(&[5; 32]), "another connection");
    }
}
