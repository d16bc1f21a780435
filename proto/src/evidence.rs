//! The evidence bundle: a versioned, self-contained record of one fresh evidence answer,
//! storable and verifiable offline (CBOR, size-capped on decode).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::transcript::SignedTranscript;

/// Version of the bundle layout.
pub const BUNDLE_VERSION: u16 = 1;

/// Largest bundle accepted from a file or the wire.
pub const MAX_BUNDLE_LEN: usize = 4 << 20;

/// One evidence answer, bound to the verifier's nonce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceBundle {
    pub version: u16,
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// SubjectPublicKeyInfo (DER) of the responder's TLS session key.
    #[serde(with = "serde_bytes")]
    pub session_spki: Vec<u8>,
    /// Signed transcript of the echo challenges answered on the requesting connection.
    pub transcript: SignedTranscript,
    #[serde(default)]
    pub tdx: Option<TdxEvidence>,
    #[serde(default)]
    pub tpm: Option<TpmEvidence>,
    /// Timings the responder measured inside the TEE while producing this bundle.
    #[serde(default)]
    pub timings: ResponderTimings,
}

/// A TDX quote and what is needed to check its binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxEvidence {
    /// The raw quote (TDX quote v4) as the quote provider returned it.
    #[serde(with = "serde_bytes")]
    pub quote: Vec<u8>,
}

/// A vTPM quote and its endorsements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmEvidence {
    /// TPMS_ATTEST as signed by the AK.
    #[serde(with = "serde_bytes")]
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE over `attest`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// AK public area (TPM2B_PUBLIC, wire format).
    #[serde(with = "serde_bytes")]
    pub ak_public: Vec<u8>,
}

/// In-TEE timings, in nanoseconds of the TEE's monotonic clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponderTimings {
    #[serde(default)]
    pub tdx_quote_ns: Option<u64>,
    #[serde(default)]
    pub tpm_quote_ns: Option<u64>,
}

/// Why a stored bundle could not be read.
#[derive(Debug, Error)]
pub enum BundleError {
    #[error("bundle of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("bundle version {found} is not supported (this build reads {supported})")]
    WrongVersion { found: u16, supported: u16 },
    #[error("malformed bundle: {0}")]
    Malformed(String),
}

impl EvidenceBundle {
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("CBOR encoding into memory");
        out
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::TooLarge {
                len: bytes.len(),
                max: MAX_BUNDLE_LEN,
            });
        }
        let b: Self =
            ciborium::from_reader(bytes).map_err(|e| BundleError::Malformed(e.to_string()))?;
        if b.version != BUNDLE_VERSION {
            return Err(BundleError::WrongVersion {
                found: b.version,
                supported: BUNDLE_VERSION,
            });
        }
        Ok(b)
    }
}
