//! The rules on where the node is: input consistency, reachability, enough probers,
//! relocation, the feasible region, the claim's timing fit, anchors timed from inside the TD
//! and the evidence round trip; then `located` when none decided otherwise.

use super::bound::{self, Bestline};
use super::geo::distance_km;
use super::joint;
use super::region::{self, Disc, Region};
use super::relocation::Relocation;
use super::verdict::{ms, AnchorDistance, Decided, Judging, ProberDistance, Rule, Verdict};
use crate::check::{CheckStatus, VerdictCheck};
use crate::input::{LatLon, ProberSeries};

impl Judging<'_> {
    /// Sites, probers and anchors are known, each series once; returns the claim's position.
    pub(super) fn input(&mut self) -> Rule<LatLon> {
        let (world, node) = (self.world, self.node);
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
            let reasons = problems.iter().map(|p| format!("input: {p}")).collect();
            let d = self.fail(
                VerdictCheck::Input,
                Verdict::Inconclusive,
                problems.join("; "),
            );
            return Err(d.because(reasons));
        };
        let detail = "sites, probers and anchors known";
        self.check(VerdictCheck::Input, CheckStatus::Pass, detail);
        Ok(claim)
    }

    /// Some prober got answers.
    pub(super) fn reachability(&mut self) -> Rule {
        let probes = &self.node.probes;
        let answered: usize = probes.iter().map(|s| s.samples.len()).sum();
        if probes.is_empty() {
            let detail = "no prober measured this node";
            self.check(VerdictCheck::Reachability, CheckStatus::Skip, detail);
        } else if answered == 0 {
            let mut each: Vec<String> = (probes.iter())
                .map(|s| format!("{}: 0/{} answered", s.prober, s.sent))
                .collect();
            each.sort();
            let detail = each.join(", ");
            let reason = format!("no prober got an answer ({detail})");
            let d = self.fail(VerdictCheck::Reachability, Verdict::Unreachable, detail);
            return Err(d.because(vec![reason]));
        } else {
            let detail = format!("{answered} answers");
            self.check(VerdictCheck::Reachability, CheckStatus::Pass, detail);
        }
        Ok(())
    }

    /// At least `min_probers` probers with `min_samples` answers each; returns them.
    pub(super) fn probers(&mut self) -> Rule<Vec<ProberDistance>> {
        let policy = self.policy;
        let distances = &self.j.distances;
        let used: Vec<ProberDistance> = distances.iter().filter(|d| d.used).cloned().collect();
        let n_used = used.len();
        if n_used < policy.min_probers {
            let have = (distances.iter())
                .map(|d| format!("{} {}", d.prober, d.samples))
                .collect::<Vec<_>>()
                .join(", ");
            let detail = format!(
                "need ≥ {} probers with ≥ {} answers each, have {n_used} (answers: {})",
                policy.min_probers,
                policy.min_samples,
                if have.is_empty() { "none".into() } else { have }
            );
            let mut reasons = std::mem::take(&mut self.missing);
            reasons.insert(0, detail.clone());
            let d = self.fail(VerdictCheck::Probers, Verdict::Inconclusive, detail);
            return Err(d.because(reasons));
        }
        let detail = format!("{n_used} probers with ≥ {} answers", policy.min_samples);
        self.check(VerdictCheck::Probers, CheckStatus::Pass, detail);
        Ok(used)
    }

    /// No consistent shift of the min-RTT baseline during the window.
    pub(super) fn relocation(&mut self, reloc: &Relocation, claim: LatLon) -> Rule {
        if !reloc.detected {
            let status = if reloc.evaluated >= self.policy.relocation.min_probers {
                CheckStatus::Pass
            } else {
                CheckStatus::Skip
            };
            let detail = format!(
                "no consistent baseline shift ({} probers evaluated)",
                reloc.evaluated
            );
            self.check(VerdictCheck::Relocation, status, detail);
            return Ok(());
        }
        let shifts: Vec<String> = (reloc.shifts.iter())
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
        let mut d = self.fail(VerdictCheck::Relocation, Verdict::Relocated, detail);
        let world = self.world;
        let after: Vec<Disc> = (reloc.after_min_ms.iter())
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
            d.reasons.push(format!(
                "after the change the claim is outside the disc of {}",
                after_region.claim_excluded_by.join(", ")
            ));
        }
        Err(d)
    }

    /// The discs intersect (physics holds), and the claim lies inside them.
    pub(super) fn region(&mut self, region: &Region) -> Rule {
        if region.empty {
            let detail = if region.disjoint_pairs.is_empty() {
                "no point satisfies every disc".to_string()
            } else {
                let pairs: Vec<String> = (region.disjoint_pairs.iter())
                    .map(|(a, c)| format!("{a} / {c}"))
                    .collect();
                format!("discs do not intersect: {}", pairs.join(", "))
            };
            let reason = format!(
                "timing is physically inconsistent ({detail}): check prober and anchor sites, \
                 or the responder over-reports its processing time"
            );
            let d = self.fail(VerdictCheck::Region, Verdict::Inconclusive, detail);
            return Err(d.because(vec![reason]));
        }
        let inside = region.claim_inside;
        self.check(
            VerdictCheck::Region,
            if inside { CheckStatus::Pass } else { CheckStatus::Fail },
            format!(
                "claim {} the 2/3 c region (area {:.0} km², radius {:.0} km, estimate {:.0} km from claim)",
                if inside { "inside" } else { "outside" },
                region.area_km2.unwrap_or(0.0),
                region.radius_km.unwrap_or(0.0),
                region.estimate_to_claim_km.unwrap_or(0.0)
            ),
        );
        Ok(())
    }

    /// Does the probers' timing fit a node at the claim? Returns the spread of the excesses.
    pub(super) fn claim_timing(&mut self, used: &[ProberDistance], region: &Region) -> Rule<f64> {
        let policy = self.policy;
        let t = Timing::of(used, policy.max_excess_ms, policy.fast_tolerance_ms);
        let hard_excluded: Vec<&str> = (region.claim_excluded_by.iter())
            .filter(|l| l.starts_with("prober "))
            .map(|s| s.as_str())
            .collect();
        let too_slow = t.min_r > policy.max_excess_ms;
        let misfits = t.too_fast.len() + t.slow.len();
        let quorum =
            misfits as f64 >= policy.misfit_quorum * t.residuals.len() as f64 && misfits > 0;
        let estimate = (region.estimate.zip(region.estimate_to_claim_km))
            .map(|(e, d)| {
                format!(
                    "; region estimate ({:.2}, {:.2}), {d:.0} km from the claim",
                    e.lat, e.lon
                )
            })
            .unwrap_or_default();
        let excess = format!("excess over the prediction for the claim, ms: {}", t.list);
        if !hard_excluded.is_empty() || (quorum && !too_slow) {
            let detail = format!(
                "{}{estimate}",
                t.misfit_reasons(&hard_excluded, policy).join("; ")
            );
            let away = format!("the node runs away from its claimed site: {detail}");
            let d = self.fail(VerdictCheck::ClaimTiming, Verdict::Relocated, detail);
            return Err(d.because(vec![away, excess]));
        }
        if too_slow {
            return Err(self.too_slow(&t, &estimate, excess));
        }
        self.check(VerdictCheck::ClaimTiming, CheckStatus::Pass, excess);
        Ok(t.spread)
    }

    /// Every prober sees more than predicted: uniformly, a relay near the claim; unevenly,
    /// the node answers from another site.
    fn too_slow(&mut self, t: &Timing, estimate: &str, excess: String) -> Decided {
        let (min_r, spread, policy) = (t.min_r, t.spread, self.policy);
        let uniform = spread <= policy.relay_spread_ms + policy.relay_spread_frac * min_r.max(0.0);
        if uniform {
            let km = min_r * bound::FIBER_KM_PER_MS / 2.0 / policy.inflation;
            let detail = format!(
                "every prober sees ≥ {min_r:.2} ms more than predicted for the claim, uniformly \
                 (spread {spread:.2} ms): a relay near the claim forwards to a TD ≈ {km:.0} km \
                 away (≤ {:.0} km at 2/3 c)",
                bound::max_distance_km(min_r)
            );
            let proxied = format!("proxied: {detail}");
            let d = self.fail(VerdictCheck::ClaimTiming, Verdict::Proxied, detail);
            return d.because(vec![proxied, excess]);
        }
        let detail = format!(
            "every prober sees ≥ {min_r:.2} ms more than predicted for the claim, unevenly \
             (spread {spread:.2} ms): the node answers from another site{estimate}"
        );
        let away = format!("the node runs away from its claimed site: {detail}");
        let d = self.fail(VerdictCheck::ClaimTiming, Verdict::Relocated, detail);
        d.because(vec![away, excess])
    }

    /// The TD's own RTTs to anchors fit the claim. When they do not, the probers' recent
    /// RTTs and the anchors' either fit one other location (the node runs there) or none (a
    /// relay at the claim answers the probers).
    pub(super) fn anchors(&mut self, recent: &[joint::Obs], claim: LatLon) -> Rule {
        let policy = self.policy;
        let far: Vec<AnchorDistance> = (self.j.anchors.iter())
            .filter(|a| {
                a.excess_ms > policy.max_anchor_excess_ms
                    || a.distance_to_claim_km > a.max_distance_km
            })
            .cloned()
            .collect();
        if far.is_empty() {
            self.anchors_near();
            return Ok(());
        }
        let list: Vec<String> = (far.iter())
            .map(|a| {
                format!(
                    "{} {:.2} ms (expected ≈ {:.2} ms for the claim, {:+.2} ms)",
                    a.site, a.min_rtt_ms, a.expected_rtt_ms, a.excess_ms
                )
            })
            .collect();
        let mut obs = recent.to_vec();
        for a in &self.j.anchors {
            if let Some(site) = self.world.site(&a.site) {
                obs.push(joint::Obs {
                    at: site.position(),
                    rtt_ms: a.min_rtt_ms,
                    model: Bestline::inflated(policy.inflation),
                    slow_tol_ms: policy.max_anchor_excess_ms,
                    fast_tol_ms: policy.fast_tolerance_ms,
                });
            }
        }
        let radius = (far.iter())
            .map(|a| a.max_distance_km + a.distance_to_claim_km)
            .fold(0.0, f64::max);
        if let Some((at, _)) = joint::consistent_location(&obs, claim, radius) {
            let detail = format!(
                "the TD's own RTT to anchors does not fit the claim: {}; prober and anchor \
                 timing both fit one location, ({:.2}, {:.2}), {:.0} km from the claim: the \
                 node runs there (a relay at the claim would add the TD's detour to every \
                 prober RTT)",
                list.join(", "),
                at.lat,
                at.lon,
                distance_km(at, claim)
            );
            return Err(self.fail(VerdictCheck::Anchors, Verdict::Relocated, detail));
        }
        let detail = format!(
            "prober timing fits the claim but the TD's own RTT to anchors does not: {}: no \
             single location explains both, so the TD runs elsewhere and a relay at the claim \
             answers the probers",
            list.join(", ")
        );
        Err(self.fail(VerdictCheck::Anchors, Verdict::Proxied, detail))
    }

    /// No anchor is far: enough of them, or the shortfall is missing data.
    fn anchors_near(&mut self) {
        let failed = &self.node.failed_anchors;
        if !failed.is_empty() {
            // A far TD cannot make an anchor at the claim answer fast; reporting it as down is
            // its way out, so a failed anchor is never read as an honest absence.
            let list: Vec<String> = (failed.iter())
                .map(|f| format!("{} ({})", f.name, f.reason))
                .collect();
            let detail = format!("requested anchors failed: {}", list.join(", "));
            self.missing.push(format!("anchors: {detail}"));
            self.check(VerdictCheck::Anchors, CheckStatus::Skip, detail);
            return;
        }
        let (n, need) = (self.j.anchors.len(), self.policy.min_anchors);
        if n < need {
            let mut detail = format!("{n} anchor reports, policy needs {need}");
            // anchors come only with verified evidence: say which refusal cost them
            if let Some(r) = self.node.refused_evidence.first() {
                detail.push_str(&format!(" (they come with the evidence: {r})"));
            }
            self.missing.push(format!("anchors: {detail}"));
            self.check(VerdictCheck::Anchors, CheckStatus::Skip, detail);
            return;
        }
        let list: Vec<String> = (self.j.anchors.iter())
            .map(|a| format!("{} {:.2} ms ({:+.2})", a.site, a.min_rtt_ms, a.excess_ms))
            .collect();
        let detail = format!("anchors near: {}", list.join(", "));
        self.check(VerdictCheck::Anchors, CheckStatus::Pass, detail);
    }

    /// Evidence round trip versus echo round trip. Every prober that asked for a bundle that
    /// verified (its session key carries that bundle's in-TD time) is held to the bound on its
    /// own request: one whose evidence took a detour is enough, since the closest prober alone
    /// would let a near box answer it while the others reach a far TD. Without such probers (a
    /// bundle file judged offline does not say who asked for it) the node's in-TD time is held
    /// against the closest prober only: in-TD times vary by tens of ms between requests, so
    /// another request's time says nothing at the 5 ms scale. Sound only with the TD's own
    /// total time for the evidence answer: without it, quote generation, event-log reads and
    /// in-TD anchor measurements are indistinguishable from a network detour. That time is not
    /// signed, so leaving it out must not skip the check: a prober that timed an evidence
    /// answer with no in-TD time to hold it against fails the check, and the node cannot be
    /// `located`.
    pub(super) fn evidence_rtt(&mut self, probes: &[&ProberSeries]) -> Rule {
        let policy = self.policy;
        let node_inside = self.node.in_td.evidence_ns;
        // per prober: (prober, raw excess, excess beyond what a large answer's extra round
        // trips take, in-TD time, whether it is the prober's own bundle's)
        let margins: Vec<(&str, f64, f64, f64, bool)> = (probes.iter())
            .filter(|s| self.key_mismatch(s).is_none())
            .filter_map(|s| {
                let own = self.own_evidence_ns(s);
                let inside = ms(own.or(node_inside)?);
                let ev = ms(*s.evidence_rtt_ns.iter().min()?);
                let echo = ms(s.samples.iter().map(|x| x.rtt_ns).min()?);
                let x = ev - inside - echo;
                let m = x - policy.evidence_rtt_factor * echo;
                Some((s.prober.as_str(), x, m, inside, own.is_some()))
            })
            .collect();
        let untimed: Vec<&str> = (probes.iter())
            .filter(|s| self.key_mismatch(s).is_none() && !s.evidence_rtt_ns.is_empty())
            .filter(|s| self.own_evidence_ns(s).or(node_inside).is_none())
            .map(|s| s.prober.as_str())
            .collect();
        if !untimed.is_empty() && self.node.evidence.is_some() {
            let detail = format!(
                "prober(s) {} timed evidence answers but the responder did not report its \
                 in-TD evidence time (timings.evidence_ns): the evidence round trip cannot be \
                 checked",
                untimed.join(", ")
            );
            self.missing.push(format!("evidence round trip: {detail}"));
            self.check(VerdictCheck::EvidenceRtt, CheckStatus::Fail, detail);
            return Ok(());
        }
        if margins.is_empty() && node_inside.is_none() {
            let detail = "the responder did not report its in-TD evidence time";
            self.check(VerdictCheck::EvidenceRtt, CheckStatus::Skip, detail);
            return Ok(());
        }
        let held: Vec<_> = if margins.iter().any(|m| m.4) {
            margins.iter().copied().filter(|m| m.4).collect()
        } else {
            let closest = margins.iter().copied().min_by(|a, c| a.2.total_cmp(&c.2));
            closest.into_iter().collect()
        };
        let worst = held.iter().copied().max_by(|a, c| a.2.total_cmp(&c.2));
        self.j.evidence_excess_ms = worst.map(|m| m.1);
        let (factor, max) = (policy.evidence_rtt_factor, policy.max_evidence_excess_ms);
        match worst {
            Some((p, x, m, inside, _)) if m > max => {
                let detail = format!(
                    "evidence round trips exceed echo RTT + {inside:.2} ms in-TD time by \
                     {x:.2} ms at prober {p}, {m:.2} ms beyond {factor:.1} extra echo round \
                     trips (> {max:.2} ms): the evidence came from up to {:.0} km farther away \
                     than the echoes",
                    bound::max_distance_km(m)
                );
                return Err(self.fail(VerdictCheck::EvidenceRtt, Verdict::Proxied, detail));
            }
            Some((p, x, m, _, own)) => self.check(
                VerdictCheck::EvidenceRtt,
                CheckStatus::Pass,
                format!(
                    "evidence round trip excess within bound at {} (largest at {p}: {x:.2} ms, \
                     {m:.2} ms beyond {factor:.1} echo RTTs ≤ {max:.2} ms)",
                    if own {
                        format!("each of {} probers, on its own bundle", held.len())
                    } else {
                        "the closest prober".to_string()
                    }
                ),
            ),
            None => self.check(
                VerdictCheck::EvidenceRtt,
                CheckStatus::Skip,
                "no evidence round trips",
            ),
        }
        Ok(())
    }

    /// Nothing a positive verdict needs is missing.
    pub(super) fn complete(&mut self) -> Rule {
        if self.missing.is_empty() {
            return Ok(());
        }
        let reasons = self
            .missing
            .iter()
            .map(|m| format!("missing: {m}"))
            .collect();
        Err(Decided::new(Verdict::Inconclusive, reasons))
    }

    /// Every rule passed.
    pub(super) fn located(&self, used: &[ProberDistance], region: &Region, spread: f64) -> Decided {
        let node = self.node;
        let best = (used.iter())
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
        if !self.j.anchors.is_empty() {
            reasons.push(format!("{} anchors near the claim", self.j.anchors.len()));
        }
        if node.evidence.is_some() {
            reasons.push("evidence valid and bound".into());
        }
        let poe = (node.poe.as_ref())
            .and_then(|p| p.poe.as_ref())
            .filter(|p| p.document_valid())
            .and_then(|p| p.claims.as_ref());
        if let Some(c) = poe {
            reasons.push(format!(
                "POE: platform {} owned by {} (signed by {})",
                c.piid,
                c.owner,
                c.signer.as_deref().unwrap_or("?")
            ));
        }
        Decided::new(Verdict::Located, reasons)
    }
}

