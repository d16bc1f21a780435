//! Who may ask for evidence (`[access] evidence = "any" | "pinned"`). Echo stays open to all.
//!
//! Under `pinned`, an evidence request carries the prober's Ed25519 public key and its
//! signature over [`locus_proto::request_auth::signed_message`]: the request and this
//! connection's TLS exporter value, so a signature seen on one connection is refused on any
//! other. The key must be one of the configured probers'.

use locus_proto::messages::{EvidenceRequest, HelloRequest, KeysRequest, RequestAuth};
use locus_proto::request_auth::{self, EXPORTER_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// The evidence access policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EvidenceAccess {
    /// Any prober may ask (the default).
    #[default]
    Any,
    /// Only requests signed by one of these Ed25519 public keys, on this connection.
    Pinned(Vec<[u8; PUBLIC_KEY_LEN]>),
}

/// Why a request was refused under [`EvidenceAccess::Pinned`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The request carries no signature: configure the prober's `key_file`.
    #[error("this responder answers evidence only to pinned probers: the request is unsigned")]
    Unsigned,
    /// The key or signature has the wrong length.
    #[error("malformed request signature: key of {key_len} bytes (expected {PUBLIC_KEY_LEN}), signature of {sig_len} (expected {SIGNATURE_LEN})")]
    Malformed { key_len: usize, sig_len: usize },
    /// The key is not one of the responder's `[access] probers`.
    #[error("prober key {key} is not pinned by this responder")]
    UnknownKey { key: String },
    /// The signature does not verify over this request on this connection (made for
    /// another request or another connection: a replay).
    #[error("the request signature does not verify on this connection")]
    BadSignature,
}

impl EvidenceAccess {
    /// Checks `req` on the connection whose exporter value is `exporter`.
    pub fn check(
        &self,
        req: &EvidenceRequest,
        exporter: &[u8; EXPORTER_LEN],
    ) -> Result<(), AccessError> {
        self.check_auth(req.auth.as_ref(), || {
            request_auth::signed_message(exporter, req)
        })
    }

    /// Checks a keys request on the connection whose exporter value is `exporter`: under
    /// `pinned` it is signed like an evidence request (REVIEW2 F8).
    pub fn check_keys(
        &self,
        req: &KeysRequest,
        exporter: &[u8; EXPORTER_LEN],
    ) -> Result<(), AccessError> {
        self.check_auth(req.auth.as_ref(), || {
            request_auth::signed_keys_message(exporter)
        })
    }

    /// Checks a hello (a pinned prober proving its key right after the handshake, REVIEW3 A)
    /// on the connection whose exporter value is `exporter`.
    pub fn check_hello(
        &self,
        req: &HelloRequest,
        exporter: &[u8; EXPORTER_LEN],
    ) -> Result<(), AccessError> {
        self.check_auth(Some(&req.auth), || {
            request_auth::signed_hello_message(exporter)
        })
    }

