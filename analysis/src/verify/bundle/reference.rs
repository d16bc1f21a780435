//! Reference values: the policy's PCR values (`pcr_reference`) and MRTD, RTMRs, TD attributes,
//! XFAM and MRCONFIGID (`td_reference`), compared only once the quote carrying them verified;
//! and which pins an Azure bundle needs before its code counts as pinned.

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

/// PCR 4: the boot manager and the kernel EFI image it loads.
const GUEST_BOOT_PCR: u8 = 4;
/// One of these must be pinned with [`GUEST_BOOT_PCR`]: 8 and 9 (GRUB's commands and the
/// files it loads: kernel, initrd) or 11 (the UKI sections systemd-stub measures).
const GUEST_KERNEL_PCRS: [u8; 3] = [8, 9, 11];

/// The pins an Azure bundle (one carrying an HCL report) lacks. Its TD quote is the
/// paravisor's: MRTD and RTMR0-3 are the same for every CVM on that paravisor build, and the
/// guest's boot is measured only into the vTPM's PCRs. Its code counts as pinned only when the
/// policy pins PCR 4 and one of 8, 9, 11 and `pcr_reference` passed on them (the vTPM quote
/// covering them verified). Empty for a bundle without an HCL report.
pub(super) fn hcl_guest_unpinned(
    policy: &EvidencePolicy,
    t: Option<&TpmEvidence>,
    pcr_reference_passed: bool,
) -> Vec<String> {
    if t.and_then(|t| t.hcl_report.as_ref()).is_none() {
        return Vec::new();
    }
    let pinned = |i: u8| policy.pcr_reference.contains_key(&i);
    let mut missing = Vec::new();
    if !pinned(GUEST_BOOT_PCR) {
        missing.push(format!("reference.pcrs[{GUEST_BOOT_PCR}]"));
    }
    if !GUEST_KERNEL_PCRS.into_iter().any(pinned) {
        missing.push("reference.pcrs[8, 9 or 11]".into());
    }
    if missing.is_empty() && !pcr_reference_passed {
        missing.push(format!("{} (did not pass)", CheckId::PcrReference.name()));
    }
    missing
}
