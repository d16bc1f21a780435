//! Conversions from what the prober, responder and verifiers produce (echo samples, in-TD
//! timings, verified anchors, the evidence report) into the verdict engine's inputs.

use crate::input::{
    AnchorReport, EchoSample, EvidenceSummary, FailedAnchor, InTdTimings, VerifiedKey,
};
use crate::verify::anchor::AnchorVerification;
use crate::verify::bundle::{CheckId, EvidenceReport, Outcome};
use crate::verify::tdx::RootKind;

impl From<&locus_proto::prober::Sample> for EchoSample {
    fn from(s: &locus_proto::prober::Sample) -> Self {
        EchoSample {
            sent_ns: s.sent_ns,
            rtt_ns: s.rtt_ns,
            inside_ns: s.inside_ns,
        }
    }
}

impl From<&locus_proto::evidence::ResponderTimings> for InTdTimings {
    fn from(t: &locus_proto::evidence::ResponderTimings) -> Self {
        InTdTimings {
            tdx_quote_ns: t.tdx_quote_ns,
            // The fastest AK-signed quote (main or chain link): the vTPM time no relay can
            // shorten, compared with the policy's quote baseline.
            tpm_quote_ns: t
                .tpm_quote_ns
                .into_iter()
                .chain(t.tpm_chain_ns.iter().copied())
                .min(),
            tpm_cmd_rtt_ns: t.tpm_cheap_rtt_min_ns.into_iter().collect(),
            evidence_ns: t.evidence_ns,
        }
    }
}

impl AnchorReport {
    /// The anchors that verified and have a known site; failed anchors and anchors without a
    /// site in the anchor policy are left out (the verification report names them).
    pub fn from_verification(v: &AnchorVerification) -> Vec<AnchorReport> {
        v.anchors
            .iter()
            .filter_map(|c| {
                let a = c.outcome.as_ref().ok()?;
                Some(AnchorReport {
                    site: a.site.clone()?,
                    min_rtt_ns: a.min_rtt_ns,
                    samples: a.samples,
                })
            })
            .collect()
    }
}

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
            // the PIID of the verified quote's PCK certificate (Platform-CA certificates)
            platform_id: report
                .tdx
                .as_ref()
                .and_then(|t| t.piid.as_ref())
                .map(hex::encode),
            zone: None,
            unpinned_code: report.unpinned_code,
            session_keys: Vec::new(),
        }
    }
}

impl EvidenceSummary {
    /// [`EvidenceSummary::from_report`], plus the provider zone that the bundle's AK
    /// certificate names (GCE's instance-identity extension), taken only when `ak_ek_binding`
    /// passed: the certificate certifies the quoting AK and chains to a provider root.
    pub fn from_report_with_ak_cert(report: &EvidenceReport, ak_cert: Option<&[u8]>) -> Self {
        let mut s = Self::from_report(report);
        if matches!(report.outcome(CheckId::AkEkBinding), Some(Outcome::Pass)) {
            s.zone = ak_cert
                .and_then(|c| crate::verify::cloud::gce::certified_instance(c).ok())
                .map(|i| i.zone);
        }
        s
    }
}

/// What one verified evidence bundle contributes to a node's verdict inputs: the evidence
/// summary, the in-TD timings it carries and its verified anchor round trips. One function
/// for the lab and for `locus judge` on stored bundles, so both judge the same inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleFindings {
    pub evidence: EvidenceSummary,
    pub in_td: InTdTimings,
    /// Verified anchors with a site (empty when the anchor report did not verify).
    pub anchors: Vec<AnchorReport>,
    /// Why the anchor report did not verify, when it did not.
    pub anchor_error: Option<String>,
    /// Requested anchors that yielded no usable round trip (recorded as failed by the
    /// responder, or not verifying); every anchor when the whole report did not verify.
    pub failed_anchors: Vec<FailedAnchor>,
}

impl BundleFindings {
    /// `report` is the verification of `bundle` at `now_unix`; the anchor report is checked
    /// again here (against the nonce and `anchors`) to recover the per-anchor minima.
    pub fn new(
        bundle: &locus_proto::evidence::EvidenceBundle,
        report: &EvidenceReport,
        anchors: Option<&crate::verify::anchor::AnchorPolicy>,
        now_unix: u64,
    ) -> Self {
        let (anchors, anchor_error, failed_anchors) = match (&bundle.anchors, anchors) {
            (Some(a), Some(policy)) => {
                match crate::verify::anchor::verify_report(
                    a,
                    &a.digest(),
                    &bundle.nonce,
                    policy,
                    now_unix,
                ) {
                    Ok(v) => {
                        let failed = (v.anchors.iter())
                            .filter_map(|c| {
                                let e = c.outcome.as_ref().err()?;
                                Some(FailedAnchor {
                                    name: c.name.clone(),
                                    reason: e.to_string(),
                                })
                            })
                            .collect();
                        (v.verdict_inputs(), None, failed)
                    }
                    Err(e) => {
                        let failed = (a.anchors.iter())
                            .map(|x| FailedAnchor {
                                name: x.name.clone(),
                                reason: e.to_string(),
                            })
                            .collect();
                        (Vec::new(), Some(e.to_string()), failed)
                    }
                }
            }
            _ => (Vec::new(), None, Vec::new()),
        };
        // A provider AK certificate that chained names the instance's zone (GCE).
        let ak_cert = bundle.tpm.as_ref().and_then(|t| t.ak_cert.as_deref());
        let mut evidence = EvidenceSummary::from_report_with_ak_cert(report, ak_cert);
        // Only a bundle that verified vouches for its session key; who asked for it is the
        // caller's to say (`BundleFindings::requested_over`).
        if report.valid() {
            evidence.session_keys = vec![VerifiedKey {
                spki: hex::encode(&bundle.session_spki),
                prober: None,
                evidence_ns: bundle.timings.evidence_ns,
            }];
        }
        BundleFindings {
            evidence,
            in_td: InTdTimings::from(&bundle.timings),
            anchors,
            anchor_error,
            failed_anchors,
        }
    }

