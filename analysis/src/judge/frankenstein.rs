//! Frankenstein detection: TDX and vTPM evidence from different machines, seen in the binding
//! checks (AK hash, PCR ↔ RTMR) or in a vTPM that answers from farther away than a local one.

use serde::{Deserialize, Serialize};

use crate::check::CheckId;
use crate::input::{EvidenceSummary, InTdTimings};
use crate::policy::Policy;

/// What the vTPM timing and the binding checks say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VtpmFinding {
    /// Smallest in-TD round trip of a cheap vTPM command, ms.
    pub cmd_rtt_min_ms: Option<f64>,
    /// In-TD vTPM quote time, ms.
    pub quote_ms: Option<f64>,
    /// Failed checks that name the TDX ↔ vTPM binding.
    pub binding_failures: Vec<String>,
    /// Why the vTPM is judged remote or unbound (empty ⇒ not Frankenstein).
    pub findings: Vec<String>,
}

impl VtpmFinding {
    pub fn is_frankenstein(&self) -> bool {
        !self.findings.is_empty()
    }
}

/// Check the binding and the vTPM's distance.
pub fn check(
    in_td: &InTdTimings,
    evidence: Option<&EvidenceSummary>,
    policy: &Policy,
) -> VtpmFinding {
    let mut f = VtpmFinding {
        cmd_rtt_min_ms: in_td.tpm_cmd_rtt_ns.iter().min().map(|n| *n as f64 / 1e6),
        quote_ms: in_td.tpm_quote_ns.map(|n| n as f64 / 1e6),
        ..Default::default()
    };
    if let Some(ev) = evidence {
        f.binding_failures = ev
            .failed_checks
            .iter()
            .filter(|c| is_binding_check(c, policy))
            .cloned()
            .collect();
        if !f.binding_failures.is_empty() {
            f.findings.push(format!(
                "TDX and vTPM evidence are not bound to one machine: failed {}",
                f.binding_failures.join(", ")
            ));
        } else if ev.tdx_vtpm_bound == Some(false) {
            f.findings
                .push("TDX and vTPM evidence are not bound to one machine (verifier)".into());
        }
    }
    if let Some(rtt) = f.cmd_rtt_min_ms {
        if rtt > policy.max_vtpm_cmd_rtt_ms {
            f.findings.push(format!(
                "vTPM is remote: fastest in-TD vTPM command took {rtt:.2} ms > {:.2} ms for a \
                 local vTPM, so it is ≥ {:.0} km away (2/3 c on the excess)",
                policy.max_vtpm_cmd_rtt_ms,
                crate::judge::bound::max_distance_km(rtt - policy.max_vtpm_cmd_rtt_ms)
            ));
        }
    }
    // The fastest AK-signed quote: the distance signal a host-side stub cannot fake (the
    // cheap command above it can answer fast, so it can only add a finding).
    if let (Some(q), Some(base)) = (f.quote_ms, policy.vtpm_quote_baseline_ms) {
        if q > base + policy.vtpm_relay_margin_ms {
            f.findings.push(format!(
                "vTPM quote took {q:.2} ms > {base:.2} ms local baseline + {:.2} ms margin",
                policy.vtpm_relay_margin_ms
            ));
        }
    }
    f
}

/// Whether a failed check's name marks a TDX ↔ vTPM binding failure: it names a bundle check
/// (exactly, see [`CheckId`]) that the policy lists in `frankenstein_checks`.
pub fn is_binding_check(name: &str, policy: &Policy) -> bool {
    name.parse::<CheckId>()
        .is_ok_and(|id| policy.frankenstein_checks.contains(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_provider_vtpm_is_no_frankenstein_under_its_calibrated_bound() {
        // A cloud vTPM whose fastest command takes 5 ms (through the host), not swtpm's < 1 ms.
        let in_td = InTdTimings {
            tpm_cmd_rtt_ns: vec![5_000_000],
            ..InTdTimings::default()
        };
        assert!(check(&in_td, None, &Policy::default()).is_frankenstein());
        // `locus policy init` on that machine: 5 ms measured + 3 ms margin.
        let calibrated = Policy::default().calibrated_vtpm(Some(&evidence_policy(8_000, None)));
        assert!(!check(&in_td, None, &calibrated).is_frankenstein());
        // Relayed 400 km further it still is one.
        let relayed = InTdTimings {
            tpm_cmd_rtt_ns: vec![9_000_000],
            ..InTdTimings::default()
        };
        assert!(check(&relayed, None, &calibrated).is_frankenstein());
        // No bound in the evidence policy: the verdict policy's own stays.
        assert_eq!(
            Policy::default().calibrated_vtpm(None).max_vtpm_cmd_rtt_ms,
            Policy::default().max_vtpm_cmd_rtt_ms
        );
    }

    fn evidence_policy(
        cheap_us: u64,
        chain_us: Option<u64>,
    ) -> crate::verify::bundle::EvidencePolicy {
        let mut f = crate::verify::bundle::PolicyFile {
            allow_unpinned_code: true,
            ..Default::default()
        };
        f.timing.max_tpm_cheap_rtt_us = Some(cheap_us);
        f.timing.max_tpm_chain_rtt_us = chain_us;
        if chain_us.is_none() {
            f.checks.insert(
                crate::check::CheckId::VtpmChain,
                crate::verify::bundle::Requirement::Optional,
            );
        }
        f.resolve(&|p| Err(p.to_string())).unwrap()
    }

    #[test]
    fn a_stub_answering_get_random_fast_does_not_hide_a_slow_signed_quote() {
        // The host answers TPM2_GetRandom from a local stub (fast), the AK-signed chain goes
        // to the real vTPM 30 ms away: the signed minimum is what the rule judges by.
        let in_td = InTdTimings {
            tpm_cmd_rtt_ns: vec![50_000],
            tpm_quote_ns: Some(33_400_000),
            ..InTdTimings::default()
        };
        let calibrated =
            Policy::default().calibrated_vtpm(Some(&evidence_policy(3_100, Some(7_250))));
        let f = check(&in_td, None, &calibrated);
        assert!(f.is_frankenstein(), "{f:?}");
        assert!(f.findings[0].contains("vTPM quote took 33.40 ms"), "{f:?}");
        // The honest machine's own signed time passes.
        let honest = InTdTimings {
            tpm_quote_ns: Some(3_400_000),
            ..in_td
        };
        assert!(!check(&honest, None, &calibrated).is_frankenstein());
    }
}
