//! The verdict: evidence, vTPM locality, relocation, the feasible region and the claim's
//! timing fit, combined into one of seven verdicts with reasons, numbers and checks.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::frankenstein::{self, VtpmFinding};
pub use crate::check::{Check, CheckStatus};
use crate::check::{PoeCheckId, VerdictCheck};
use crate::input::{NodeInput, World};
use crate::judge::bound::{self, Bestline};
use crate::judge::geo::distance_km;
use crate::judge::joint;
use crate::judge::region::{self, Disc, Region};
use crate::judge::relocation::{self, Relocation};
use crate::policy::Policy;

/// What locus concludes about a node's location. Serialized in kebab-case
/// (`located`, `proxied`, `frankenstein`, `relocated`, `unreachable`, `evidence-invalid`,
/// `inconclusive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Evidence valid, the claim inside the feasible region, timing fits the claim, anchors near.
    Located,
    /// Answers pass through a relay near the claim while the TD runs elsewhere.
    Proxied,
    /// TDX and vTPM evidence come from different machines (binding failed or vTPM remote).
    Frankenstein,
    /// The node's timing moved during the window, or points to a site other than the claim.
    Relocated,
    /// No prober got an answer.
    Unreachable,
    /// The evidence failed verification (the failed checks are named).
    EvidenceInvalid,
    /// Not enough data to decide (what is missing is named).
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Located => "located",
            Verdict::Proxied => "proxied",
            Verdict::Frankenstein => "frankenstein",
            Verdict::Relocated => "relocated",
            Verdict::Unreachable => "unreachable",
            Verdict::EvidenceInvalid => "evidence-invalid",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// Only `located` is a positive verdict.
    pub fn is_located(self) -> bool {
        self == Verdict::Located
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One prober's numbers against the node and the claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProberDistance {
    pub prober: String,
    pub site: String,
    pub samples: usize,
    /// Challenges sent (0 when unknown).
    pub sent: u64,
    pub distance_to_claim_km: f64,
    /// Smallest raw RTT, ms.
    pub min_rtt_ms: Option<f64>,
    /// Smallest RTT minus the reported (capped) processing time, ms.
    pub min_eff_rtt_ms: Option<f64>,
    /// Hard bound at 2/3 c from `min_eff_rtt_ms`, km.
    pub max_distance_km: Option<f64>,
    /// Bound from this prober's calibrated bestline slope (intercept dropped), km (when
    /// calibrated). Tighter than the hard bound; a plausibility bound, not physics.
    pub calibrated_max_distance_km: Option<f64>,
    /// RTT predicted for a node at the claim, ms.
    pub expected_rtt_ms: f64,
    /// `min_eff_rtt_ms − expected_rtt_ms`.
    pub excess_ms: Option<f64>,
    /// Whether this prober counts (≥ `min_samples` answers).
    pub used: bool,
    pub calibrated: bool,
}

/// One anchor report against the claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorDistance {
    pub site: String,
    pub min_rtt_ms: f64,
    pub distance_to_claim_km: f64,
    /// Hard bound: the TD is within this distance of the anchor, km.
    pub max_distance_km: f64,
    pub expected_rtt_ms: f64,
    pub excess_ms: f64,
}

/// The decision statistics, computed for every node whatever decided its verdict, so that
/// thresholds can be swept offline (ROC curves).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Smallest excess over the prediction for the claim among used probers, ms (proxy and
    /// "elsewhere" score; compare with `max_excess_ms`).
    pub min_excess_ms: Option<f64>,
    /// Largest such excess, ms.
    pub max_excess_ms: Option<f64>,
    /// Largest anchor excess over the prediction for the claim, ms (`max_anchor_excess_ms`).
    pub max_anchor_excess_ms: Option<f64>,
    /// Fastest in-TD vTPM command, ms (`max_vtpm_cmd_rtt_ms`).
    pub vtpm_cmd_rtt_min_ms: Option<f64>,
    /// The `relocation.min_probers`-th largest CUSUM statistic across probers, ms
    /// (`relocation.threshold_ms`; confirmation not applied).
    pub cusum_stat_ms: Option<f64>,
}

/// The result of judging one node; serializes to the per-node JSON of `locus judge --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub name: String,
    pub claim: String,
    pub verdict: Verdict,
    /// Why, most decisive first, with numbers.
    pub reasons: Vec<String>,
    /// Hard (2/3 c) region from probers and anchors.
    pub region: Option<Region>,
    /// Region from calibrated bestlines (only when some prober has landmark calibration).
    pub calibrated_region: Option<Region>,
    pub distances: Vec<ProberDistance>,
    pub anchors: Vec<AnchorDistance>,
    pub checks: Vec<Check>,
    pub relocation: Option<Relocation>,
    pub vtpm: VtpmFinding,
    pub scores: Scores,
    /// Evidence round trip minus the in-TD evidence time minus the echo RTT, ms, at the prober
    /// closest to the threshold (None without `in_td.evidence_ns`).
    pub evidence_excess_ms: Option<f64>,
}