    /// Verifies `bundle` under `policy` (its anchors too, when the policy names anchors) and
    /// reduces it.
    pub fn verify(
        bundle: &locus_proto::evidence::EvidenceBundle,
        policy: &crate::verify::bundle::EvidencePolicy,
        inputs: &crate::verify::bundle::VerifyInputs,
    ) -> Self {
        let report = crate::verify::bundle::verify_bundle(bundle, policy, inputs);
        Self::new(bundle, &report, policy.anchors.as_ref(), inputs.now_unix)
    }

    /// Names the prober whose connection the bundle was requested over: its session key then
    /// vouches only for that prober's samples.
    pub fn requested_over(mut self, prober: &str) -> Self {
        for k in &mut self.evidence.session_keys {
            k.prober = Some(prober.to_string());
        }
        self
    }

    /// Every failed check by name, a failed anchor report as `anchors: why`.
    pub fn failed_checks(&self) -> Vec<String> {
        let mut failed = self.evidence.failed_checks.clone();
        failed.extend(self.anchor_error.iter().map(|e| format!("anchors: {e}")));
        failed
    }

    /// Puts the findings into a node's input for the verdict engine.
    pub fn apply_to(&self, input: &mut crate::input::NodeInput) {
        input.evidence = Some(self.evidence.clone());
        input.in_td = self.in_td.clone();
        input.anchors = self.anchors.clone();
        input.failed_anchors = self.failed_anchors.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::bundle::{CheckResult, EvidenceError, Requirement};

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
            unpinned_code: false,
            unpinned: Vec::new(),
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
            .all(|c| crate::judge::frankenstein::is_binding_check(c, &p)));
    }

    #[test]
    fn a_verified_gce_ak_certificate_gives_its_zone() {
        let cert = pem::parse(include_str!(
            "../../../tests/vectors/gce-vtpm/certificates/pca_tpm_ecc_sign_cert.pem"
        ))
        .unwrap()
        .into_contents();
        let report = |outcome| EvidenceReport {
            checks: vec![line(CheckId::AkEkBinding, outcome)],
            tdx: None,
            unpinned_code: false,
            unpinned: Vec::new(),
        };
        let s = EvidenceSummary::from_report_with_ak_cert(&report(Outcome::Pass), Some(&cert));
        assert_eq!(s.zone.as_deref(), Some("us-central1-a"));
        // Not verified, or no certificate: no zone.
        let failed = Outcome::Fail(EvidenceError::AkCertKeyMismatch);
        let s = EvidenceSummary::from_report_with_ak_cert(&report(failed), Some(&cert));
        assert_eq!(s.zone, None);
        let s = EvidenceSummary::from_report_with_ak_cert(&report(Outcome::Pass), None);
        assert_eq!(s.zone, None);
    }

    #[test]
    fn timings_convert() {
        let t = locus_proto::evidence::ResponderTimings {
            tdx_quote_ns: Some(1),
            tpm_quote_ns: Some(2),
            tpm_cheap_rtt_min_ns: Some(3),
            tpm_cheap_samples: 8,
            evidence_ns: Some(4),
            tpm_chain_ns: Vec::new(),
        };
        let i = InTdTimings::from(&t);
        assert_eq!(
            (
                i.tdx_quote_ns,
                i.tpm_quote_ns,
                i.tpm_cmd_rtt_ns,
                i.evidence_ns
            ),
            (Some(1), Some(2), vec![3], Some(4))
        );
        // Binding v2: the fastest signed quote, chain links included.
        let v2 = locus_proto::evidence::ResponderTimings {
            tpm_quote_ns: Some(3_400),
            tpm_chain_ns: vec![3_500, 3_300, 3_450],
            ..t
        };
        assert_eq!(InTdTimings::from(&v2).tpm_quote_ns, Some(3_300));
    }

    #[test]
    fn all_pass_is_valid_and_bound() {
        // a skipped optional check does not invalidate
        let mut skipped = line(
            CheckId::PcrRtmrCrossCheck,
            Outcome::Skipped("no logs".into()),
        );
        skipped.requirement = Requirement::Optional;
        let mut report = EvidenceReport {
            checks: vec![line(CheckId::AkHash, Outcome::Pass), skipped],
            tdx: None,
            unpinned_code: false,
            unpinned: Vec::new(),
        };
        let s = EvidenceSummary::from_report(&report);
        assert!(s.valid && s.failed_checks.is_empty());
        assert_eq!(s.tdx_vtpm_bound, Some(true));
        assert!(!s.unpinned_code);
        // A policy with allow_unpinned_code marks the summary, which caps the verdict.
        report.unpinned_code = true;
        assert!(EvidenceSummary::from_report(&report).unpinned_code);
    }
}
