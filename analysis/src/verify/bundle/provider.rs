//! The provider's certificates: an EK certificate chaining to a provider root (`ek_chain`),
//! and the proof that this AK shares that EK's TPM (`ak_ek_binding`): a provider AK
//! certificate, or the nonce sealed to the certified EK for this AK (credential activation).

use locus_proto::evidence::TpmEvidence;

use super::akcert::check_ak_cert;
use super::{ekchain, result, CheckId, EkChainError, EvidencePolicy, Outcome, Requirement};
use crate::verify::credential::{check_sealed_nonce, SealError};

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

/// `ak_ek_binding`: `ek_chain` says a certificate is genuine, not that this AK shares its TPM
/// (a software TPM can carry a copied one). That takes a provider AK certificate for this AK
/// chaining to an EK root, or the bundle's nonce sealed to a chaining EK certificate for this
/// AK; without either the check fails when the policy requires `ek_chain`.
pub(super) fn ak_ek_binding(
    t: Option<&TpmEvidence>,
    nonce: &[u8],
    policy: &EvidencePolicy,
    now_unix: u64,
) -> Outcome {
    let Some(t) = t else {
        return Outcome::Skipped("the bundle has no vTPM part".into());
    };
    if t.ak_cert.is_none() && t.sealed_nonce.is_none() {
        return if policy.requirement(CheckId::EkChain) == Requirement::Required {
            Outcome::Fail(SealError::NoProof.into())
        } else {
            Outcome::Skipped("no provider AK certificate and no sealed nonce".into())
        };
    }
    if policy.ek_roots.is_empty() {
        return Outcome::Skipped("no EK roots in the policy".into());
    }
    let intermediates = intermediates(t, policy);
    let now = now_secs(now_unix);
    if let Some(cert) = &t.ak_cert {
        if let Err(e) = check_ak_cert(&t.ak_public, cert, &intermediates, &policy.ek_roots, now) {
            return Outcome::Fail(e);
        }
    }
    let Some(sealed) = &t.sealed_nonce else {
        return Outcome::Pass;
    };
    let chains = |der: &[u8]| {
        ekchain::verify_chain(der, &intermediates, &policy.ek_roots, now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    result(
        check_sealed_nonce(sealed, nonce, &t.ak_public, &t.ek_certs, &chains).map_err(Into::into),
    )
}