struct Builder {
    j: Judgement,
}

impl Builder {
    fn check(&mut self, id: VerdictCheck, status: CheckStatus, detail: impl Into<String>) {
        self.j.checks.push(Check {
            name: id.into(),
            status,
            detail: detail.into(),
        });
    }

    fn finish(mut self, verdict: Verdict, mut reasons: Vec<String>) -> Judgement {
        self.j.verdict = verdict;
        reasons.append(&mut self.j.reasons);
        self.j.reasons = reasons;
        self.j
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Judge one node. Pure and deterministic: the same inputs (in any sample order) give the
/// same judgement.
pub fn judge(world: &World, node: &NodeInput, policy: &Policy) -> Judgement {
    let mut b = Builder {
        j: Judgement {
            name: node.name.clone(),
            claim: node.claim.clone(),
            verdict: Verdict::Inconclusive,
            reasons: Vec::new(),
            region: None,
            calibrated_region: None,
            distances: Vec::new(),
            anchors: Vec::new(),
            checks: Vec::new(),
            relocation: None,
            vtpm: VtpmFinding::default(),
            scores: Scores::default(),
            evidence_excess_ms: None,
        },
    };

    // --- input consistency
    let mut problems = world.problems();
    let claim = world.site(&node.claim).map(|s| s.position());
    if claim.is_none() {
        problems.push(format!("claimed site {} is not a known site", node.claim));
    }
    for (i, s) in node.probes.iter().enumerate() {
        if world.prober(&s.prober).is_none() {
            problems.push(format!("samples from unknown prober {}", s.prober));
        }
        if node.probes[..i].iter().any(|o| o.prober == s.prober) {
            problems.push(format!("prober {} has two sample series", s.prober));
        }
    }
    for a in &node.anchors {
        if world.site(&a.site).is_none() {
            problems.push(format!("anchor report for unknown site {}", a.site));
        }
    }
    let Some(claim) = claim.filter(|_| problems.is_empty()) else {
        b.check(VerdictCheck::Input, CheckStatus::Fail, problems.join("; "));
        let reasons = problems
            .into_iter()
            .map(|p| format!("input: {p}"))
            .collect();
        return b.finish(Verdict::Inconclusive, reasons);
    };
    b.check(
        VerdictCheck::Input,
        CheckStatus::Pass,
        "sites, probers and anchors known",
    );

    // --- reachability
    let answered: usize = node.probes.iter().map(|s| s.samples.len()).sum();
    if node.probes.is_empty() {
        b.check(
            VerdictCheck::Reachability,
            CheckStatus::Skip,
            "no prober measured this node",
        );
    } else if answered == 0 {
        let mut each: Vec<String> = node
            .probes
            .iter()
            .map(|s| format!("{}: 0/{} answered", s.prober, s.sent))
            .collect();
        each.sort();
        let detail = each.join(", ");
        b.check(
            VerdictCheck::Reachability,
            CheckStatus::Fail,
            detail.clone(),
        );
        return b.finish(
            Verdict::Unreachable,
            vec![format!("no prober got an answer ({detail})")],
        );
    } else {
        b.check(
            VerdictCheck::Reachability,
            CheckStatus::Pass,
            format!("{answered} answers"),
        );
    }

    // --- per-prober numbers
    let cap_ns = (policy.max_processing_us * 1e3).max(0.0) as u64;
    // canonical order: the judgement must not depend on the order of series or samples
    let mut probes: Vec<&crate::input::ProberSeries> = node.probes.iter().collect();
    probes.sort_by(|a, c| a.prober.cmp(&c.prober));
    let mut anchors: Vec<&crate::input::AnchorReport> = node.anchors.iter().collect();
    anchors.sort_by(|a, c| a.site.cmp(&c.site).then(a.min_rtt_ns.cmp(&c.min_rtt_ns)));
    // Rounds: `round_ms`, shortened for short windows so there are at least `min_rounds`.
    let span_ms = probes
        .iter()
        .filter_map(|s| {
            let lo = s.samples.iter().map(|x| x.sent_ns).min()?;
            let hi = s.samples.iter().map(|x| x.sent_ns).max()?;
            Some(ms(hi - lo))
        })
        .fold(0.0, f64::max);
    let round_ms = if policy.relocation.min_rounds > 0 && span_ms > 0.0 {
        policy
            .relocation
            .round_ms
            .min(span_ms / policy.relocation.min_rounds as f64)
    } else {
        policy.relocation.round_ms
    };
    let mut series_rounds = Vec::new();
    let mut recent: Vec<joint::Obs> = Vec::new();
    let mut discs = Vec::new();
    let mut cal_discs = Vec::new();
    let mut any_calibrated = false;
    for s in probes.iter().copied() {
        let Some(prober) = world.prober(&s.prober) else {
            continue;
        };
        let Some(site) = world.site(&prober.site) else {
            continue;
        };
        let d_claim = distance_km(site.position(), claim);
        let eff: Vec<(u64, f64)> = s
            .samples
            .iter()
            .map(|x| {
                (
                    x.sent_ns,
                    ms(x.rtt_ns.saturating_sub(x.inside_ns.min(cap_ns))),
                )
            })
            .collect();
        let min_rtt = s.samples.iter().map(|x| x.rtt_ns).min().map(ms);
        let min_eff = eff.iter().map(|e| e.1).min_by(f64::total_cmp);
        let landmarks: Vec<(f64, f64)> = world
            .landmarks
            .iter()
            .filter(|l| l.prober == s.prober)
            .filter_map(|l| {
                let ls = world.site(&l.site)?;
                Some((
                    distance_km(site.position(), ls.position()),
                    ms(l.min_rtt_ns),
                ))
            })
            .collect();
        let calibrated = landmarks.len() >= 2;
        let model = if calibrated {
            bound::bestline(&landmarks)
        } else {
            Bestline::inflated(policy.inflation)
        };
        // The calibrated disc keeps the bestline's slope but not its intercept: the node's
        // fixed delay may be smaller than the landmarks', and a disc must not exclude it.
        let disc_line = Bestline {
            intercept_ms: 0.0,
            ..model
        };
        let used = s.samples.len() >= policy.min_samples;
        let expected = model.rtt_ms(d_claim);
        if used {
            if let Some(m) = min_eff {
                discs.push(Disc {
                    label: format!("prober {}", s.prober),
                    center: site.position(),
                    radius_km: bound::max_distance_km(m),
                });
                if calibrated {
                    any_calibrated = true;
                    cal_discs.push(Disc {
                        label: format!("prober {} (calibrated)", s.prober),
                        center: site.position(),
                        radius_km: disc_line.max_distance_km(m),
                    });
                } else {
                    cal_discs.push(discs[discs.len() - 1].clone());
                }
            }
            let external = node
                .baseline
                .iter()
                .find(|x| x.prober == s.prober)
                .map(|x| ms(x.min_rtt_ns));
            let r = relocation::rounds(&eff, round_ms, policy.relocation.min_round_samples);
            // the most recent third of the window (≥ 3 rounds): where the node is now
            let k = (r.len() / 3).max(3).min(r.len());
            let recent_min = r[r.len() - k..]
                .iter()
                .map(|x| x.1)
                .min_by(f64::total_cmp)
                .or(min_eff);
            if let Some(m) = recent_min {
                recent.push(joint::Obs {
                    at: site.position(),
                    rtt_ms: m,
                    model,
                    slow_tol_ms: policy.max_excess_ms,
                    fast_tol_ms: policy.fast_tolerance_ms,
                });
            }
            series_rounds.push((s.prober.clone(), r, external));
        }
        b.j.distances.push(ProberDistance {
            prober: s.prober.clone(),
            site: site.name.clone(),
            samples: s.samples.len(),
            sent: s.sent,
            distance_to_claim_km: d_claim,
            min_rtt_ms: min_rtt,
            min_eff_rtt_ms: min_eff,
            max_distance_km: min_eff.map(bound::max_distance_km),
            calibrated_max_distance_km: calibrated
                .then(|| min_eff.map(|m| disc_line.max_distance_km(m)))
                .flatten(),
            expected_rtt_ms: expected,
            excess_ms: min_eff.map(|m| m - expected),
            used,
            calibrated,
        });
    }
    // --- anchors (discs join the region)
    for a in anchors.iter().copied() {
        let Some(site) = world.site(&a.site) else {
            continue;
        };
        let rtt = ms(a.min_rtt_ns);
        let d = distance_km(site.position(), claim);
        let expected = Bestline::inflated(policy.inflation).rtt_ms(d);
        let max_d = bound::max_distance_km(rtt);
        discs.push(Disc {
            label: format!("anchor {}", a.site),
            center: site.position(),
            radius_km: max_d,
        });
        b.j.anchors.push(AnchorDistance {
            site: a.site.clone(),
            min_rtt_ms: rtt,
            distance_to_claim_km: d,
            max_distance_km: max_d,
            expected_rtt_ms: expected,
            excess_ms: rtt - expected,
        });
    }

    let region = region::intersect(&discs, claim);
    b.j.region = Some(region.clone());
    if any_calibrated {
        b.j.calibrated_region = Some(region::intersect(&cal_discs, claim));
    }

    // --- relocation during the window
    let reloc = relocation::detect(&series_rounds, &policy.relocation);
    b.j.relocation = Some(reloc.clone());
    let excesses: Vec<f64> =
        b.j.distances
            .iter()
            .filter(|d| d.used)
            .filter_map(|d| d.excess_ms)
            .collect();
    let mut stats: Vec<f64> = reloc.shifts.iter().map(|x| x.max_stat_ms).collect();
    stats.sort_by(|a, c| c.total_cmp(a));
    b.j.scores = Scores {
        min_excess_ms: excesses.iter().copied().min_by(f64::total_cmp),
        max_excess_ms: excesses.iter().copied().max_by(f64::total_cmp),
        max_anchor_excess_ms: b
            .j
            .anchors
            .iter()
            .map(|a| a.excess_ms)
            .max_by(f64::total_cmp),
        vtpm_cmd_rtt_min_ms: frankenstein::check(&node.in_td, None, policy).cmd_rtt_min_ms,
        cusum_stat_ms: stats.get(policy.relocation.min_probers - 1).copied(),
    };

    // --- evidence validity (binding failures are Frankenstein, judged below)
    let mut missing: Vec<String> = Vec::new();
    match &node.evidence {
        None => {
            b.check(
                VerdictCheck::Evidence,
                CheckStatus::Skip,
                "no evidence summary",
            );
            if policy.require_evidence {
                missing.push("no verified evidence for this node".into());
            }
        }
        Some(ev) => {
            let other: Vec<&String> = ev
                .failed_checks
                .iter()
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
                b.check(VerdictCheck::Evidence, CheckStatus::Fail, detail.clone());
                return b.finish(
                    Verdict::EvidenceInvalid,
                    vec![format!("evidence invalid: {detail}")],
                );
            }
            let note = if ev.lab_root { " (lab root)" } else { "" };
            if binding_only {
                b.check(
                    VerdictCheck::Evidence,
                    CheckStatus::Pass,
                    format!("valid apart from binding checks{note}"),
                );
            } else {
                b.check(
                    VerdictCheck::Evidence,
                    CheckStatus::Pass,
                    format!("valid{note}"),
                );
            }
        }
    }

    // --- Frankenstein: binding and vTPM locality
    let vtpm = frankenstein::check(&node.in_td, node.evidence.as_ref(), policy);
    b.j.vtpm = vtpm.clone();
    if vtpm.is_frankenstein() {
        b.check(
            VerdictCheck::TdxVtpmBinding,
            CheckStatus::Fail,
            vtpm.findings.join("; "),
        );
        return b.finish(Verdict::Frankenstein, vtpm.findings);
    }
    match vtpm.cmd_rtt_min_ms {
        Some(r) => b.check(
            VerdictCheck::VtpmLocal,
            CheckStatus::Pass,
            format!(
                "fastest in-TD vTPM command {r:.3} ms ≤ {:.2} ms",
                policy.max_vtpm_cmd_rtt_ms
            ),
        ),
        None => b.check(
            VerdictCheck::VtpmLocal,
            CheckStatus::Skip,
            "no in-TD vTPM command timings",
        ),
    }

    // --- provider zone named by the vTPM certificate
    if let Some(zone) = node.evidence.as_ref().and_then(|e| e.zone.as_deref()) {
        let mapped = policy
            .zone_sites
            .iter()
            .filter(|(prefix, _)| zone.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len());
        match mapped {
            Some((_, site)) if site != &node.claim => {
                let detail = format!(
                    "the vTPM certificate names zone {zone} (site {site}), not the claimed site {}",
                    node.claim
                );
                b.check(VerdictCheck::Zone, CheckStatus::Fail, detail.clone());
                return b.finish(Verdict::Relocated, vec![format!("relocated: {detail}")]);
            }
            Some((_, site)) => b.check(
                VerdictCheck::Zone,
                CheckStatus::Pass,
                format!("zone {zone} is at {site}"),
            ),
            None => b.check(
                VerdictCheck::Zone,
                CheckStatus::Skip,
                format!("zone {zone} is not mapped to a site"),
            ),
        }
    }

    // --- platform endorsements (signed inventory, Intel POE)
    if policy.require_endorsement && node.endorsement.is_none() && node.poe.is_none() {
        b.check(
            VerdictCheck::Endorsement,
            CheckStatus::Fail,
            "no platform endorsement (signed inventory or POE)",
        );
        return b.finish(
            Verdict::EvidenceInvalid,
            vec!["evidence invalid: no platform endorsement (policy requires one)".into()],
        );
    }
    // Either source endorses the platform: an unusable one fails the node only when the
    // policy requires an endorsement and the other source is not usable either.
    let inventory_problem = node.endorsement.as_ref().and_then(inventory_problem);
    let inventory_usable = node.endorsement.is_some() && inventory_problem.is_none();
    let poe_usable = node
        .poe
        .as_ref()
        .is_some_and(|pe| poe_unusable(&pe.checks(None, &node.claim)).is_none());
    match &node.endorsement {
        None => b.check(
            VerdictCheck::Endorsement,
            CheckStatus::Skip,
            "no signed inventory",
        ),
        Some(e) => {
            let id = e.platform_id.as_deref().unwrap_or("(none)");
            if let Some(problem) = inventory_problem {
                if policy.require_endorsement && !poe_usable {
                    b.check(
                        VerdictCheck::Endorsement,
                        CheckStatus::Fail,
                        problem.clone(),
                    );
                    return b.finish(
                        Verdict::EvidenceInvalid,
                        vec![format!("evidence invalid: {problem}")],
                    );
                }
                let why = if poe_usable {
                    "the POE endorses the platform"
                } else {
                    "not required"
                };
                b.check(
                    VerdictCheck::Endorsement,
                    CheckStatus::Skip,
                    format!("{problem} ({why})"),
                );
            } else if let Some(entry) = &e.entry {
                if let Some(owner) = &policy.expected_owner {
                    if &entry.owner != owner {
                        let detail = format!(
                            "platform {id} is endorsed to owner {}, expected {owner}",
                            entry.owner
                        );
                        b.check(VerdictCheck::Endorsement, CheckStatus::Fail, detail.clone());
                        return b.finish(
                            Verdict::EvidenceInvalid,
                            vec![format!("evidence invalid: {detail}")],
                        );
                    }
                }
                if entry.site != node.claim {
                    let detail = format!(
                        "platform {id} is endorsed at facility {} (site {}), not at the claimed site {}",
                        entry.facility, entry.site, node.claim
                    );
                    b.check(VerdictCheck::Endorsement, CheckStatus::Fail, detail.clone());
                    return b.finish(Verdict::Relocated, vec![format!("relocated: {detail}")]);
                }
                b.check(
                    VerdictCheck::Endorsement,
                    CheckStatus::Pass,
                    format!(
                        "platform {id} endorsed to {} at facility {} ({})",
                        entry.owner, entry.facility, entry.site
                    ),
                );
            }
        }
    }

    if let Some(pe) = &node.poe {
        if let Some((verdict, reason)) =
            poe_finding(&mut b, pe, &node.claim, policy, inventory_usable)
        {
            return b.finish(verdict, vec![reason]);
        }
    }

    let used: Vec<ProberDistance> = b.j.distances.iter().filter(|d| d.used).cloned().collect();
    let n_used = used.len();
    if n_used < policy.min_probers {
        let have =
            b.j.distances
                .iter()
                .map(|d| format!("{} {}", d.prober, d.samples))
                .collect::<Vec<_>>()
                .join(", ");
        let detail = format!(
            "need ≥ {} probers with ≥ {} answers each, have {n_used} (answers: {})",
            policy.min_probers,
            policy.min_samples,
            if have.is_empty() { "none".into() } else { have }
        );
        b.check(VerdictCheck::Probers, CheckStatus::Fail, detail.clone());
        missing.insert(0, detail);
        return b.finish(Verdict::Inconclusive, missing);
    }
    b.check(
        VerdictCheck::Probers,
        CheckStatus::Pass,
        format!("{n_used} probers with ≥ {} answers", policy.min_samples),
    );

    if reloc.detected {
        let shifts: Vec<String> = reloc
            .shifts
            .iter()
            .filter_map(|s| {
                Some(format!(
                    "{} {:+.2} ms (from {:.2} ms, round {})",
                    s.prober, s.shift_ms?, s.baseline_ms, s.alarm_round?
                ))
            })
            .collect();
        let detail = format!(
            "min-RTT baseline shifted at {} of {} probers around round {}: {}",
            shifts.len(),
            reloc.evaluated,
            reloc.change_round.unwrap_or(0),
            shifts.join(", ")
        );
        b.check(VerdictCheck::Relocation, CheckStatus::Fail, detail.clone());
        let mut reasons = vec![format!("relocated: {detail}")];
        let after: Vec<Disc> = reloc
            .after_min_ms
            .iter()
            .filter_map(|(p, m)| {
                let site = world.site(&world.prober(p)?.site)?;
                Some(Disc {
                    label: format!("prober {p} (after change)"),
                    center: site.position(),
                    radius_km: bound::max_distance_km(*m),
                })
            })
            .collect();
        let after_region = region::intersect(&after, claim);
        if !after_region.claim_inside {
            reasons.push(format!(
                "after the change the claim is outside the disc of {}",
                after_region.claim_excluded_by.join(", ")
            ));
        }
        return b.finish(Verdict::Relocated, reasons);
    }
    b.check(
        VerdictCheck::Relocation,
        if reloc.evaluated >= policy.relocation.min_probers {
            CheckStatus::Pass
        } else {
            CheckStatus::Skip
        },
        format!(
            "no consistent baseline shift ({} probers evaluated)",
            reloc.evaluated
        ),
    );

    // --- region consistency
    if region.empty {
        let detail = if region.disjoint_pairs.is_empty() {
            "no point satisfies every disc".to_string()
        } else {
            let pairs: Vec<String> = region
                .disjoint_pairs
                .iter()
                .map(|(a, c)| format!("{a} / {c}"))
                .collect();
            format!("discs do not intersect: {}", pairs.join(", "))
        };
        b.check(VerdictCheck::Region, CheckStatus::Fail, detail.clone());
        return b.finish(
            Verdict::Inconclusive,
            vec![format!(
                "timing is physically inconsistent ({detail}): check prober and anchor sites, \
                 or the responder over-reports its processing time"
            )],
        );
    }
    b.check(
        VerdictCheck::Region,
        if region.claim_inside { CheckStatus::Pass } else { CheckStatus::Fail },
        format!(
            "claim {} the 2/3 c region (area {:.0} km², radius {:.0} km, estimate {:.0} km from claim)",
            if region.claim_inside { "inside" } else { "outside" },
            region.area_km2.unwrap_or(0.0),
            region.radius_km.unwrap_or(0.0),
            region.estimate_to_claim_km.unwrap_or(0.0)
        ),
    );

    // --- does the probers' timing fit a node at the claim?
    let residuals: Vec<(&str, f64)> = used
        .iter()
        .filter_map(|d| Some((d.prober.as_str(), d.excess_ms?)))
        .collect();
    let min_r = residuals.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
    let max_r = residuals
        .iter()
        .map(|r| r.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let spread = max_r - min_r;
    let hard_excluded: Vec<&String> = region
        .claim_excluded_by
        .iter()
        .filter(|l| l.starts_with("prober "))
        .collect();
    let too_fast: Vec<String> = residuals
        .iter()
        .filter(|r| r.1 < -policy.fast_tolerance_ms)
        .map(|r| format!("{} {:.2} ms", r.0, r.1))
        .collect();
    let too_slow = min_r > policy.max_excess_ms;
    let uniform = spread <= policy.relay_spread_ms + policy.relay_spread_frac * min_r.max(0.0);
    let excess_list = residuals
        .iter()
        .map(|r| format!("{} {:+.2}", r.0, r.1))
        .collect::<Vec<_>>()
        .join(", ");
    let estimate = region
        .estimate
        .zip(region.estimate_to_claim_km)
        .map(|(e, d)| {
            format!(
                "; region estimate ({:.2}, {:.2}), {d:.0} km from the claim",
                e.lat, e.lon
            )
        })
        .unwrap_or_default();
    let slow: Vec<String> = residuals
        .iter()
        .filter(|r| r.1 > policy.max_excess_ms)
        .map(|r| format!("{} {:+.2} ms", r.0, r.1))
        .collect();
    let misfits = too_fast.len() + slow.len();
    let quorum = misfits as f64 >= policy.misfit_quorum * residuals.len() as f64 && misfits > 0;
    if !hard_excluded.is_empty() || (quorum && !too_slow) {
        let mut why = Vec::new();
        if !hard_excluded.is_empty() {
            let names: Vec<&str> = hard_excluded.iter().map(|s| s.as_str()).collect();
            why.push(format!(
                "the claim is beyond the 2/3 c bound of {}",
                names.join(", ")
            ));
        }
        if !too_fast.is_empty() {
            why.push(format!(
                "RTT below the prediction for the claim by more than {:.2} ms at {}",
                policy.fast_tolerance_ms,
                too_fast.join(", ")
            ));
        }
        if !slow.is_empty() {
            why.push(format!(
                "RTT above the prediction for the claim by more than {:.2} ms at {}",
                policy.max_excess_ms,
                slow.join(", ")
            ));
        }
        let detail = format!("{}{estimate}", why.join("; "));
        b.check(VerdictCheck::ClaimTiming, CheckStatus::Fail, detail.clone());
        return b.finish(
            Verdict::Relocated,
            vec![
                format!("the node runs away from its claimed site: {detail}"),
                format!("excess over the prediction for the claim, ms: {excess_list}"),
            ],
        );
    }
    if too_slow {
        if uniform {
            let km = min_r * bound::FIBER_KM_PER_MS / 2.0 / policy.inflation;
            let detail = format!(
                "every prober sees ≥ {min_r:.2} ms more than predicted for the claim, uniformly \
                 (spread {spread:.2} ms): a relay near the claim forwards to a TD ≈ {km:.0} km \
                 away (≤ {:.0} km at 2/3 c)",
                bound::max_distance_km(min_r)
            );
            b.check(VerdictCheck::ClaimTiming, CheckStatus::Fail, detail.clone());
            return b.finish(
                Verdict::Proxied,
                vec![
                    format!("proxied: {detail}"),
                    format!("excess over the prediction for the claim, ms: {excess_list}"),
                ],
            );
        }
        let detail = format!(
            "every prober sees ≥ {min_r:.2} ms more than predicted for the claim, unevenly \
             (spread {spread:.2} ms): the node answers from another site{estimate}"
        );
        b.check(VerdictCheck::ClaimTiming, CheckStatus::Fail, detail.clone());
        return b.finish(
            Verdict::Relocated,
            vec![
                format!("the node runs away from its claimed site: {detail}"),
                format!("excess over the prediction for the claim, ms: {excess_list}"),
            ],
        );
    }
    b.check(
        VerdictCheck::ClaimTiming,
        CheckStatus::Pass,
        format!("excess over the prediction for the claim, ms: {excess_list}"),
    );

    // --- anchors timed from inside the TD
    let far: Vec<AnchorDistance> = b
        .j
        .anchors
        .iter()
        .filter(|a| {
            a.excess_ms > policy.max_anchor_excess_ms || a.distance_to_claim_km > a.max_distance_km
        })
        .cloned()
        .collect();
    if !far.is_empty() {
        let list: Vec<String> = far
            .iter()
            .map(|a| {
                format!(
                    "{} {:.2} ms (expected ≈ {:.2} ms for the claim, {:+.2} ms)",
                    a.site, a.min_rtt_ms, a.expected_rtt_ms, a.excess_ms
                )
            })
            .collect();
        let mut obs = recent.clone();
        for a in &b.j.anchors {
            if let Some(site) = world.site(&a.site) {
                obs.push(joint::Obs {
                    at: site.position(),
                    rtt_ms: a.min_rtt_ms,
                    model: Bestline::inflated(policy.inflation),
                    slow_tol_ms: policy.max_anchor_excess_ms,
                    fast_tol_ms: policy.fast_tolerance_ms,
                });
            }
        }
        let radius = far
            .iter()
            .map(|a| a.max_distance_km + a.distance_to_claim_km)
            .fold(0.0, f64::max);
        if let Some((at, _)) = joint::consistent_location(&obs, claim, radius) {
            let detail = format!(
                "the TD's own RTT to anchors does not fit the claim: {}; prober and anchor timing both fit one location, ({:.2}, {:.2}), {:.0} km from the claim: the node runs there (a relay at the claim would add the TD's detour to every prober RTT)",
                list.join(", "),
                at.lat,
                at.lon,
                distance_km(at, claim)
            );
            b.check(VerdictCheck::Anchors, CheckStatus::Fail, detail.clone());
            return b.finish(Verdict::Relocated, vec![format!("relocated: {detail}")]);
        }
        let detail = format!(
            "prober timing fits the claim but the TD's own RTT to anchors does not: {}: no single location explains both, so the TD runs elsewhere and a relay at the claim answers the probers",
            list.join(", ")
        );
        b.check(VerdictCheck::Anchors, CheckStatus::Fail, detail.clone());
        return b.finish(Verdict::Proxied, vec![format!("proxied: {detail}")]);
    }
    if b.j.anchors.len() < policy.min_anchors {
        let detail = format!(
            "{} anchor reports, policy needs {}",
            b.j.anchors.len(),
            policy.min_anchors
        );
        b.check(VerdictCheck::Anchors, CheckStatus::Skip, detail.clone());
        missing.push(format!("anchors: {detail}"));
    } else {
        let list: Vec<String> =
            b.j.anchors
                .iter()
                .map(|a| format!("{} {:.2} ms ({:+.2})", a.site, a.min_rtt_ms, a.excess_ms))
                .collect();
        b.check(
            VerdictCheck::Anchors,
            CheckStatus::Pass,
            format!("anchors near: {}", list.join(", ")),
        );
    }

    // --- evidence round trip versus echo round trip
    // Sound only with the TD's own total time for the evidence answer: without it, quote
    // generation, event-log reads and in-TD anchor measurements are indistinguishable from a
    // network detour.
    match node.in_td.evidence_ns.map(ms) {
        None => b.check(
            VerdictCheck::EvidenceRtt,
            CheckStatus::Skip,
            "the responder did not report its in-TD evidence time",
        ),
        Some(inside) => {
            // per prober: (raw excess, excess beyond what a large answer's extra round trips take)
            let margins: Vec<(f64, f64)> = probes
                .iter()
                .filter_map(|s| {
                    let ev = ms(*s.evidence_rtt_ns.iter().min()?);
                    let echo = ms(s.samples.iter().map(|x| x.rtt_ns).min()?);
                    let x = ev - inside - echo;
                    Some((x, x - policy.evidence_rtt_factor * echo))
                })
                .collect();
            let best = margins.iter().copied().min_by(|a, c| a.1.total_cmp(&c.1));
            b.j.evidence_excess_ms = best.map(|m| m.0);
            match best {
                Some((x, m)) if m > policy.max_evidence_excess_ms => {
                    let detail = format!(
                        "evidence round trips exceed echo RTT + {inside:.2} ms in-TD time by {x:.2} ms at the closest prober, {m:.2} ms beyond {:.1} extra echo round trips (> {:.2} ms): the evidence came from up to {:.0} km farther away than the echoes",
                        policy.evidence_rtt_factor,
                        policy.max_evidence_excess_ms,
                        bound::max_distance_km(m)
                    );
                    b.check(VerdictCheck::EvidenceRtt, CheckStatus::Fail, detail.clone());
                    return b.finish(Verdict::Proxied, vec![format!("proxied: {detail}")]);
                }
                Some((x, m)) => b.check(
                    VerdictCheck::EvidenceRtt,
                    CheckStatus::Pass,
                    format!(
                        "evidence round trip excess {x:.2} ms ({m:.2} ms beyond {:.1} echo RTTs) ≤ {:.2} ms",
                        policy.evidence_rtt_factor, policy.max_evidence_excess_ms
                    ),
                ),
                None => b.check(VerdictCheck::EvidenceRtt, CheckStatus::Skip, "no evidence round trips"),
            }
        }
    }

    if !missing.is_empty() {
        return b.finish(
            Verdict::Inconclusive,
            missing
                .into_iter()
                .map(|m| format!("missing: {m}"))
                .collect(),
        );
    }
    let best = used
        .iter()
        .filter_map(|d| Some((d.prober.as_str(), d.excess_ms?)))
        .min_by(|a, c| a.1.total_cmp(&c.1));
    let mut reasons = vec![format!(
        "located at {}: claim inside the 2/3 c region of {} discs (area {:.0} km², radius {:.0} km)",
        node.claim,
        region.discs,
        region.area_km2.unwrap_or(0.0),
        region.radius_km.unwrap_or(0.0)
    )];
    if let Some((p, x)) = best {
        reasons.push(format!(
            "timing fits the claim: smallest excess {x:+.2} ms at {p}, spread {spread:.2} ms"
        ));
    }
    if !b.j.anchors.is_empty() {
        reasons.push(format!("{} anchors near the claim", b.j.anchors.len()));
    }
    if node.evidence.is_some() {
        reasons.push("evidence valid and bound".into());
    }
    if let Some(c) = node
        .poe
        .as_ref()
        .and_then(|p| p.poe.as_ref())
        .filter(|p| p.document_valid())
        .and_then(|p| p.claims.as_ref())
    {
        reasons.push(format!(
            "POE: platform {} owned by {} (signed by {})",
            c.piid,
            c.owner,
            c.signer.as_deref().unwrap_or("?")
        ));
    }
    b.finish(Verdict::Located, reasons)
}

/// Adds the POE checks for the node; returns the verdict they force, if any. A POE that does
/// not verify or bind the platform counts only when the policy requires an endorsement; an
/// owner other than the expected operator makes the evidence invalid, a site other than the
/// claim is a relocation.
fn poe_finding(
    b: &mut Builder,
    pe: &crate::verify::poe::PoeEndorsement,
    claim: &str,
    policy: &Policy,
    inventory_usable: bool,
) -> Option<(Verdict, String)> {
    let checks = pe.checks(policy.expected_owner.as_deref(), claim);
    let unusable = poe_unusable(&checks);
    let owner = failed_poe_check(&checks, &[PoeCheckId::Owner]);
    let facility = failed_poe_check(&checks, &[PoeCheckId::Facility]);
    if unusable.is_some() && (!policy.require_endorsement || inventory_usable) {
        let why = if inventory_usable {
            "the signed inventory endorses the platform"
        } else {
            "not required"
        };
        b.j.checks.extend(checks.into_iter().map(|mut c| {
            if c.status == CheckStatus::Fail {
                c.status = CheckStatus::Skip;
                c.detail = format!("{} ({why})", c.detail);
            }
            c
        }));
        return None;
    }
    b.j.checks.extend(checks);
    if let Some(c) = unusable.or(owner) {
        return Some((
            Verdict::EvidenceInvalid,
            format!("evidence invalid: {}: {}", c.name, c.detail),
        ));
    }
    facility.map(|c| {
        (
            Verdict::Relocated,
            format!("relocated: {}: {}", c.name, c.detail),
        )
    })
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
fn inventory_problem(e: &crate::verify::endorse::Endorsement) -> Option<String> {
    let id = e.platform_id.as_deref().unwrap_or("(none)");
    match (&e.error, &e.entry, &e.platform_id) {
        (Some(err), _, _) => Some(format!("endorsement unusable: {err}")),
        (None, _, None) => Some("the evidence names no platform ID".to_string()),
        (None, None, Some(_)) => Some(format!("platform {id} is not in the inventory")),
        (None, Some(_), Some(_)) => None,
    }
}

/// Judge every node of a samples file (in file order).
pub fn judge_file(file: &crate::input::SamplesFile, policy: &Policy) -> Vec<Judgement> {
    let world = file.world();
    file.nodes
        .iter()
        .map(|n| judge(&world, n, policy))
        .collect()
}
