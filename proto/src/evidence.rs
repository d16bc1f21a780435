//! The evidence bundle: a versioned, self-contained record of one fresh evidence answer,
//! storable and verifiable offline (CBOR, size-capped on decode).

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use serde_bytes::ByteBuf;

use crate::anchor::AnchorReport;
use crate::transcript::SignedTranscript;

/// Version of the bundle layout this build writes: 2 added the AK-signed chain
/// (`tpm.chain`, `timings.tpm_chain_ns`) and bound the in-TD timings into REPORTDATA; 3 adds
/// the responder's chain secret (`tpm.chain_secret`), without which the vTPM transport can
/// precompute the chain (binding version 3, `docs/binding.md`).
pub const BUNDLE_VERSION: u16 = 3;

/// The binding version 2 layout: still decoded, so a verifier can name why a policy refuses it.
pub const BUNDLE_VERSION_V2: u16 = 2;

/// The first bundle layout (binding version 1): still decoded, so a verifier can name why a
/// policy refuses it.
pub const BUNDLE_VERSION_V1: u16 = 1;

/// Largest bundle accepted from a file or the wire.
pub const MAX_BUNDLE_LEN: usize = 4 << 20;

/// One evidence answer, bound to the verifier's nonce.
///
/// The binding of its parts is specified in [`crate::binding`] and `docs/binding.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBundle {
    pub version: u16,
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// Who issued the nonce (the verifier's name as it stated in the request), when known.
    /// The verifier checks the nonce against its own record; this only names where to look.
    #[serde(default)]
    pub nonce_issuer: Option<String>,
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
    /// Anchor round trips timed before quoting; its digest is bound into TDX REPORTDATA.
    #[serde(default)]
    pub anchors: Option<AnchorReport>,
}

/// A TDX quote and what is needed to check its binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxEvidence {
    /// The raw quote (TDX quote v4) as the quote provider returned it.
    #[serde(with = "serde_bytes")]
    pub quote: Vec<u8>,
    /// The CCEL event log (TCG crypto-agile, SHA-384, MR index 1..4 = RTMR0..3), when read.
    #[serde(default)]
    pub ccel: Option<CcelLog>,
    /// Present when the quote was shared by concurrent evidence requests (coalesced): the
    /// quote's REPORTDATA is then the Merkle root over the batch's binding values and this
    /// bundle's binding value is one leaf (`docs/binding.md`, "Coalesced quotes"). Absent for
    /// a quote taken for this bundle alone (omitted from the encoding, so such bundles encode
    /// exactly as before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion: Option<TdxInclusionProof>,
}

/// Where a bundle's REPORTDATA binding value sits in the batch of a coalesced TDX quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxInclusionProof {
    /// Index of this bundle's binding value among the batch's values.
    pub index: u64,
    /// Number of values in the batch.
    pub size: u64,
    /// Sibling hashes (64 bytes each, SHA-512), leaf level first.
    pub path: Vec<ByteBuf>,
}

/// The TDX Confidential Computing Event Log as ACPI exposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcelLog {
    /// The ACPI CCEL table (`/sys/firmware/acpi/tables/CCEL`).
    #[serde(with = "serde_bytes")]
    pub table: Vec<u8>,
    /// The log area (`/sys/firmware/acpi/tables/data/CCEL`); may end in 0xFF or zero fill.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A vTPM quote and its endorsements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmEvidence {
    /// TPMS_ATTEST as signed by the AK.
    #[serde(with = "serde_bytes")]
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE over `attest`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// AK public area (TPM2B_PUBLIC, wire format, size prefix included).
    #[serde(with = "serde_bytes")]
    pub ak_public: Vec<u8>,
    /// The quoted PCR values, in the quote's selection order.
    #[serde(default)]
    pub pcrs: Vec<PcrValue>,
    /// The provider's AK certificate (DER), where the provider issues one (e.g. GCE NV).
    #[serde(default, with = "serde_bytes")]
    pub ak_cert: Option<Vec<u8>>,
    /// EK certificates (DER) read from the TPM's NV indices, with the index each came from.
    #[serde(default)]
    pub ek_certs: Vec<EkCert>,
    /// Intermediate CA certificates (DER) up to, not including, a provider root.
    #[serde(default)]
    pub ca_certs: Vec<ByteBuf>,
    /// The TCG PC Client event log (`binary_bios_measurements`), when read.
    #[serde(default, with = "serde_bytes")]
    pub event_log: Option<Vec<u8>>,
    /// Azure's HCL report (at most [`crate::hcl::MAX_HCL_REPORT_LEN`] bytes), read from the
    /// vTPM's NV when the AK is the HCL's: its variable data names the AK, and the TD quote's
    /// REPORTDATA commits to that data (`docs/binding.md`, "Azure"). Absent otherwise, and then
    /// omitted from the encoding, so such bundles encode exactly as before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub hcl_report: Option<Vec<u8>>,
    /// Bundle version 2: TPM2_Quotes by the same AK, link `i` over the qualifying data
    /// [`crate::binding::chain_qualifying_data`] of the previous link's signature (link 0: the
    /// main quote's), each timed in `timings.tpm_chain_ns`. A relayed vTPM cannot answer
    /// them locally. Omitted when empty, so version 1 bundles encode as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<SignedAttest>,
    /// Bundle version 3: the 32-byte secret the responder drew inside the TD for this request
    /// and mixed into every chain link's qualifying data
    /// ([`crate::binding::chain_qualifying_data_v3`]); revealed here only after the chain was
    /// done. Omitted when absent, so earlier versions encode as before.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub chain_secret: Option<Vec<u8>>,
    /// The verifier's credential that carried this bundle's nonce, sealed to a certified EK
    /// for this AK, as the vTPM activated it (`docs/binding.md`, "Credential activation").
    /// Absent when the nonce came in clear, and then omitted from the encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_nonce: Option<SealedNonce>,
}

