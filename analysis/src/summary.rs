//! Reduce the evidence verifier's report ([`crate::evidence::EvidenceReport`]) to the
//! [`EvidenceSummary`] the verdict engine takes.

use crate::evidence::{CheckId, EvidenceReport, Outcome};
use crate::input::EvidenceSummary;
use crate::tdx::RootKind;

impl EvidenceSummary {
    /// Summary of a verified bundle: its validity, the names of the checks that invalidate it,
    /// whether the TDX and vTPM evidence are bound (AK hash and, when it ran, the PCR ↔ RTMR
    /// cross-check), and whether the TDX quote chains to a configured (lab) root.
    pub fn from_report(report: &EvidenceReport) -> Self {
        let outcome = |c| report.outcome(c);
        let bound = match (
            outcome(CheckId::AkHash),
            outcome(CheckId::PcrRtmrCrossCheck),
        ) {
            (Some(Outcome::Fail(_)), _) | (_, Some(Outcome::Fail(_))) => Some(false),
            (Some(Outcome::Pass), _) => Some(true),
            _ => None,
        };
        EvidenceSummary {
            valid: report.valid(),
            failed_checks: report
                .failed()
                .into_iter()
                .map(|c| c.name().to_string())
                .collect(),
            tdx_vtpm_bound: bound,
            lab_root: matches!(
                report.tdx.as_ref().map(|t| &t.root),
                Some(RootKind::Configured { .. })
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{CheckResult, EvidenceError, Requirement};

    fn line(check: CheckId, outcome: Outcome) -> CheckResult {
        CheckResult {
            check,
            requirement: Requirement::Required,
            outcome,
        }
    }

    #[test]
    fn ak_hash_failure_is_unbound_and_named() {
        let report = EvidenceReport {
            checks: vec![
                line(CheckId::TdxQuote, Outcome::Pass),
                line(
                    CheckId::AkHash,
                    Outcome::Fail(EvidenceError::AkHashMismatch {
                        ak_hash: "00".into(),
                    }),
                ),
            ],
            tdx: None,
        };
        let s = EvidenceSummary::from_report(&report);
        assert!(!s.valid);
        assert_eq!(s.failed_checks, vec!["ak_hash".to_string()]);
        assert_eq!(s.tdx_vtpm_bound, Some(false));
        assert!(!s.lab_root);
        let p = crate::Policy::default();
        assert!(s
            .failed_checks
            .iter()
            .all(|c| crate::frankenstein::is_binding_check(c, &p)));
    }

    #[test]
    fn all_pass_is_valid_and_bound() {
        // a skipped optional check does not invalidate
        let mut skipped = line(
            CheckId::PcrRtmrCrossCheck,
            Outcome::Skipped("no logs".into()),
        );
        skipped.requirement = Requirement::Optional;
        let report = EvidenceReport {
            checks: vec![line(CheckId::AkHash, Outcome::Pass), skipped],
            tdx: None,
        };
        let s = EvidenceSummary::from_report(&report);
        assert!(s.valid && s.failed_checks.is_empty());
        assert_eq!(s.tdx_vtpm_bound, Some(true));
    }
}