/// The used probers' excess over the prediction for the claim.
struct Timing<'a> {
    residuals: Vec<(&'a str, f64)>,
    min_r: f64,
    spread: f64,
    /// Probers faster than the prediction by more than `fast_tolerance_ms`.
    too_fast: Vec<String>,
    /// Probers slower than the prediction by more than `max_excess_ms`.
    slow: Vec<String>,
    /// `prober +excess` for every used prober.
    list: String,
}

impl<'a> Timing<'a> {
    fn of(used: &'a [ProberDistance], max_excess_ms: f64, fast_tolerance_ms: f64) -> Self {
        let residuals: Vec<(&str, f64)> = (used.iter())
            .filter_map(|d| Some((d.prober.as_str(), d.excess_ms?)))
            .collect();
        let min_r = residuals.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        let max_r = (residuals.iter())
            .map(|r| r.1)
            .fold(f64::NEG_INFINITY, f64::max);
        let too_fast = (residuals.iter())
            .filter(|r| r.1 < -fast_tolerance_ms)
            .map(|r| format!("{} {:.2} ms", r.0, r.1))
            .collect();
        let slow = (residuals.iter())
            .filter(|r| r.1 > max_excess_ms)
            .map(|r| format!("{} {:+.2} ms", r.0, r.1))
            .collect();
        let list = (residuals.iter())
            .map(|r| format!("{} {:+.2}", r.0, r.1))
            .collect::<Vec<_>>()
            .join(", ");
        Timing {
            min_r,
            spread: max_r - min_r,
            too_fast,
            slow,
            list,
            residuals,
        }
    }

    /// Why the claim does not fit: probers whose hard bound excludes it, probers too fast
    /// or too slow for it.
    fn misfit_reasons(
        &self,
        hard_excluded: &[&str],
        policy: &crate::policy::Policy,
    ) -> Vec<String> {
        let mut why = Vec::new();
        if !hard_excluded.is_empty() {
            why.push(format!(
                "the claim is beyond the 2/3 c bound of {}",
                hard_excluded.join(", ")
            ));
        }
        if !self.too_fast.is_empty() {
            why.push(format!(
                "RTT below the prediction for the claim by more than {:.2} ms at {}",
                policy.fast_tolerance_ms,
                self.too_fast.join(", ")
            ));
        }
        if !self.slow.is_empty() {
            why.push(format!(
                "RTT above the prediction for the claim by more than {:.2} ms at {}",
                policy.max_excess_ms,
                self.slow.join(", ")
            ));
        }
        why
    }
}
