//! Reference values: the policy's PCR values (`pcr_reference`) and MRTD, RTMRs, TD attributes,
//! XFAM and MRCONFIGID (`td_reference`), compared only once the quote carrying them verified.

use locus_proto::evidence::TpmEvidence;

use super::quote::TdxPart;
use super::{CheckId, EvidenceError, EvidencePolicy, Outcome};
use crate::verify::tpm;

/// `pcr_reference`; `pcrs_trusted`: the vTPM signature and PCR digest passed.
pub(super) fn pcrs(
    policy: &EvidencePolicy,
    t: Option<&TpmEvidence>,
    pcrs_trusted: bool,
) -> Outcome {
    if policy.pcr_reference.is_empty() {
        return Outcome::Skipped("no PCR reference values in the policy".into());
    }
    let Some(t) = t else {
        return Outcome::Fail(EvidenceError::Missing("vTPM PCR values"));
    };
    if !pcrs_trusted {
        return Outcome::Fail(EvidenceError::Dependency(CheckId::PcrDigest));
    }
    for (index, expected) in &policy.pcr_reference {
        let found = (t.pcrs.iter()).find(|p| p.index == *index && p.alg == tpm::ALG_SHA256);
        if found.map(|p| p.digest.as_slice()) != Some(expected.as_slice()) {
            return Outcome::Fail(EvidenceError::PcrReferenceMismatch {
                index: *index,
                expected: hex::encode(expected),
                found: found.map(|p| hex::encode(&p.digest)).unwrap_or_default(),
            });
        }
    }
    Outcome::Pass
}

/// `td_reference`.
pub(super) fn td(policy: &EvidencePolicy, td: &TdxPart) -> Outcome {
    if policy.mrtd_reference.is_none()
        && policy.rtmr_reference.is_empty()
        && policy.td_attributes_reference.is_none()
        && policy.xfam_reference.is_none()
    {
        return Outcome::Skipped("no MRTD/RTMR reference values in the policy".into());
    }
    let Some(f) = &td.fields else {
        return Outcome::Fail(EvidenceError::Missing("a TDX quote"));
    };
    if !td.checked {
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
    let registers = [
        (
            "TD attributes",
            policy.td_attributes_reference,
            f.td_attributes,
        ),
        ("XFAM", policy.xfam_reference, f.xfam),
    ];
    for (register, expected, found) in registers {
        if let Some(e) = expected {
            if e != found {
                return Outcome::Fail(EvidenceError::TdReferenceMismatch {
                    register: register.into(),
                    expected: hex::encode(e),
                    found: hex::encode(found),
                });
            }
        }
    }
    if policy.mr_config_id_reference != f.mr_config_id {
        return Outcome::Fail(EvidenceError::TdReferenceMismatch {
            register: "MRCONFIGID".into(),
            expected: hex::encode(policy.mr_config_id_reference),
            found: hex::encode(f.mr_config_id),
        });
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
}