/// A nonce sealed with TPM2_MakeCredential ([`crate::credential::seal_nonce`]): the EK
/// certificate's NV index it was sealed to, and the TPM2_ActivateCredential inputs (the
/// contents of the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedNonce {
    pub ek_nv_index: u32,
    #[serde(with = "serde_bytes")]
    pub id_object: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub encrypted_secret: Vec<u8>,
}

/// One TPMS_ATTEST and the AK's TPMT_SIGNATURE over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAttest {
    #[serde(with = "serde_bytes")]
    pub attest: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// One PCR value as read from the TPM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcrValue {
    /// TPM_ALG_ID of the bank (0x000B = SHA-256).
    pub alg: u16,
    pub index: u8,
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
}

/// An EK certificate and the NV index it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EkCert {
    pub nv_index: u32,
    #[serde(with = "serde_bytes")]
    pub der: Vec<u8>,
}

/// In-TEE timings, in nanoseconds of the TEE's monotonic clock.
///
/// Reported by the responder: a relayed vTPM shows its network round trip in
/// `tpm_chain_ns` (and `tpm_cheap_rtt_min_ns`). In a version 2 bundle every field but
/// `tdx_quote_ns` and `evidence_ns` (measured after the TDX quote) is bound into REPORTDATA
/// ([`crate::binding::timings_digest`]); version 1 covers none of them (`docs/binding.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponderTimings {
    #[serde(default)]
    pub tdx_quote_ns: Option<u64>,
    #[serde(default)]
    pub tpm_quote_ns: Option<u64>,
    /// Minimum round trip of a cheap vTPM command (TPM2_GetRandom) over `tpm_cheap_samples`.
    #[serde(default)]
    pub tpm_cheap_rtt_min_ns: Option<u64>,
    #[serde(default)]
    pub tpm_cheap_samples: u32,
    /// Whole time inside the TD to produce this evidence answer (anchors, vTPM and TDX
    /// quotes), so a verifier can subtract it from the evidence request's round trip.
    #[serde(default)]
    pub evidence_ns: Option<u64>,
    /// Bundle version 2: how long each link of `tpm.chain` took, in chain order. The
    /// minimum is the signed vTPM round trip (signing time included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tpm_chain_ns: Vec<u64>,
}

/// Why a stored bundle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleError {
    #[error("bundle of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("bundle version {found} is not supported (this build reads 1 to {supported})")]
    WrongVersion { found: u16, supported: u16 },
    /// A field that only a later bundle version has: each version has one layout.
    #[error("bundle version {version} has no field {field}")]
    FieldNotInVersion { version: u16, field: &'static str },
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// Decodes, but is not the one encoding a bundle has (see [`crate::cbor`]).
    #[error("bundle is not canonically encoded: {0}")]
    NonCanonical(crate::cbor::StrictError),
}

