//! Verification of an evidence bundle: every check a named step with its own typed error, run
//! in a fixed order; the report lists each as passed, failed or skipped.
//!
//! Pure (STYLE rule 1): the bundle, policy, nonce record, QUIC peer key and time come in.
//! The binding being checked is specified in `docs/binding.md` ([`locus_proto::binding`]).

mod chain;
pub mod ekchain;
mod hcl;
pub mod nonce;
pub mod policy;

use locus_proto::binding::{self, BindingInputs};
use locus_proto::evidence::{BundleError, EvidenceBundle, TdxInclusionProof};
use locus_proto::transcript::TranscriptError;
use thiserror::Error;

use crate::verify::cloud::azure::AzureError;
use crate::verify::eventlog::{self, CrossCheckError, EventLogError};
use crate::verify::tdx::{coalesced_report_data, InclusionProof, TdxError, TdxVerified};
use crate::verify::tpm::{self, TpmError};

pub use crate::check::CheckId;
pub use ekchain::EkChainError;
pub use nonce::{NonceError, NonceLedger, NonceRecord};
pub use policy::{EvidencePolicy, PolicyError, PolicyFile, Requirement};

/// PCRs of a TPM 2.0 PC client (PCR 0-23).
const PCR_COUNT: usize = 24;

impl CheckId {
    /// Without a policy entry: the binding and signature checks are required; checks that need
    /// optional inputs (peer key, logs, references, roots, AK certificate, timing bound) are
    /// optional.
    pub fn default_requirement(self) -> Requirement {
        match self {
            CheckId::BundleFormat
            | CheckId::BindingVersion
            | CheckId::VtpmChain
            | CheckId::Nonce
            | CheckId::Transcript
            | CheckId::TdxQuote
            | CheckId::ReportData
            | CheckId::AkHash
            | CheckId::TpmSignature
            | CheckId::TpmAttest
            | CheckId::QualifyingData
            | CheckId::PcrDigest => Requirement::Required,
            _ => Requirement::Optional,
        }
    }
}

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
    #[error("in-TD vTPM round trip {found_ns} ns exceeds {max_ns} ns (a relayed vTPM?)")]
    VtpmTooSlow { found_ns: u64, max_ns: u64 },
    #[error("anchor report: {0}")]
    Anchors(crate::verify::anchor::AnchorReportError),
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
    #[error("fastest of {links} signed vTPM quotes took {found_ns} ns, more than {max_ns} ns (a relayed vTPM?)")]
    VtpmChainTooSlow {
        found_ns: u64,
        max_ns: u64,
        links: usize,
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

/// The outcome of one check.
#[derive(Debug, Clone)]
pub enum Outcome {
    Pass,
    Fail(EvidenceError),
    Skipped(String),
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub check: CheckId,
    pub requirement: Requirement,
    pub outcome: Outcome,
}

impl CheckResult {
    /// Whether this line makes the bundle invalid: a failure, or a required check skipped.
    pub fn invalidates(&self) -> bool {
        match &self.outcome {
            Outcome::Pass => false,
            Outcome::Fail(_) => true,
            Outcome::Skipped(_) => self.requirement == Requirement::Required,
        }
    }
}

/// Every check with its outcome.
#[derive(Debug, Clone)]
pub struct EvidenceReport {
    pub checks: Vec<CheckResult>,
    /// The verified TDX quote's fields, when `tdx_quote` passed.
    pub tdx: Option<TdxVerified>,
}

impl EvidenceReport {
    pub fn valid(&self) -> bool {
        !self.checks.iter().any(CheckResult::invalidates)
    }

    /// The checks that make the bundle invalid.
    pub fn failed(&self) -> Vec<CheckId> {
        self.checks
            .iter()
            .filter(|c| c.invalidates())
            .map(|c| c.check)
            .collect()
    }

    pub fn outcome(&self, check: CheckId) -> Option<&Outcome> {
        self.checks
            .iter()
            .find(|c| c.check == check)
            .map(|c| &c.outcome)
    }

    /// The error of a failed check.
    pub fn error(&self, check: CheckId) -> Option<&EvidenceError> {
        match self.outcome(check)? {
            Outcome::Fail(e) => Some(e),
            _ => None,
        }
    }

    /// JSON form for `--json`: `{valid, checks: [{check, requirement, status, detail}], tdx}`.
    pub fn to_json(&self) -> serde_json::Value {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(|c| {
                let (status, detail) = match &c.outcome {
                    Outcome::Pass => ("pass", None),
                    Outcome::Fail(e) => ("fail", Some(e.to_string())),
                    Outcome::Skipped(r) => ("skipped", Some(r.clone())),
                };
                serde_json::json!({
                    "check": c.check.name(),
                    "requirement": c.requirement,
                    "status": status,
                    "invalidates": c.invalidates(),
                    "detail": detail,
                })
            })
            .collect();
        serde_json::json!({
            "valid": self.valid(),
            "failed": self.failed().iter().map(|c| c.name()).collect::<Vec<_>>(),
            "checks": checks,
            "tdx": self.tdx,
        })
    }
}

/// Inputs that come from outside the bundle.
#[derive(Debug, Clone, Default)]
pub struct VerifyInputs {
    /// Verification time, seconds since the Unix epoch.
    pub now_unix: u64,
    /// This verifier's record of the bundle's nonce (from its [`NonceLedger`]); `None` when
    /// it has none, which fails the `nonce` check as foreign.
    pub nonce_record: Option<NonceRecord>,
    /// The QUIC peer's SubjectPublicKeyInfo (DER), when verifying online.
    pub peer_spki: Option<Vec<u8>>,
}

/// The provider's AK certificate certifies this AK: its key is the AK's public point, and it
/// chains to a provider root (GCE issues AK certificates under its EK/AK CA).
pub fn check_ak_cert(
    ak_public: &[u8],
    ak_cert: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: i64,
) -> Result<(), EvidenceError> {
    use x509_parser::prelude::FromDer;
    let ak = tpm::parse_ak_public(ak_public)?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(ak_cert)
        .map_err(|e| EkChainError::Parse(e.to_string()))?;
    let matches = match (&ak.key, cert.public_key().parsed()) {
        (tpm::AkKey::Ecc { x, y }, Ok(x509_parser::public_key::PublicKey::EC(point))) => {
            let mut expected = vec![0x04];
            for c in [x, y] {
                let mut padded = [0u8; 32];
                let n = c.len().min(32);
                padded[32 - n..].copy_from_slice(&c[c.len() - n..]);
                expected.extend_from_slice(&padded);
            }
            point.data() == expected.as_slice()
        }
        (tpm::AkKey::Rsa { n, e }, Ok(x509_parser::public_key::PublicKey::RSA(rsa))) => {
            same_rsa_key((rsa.modulus, rsa.exponent), (n, e))
        }
        _ => false,
    };
    if !matches {
        return Err(EvidenceError::AkCertKeyMismatch);
    }
    ekchain::verify_chain(ak_cert, intermediates, roots, now)?;
    Ok(())
}

/// Two RSA public keys (modulus, exponent; big-endian) are equal, leading zeros aside (DER
/// integers carry a sign byte, JWKs and TPM2B buffers do not).
fn same_rsa_key(a: (&[u8], &[u8]), b: (&[u8], &[u8])) -> bool {
    fn strip(v: &[u8]) -> &[u8] {
        let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
        &v[first..]
    }
    strip(a.0) == strip(b.0) && strip(a.1) == strip(b.1)
}

/// TD report fields needed by the binding, read from a quote at the v4/v5 TD report offsets.
struct TdFields {
    mrtd: [u8; 48],
    rtmrs: [[u8; 48]; 4],
    report_data: [u8; 64],
}

/// Offsets of the TD report body inside a quote (48-byte header; body layout of TDX 1.0:
/// MRTD at +136, RTMR0-3 at +328, REPORTDATA at +520). Used when the quote's signature is not
/// checked (no collateral): the checks that rely on these fields then say they are unverified.
fn td_fields_unverified(quote: &[u8]) -> Option<TdFields> {
    const BODY: usize = 48;
    let get = |at: usize, n: usize| quote.get(BODY + at..BODY + at + n);
    let mut f = TdFields {
        mrtd: [0; 48],
        rtmrs: [[0; 48]; 4],
        report_data: [0; 64],
    };
    f.mrtd.copy_from_slice(get(136, 48)?);
    for (i, r) in f.rtmrs.iter_mut().enumerate() {
        r.copy_from_slice(get(328 + 48 * i, 48)?);
    }
    f.report_data.copy_from_slice(get(520, 64)?);
    Some(f)
}

/// The REPORTDATA a coalesced quote must carry for `leaf` (this bundle's binding) under `p`.
fn fold_inclusion(leaf: &[u8; 64], p: &TdxInclusionProof) -> Result<[u8; 64], EvidenceError> {
    let malformed = |reason| EvidenceError::InclusionProofMalformed {
        index: p.index,
        size: p.size,
        path_len: p.path.len(),
        reason,
    };
    let path = p
        .path
        .iter()
        .map(|h| <[u8; 64]>::try_from(h.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| malformed("a sibling hash is not 64 bytes"))?;
    let proof = InclusionProof {
        index: p.index,
        size: p.size,
        path,
    };
    coalesced_report_data(leaf, &proof)
        .ok_or_else(|| malformed("index out of range or path length wrong for the batch size"))
}

struct Run<'a> {
    policy: &'a EvidencePolicy,
    results: Vec<CheckResult>,
}

impl Run<'_> {
    fn record(&mut self, check: CheckId, f: impl FnOnce() -> Outcome) -> bool {
        let requirement = self.policy.requirement(check);
        let outcome = if requirement == Requirement::Off {
            Outcome::Skipped("disabled by policy".into())
        } else {
            f()
        };
        let passed = matches!(outcome, Outcome::Pass);
        self.results.push(CheckResult {
            check,
            requirement,
            outcome,
        });
        passed
    }

    fn passed(&self, check: CheckId) -> bool {
        self.results
            .iter()
            .any(|r| r.check == check && matches!(r.outcome, Outcome::Pass))
    }
}

