//! Verification of an evidence bundle: every check a named step with its own typed error, run
//! in a fixed order; the report lists each as passed, failed or skipped.
//!
//! Pure (STYLE rule 1): the bundle, policy, nonce record, QUIC peer key and time come in.
//! The binding being checked is specified in `docs/binding.md` ([`locus_proto::binding`]).

mod akcert;
mod binding;
mod chain;
pub mod ekchain;
mod error;
mod hcl;
mod json;
mod logs;
pub mod nonce;
pub mod policy;
mod provider;
mod quote;
mod reference;
mod report;
mod session;
mod vtpm;

use locus_proto::evidence::EvidenceBundle;

pub use crate::check::CheckId;
pub use akcert::check_ak_cert;
pub use ekchain::EkChainError;
pub use error::{BundleErrorKind, EvidenceError};
pub use nonce::{NonceError, NonceLedger, NonceRecord};
pub use policy::{EvidencePolicy, PolicyError, PolicyFile, Requirement};
pub use quote::{fields_unverified as td_fields_unverified, TdFields};
pub use report::{CheckResult, EvidenceReport, Outcome};

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
            | CheckId::TdxTcb
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

/// The checks run so far; a check the policy turns off is skipped without running.
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

/// A check's `Result` as its outcome.
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
            EvidenceReport {
                checks,
                tdx: None,
                unpinned_code: policy.unpinned_code,
                unpinned: policy.unpinned.clone(),
            }
        }
    }
}

/// Verifies a decoded bundle. Each check gets what it needs from the bundle, the policy, the
/// inputs and the checks before it; the order below is the report's order.
pub fn verify_bundle(
    b: &EvidenceBundle,
    policy: &EvidencePolicy,
    inputs: &VerifyInputs,
) -> EvidenceReport {
    let mut run = Run {
        policy,
        results: Vec::new(),
    };
    let now = inputs.now_unix;
    run.record(CheckId::BundleFormat, || Outcome::Pass);
    run.record(CheckId::BindingVersion, || {
        chain::binding_version(b, policy)
    });
    run.record(CheckId::Nonce, || session::nonce(b, policy, inputs));
    run.record(CheckId::Transcript, || session::transcript(b));
    let peer = inputs.peer_spki.as_deref();
    run.record(CheckId::SessionSpki, || session::session_spki(b, peer));

    let td = quote::check(&mut run, b, policy, now);
    let spki_hash = locus_proto::binding::spki_hash(&b.session_spki);
    let anchors_bound = binding::check(&mut run, b, &td, spki_hash);
    let pcrs_trusted = vtpm::check(&mut run, b, spki_hash);
    run.record(CheckId::VtpmChain, || chain::vtpm_chain(b, policy));
    let tpm = b.tpm.as_ref();
    run.record(CheckId::PcrReference, || {
        reference::pcrs(policy, tpm, pcrs_trusted)
    });
    run.record(CheckId::TdReference, || reference::td(policy, &td));
    logs::check(&mut run, b, &td, pcrs_trusted);
    run.record(CheckId::EkChain, || provider::ek_chain(tpm, policy, now));
    run.record(CheckId::AkEkBinding, || {
        provider::ak_ek_binding(tpm, &b.nonce, policy, now)
    });
    let max_rtt = policy.max_tpm_cheap_rtt_ns;
    run.record(CheckId::VtpmTiming, || vtpm::timing(b, max_rtt));
    run.record(CheckId::Anchors, || {
        session::anchors(b, policy, now, anchors_bound)
    });
    run.record(CheckId::AnchorClocksource, || {
        session::anchor_clocksource(b, policy)
    });

    // Whether the code is pinned is decided per bundle: an Azure bundle's TD quote is the
    // paravisor's, so the policy's TD pins say nothing about the guest.
    let pcrs_pinned = run.passed(CheckId::PcrReference);
    let mut unpinned = policy.unpinned.clone();
    unpinned.extend(reference::hcl_guest_unpinned(policy, tpm, pcrs_pinned));
    EvidenceReport {
        checks: run.results,
        tdx: td.verified,
        unpinned_code: !unpinned.is_empty(),
        unpinned,
    }
}