    fn check_auth(
        &self,
        auth: Option<&RequestAuth>,
        message: impl FnOnce() -> Vec<u8>,
    ) -> Result<(), AccessError> {
        let EvidenceAccess::Pinned(keys) = self else {
            return Ok(());
        };
        let auth = auth.ok_or(AccessError::Unsigned)?;
        if auth.public_key.len() != PUBLIC_KEY_LEN || auth.signature.len() != SIGNATURE_LEN {
            return Err(AccessError::Malformed {
                key_len: auth.public_key.len(),
                sig_len: auth.signature.len(),
            });
        }
        if !keys.iter().any(|k| k[..] == auth.public_key[..]) {
            return Err(AccessError::UnknownKey {
                key: hex::encode(&auth.public_key),
            });
        }
        let message = message();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &auth.public_key)
            .verify(&message, &auth.signature)
            .map_err(|_| AccessError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_proto::messages::Include;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn signed(k: &Ed25519KeyPair, exporter: &[u8; 32]) -> EvidenceRequest {
        let mut req = EvidenceRequest {
            nonce: vec![7; 32],
            include: Include::default(),
            issuer: None,
            sealed: None,
            auth: None,
        };
        let sig = k.sign(&request_auth::signed_message(exporter, &req));
        req.auth = Some(RequestAuth {
            public_key: k.public_key().as_ref().to_vec(),
            signature: sig.as_ref().to_vec(),
        });
        req
    }

    fn pinned(k: &Ed25519KeyPair) -> EvidenceAccess {
        EvidenceAccess::Pinned(vec![k.public_key().as_ref().try_into().unwrap()])
    }

    /// REVIEW2 F8: under `pinned`, keys go only to a pinned prober signing on this connection.
    #[test]
    fn a_keys_request_is_signed_like_an_evidence_request() {
        let k = key(1);
        let signed_keys = |k: &Ed25519KeyPair, exporter: &[u8; 32]| KeysRequest {
            auth: Some(RequestAuth {
                public_key: k.public_key().as_ref().to_vec(),
                signature: k
                    .sign(&request_auth::signed_keys_message(exporter))
                    .as_ref()
                    .to_vec(),
            }),
        };
        let access = pinned(&k);
        access
            .check_keys(&signed_keys(&k, &[5; 32]), &[5; 32])
            .unwrap();
        assert_eq!(
            access.check_keys(&signed_keys(&k, &[5; 32]), &[6; 32]),
            Err(AccessError::BadSignature)
        );
        assert!(matches!(
            access.check_keys(&signed_keys(&key(2), &[5; 32]), &[5; 32]),
            Err(AccessError::UnknownKey { .. })
        ));
    }

    /// REVIEW3 A: a hello verifies only on its connection, only for a pinned key, and a keys
    /// request's signature is no hello's.
    #[test]
    fn a_hello_is_signed_over_its_own_domain_and_connection() {
        let k = key(1);
        let hello = |k: &Ed25519KeyPair, m: Vec<u8>| HelloRequest {
            auth: RequestAuth {
                public_key: k.public_key().as_ref().to_vec(),
                signature: k.sign(&m).as_ref().to_vec(),
            },
        };
        let access = pinned(&k);
        let good = hello(&k, request_auth::signed_hello_message(&[5; 32]));
        access.check_hello(&good, &[5; 32]).unwrap();
        assert_eq!(
            access.check_hello(&good, &[6; 32]),
            Err(AccessError::BadSignature)
        );
        let keys_sig = hello(&k, request_auth::signed_keys_message(&[5; 32]));
        assert_eq!(
            access.check_hello(&keys_sig, &[5; 32]),
            Err(AccessError::BadSignature)
        );
        assert!(matches!(
            access.check_hello(
                &hello(&key(2), request_auth::signed_hello_message(&[5; 32])),
                &[5; 32]
            ),
            Err(AccessError::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_pinned_key_signing_on_this_connection_is_admitted() {
        let k = key(1);
        pinned(&k).check(&signed(&k, &[5; 32]), &[5; 32]).unwrap();
        EvidenceAccess::Any
            .check(&signed(&k, &[5; 32]), &[6; 32])
            .unwrap();
    }

    #[test]
    fn each_failure_has_its_variant() {
        let k = key(1);
        let access = pinned(&k);
        let mut unsigned = signed(&k, &[5; 32]);
        unsigned.auth = None;
        assert_eq!(
            access.check(&unsigned, &[5; 32]),
            Err(AccessError::Unsigned)
        );
        assert!(matches!(
            access.check(&signed(&key(2), &[5; 32]), &[5; 32]),
            Err(AccessError::UnknownKey { .. })
        ));
        // Replayed on another connection: another exporter value.
        assert_eq!(
            access.check(&signed(&k, &[5; 32]), &[6; 32]),
            Err(AccessError::BadSignature)
        );
        // The signature does not carry over to a changed request.
        let mut changed = signed(&k, &[5; 32]);
        changed.nonce = vec![8; 32];
        assert_eq!(
            access.check(&changed, &[5; 32]),
            Err(AccessError::BadSignature)
        );
        // An evidence request's signature is no keys request's (and neither is none).
        let mut keys = KeysRequest {
            auth: signed(&k, &[5; 32]).auth,
        };
        assert_eq!(
            access.check_keys(&keys, &[5; 32]),
            Err(AccessError::BadSignature)
        );
        keys.auth = None;
        assert_eq!(
            access.check_keys(&keys, &[5; 32]),
            Err(AccessError::Unsigned)
        );
        EvidenceAccess::Any.check_keys(&keys, &[5; 32]).unwrap();
        let mut short = signed(&k, &[5; 32]);
        short.auth.as_mut().unwrap().signature.pop();
        assert!(matches!(
            access.check(&short, &[5; 32]),
            Err(AccessError::Malformed { sig_len: 63, .. })
        ));
    }
}
