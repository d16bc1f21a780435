//! The verifier's record of the nonces it issued: issued by us, used once, within a window.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What this verifier recorded when it issued a nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceRecord {
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    /// The verifier that issued it.
    pub issuer: String,
    /// Issue time, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Whether a bundle was already accepted for it.
    #[serde(default)]
    pub used: bool,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Why the bundle's nonce is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NonceError {
    /// This verifier has no record of the nonce: foreign, or forged.
    #[error("nonce unknown to this verifier (foreign or forged)")]
    Unknown,
    #[error("the nonce record is for a different nonce")]
    Different,
    #[error("nonce issued by {found}, this verifier is {expected}")]
    ForeignIssuer { expected: String, found: String },
    #[error("nonce already used (replay)")]
    Replayed,
    #[error("nonce issued at {issued_at} expired after {max_age_secs} s (now {now})")]
    Expired {
        issued_at: u64,
        max_age_secs: u64,
        now: u64,
    },
    #[error("nonce issued at {issued_at}, after the verification time {now}")]
    IssuedInFuture { issued_at: u64, now: u64 },
}

impl NonceRecord {
    /// Checks that this record accepts `nonce` at `now`.
    pub fn check(
        &self,
        nonce: &[u8],
        issuer: &str,
        max_age_secs: u64,
        now: u64,
    ) -> Result<(), NonceError> {
        if self.nonce != nonce {
            return Err(NonceError::Different);
        }
        if self.issuer != issuer {
            return Err(NonceError::ForeignIssuer {
                expected: issuer.into(),
                found: self.issuer.clone(),
            });
        }
        if self.used {
            return Err(NonceError::Replayed);
        }
        if now < self.issued_at {
            return Err(NonceError::IssuedInFuture {
                issued_at: self.issued_at,
                now,
            });
        }
        if now - self.issued_at > max_age_secs {
            return Err(NonceError::Expired {
                issued_at: self.issued_at,
                max_age_secs,
                now,
            });
        }
        Ok(())
    }
}

/// An in-memory ledger of issued nonces (the prober or verifier keeps one; time comes in).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NonceLedger {
    issuer: String,
    records: HashMap<String, NonceRecord>,
}

impl NonceLedger {
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.into(),
            records: HashMap::new(),
        }
    }

    /// Records `nonce` (fresh randomness chosen by the caller) as issued at `now`.
    pub fn issue(&mut self, nonce: &[u8], now: u64) {
        self.records.insert(
            hex::encode(nonce),
            NonceRecord {
                nonce: nonce.to_vec(),
                issuer: self.issuer.clone(),
                issued_at: now,
                used: false,
            },
        );
    }

    /// The record for `nonce`, as the `nonce` check wants it.
    pub fn record(&self, nonce: &[u8]) -> Option<NonceRecord> {
        self.records.get(&hex::encode(nonce)).cloned()
    }

    /// Marks `nonce` used (call after accepting a bundle for it).
    pub fn mark_used(&mut self, nonce: &[u8]) {
        if let Some(r) = self.records.get_mut(&hex::encode(nonce)) {
            r.used = true;
        }
    }

    /// All records (to store them as a `--nonce-ledger` file).
    pub fn records(&self) -> Vec<NonceRecord> {
        self.records.values().cloned().collect()
    }
}
