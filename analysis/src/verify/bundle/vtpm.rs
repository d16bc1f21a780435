//! The vTPM quote: signature under the AK, a TPM-made quote, qualifying data bound to the
//! nonce and session key, and the carried PCR values hashing to the quoted digest.

use locus_proto::binding;
use locus_proto::evidence::{EvidenceBundle, TpmEvidence};

use super::{result, CheckId, EvidenceError, Outcome, Run};
use crate::verify::tpm::{self, QuoteAttest};

/// Runs `tpm_signature`, `tpm_attest`, `qualifying_data` and `pcr_digest`; returns whether
/// the carried PCR values can be trusted (signature and digest passed).
pub(super) fn check(run: &mut Run<'_>, b: &EvidenceBundle, spki_hash: [u8; 32]) -> bool {
    let tpm = b.tpm.as_ref();
    run.record(CheckId::TpmSignature, || match tpm {
        None => Outcome::Skipped("the bundle has no vTPM quote".into()),
        Some(t) => result(
            tpm::parse_ak_public(&t.ak_public)
                .and_then(|ak| tpm::verify_signature(&ak, &t.attest, &t.signature))
                .map_err(Into::into),
        ),
    });
    let attest = tpm.map(|t| tpm::parse_quote_attest(&t.attest));
    run.record(CheckId::TpmAttest, || match &attest {
        None => Outcome::Skipped("the bundle has no vTPM quote".into()),
        Some(Ok(_)) => Outcome::Pass,
        Some(Err(e)) => Outcome::Fail(e.clone().into()),
    });
    let attest = attest.and_then(Result::ok);
    run.record(CheckId::QualifyingData, || {
        qualifying_data(attest.as_ref(), &b.nonce, &spki_hash)
    });
    run.record(CheckId::PcrDigest, || match (&attest, tpm) {
        (Some(a), Some(t)) => pcr_digest(a, t),
        _ => Outcome::Skipped("no parsable vTPM quote".into()),
    });
    run.passed(CheckId::PcrDigest) && run.passed(CheckId::TpmSignature)
}

/// `qualifying_data`: the quote's extraData is the binding's qualifying data.
fn qualifying_data(attest: Option<&QuoteAttest>, nonce: &[u8], spki_hash: &[u8; 32]) -> Outcome {
    let Some(a) = attest else {
        return Outcome::Skipped("no parsable vTPM quote".into());
    };
    match binding::qualifying_data(nonce, spki_hash) {
        Err(_) => Outcome::Fail(EvidenceError::Missing("a bindable nonce")),
        Ok(q) if a.extra_data == q => Outcome::Pass,
        Ok(q) => Outcome::Fail(EvidenceError::QualifyingDataMismatch {
            expected: hex::encode(q),
            found: hex::encode(&a.extra_data),
        }),
    }
}

/// `pcr_digest`: the quote selects exactly the carried SHA-256 PCRs, and their values hash
/// to its pcrDigest.
fn pcr_digest(a: &QuoteAttest, t: &TpmEvidence) -> Outcome {
    let quoted: Vec<u8> = (a.selections.iter())
        .filter(|s| s.hash_alg == tpm::ALG_SHA256)
        .flat_map(|s| s.pcrs.iter().copied())
        .collect();
    let carried: Vec<u8> = (t.pcrs.iter())
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
}

/// `vtpm_timing`: the in-TD vTPM round trip is within the policy's bound.
pub(super) fn timing(b: &EvidenceBundle, max_ns: Option<u64>) -> Outcome {
    let Some(max) = max_ns else {
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
}
