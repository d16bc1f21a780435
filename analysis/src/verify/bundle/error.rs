//! Why a bundle check failed: one variant per failure, carrying what was found and expected.

use locus_proto::evidence::BundleError;
use locus_proto::transcript::TranscriptError;
use thiserror::Error;

use super::{CheckId, EkChainError, NonceError};
use crate::verify::cloud::azure::AzureError;
use crate::verify::credential::SealError;
use crate::verify::eventlog::{CrossCheckError, EventLogError};
use crate::verify::tdx::TdxError;
use crate::verify::tpm::TpmError;

/// Why one check failed.
#[derive(Debug, Clone, Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Bundle(#[from] BundleErrorKind),
    #[error(transparent)]
    Nonce(#[from] NonceError),
    #[error("transcript: {0}")]
    Transcript(#[from] TranscriptError),
    #[error("the bundle's session key is not the QUIC peer's (bundle SPKI sha256 {bundle}, peer {peer})")]
    SpkiMismatch { bundle: String, peer: String },
    #[error("TDX quote: {0}")]
    Tdx(#[from] TdxError),
    #[error("the TDX quote is too short to hold a TD report ({len} bytes)")]
    TdxQuoteTooShort { len: usize },
    #[error("REPORTDATA is {found}, the binding of this bundle gives {expected}")]
    ReportDataMismatch { expected: String, found: String },
    #[error("REPORTDATA is {found}, the inclusion proof (leaf {index} of {size}) folds this bundle's binding to {expected}")]
    CoalescedReportDataMismatch {
        index: u64,
        size: u64,
        expected: String,
        found: String,
    },
    #[error("the TDX inclusion proof (leaf {index} of {size}, {path_len} hashes) is malformed: {reason}")]
    InclusionProofMalformed {
        index: u64,
        size: u64,
        path_len: usize,
        reason: &'static str,
    },
    #[error("the bundle carries an inclusion proof (leaf {index} of {size}) but its quote is not coalesced: REPORTDATA is the bundle's own binding")]
    InclusionProofUncoalesced { index: u64, size: u64 },
    #[error("REPORTDATA does not commit to this AK (AK sha256 {ak_hash}): the vTPM quote is not from this TD's vTPM")]
    AkHashMismatch { ak_hash: String },
    #[error("vTPM: {0}")]
    Tpm(#[from] TpmError),
    #[error("quote extraData is {found}, the binding gives {expected}")]
    QualifyingDataMismatch { expected: String, found: String },
    #[error("the quote selects {quoted:?} (SHA-256), the bundle carries PCRs {carried:?}")]
    PcrSelectionMismatch { quoted: Vec<u8>, carried: Vec<u8> },
    #[error("pcrDigest is {found}, the bundle's PCR values hash to {expected}")]
    PcrDigestMismatch { expected: String, found: String },
    #[error("PCR{index} is {found}, the policy expects {expected}")]
    PcrReferenceMismatch {
        index: u8,
        expected: String,
        found: String,
    },
    #[error("{register} is {found}, the policy expects {expected}")]
    TdReferenceMismatch {
        register: String,
        expected: String,
        found: String,
    },
    #[error("event log: {0}")]
    EventLog(#[from] EventLogError),
    /// The bundle carries a PCR the TPM does not have (a TPM 2.0 PC client has PCR 0-23):
    /// the event log cannot vouch for it. The bundle was built wrongly or tampered with.
    #[error("PCR{index} is carried but a TPM has PCR 0-{max} only")]
    PcrIndexOutOfRange { index: u8, max: u8 },
    #[error("{register}: the event log replays to {replayed}, the quote has {quoted}")]
    ReplayMismatch {
        register: String,
        replayed: String,
        quoted: String,
    },
    #[error("PCR/RTMR cross-check: {0}")]
    CrossCheck(#[from] CrossCheckError),
    #[error("EK chain: {0}")]
    EkChain(#[from] EkChainError),
    #[error("the AK certificate certifies another key than the quoting AK")]
    AkCertKeyMismatch,
    #[error("credential activation: {0}")]
    Seal(#[from] SealError),
    #[error("in-TD vTPM round trip {found_ns} ns exceeds {max_ns} ns (a relayed vTPM?)")]
    VtpmTooSlow { found_ns: u64, max_ns: u64 },
    #[error("anchor report: {0}")]
    Anchors(crate::verify::anchor::AnchorReportError),
    #[error("anchor clock: {0}")]
    AnchorClocksource(crate::verify::anchor::ClocksourceError),
    #[error("anchor {name:?}: {error}")]
    AnchorInvalid {
        name: String,
        error: crate::verify::anchor::AnchorError,
    },
    #[error(transparent)]
    Hcl(#[from] AzureError),
    #[error("the HCL report names the AK whose modulus hashes to {hcl} (SHA-256), the vTPM quote's AK is {bundle}: not the HCL's AK")]
    HclAkMismatch { hcl: String, bundle: String },
    #[error("the HCL report's user-data is {found}, this bundle's binding is {expected}: the HCL report was not made for this bundle")]
    HclUserDataMismatch { expected: String, found: String },
    #[error("the bundle carries an inclusion proof, but a TD quote over an HCL report is not coalesced (its REPORTDATA is the HCL's)")]
    HclInclusionProof,
    #[error("binding version {found} does not bind the in-TD timings nor sign the vTPM round trip; this policy requires binding version {required} (bundles of this release follow it; `[binding] min_version = {found}` accepts older ones)")]
    BindingTooOld { found: u8, required: u8 },
    #[error("the vTPM part has no signed timings ({links} chain links, {timings} link timings, quote timed: {quote_timed}): the vTPM's distance cannot be checked")]
    VtpmTimingsMissing {
        links: usize,
        timings: usize,
        quote_timed: bool,
    },
    #[error("the vTPM chain has {links} links but {timings} link timings")]
    VtpmChainTimings { links: usize, timings: usize },
    #[error("vTPM chain link {index} is not a quote signed by the bundle's AK: {error}")]
    VtpmChainSignature { index: u32, error: TpmError },
    #[error("vTPM chain link {index} quotes extraData {found}, the chain gives {expected}: the link does not follow the previous signature")]
    VtpmChainBroken {
        index: u32,
        expected: String,
        found: String,
    },
    #[error("fastest of {quotes} signed vTPM quotes took {found_ns} ns, more than {max_ns} ns (a relayed vTPM?)")]
    VtpmChainTooSlow {
        found_ns: u64,
        max_ns: u64,
        quotes: usize,
    },
    #[error("required input missing: {0}")]
    Missing(&'static str),
    #[error("a check this one depends on failed: {0}")]
    Dependency(CheckId),
}

/// A [`BundleError`] that can be cloned into reports.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleErrorKind {
    #[error("bundle of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("bundle version {found} is not supported (this build reads {supported})")]
    WrongVersion { found: u16, supported: u16 },
    #[error("malformed bundle: {0}")]
    Malformed(String),
    #[error("bundle is not canonically encoded: {0}")]
    NonCanonical(locus_proto::cbor::StrictError),
    #[error("bundle version {version} has no field {field}")]
    FieldNotInVersion { version: u16, field: &'static str },
}

impl From<BundleError> for BundleErrorKind {
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::TooLarge { len, max } => Self::TooLarge { len, max },
            BundleError::WrongVersion { found, supported } => {
                Self::WrongVersion { found, supported }
            }
            BundleError::Malformed(m) => Self::Malformed(m),
            BundleError::NonCanonical(e) => Self::NonCanonical(e),
            BundleError::FieldNotInVersion { version, field } => {
                Self::FieldNotInVersion { version, field }
            }
        }
    }
}
