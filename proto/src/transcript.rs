//! The signed transcript: a running hash over every challenge a responder answered on one
//! connection, signed with the session key, so that a third party can later check that a stored
//! set of measurements was answered by that session (and by no other).
//!
//! Hash chain: `d_0 = SHA-256("locus/transcript/v1")`,
//! `d_{i+1} = SHA-256(d_i | seq:u64 | nonce:[u8; 32] | arrival:u64)`, entries in arrival order.
//! Signature: ECDSA P-256 / SHA-256 over `"locus/transcript-signature/v1\0" | count:u64 | d_count`.

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::Nonce;

const CHAIN_TAG: &[u8] = b"locus/transcript/v1";
const SIGNATURE_TAG: &[u8] = b"locus/transcript-signature/v1\0";

/// Running transcript of one connection.
#[derive(Debug, Clone)]
pub struct Transcript {
    digest: [u8; 32],
    count: u64,
}

impl Default for Transcript {
    fn default() -> Self {
        Self::new()
    }
}

impl Transcript {
    pub fn new() -> Self {
        Self {
            digest: Sha256::digest(CHAIN_TAG).into(),
            count: 0,
        }
    }

    /// Records one answered challenge; returns its arrival index.
    pub fn record(&mut self, seq: u64, nonce: &Nonce) -> u64 {
        let arrival = self.count;
        let mut h = Sha256::new();
        h.update(self.digest);
        h.update(seq.to_be_bytes());
        h.update(nonce);
        h.update(arrival.to_be_bytes());
        self.digest = h.finalize().into();
        self.count += 1;
        arrival
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Rebuilds a transcript from stored `(seq, nonce, arrival)` entries, in any order.
    ///
    /// Fails when the arrival indices are not exactly `0..n`.
    pub fn replay(
        entries: impl IntoIterator<Item = (u64, Nonce, u64)>,
    ) -> Result<Self, TranscriptError> {
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort_by_key(|e| e.2);
        let mut t = Self::new();
        for (seq, nonce, arrival) in entries {
            if arrival != t.count {
                return Err(TranscriptError::ArrivalGap {
                    expected: t.count,
                    found: arrival,
                });
            }
            t.record(seq, &nonce);
        }
        Ok(t)
    }

    /// Signs the transcript's current state with the session key.
    pub fn sign(&self, key: &SigningKey) -> SignedTranscript {
        let sig: Signature = key.sign(&signed_message(self.count, &self.digest));
        SignedTranscript {
            count: self.count,
            digest: self.digest.to_vec(),
            signature: sig.to_der().as_bytes().to_vec(),
        }
    }
}

/// A transcript state signed by the responder's session key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTranscript {
    pub count: u64,
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
    /// DER-encoded ECDSA P-256 signature.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl SignedTranscript {
    /// Checks the signature against the session's SubjectPublicKeyInfo (DER).
    pub fn verify(&self, spki_der: &[u8]) -> Result<(), TranscriptError> {
        let key = VerifyingKey::from_public_key_der(spki_der)
            .map_err(|_| TranscriptError::BadPublicKey)?;
        let digest: [u8; 32] =
            self.digest
                .as_slice()
                .try_into()
                .map_err(|_| TranscriptError::BadDigestLength {
                    found: self.digest.len(),
                })?;
        let sig = Signature::from_der(&self.signature)
            .map_err(|_| TranscriptError::BadSignatureEncoding)?;
        key.verify(&signed_message(self.count, &digest), &sig)
            .map_err(|_| TranscriptError::SignatureMismatch)
    }

    /// Checks the signature, then that `entries` are exactly what was signed.
    pub fn verify_entries(
        &self,
        spki_der: &[u8],
        entries: impl IntoIterator<Item = (u64, Nonce, u64)>,
    ) -> Result<(), TranscriptError> {
        self.verify(spki_der)?;
        let t = Transcript::replay(entries)?;
        if t.count != self.count || t.digest.as_slice() != self.digest.as_slice() {
            return Err(TranscriptError::EntriesMismatch {
                signed_count: self.count,
                found_count: t.count,
            });
        }
        Ok(())
    }
}

fn signed_message(count: u64, digest: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_TAG.len() + 40);
    m.extend_from_slice(SIGNATURE_TAG);
    m.extend_from_slice(&count.to_be_bytes());
    m.extend_from_slice(digest);
    m
}

/// Why a signed transcript was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TranscriptError {
    #[error("session public key is not a P-256 SubjectPublicKeyInfo")]
    BadPublicKey,
    #[error("transcript digest must be 32 bytes, found {found}")]
    BadDigestLength { found: usize },
    #[error("transcript signature is not DER-encoded ECDSA")]
    BadSignatureEncoding,
    #[error("transcript signature does not verify under the session key")]
    SignatureMismatch,
    #[error("stored entries skip an arrival index: expected {expected}, found {found}")]
    ArrivalGap { expected: u64, found: u64 },
    #[error("stored entries ({found_count}) do not hash to the signed transcript ({signed_count} entries)")]
    EntriesMismatch { signed_count: u64, found_count: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePublicKey;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    fn spki(k: &SigningKey) -> Vec<u8> {
        k.verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn signed_entries_verify_and_tampering_is_caught() {
        let k = key();
        let mut t = Transcript::new();
        let entries: Vec<_> = (0..5u64)
            .map(|s| {
                let n = [s as u8; 32];
                (s, n, t.record(s, &n))
            })
            .collect();
        let signed = t.sign(&k);
        // Stored out of order is fine: arrival indices order them.
        let mut shuffled = entries.clone();
        shuffled.reverse();
        assert_eq!(signed.verify_entries(&spki(&k), shuffled), Ok(()));

        let mut wrong_nonce = entries.clone();
        wrong_nonce[2].1[0] ^= 1;
        assert!(matches!(
            signed.verify_entries(&spki(&k), wrong_nonce),
            Err(TranscriptError::EntriesMismatch { .. })
        ));

        let dropped = entries[..4].to_vec();
        assert!(matches!(
            signed.verify_entries(&spki(&k), dropped),
            Err(TranscriptError::EntriesMismatch { .. })
        ));

        let other = SigningKey::from_slice(&[8u8; 32]).unwrap();
        assert_eq!(
            signed.verify(&spki(&other)),
            Err(TranscriptError::SignatureMismatch)
        );

        let mut forged = signed.clone();
        forged.count += 1;
        assert_eq!(
            forged.verify(&spki(&k)),
            Err(TranscriptError::SignatureMismatch)
        );

        let mut gap = entries.clone();
        gap[1].2 = 9;
        assert!(matches!(
            Transcript::replay(gap),
            Err(TranscriptError::ArrivalGap {
                expected: 1,
                found: 2
            })
        ));
    }
}