impl EvidenceBundle {
    pub fn to_cbor(&self) -> Vec<u8> {
        crate::cbor::encode(self)
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::TooLarge {
                len: bytes.len(),
                max: MAX_BUNDLE_LEN,
            });
        }
        let b: Self = crate::cbor::decode_canonical(bytes).map_err(|e| match e {
            crate::cbor::StrictError::Malformed { reason } => BundleError::Malformed(reason),
            other => BundleError::NonCanonical(other),
        })?;
        if !(BUNDLE_VERSION_V1..=BUNDLE_VERSION).contains(&b.version) {
            return Err(BundleError::WrongVersion {
                found: b.version,
                supported: BUNDLE_VERSION,
            });
        }
        if b.version == BUNDLE_VERSION_V1 {
            let not_in_v1 = |field| BundleError::FieldNotInVersion {
                version: BUNDLE_VERSION_V1,
                field,
            };
            if b.tpm.as_ref().is_some_and(|t| !t.chain.is_empty()) {
                return Err(not_in_v1("tpm.chain"));
            }
            if !b.timings.tpm_chain_ns.is_empty() {
                return Err(not_in_v1("timings.tpm_chain_ns"));
            }
        }
        if b.version < BUNDLE_VERSION && b.tpm.as_ref().is_some_and(|t| t.chain_secret.is_some()) {
            return Err(BundleError::FieldNotInVersion {
                version: b.version,
                field: "tpm.chain_secret",
            });
        }
        Ok(b)
    }

    /// The binding this bundle's REPORTDATA follows: the bundle's version, over this bundle's
    /// timings (version 2) and chain secret (version 3).
    pub fn binding_version(&self) -> crate::binding::BindingVersion {
        use crate::binding::{timings_digest, timings_digest_v3, BindingVersion};
        match self.version {
            BUNDLE_VERSION_V1 => BindingVersion::V1,
            BUNDLE_VERSION_V2 => BindingVersion::V2 {
                timings_digest: timings_digest(&self.timings),
            },
            _ => BindingVersion::V3 {
                timings_digest: timings_digest_v3(&self.timings, self.chain_secret()),
            },
        }
    }

    /// The vTPM chain secret (version 3), empty when the bundle has none.
    pub fn chain_secret(&self) -> &[u8] {
        self.tpm
            .as_ref()
            .and_then(|t| t.chain_secret.as_deref())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Transcript;

    fn bundle(hcl_report: Option<Vec<u8>>) -> EvidenceBundle {
        let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        EvidenceBundle {
            version: BUNDLE_VERSION,
            nonce: vec![1; 32],
            nonce_issuer: None,
            session_spki: vec![2; 91],
            transcript: Transcript::new().sign(&key),
            tdx: None,
            tpm: Some(TpmEvidence {
                attest: vec![3; 10],
                signature: vec![4; 10],
                ak_public: vec![5; 10],
                pcrs: Vec::new(),
                ak_cert: None,
                ek_certs: Vec::new(),
                ca_certs: Vec::new(),
                event_log: None,
                hcl_report,
                chain: Vec::new(),
                chain_secret: None,
                sealed_nonce: None,
            }),
            timings: ResponderTimings::default(),
            anchors: None,
        }
    }

    #[test]
    fn an_absent_hcl_report_is_not_encoded_and_bundles_without_it_decode() {
        let plain = bundle(None);
        let bytes = plain.to_cbor();
        assert!(!bytes.windows(10).any(|w| w == b"hcl_report"));
        assert_eq!(EvidenceBundle::from_cbor(&bytes).unwrap(), plain);

        let azure = bundle(Some(vec![0x48; 2600]));
        let bytes = azure.to_cbor();
        assert!(bytes.windows(10).any(|w| w == b"hcl_report"));
        assert_eq!(EvidenceBundle::from_cbor(&bytes).unwrap(), azure);
    }

    fn as_value(b: &EvidenceBundle) -> ciborium::Value {
        ciborium::from_reader(b.to_cbor().as_slice()).unwrap()
    }

    fn to_bytes(v: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    fn entries(v: &mut ciborium::Value) -> &mut Vec<(ciborium::Value, ciborium::Value)> {
        match v {
            ciborium::Value::Map(m) => m,
            other => panic!("a bundle encodes as a map, got {other:?}"),
        }
    }

    #[test]
    fn a_bundle_with_an_unknown_key_is_malformed() {
        let mut v = as_value(&bundle(None));
        entries(&mut v).push((ciborium::Value::Text("ignored".into()), 1.into()));
        let err = EvidenceBundle::from_cbor(&to_bytes(&v)).unwrap_err();
        assert!(
            matches!(&err, BundleError::Malformed(m) if m.contains("ignored")),
            "{err:?}"
        );
    }

    #[test]
    fn a_bundle_whose_key_is_a_byte_string_is_not_canonical() {
        let mut v = as_value(&bundle(None));
        let key = &mut entries(&mut v)[1].0;
        assert_eq!(key, &ciborium::Value::Text("nonce".into()));
        *key = ciborium::Value::Bytes(b"nonce".to_vec());
        let bytes = to_bytes(&v);
        assert!(matches!(
            EvidenceBundle::from_cbor(&bytes),
            Err(BundleError::NonCanonical(_))
        ));
    }

    #[test]
    fn a_bundle_with_a_nested_unknown_key_is_malformed() {
        let mut v = as_value(&bundle(None));
        let tpm = entries(&mut v)
            .iter_mut()
            .find(|(k, _)| k == &ciborium::Value::Text("tpm".into()))
            .map(|(_, t)| t)
            .unwrap();
        entries(tpm).push((ciborium::Value::Text("extra".into()), 0.into()));
        assert!(matches!(
            EvidenceBundle::from_cbor(&to_bytes(&v)),
            Err(BundleError::Malformed(m)) if m.contains("extra")
        ));
    }

    fn v2() -> EvidenceBundle {
        let mut b = bundle(None);
        b.version = BUNDLE_VERSION_V2;
        b.tpm.as_mut().unwrap().chain = vec![SignedAttest {
            attest: vec![6; 10],
            signature: vec![7; 10],
        }];
        b.timings.tpm_chain_ns = vec![3_000_000];
        b
    }

    fn v3() -> EvidenceBundle {
        let mut b = v2();
        b.version = BUNDLE_VERSION;
        b.tpm.as_mut().unwrap().chain_secret = Some(vec![8; 32]);
        b
    }

    #[test]
    fn a_v2_bundle_round_trips_with_its_chain() {
        let b = v2();
        assert_eq!(EvidenceBundle::from_cbor(&b.to_cbor()).unwrap(), b);
        assert!(matches!(
            b.binding_version(),
            crate::binding::BindingVersion::V2 { .. }
        ));
    }

    #[test]
    fn a_v3_bundle_round_trips_and_binds_its_chain_secret() {
        let b = v3();
        assert_eq!(EvidenceBundle::from_cbor(&b.to_cbor()).unwrap(), b);
        let crate::binding::BindingVersion::V3 { timings_digest } = b.binding_version() else {
            panic!("a version 3 bundle follows binding version 3");
        };
        let mut other = b.clone();
        other.tpm.as_mut().unwrap().chain_secret = Some(vec![9; 32]);
        assert_ne!(
            other.binding_version(),
            crate::binding::BindingVersion::V3 { timings_digest }
        );
    }

    #[test]
    fn a_v2_bundle_with_a_chain_secret_is_refused() {
        let mut b = v3();
        b.version = BUNDLE_VERSION_V2;
        assert_eq!(
            EvidenceBundle::from_cbor(&b.to_cbor()),
            Err(BundleError::FieldNotInVersion {
                version: 2,
                field: "tpm.chain_secret"
            })
        );
    }

    #[test]
    fn a_v1_bundle_decodes_without_v2_fields_and_is_refused_with_them() {
        let mut b = v2();
        b.version = BUNDLE_VERSION_V1;
        assert_eq!(
            EvidenceBundle::from_cbor(&b.to_cbor()),
            Err(BundleError::FieldNotInVersion {
                version: 1,
                field: "tpm.chain"
            })
        );
        b.tpm.as_mut().unwrap().chain.clear();
        assert_eq!(
            EvidenceBundle::from_cbor(&b.to_cbor()),
            Err(BundleError::FieldNotInVersion {
                version: 1,
                field: "timings.tpm_chain_ns"
            })
        );
        b.timings.tpm_chain_ns.clear();
        let decoded = EvidenceBundle::from_cbor(&b.to_cbor()).unwrap();
        assert_eq!(
            decoded.binding_version(),
            crate::binding::BindingVersion::V1
        );
        // The v1 encoding has no v2 keys at all.
        let bytes = b.to_cbor();
        assert!(!bytes.windows(5).any(|w| w == b"chain"));
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut b = v3();
        b.version = 4;
        assert_eq!(
            EvidenceBundle::from_cbor(&b.to_cbor()),
            Err(BundleError::WrongVersion {
                found: 4,
                supported: BUNDLE_VERSION
            })
        );
    }
}
