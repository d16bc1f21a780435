//! The binding checks (`docs/binding.md`): REPORTDATA commits to the nonce, session key, AK
//! and anchor report (`report_data`, `ak_hash`), directly, through a coalesced quote's
//! inclusion proof, or through an Azure HCL report (`hcl_report`, `hcl_user_data`).

use locus_proto::binding::{self, BindingError, BindingInputs};
use locus_proto::evidence::{EvidenceBundle, TdxInclusionProof};

use super::quote::TdxPart;
use super::{hcl, CheckId, EvidenceError, Outcome, Requirement, Run};
use crate::verify::cloud::azure::AzureError;
use crate::verify::tdx::{coalesced_report_data, InclusionProof};

/// The binding value this bundle must carry, and what the quote's REPORTDATA says of it.
struct Expected<'a> {
    /// SHA-256 of the bundle's AK (zero without a vTPM part).
    ak_hash: [u8; 32],
    /// REPORTDATA recomputed from the bundle (Err: the nonce cannot be bound).
    report_data: Result<[u8; 64], BindingError>,
    /// A coalesced quote's inclusion proof.
    proof: Option<&'a TdxInclusionProof>,
    /// The root the proof folds `report_data` into.
    folded: Option<Result<[u8; 64], EvidenceError>>,
    /// Whether the quote's REPORTDATA is the binding (or the folded root).
    matches: Option<bool>,
}

impl<'a> Expected<'a> {
    fn of(b: &'a EvidenceBundle, td: &TdxPart, spki_hash: [u8; 32]) -> Self {
        let ak_hash = (b.tpm.as_ref())
            .map(|t| binding::ak_public_hash(&t.ak_public))
            .unwrap_or([0; 32]);
        let report_data = binding::report_data(&BindingInputs {
            nonce: &b.nonce,
            ak_public_hash: ak_hash,
            spki_hash,
            anchor_digest: b.anchors.as_ref().map(|a| a.digest()),
            version: b.binding_version(),
        });
        // A coalesced quote: REPORTDATA is the root the proof folds the binding (a leaf) into.
        let proof = b.tdx.as_ref().and_then(|t| t.inclusion.as_ref());
        let folded = match (proof, &report_data) {
            (Some(p), Ok(leaf)) => Some(fold_inclusion(leaf, p)),
            _ => None,
        };
        let matches = match (&td.fields, &report_data, &folded) {
            (Some(f), Ok(_), Some(folded)) => {
                Some(folded.as_ref().is_ok_and(|r| f.report_data == *r))
            }
            (Some(f), Ok(e), None) => Some(f.report_data == *e),
            _ => None,
        };
        Expected {
            ak_hash,
            report_data,
            proof,
            folded,
            matches,
        }
    }
}

/// Runs `hcl_report`, `report_data`, `ak_hash` and `hcl_user_data`; returns whether the
/// anchor report's digest is bound (with an HCL report, only through `user-data`).
pub(super) fn check(
    run: &mut Run<'_>,
    b: &EvidenceBundle,
    td: &TdxPart,
    spki_hash: [u8; 32],
) -> bool {
    let quote = b.tdx.as_ref().map(|t| t.quote.as_slice());
    let hcl_report = b.tpm.as_ref().and_then(|t| t.hcl_report.as_deref());
    let hcl: Option<Result<hcl::Parsed<'_>, AzureError>> = hcl_report.map(hcl::parse);
    run.record(CheckId::HclReport, || match (hcl_report, &hcl) {
        (Some(r), Some(p)) => hcl::report_outcome(r, p, quote),
        _ => Outcome::Skipped("the bundle has no HCL report".into()),
    });
    let hcl_rd_matches = (hcl.as_ref())
        .and_then(|p| hcl::report_data_matches(p, td.fields.as_ref().map(|f| &f.report_data)));
    let expected = Expected::of(b, td, spki_hash);
    run.record(CheckId::ReportData, || {
        report_data(b, td, hcl.as_ref(), &expected)
    });
    run.record(CheckId::AkHash, || {
        let Some(t) = &b.tpm else {
            return Outcome::Skipped("the bundle has no vTPM quote".into());
        };
        if let Some(p) = &hcl {
            return hcl::ak_outcome(p, &t.ak_public, hcl_rd_matches, td.checked);
        }
        match expected.matches {
            None => Outcome::Skipped("no TDX REPORTDATA to bind the AK".into()),
            Some(true) if td.checked => Outcome::Pass,
            Some(true) => Outcome::Skipped(format!("AK hash bound{}", td.unverified_note())),
            Some(false) => Outcome::Fail(EvidenceError::AkHashMismatch {
                ak_hash: hex::encode(expected.ak_hash),
            }),
        }
    });
    // With an HCL report, its user data is the only thing binding the in-TD timings, the
    // chain secret and the anchor report to the TD quote: required whatever the policy says.
    let user_data_requirement = match &hcl {
        Some(_) => Requirement::Required,
        None => run.policy.requirement(CheckId::HclUserData),
    };
    run.record_as(CheckId::HclUserData, user_data_requirement, || match &hcl {
        None => Outcome::Skipped("the bundle has no HCL report".into()),
        Some(p) => {
            let rd = expected.report_data.as_ref().ok();
            hcl::user_data_outcome(p, rd, hcl_rd_matches, td.checked)
        }
    });
    hcl.is_none() || run.passed(CheckId::HclUserData)
}

/// `report_data`: REPORTDATA is the binding, the root a coalesced quote's proof folds it
/// into, or (with an HCL report) the hash of the HCL variable data.
fn report_data(
    b: &EvidenceBundle,
    td: &TdxPart,
    hcl: Option<&Result<hcl::Parsed<'_>, AzureError>>,
    expected: &Expected<'_>,
) -> Outcome {
    let Some(tdx) = &b.tdx else {
        return Outcome::Skipped("the bundle has no TDX quote".into());
    };
    let Some(f) = &td.fields else {
        return Outcome::Fail(EvidenceError::TdxQuoteTooShort {
            len: tdx.quote.len(),
        });
    };
    if let Some(p) = hcl {
        return hcl::report_data_outcome(p, &f.report_data, expected.proof.is_some(), td.checked);
    }
    let Ok(binding) = &expected.report_data else {
        return Outcome::Fail(EvidenceError::Missing("a bindable nonce"));
    };
    let note = td.unverified_note();
    if let (Some(p), Some(folded)) = (expected.proof, &expected.folded) {
        let root = match folded {
            Ok(r) => r,
            Err(e) => return Outcome::Fail(e.clone()),
        };
        if f.report_data == *root {
            return if td.checked {
                Outcome::Pass
            } else {
                Outcome::Skipped(format!(
                    "REPORTDATA is the root over this bundle's binding{note}"
                ))
            };
        }
        if f.report_data == *binding {
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
    if f.report_data != *binding {
        return Outcome::Fail(EvidenceError::ReportDataMismatch {
            expected: hex::encode(binding),
            found: hex::encode(f.report_data),
        });
    }
    if td.checked {
        Outcome::Pass
    } else {
        Outcome::Skipped(format!("REPORTDATA matches{note}"))
    }
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
