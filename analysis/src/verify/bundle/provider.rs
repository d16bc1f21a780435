//! The provider's certificates: an EK certificate chaining to a provider root (`ek_chain`)
//! and a provider AK certificate for this AK (`ak_ek_binding`).

use locus_proto::evidence::TpmEvidence;

use super::akcert::check_ak_cert;
use super::{ekchain, result, EkChainError, EvidencePolicy, Outcome};

/// The bundle's CA certificates, then the policy's intermediates.
fn intermediates(t: &TpmEvidence, policy: &EvidencePolicy) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = t.ca_certs.iter().map(|c| c.to_vec()).collect();
    all.extend(policy.ek_intermediates.iter().cloned());
    all
}

fn now_secs(now_unix: u64) -> i64 {
    i64::try_from(now_unix).unwrap_or(i64::MAX)
}

/// `ek_chain`: any EK certificate that chains is enough; the first one's error otherwise.
pub(super) fn ek_chain(t: Option<&TpmEvidence>, policy: &EvidencePolicy, now_unix: u64) -> Outcome {
    let Some(t) = t else {
        return Outcome::Skipped("the bundle has no vTPM part".into());
    };
    if policy.ek_roots.is_empty() {
        return Outcome::Skipped("no EK roots in the policy".into());
    }
    if t.ek_certs.is_empty() {
        return Outcome::Fail(EkChainError::NoEkCertificate.into());
    }
    let intermediates = intermediates(t, policy);
    let now = now_secs(now_unix);
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
}

/// `ak_ek_binding`: a provider AK certificate certifies this AK and chains to an EK root.
pub(super) fn ak_ek_binding(
    t: Option<&TpmEvidence>,
    policy: &EvidencePolicy,
    now_unix: u64,
) -> Outcome {
    let Some(t) = t else {
        return Outcome::Skipped("the bundle has no vTPM part".into());
    };
    let Some(cert) = &t.ak_cert else {
        return Outcome::Skipped(
            "no provider AK certificate (credential activation is not implemented)".into(),
        );
    };
    let intermediates = intermediates(t, policy);
    let now = now_secs(now_unix);
    result(check_ak_cert(
        &t.ak_public,
        cert,
        &intermediates,
        &policy.ek_roots,
        now,
    ))
}
