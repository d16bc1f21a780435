//! The verdict: evidence, vTPM locality, relocation, the feasible region and the claim's
//! timing fit, combined into one of seven verdicts with reasons, numbers and checks.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::frankenstein::VtpmFinding;
use crate::check::VerdictCheck;
pub use crate::check::{Check, CheckStatus};
use crate::input::{NodeInput, World};
use crate::judge::region::Region;
use crate::judge::relocation::Relocation;
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
    /// Whether this prober counts (≥ `min_samples` answers, under a verified session key).
    pub used: bool,
    /// Landmark calibration: a landmark at the claim, or ≥ 2 landmarks (bestline).
    pub calibrated: bool,
    /// How much slower than `expected_rtt_ms` a node at the claim may be, ms: small with a
    /// landmark at the claim, widened to the policy's inflation ceiling and claim radius
    /// without one.
    #[serde(default)]
    pub slack_ms: f64,
    /// The reference behind `expected_rtt_ms` (landmark at the claim or bestline); None: the
    /// policy's inflation.
    #[serde(default)]
    pub reference: Option<String>,
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
    /// farthest beyond the threshold (None without `in_td.evidence_ns`).
    pub evidence_excess_ms: Option<f64>,
}

/// A rule's decision: the node's verdict and why, most decisive first. Rules return it as
/// `Err` so that `?` stops the judgement at the first rule that decides.
pub(super) struct Decided {
    pub(super) verdict: Verdict,
    pub(super) reasons: Vec<String>,
}

impl Decided {
    pub(super) fn new(verdict: Verdict, reasons: Vec<String>) -> Self {
        Self { verdict, reasons }
    }

    /// Replaces the default reason (`"<verdict>: <detail>"`).
    pub(super) fn because(mut self, reasons: Vec<String>) -> Self {
        self.reasons = reasons;
        self
    }
}

pub use super::attested::UNPINNED_CODE;

/// The outcome of a rule that may decide the verdict.
pub(super) type Rule<T = ()> = Result<T, Decided>;

/// One judgement in progress: the inputs, the judgement filled in rule by rule, and what is
/// missing for a positive verdict.
pub(super) struct Judging<'a> {
    pub(super) world: &'a World,
    pub(super) node: &'a NodeInput,
    pub(super) policy: &'a Policy,
    pub(super) j: Judgement,
    /// Data a positive verdict needs but the node lacks (`inconclusive` if nothing decides).
    pub(super) missing: Vec<String>,
}

impl Judging<'_> {
    /// Records a check that passed or was skipped.
    pub(super) fn check(
        &mut self,
        id: VerdictCheck,
        status: CheckStatus,
        detail: impl Into<String>,
    ) {
        self.j.checks.push(Check {
            name: id.into(),
            status,
            detail: detail.into(),
        });
    }

    /// Records `check` as failed with `detail` and decides `verdict`, with the reason
    /// `"<verdict>: <detail>"` (replace it with [`Decided::because`]).
    pub(super) fn fail(
        &mut self,
        check: VerdictCheck,
        verdict: Verdict,
        detail: String,
    ) -> Decided {
        let prefix = match verdict {
            Verdict::EvidenceInvalid => "evidence invalid",
            v => v.as_str(),
        };
        let reason = format!("{prefix}: {detail}");
        self.check(check, CheckStatus::Fail, detail);
        Decided::new(verdict, vec![reason])
    }

    fn finish(mut self, d: Decided) -> Judgement {
        let mut reasons = d.reasons;
        reasons.append(&mut self.j.reasons);
        self.j.verdict = d.verdict;
        self.j.reasons = reasons;
        self.j
    }

    /// The rules in the order they decide.
    fn run(&mut self) -> Rule<Decided> {
        let claim = self.input()?;
        self.reachability()?;
        let m = self.measure(claim);
        self.evidence()?;
        self.frankenstein()?;
        self.zone()?;
        self.endorsement()?;
        self.poe()?;
        self.session_key(&m.probes)?;
        let used = self.probers()?;
        self.relocation(&m.relocation, claim)?;
        self.region(&m.region)?;
        let spread = self.claim_timing(&used, &m.region)?;
        self.anchors(&m.recent, claim)?;
        self.evidence_rtt(&m.probes)?;
        let reach = self.reach(&used, claim);
        self.complete()?;
        Ok(self.located(&used, &m.region, spread, &reach))
    }
}

pub(super) fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Judge one node. Pure and deterministic: the same inputs (in any sample order) give the
/// same judgement.
pub fn judge(world: &World, node: &NodeInput, policy: &Policy) -> Judgement {
    let mut judging = Judging {
        world,
        node,
        policy,
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
        missing: Vec::new(),
    };
    let decided = match judging.run() {
        Ok(d) | Err(d) => d,
    };
    judging.finish(decided)
}

/// Judge every node of a samples file (in file order).
pub fn judge_file(file: &crate::input::SamplesFile, policy: &Policy) -> Vec<Judgement> {
    let world = file.world();
    file.nodes
        .iter()
        .map(|n| judge(&world, n, policy))
        .collect()
}