fn result(r: Result<(), EvidenceError>) -> Outcome {
    match r {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

/// Decodes and verifies a stored bundle. A bundle that does not decode fails `bundle_format`
/// and every other check is skipped.
pub fn verify_bundle_bytes(
    bytes: &[u8],
    policy: &EvidencePolicy,
    inputs: &VerifyInputs,
) -> EvidenceReport {
    match EvidenceBundle::from_cbor(bytes) {
        Ok(b) => verify_bundle(&b, policy, inputs),
        Err(e) => {
            let mut checks = vec![CheckResult {
                check: CheckId::BundleFormat,
                requirement: Requirement::Required,
                outcome: Outcome::Fail(EvidenceError::Bundle(e.into())),
            }];
            checks.extend(CheckId::ALL[1..].iter().map(|c| CheckResult {
                check: *c,
                requirement: policy.requirement(*c),
                outcome: Outcome::Skipped("the bundle did not decode".into()),
            }));
            EvidenceReport { checks, tdx: None }
        }
    }
}

/// Verifies a decoded bundle.
pub fn verify_bundle(
    b: &EvidenceBundle,
    policy: &EvidencePolicy,
    inputs: &VerifyInputs,
) -> EvidenceReport {
    let mut run = Run {
        policy,
        results: Vec::new(),
    };
    let spki_hash = binding::spki_hash(&b.session_spki);

    run.record(CheckId::BundleFormat, || Outcome::Pass);
    run.record(CheckId::BindingVersion, || {
        chain::binding_version(b, policy)
    });

    run.record(CheckId::Nonce, || match &inputs.nonce_record {
        None => Outcome::Fail(NonceError::Unknown.into()),
        Some(rec) => result(
            rec.check(
                &b.nonce,
                &policy.nonce_issuer,
                policy.nonce_max_age_secs,
                inputs.now_unix,
            )
            .map_err(Into::into),
        ),
    });

    run.record(CheckId::Transcript, || {
        result(b.transcript.verify(&b.session_spki).map_err(Into::into))
    });

    run.record(CheckId::SessionSpki, || match &inputs.peer_spki {
        None => Outcome::Skipped("no QUIC peer key given (offline verification)".into()),
        Some(peer) if *peer == b.session_spki => Outcome::Pass,
        Some(peer) => Outcome::Fail(EvidenceError::SpkiMismatch {
            bundle: hex::encode(spki_hash),
            peer: hex::encode(binding::spki_hash(peer)),
        }),
    });

    // TDX quote: verified through DCAP when collateral is configured.
    let mut tdx_verified = None;
    let mut td_fields = None;
    run.record(CheckId::TdxQuote, || {
        let Some(tdx) = &b.tdx else {
            return Outcome::Skipped("the bundle has no TDX quote".into());
        };
        let Some(collateral) = &policy.tdx_collateral else {
            return Outcome::Skipped("no TDX collateral configured".into());
        };
        match crate::verify::tdx::verify(&tdx.quote, collateral, &policy.tdx_root, inputs.now_unix)
        {
            Ok(v) => {
                td_fields = Some(TdFields {
                    mrtd: v.mr_td,
                    rtmrs: v.rtmr,
                    report_data: v.report_data,
                });
                tdx_verified = Some(v);
                Outcome::Pass
            }
            Err(e) => Outcome::Fail(e.into()),
        }
    });
    let tdx_checked = run.passed(CheckId::TdxQuote);
    if td_fields.is_none() {
        td_fields = b.tdx.as_ref().and_then(|t| td_fields_unverified(&t.quote));
    }
    let unverified_note = if tdx_checked {
        ""
    } else {
        " (TDX quote signature not verified)"
    };

    // Azure: a bundle with an HCL report is bound through it (`hcl.rs`).
    let hcl_report = b.tpm.as_ref().and_then(|t| t.hcl_report.as_deref());
    let hcl_parsed = hcl_report.map(hcl::parse);
    run.record(CheckId::HclReport, || match (hcl_report, &hcl_parsed) {
        (Some(r), Some(p)) => hcl::report_outcome(r, p, b.tdx.as_ref().map(|t| t.quote.as_slice())),
        _ => Outcome::Skipped("the bundle has no HCL report".into()),
    });
    let hcl_rd_matches = hcl_parsed
        .as_ref()
        .and_then(|p| hcl::report_data_matches(p, td_fields.as_ref().map(|f| &f.report_data)));

    let ak_hash = b
        .tpm
        .as_ref()
        .map(|t| binding::ak_public_hash(&t.ak_public))
        .unwrap_or([0; 32]);
    let expected_rd = binding::report_data(&BindingInputs {
        nonce: &b.nonce,
        ak_public_hash: ak_hash,
        spki_hash,
        anchor_digest: b.anchors.as_ref().map(|a| a.digest()),
        version: b.binding_version(),
    });
    // A coalesced quote: REPORTDATA is the root the proof folds the binding (a leaf) into.
    let proof = b.tdx.as_ref().and_then(|t| t.inclusion.as_ref());
    let folded_rd: Option<Result<[u8; 64], EvidenceError>> = match (proof, &expected_rd) {
        (Some(p), Ok(leaf)) => Some(fold_inclusion(leaf, p)),
        _ => None,
    };
    let rd_matches = match (&td_fields, &expected_rd, &folded_rd) {
        (Some(f), Ok(_), Some(folded)) => Some(folded.as_ref().is_ok_and(|r| f.report_data == *r)),
        (Some(f), Ok(e), None) => Some(f.report_data == *e),
        _ => None,
    };
    run.record(CheckId::ReportData, || {
        let Some(tdx) = &b.tdx else {
            return Outcome::Skipped("the bundle has no TDX quote".into());
        };
        let Some(f) = &td_fields else {
            return Outcome::Fail(EvidenceError::TdxQuoteTooShort {
                len: tdx.quote.len(),
            });
        };
        if let Some(p) = &hcl_parsed {
            return hcl::report_data_outcome(p, &f.report_data, proof.is_some(), tdx_checked);
        }
        let expected = match &expected_rd {
            Ok(e) => e,
            Err(_) => return Outcome::Fail(EvidenceError::Missing("a bindable nonce")),
        };
        if let (Some(p), Some(folded)) = (proof, &folded_rd) {
            let root = match folded {
                Ok(r) => r,
                Err(e) => return Outcome::Fail(e.clone()),
            };
            if f.report_data == *root {
                return if tdx_checked {
                    Outcome::Pass
                } else {
                    Outcome::Skipped(format!(
                        "REPORTDATA is the root over this bundle's binding{unverified_note}"
                    ))
                };
            }
            if f.report_data == *expected {
                return Outcome::Fail(EvidenceError::InclusionProofUncoalesced {
                    index: p.index,
                    size: p.size,
                });
            }
            return Outcome::Fail(EvidenceError::CoalescedReportDataMismatch {
                index: p.index,
                size: p.size,
                expected: hex::encode(root),
                found: hex::encode(f.report_data),
            });
        }
        if f.report_data == *expected {
            if tdx_checked {
                Outcome::Pass
            } else {
                Outcome::Skipped(format!("REPORTDATA matches{unverified_note}"))
            }
        } else {
            Outcome::Fail(EvidenceError::ReportDataMismatch {
                expected: hex::encode(expected),
                found: hex::encode(f.report_data),
            })
        }
    });

    run.record(CheckId::AkHash, || {
        let Some(t) = &b.tpm else {
            return Outcome::Skipped("the bundle has no vTPM quote".into());
        };
        if let Some(p) = &hcl_parsed {
            return hcl::ak_outcome(p, &t.ak_public, hcl_rd_matches, tdx_checked);
        }
        match rd_matches {
            None => Outcome::Skipped("no TDX REPORTDATA to bind the AK".into()),
            Some(true) if tdx_checked => Outcome::Pass,
            Some(true) => Outcome::Skipped(format!("AK hash bound{unverified_note}")),
            Some(false) => Outcome::Fail(EvidenceError::AkHashMismatch {
                ak_hash: hex::encode(ak_hash),
            }),
        }
    });

    run.record(CheckId::HclUserData, || match &hcl_parsed {
        None => Outcome::Skipped("the bundle has no HCL report".into()),
        Some(p) => {
            hcl::user_data_outcome(p, expected_rd.as_ref().ok(), hcl_rd_matches, tdx_checked)
        }
    });
    // With an HCL report the anchor report's digest is bound only through `user-data`.
    let anchors_bound = hcl_parsed.is_none() || run.passed(CheckId::HclUserData);

    // vTPM quote.
    let tpm = b.tpm.as_ref();
    let ak = tpm.map(|t| tpm::parse_ak_public(&t.ak_public));
    run.record(CheckId::TpmSignature, || {
        let (Some(t), Some(ak)) = (tpm, &ak) else {
            return Outcome::Skipped("the bundle has no vTPM quote".into());
        };
        let r = ak
            .clone()
            .and_then(|ak| tpm::verify_signature(&ak, &t.attest, &t.signature))
            .map_err(Into::into);
        result(r)
    });
    let attest = tpm.map(|t| tpm::parse_quote_attest(&t.attest));
    run.record(CheckId::TpmAttest, || match &attest {
        None => Outcome::Skipped("the bundle has no vTPM quote".into()),
        Some(Ok(_)) => Outcome::Pass,
        Some(Err(e)) => Outcome::Fail(e.clone().into()),
    });
    let attest = attest.and_then(Result::ok);
    run.record(CheckId::QualifyingData, || {
        let Some(a) = &attest else {
            return Outcome::Skipped("no parsable vTPM quote".into());
        };
        match binding::qualifying_data(&b.nonce, &spki_hash) {
            Err(_) => Outcome::Fail(EvidenceError::Missing("a bindable nonce")),
            Ok(q) if a.extra_data == q => Outcome::Pass,
            Ok(q) => Outcome::Fail(EvidenceError::QualifyingDataMismatch {
                expected: hex::encode(q),
                found: hex::encode(&a.extra_data),
            }),
        }
    });
    run.record(CheckId::VtpmChain, || {
        chain::vtpm_chain(b, ak.as_ref(), policy)
    });
    run.record(CheckId::PcrDigest, || {
        let (Some(a), Some(t)) = (&attest, tpm) else {
            return Outcome::Skipped("no parsable vTPM quote".into());
        };
        let quoted: Vec<u8> = a
            .selections
            .iter()
            .filter(|s| s.hash_alg == tpm::ALG_SHA256)
            .flat_map(|s| s.pcrs.iter().copied())
            .collect();
        let carried: Vec<u8> = t
            .pcrs
            .iter()
            .filter(|p| p.alg == tpm::ALG_SHA256)
            .map(|p| p.index)
            .collect();
        if quoted != carried || a.selections.len() != 1 {
            return Outcome::Fail(EvidenceError::PcrSelectionMismatch { quoted, carried });
        }
        let d = tpm::pcr_digest(t.pcrs.iter().map(|p| p.digest.as_slice()));
        if d.as_slice() == a.pcr_digest.as_slice() {
            Outcome::Pass
        } else {
            Outcome::Fail(EvidenceError::PcrDigestMismatch {
                expected: hex::encode(d),
                found: hex::encode(&a.pcr_digest),
            })
        }
    });
    let pcrs_trusted = run.passed(CheckId::PcrDigest) && run.passed(CheckId::TpmSignature);

    run.record(CheckId::PcrReference, || {
        if policy.pcr_reference.is_empty() {
            return Outcome::Skipped("no PCR reference values in the policy".into());
        }
        let Some(t) = tpm else {
            return Outcome::Fail(EvidenceError::Missing("vTPM PCR values"));
        };
        if !pcrs_trusted {
            return Outcome::Fail(EvidenceError::Dependency(CheckId::PcrDigest));
        }
        for (index, expected) in &policy.pcr_reference {
            let found = t
                .pcrs
                .iter()
                .find(|p| p.index == *index && p.alg == tpm::ALG_SHA256);
            if found.map(|p| p.digest.as_slice()) != Some(expected.as_slice()) {
                return Outcome::Fail(EvidenceError::PcrReferenceMismatch {
                    index: *index,
                    expected: hex::encode(expected),
                    found: found.map(|p| hex::encode(&p.digest)).unwrap_or_default(),
                });
            }
        }
        Outcome::Pass
    });

    run.record(CheckId::TdReference, || {
        if policy.mrtd_reference.is_none() && policy.rtmr_reference.is_empty() {
            return Outcome::Skipped("no MRTD/RTMR reference values in the policy".into());
        }
        let Some(f) = &td_fields else {
            return Outcome::Fail(EvidenceError::Missing("a TDX quote"));
        };
        if !tdx_checked {
            return Outcome::Fail(EvidenceError::Dependency(CheckId::TdxQuote));
        }
        if let Some(m) = &policy.mrtd_reference {
            if *m != f.mrtd {
                return Outcome::Fail(EvidenceError::TdReferenceMismatch {
                    register: "MRTD".into(),
                    expected: hex::encode(m),
                    found: hex::encode(f.mrtd),
                });
            }
        }
        for (i, r) in &policy.rtmr_reference {
            let found = f.rtmrs[usize::from(*i)];
            if *r != found {
                return Outcome::Fail(EvidenceError::TdReferenceMismatch {
                    register: format!("RTMR{i}"),
                    expected: hex::encode(r),
                    found: hex::encode(found),
                });
            }
        }
        Outcome::Pass
    });

    // Event logs.
    let tcg = tpm
        .and_then(|t| t.event_log.as_ref())
        .map(|l| eventlog::parse(l));
    run.record(CheckId::TcgEventLog, || {
        let Some(log) = &tcg else {
            return Outcome::Skipped("the bundle has no TCG event log".into());
        };
        let log = match log {
            Ok(l) => l,
            Err(e) => return Outcome::Fail(e.clone().into()),
        };
        let Some(t) = tpm else {
            return Outcome::Skipped("no vTPM quote".into());
        };
        let Some(replayed) = log.replay(eventlog::ALG_SHA256, PCR_COUNT) else {
            return Outcome::Fail(EvidenceError::Missing("a SHA-256 bank in the log"));
        };
        for p in t.pcrs.iter().filter(|p| p.alg == tpm::ALG_SHA256) {
            let Some(r) = replayed.get(usize::from(p.index)) else {
                return Outcome::Fail(EvidenceError::PcrIndexOutOfRange {
                    index: p.index,
                    max: (PCR_COUNT - 1) as u8,
                });
            };
            if *r != p.digest {
                return Outcome::Fail(EvidenceError::ReplayMismatch {
                    register: format!("PCR{}", p.index),
                    replayed: hex::encode(r),
                    quoted: hex::encode(&p.digest),
                });
            }
        }
        if pcrs_trusted {
            Outcome::Pass
        } else {
            Outcome::Fail(EvidenceError::Dependency(CheckId::PcrDigest))
        }
    });

    let ccel = b
        .tdx
        .as_ref()
        .and_then(|t| t.ccel.as_ref())
        .map(|c| eventlog::parse(&c.data));
    run.record(CheckId::CcelEventLog, || {
        let Some(log) = &ccel else {
            return Outcome::Skipped("the bundle has no CCEL".into());
        };
        let log = match log {
            Ok(l) => l,
            Err(e) => return Outcome::Fail(e.clone().into()),
        };
        let Some(f) = &td_fields else {
            return Outcome::Fail(EvidenceError::Missing("a TDX quote"));
        };
        let replayed = log.replay_rtmrs();
        for (i, (r, q)) in replayed.iter().zip(&f.rtmrs).enumerate() {
            if r != q {
                return Outcome::Fail(EvidenceError::ReplayMismatch {
                    register: format!("RTMR{i}"),
                    replayed: hex::encode(r),
                    quoted: hex::encode(q),
                });
            }
        }
        if tdx_checked {
            Outcome::Pass
        } else {
            Outcome::Skipped(format!("CCEL replays to the RTMRs{unverified_note}"))
        }
    });

    run.record(CheckId::PcrRtmrCrossCheck, || {
        let (Some(Ok(t)), Some(Ok(c))) = (&tcg, &ccel) else {
            return Outcome::Skipped("needs both a TCG event log and a CCEL".into());
        };
        result(eventlog::cross_check(t, c).map_err(Into::into))
    });

    run.record(CheckId::EkChain, || {
        let Some(t) = tpm else {
            return Outcome::Skipped("the bundle has no vTPM part".into());
        };
        if policy.ek_roots.is_empty() {
            return Outcome::Skipped("no EK roots in the policy".into());
        }
        if t.ek_certs.is_empty() {
            return Outcome::Fail(EkChainError::NoEkCertificate.into());
        }
        let mut intermediates: Vec<Vec<u8>> = t.ca_certs.iter().map(|c| c.to_vec()).collect();
        intermediates.extend(policy.ek_intermediates.iter().cloned());
        let now = i64::try_from(inputs.now_unix).unwrap_or(i64::MAX);
        // Any EK certificate that chains is enough; report the first one's error otherwise.
        let mut first_err = None;
        for c in &t.ek_certs {
            match ekchain::verify_chain(&c.der, &intermediates, &policy.ek_roots, now) {
                Ok(_) => return Outcome::Pass,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Outcome::Fail(first_err.unwrap_or(EkChainError::NoEkCertificate).into())
    });

    run.record(CheckId::AkEkBinding, || {
        let Some(t) = tpm else {
            return Outcome::Skipped("the bundle has no vTPM part".into());
        };
        let Some(cert) = &t.ak_cert else {
            return Outcome::Skipped(
                "no provider AK certificate (credential activation is not implemented)".into(),
            );
        };
        let mut intermediates: Vec<Vec<u8>> = t.ca_certs.iter().map(|c| c.to_vec()).collect();
        intermediates.extend(policy.ek_intermediates.iter().cloned());
        let now = i64::try_from(inputs.now_unix).unwrap_or(i64::MAX);
        result(check_ak_cert(
            &t.ak_public,
            cert,
            &intermediates,
            &policy.ek_roots,
            now,
        ))
    });

    run.record(CheckId::VtpmTiming, || {
        let Some(max) = policy.max_tpm_cheap_rtt_ns else {
            return Outcome::Skipped("no timing bound in the policy".into());
        };
        match b.timings.tpm_cheap_rtt_min_ns {
            None => Outcome::Fail(EvidenceError::Missing("timings.tpm_cheap_rtt_min_ns")),
            Some(found) if found <= max => Outcome::Pass,
            Some(found) => Outcome::Fail(EvidenceError::VtpmTooSlow {
                found_ns: found,
                max_ns: max,
            }),
        }
    });

    run.record(CheckId::Anchors, || match (&b.anchors, &policy.anchors) {
        (None, _) => Outcome::Skipped("the bundle has no anchor report".into()),
        (Some(_), None) => Outcome::Skipped("no anchors in the policy".into()),
        // The report's digest is bound into REPORTDATA by `report_data`; here the report
        // itself is checked against the nonce and the anchors the policy knows.
        (Some(_), Some(_)) if !anchors_bound => {
            Outcome::Fail(EvidenceError::Dependency(CheckId::HclUserData))
        }
        (Some(report), Some(anchors)) => {
            match crate::verify::anchor::verify_report(
                report,
                &report.digest(),
                &b.nonce,
                anchors,
                inputs.now_unix,
            ) {
                Err(e) => Outcome::Fail(EvidenceError::Anchors(e)),
                // An anchor the responder reports as down or slow is honest reporting; one
                // whose recorded handshake or chain does not verify is not.
                Ok(v) => match v.anchors.into_iter().find_map(|c| match c.outcome {
                    Err(crate::verify::anchor::AnchorError::Recorded(_)) | Ok(_) => None,
                    Err(error) => Some((c.name, error)),
                }) {
                    None => Outcome::Pass,
                    Some((name, error)) => {
                        Outcome::Fail(EvidenceError::AnchorInvalid { name, error })
                    }
                },
            }
        }
    });

    EvidenceReport {
        checks: run.results,
        tdx: tdx_verified,
    }
}
