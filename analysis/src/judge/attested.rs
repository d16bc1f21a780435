//! The rules on what the node attests: evidence validity, the TDX ↔ vTPM binding and vTPM
//! locality (Frankenstein), the provider zone, and platform endorsements (signed inventory,
//! Intel POE).

use super::frankenstein;
use super::verdict::{Decided, Judging, Rule, Verdict};
use crate::check::{Check, CheckStatus, PoeCheckId, VerdictCheck};
use crate::input::EvidenceSource;
use crate::verify::endorse::{Endorsement, InventoryEntry};

/// Why a verdict fed by evidence whose code is not pinned is capped: a genuine TD running
/// other code than the operator's would pass every evidence check.
pub const UNPINNED_CODE: &str = "pinned TD code: the evidence does not pin the code the TD runs (the evidence policy sets allow_unpinned_code = true with MRTD, RTMR0-3, TD attributes, XFAM or a required check unpinned; or an Azure bundle's guest boot PCRs 4 and 8, 9 or 11 are not pinned; or the evidence is GCE's, which pins no code), so a genuine TD running other code would pass";

impl Judging<'_> {
    /// Evidence validity (a policy that did not pin the TD's code caps the verdict); binding failures are left to [`Judging::frankenstein`].
    pub(super) fn evidence(&mut self) -> Rule {
        let (node, policy) = (self.node, self.policy);
        // Refused evidence always counts as missing, whatever `require_evidence` says: the
        // operator pointed at it, so judging as if there were none would hide the refusal.
        let refused: Vec<String> = node
            .refused_evidence
            .iter()
            .map(|r| r.to_string())
            .collect();
        let Some(ev) = &node.evidence else {
            let detail = if refused.is_empty() {
                "no evidence summary".to_string()
            } else {
                refused.join("; ")
            };
            self.check(VerdictCheck::Evidence, CheckStatus::Skip, detail);
            if !refused.is_empty() {
                self.missing.extend(refused);
            } else if policy.require_evidence {
                self.missing
                    .push("no verified evidence for this node".into());
            }
            return Ok(());
        };
        self.missing.extend(refused);
        let other: Vec<&String> = (ev.failed_checks.iter())
            .filter(|c| !frankenstein::is_binding_check(c, policy))
            .collect();
        let binding_only = !ev.failed_checks.is_empty() && other.is_empty();
        let mut bad: Vec<String> = other.iter().map(|c| c.to_string()).collect();
        if !ev.valid && ev.failed_checks.is_empty() && ev.tdx_vtpm_bound != Some(false) {
            bad.push("(verifier reported invalid evidence without naming a check)".into());
        }
        if ev.lab_root && !policy.accept_lab_root {
            bad.push("lab-root (evidence chains to the lab root; policy rejects it)".into());
        }
        if !bad.is_empty() {
            let detail = format!("failed checks: {}", bad.join(", "));
            return Err(self.fail(VerdictCheck::Evidence, Verdict::EvidenceInvalid, detail));
        }
        if ev.unpinned_code {
            self.missing.push(UNPINNED_CODE.into());
        }
        let mut note = if ev.lab_root { " (lab root)" } else { "" }.to_string();
        if let EvidenceSource::TrustedSummary { source } = &node.evidence_source {
            note.push_str(&format!(
                " (unsigned summary {source}, trusted by --trust-summaries)"
            ));
        }
        let detail = if binding_only {
            format!("valid apart from binding checks{note}")
        } else {
            format!("valid{note}")
        };
        self.check(VerdictCheck::Evidence, CheckStatus::Pass, detail);
        Ok(())
    }

    /// TDX and vTPM evidence from one machine, and a vTPM as fast as a local one.
    pub(super) fn frankenstein(&mut self) -> Rule {
        let policy = self.policy;
        let vtpm = frankenstein::check(&self.node.in_td, self.node.evidence.as_ref(), policy);
        self.j.vtpm = vtpm.clone();
        if vtpm.is_frankenstein() {
            let detail = vtpm.findings.join("; ");
            let d = self.fail(VerdictCheck::TdxVtpmBinding, Verdict::Frankenstein, detail);
            return Err(d.because(vtpm.findings));
        }
        match vtpm.cmd_rtt_min_ms {
            Some(r) => self.check(
                VerdictCheck::VtpmLocal,
                CheckStatus::Pass,
                format!(
                    "fastest in-TD vTPM command {r:.3} ms ≤ {:.2} ms",
                    policy.max_vtpm_cmd_rtt_ms
                ),
            ),
            None => self.check(
                VerdictCheck::VtpmLocal,
                CheckStatus::Skip,
                "no in-TD vTPM command timings",
            ),
        }
        Ok(())
    }

    /// The provider zone named by the vTPM certificate, mapped to a site by the policy.
    pub(super) fn zone(&mut self) -> Rule {
        let node = self.node;
        let Some(zone) = node.evidence.as_ref().and_then(|e| e.zone.as_deref()) else {
            return Ok(());
        };
        let mapped = (self.policy.zone_sites.iter())
            .filter(|(prefix, _)| zone.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len());
        match mapped {
            Some((_, site)) if site != &node.claim => {
                let detail = format!(
                    "the vTPM certificate names zone {zone} (site {site}), not the claimed site {}",
                    node.claim
                );
                return Err(self.fail(VerdictCheck::Zone, Verdict::Relocated, detail));
            }
            Some((_, site)) => self.check(
                VerdictCheck::Zone,
                CheckStatus::Pass,
                format!("zone {zone} is at {site}"),
            ),
            None => self.check(
                VerdictCheck::Zone,
                CheckStatus::Skip,
                format!("zone {zone} is not mapped to a site"),
            ),
        }
        Ok(())
    }

    /// The signed inventory. Either source (inventory, POE) endorses the platform: an
    /// unusable one fails the node only when the policy requires an endorsement and the
    /// other source is not usable either.
    pub(super) fn endorsement(&mut self) -> Rule {
        let (node, policy) = (self.node, self.policy);
        if policy.require_endorsement && node.endorsement.is_none() && node.poe.is_none() {
            let detail = "no platform endorsement (signed inventory or POE)".to_string();
            let d = self.fail(VerdictCheck::Endorsement, Verdict::EvidenceInvalid, detail);
            return Err(d.because(vec![
                "evidence invalid: no platform endorsement (policy requires one)".into(),
            ]));
        }
        let Some(e) = &node.endorsement else {
            self.check(
                VerdictCheck::Endorsement,
                CheckStatus::Skip,
                "no signed inventory",
            );
            return Ok(());
        };
        let poe_usable = (node.poe.as_ref())
            .is_some_and(|pe| poe_unusable(&pe.checks(None, &node.claim)).is_none());
        if let Some(problem) = inventory_problem(e) {
            if policy.require_endorsement && !poe_usable {
                return Err(self.fail(
                    VerdictCheck::Endorsement,
                    Verdict::EvidenceInvalid,
                    problem,
                ));
            }
            let why = if poe_usable {
                "the POE endorses the platform"
            } else {
                "not required"
            };
            self.check(
                VerdictCheck::Endorsement,
                CheckStatus::Skip,
                format!("{problem} ({why})"),
            );
        } else if let Some(entry) = &e.entry {
            self.inventory_entry(e.platform_id.as_deref().unwrap_or("(none)"), entry)?;
        }
        Ok(())
    }

    /// The inventory entry names the expected owner and the claimed site.
    fn inventory_entry(&mut self, id: &str, entry: &InventoryEntry) -> Rule {
        let claim = &self.node.claim;
        if let Some(owner) = &self.policy.expected_owner {
            if &entry.owner != owner {
                let detail = format!(
                    "platform {id} is endorsed to owner {}, expected {owner}",
                    entry.owner
                );
                return Err(self.fail(VerdictCheck::Endorsement, Verdict::EvidenceInvalid, detail));
            }
        }
        if &entry.site != claim {
            let detail = format!(
                "platform {id} is endorsed at facility {} (site {}), not at the claimed site {claim}",
                entry.facility, entry.site
            );
            return Err(self.fail(VerdictCheck::Endorsement, Verdict::Relocated, detail));
        }
        self.check(
            VerdictCheck::Endorsement,
            CheckStatus::Pass,
            format!(
                "platform {id} endorsed to {} at facility {} ({})",
                entry.owner, entry.facility, entry.site
            ),
        );
        Ok(())
    }

    /// The POE checks. A POE that does not verify or bind the platform counts only when the
    /// policy requires an endorsement and the inventory does not give one; an owner other
    /// than the expected operator makes the evidence invalid, a site other than the claim is
    /// a relocation.
    pub(super) fn poe(&mut self) -> Rule {
        let (node, policy) = (self.node, self.policy);
        let Some(pe) = &node.poe else {
            return Ok(());
        };
        let inventory_usable =
            (node.endorsement.as_ref()).is_some_and(|e| inventory_problem(e).is_none());
        let checks = pe.checks(policy.expected_owner.as_deref(), &node.claim);
        let unusable = poe_unusable(&checks);
        let owner = failed_poe_check(&checks, &[PoeCheckId::Owner]);
        let facility = failed_poe_check(&checks, &[PoeCheckId::Facility]);
        if unusable.is_some() && (!policy.require_endorsement || inventory_usable) {
            let why = if inventory_usable {
                "the signed inventory endorses the platform"
            } else {
                "not required"
            };
            self.j.checks.extend(checks.into_iter().map(|mut c| {
                if c.status == CheckStatus::Fail {
                    c.status = CheckStatus::Skip;
                    c.detail = format!("{} ({why})", c.detail);
                }
                c
            }));
            return Ok(());
        }
        self.j.checks.extend(checks);
        if let Some(c) = unusable.or(owner) {
            let reason = format!("evidence invalid: {}: {}", c.name, c.detail);
            return Err(Decided::new(Verdict::EvidenceInvalid, vec![reason]));
        }
        match facility {
            Some(c) => {
                let reason = format!("relocated: {}: {}", c.name, c.detail);
                Err(Decided::new(Verdict::Relocated, vec![reason]))
            }
            None => Ok(()),
        }
    }
}

fn failed_poe_check(checks: &[Check], ids: &[PoeCheckId]) -> Option<Check> {
    checks
        .iter()
        .find(|c| c.status == CheckStatus::Fail && ids.iter().any(|i| c.name == *i))
        .cloned()
}

/// The first failed document or PIID check: without them the POE says nothing about the node.
fn poe_unusable(checks: &[Check]) -> Option<Check> {
    let binding: Vec<PoeCheckId> = PoeCheckId::ALL
        .into_iter()
        .filter(|c| c.is_document_check() || *c == PoeCheckId::Piid)
        .collect();
    failed_poe_check(checks, &binding)
}

/// Why a signed-inventory endorsement cannot be used, if it cannot.
fn inventory_problem(e: &Endorsement) -> Option<String> {
    let id = e.platform_id.as_deref().unwrap_or("(none)");
    match (&e.error, &e.entry, &e.platform_id) {
        (Some(err), _, _) => Some(format!("endorsement unusable: {err}")),
        (None, _, None) => Some("the evidence names no platform ID".to_string()),
        (None, None, Some(_)) => Some(format!("platform {id} is not in the inventory")),
        (None, Some(_), Some(_)) => None,
    }
}
