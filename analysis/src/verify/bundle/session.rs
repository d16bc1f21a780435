//! The session checks: a fresh nonce this verifier issued (`nonce`), a transcript signed by
//! the session key (`transcript`), the QUIC peer's key (`session_spki`), and the anchor
//! report checked against the nonce and the policy's anchors (`anchors`).

use locus_proto::binding;
use locus_proto::evidence::EvidenceBundle;

use super::{result, CheckId, EvidenceError, EvidencePolicy, NonceError, Outcome, VerifyInputs};
use crate::verify::anchor::{self, AnchorError};

/// `nonce`: issued by this verifier, unused and within its window.
pub(super) fn nonce(b: &EvidenceBundle, policy: &EvidencePolicy, inputs: &VerifyInputs) -> Outcome {
    let Some(rec) = &inputs.nonce_record else {
        return Outcome::Fail(NonceError::Unknown.into());
    };
    let checked = rec.check(
        &b.nonce,
        &policy.nonce_issuer,
        policy.nonce_max_age_secs,
        inputs.now_unix,
    );
    result(checked.map_err(Into::into))
}

/// `transcript`: the echo transcript is signed by the session key.
pub(super) fn transcript(b: &EvidenceBundle) -> Outcome {
    result(b.transcript.verify(&b.session_spki).map_err(Into::into))
}

/// `session_spki`: the session key is the QUIC peer's.
pub(super) fn session_spki(b: &EvidenceBundle, peer_spki: Option<&[u8]>) -> Outcome {
    match peer_spki {
        None => Outcome::Skipped("no QUIC peer key given (offline verification)".into()),
        Some(peer) if peer == b.session_spki.as_slice() => Outcome::Pass,
        Some(peer) => Outcome::Fail(EvidenceError::SpkiMismatch {
            bundle: hex::encode(binding::spki_hash(&b.session_spki)),
            peer: hex::encode(binding::spki_hash(peer)),
        }),
    }
}

/// `anchors`: the report's digest is bound into REPORTDATA by `report_data` (with an HCL
/// report: by `hcl_user_data`, hence `anchors_bound`); here the report itself is checked
/// against the nonce and the anchors the policy knows.
pub(super) fn anchors(
    b: &EvidenceBundle,
    policy: &EvidencePolicy,
    now_unix: u64,
    anchors_bound: bool,
) -> Outcome {
    let (report, known) = match (&b.anchors, &policy.anchors) {
        (None, _) => return Outcome::Skipped("the bundle has no anchor report".into()),
        (Some(_), None) => return Outcome::Skipped("no anchors in the policy".into()),
        (Some(_), Some(_)) if !anchors_bound => {
            return Outcome::Fail(EvidenceError::Dependency(CheckId::HclUserData))
        }
        (Some(r), Some(k)) => (r, k),
    };
    let v = match anchor::verify_report(report, &report.digest(), &b.nonce, known, now_unix) {
        Ok(v) => v,
        Err(e) => return Outcome::Fail(EvidenceError::Anchors(e)),
    };
    // An anchor the responder reports as down or slow leaves the report intact (the verdict
    // still reads it as missing data: `BundleFindings::failed_anchors`); one whose recorded
    // handshake or chain does not verify is an invalid report.
    let invalid = v.anchors.into_iter().find_map(|c| match c.outcome {
        Err(AnchorError::Recorded(_)) | Ok(_) => None,
        Err(error) => Some((c.name, error)),
    });
    match invalid {
        None => Outcome::Pass,
        Some((name, error)) => Outcome::Fail(EvidenceError::AnchorInvalid { name, error }),
    }
}

/// `anchor_clocksource`: the anchor report was timed with a clock the policy allows (the
/// report's digest, clocksource included, is bound by `report_data`).
pub(super) fn anchor_clocksource(b: &EvidenceBundle, policy: &EvidencePolicy) -> Outcome {
    match (&b.anchors, &policy.anchors) {
        (None, _) => Outcome::Skipped("the bundle has no anchor report".into()),
        (Some(_), None) => Outcome::Skipped("no anchors in the policy".into()),
        (Some(r), Some(k)) => match k.check_clocksource(r) {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(EvidenceError::AnchorClocksource(e)),
        },
    }
}
