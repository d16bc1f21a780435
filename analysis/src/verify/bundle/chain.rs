//! Binding versions 2 and 3: the policy's minimum binding version, and the AK-signed chain of
//! vTPM quotes whose timings a relayed vTPM cannot fake (`docs/binding.md`, "Version 3").

use locus_proto::binding::{self, BindingVersion};
use locus_proto::evidence::EvidenceBundle;

use super::{EvidenceError, EvidencePolicy, Outcome};
use crate::verify::tpm;

/// `binding_version`: the bundle follows at least the binding version the policy requires.
pub(super) fn binding_version(b: &EvidenceBundle, policy: &EvidencePolicy) -> Outcome {
    let found = b.binding_version().number();
    if found >= policy.min_binding_version {
        Outcome::Pass
    } else {
        Outcome::Fail(EvidenceError::BindingTooOld {
            found,
            required: policy.min_binding_version,
        })
    }
}

/// `vtpm_chain`: for a version 2+ bundle with a vTPM part, every link of the chain is a quote
/// by the bundle's AK over the qualifying data chained from the previous signature (and, in
/// version 3, the TD's chain secret), each link and the main quote have their timing, and the
/// fastest link is within `max_tpm_chain_rtt_ns`. The main quote does not count towards the
/// minimum: its qualifying data (nonce, session key) is known to the vTPM transport, which
/// could have it signed ahead of time. The timings and the secret are bound into REPORTDATA
/// (checked by `report_data`).
pub(super) fn vtpm_chain(b: &EvidenceBundle, policy: &EvidencePolicy) -> Outcome {
    let Some(t) = &b.tpm else {
        return Outcome::Skipped("the bundle has no vTPM part".into());
    };
    if b.binding_version() == BindingVersion::V1 {
        return Outcome::Skipped("a binding version 1 bundle has no vTPM chain".into());
    }
    match check_links(b) {
        Err(e) => Outcome::Fail(e),
        Ok(fastest) => match policy.max_tpm_chain_rtt_ns {
            Some(max) if fastest > max => Outcome::Fail(EvidenceError::VtpmChainTooSlow {
                found_ns: fastest,
                max_ns: max,
                quotes: t.chain.len(),
            }),
            _ => Outcome::Pass,
        },
    }
}

/// Checks every link; returns the fastest link's time.
fn check_links(b: &EvidenceBundle) -> Result<u64, EvidenceError> {
    let t = b
        .tpm
        .as_ref()
        .ok_or(EvidenceError::Missing("a vTPM part"))?;
    let timings = &b.timings.tpm_chain_ns;
    if b.timings.tpm_quote_ns.is_none() || t.chain.is_empty() || timings.is_empty() {
        return Err(EvidenceError::VtpmTimingsMissing {
            links: t.chain.len(),
            timings: timings.len(),
            quote_timed: b.timings.tpm_quote_ns.is_some(),
        });
    }
    if t.chain.len() != timings.len() {
        return Err(EvidenceError::VtpmChainTimings {
            links: t.chain.len(),
            timings: timings.len(),
        });
    }
    // Version 3: the links commit to the TD's secret (version 2's do not).
    let secret: Option<[u8; binding::CHAIN_SECRET_LEN]> = match b.binding_version() {
        BindingVersion::V3 { .. } => {
            let s = b.chain_secret();
            Some(
                s.try_into()
                    .map_err(|_| EvidenceError::VtpmChainSecret { len: s.len() })?,
            )
        }
        _ => None,
    };
    let ak = tpm::parse_ak_public(&t.ak_public)?;
    let mut previous = t.signature.as_slice();
    for (i, link) in t.chain.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        tpm::verify_signature(&ak, &link.attest, &link.signature)
            .map_err(|error| EvidenceError::VtpmChainSignature { index, error })?;
        let attest = tpm::parse_quote_attest(&link.attest)
            .map_err(|error| EvidenceError::VtpmChainSignature { index, error })?;
        let expected = match &secret {
            Some(s) => binding::chain_qualifying_data_v3(&b.nonce, s, index, previous),
            None => binding::chain_qualifying_data(&b.nonce, index, previous),
        }
        .map_err(|_| EvidenceError::Missing("a bindable nonce"))?;
        if attest.extra_data != expected {
            return Err(EvidenceError::VtpmChainBroken {
                index,
                expected: hex::encode(expected),
                found: hex::encode(&attest.extra_data),
            });
        }
        previous = &link.signature;
    }
    Ok(timings.iter().copied().min().unwrap_or(u64::MAX))
}
